// listening.cpp: the sockets the shell holds for services (`listen`; binding is listen.hpp's).
//
// held_ maps held_key() to one open socket. Which sockets are wanted is always computed from
// units_: at start-up every unit's; after a reload the new units' and, until they are down and
// released, the old units of children that reload removed (a removed unit keeps the Unit it was
// started with). So a socket stays open while any unit that lists it may still spawn, and
// sync_sockets() closes the others after reload and after every release. Reload binds what the
// new units add before it applies them (off the loop; a bind failure refuses the reload and
// keeps the running configuration, and nothing it bound stays open).
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "shell.hpp"

namespace vigil::daemon {

std::map<std::string, unit::ListenSpec>
Shell::wanted_sockets(const std::vector<unit::Unit> &units) const {
    std::map<std::string, unit::ListenSpec> out;
    for (const unit::Unit &u : units)
        for (const unit::ListenSpec &s : u.listen)
            out.emplace(held_key(s, u.name), s);
    return out;
}

bool Shell::bind_listen(std::string &error) {
    if (listen_bound_) return true;
    listen_bound_ = true;
    std::vector<std::string> keys;
    std::vector<unit::ListenSpec> specs;
    for (auto &[k, s] : wanted_sockets(units_)) {
        keys.push_back(k);
        specs.push_back(s);
    }
    if (specs.empty()) return true;
    std::vector<BoundSocket> bound = os_.bind_sockets_now(specs);
    for (std::size_t i = 0; i < bound.size() && i < keys.size(); ++i) {
        if (bound[i].fd < 0)
            error += (error.empty() ? "" : "\n") + bound[i].error;
        else
            held_.emplace(keys[i], HeldSocket{bound[i].fd, specs[i]});
    }
    if (bound.size() != keys.size() && error.empty()) error = "listen: sockets were not bound";
    if (error.empty()) return true;
    close_sockets();
    return false;
}

int Shell::held_socket(const unit::ListenSpec &spec, const std::string &unit_name) const {
    auto it = held_.find(held_key(spec, unit_name));
    return it == held_.end() ? -1 : it->second.fd;
}

std::vector<Shell::HeldView> Shell::held_sockets(ChildId id) const {
    std::vector<HeldView> out;
    if (id.value >= units_.size()) return out;
    const unit::Unit &u = units_[id.value];
    for (const unit::ListenSpec &s : u.listen)
        out.push_back(HeldView{&s, held_socket(s, u.name)});
    return out;
}

// fd 3.. in listed order, LISTEN_FDS, LISTEN_FDNAMES, and LISTEN_PID written by the child.
bool Shell::add_listen_extras(const unit::Unit &u, proc::SpawnExtras &extras, std::string &error) {
    if (u.listen.empty()) return true;
    std::string names;
    for (std::size_t i = 0; i < u.listen.size(); ++i) {
        const unit::ListenSpec &s = u.listen[i];
        const int fd = held_socket(s, u.name);
        if (fd < 0) {
            error = "listen " + s.describe() + ": vigild holds no socket for it";
            return false;
        }
        extras.fds.emplace_back(fd, 3 + static_cast<int>(i));
        names += (i ? ":" : "") + s.name;
    }
    extras.env.emplace_back("LISTEN_FDS", std::to_string(u.listen.size()));
    extras.env.emplace_back("LISTEN_FDNAMES", names);
    extras.listen_pid = true;
    return true;
}

// Binds what `next` adds to the held sockets, then `cont` (with the errors that refuse the
// reload, none when every bind worked).
void Shell::bind_for_reload(unit::LoadResult next, ReloadContinuation cont) {
    std::vector<std::string> keys;
    std::vector<unit::ListenSpec> specs;
    for (auto &[k, s] : wanted_sockets(next.units)) {
        if (held_.contains(k)) continue;
        keys.push_back(k);
        specs.push_back(s);
    }
    if (specs.empty()) {
        cont(std::move(next), {});
        return;
    }
    auto shared = std::make_shared<unit::LoadResult>(std::move(next));
    os_.bind_sockets(specs, [this, keys, specs, shared, cont](std::vector<BoundSocket> bound) {
        std::vector<std::string> errors;
        for (const BoundSocket &b : bound)
            if (b.fd < 0) errors.push_back(b.error);
        if (bound.size() != keys.size() && errors.empty())
            errors.push_back("listen: sockets were not bound");
        if (!errors.empty() || exit_status_) {
            for (const BoundSocket &b : bound)
                if (b.fd >= 0) os_.close_fd(b.fd);
        } else {
            for (std::size_t i = 0; i < keys.size(); ++i)
                held_.emplace(keys[i], HeldSocket{bound[i].fd, specs[i]});
        }
        cont(std::move(*shared), std::move(errors));
    });
}

// Closes the sockets no unit in units_ lists any more; listens again with a changed backlog.
void Shell::sync_sockets() {
    const auto wanted = wanted_sockets(units_);
    for (auto it = held_.begin(); it != held_.end();) {
        auto w = wanted.find(it->first);
        if (w == wanted.end()) {
            os_.close_fd(it->second.fd);
            it = held_.erase(it);
            continue;
        }
        HeldSocket &h = it->second;
        if (w->second.backlog != h.spec.backlog && h.spec.kind != unit::ListenKind::Udp) {
            if (int e = os_.relisten(h.fd, w->second.backlog); e != 0)
                journal_.say(LogLevel::Warn,
                             "listen " + h.spec.describe() +
                                 ": listen with the new backlog: " + std::strerror(e));
        }
        h.spec = w->second;
        ++it;
    }
}

void Shell::close_sockets() {
    for (auto &[k, h] : held_)
        os_.close_fd(h.fd);
    held_.clear();
}

} // namespace vigil::daemon

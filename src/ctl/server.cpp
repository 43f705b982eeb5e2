// The control socket server: see include/vigil/ctl/server.hpp for the rules it enforces.
#include "vigil/ctl/server.hpp"

#include <cassert>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59 // Linux 4.13; older libc headers lack the name
#endif

namespace vigil::ctl {

namespace {

constexpr std::size_t read_chunk = 64 * 1024;
// Reads per wake-up for one session: a client that floods us must not starve the others.
constexpr int reads_per_wakeup = 16;
constexpr int accepts_per_wakeup = 64;

std::string errno_text(int err) {
    return std::strerror(err);
}

// Creates `dir` (and missing parents) for the socket. Only the last level gets the tight
// mode; parents that had to be made are 0755 so that they do not hide an existing setup.
int make_socket_dir(const std::string &dir, std::optional<gid_t> group, std::string &what) {
    struct stat st {};
    if (stat(dir.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            what = dir + " is not a directory";
            return -ENOTDIR;
        }
        return 0; // an existing folder is the administrator's: leave it as it is
    }
    if (errno != ENOENT) {
        int e = errno;
        what = dir + ": " + errno_text(e);
        return -e;
    }
    if (auto slash = dir.rfind('/'); slash != std::string::npos && slash > 0) {
        std::string parent = dir.substr(0, slash);
        struct stat pst {};
        if (stat(parent.c_str(), &pst) != 0) {
            if (int r = make_socket_dir(parent, std::nullopt, what); r != 0) return r;
            chmod(parent.c_str(), 0755);
        }
    }
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
        int e = errno;
        what = "cannot create " + dir + ": " + errno_text(e);
        return -e;
    }
    // Group members must be able to reach the socket inside: 0750 owned by the group.
    if (group) {
        if (chown(dir.c_str(), static_cast<uid_t>(-1), *group) != 0 ||
            chmod(dir.c_str(), 0750) != 0) {
            int e = errno;
            what =
                "cannot give " + dir + " to group " + std::to_string(*group) + ": " + errno_text(e);
            return -e;
        }
    } else {
        chmod(dir.c_str(), 0700);
    }
    return 0;
}

// Is the peer a member of `g` through its supplementary groups? SO_PEERGROUPS gives the
// groups the peer had when it connected, without a racy lookup by uid.
bool peer_in_group(int fd, gid_t g) {
    std::vector<gid_t> groups(64);
    for (int attempt = 0; attempt < 2; ++attempt) {
        auto len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
            groups.resize(len / sizeof(gid_t));
            for (gid_t x : groups)
                if (x == g) return true;
            return false;
        }
        if (errno != ERANGE) return false;
        groups.resize(len / sizeof(gid_t) + 1);
    }
    return false;
}

} // namespace

// ---------------------------------------------------------------------------------- Session

Session::Session(Private, Server *server, std::uint64_t id) : server_(server), id_(id) {}

Session::~Session() = default;

std::string Session::who() const {
    return "uid " + std::to_string(uid_) + " pid " + std::to_string(pid_);
}

bool Session::reply(const Json &id, const Json &result) {
    if (state_ != State::Open) return false;
    return send(make_reply(id, result), true);
}

bool Session::error(const Json &id, ErrorCode code, std::string_view message, const Json &extra) {
    if (state_ != State::Open) return false;
    return send(make_error(id, code, message, extra), true);
}

bool Session::stream(const Json &id, const Json &item) {
    if (state_ != State::Open) return false;
    return send(make_stream_item(id, item), false);
}

bool Session::end(const Json &id) {
    if (state_ != State::Open) return false;
    return send(make_end(id), true);
}

bool Session::on_close(std::function<void()> cb) {
    if (callbacks_fired_) return false;
    on_close_.push_back(std::move(cb));
    return true;
}

void Session::close() {
    if (state_ == State::Open) drain_then_close();
}

bool Session::send(std::string_view line, bool finishes) {
    if (state_ == State::Closed) return false;
    if (finishes && outstanding_ > 0) --outstanding_;
    // The cap is on output the client has not taken: a single large answer to a client that
    // keeps up (a status of 10k units is megabytes) is always queued.
    if (pending_output() > 0 && pending_output() + line.size() > server_->options_.max_output) {
        server_->log("control: disconnecting " + who() + ": " +
                     std::to_string(pending_output() + line.size()) +
                     " bytes of answers unread (the client stopped reading)");
        close_now();
        return false;
    }
    if (out_off_ == out_.size()) {
        out_.clear();
        out_off_ = 0;
    }
    out_.append(line);
    write_some();
    if (state_ == State::Closed) return false;
    maybe_finish();
    return true;
}

// Writes what the socket takes now; the rest waits for UV_WRITABLE.
void Session::write_some() {
    while (state_ != State::Closed && out_off_ < out_.size()) {
        // MSG_NOSIGNAL: a client that hung up must give EPIPE here, not SIGPIPE to vigild.
        ssize_t n = ::send(fd_, out_.data() + out_off_, out_.size() - out_off_,
                           MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            out_off_ += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        close_now(); // EPIPE, ECONNRESET: the client is gone
        return;
    }
    if (out_off_ == out_.size()) {
        out_.clear();
        out_off_ = 0;
        // Give memory back after a large answer (a status of 10k units is megabytes).
        if (out_.capacity() > 256 * 1024) std::string().swap(out_);
    } else if (out_off_ > 64 * 1024 && out_off_ * 2 > out_.size()) {
        out_.erase(0, out_off_);
        out_off_ = 0;
    }
    update_poll();
}

void Session::update_poll() {
    if (state_ == State::Closed) return;
    int want = 0;
    if (state_ == State::Open && !read_eof_) want |= UV_READABLE;
    if (pending_output() > 0) want |= UV_WRITABLE;
    if (want == poll_events_) return;
    poll_events_ = want;
    if (want == 0)
        uv_poll_stop(&poll_);
    else
        uv_poll_start(&poll_, want, &Session::on_poll);
}

// Closes the connection once nothing is left to do: draining and flushed, or the client
// half-closed and every request it sent has been answered.
void Session::maybe_finish() {
    if (state_ == State::Closed || pending_output() > 0) return;
    if (state_ == State::Draining || (read_eof_ && outstanding_ == 0)) {
        close_now();
        return;
    }
    arm_idle();
}

void Session::drain_then_close() {
    if (state_ != State::Open) return;
    state_ = State::Draining;
    // A client that never reads must not keep a draining session forever.
    uv_timer_start(&idle_, &Session::on_idle,
                   static_cast<std::uint64_t>(server_->options_.idle_timeout.count()), 0);
    update_poll();
    maybe_finish();
}

void Session::arm_idle() {
    if (state_ != State::Open) return;
    if (outstanding_ == 0 && !read_eof_)
        uv_timer_start(&idle_, &Session::on_idle,
                       static_cast<std::uint64_t>(server_->options_.idle_timeout.count()), 0);
    else
        uv_timer_stop(&idle_);
}

void Session::on_idle(uv_timer_t *t) {
    auto *s = static_cast<Session *>(t->data);
    if (s->state_ == State::Open)
        s->server_->log("control: disconnecting " + s->who() + ": no request for " +
                        std::to_string(s->server_->options_.idle_timeout.count()) + " ms");
    else
        s->server_->log("control: disconnecting " + s->who() + ": answers not read in time");
    s->close_now();
}

void Session::close_now() {
    if (state_ == State::Closed) return;
    state_ = State::Closed;
    if (handles_open_ == 0) return; // never got its handles (accept path failure)
    uv_close(reinterpret_cast<uv_handle_t *>(&poll_), &Session::on_handle_closed);
    uv_close(reinterpret_cast<uv_handle_t *>(&idle_), &Session::on_handle_closed);
}

void Session::on_handle_closed(uv_handle_t *h) {
    auto *s = static_cast<Session *>(h->data);
    if (--s->handles_open_ > 0) return;
    // The descriptor is closed only now: libuv must not poll a closed (and reused) fd.
    if (s->fd_ >= 0) ::close(s->fd_);
    s->fd_ = -1;
    s->server_->session_closed(s);
}

void Session::on_poll(uv_poll_t *h, int status, int events) {
    auto *s = static_cast<Session *>(h->data);
    if (s->state_ == State::Closed) return;
    SessionPtr self = s->shared_from_this(); // the handler may drop every other reference
    if (status < 0) {
        s->close_now();
        return;
    }
    if (events & UV_WRITABLE) {
        s->write_some();
        s->maybe_finish();
    }
    if ((events & UV_READABLE) && s->state_ == State::Open) s->on_readable();
}

void Session::on_readable() {
    char *buf = server_->readbuf_.get();
    for (int i = 0; i < reads_per_wakeup && state_ == State::Open && !read_eof_; ++i) {
        ssize_t n = ::recv(fd_, buf, read_chunk, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            close_now();
            return;
        }
        if (n == 0) {
            // EOF. A client that is gone entirely (POLLHUP: both directions shut) is closed at
            // once, so a killed `vigilctl logs -f` ends its subscription now. One that only
            // half-closed (`socat`, `nc -N`) still gets its answers, then the close.
            pollfd p{fd_, POLLOUT, 0};
            if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) {
                close_now();
                return;
            }
            read_eof_ = true;
            update_poll();
            maybe_finish();
            return;
        }
        std::string_view data(buf, static_cast<std::size_t>(n));
        while (state_ == State::Open && !data.empty()) {
            auto nl = data.find('\n');
            std::string_view part = data.substr(0, nl);
            if (inbuf_.size() + part.size() > server_->options_.max_line) {
                send(make_error(nullptr, ErrorCode::TooLong,
                                "request line longer than " +
                                    std::to_string(server_->options_.max_line) + " bytes"),
                     false);
                server_->log("control: disconnecting " + who() + ": request line too long");
                inbuf_.clear();
                drain_then_close();
                return;
            }
            if (nl == std::string_view::npos) {
                inbuf_.append(part);
                break;
            }
            data.remove_prefix(nl + 1);
            if (inbuf_.empty()) {
                handle_line(part);
            } else {
                inbuf_.append(part);
                std::string line = std::move(inbuf_);
                inbuf_.clear();
                handle_line(line);
            }
        }
    }
}

void Session::handle_line(std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) return;

    ParseResult parsed = parse_request(line);
    if (auto *bad = std::get_if<RequestError>(&parsed)) {
        send(make_error(bad->id, bad->code, bad->message), false);
        if (denied_) drain_then_close();
        arm_idle();
        return;
    }
    const Request &req = std::get<Request>(parsed);
    if (denied_) {
        std::string why = "uid " + std::to_string(uid_) +
                          " may not use this socket (only root, uid " + std::to_string(geteuid()) +
                          (server_->options_.socket_group
                               ? ", and group " + std::to_string(*server_->options_.socket_group) +
                                     " for read-only commands"
                               : std::string()) +
                          ")";
        server_->log("control: refused " + who() + ": " + to_string(req.cmd) + ": " + why);
        send(make_error(req.id, ErrorCode::Forbidden, why), false);
        drain_then_close();
        return;
    }
    if (read_only_ && !is_read_only(req)) {
        std::string why = std::string(to_string(req.cmd)) + " needs root or uid " +
                          std::to_string(geteuid()) + "; uid " + std::to_string(uid_) +
                          " may only run status, tree, events, logs and version";
        server_->log("control: refused " + who() + ": " + why);
        send(make_error(req.id, ErrorCode::Forbidden, why), false);
        arm_idle();
        return;
    }
    ++outstanding_;
    arm_idle();
    SessionPtr self = shared_from_this();
    try {
        server_->handler_(self, req);
    } catch (const std::exception &e) {
        server_->log(std::string("control: ") + to_string(req.cmd) + " failed: " + e.what());
        error(req.id, ErrorCode::Internal, std::string("internal error: ") + e.what());
    }
}

// ----------------------------------------------------------------------------------- Server

Server::Server(uv_loop_t *loop, ServerOptions options, Handler handler)
    : loop_(loop), options_(std::move(options)), handler_(std::move(handler)),
      readbuf_(new char[read_chunk]) {}

Server::~Server() {
    // The daemon must close() and run the loop until done: libuv still points at our handles.
    assert(!listener_open_ && sessions_.empty());
    if (listen_fd_ >= 0 && !listener_open_) ::close(listen_fd_);
}

void Server::log(const std::string &line) const {
    if (options_.log) options_.log(line);
}

int Server::listen(std::string *message) {
    const std::string &path = options_.path;
    auto fail = [&](int err, const std::string &what) {
        if (message) *message = "control socket " + path + ": " + what;
        return err;
    };
    if (listener_open_) return fail(-EALREADY, "already listening");
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.empty()) return fail(-EINVAL, "no path given");
    if (path.size() >= sizeof sa.sun_path)
        return fail(-ENAMETOOLONG, "path longer than " + std::to_string(sizeof sa.sun_path - 1) +
                                       " bytes; choose a shorter --socket");
    std::memcpy(sa.sun_path, path.data(), path.size());

    if (auto slash = path.rfind('/'); slash != std::string::npos && slash > 0) {
        std::string what;
        if (int r = make_socket_dir(path.substr(0, slash), options_.socket_group, what); r != 0)
            return fail(r, what);
    }

    // An old socket file: remove it only if nobody answers (a crashed vigild's leftover).
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return fail(-EEXIST,
                        "exists and is not a socket; remove it or choose another --socket");
        // Non-blocking: a full backlog must give EAGAIN (somebody is there), not block vigild.
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (probe < 0) return fail(-errno, "socket: " + errno_text(errno));
        int r = connect(probe, reinterpret_cast<sockaddr *>(&sa), sizeof sa);
        int e = errno;
        ::close(probe);
        if (r == 0 || e == EAGAIN)
            return fail(-EADDRINUSE, "another vigild is listening on it; stop it or choose "
                                     "another --socket");
        if (e != ECONNREFUSED && e != ENOENT)
            return fail(-e, "cannot check the old socket: " + errno_text(e));
        if (unlink(path.c_str()) != 0 && errno != ENOENT)
            return fail(-errno, "cannot remove the old socket: " + errno_text(errno));
    }

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return fail(-errno, "socket: " + errno_text(errno));
    // bind() creates the file with 0777 & ~umask: narrow the umask around it so there is no
    // moment at which the socket is more open than it will be. vigild is single-threaded here.
    mode_t old_mask = umask(0177);
    int r = bind(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa);
    int e = errno;
    umask(old_mask);
    if (r != 0) {
        ::close(fd);
        return fail(-e, "bind: " + errno_text(e));
    }
    auto undo = [&](int err, const std::string &what) {
        ::close(fd);
        unlink(path.c_str());
        return fail(-err, what);
    };
    if (options_.socket_group) {
        if (chown(path.c_str(), static_cast<uid_t>(-1), *options_.socket_group) != 0)
            return undo(errno, "cannot give the socket to group " +
                                   std::to_string(*options_.socket_group) + ": " +
                                   errno_text(errno));
        if (chmod(path.c_str(), 0660) != 0) return undo(errno, "chmod 0660: " + errno_text(errno));
    }
    if (::listen(fd, 128) != 0) return undo(errno, "listen: " + errno_text(errno));
    if (stat(path.c_str(), &st) == 0) {
        sock_dev_ = st.st_dev;
        sock_ino_ = st.st_ino;
    }
    if (int ur = uv_poll_init(loop_, &listener_, fd); ur != 0)
        return undo(-ur, std::string("uv_poll_init: ") + uv_strerror(ur));
    listen_fd_ = fd;
    listener_.data = this;
    listener_open_ = true;
    uv_poll_start(&listener_, UV_READABLE, &Server::on_listen_poll);
    return 0;
}

void Server::on_listen_poll(uv_poll_t *h, int status, int /*events*/) {
    auto *srv = static_cast<Server *>(h->data);
    if (status < 0) {
        srv->log(std::string("control: accept: ") + uv_strerror(status));
        return;
    }
    srv->on_acceptable();
}

void Server::on_acceptable() {
    for (int i = 0; i < accepts_per_wakeup && !closing_; ++i) {
        int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log("control: accept: " + errno_text(errno)); // EMFILE: try again later
            return;
        }
        auto s = std::make_shared<Session>(Session::Private{}, this, next_id_++);
        s->fd_ = fd;
        if (int r = uv_poll_init(loop_, &s->poll_, fd); r != 0) {
            log(std::string("control: uv_poll_init: ") + uv_strerror(r));
            ::close(fd);
            continue;
        }
        uv_timer_init(loop_, &s->idle_);
        s->poll_.data = s.get();
        s->idle_.data = s.get();
        s->handles_open_ = 2;
        sessions_.push_back(s);

        ucred cred{};
        socklen_t len = sizeof cred;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
            s->uid_ = cred.uid;
            s->gid_ = cred.gid;
            s->pid_ = cred.pid;
            if (cred.uid == 0 || cred.uid == geteuid()) {
                // full access
            } else if (options_.socket_group && (cred.gid == *options_.socket_group ||
                                                 peer_in_group(fd, *options_.socket_group))) {
                s->read_only_ = true;
            } else {
                s->denied_ = true;
            }
        } else {
            s->denied_ = true;
        }

        s->send(make_hello(options_.server_version), false);
        if (sessions_.size() > options_.max_sessions) {
            log("control: refusing " + s->who() + ": " + std::to_string(options_.max_sessions) +
                " connections already open");
            s->send(make_error(nullptr, ErrorCode::Internal,
                               "too many connections to vigild; try again later"),
                    false);
            s->drain_then_close();
            continue;
        }
        s->update_poll();
        s->arm_idle();
        // vigilctl sends its request without waiting for the hello, so it is often here
        // already: answering now saves the query a wake-up.
        if (s->state_ == Session::State::Open) s->on_readable();
    }
}

void Server::session_closed(Session *s) {
    SessionPtr keep;
    for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
        if (it->get() == s) {
            keep = std::move(*it);
            sessions_.erase(it);
            break;
        }
    }
    s->callbacks_fired_ = true;
    auto cbs = std::move(s->on_close_);
    s->on_close_.clear();
    for (auto &cb : cbs) {
        try {
            if (cb) cb();
        } catch (const std::exception &e) {
            log(std::string("control: on_close callback failed: ") + e.what());
        }
    }
    s->server_ = nullptr; // the session may outlive the server in the daemon's hands
    maybe_done();
}

void Server::close(std::function<void()> done) {
    closing_ = true;
    if (done) done_ = std::move(done);
    if (listener_open_) {
        uv_close(reinterpret_cast<uv_handle_t *>(&listener_), [](uv_handle_t *h) {
            auto *srv = static_cast<Server *>(h->data);
            ::close(srv->listen_fd_);
            srv->listen_fd_ = -1;
            srv->listener_open_ = false;
            srv->maybe_done();
        });
        // Remove the socket file, but only if it is still the one we made (a new vigild may
        // have replaced it).
        struct stat st {};
        if (stat(options_.path.c_str(), &st) == 0 && st.st_dev == sock_dev_ &&
            st.st_ino == sock_ino_)
            unlink(options_.path.c_str());
    }
    auto all = sessions_;
    for (auto &s : all)
        s->close_now();
    maybe_done();
}

void Server::maybe_done() {
    if (!closing_ || listener_open_ || !sessions_.empty() || !done_) return;
    auto d = std::move(done_);
    done_ = nullptr;
    d();
}

std::optional<gid_t> lookup_group(std::string_view name, std::string *error) {
    std::string n(name);
    if (!n.empty() && n.find_first_not_of("0123456789") == std::string::npos && n.size() < 10)
        return static_cast<gid_t>(std::stoul(n));
    std::vector<char> buf(16384);
    group gr{};
    group *res = nullptr;
    int r = getgrnam_r(n.c_str(), &gr, buf.data(), buf.size(), &res);
    if (r == 0 && res) return res->gr_gid;
    if (error)
        *error = r != 0 ? "cannot look up group '" + n + "': " + errno_text(r)
                        : "no group named '" + n + "'";
    return std::nullopt;
}

} // namespace vigil::ctl

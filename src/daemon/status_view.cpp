// status_view.cpp: see status_view.hpp.
#include "status_view.hpp"

#include <algorithm>
#include <filesystem>
#include <system_error>
#include <unistd.h>

#include "vigil/core/names.hpp"

namespace vigil::daemon {

namespace {

// The siblings a stopped child that should run waits for (core::Core::waiting_for): the
// `after` siblings not started yet, or the one a one-at-a-time start sequence waits on.
ctl::Json waiting_for(const core::Core &core, ChildId id) {
    ctl::Json names = ctl::Json::array();
    for (ChildId a : core.waiting_for(id))
        names.push_back(core.status(a).name);
    return names;
}

// The command (stop, restart, signal) that led to the unit's last exit: the newest one between
// the start of the incarnation that exited and its exit record. Null when it ended by itself.
ctl::Json last_exit_by(const core::Core &core, ChildId id) {
    const std::vector<core::Record> h = core.history(id, max_detail_history);
    auto exit = std::find_if(h.rbegin(), h.rend(), [](const core::Record &r) {
        return r.exit.has_value() && r.kind != core::RecordKind::Command;
    });
    for (auto it = exit; it != h.rend(); ++it) {
        if (it->kind == core::RecordKind::Starting || it->kind == core::RecordKind::Started) break;
        if (it->kind != core::RecordKind::Command) continue;
        const std::string verb = it->message.substr(0, it->message.find(' '));
        if (verb != "stop" && verb != "restart" && verb != "signal") continue;
        ctl::Json j{{"command", verb}, {"by", it->subject}};
        if (it->signal) j["signal"] = core::signal_name(*it->signal);
        return j;
    }
    return nullptr;
}

// The supervisor's intensity window as it stands: how many more restarts it takes.
ctl::Json intensity_json(const core::Core &core, ChildId id, TimePoint now) {
    const std::optional<ChildId> parent = core.status(id).parent;
    if (!parent) return nullptr;
    const core::ChildSpec &sup = core.spec(*parent);
    return {{"max", sup.intensity},
            {"period_ms", sup.period.count()},
            {"used", core.restarts_in_window(*parent, now)}};
}

std::string absolute(const std::string &file) {
    if (file.empty() || file.front() == '/') return file;
    std::error_code ec; // getcwd: no blocking
    std::filesystem::path p = std::filesystem::absolute(file, ec);
    return ec ? file : p.lexically_normal().string();
}

// vigild's pid namespace ("pid:[4026531836]"), read once: the pids it shows are pids there.
const std::string &pid_namespace() {
    static const std::string ns = [] {
        char buf[64];
        ssize_t n = ::readlink("/proc/self/ns/pid", buf, sizeof buf);
        return n > 0 && static_cast<std::size_t>(n) < sizeof buf
                   ? std::string(buf, static_cast<std::size_t>(n))
                   : std::string();
    }();
    return ns;
}

void add_detail(Shell &shell, ChildId id, ctl::Json &u) {
    const unit::Unit &unit = shell.unit(id);
    u["description"] = unit.description;
    u["unit_file"] = absolute(unit.file);
    u["command"] = shell.core().spec(id).kind == core::Kind::Service ? ctl::Json(unit.spawn.argv)
                                                                     : ctl::Json::array();
    u["intensity"] = intensity_json(shell.core(), id, shell.os().now());
    u["last_exit_by"] = last_exit_by(shell.core(), id);
    u["pid_namespace"] = pid_namespace().empty() ? ctl::Json(nullptr) : ctl::Json(pid_namespace());
    ctl::Json listen = ctl::Json::array();
    for (const Shell::HeldView &h : shell.held_sockets(id))
        listen.push_back({{"address", h.spec->describe()},
                          {"name", h.spec->name},
                          {"reuseport", h.spec->reuseport},
                          {"open", h.fd >= 0}});
    u["listen"] = std::move(listen);
}

} // namespace

std::vector<ChildId> live_units(const Shell &shell) {
    std::vector<ChildId> ids;
    for (std::uint32_t i = 1; i < shell.core().size(); ++i)
        if (!shell.core().status(ChildId{i}).removed) ids.push_back(ChildId{i});
    return ids;
}

ctl::Json status_json(Shell &shell, const std::vector<ChildId> &ids, bool detail) {
    ctl::Json result = ctl::status_result_json(shell.core(), ids, shell.os().now());
    for (std::size_t i = 0; i < ids.size() && i < result["units"].size(); ++i) {
        const UnitRuntime *r = shell.runtime_if(ids[i]);
        log::UnitLogCounters c = r && r->log ? r->log->counters() : log::UnitLogCounters{};
        ctl::Json &u = result["units"][i];
        u["log_lines_failed"] = c.lines_failed;
        u["forward_dropped"] = c.forward_dropped;
        u["probe_failures"] = r ? r->probe_failures : 0;
        u["waiting_for"] = waiting_for(shell.core(), ids[i]);
        if (detail) add_detail(shell, ids[i], u);
    }
    return result;
}

std::string status_encoded(Shell &shell, const std::vector<ChildId> &ids, bool brief) {
    const core::Core &core = shell.core();
    const TimePoint now = shell.os().now();
    std::string out;
    out.reserve(64 + ids.size() * (brief ? 200 : 700)); // a row is ~670 bytes, brief ~170
    out += "{\"units\":[";
    ctl::StatusExtras x;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const UnitRuntime *r = shell.runtime_if(ids[i]);
        log::UnitLogCounters c = r && r->log ? r->log->counters() : log::UnitLogCounters{};
        x.log_lines_failed = c.lines_failed;
        x.forward_dropped = c.forward_dropped;
        x.probe_failures = r ? r->probe_failures : 0;
        x.waiting_for.clear();
        for (ChildId a : core.waiting_for(ids[i]))
            x.waiting_for.push_back(core.status(a).name);
        if (i > 0) out += ',';
        ctl::append_status(out, core, ids[i], now, x, brief);
    }
    out += "]}";
    return out;
}

http::Snapshot snapshot(Shell &shell) {
    http::Snapshot snap;
    snap.daemon.version = VIGIL_VERSION;
    snap.daemon.rss_bytes = http::self_rss_bytes();
    snap.daemon.open_fds = http::self_open_fds();
    const TimePoint t = shell.os().now();
    for (ChildId id : live_units(shell)) {
        const core::ChildStatus st = shell.core().status(id);
        const UnitRuntime *r = shell.runtime_if(id);
        http::UnitFigures f;
        f.name = st.name;
        f.state = st.exited ? "exited" : core::to_string(st.state);
        f.goal_up = st.goal == core::Goal::Up;
        f.up = st.state == core::ChildState::Running;
        f.ready = st.ready;
        f.restarts_total = st.restarts;
        if (st.last_exit) f.last_exit_code = st.last_exit->shell_code();
        f.probe_failures_total = r ? r->probe_failures : 0;
        if (f.up) f.uptime_seconds = static_cast<double>((t - st.since).count()) / 1000.0;
        snap.units.push_back(std::move(f));
    }
    return snap;
}

} // namespace vigil::daemon

// status_view.cpp: see status_view.hpp.
#include "status_view.hpp"

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

} // namespace

std::vector<ChildId> live_units(const Shell &shell) {
    std::vector<ChildId> ids;
    for (std::uint32_t i = 1; i < shell.core().size(); ++i)
        if (!shell.core().status(ChildId{i}).removed) ids.push_back(ChildId{i});
    return ids;
}

ctl::Json status_json(Shell &shell, const std::vector<ChildId> &ids) {
    ctl::Json result = ctl::status_result_json(shell.core(), ids, shell.os().now());
    for (std::size_t i = 0; i < ids.size() && i < result["units"].size(); ++i) {
        const UnitRuntime *r = shell.runtime_if(ids[i]);
        log::UnitLogCounters c = r && r->log ? r->log->counters() : log::UnitLogCounters{};
        ctl::Json &u = result["units"][i];
        u["log_lines_failed"] = c.lines_failed;
        u["forward_dropped"] = c.forward_dropped;
        u["probe_failures"] = r ? r->probe_failures : 0;
        u["waiting_for"] = waiting_for(shell.core(), ids[i]);
    }
    return result;
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
        f.state = core::to_string(st.state);
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

// checks_view.cpp: see checks_view.hpp.
#include "checks_view.hpp"

#include <algorithm>

namespace vigil::daemon {

namespace {

std::string host_port(const std::string &host, int port) {
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

const char *kind_name(unit::ProbeKind k) {
    switch (k) {
    case unit::ProbeKind::Http:
        return "http";
    case unit::ProbeKind::Tcp:
        return "tcp";
    case unit::ProbeKind::Exec:
        return "exec";
    }
    return "exec";
}

std::string target_of(const unit::ProbeSpec &s) {
    switch (s.kind) {
    case unit::ProbeKind::Http:
        return "http://" + host_port(s.host, s.port) +
               (s.path.empty() || s.path[0] != '/' ? "/" + s.path : s.path);
    case unit::ProbeKind::Tcp:
        return host_port(s.host, s.port);
    case unit::ProbeKind::Exec:
        break;
    }
    std::string cmd;
    for (const std::string &a : s.command)
        cmd += (cmd.empty() ? "" : " ") + a;
    return cmd;
}

ctl::Json failure_json(const UnitRuntime *r, CheckSlot slot) {
    if (!r) return nullptr;
    const auto &f = r->last_failures[static_cast<std::size_t>(slot)];
    if (!f) return nullptr;
    return {{"time", f->wall_ms}, {"message", f->message}};
}

CheckSlot slot_of(std::string_view role) {
    if (role == "startup") return CheckSlot::Startup;
    if (role == "liveness") return CheckSlot::Liveness;
    return CheckSlot::Readiness;
}

probe::Monitor *monitor_of(Shell &shell, ChildId id) {
    UnitRuntime *r = id.value < shell.core().size() ? &shell.runtime(id) : nullptr;
    if (!r || !r->run || !r->run->probes) return nullptr;
    return &r->run->probes->monitor();
}

ctl::Json probe_row(Shell &shell, ChildId id, const NamedProbe &np) {
    const unit::ProbeSpec &s = *np.spec;
    probe::Monitor *m = monitor_of(shell, id);
    const probe::Prober *p = m ? m->prober(np.role) : nullptr;
    const char *state = "off";
    ctl::Json next = nullptr;
    std::int64_t in_a_row = 0;
    std::uint64_t successes = 0, failures = 0;
    if (p) {
        const probe::Verdict v = p->thresholds().verdict();
        state = v == probe::Verdict::Failure   ? "failing"
                : v == probe::Verdict::Success ? "passing"
                                               : "pending";
        if (auto n = p->next_ms()) next = *n;
        in_a_row = p->tally().in_a_row();
        successes = p->tally().successes();
        failures = p->tally().failures();
    }
    return {{"unit", shell.core().spec(id).name},
            {"probe", std::string(np.name)},
            {"kind", kind_name(s.kind)},
            {"target", target_of(s)},
            {"state", state},
            {"in_a_row", in_a_row < 0 ? -in_a_row : in_a_row},
            {"in_a_row_ok", in_a_row >= 0},
            {"successes", successes},
            {"failures", failures},
            {"last_failure", failure_json(shell.runtime_if(id), slot_of(np.role))},
            {"next_ms", std::move(next)},
            {"period_ms", s.period.count()},
            {"threshold", std::max(1u, s.failure_threshold)}};
}

// The watchdog is the core's: armed (an interval) once the service is up, re-armed by each
// WATCHDOG=1 and WATCHDOG_USEC=. Passing while armed: every deadline so far was met.
ctl::Json watchdog_row(Shell &shell, ChildId id, const core::ChildStatus &st) {
    const UnitRuntime *r = shell.runtime_if(id);
    const Run *run = r && r->run && st.pid ? r->run.get() : nullptr;
    const char *state = "off";
    ctl::Json next = nullptr;
    std::optional<Duration> period = st.watchdog ? st.watchdog : shell.unit(id).watchdog;
    if (run && run->watchdog_failures > 0) {
        state = "failing";
    } else if (run && st.watchdog) {
        state = "passing";
        const TimePoint armed = std::max(st.since, run->watchdog_kick);
        const TimePoint due = armed + *st.watchdog;
        const TimePoint now = shell.os().now();
        next = due > now ? (due - now).count() : 0;
    } else if (run && st.state == core::ChildState::Starting) {
        state = "pending"; // armed once the service is up
    }
    const std::uint64_t pings = run ? run->watchdog_pings : 0;
    return {{"unit", st.name},
            {"probe", "watchdog"},
            {"kind", "watchdog"},
            {"target", nullptr},
            {"state", state},
            {"in_a_row", run && run->watchdog_failures > 0 ? 1 : pings},
            {"in_a_row_ok", !(run && run->watchdog_failures > 0)},
            {"successes", pings},
            {"failures", run ? run->watchdog_failures : 0},
            {"last_failure", failure_json(r, CheckSlot::Watchdog)},
            {"next_ms", std::move(next)},
            {"period_ms", period ? ctl::Json(period->count()) : ctl::Json(nullptr)},
            {"threshold", 1}};
}

} // namespace

std::vector<NamedProbe> probes_of(const unit::Unit &u) {
    std::vector<NamedProbe> v;
    if (u.startup) v.push_back({"startup", "startup", &*u.startup});
    if (u.liveness) v.push_back({"liveness", "liveness", &*u.liveness});
    if (u.readiness)
        v.push_back({"readiness", "readiness", &*u.readiness});
    else if (u.ready.probe)
        v.push_back({"ready", "readiness", &*u.ready.probe});
    return v;
}

ctl::Json checks_json(Shell &shell, const std::vector<ChildId> &ids) {
    ctl::Json rows = ctl::Json::array();
    for (ChildId id : ids) {
        const core::ChildStatus st = shell.core().status(id);
        if (st.removed || st.kind != core::Kind::Service) continue;
        const unit::Unit &u = shell.unit(id);
        for (const NamedProbe &np : probes_of(u))
            rows.push_back(probe_row(shell, id, np));
        if (u.watchdog || st.watchdog) rows.push_back(watchdog_row(shell, id, st));
    }
    return {{"checks", std::move(rows)}};
}

probe::Prober *running_prober(Shell &shell, ChildId id, std::string_view role) {
    probe::Monitor *m = monitor_of(shell, id);
    return m ? m->prober(role) : nullptr;
}

} // namespace vigil::daemon

// health.cpp: what a service says about itself and what vigild checks: its probes, its ready fd,
// its notify socket (READY=1, MAINPID=, STATUS=, STOPPING=1, WATCHDOG=...). Each becomes a core
// event; whether it counts is the core's decision.
#include "shell.hpp"

#include <algorithm>

namespace vigil::daemon {

namespace {

// Messages kept from a service whose spawn is not answered yet (see Run::early_notes).
constexpr std::size_t max_early_notes = 32;
// sd_notify's STATUS= is shown in `vigilctl status`: a bounded line.
constexpr std::size_t max_status_text = 512;
// WATCHDOG_USEC= beyond this (a year) is taken as this: no overflow in milliseconds.
constexpr std::uint64_t max_watchdog_usec = 365ULL * 24 * 3600 * 1000 * 1000;

} // namespace

void Shell::act(const core::StartProbes &a) {
    start_probes(a.child, a.incarnation, std::nullopt);
}

void Shell::start_probes(ChildId id, Incarnation inc,
                         const std::optional<probe::MonitorState> &from) {
    Run *run = find_run(id, inc);
    if (!run) return;
    const unit::Unit &u = units_[id.value];
    probe::MonitorSpecs specs = probe::specs_for(u);
    if (specs.empty()) return;
    probe::Monitor::Callbacks cb;
    // The probe that decides readiness (readiness, or ready's) is also a readiness method: its
    // first success is the service's readiness (vigil.unit(5)); every verdict moves `ready`.
    cb.on_ready = [this, id, inc](bool ok) {
        feed(core::ProbeReadiness{id, inc, ok, "readiness probe failed"});
        if (ok) became_ready(id, inc);
    };
    cb.on_failed = [this, id, inc](core::FailureCause cause, const std::string &detail) {
        feed(core::HealthFailed{id, inc, cause, "", detail});
    };
    cb.on_checked = [this, id](const std::string &role, const probe::CheckResult &c) {
        if (c.ok) return;
        UnitRuntime &r = runtime(id);
        ++r.probe_failures;
        const CheckSlot slot = role == "startup"    ? CheckSlot::Startup
                               : role == "liveness" ? CheckSlot::Liveness
                                                    : CheckSlot::Readiness;
        note_check_failure(r, slot, c.detail);
    };
    probe::ExecSpawn exec;
    exec.spawn = [this](proc::SpawnSpec spec, proc::SpawnExtras extras,
                        std::function<void(proc::SpawnCompletion)> done) {
        os_.spawn(std::move(spec), std::move(extras), std::move(done));
    };
    exec.base = u.spawn;
    run->probes = os_.start_probes(u.name, std::move(specs), std::move(cb), std::move(exec), from);
}

void Shell::note_check_failure(UnitRuntime &r, CheckSlot slot, std::string_view message) {
    r.last_failures[static_cast<std::size_t>(slot)] =
        CheckFailure{os_.wall_ms(), std::string(message.substr(0, CheckFailure::max_message))};
}

void Shell::act(const core::StopProbes &a) {
    UnitRuntime &r = runtime(a.child);
    if (r.run) r.run->probes.reset();
}

void Shell::became_ready(ChildId id, Incarnation inc) {
    UnitRuntime &r = runtime(id);
    if (!r.run || r.run->incarnation != inc || r.run->ready_sent) return;
    if (r.run->pid <= 0) { // before the spawn's answer: the core does not know the pid yet
        r.run->ready_early = true;
        return;
    }
    r.run->ready_sent = true;
    r.run->ready_log.reset(); // matching stops: it costs nothing from now on
    feed(core::BecameReady{id, inc});
}

// The notify socket is the unit's, kept across incarnations; a datagram counts for the current
// incarnation when its sender (the kernel's SCM_CREDENTIALS) belongs to it.
bool Shell::open_notify(ChildId id, std::string &error) {
    UnitRuntime &r = runtime(id);
    if (r.notify) return true;
    r.notify = os_.open_notify(units_[id.value].name, notify_callbacks(id), &error);
    if (!r.notify) error = units_[id.value].name + ": " + error;
    return r.notify != nullptr;
}

notify::NotifySocket::Callbacks Shell::notify_callbacks(ChildId id) {
    notify::NotifySocket::Callbacks cb;
    cb.owns = [this, id](int pid) { return owns(id, pid); };
    cb.message = [this, id](const notify::Message &m, int pid) { on_notify(id, m, pid); };
    cb.refused = [this, id](int pid, const std::string &why) {
        journal_.limited("notify", LogLevel::Warn,
                         units_[id.value].name + ": refused a notification from pid " +
                             std::to_string(pid) + ": " + why,
                         os_.loop_time());
    };
    return cb;
}

// The sender is the spawned process or the main process, or runs in the service's session
// (grandchildren such as systemd-notify inherit it unless they call setsid()).
bool Shell::owns(ChildId id, int pid) {
    const UnitRuntime &r = runtime(id);
    if (!r.run || pid <= 0) return false;
    if (r.run->pid <= 0) return true; // kept, and checked once the spawn is answered
    if (pid == r.run->pid || pid == r.run->main_pid) return true;
    const auto ids = os_.proc_ids(pid);
    return ids && ids->session == r.run->pid;
}

namespace {

// What the OS says against MAINPID=N for a service spawned as `session` (the core adds its own
// reasons): like systemd, which takes a MAINPID= only in the service's cgroup.
std::string main_pid_refusal(Os &os, int pid, int session) {
    if (pid == os.self_pid()) return "that is vigild itself";
    const auto ids = os.proc_ids(pid);
    if (!ids) return "no such process";
    if (ids->state == 'Z') return "the process has exited";
    if (ids->session != session)
        return "the process is not part of the service (session " + std::to_string(ids->session) +
               ", not " + std::to_string(session) + ")";
    return {};
}

} // namespace

void Shell::on_notify(ChildId id, const notify::Message &m, int sender) {
    UnitRuntime &r = runtime(id);
    if (!r.run) return;
    if (r.run->pid <= 0) {
        if (r.run->early_notes.size() < max_early_notes) {
            const auto ids = os_.proc_ids(sender);
            r.run->early_notes.push_back({m, sender, ids ? ids->session : -1});
        }
        return;
    }
    const Incarnation inc = r.run->incarnation;
    const int session = r.run->pid;
    // MAINPID= before READY=1, as systemd reads them: "READY=1\nMAINPID=N" makes N the main
    // process of a service that is then ready.
    if (m.main_pid)
        feed(core::MainPidReported{id, inc, Pid{*m.main_pid},
                                   main_pid_refusal(os_, *m.main_pid, session)});
    if (m.status) feed(core::StatusText{id, inc, m.status->substr(0, max_status_text)});
    if (m.watchdog_usec) {
        // Rounded up: 500 us is a short interval, not 0 (which switches the watchdog off).
        const std::uint64_t usec = std::min(*m.watchdog_usec, max_watchdog_usec);
        r.run->watchdog_kick = os_.now();
        feed(core::WatchdogInterval{id, inc,
                                    Duration{static_cast<std::int64_t>((usec + 999) / 1000)}});
    }
    if (m.watchdog) {
        ++r.run->watchdog_pings;
        r.run->watchdog_kick = os_.now();
        feed(core::WatchdogPing{id, inc});
    }
    if (m.ready) became_ready(id, inc);
    if (m.stopping) feed(core::StoppingReported{id, inc});
    if (m.watchdog_trigger)
        feed(core::HealthFailed{id, inc, core::FailureCause::Watchdog, "",
                                "the service sent WATCHDOG=trigger"});
}

// The spawn is answered: what the service said before, in order, now that its pid is known.
void Shell::replay_early(ChildId id, Incarnation inc) {
    Run *run = find_run(id, inc);
    if (!run || run != runtime(id).run.get()) return;
    auto notes = std::move(run->early_notes);
    run->early_notes.clear();
    const bool ready = run->ready_early;
    run->ready_early = false;
    for (const Run::EarlyNote &n : notes) {
        const int sender = n.sender;
        if ((n.session > 0 && n.session == run->pid) || owns(id, sender))
            on_notify(id, n.message, sender);
        else
            journal_.limited("notify", LogLevel::Warn,
                             units_[id.value].name + ": refused a notification from pid " +
                                 std::to_string(sender) + ": not part of the service",
                             os_.loop_time());
    }
    if (ready) became_ready(id, inc);
}

} // namespace vigil::daemon

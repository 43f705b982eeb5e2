// lifecycle.cpp: one child's life: start, started, stop, and the end of an incarnation (its
// main process ended and its output drained: include/vigil/core/state.hpp).
#include "impl.hpp"

#include "vigil/core/names.hpp"

namespace vigil::core {

// Starts a new incarnation of `c` now. Callers have checked that the parent allows it (its
// sequence is at `c`, or nothing in the parent decides when `c` starts). A service only gets a
// Spawn here; it becomes Running when the shell answers Spawned (or BecameReady), and that answer
// is what lets the parent's start sequence move on (item 1).
void Core::Impl::start_child(ChildId c) {
    Node &n = node(c);
    n.goal = Goal::Up;
    n.backoff_until.reset();
    n.stop_cause = StopCause::None;
    n.health = {};
    n.started = false;
    n.ready = false;
    n.held_down = false;
    n.in_set = false;
    n.exited = false;
    n.dropped = false; // a temporary child started again (a command): a new incarnation
    n.inc.value++;
    n.run_since = now;
    if (n.spec.kind == Kind::Service) {
        n.pid.reset();
        n.main_pid.reset();
        n.main_exit.reset();
        n.drained = false;
        n.probe_ready = !n.spec.readiness_probe;
        n.watchdog = n.spec.watchdog;
        n.status_text.clear();
        set_state(c, ChildState::Starting);
        if (n.spec.start_timeout) arm(c, now + *n.spec.start_timeout);
        emit(Spawn{c, n.inc});
        return;
    }
    // A supervisor (re)starts as OTP's init/1 would: every kept child spec is wanted up again,
    // temporary ones included, with an empty restart history (item 28).
    set_state(c, ChildState::Starting);
    n.intensity.clear();
    for (ChildId k : n.spec.children) {
        Node &kn = node(k);
        kn.goal = Goal::Up;
        kn.dropped = false;
        kn.joined_start = false;
        kn.retrying = false;
    }
    n.plan = Plan{Phase::Starting, false, 0, 0, 0};
    publish(c, RecordKind::Starting,
            "starting " + std::to_string(n.spec.children.size()) + " children");
    schedule(c);
}

// The signal to everything the incarnation consists of (the shell knows what that is: cgroup,
// process group, a main process that left it).
void Core::Impl::signal_group(ChildId c, int sig, bool then_cont) {
    Node &n = node(c);
    if (n.pid) emit(Signal{c, n.inc, *n.pid, sig, then_cont});
}

// Probes go first so a probe cannot report the child we are stopping as failed (which would be
// a second, bogus stop cause). SIGCONT follows a graceful signal, as systemd sends it: a stopped
// process must be able to act on its SIGTERM. brutal_kill (stop signal SIGKILL) arms no timer:
// there is nothing to escalate to (item 34). A missing timeout is `infinity` (item 36).
void Core::Impl::send_stop(ChildId c) {
    Node &n = node(c);
    const int sig =
        kill_all || n.stop_cause == StopCause::StartTimeout ? sig_kill : n.spec.stop.signal;
    emit(StopProbes{c});
    signal_group(c, sig, sig != sig_kill);
    std::string msg = "sent " + signal_name(sig);
    if (sig != sig_kill) {
        if (n.spec.stop.timeout) {
            arm(c, now + *n.spec.stop.timeout);
            msg += " (stop timeout " + format_duration(*n.spec.stop.timeout) + ")";
        } else {
            msg += " (no stop timeout)";
        }
    }
    msg += std::string("; asked by ") + cause_text(n.stop_cause);
    Facts f{record_cause(n.stop_cause), n.main_pid, std::nullopt, sig};
    if (n.stop_cause == StopCause::Health) {
        f.cause = n.health.cause;
        f.subject = n.health.subject;
    }
    publish(c, RecordKind::Stopping, std::move(msg), std::move(f));
}

// The drain (StopSpec::drain) before the stop signal of a service that is up: it shows as not
// ready (it is Stopping), its probes stop, and the timer is the drain's; on_deadline() then sends
// the signal, or main_ended() cuts the drain short. Returns false (signal now) for a service
// that has not started (nothing is routed to it yet), a health or start-timeout stop (it is
// broken, or not up), and once the tree is being killed.
bool Core::Impl::start_drain(ChildId c, bool was_started) {
    Node &n = node(c);
    const Duration d = n.spec.stop.drain;
    if (d.count() <= 0 || !was_started || kill_all || n.stop_cause == StopCause::Health ||
        n.stop_cause == StopCause::StartTimeout)
        return false;
    n.drain_until = now + d;
    emit(StopProbes{c});
    arm(c, *n.drain_until);
    publish(c, RecordKind::Notice,
            "draining for " + format_duration(d) + " before " + signal_name(n.spec.stop.signal) +
                "; asked by " + cause_text(n.stop_cause),
            Facts{record_cause(n.stop_cause), n.main_pid});
    return true;
}

// Begins stopping `c`; returns true when it is already down.
bool Core::Impl::stop_child(ChildId c, StopCause cause) {
    Node &n = node(c);
    switch (n.state) {
    case ChildState::Stopped:
        return true;
    case ChildState::Backoff:
        set_state(c, ChildState::Stopped);
        n.backoff_until.reset();
        if (cause == StopCause::Manual || cause == StopCause::Removed) {
            // Status says why it is down now, as for a running child stopped the same way;
            // the exit that led to the backoff stays in last_exit.
            n.last_cause = record_cause(cause);
            n.last_reason =
                std::string("stopped by ") + cause_text(cause) + " (pending restart cancelled)";
            publish(c, RecordKind::Stopped, "pending restart cancelled",
                    Facts{record_cause(cause)});
        }
        return true;
    case ChildState::Stopping:
        n.stop_cause = stronger(n.stop_cause, cause);
        return false;
    case ChildState::Starting:
    case ChildState::Running: {
        n.stop_cause = cause;
        const std::uint64_t leftover_timer = n.main_exit ? n.timer_seq : 0;
        const bool was_started = n.state == ChildState::Running && n.started;
        set_state(c, ChildState::Stopping);
        if (n.spec.kind == Kind::Supervisor) {
            // A finite stop timeout on a supervisor bounds its whole ordered shutdown, as OTP's
            // exit(Sup, kill) after the shutdown time would (item 36 is the default).
            if (n.spec.stop.timeout) arm(c, now + *n.spec.stop.timeout);
            begin_terminal(c);
            return false;
        }
        // The main process already ended: what is left got its stop signal then; the end is
        // reported once it has drained, or when that wait's timer (kept) kills it.
        if (n.main_exit) {
            n.timer_seq = leftover_timer;
            return false;
        }
        // Without a pid the Spawn is not answered yet: the signal goes out on Spawned.
        if (n.pid && !start_drain(c, was_started)) send_stop(c);
        return false;
    }
    }
    return true;
}

void Core::Impl::mark_started(ChildId c, std::string msg) {
    Node &n = node(c);
    set_state(c, ChildState::Running);
    n.started = true;
    n.ready = true;
    n.manual_start = false; // from now on a failure is a crash, retried as usual
    n.retrying = false;
    publish(c, n.spec.wait_ready ? RecordKind::Ready : RecordKind::Started, std::move(msg),
            Facts{Cause::None, n.main_pid});
    arm_watchdog(c);
    settled(c);
}

// Like systemd, the watchdog runs once the service is up; WATCHDOG=1 re-arms it.
void Core::Impl::arm_watchdog(ChildId c) {
    Node &n = node(c);
    if (n.state != ChildState::Running || n.main_exit) return;
    if (n.watchdog && n.watchdog->count() > 0)
        arm(c, now + *n.watchdog);
    else
        disarm(c);
}

// The main process of `c` ended. The end is reported at once when the output has drained;
// otherwise what is left of the incarnation gets the stop signal now (unless a stop is already
// under way) and the stop timeout to go, as vigil.unit(5) promises.
void Core::Impl::main_ended(ChildId c, ExitStatus status) {
    Node &n = node(c);
    n.main_exit = status;
    emit(StopProbes{c});
    // An exit during the drain ends it: what is left gets the stop signal now, as below.
    const bool draining = n.drain_until.has_value();
    n.drain_until.reset();
    if (n.drained) {
        finish_exit(c);
        return;
    }
    if (n.state != ChildState::Stopping || draining) {
        const int sig = kill_all ? sig_kill : n.spec.stop.signal;
        signal_group(c, sig, sig != sig_kill);
        disarm(c);
    }
    // The wait for what is left is bounded by the stop timeout (a stop under way keeps its
    // timer); even after SIGKILL, a process that left the group may hold the pipes. With an
    // infinite stop timeout the end waits for the output, as the unit asked.
    if (node(c).timer_seq == 0 && n.spec.stop.timeout) arm(c, now + *n.spec.stop.timeout);
}

// Both facts are in (main process ended, output drained), or the wait for leftovers is over.
void Core::Impl::finish_exit(ChildId c) {
    Node &n = node(c);
    const ExitStatus status = *n.main_exit;
    n.main_exit.reset();
    n.drained = false;
    n.pid.reset();
    n.main_pid.reset();
    n.last_exit = status;
    switch (n.state) {
    case ChildState::Starting:
        exited_while_starting(c, status);
        return;
    case ChildState::Running:
        exited_while_running(c, status);
        return;
    case ChildState::Stopping:
        set_state(c, ChildState::Stopped);
        on_down(c, DownKind::Stopped, RecordKind::Stopped, describe_exit(status),
                Facts{Cause::None, std::nullopt, status});
        return;
    case ChildState::Stopped:
    case ChildState::Backoff:
        return;
    }
}

void Core::Impl::exited_while_starting(ChildId c, ExitStatus status) {
    Node &n = node(c);
    set_state(c, ChildState::Stopped);
    n.last_cause = Cause::Exited;
    n.last_reason = describe_exit(status) + " before it was ready";
    on_down(c, DownKind::StartFailed, RecordKind::Exited, n.last_reason,
            Facts{Cause::Exited, std::nullopt, status});
}

void Core::Impl::exited_while_running(ChildId c, ExitStatus status) {
    Node &n = node(c);
    set_state(c, ChildState::Stopped);
    const bool normal = !status.signaled && status.code == 0;
    n.last_cause = Cause::Exited;
    n.last_reason = describe_exit(status);
    on_down(c, normal ? DownKind::Normal : DownKind::Abnormal, RecordKind::Exited, n.last_reason,
            Facts{Cause::Exited, std::nullopt, status});
}

// A health failure (probe, watchdog, pattern) stops the incarnation; its end is then judged
// abnormal (decide.cpp).
void Core::Impl::health_failure(ChildId c, HealthStop stop) {
    Node &n = node(c);
    publish(c, RecordKind::Unhealthy, stop.text + "; stopping",
            Facts{stop.cause, n.main_pid, std::nullopt, std::nullopt, std::nullopt, stop.subject});
    stop_child(c, StopCause::Health);
    n.health = std::move(stop);
}

// SIGKILL the incarnation of `c` now (a second shutdown, a supervisor's stop timeout). Its stop
// sequence goes on and only collects the exit.
void Core::Impl::kill_now(ChildId c, std::string why) {
    Node &n = node(c);
    if (!n.pid) return;
    if (n.main_exit) {
        signal_group(c, sig_kill);
        publish(c, RecordKind::Killed, std::move(why),
                Facts{Cause::Leftover, n.main_pid, std::nullopt, sig_kill});
        finish_exit(c);
        return;
    }
    switch (n.state) {
    case ChildState::Starting:
    case ChildState::Running:
        emit(StopProbes{c});
        n.stop_cause = StopCause::Plan;
        [[fallthrough]];
    case ChildState::Stopping:
        set_state(c, ChildState::Stopping);
        signal_group(c, sig_kill);
        publish(c, RecordKind::Killed, std::move(why),
                Facts{record_cause(n.stop_cause), n.main_pid, std::nullopt, sig_kill});
        break;
    case ChildState::Stopped:
    case ChildState::Backoff:
        break;
    }
}

// SIGKILL every live process under supervisor `s` (its stop timeout passed). The stop
// sequences inside go on and now only collect the exits.
void Core::Impl::kill_subtree(ChildId s, const char *why) {
    std::vector<ChildId> stack{s};
    while (!stack.empty()) {
        const ChildId k = stack.back();
        stack.pop_back();
        const Node &kn = node(k);
        if (kn.spec.kind == Kind::Supervisor) {
            for (auto it = kn.spec.children.rbegin(); it != kn.spec.children.rend(); ++it)
                stack.push_back(*it);
            continue;
        }
        kill_now(k, why);
    }
}

} // namespace vigil::core

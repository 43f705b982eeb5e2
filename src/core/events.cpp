// events.cpp: the shell's events, and deadlines. Each handler checks that the event belongs to
// the child's current incarnation and fits its state (a `switch` over every state); anything else
// is counted in dropped_events and changes nothing.
#include "impl.hpp"

#include <algorithm>

#include "vigil/core/names.hpp"

namespace vigil::core {

// Staleness (docs/house-style.md §7.4): a process event counts only for the child's current
// incarnation. An old one (a late SIGCHLD, a pid the kernel reused) is counted and dropped.
bool Core::Impl::current(ChildId c, Incarnation inc) {
    if (!valid(c) || !is_service(c) || node(c).inc != inc) {
        ++dropped_events;
        return false;
    }
    return true;
}

void Core::Impl::on_event(const Spawned &ev) {
    if (!current(ev.child, ev.incarnation)) return;
    Node &n = node(ev.child);
    if (n.pid || (n.state != ChildState::Starting && n.state != ChildState::Stopping)) {
        ++dropped_events;
        return;
    }
    n.pid = ev.pid;
    n.main_pid = ev.pid;
    if (n.state == ChildState::Stopping) {
        send_stop(ev.child); // a stop arrived before the spawn was answered
        return;
    }
    emit(StartProbes{ev.child, n.inc});
    if (!n.spec.wait_ready) {
        mark_started(ev.child, "started, pid " + std::to_string(ev.pid.value));
        return;
    }
    publish(ev.child, RecordKind::Starting,
            "spawned, pid " + std::to_string(ev.pid.value) + "; waiting for readiness",
            Facts{Cause::None, ev.pid});
}

void Core::Impl::on_event(const SpawnFailed &ev) {
    if (!current(ev.child, ev.incarnation)) return;
    Node &n = node(ev.child);
    if (n.pid || (n.state != ChildState::Starting && n.state != ChildState::Stopping)) {
        ++dropped_events;
        return;
    }
    const bool stopping = n.state == ChildState::Stopping;
    set_state(ev.child, ChildState::Stopped);
    n.last_cause = Cause::SpawnFailed;
    n.last_reason = ev.reason;
    on_down(ev.child, stopping ? DownKind::Stopped : DownKind::StartFailed, RecordKind::SpawnFailed,
            "failed to start: " + ev.reason, Facts{Cause::SpawnFailed});
}

void Core::Impl::on_event(const Exited &ev) {
    if (!current(ev.child, ev.incarnation)) return;
    Node &n = node(ev.child);
    const bool live = n.state == ChildState::Starting || n.state == ChildState::Running ||
                      n.state == ChildState::Stopping;
    if (!live || !n.pid || n.main_exit) {
        ++dropped_events;
        return;
    }
    if (n.main_pid && ev.pid == *n.main_pid) {
        main_ended(ev.child, ev.status);
        return;
    }
    // The spawned process of a service that handed the main role over (MAINPID=): expected.
    if (ev.pid == *n.pid) return;
    ++dropped_events;
}

void Core::Impl::on_event(const Drained &ev) {
    if (!current(ev.child, ev.incarnation)) return;
    Node &n = node(ev.child);
    if (!n.pid || n.drained) {
        ++dropped_events;
        return;
    }
    n.drained = true;
    if (n.main_exit) finish_exit(ev.child);
}

void Core::Impl::on_event(const BecameReady &ev) {
    if (!current(ev.child, ev.incarnation)) return;
    Node &n = node(ev.child);
    if (!n.pid || n.main_exit) {
        ++dropped_events;
        return;
    }
    switch (n.state) {
    case ChildState::Starting:
        if (!n.spec.wait_ready) break;
        mark_started(ev.child, "ready, pid " + std::to_string(n.main_pid->value));
        return;
    case ChildState::Running:
        n.ready = true;
        return; // a repeated READY=1
    case ChildState::Stopped:
    case ChildState::Stopping:
    case ChildState::Backoff:
        break;
    }
    ++dropped_events;
}

void Core::Impl::on_event(const ProbeReadiness &ev) {
    if (!current(ev.child, ev.incarnation)) return;
    Node &n = node(ev.child);
    if (!n.pid || n.main_exit || n.probe_ready == ev.ready) {
        if (!n.pid || n.main_exit) ++dropped_events;
        return;
    }
    n.probe_ready = ev.ready;
    // Only a change the status shows is recorded: before the start, readiness is not shown.
    if (n.state != ChildState::Running) return;
    if (ev.ready)
        publish(ev.child, RecordKind::Ready, "readiness probe passed; ready again");
    else
        publish(ev.child, RecordKind::NotReady, ev.detail + "; not ready");
}

void Core::Impl::on_event(const HealthFailed &ev) {
    if (!current(ev.child, ev.incarnation)) return;
    Node &n = node(ev.child);
    const bool up = n.state == ChildState::Starting || n.state == ChildState::Running;
    if (!up || !n.pid || n.main_exit) {
        ++dropped_events;
        return;
    }
    std::string text = std::string(to_string(ev.cause)) + " failure";
    if (!ev.subject.empty()) text += ": " + ev.subject;
    if (!ev.detail.empty()) text += ": " + ev.detail;
    health_failure(ev.child, HealthStop{record_cause(ev.cause), ev.subject, text});
}

void Core::Impl::on_event(const PatternFired &ev) {
    if (!current(ev.child, ev.incarnation)) return;
    Node &n = node(ev.child);
    const bool up = n.state == ChildState::Starting || n.state == ChildState::Running;
    const std::string subject = "pattern /" + ev.pattern + "/";
    const std::string what = subject + " matched: " + ev.line;
    switch (ev.action) {
    case PatternAction::Event:
        publish(ev.child, RecordKind::Notice, what,
                Facts{Cause::Pattern, n.main_pid, {}, {}, {}, subject});
        return;
    case PatternAction::Stop: {
        if (!up || !n.pid || n.main_exit) break;
        publish(ev.child, RecordKind::Notice, what + "; stopping",
                Facts{Cause::Pattern, n.main_pid, {}, {}, {}, subject});
        stop_command(ev.child, Command{CommandKind::Stop, ev.child, 0, subject});
        return;
    }
    case PatternAction::Restart:
    case PatternAction::Unhealthy:
        if (!up || !n.pid || n.main_exit) break;
        health_failure(ev.child, HealthStop{Cause::Pattern, subject,
                                            std::string(ev.action == PatternAction::Restart
                                                            ? "restart asked by "
                                                            : "unhealthy: ") +
                                                what});
        return;
    }
    ++dropped_events;
}

// Why the core refuses MAINPID=N for `c` (besides what the shell found), or "".
std::string Core::Impl::main_pid_refusal(ChildId c, Pid pid) const {
    const Node &n = node(c);
    if (n.main_exit) return "the main process has ended already";
    if (n.state != ChildState::Starting && n.state != ChildState::Running &&
        n.state != ChildState::Stopping)
        return "the service is not running";
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        const Node &o = nodes[i];
        if (i == c.value || !o.pid) continue;
        if (*o.pid == pid || (o.main_pid && *o.main_pid == pid))
            return "the process belongs to unit " + o.spec.name;
    }
    return {};
}

void Core::Impl::on_event(const MainPidReported &ev) {
    if (!current(ev.child, ev.incarnation)) return;
    Node &n = node(ev.child);
    if (!n.pid) {
        ++dropped_events;
        return;
    }
    if (n.main_pid && *n.main_pid == ev.pid) return;
    std::string why = ev.refusal.empty() ? main_pid_refusal(ev.child, ev.pid) : ev.refusal;
    const std::string pid = std::to_string(ev.pid.value);
    if (!why.empty()) {
        publish(ev.child, RecordKind::Notice, "ignored MAINPID=" + pid + ": " + why,
                Facts{Cause::MainPid, ev.pid});
        return;
    }
    publish(ev.child, RecordKind::Notice,
            "main process is now pid " + pid + " (MAINPID=; was " +
                std::to_string(n.main_pid->value) + ")",
            Facts{Cause::MainPid, ev.pid});
    n.main_pid = ev.pid;
    emit(WatchMain{ev.child, n.inc, ev.pid});
}

void Core::Impl::on_event(const WatchdogPing &ev) {
    if (!current(ev.child, ev.incarnation)) return;
    const Node &n = node(ev.child);
    if (n.state == ChildState::Running && n.timer_seq != 0) arm_watchdog(ev.child);
}

void Core::Impl::on_event(const WatchdogInterval &ev) {
    if (!current(ev.child, ev.incarnation)) return;
    Node &n = node(ev.child);
    // systemd: a new WATCHDOG_USEC= also restarts the countdown; 0 switches the watchdog off.
    n.watchdog = ev.interval.count() > 0 ? std::optional<Duration>(ev.interval) : std::nullopt;
    if (n.state == ChildState::Running) arm_watchdog(ev.child);
}

void Core::Impl::on_event(const StatusText &ev) {
    if (!current(ev.child, ev.incarnation)) return;
    node(ev.child).status_text = ev.text;
}

void Core::Impl::on_event(const StoppingReported &ev) {
    if (!current(ev.child, ev.incarnation)) return;
    const Node &n = node(ev.child);
    publish(ev.child, RecordKind::Notice, "the service reported STOPPING=1",
            Facts{Cause::Notify, n.main_pid});
}

// Not an incarnation's event (they outlived theirs): kept while the shell reports them, at
// most max_left_behind of them.
void Core::Impl::on_event(const LeftBehind &ev) {
    if (!valid(ev.child) || !is_service(ev.child)) {
        ++dropped_events;
        return;
    }
    constexpr std::size_t max_left_behind = 16;
    Node &n = node(ev.child);
    std::vector<Pid> pids(ev.pids.begin(), ev.pids.begin() + static_cast<std::ptrdiff_t>(std::min(
                                                                 ev.pids.size(), max_left_behind)));
    if (pids == n.left_behind) return;
    n.left_behind = std::move(pids);
    if (n.left_behind.empty()) return;
    std::string list;
    for (Pid p : n.left_behind)
        list += (list.empty() ? "" : ", ") + std::to_string(p.value);
    publish(ev.child, RecordKind::Notice,
            "processes left behind: " + list +
                " (they left the service's process group, and it has no cgroup to hold them; "
                "a stop does not reach them)",
            Facts{Cause::Leftover});
}

// Every due deadline, in (when, seq) order. Each one is interpreted by the state its child is in
// now: the timer was cancelled if the child left the state (set_state() zeroes timer_seq), so a
// stale entry is recognised by its seq and skipped. The work queue is drained after each deadline
// so two deadlines at the same instant act in the order they were armed.
void Core::Impl::on_event(const DeadlineReached &) {
    while (!deadlines.empty() && deadlines.top().when <= now) {
        const DeadlineEntry e = deadlines.top();
        deadlines.pop();
        if (!valid(e.child) || node(e.child).timer_seq != e.seq) continue; // cancelled
        node(e.child).timer_seq = 0;
        on_deadline(e.child);
        drain();
    }
}

void Core::Impl::on_deadline(ChildId c) {
    Node &n = node(c);
    const std::string timeout = format_duration(n.spec.stop.timeout.value_or(Duration{0}));
    if (n.main_exit) {
        // What the main process left behind did not go within the stop timeout.
        kill_now(c, "processes left after the main process ended were still there after " +
                        timeout + "; sent SIGKILL");
        return;
    }
    switch (n.state) {
    case ChildState::Starting:
        // Start timeout: kill the whole group now; its exit is a start failure.
        n.stop_cause = StopCause::StartTimeout;
        set_state(c, ChildState::Stopping);
        publish(c, RecordKind::StartFailed,
                "not started within " +
                    format_duration(n.spec.start_timeout.value_or(Duration{0})) + "; sent SIGKILL",
                Facts{Cause::StartTimeout, n.main_pid, std::nullopt, sig_kill});
        if (n.pid) {
            emit(StopProbes{c});
            signal_group(c, sig_kill);
        }
        return;
    case ChildState::Running:
        health_failure(c, HealthStop{Cause::Watchdog, "watchdog",
                                     "watchdog failure: no WATCHDOG=1 within " +
                                         format_duration(n.watchdog.value_or(Duration{0}))});
        return;
    case ChildState::Stopping:
        if (n.drain_until) { // the drain is over: now the stop signal, and its timeout
            n.drain_until.reset();
            send_stop(c);
            return;
        }
        // Item 35/41: the stop timeout passed; kill, report, and go on.
        if (n.spec.kind == Kind::Supervisor) {
            publish(c, RecordKind::Killed,
                    "stop timeout " + timeout + " passed; killing its subtree",
                    Facts{record_cause(n.stop_cause)});
            kill_subtree(c, "the stop timeout of a supervisor above passed; sent SIGKILL");
        } else if (n.pid) {
            signal_group(c, sig_kill);
            publish(c, RecordKind::Killed, "stop timeout " + timeout + " passed; sent SIGKILL",
                    Facts{record_cause(n.stop_cause), n.main_pid, std::nullopt, sig_kill});
        }
        return;
    case ChildState::Backoff:
        plan_starts(*n.spec.parent, n.index) ? schedule(*n.spec.parent) : start_child(c);
        return;
    case ChildState::Stopped:
        return;
    }
}

} // namespace vigil::core

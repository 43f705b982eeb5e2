// decide.cpp: a child is down, and its parent decides what follows (items 3-5, 7-33, 39, 43-48):
// who wanted it down, whether anybody may decide now, restart or not (restart type), the
// restart intensity, the backoff delay, the strategy, and auto-shutdown.
#include "impl.hpp"

#include "backoff.hpp"
#include "vigil/core/names.hpp"

namespace vigil::core {

// A temporary child is down for good, as far as its supervisor is concerned (items 9, 18, 50):
// never restarted, passed over by sweeps. Unlike OTP, its spec stays in view with its last exit,
// logs and events, and a start command starts it again (docs/otp-departures.md, item 9).
void Core::Impl::drop(ChildId c, const char *why) {
    Node &n = node(c);
    if (n.dropped) return;
    n.dropped = true;
    n.goal = Goal::Down;
    publish(c, RecordKind::Notice,
            std::string("temporary child ") + why + "; not started again unless asked");
}

// The single place where a child's end is judged. First: who wanted it? (stop_cause). Then, for
// ends that nobody asked for, whether anyone may decide now: a stopping supervisor does not
// restart (item 39) and a running sweep already covers its range (items 21, 33). Start failures
// roll back a starting supervisor (items 3-5), unless reload added the child during that start
// (joined_start), and count as failed restarts otherwise (item 31).
// Everything left goes to decide().
void Core::Impl::on_down(ChildId c, DownKind kind, RecordKind rk, std::string what, Facts facts) {
    Node &n = node(c);
    const ChildId p = *n.spec.parent;
    if (n.gone) {
        n.started = n.ready = false;
        publish(c, RecordKind::Removed, what + "; removed by reload", Facts{Cause::Removed});
        schedule(p);
        if (n.successor) schedule(*node(*n.successor).spec.parent);
        return;
    }
    if (kind == DownKind::Stopped && down_as_requested(c, what, kind, rk, facts)) return;
    n.started = n.ready = false;
    if (!rolls.empty()) roll_member_down(c, kind, what);
    if (down_without_decision(c, rk, what, facts)) return;
    const Node &par = node(p);
    if (kind == DownKind::StartFailed) {
        if (n.manual_start) {
            n.manual_start = false;
            n.goal = Goal::Down;
            publish(c, rk, what + "; start command failed, not retried", std::move(facts));
            schedule(p);
            return;
        }
        if (par.state == ChildState::Starting && par.plan.phase == Phase::Starting &&
            !n.joined_start && n.index >= par.plan.cursor) {
            // Start-up failure: roll back in reverse, fail the supervisor's own start (items
            // 3-5). Not a restart, not counted.
            publish(c, rk, what, std::move(facts));
            publish(p, RecordKind::StartFailed,
                    "child " + std::string(name(c)) +
                        " failed to start; stopping the children started so far",
                    Facts{Cause::StartFailed, std::nullopt, std::nullopt, std::nullopt,
                          std::nullopt, std::string(name(c))});
            end_supervisor(p, StopCause::StartFailed);
            return;
        }
        kind = DownKind::Abnormal; // a failed restart counts (item 31)
        n.retrying = true;         // and holds back only what is `after` it
    }
    decide(c, kind, rk, std::move(what), std::move(facts));
}

// A child stopped on request. Returns true when that settles it; false (with kind, rk, what and
// facts rewritten) when the stop stands for an end that must be judged: a health failure (an
// abnormal end) or a start timeout (a start failure).
bool Core::Impl::down_as_requested(ChildId c, std::string &what, DownKind &kind, RecordKind &rk,
                                   Facts &facts) {
    Node &n = node(c);
    const ChildId p = *n.spec.parent;
    const bool was_started = n.started;
    n.started = n.ready = false;
    switch (n.stop_cause) {
    case StopCause::Plan:
    case StopCause::Shutdown:
    case StopCause::StartFailed:
    case StopCause::GaveUp:
    case StopCause::AutoShutdown:
    case StopCause::None:
    case StopCause::Removed:
    case StopCause::Manual: {
        const bool manual = n.stop_cause == StopCause::Manual;
        if (manual) n.goal = Goal::Down;
        facts.cause = record_cause(n.stop_cause);
        stopped_because(c, what);
        publish(c, RecordKind::Stopped,
                std::string(manual ? "stopped by command (" : "stopped (") + what + ")", facts);
        if (n.spec.restart == Restart::Temporary)
            drop(c, manual ? "stopped by command" : "stopped");
        settled(c);
        return true;
    }
    case StopCause::ManualRestart:
    case StopCause::Reload: {
        facts.cause = record_cause(n.stop_cause);
        stopped_because(c, what);
        publish(c, RecordKind::Stopped,
                "stopped (" + what + "); starting again (" + cause_text(n.stop_cause) + ")", facts);
        n.goal = Goal::Up;
        const Node &par = node(p);
        if ((par.state == ChildState::Running || par.state == ChildState::Starting) &&
            !plan_starts(p, n.index))
            start_child(c);
        schedule(p);
        return true;
    }
    case StopCause::Health:
        what = "stopped after " + n.health.text + " (" + what + ")";
        kind = was_started ? DownKind::Abnormal : DownKind::StartFailed;
        rk = was_started ? RecordKind::Exited : RecordKind::StartFailed;
        facts.cause = n.health.cause;
        facts.subject = n.health.subject;
        n.last_cause = n.health.cause;
        n.last_reason = n.health.text;
        return false;
    case StopCause::StartTimeout:
        what = "did not start within " +
               format_duration(n.spec.start_timeout.value_or(Duration{0})) + " (" + what + ")";
        kind = DownKind::StartFailed;
        rk = RecordKind::StartFailed;
        facts.cause = Cause::StartTimeout;
        n.last_cause = Cause::StartTimeout;
        n.last_reason = what;
        return false;
    }
    return true;
}

// The last incarnation ended because someone asked: status says who ("command", "supervisor",
// "reload"...) and how it ended, not the cause of an earlier end.
void Core::Impl::stopped_because(ChildId c, const std::string &what) {
    Node &n = node(c);
    if (n.stop_cause == StopCause::None) return;
    n.last_cause = record_cause(n.stop_cause);
    n.last_reason = std::string("stopped by ") + cause_text(n.stop_cause) + " (" + what + ")";
}

// An end nobody asked for that nobody may decide on now: the supervisor is stopping (item 39),
// or a running sweep covers the child anyway (the sweep counts once, items 21, 33).
bool Core::Impl::down_without_decision(ChildId c, RecordKind rk, const std::string &what,
                                       const Facts &facts) {
    Node &n = node(c);
    const ChildId p = *n.spec.parent;
    const Node &par = node(p);
    std::string why;
    const char *drop_why = "ended";
    if (par.state == ChildState::Stopping || par.state == ChildState::Stopped || finished) {
        why = "; supervisor " + std::string(name(p)) + " is stopping";
    } else if (plan_stops(p, n.index)) {
        why = "; the running restart of " + std::string(name(p)) + " covers it";
        drop_why = "ended during a sweep"; // item 18
    } else {
        return false;
    }
    publish(c, rk, what + why, facts);
    if (n.spec.restart == Restart::Temporary) drop(c, drop_why);
    settled(c);
    return true;
}

// The restart decision (items 7-11, 14-33, 43-48). The order matters: restart type first (a
// child that is not restarted never touches intensity, item 10), then intensity (the restart that
// would exceed it gives up instead, item 23), and only then backoff, which merely delays the
// spawn of a restart that has already been counted.
void Core::Impl::decide(ChildId c, DownKind kind, RecordKind rk, std::string what, Facts facts) {
    Node &n = node(c);
    const ChildId p = *n.spec.parent;
    Node &par = node(p);
    switch (n.spec.restart) {
    case Restart::Permanent:
        break;
    case Restart::Transient:
        if (kind != DownKind::Abnormal)
            return not_restarted(c, rk, what, std::move(facts), "transient, normal end");
        break;
    case Restart::Temporary:
        return not_restarted(c, rk, what, std::move(facts), "temporary");
    }
    if (!par.intensity.add(now, par.spec.intensity, par.spec.period)) {
        // Items 23-27: the restart that would exceed the intensity is not carried out.
        publish(c, rk, what + "; not restarted: restart intensity reached", std::move(facts));
        publish(p, RecordKind::GaveUp,
                "intensity " + std::to_string(par.spec.intensity) + " in " +
                    format_duration(par.spec.period) + " reached (" + std::string(name(c)) + " " +
                    what + "); giving up",
                Facts{Cause::Intensity, std::nullopt, std::nullopt, std::nullopt, std::nullopt,
                      std::string(name(c))});
        end_supervisor(p, StopCause::GaveUp);
        return;
    }
    n.restarts++;
    n.goal = Goal::Up;
    const Duration delay = n.spec.kind == Kind::Service ? restart_delay(c) : Duration{0};
    std::string msg = what + "; ";
    msg += delay.count() > 0 ? "restart in " + format_duration(delay) + " (backoff)"
                             : std::string("restarting");
    if (par.spec.strategy == Strategy::OneForAll) msg += "; one_for_all: restarting every child";
    if (par.spec.strategy == Strategy::RestForOne)
        msg += "; rest_for_one: restarting it and those after it";
    facts.delay = delay;
    publish(c, rk, std::move(msg), std::move(facts));
    if (delay.count() > 0) {
        set_state(c, ChildState::Backoff);
        n.backoff_until = now + delay;
        arm(c, *n.backoff_until);
    }
    switch (par.spec.strategy) {
    case Strategy::OneForOne:
        // A start sequence that covers it goes on past it while it waits (start_sequential).
        if (delay.count() == 0 && !plan_starts(p, n.index))
            start_child(c);
        else if (plan_starts(p, n.index))
            schedule(p);
        return;
    case Strategy::OneForAll:
        sweep(p, 0);
        return;
    case Strategy::RestForOne:
        sweep(p, n.index);
        return;
    }
}

void Core::Impl::not_restarted(ChildId c, RecordKind rk, const std::string &what, Facts facts,
                               const char *why_not) {
    Node &n = node(c);
    const ChildId p = *n.spec.parent;
    n.goal = Goal::Down;
    n.exited = true;
    publish(c, rk, what + "; not restarted (" + why_not + ")", std::move(facts));
    if (n.spec.restart == Restart::Temporary) drop(c, "ended");
    if (significant_ends(c, what)) return;
    schedule(p);
}

// Items 44, 46, 48: a significant child that ended by itself, not followed by a restart, may
// make its supervisor shut itself down (at the root, vigild exits with this child's status).
bool Core::Impl::significant_ends(ChildId c, const std::string &what) {
    Node &n = node(c);
    const ChildId p = *n.spec.parent;
    Node &par = node(p);
    if (!n.spec.significant || par.spec.auto_shutdown == AutoShutdown::Never) return false;
    if (par.spec.auto_shutdown == AutoShutdown::AllSignificant) {
        for (ChildId k : par.spec.children) {
            const Node &kn = node(k);
            if (k != c && kn.spec.significant && !kn.dropped && kn.state != ChildState::Stopped)
                return false;
        }
    }
    par.last_exit = n.last_exit;
    publish(p, RecordKind::AutoShutdown,
            std::string("significant child ") + std::string(name(c)) + " ended (" + what +
                "); shutting down (" + to_string(par.spec.auto_shutdown) + ")",
            Facts{Cause::AutoShutdown, std::nullopt, n.last_exit, std::nullopt, std::nullopt,
                  std::string(name(c))});
    end_supervisor(p, StopCause::AutoShutdown);
    return true;
}

// The backoff spaces starts, it does not add dead time to every crash: the delay counts from the
// start of the incarnation that ended (as runit's one second between starts does), and grows with
// every consecutive restart, however long each run lasted, until one run lasts `reset_after`. A
// crash loop waits the full delay; a service that ran longer than the delay restarts at once, but
// its next restart is spaced further (docs/defaults.md, docs/otp-departures.md).
Duration Core::Impl::restart_delay(ChildId c) {
    Node &n = node(c);
    const Duration ran = now - n.run_since;
    if (ran >= n.spec.backoff.reset_after) n.backoff_step = 0;
    const Duration spacing = backoff_delay(n.spec.backoff, n.backoff_step, rng);
    // Once the delay has reached its cap there is nothing more to count.
    if (backoff_base(n.spec.backoff, n.backoff_step) < n.spec.backoff.max) n.backoff_step++;
    return ran < spacing ? spacing - ran : Duration{0};
}

} // namespace vigil::core

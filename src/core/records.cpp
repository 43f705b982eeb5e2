// records.cpp: the history. Every record goes into the child's ring (bounded) and the global
// ring, and out as a Publish action (vigild logs it, `vigilctl events -f` streams it).
#include "impl.hpp"

namespace vigil::core {

void Core::Impl::publish(ChildId c, RecordKind kind, std::string message, Facts facts) {
    Record r{now, c, std::string(name(c)), kind, std::move(message)};
    r.cause = facts.cause;
    r.pid = facts.pid;
    r.exit = facts.exit;
    r.signal = facts.signal;
    r.delay = facts.delay;
    r.subject = std::move(facts.subject);
    Node &n = node(c);
    if (n.spec.kind == Kind::Service && n.inc.value > 0) r.incarnation = n.inc;
    if (!n.history) n.history = std::make_unique<RecordRing>(per_child_history);
    n.history->push(r);
    global.push(r);
    emit(Publish{std::move(r)});
}

Cause record_cause(StopCause c) noexcept {
    switch (c) {
    case StopCause::None:
        return Cause::None;
    case StopCause::Health:
        return Cause::None; // the health failure's own cause is in Node::health
    case StopCause::StartTimeout:
        return Cause::StartTimeout;
    case StopCause::StartFailed:
        return Cause::StartFailed;
    case StopCause::GaveUp:
        return Cause::Intensity;
    case StopCause::AutoShutdown:
        return Cause::AutoShutdown;
    case StopCause::ManualRestart:
    case StopCause::Manual:
        return Cause::Command;
    case StopCause::Reload:
        return Cause::Reload;
    case StopCause::Plan:
        return Cause::Supervisor;
    case StopCause::Shutdown:
        return Cause::Shutdown;
    case StopCause::Removed:
        return Cause::Removed;
    }
    return Cause::None;
}

Cause record_cause(FailureCause c) noexcept {
    switch (c) {
    case FailureCause::Liveness:
        return Cause::Liveness;
    case FailureCause::StartupProbe:
        return Cause::StartupProbe;
    case FailureCause::Watchdog:
        return Cause::Watchdog;
    case FailureCause::Pattern:
        return Cause::Pattern;
    }
    return Cause::None;
}

const char *cause_text(StopCause c) noexcept {
    switch (c) {
    case StopCause::None:
        return "";
    case StopCause::Health:
        return "health failure";
    case StopCause::StartTimeout:
        return "start timeout";
    case StopCause::StartFailed:
        return "start-up failure";
    case StopCause::GaveUp:
        return "restart intensity reached";
    case StopCause::AutoShutdown:
        return "auto_shutdown";
    case StopCause::ManualRestart:
        return "restart command";
    case StopCause::Reload:
        return "reload";
    case StopCause::Manual:
        return "stop command";
    case StopCause::Plan:
        return "supervisor";
    case StopCause::Shutdown:
        return "shutdown";
    case StopCause::Removed:
        return "reload (unit removed)";
    }
    return "";
}

Facts command_facts(const Command &cmd) {
    Facts f{Cause::Command};
    f.subject = cmd.who.empty() ? "unknown" : cmd.who;
    if (cmd.kind == CommandKind::Signal) f.signal = cmd.signal;
    return f;
}

const char *to_string(Cause c) noexcept {
    switch (c) {
    case Cause::None:
        return "none";
    case Cause::Exited:
        return "exited";
    case Cause::SpawnFailed:
        return "spawn_failed";
    case Cause::StartTimeout:
        return "start_timeout";
    case Cause::Liveness:
        return "liveness";
    case Cause::StartupProbe:
        return "startup_probe";
    case Cause::Watchdog:
        return "watchdog";
    case Cause::Pattern:
        return "pattern";
    case Cause::Command:
        return "command";
    case Cause::Reload:
        return "reload";
    case Cause::Removed:
        return "removed";
    case Cause::Supervisor:
        return "supervisor";
    case Cause::Shutdown:
        return "shutdown";
    case Cause::StartFailed:
        return "start_failed";
    case Cause::Intensity:
        return "intensity";
    case Cause::AutoShutdown:
        return "auto_shutdown";
    case Cause::Leftover:
        return "leftover";
    case Cause::MainPid:
        return "main_pid";
    case Cause::Notify:
        return "notify";
    }
    return "none";
}

const char *to_string(RollPhase p) noexcept {
    switch (p) {
    case RollPhase::Running:
        return "running";
    case RollPhase::Done:
        return "done";
    case RollPhase::Stopped:
        return "stopped";
    }
    return "stopped";
}

const char *to_string(Update u) noexcept {
    return u == Update::Rolling ? "rolling" : "restart";
}

const char *to_string(PatternAction a) noexcept {
    switch (a) {
    case PatternAction::Restart:
        return "restart";
    case PatternAction::Stop:
        return "stop";
    case PatternAction::Unhealthy:
        return "unhealthy";
    case PatternAction::Event:
        return "event";
    }
    return "event";
}

} // namespace vigil::core

#include "names.hpp"

#include <array>
#include <string_view>

#include "vigil/core/core.hpp"
#include "vigil/core/state.hpp"

namespace vigil::core {

namespace {
constexpr std::array<std::string_view, 32> signal_names = {
    "",          "SIGHUP",  "SIGINT",    "SIGQUIT", "SIGILL",   "SIGTRAP", "SIGABRT", "SIGBUS",
    "SIGFPE",    "SIGKILL", "SIGUSR1",   "SIGSEGV", "SIGUSR2",  "SIGPIPE", "SIGALRM", "SIGTERM",
    "SIGSTKFLT", "SIGCHLD", "SIGCONT",   "SIGSTOP", "SIGTSTP",  "SIGTTIN", "SIGTTOU", "SIGURG",
    "SIGXCPU",   "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO",   "SIGPWR",  "SIGSYS",
};
static_assert(signal_names[sig_kill] == "SIGKILL" && signal_names[sig_term] == "SIGTERM");
} // namespace

std::string signal_name(int signal) {
    if (signal > 0 && signal < static_cast<int>(signal_names.size()))
        return std::string(signal_names[static_cast<std::size_t>(signal)]);
    return "signal " + std::to_string(signal);
}

std::string format_duration(Duration d) {
    const auto ms = d.count();
    if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
    if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
    return std::to_string(ms) + "ms";
}

std::string describe_exit(ExitStatus status) {
    if (status.signaled) return "killed by " + signal_name(status.code);
    return "exited with status " + std::to_string(status.code);
}

const char *to_string(ChildState s) noexcept {
    switch (s) {
    case ChildState::Stopped:
        return "stopped";
    case ChildState::Starting:
        return "starting";
    case ChildState::Running:
        return "running";
    case ChildState::Stopping:
        return "stopping";
    case ChildState::Backoff:
        return "backoff";
    }
    return "?";
}

const char *to_string(RecordKind k) noexcept {
    switch (k) {
    case RecordKind::Starting:
        return "starting";
    case RecordKind::Started:
        return "started";
    case RecordKind::Ready:
        return "ready";
    case RecordKind::Exited:
        return "exited";
    case RecordKind::Stopping:
        return "stopping";
    case RecordKind::Killed:
        return "killed";
    case RecordKind::Stopped:
        return "stopped";
    case RecordKind::SpawnFailed:
        return "spawn-failed";
    case RecordKind::StartFailed:
        return "start-failed";
    case RecordKind::Unhealthy:
        return "unhealthy";
    case RecordKind::Restarting:
        return "restarting";
    case RecordKind::GaveUp:
        return "gave-up";
    case RecordKind::AutoShutdown:
        return "auto-shutdown";
    case RecordKind::Command:
        return "command";
    case RecordKind::Reconfigured:
        return "reconfigured";
    case RecordKind::Removed:
        return "removed";
    case RecordKind::Exit:
        return "exit";
    }
    return "?";
}

const char *to_string(Kind k) noexcept {
    switch (k) {
    case Kind::Service:
        return "service";
    case Kind::Supervisor:
        return "supervisor";
    }
    return "?";
}

const char *to_string(Restart r) noexcept {
    switch (r) {
    case Restart::Permanent:
        return "permanent";
    case Restart::Transient:
        return "transient";
    case Restart::Temporary:
        return "temporary";
    }
    return "?";
}

const char *to_string(Strategy s) noexcept {
    switch (s) {
    case Strategy::OneForOne:
        return "one_for_one";
    case Strategy::OneForAll:
        return "one_for_all";
    case Strategy::RestForOne:
        return "rest_for_one";
    }
    return "?";
}

const char *to_string(AutoShutdown a) noexcept {
    switch (a) {
    case AutoShutdown::Never:
        return "never";
    case AutoShutdown::AnySignificant:
        return "any_significant";
    case AutoShutdown::AllSignificant:
        return "all_significant";
    }
    return "?";
}

const char *to_string(FailureCause c) noexcept {
    switch (c) {
    case FailureCause::Liveness:
        return "liveness";
    case FailureCause::Watchdog:
        return "watchdog";
    case FailureCause::LogPattern:
        return "log pattern";
    case FailureCause::StartupProbe:
        return "startup probe";
    }
    return "?";
}

const char *describe(ChildState state, Goal goal) noexcept {
    switch (state) {
    case ChildState::Stopped:
        switch (goal) {
        case Goal::Up:
            return "down, about to be started (or its parent is not running)";
        case Goal::Down:
            return "down, as wanted";
        }
        break;
    case ChildState::Starting:
        switch (goal) {
        case Goal::Up:
            return "starting";
        case Goal::Down:
            return "starting, will be stopped once it can be";
        }
        break;
    case ChildState::Running:
        switch (goal) {
        case Goal::Up:
            return "up, as wanted";
        case Goal::Down:
            return "up, a stop is pending";
        }
        break;
    case ChildState::Stopping:
        switch (goal) {
        case Goal::Up:
            return "stopping, will be started again (restart)";
        case Goal::Down:
            return "stopping";
        }
        break;
    case ChildState::Backoff:
        switch (goal) {
        case Goal::Up:
            return "down, waiting for its restart delay";
        case Goal::Down:
            return "down; the pending restart was cancelled";
        }
        break;
    }
    return "?";
}

} // namespace vigil::core

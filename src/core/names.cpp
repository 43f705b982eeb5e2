// The one spelling of signals, durations and exits (vigil/core/names.hpp), and the names of
// the core's enums.
#include "vigil/core/names.hpp"

#include <array>
#include <cstdint>
#include <string_view>

#include "vigil/core/core.hpp"
#include "vigil/core/state.hpp"

namespace vigil::core {

namespace {

// Linux's classic signals, by number (index 0 unused).
constexpr std::array<std::string_view, 32> classic_names = {
    "",          "SIGHUP",  "SIGINT",    "SIGQUIT", "SIGILL",   "SIGTRAP", "SIGABRT", "SIGBUS",
    "SIGFPE",    "SIGKILL", "SIGUSR1",   "SIGSEGV", "SIGUSR2",  "SIGPIPE", "SIGALRM", "SIGTERM",
    "SIGSTKFLT", "SIGCHLD", "SIGCONT",   "SIGSTOP", "SIGTSTP",  "SIGTTIN", "SIGTTOU", "SIGURG",
    "SIGXCPU",   "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO",   "SIGPWR",  "SIGSYS",
};
static_assert(classic_names[sig_hup] == "SIGHUP" && classic_names[sig_int] == "SIGINT" &&
              classic_names[sig_kill] == "SIGKILL" && classic_names[sig_term] == "SIGTERM" &&
              classic_names[sig_cont] == "SIGCONT");

struct Alias {
    std::string_view name;
    int number;
};
// Accepted when read, never written.
constexpr std::array<Alias, 3> aliases{{{"SIGIOT", 6}, {"SIGCLD", 17}, {"SIGPOLL", 29}}};

char upper(char c) noexcept {
    return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (upper(a[i]) != upper(b[i])) return false;
    return true;
}

// A decimal number of at most 3 digits (no signal needs more): nothing to overflow.
std::optional<int> small_number(std::string_view s) noexcept {
    if (s.empty() || s.size() > 3) return std::nullopt;
    int v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + (c - '0');
    }
    return v;
}

// "RTMIN", "RTMIN+N", "RTMAX", "RTMAX-N" (without "SIG").
std::optional<int> realtime(std::string_view s) noexcept {
    if (s.size() < 5) return std::nullopt;
    const bool min = iequals(s.substr(0, 5), "RTMIN");
    if (!min && !iequals(s.substr(0, 5), "RTMAX")) return std::nullopt;
    std::string_view rest = s.substr(5);
    int offset = 0;
    if (!rest.empty()) {
        if (rest[0] != (min ? '+' : '-')) return std::nullopt;
        auto n = small_number(rest.substr(1));
        if (!n) return std::nullopt;
        offset = *n;
    }
    const int sig = min ? sig_rtmin + offset : sig_rtmax - offset;
    if (sig < sig_rtmin || sig > sig_rtmax) return std::nullopt;
    return sig;
}

} // namespace

bool valid_signal(int signal) noexcept {
    return (signal >= 1 && signal <= 31) || (signal >= sig_rtmin && signal <= sig_rtmax);
}

std::string signal_name(int signal) {
    if (signal >= 1 && signal <= 31)
        return std::string(classic_names[static_cast<std::size_t>(signal)]);
    if (signal == sig_rtmin) return "SIGRTMIN";
    if (signal > sig_rtmin && signal <= sig_rtmax)
        return "SIGRTMIN+" + std::to_string(signal - sig_rtmin);
    return "signal " + std::to_string(signal);
}

std::optional<int> parse_signal(std::string_view text) noexcept {
    if (!text.empty() && text[0] >= '0' && text[0] <= '9') {
        auto n = small_number(text);
        if (n && valid_signal(*n)) return n;
        return std::nullopt;
    }
    std::string_view bare = text;
    if (bare.size() > 3 && iequals(bare.substr(0, 3), "SIG")) bare.remove_prefix(3);
    for (std::size_t i = 1; i < classic_names.size(); ++i)
        if (iequals(bare, classic_names[i].substr(3))) return static_cast<int>(i);
    for (const Alias &a : aliases)
        if (iequals(bare, a.name.substr(3))) return a.number;
    return realtime(bare);
}

std::string format_duration(Duration d) {
    std::int64_t ms = d.count();
    if (ms == 0) return "0s";
    std::string out;
    // -INT64_MIN does not exist: go through the unsigned magnitude.
    std::uint64_t left =
        ms < 0 ? 0 - static_cast<std::uint64_t>(ms) : static_cast<std::uint64_t>(ms);
    if (ms < 0) out = "-";
    struct Unit {
        std::string_view name;
        std::uint64_t factor;
    };
    static constexpr std::array<Unit, 5> order{
        {{"d", 86'400'000}, {"h", 3'600'000}, {"m", 60'000}, {"s", 1'000}, {"ms", 1}}};
    for (const Unit &u : order) {
        if (left >= u.factor) {
            out += std::to_string(left / u.factor);
            out += u.name;
            left %= u.factor;
        }
    }
    return out;
}

std::string describe_exit(ExitStatus status) {
    if (!status.signaled) return "exited with status " + std::to_string(status.code);
    std::string out = "killed by " + signal_name(status.code);
    if (status.core_dumped) out += " (core dumped)";
    return out;
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
    case RecordKind::NotReady:
        return "not-ready";
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
    case RecordKind::Notice:
        return "notice";
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
    case FailureCause::StartupProbe:
        return "startup probe";
    case FailureCause::Watchdog:
        return "watchdog";
    case FailureCause::Pattern:
        return "log pattern";
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

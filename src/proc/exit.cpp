// Exit statuses and signal names (see include/vigil/proc/exit.hpp).
#include "vigil/proc/exit.hpp"

#include <array>
#include <cctype>
#include <charconv>
#include <csignal>
#include <sys/wait.h>

namespace vigil::proc {

namespace {

struct SignalEntry {
    int number;
    const char *name;
};

// The classic signals, numbered as on Linux. Aliases (SIGIOT, SIGCLD, SIGPOLL) are accepted by
// signal_by_name but never produced by signal_name.
constexpr std::array<SignalEntry, 31> classic_signals{{
    {SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},       {SIGQUIT, "SIGQUIT"}, {SIGILL, "SIGILL"},
    {SIGTRAP, "SIGTRAP"}, {SIGABRT, "SIGABRT"},     {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},
    {SIGKILL, "SIGKILL"}, {SIGUSR1, "SIGUSR1"},     {SIGSEGV, "SIGSEGV"}, {SIGUSR2, "SIGUSR2"},
    {SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"},     {SIGTERM, "SIGTERM"}, {SIGSTKFLT, "SIGSTKFLT"},
    {SIGCHLD, "SIGCHLD"}, {SIGCONT, "SIGCONT"},     {SIGSTOP, "SIGSTOP"}, {SIGTSTP, "SIGTSTP"},
    {SIGTTIN, "SIGTTIN"}, {SIGTTOU, "SIGTTOU"},     {SIGURG, "SIGURG"},   {SIGXCPU, "SIGXCPU"},
    {SIGXFSZ, "SIGXFSZ"}, {SIGVTALRM, "SIGVTALRM"}, {SIGPROF, "SIGPROF"}, {SIGWINCH, "SIGWINCH"},
    {SIGIO, "SIGIO"},     {SIGPWR, "SIGPWR"},       {SIGSYS, "SIGSYS"},
}};

constexpr std::array<SignalEntry, 3> signal_aliases{{
    {SIGIOT, "SIGIOT"},
    {SIGCLD, "SIGCLD"},
    {SIGPOLL, "SIGPOLL"},
}};

// Real-time signal names relative to SIGRTMIN; long enough for SIGRTMIN..SIGRTMAX on Linux.
constexpr std::array<const char *, 33> rt_names{
    "SIGRTMIN",    "SIGRTMIN+1",  "SIGRTMIN+2",  "SIGRTMIN+3",  "SIGRTMIN+4",  "SIGRTMIN+5",
    "SIGRTMIN+6",  "SIGRTMIN+7",  "SIGRTMIN+8",  "SIGRTMIN+9",  "SIGRTMIN+10", "SIGRTMIN+11",
    "SIGRTMIN+12", "SIGRTMIN+13", "SIGRTMIN+14", "SIGRTMIN+15", "SIGRTMIN+16", "SIGRTMIN+17",
    "SIGRTMIN+18", "SIGRTMIN+19", "SIGRTMIN+20", "SIGRTMIN+21", "SIGRTMIN+22", "SIGRTMIN+23",
    "SIGRTMIN+24", "SIGRTMIN+25", "SIGRTMIN+26", "SIGRTMIN+27", "SIGRTMIN+28", "SIGRTMIN+29",
    "SIGRTMIN+30", "SIGRTMIN+31", "SIGRTMIN+32",
};

bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        if (std::toupper(static_cast<unsigned char>(a[i])) !=
            std::toupper(static_cast<unsigned char>(b[i])))
            return false;
    }
    return true;
}

std::optional<int> parse_int(std::string_view s) noexcept {
    int v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    return v;
}

bool valid_signal(int sig) noexcept {
    return (sig >= 1 && sig <= 31) || (sig >= SIGRTMIN && sig <= SIGRTMAX);
}

} // namespace

ExitStatus decode_wait_status(int wstatus) noexcept {
    if (WIFEXITED(wstatus)) return {false, WEXITSTATUS(wstatus), false};
    if (WIFSIGNALED(wstatus)) return {true, WTERMSIG(wstatus), WCOREDUMP(wstatus) != 0};
    if (WIFSTOPPED(wstatus)) return {true, WSTOPSIG(wstatus), false};
    return {true, SIGCONT, false};
}

int shell_exit_code(int wstatus) noexcept {
    ExitStatus s = decode_wait_status(wstatus);
    return s.signaled ? 128 + s.code : s.code;
}

std::string describe_wait_status(int wstatus) {
    ExitStatus s = decode_wait_status(wstatus);
    if (!s.signaled) return "exited with status " + std::to_string(s.code);
    const char *name = signal_name(s.code);
    std::string out = "killed by signal ";
    out += name ? std::string(name) : std::to_string(s.code);
    if (s.core_dumped) out += " (core dumped)";
    return out;
}

const char *signal_name(int sig) noexcept {
    for (const SignalEntry &e : classic_signals)
        if (e.number == sig) return e.name;
    if (sig >= SIGRTMIN && sig <= SIGRTMAX &&
        static_cast<std::size_t>(sig - SIGRTMIN) < rt_names.size())
        return rt_names[static_cast<std::size_t>(sig - SIGRTMIN)];
    return nullptr;
}

std::optional<int> signal_by_name(std::string_view name) noexcept {
    if (name.empty()) return std::nullopt;
    if (std::isdigit(static_cast<unsigned char>(name[0]))) {
        auto n = parse_int(name);
        if (n && valid_signal(*n)) return n;
        return std::nullopt;
    }
    // Accept the name with or without the SIG prefix, in any case.
    std::string_view bare = name;
    if (bare.size() > 3 && iequals(bare.substr(0, 3), "SIG")) bare.remove_prefix(3);
    for (const SignalEntry &e : classic_signals)
        if (iequals(bare, e.name + 3)) return e.number;
    for (const SignalEntry &e : signal_aliases)
        if (iequals(bare, e.name + 3)) return e.number;
    // RTMIN, RTMIN+k, RTMAX, RTMAX-k.
    auto rt = [&](std::string_view base, int origin, int sign) -> std::optional<int> {
        if (bare.size() < base.size() || !iequals(bare.substr(0, base.size()), base))
            return std::nullopt;
        std::string_view rest = bare.substr(base.size());
        int sig = origin;
        if (!rest.empty()) {
            if (rest[0] != (sign > 0 ? '+' : '-')) return std::nullopt;
            auto k = parse_int(rest.substr(1));
            if (!k || *k < 0) return std::nullopt;
            sig = origin + sign * *k;
        }
        if (sig < SIGRTMIN || sig > SIGRTMAX) return std::nullopt;
        return sig;
    };
    if (auto s = rt("RTMIN", SIGRTMIN, +1)) return s;
    if (auto s = rt("RTMAX", SIGRTMAX, -1)) return s;
    return std::nullopt;
}

} // namespace vigil::proc

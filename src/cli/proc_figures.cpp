// Memory and CPU time of a process from /proc: see proc_figures.hpp.
#include "proc_figures.hpp"

#include <cerrno>
#include <charconv>
#include <fcntl.h>
#include <string>
#include <unistd.h>

namespace vigil::cli {

namespace {

// The n-th space-separated field of `s` (0-based), or empty.
std::string_view field(std::string_view s, std::size_t n) {
    std::size_t i = 0;
    for (;;) {
        while (i < s.size() && s[i] == ' ')
            ++i;
        if (i >= s.size()) return {};
        std::size_t end = s.find_first_of(" \n", i);
        if (end == std::string_view::npos) end = s.size();
        if (n == 0) return s.substr(i, end - i);
        --n;
        i = end;
        if (i < s.size() && s[i] == '\n') return {};
    }
}

std::optional<std::uint64_t> number(std::string_view s) {
    std::uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    return v;
}

// At most 4 KiB of a /proc file: stat and statm are one short line.
std::optional<std::string> slurp(const std::string &path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return std::nullopt;
    std::string text(4096, '\0');
    ssize_t n;
    do
        n = ::read(fd, text.data(), text.size());
    while (n < 0 && errno == EINTR);
    ::close(fd);
    if (n <= 0) return std::nullopt;
    text.resize(static_cast<std::size_t>(n));
    return text;
}

} // namespace

std::optional<ProcFigures> parse_proc_figures(std::string_view stat, std::string_view statm,
                                              long ticks, long page) {
    if (ticks <= 0 || page <= 0) return std::nullopt;
    // The command name (field 2) may hold spaces and ')': fields are counted after the last ')'.
    std::size_t close = stat.rfind(')');
    if (close == std::string_view::npos) return std::nullopt;
    std::string_view rest = stat.substr(close + 1); // field 3 (state) onwards
    auto utime = number(field(rest, 11));           // field 14
    auto stime = number(field(rest, 12));           // field 15
    auto pages = number(field(statm, 1));
    if (!utime || !stime || !pages) return std::nullopt;
    constexpr std::uint64_t limit = UINT64_MAX / 1000;
    const auto t = static_cast<std::uint64_t>(ticks);
    const auto pg = static_cast<std::uint64_t>(page);
    if (*utime > limit || *stime > limit - *utime || *pages > UINT64_MAX / pg) return std::nullopt;
    return ProcFigures{*pages * pg, (*utime + *stime) * 1000 / t};
}

std::optional<ProcFigures> read_proc_figures(long pid, std::string_view pid_namespace) {
    if (pid <= 0 || pid_namespace.empty()) return std::nullopt;
    char own[64];
    ssize_t len = ::readlink("/proc/self/ns/pid", own, sizeof own);
    if (len <= 0 || std::string_view(own, static_cast<std::size_t>(len)) != pid_namespace)
        return std::nullopt;
    const std::string base = "/proc/" + std::to_string(pid);
    auto stat = slurp(base + "/stat");
    auto statm = slurp(base + "/statm");
    if (!stat || !statm) return std::nullopt;
    return parse_proc_figures(*stat, *statm, sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE));
}

} // namespace vigil::cli

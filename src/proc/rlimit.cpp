// rlimit.cpp: unit-file names of resource limits (see include/vigil/proc/spawn.hpp).
#include "vigil/proc/spawn.hpp"

#include <array>
#include <cctype>
#include <sys/resource.h>

namespace vigil::proc {

namespace {

struct LimitName {
    std::string_view name;
    int resource;
};

// Names as in prlimit(1) and systemd's Limit*= (lowercase, without the RLIMIT_ prefix).
constexpr std::array<LimitName, 16> limit_names{{
    {"as", RLIMIT_AS},
    {"core", RLIMIT_CORE},
    {"cpu", RLIMIT_CPU},
    {"data", RLIMIT_DATA},
    {"fsize", RLIMIT_FSIZE},
    {"locks", RLIMIT_LOCKS},
    {"memlock", RLIMIT_MEMLOCK},
    {"msgqueue", RLIMIT_MSGQUEUE},
    {"nice", RLIMIT_NICE},
    {"nofile", RLIMIT_NOFILE},
    {"nproc", RLIMIT_NPROC},
    {"rss", RLIMIT_RSS},
    {"rtprio", RLIMIT_RTPRIO},
    {"rttime", RLIMIT_RTTIME},
    {"sigpending", RLIMIT_SIGPENDING},
    {"stack", RLIMIT_STACK},
}};
static_assert(limit_names.size() == RLIMIT_NLIMITS, "every RLIMIT_* needs a name");

} // namespace

std::optional<int> rlimit_by_name(std::string_view name) noexcept {
    // Case-insensitive, with an optional "rlimit_" prefix ("NOFILE", "RLIMIT_NOFILE").
    auto lower_eq = [](std::string_view a, std::string_view b) {
        if (a.size() != b.size()) return false;
        for (std::size_t i = 0; i < a.size(); ++i)
            if (std::tolower(static_cast<unsigned char>(a[i])) != b[i]) return false;
        return true;
    };
    if (name.size() > 7 && lower_eq(name.substr(0, 7), "rlimit_")) name.remove_prefix(7);
    for (const LimitName &l : limit_names)
        if (lower_eq(name, l.name)) return l.resource;
    return std::nullopt;
}

const std::vector<std::string_view> &rlimit_names() {
    static const std::vector<std::string_view> names = [] {
        std::vector<std::string_view> v;
        for (const LimitName &l : limit_names)
            v.push_back(l.name);
        return v;
    }();
    return names;
}

} // namespace vigil::proc

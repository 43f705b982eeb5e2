// Durations, sizes, signal and limit names: parsing, formatting and name tables.
#include "vigil/unit/values.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <sys/resource.h>
#include <utility>

#include "vigil/unit/unit.hpp"

namespace vigil::unit {

namespace {

// 128-bit intermediates make overflow checks trivial (__extension__: a GCC/Clang type).
__extension__ typedef unsigned __int128 u128;

// A decimal number "12" or "1.5" at the start of `s`: integer part, fraction digits and the
// number of fraction digits. Returns the characters consumed (0: no number).
struct Decimal {
    u128 whole = 0;
    u128 frac = 0;
    unsigned frac_digits = 0;
};

std::size_t read_decimal(std::string_view s, Decimal &d) {
    std::size_t i = 0, digits = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
        if (++digits > 20) return 0; // far beyond any valid value; avoids overflow
        d.whole = d.whole * 10 + static_cast<unsigned>(s[i++] - '0');
    }
    if (digits == 0) return 0;
    if (i < s.size() && s[i] == '.') {
        std::size_t j = i + 1;
        while (j < s.size() && s[j] >= '0' && s[j] <= '9') {
            if (++d.frac_digits > 9) return 0;
            d.frac = d.frac * 10 + static_cast<unsigned>(s[j++] - '0');
        }
        if (d.frac_digits == 0) return 0; // "1." is not a number
        i = j;
    }
    return i;
}

// value * unit exactly, or nullopt when the fraction does not come out whole.
std::optional<u128> scale(const Decimal &d, std::uint64_t unit) {
    u128 pow10 = 1;
    for (unsigned k = 0; k < d.frac_digits; ++k)
        pow10 *= 10;
    u128 frac = d.frac * unit;
    if (frac % pow10 != 0) return std::nullopt;
    return d.whole * unit + frac / pow10;
}

struct UnitFactor {
    std::string_view name;
    std::uint64_t factor;
};

// Longest names first so "ms" wins over "m".
constexpr std::array<UnitFactor, 5> duration_units{
    {{"ms", 1}, {"s", 1'000}, {"m", 60'000}, {"h", 3'600'000}, {"d", 86'400'000}}};

constexpr std::uint64_t kib = 1024;
constexpr std::array<UnitFactor, 13> size_units{{
    {"KiB", kib},
    {"MiB", kib *kib},
    {"GiB", kib *kib *kib},
    {"TiB", kib *kib *kib *kib},
    {"KB", 1000},
    {"MB", 1000'000},
    {"GB", 1000'000'000},
    {"TB", 1000'000'000'000},
    {"K", kib},
    {"M", kib *kib},
    {"G", kib *kib *kib},
    {"T", kib *kib *kib *kib},
    {"B", 1},
}};

struct LimitName {
    std::string_view name;
    int resource;
};

// The names follow prlimit(1) and the RLIMIT_ suffixes, lower case.
const std::array<LimitName, 16> limit_table{{
    {"nofile", RLIMIT_NOFILE},
    {"nproc", RLIMIT_NPROC},
    {"core", RLIMIT_CORE},
    {"memlock", RLIMIT_MEMLOCK},
    {"as", RLIMIT_AS},
    {"cpu", RLIMIT_CPU},
    {"fsize", RLIMIT_FSIZE},
    {"stack", RLIMIT_STACK},
    {"data", RLIMIT_DATA},
    {"rss", RLIMIT_RSS},
    {"locks", RLIMIT_LOCKS},
    {"msgqueue", RLIMIT_MSGQUEUE},
    {"nice", RLIMIT_NICE},
    {"rtprio", RLIMIT_RTPRIO},
    {"sigpending", RLIMIT_SIGPENDING},
    {"rttime", RLIMIT_RTTIME},
}};
static_assert(limit_table.size() == RLIMIT_NLIMITS, "every RLIMIT_* has a name");

} // namespace

ScannedDuration scan_duration(std::string_view s) {
    if (s == "0") return {Duration{0}};
    if (s.empty()) return {};
    // At most five components of at most 20 digits times 86,400,000: far inside 128 bits.
    u128 total = 0;
    std::size_t last_unit = duration_units.size(); // units must come largest first
    while (!s.empty()) {
        Decimal d;
        std::size_t n = read_decimal(s, d);
        if (n == 0) return {};
        s.remove_prefix(n);
        std::size_t u = 0;
        while (u < duration_units.size() && !s.starts_with(duration_units[u].name))
            ++u;
        if (u == duration_units.size()) return {}; // a unit is required
        // "ms" is listed first but is the smallest: order by factor, not table index.
        if (last_unit != duration_units.size() &&
            duration_units[u].factor >= duration_units[last_unit].factor)
            return {};
        last_unit = u;
        s.remove_prefix(duration_units[u].name.size());
        auto v = scale(d, duration_units[u].factor);
        if (!v) return {};
        total += *v;
    }
    if (total > static_cast<u128>(bounds::max_duration.count())) return {std::nullopt, true};
    return {Duration{static_cast<std::int64_t>(total)}};
}

std::optional<Duration> parse_duration(std::string_view s) {
    return scan_duration(s).value;
}

ScannedSize scan_size(std::string_view s) {
    Decimal d;
    std::size_t n = read_decimal(s, d);
    if (n == 0) return {};
    s.remove_prefix(n);
    std::uint64_t factor = 1;
    if (!s.empty()) {
        auto it = std::find_if(size_units.begin(), size_units.end(),
                               [&](const UnitFactor &u) { return s == u.name; });
        if (it == size_units.end()) return {};
        factor = it->factor;
    }
    // At most 20 digits times 2^40: inside 128 bits.
    auto v = scale(d, factor);
    if (!v) return {};
    if (*v > std::numeric_limits<std::uint64_t>::max()) return {std::nullopt, true};
    return {static_cast<std::uint64_t>(*v)};
}

std::optional<std::uint64_t> parse_size(std::string_view s) {
    return scan_size(s).value;
}

std::string format_size(std::uint64_t bytes) {
    static constexpr std::array<UnitFactor, 4> order{{{"TiB", kib * kib * kib * kib},
                                                      {"GiB", kib * kib * kib},
                                                      {"MiB", kib * kib},
                                                      {"KiB", kib}}};
    if (bytes != 0)
        for (const auto &u : order)
            if (bytes % u.factor == 0)
                return std::to_string(bytes / u.factor) + std::string(u.name);
    return std::to_string(bytes);
}

std::optional<int> rlimit_resource(std::string_view name) {
    for (const auto &e : limit_table)
        if (e.name == name) return e.resource;
    return std::nullopt;
}

const std::vector<std::string_view> &rlimit_names() {
    static const std::vector<std::string_view> names = [] {
        std::vector<std::string_view> v;
        for (const auto &e : limit_table)
            v.push_back(e.name);
        return v;
    }();
    return names;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
    // Optimal string alignment: Levenshtein plus adjacent transpositions ("evn" -> "env" is
    // one edit, the most common typo).
    std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
    for (std::size_t i = 0; i <= a.size(); ++i)
        d[i][0] = i;
    for (std::size_t j = 0; j <= b.size(); ++j)
        d[0][j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        for (std::size_t j = 1; j <= b.size(); ++j) {
            std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    }
    return d[a.size()][b.size()];
}

std::string closest(std::string_view word, const std::vector<std::string_view> &candidates) {
    // Allow one edit in short words, two from five characters, three from nine: beyond that a
    // "suggestion" is mostly noise.
    std::size_t limit = word.size() <= 4 ? 1 : word.size() <= 8 ? 2 : 3;
    std::string_view best;
    std::size_t best_d = limit + 1;
    for (auto c : candidates) {
        // The distance is at least the difference in length: skip the hopeless without the
        // quadratic table (a 1 MiB unknown key must not cost a 1 MiB x 16 table per field).
        if (word.size() > c.size() + limit || c.size() > word.size() + limit) continue;
        std::size_t dist = edit_distance(word, c);
        if (dist < best_d && dist < std::max(word.size(), c.size())) {
            best_d = dist;
            best = c;
        }
    }
    return std::string(best);
}

} // namespace vigil::unit

// vigil/unit/values.hpp: the scalar vocabularies of unit files, both ways (text <-> value).
//
// parse_duration/parse_size live in unit.hpp (the contract); this header adds the inverse of
// parse_size and the name tables the loader validates against. Durations and signals are
// spelled by vigil/core/names.hpp (core::format_duration, core::parse_signal,
// core::signal_name), the one spelling every module shares. Every table here is complete and
// tested.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vigil/time.hpp"

namespace vigil::unit {

// parse_duration and parse_size, telling why a text was refused: `too_large` when it is
// well-formed but its value is above what the type holds (durations: bounds::max_duration;
// sizes: 2^64-1), so that the loader can say "must be at most ..." instead of "expected a
// duration". value is set exactly when parse_duration (parse_size) would return one.
struct ScannedDuration {
    std::optional<Duration> value;
    bool too_large = false;
};
struct ScannedSize {
    std::optional<std::uint64_t> value;
    bool too_large = false;
};
ScannedDuration scan_duration(std::string_view s);
ScannedSize scan_size(std::string_view s);

// "10MiB", "64KiB", "1000": binary units when exact, otherwise bytes.
std::string format_size(std::uint64_t bytes);

// Limit names accepted in `limits` (nofile, nproc, ...) mapped to RLIMIT_* numbers. This is
// the loader's own table so src/unit does not depend on src/proc; both follow setrlimit(2).
std::optional<int> rlimit_resource(std::string_view name);
const std::vector<std::string_view> &rlimit_names();

// Levenshtein distance, for "did you mean" suggestions.
std::size_t edit_distance(std::string_view a, std::string_view b);
// The closest candidate when it is a plausible typo of `word`, else empty.
std::string closest(std::string_view word, const std::vector<std::string_view> &candidates);

} // namespace vigil::unit

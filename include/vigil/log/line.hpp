// vigil/log/line.hpp: vocabulary shared by the log module's parts.
//
// A line's stream is unit::Stream::Stdout or unit::Stream::Stderr (never Both, which only
// appears in pattern filters). Wall-clock times are milliseconds since the Unix epoch (UTC), used
// only for display (timestamps, `vigilctl logs`); anything that measures intervals (pattern
// windows) uses the monotonic vigil::TimePoint instead.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "vigil/unit/unit.hpp"

namespace vigil::log {

using Stream = unit::Stream;

// Milliseconds since 1970-01-01T00:00:00Z.
using WallMs = std::int64_t;

// Reads CLOCK_REALTIME. The one clock read of the module; parts that need the wall time take it
// as a parameter or through an injectable `WallClock`.
WallMs wall_now() noexcept;
using WallClock = WallMs (*)() noexcept;

// "2026-11-26T09:38:09.123Z": RFC 3339, UTC, milliseconds; always exactly 24 characters.
inline constexpr std::size_t timestamp_len = 24;

// Formats `t` into `out` (timestamp_len bytes, no terminator). Caches the broken-down date of
// the last second it saw, so formatting many lines of the same second costs a few stores.
class TimestampFormatter {
public:
    void format(WallMs t, char *out) noexcept;

private:
    std::int64_t cached_sec_ = INT64_MIN;
    char cached_[timestamp_len] = {}; // "YYYY-MM-DDTHH:MM:SS" followed by ".mmmZ" slots
};

} // namespace vigil::log

// vigil/log/line.hpp: vocabulary shared by the log module's parts.
//
// A line's stream is unit::Stream::Stdout or unit::Stream::Stderr (never Both, which only
// appears in pattern filters). Wall-clock times are milliseconds since the Unix epoch (UTC), used
// only for display (timestamps, `vigilctl logs`); anything that measures intervals (pattern
// windows) uses the monotonic vigil::TimePoint instead.
//
// Bounds: every size a unit file gives the module is clamped by the class that uses it to one of
// the limits below, whatever the loader let through, so that no allocation is ever made from an
// unchecked number (`logs.ring "1TiB"` would otherwise be allocated at the first line).
//
// The one record format (RecordWriter): a line written to a log file and a line forwarded to
// vigild's stdout are the same bytes but for the forwarder's "name | " prefix:
//     [prefix] [timestamp ' '] text ['\\' if continued] '\n'
// The trailing backslash marks a piece of a longer line that continues on the next record.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "vigil/unit/unit.hpp"

namespace vigil::log {

using Stream = unit::Stream;

// Longest line (piece) the framer hands over: `logs.max_line` is clamped to this (1 MiB).
inline constexpr std::size_t max_line_limit = 1u << 20;
// Largest ring: `logs.ring` is clamped to this (64 MiB).
inline constexpr std::size_t ring_limit = 64u << 20;
// Most rotated files kept: `logs.keep` is clamped to this (each rotation renames every one).
inline constexpr unsigned keep_limit = 1000;
// Largest read buffer of a Capture (CaptureOptions::read_buffer is clamped to this).
inline constexpr std::size_t read_buffer_limit = 16u << 20;

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

// Builds records in the module's one format (see the top of this file).
class RecordWriter {
public:
    // Appends one record to `out`: `prefix` ("" for a log file), the timestamp and a space if
    // `wall` is given, `text`, a backslash if `continued`, and '\n'.
    void append(std::string &out, std::string_view prefix, std::optional<WallMs> wall,
                std::string_view text, bool continued);
    // The size of that record.
    static constexpr std::size_t size(std::size_t prefix, bool timestamp, std::size_t text,
                                      bool continued) {
        return prefix + (timestamp ? timestamp_len + 1 : 0) + text + (continued ? 1 : 0) + 1;
    }

private:
    TimestampFormatter ts_;
};

} // namespace vigil::log

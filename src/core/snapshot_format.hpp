// snapshot_format.hpp: the frame of a core snapshot (not installed; the fuzz target and the
// tests include it to build frames around bytes of their own).
//
// A snapshot is a 32-byte header and a payload (the layout of both: "Snapshots" in
// include/vigil/core/core.hpp). The checksum covers the payload, so a flipped byte anywhere is
// refused before a field is read; the reader still checks every field on its own, because a
// checksum only guards against accidents, and a reader must hold whatever bytes it is given.
//
// The checksum mixes one 8-byte word at a time through a multiply and a shift, both bijections
// of the running value: a change confined to one word always changes the result, and any other
// change does with probability 1 - 2^-64. It runs at several GB/s; a CRC in software would be
// the slowest part of a restore.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace vigil::core::snapshot_frame {

inline constexpr char magic[8] = {'V', 'I', 'G', 'I', 'L', 'C', 'O', 'R'};
inline constexpr std::size_t header_bytes = 32;
// Offsets of the header's fields.
inline constexpr std::size_t version_at = 8;
inline constexpr std::size_t length_at = 16;
inline constexpr std::size_t checksum_at = 24;

// Durations in a snapshot are >= 0 and at most 2^42 ms (139 years: the loader's longest is one
// year); time points are within 2^61 ms of the clock's zero. No arithmetic on them overflows.
inline constexpr std::int64_t max_duration_ms = std::int64_t{1} << 42;
inline constexpr std::int64_t max_time_ms = std::int64_t{1} << 61;
// The stamps of one supervisor's restart window: the loader's largest intensity (a million) + 1,
// with room for an intensity that reload lowered (the window shrinks at the next restart).
inline constexpr std::uint32_t max_restart_window = 1u << 21;
// A node's bound on left-behind pids (events.cpp).
inline constexpr std::uint32_t max_left_behind = 16;

// A node's boolean fields, one bit each of a u16.
namespace flag {
enum : std::uint16_t {
    f_ready = 1 << 0,
    f_probe_ready = 1 << 1,
    f_started = 1 << 2,
    f_manual_start = 1 << 3,
    f_retrying = 1 << 4,
    f_joined_start = 1 << 5,
    f_gone = 1 << 6,
    f_forgotten = 1 << 7,
    f_dropped = 1 << 8,
    f_exited = 1 << 9,
    f_held_down = 1 << 10,
    f_in_set = 1 << 11,
    f_drained = 1 << 12,
    f_all = (1 << 13) - 1,
};
} // namespace flag

inline std::uint64_t checksum(const std::uint8_t *p, std::size_t n) noexcept {
    std::uint64_t h = 0x9e3779b97f4a7c15ULL ^ n;
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, p + i, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 29;
    }
    std::uint64_t w = 0;
    if (i < n) std::memcpy(&w, p + i, n - i);
    h = (h ^ w) * 0x94d049bb133111ebULL;
    return h ^ (h >> 32);
}

// Writes the checksum of the payload after a header into the header (tests, the fuzz target).
inline void seal(std::uint8_t *bytes, std::size_t size) noexcept {
    if (size < header_bytes) return;
    const std::uint64_t sum = checksum(bytes + header_bytes, size - header_bytes);
    std::memcpy(bytes + checksum_at, &sum, 8);
}

} // namespace vigil::core::snapshot_frame

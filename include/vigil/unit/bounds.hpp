// vigil/unit/bounds.hpp: the upper bound of every number, size, count and string a unit
// directory can give, and why each is what it is.
//
// vigild runs as root, often as PID 1, and a unit file is input like any other: a value the
// loader accepts must be one every module can hold and act on (no overflow, no allocation
// sized by the file, no syscall argument the kernel refuses at spawn time). The loader
// (src/unit/load.cpp) refuses anything beyond these with a diagnostic at the value, naming the
// bound; docs/vigil.unit.schema.json and man/vigil.unit.5 state the same numbers
// (tests/unit/schema_test.cpp compares the schema's with these).
//
// Memory. What a loaded unit costs is bounded by these numbers: its text (at most
// max_file_bytes, copied once per instance: max_expanded_bytes over the tree), and at run time
// its log ring (up to max_ring, allocated while it has output), two line buffers of up to
// max_line, and each pattern's window of `count` time stamps (8 bytes each). The product of
// the ring and the number of units is the daemon's to budget: 20,000 units with a 64 MiB ring
// each would be 1.25 TiB, so the default ring is 64 KiB.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "vigil/time.hpp"

namespace vigil::unit::bounds {

// ---- the directory ------------------------------------------------------------------------
// *.json files read from one directory. Past it the load fails with one diagnostic and no file
// is read: a directory that large is a mistake, or an attack on vigild's memory.
inline constexpr std::size_t max_unit_files = 20'000;
// One unit file; a larger one is refused without being parsed (real units are a few KiB).
inline constexpr std::uint64_t max_file_bytes = std::uint64_t{1} << 20;
// All unit files together (20,000 units of 3 KiB fit); past it the rest are not read.
inline constexpr std::uint64_t max_dir_bytes = std::uint64_t{64} << 20;
// The file name without .json. With an instance suffix ("@10000") and ".sock" it still fits a
// notify socket's sun_path (108 bytes) under a short socket directory.
inline constexpr std::size_t max_name_bytes = 64;

// Diagnostics kept by one load; past it they are counted, and one more says how many were not
// shown. A hostile directory could otherwise make millions (one per unknown key, per bad name).
inline constexpr std::size_t max_diagnostics = 1'000;

// ---- the tree, instances expanded ---------------------------------------------------------
// Children of the tree (the root not counted): twice the scale target of 10,000.
inline constexpr std::size_t max_nodes = 20'000;
// Sum over the tree of instances x file size: every instance holds a copy of its unit.
inline constexpr std::uint64_t max_expanded_bytes = std::uint64_t{256} << 20;
// "after" edges once instances are expanded (a unit after an instanced unit is after each
// instance): 4 MiB of child ids.
inline constexpr std::size_t max_after_edges = 1'000'000;

// ---- durations ----------------------------------------------------------------------------
// The syntax's ceiling (parse_duration): in microseconds (WATCHDOG_USEC) and even in
// nanoseconds it fits an int64 many times over, so no caller can overflow converting it.
inline constexpr Duration max_duration{365LL * 24 * 3'600'000};
// Every duration field except a pattern's `within`: timeouts, periods, delays, the watchdog and
// the backoff. A day is past any sensible value; "infinity" exists where waiting forever does.
inline constexpr Duration max_field_duration{24LL * 3'600'000};
// stop.drain: the wait before a stop signal holds a shutdown and every roll step; an hour is
// past any request a service should finish.
inline constexpr Duration max_drain{3'600'000};
// A pattern's `within`: counting rare errors over weeks is meaningful.
inline constexpr Duration max_window = max_duration;

// ---- sizes --------------------------------------------------------------------------------
inline constexpr std::uint64_t max_ring = std::uint64_t{64} << 20;    // logs.ring
inline constexpr std::uint64_t min_line = 64;                         // logs.max_line
inline constexpr std::uint64_t max_line = std::uint64_t{1} << 20;     // logs.max_line
inline constexpr std::uint64_t min_log_size = 4096;                   // logs.max_size
inline constexpr std::uint64_t max_log_size = std::uint64_t{1} << 40; // logs.max_size: 1 TiB

// ---- counts -------------------------------------------------------------------------------
inline constexpr int max_instances = 10'000;
inline constexpr int max_keep = 1'000;           // logs.keep: rotated files
inline constexpr int max_intensity = 1'000'000;  // restarts kept per supervisor period
inline constexpr int max_threshold = 1'000'000;  // probes' failure/success thresholds
inline constexpr int max_pattern_count = 10'000; // a pattern's count: its window's slots
inline constexpr std::size_t max_patterns = 64;  // patterns per unit
inline constexpr std::size_t max_after = 1'024;  // names in one unit's `after`
inline constexpr std::size_t max_argv = 4'096;   // command (and probe exec) items
inline constexpr std::size_t max_env = 4'096;    // env entries
inline constexpr std::size_t max_headers = 64;   // an http probe's headers
// `listen` entries of one unit: each is a descriptor of vigild's (per instance with reuseport)
// and one in every incarnation (fd 3..66).
inline constexpr std::size_t max_listen = 64;
// Sockets vigild holds for all units together (reuseport sockets counted per instance): each is
// one of vigild's descriptors; src/daemon/run.cpp counts them into the descriptor limit it asks
// for. Past it the load fails.
inline constexpr std::size_t max_held_sockets = 4'096;
inline constexpr int max_backlog = 65'535;           // listen.backlog
inline constexpr std::size_t max_fdname_bytes = 255; // listen.name (systemd's FDNAME limit)
// A unix socket path: sun_path holds 108 bytes with the NUL.
inline constexpr std::size_t max_socket_path_bytes = 107;

// ---- strings (bytes of UTF-8; no string may contain a NUL) ---------------------------------
// One argv item or one NAME=value env entry: execve's MAX_ARG_STRLEN (128 KiB) less the NUL.
inline constexpr std::size_t max_arg_bytes = 131'071;
// A unit's command and env together (each with its NUL): execve fails with E2BIG past a
// quarter of the stack limit (2 MiB with the usual 8 MiB), and vigild's own environment and
// the variables vigil adds must fit too.
inline constexpr std::size_t max_exec_bytes = 256 * 1024;
// The bytes execve copies for an argv and an env (NAME, value pairs), each string with its
// NUL and each entry with its '=': what max_exec_bytes bounds.
template <class Env> std::size_t exec_bytes(const std::vector<std::string> &argv, const Env &env) {
    std::size_t n = 0;
    for (const auto &a : argv)
        n += a.size() + 1;
    for (const auto &[k, v] : env)
        n += k.size() + v.size() + 2;
    return n;
}
inline constexpr std::size_t max_path_bytes = 4'095;     // PATH_MAX less the NUL
inline constexpr std::size_t max_user_bytes = 256;       // user and group names
inline constexpr std::size_t max_host_bytes = 255;       // a DNS name's maximum
inline constexpr std::size_t max_url_path_bytes = 4'096; // an http probe's path
// An http probe's header names and values (the probe's whole request stays far below the 64 KiB
// most servers take).
inline constexpr std::size_t max_header_name_bytes = 256;
inline constexpr std::size_t max_header_value_bytes = 4'096;
inline constexpr std::size_t max_regex_bytes = 4'096; // ready.log and patterns' match
inline constexpr std::size_t max_description_bytes = 1'024;
inline constexpr std::size_t max_string_bytes = 4'096; // any other string ($schema)

} // namespace vigil::unit::bounds

// src/cli/proc_figures.hpp: a process's memory and CPU time, as `vigilctl status NAME` shows them.
//
// vigilctl reads them itself from /proc/PID/stat and /proc/PID/statm (it runs on vigild's host
// or in its container): vigild's answers stay free of figures that cost a file read per unit.
// A pid that is not visible here (another pid namespace, gone meanwhile) gives nothing, and the
// line is left out. The parsers are pure so that tests feed them literal text; every number is
// checked to fit before it is scaled.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace vigil::cli {

struct ProcFigures {
    std::uint64_t rss_bytes = 0; // resident set: statm's second field x the page size
    std::uint64_t cpu_ms = 0;    // utime + stime (stat's fields 14 and 15), user and system
};

// From the text of /proc/PID/stat and /proc/PID/statm; `ticks` is sysconf(_SC_CLK_TCK), `page`
// the page size. Nothing when either is malformed or a figure does not fit.
std::optional<ProcFigures> parse_proc_figures(std::string_view stat, std::string_view statm,
                                              long ticks, long page);

// Reads /proc/PID/stat and statm (bounded reads of 4 KiB each). Nothing when pid <= 0, the
// files cannot be read, or `pid_namespace` (vigild's, from its status object) is not this
// process's own: vigild's pids are pids of its namespace, and here the same number may be
// another process (vigilctl on the host of vigild's container).
std::optional<ProcFigures> read_proc_figures(long pid, std::string_view pid_namespace);

} // namespace vigil::cli

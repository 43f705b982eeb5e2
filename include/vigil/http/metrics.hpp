// vigil/http/metrics.hpp: what the HTTP endpoint reports, and how (pure).
//
// The daemon fills a Snapshot from the core (Core::status per child) and its own counters;
// this module turns it into the /metrics Prometheus text exposition format (version 0.0.4)
// and the /readyz verdict. Nothing here touches a socket, a clock or the core.
//
// Metric families (each with HELP and TYPE, samples of a family contiguous, label values
// escaped):
//   vigil_build_info{version}                    gauge, always 1
//   process_resident_memory_bytes                gauge (when known)
//   process_open_fds                             gauge (when known)
//   vigil_units{state}                           gauge: number of units in each state
//   vigil_unit_up{unit}                          gauge 0/1: has a running process
//   vigil_unit_ready{unit}                       gauge 0/1
//   vigil_unit_restarts_total{unit}              counter
//   vigil_unit_last_exit_code{unit}              gauge (units that have exited at least once;
//                                                128+N for death by signal N)
//   vigil_unit_probe_failures_total{unit}        counter: failed probe checks
//   vigil_unit_uptime_seconds{unit}              gauge: time in the current run, 0 if not up
//   vigil_unit_state{unit,state}                 gauge 0/1, one series per state (a state set)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vigil::http {

struct UnitFigures {
    std::string name;
    std::string state;    // core::to_string(ChildState): "running", "backoff", ...
    bool goal_up = false; // the unit should be running (core::ChildStatus::goal)
    bool up = false;      // running (a live process, for services)
    bool ready = false;   // running and ready
    std::uint64_t restarts_total = 0;
    std::optional<int> last_exit_code; // core::ExitStatus::shell_code()
    std::uint64_t probe_failures_total = 0;
    double uptime_seconds = 0;
};

struct DaemonFigures {
    std::string version;                    // VIGIL_VERSION
    std::optional<std::uint64_t> rss_bytes; // self_rss_bytes()
    std::optional<std::uint64_t> open_fds;  // self_open_fds()
};

struct Snapshot {
    DaemonFigures daemon;
    std::vector<UnitFigures> units; // in a stable order (the daemon's: by ChildId)
};

// The states every unit reports in vigil_unit_state (a stable series set), matching
// core::to_string(ChildState). A state outside this list is reported too.
inline const std::vector<std::string> &unit_states() {
    static const std::vector<std::string> s{"stopped",  "starting", "running",
                                            "stopping", "backoff",  "exited"};
    return s;
}

std::string render_metrics(const Snapshot &s);

// Units that should be running but are not running and ready, in snapshot order.
std::vector<std::string> not_ready(const Snapshot &s);

// Prometheus label value escaping: backslash, double quote and newline.
std::string escape_label(const std::string &v);

// vigild's own figures from /proc/self (nullopt when /proc is unavailable).
std::optional<std::uint64_t> self_rss_bytes(); // /proc/self/statm resident pages * page size
std::optional<std::uint64_t> self_open_fds();  // entries of /proc/self/fd
// Parses /proc/<pid>/statm text: the resident page count (second field). Pure.
std::optional<std::uint64_t> parse_statm_resident(const std::string &text);

} // namespace vigil::http

// runtime.hpp: the OS handles the shell holds for each unit and each incarnation. Only handles
// and bookkeeping live here; every fact that decides or is shown lives in the core.
//
// UnitRuntime outlives incarnations: the unit's log (ring and file), its notify socket and its
// cgroup. Run is one incarnation: its pids, its output pipes, ready fd, probes and the
// watch on a main process that is not vigild's child. A Run that ended (its main process reaped,
// or its end reported by the core) but whose pipes are still open is moved to `past` and keeps
// feeding the unit's log until its EOF, so no line is lost across a restart.
//
// What `vigilctl checks` shows: the probes' counters live in their Monitor, one per incarnation
// (so they start at zero with each incarnation); the watchdog's in the Run; the last failure of
// each in UnitRuntime::last_failures, which outlives incarnations.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "os.hpp"
#include "vigil/ids.hpp"
#include "vigil/log/pattern.hpp"
#include "vigil/log/unit_log.hpp"
#include "vigil/notify/message.hpp"

namespace vigil::daemon {

struct Run {
    Incarnation incarnation;
    std::uint64_t ticket = 0; // the spawn request while it is pending
    int pid = -1;             // the spawned process (its session and process group)
    int main_pid = -1;        // the main process: pid, unless MAINPID= moved it
    int main_pidfd = -1;      // a pidfd of a main process MAINPID= named; owned
    bool reaped = false;      // the spawned process was reaped
    bool drained = false;     // its output reached EOF and Drained was fed
    bool ready_sent = false;  // BecameReady was fed
    // What the service said before the spawner's answer told vigild its pid (it runs as soon
    // as it is exec'd, and the answer comes after): replayed, and attributed, once it is known.
    bool ready_early = false;
    // The sender's session is read when the message comes, while the sender surely exists
    // (systemd-notify waits for vigild to take its message, then exits at once).
    struct EarlyNote {
        notify::Message message;
        int sender = 0;
        int session = -1; // -1: unknown (the sender was gone already)
    };
    std::vector<EarlyNote> early_notes; // bounded
    std::unique_ptr<OutputChannel> output;
    std::unique_ptr<ReadyChannel> ready_fd;
    std::unique_ptr<ProbesChannel> probes;
    // The sd_notify watchdog of this incarnation, for `vigilctl checks` (the core decides).
    std::uint64_t watchdog_pings = 0;    // WATCHDOG=1 received
    std::uint64_t watchdog_failures = 0; // the core's watchdog failures (at most one, in effect)
    TimePoint watchdog_kick{};           // the last WATCHDOG=1 or WATCHDOG_USEC= (each re-arms)
    std::unique_ptr<Running> main_watch; // a main process that is not vigild's child
    std::optional<log::Regex> ready_log; // ready: {"log": regex}, until it matched
};

// The last failed check of a probe (or the watchdog's failure), for `vigilctl checks`.
struct CheckFailure {
    static constexpr std::size_t max_message = 256; // bytes; longer messages are cut
    std::int64_t wall_ms = 0;
    std::string message;
};

// The slots of UnitRuntime::last_failures.
enum class CheckSlot : std::uint8_t { Startup, Liveness, Readiness, Watchdog };
inline constexpr std::size_t check_slots = 4;

struct UnitRuntime {
    std::unique_ptr<log::UnitLog> log; // outlives incarnations (ring, file)
    bool log_stale = false;            // reload changed the unit: rebuild `log` at the next spawn
    std::unique_ptr<NotifyChannel> notify;
    std::unique_ptr<Cgroup> cgroup;
    // Its cgroup was removed as it drained, vigild going down (Shell::output_ended): the stop
    // reached every process in it, so none is looked for as left behind.
    bool cgroup_released = false;
    std::unique_ptr<Run> run;               // the current incarnation, spawning or live
    std::vector<std::unique_ptr<Run>> past; // ended incarnations still draining their output
    std::uint64_t probe_failures = 0;       // failed probe checks, every incarnation
    // Kept across incarnations, unlike the probes' counters (Run): a restart by liveness still
    // shows why. Indexed by CheckSlot.
    std::array<std::optional<CheckFailure>, check_slots> last_failures;
    std::uint64_t log_failures_reported = 0;
    bool file_congested = false; // the log file's writer pushes back: the captures are paused
    TimePoint congested_since{};
    std::unique_ptr<Running> congestion_timer; // says so once it has lasted log_stall_notice
    bool congestion_said = false;
    // Watches on the processes listed as left behind (no cgroup): one that ends is a rescan.
    std::vector<std::unique_ptr<Running>> left_watches;
    // The process groups of its last incarnations (their first pids), newest last: what a stop
    // reaches without a cgroup, so nothing in them counts as left behind.
    static constexpr std::size_t max_recent_groups = 4;
    std::vector<int> recent_groups;
};

} // namespace vigil::daemon

// vigil/core/action.hpp: the imperatives the core asks the shell to carry out.
//
// Actions come out in a deterministic order (by the order of decisions; starts in start order,
// stops in reverse start order). The shell carries them out in the order given.
#pragma once

#include <cstdint>
#include <string>
#include <variant>

#include "vigil/core/event.hpp"
#include "vigil/ids.hpp"
#include "vigil/time.hpp"

namespace vigil::core {

// Start a new incarnation of a service. The shell answers with Spawned or SpawnFailed for
// exactly this (child, inc), usually at once (spawning is synchronous in the shell).
struct Spawn {
    ChildId child;
    Incarnation inc;
};

// Send `signal` to the process group of the incarnation whose main process is `pid`
// (services run in their own session, so the group reaches the whole service).
struct Signal {
    ChildId child;
    Incarnation inc;
    Pid pid;
    int signal;
};

// Health monitoring (probes, watchdog) of this incarnation may begin / must end. StopProbes
// comes before any stop signal and whenever a child leaves the running state.
struct StartProbes {
    ChildId child;
    Incarnation inc;
};
struct StopProbes {
    ChildId child;
};

// What a history record says happened.
enum class RecordKind : std::uint8_t {
    Starting,     // a spawn was requested
    Started,      // spawned (no readiness declared) or ready
    Ready,        // readiness reported
    Exited,       // a process ended by itself
    Stopping,     // the stop signal was sent
    Killed,       // the stop timeout passed; SIGKILL sent (a shutdown error, OTP item 41)
    Stopped,      // the child is down after a stop
    SpawnFailed,  // could not start
    StartFailed,  // start-up failure rolled back the supervisor (OTP items 3-5)
    Unhealthy,    // a health failure (probe, watchdog, log pattern)
    Restarting,   // a restart was decided (and counted); the spawn may wait for backoff
    GaveUp,       // a supervisor reached its restart intensity
    AutoShutdown, // a supervisor shut itself down because of significant children
    Command,      // a person or program asked for something
    Reconfigured, // reload changed this child
    Removed,      // a temporary child's spec was dropped, or reload removed the unit
    Exit,         // vigild is about to exit
};

// One entry of the event history (also streamed by `vigilctl events -f` and logged by vigild).
struct Record {
    TimePoint at;
    ChildId child;
    std::string unit; // the child's name at the time
    RecordKind kind;
    std::string message; // human-readable: what happened and why
};

struct Publish {
    Record record;
};

// vigild must exit with this status: the tree has stopped (requested shutdown, give-up at the
// root, start-up failure, or auto-shutdown of the root).
struct Exit {
    int status;
};

using Action = std::variant<Spawn, Signal, StartProbes, StopProbes, Publish, Exit>;

// vigild's exit statuses decided by the core (documented in vigild(8), EXIT STATUS).
// Auto-shutdown of the root exits with the significant child's shell_code() instead.
inline constexpr int exit_clean = 0;        // requested shutdown completed
inline constexpr int exit_start_failed = 3; // the tree failed to start (OTP item 3)
inline constexpr int exit_gave_up = 4;      // the root supervisor reached its intensity

} // namespace vigil::core

// vigil/core/action.hpp: the imperatives the core asks the shell to carry out.
//
// Actions come out in a deterministic order (by the order of decisions; starts in start order,
// stops in reverse start order). The shell carries them out in the order given, and answers some
// of them later with events (Spawn with Spawned or SpawnFailed).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>

#include "vigil/core/event.hpp"
#include "vigil/ids.hpp"
#include "vigil/time.hpp"

namespace vigil::core {

// Start a new incarnation of a service. The shell answers with Spawned or SpawnFailed for
// exactly this (child, incarnation), at once or later: spawning is asynchronous, and the child
// stays Starting (without a pid) until the answer comes.
struct Spawn {
    ChildId child;
    Incarnation incarnation;
};

// Send `signal` to everything the incarnation consists of: its cgroup where it has one, its
// process group (services lead their own session), and the main process if MAINPID= moved it
// out of the group. `pid` is the spawned process, for the shell's check that the incarnation is
// still the one it knows. `then_cont`: SIGCONT follows, to the same processes (a graceful stop
// signal: a stopped process must be able to act on it, as systemd sends it); one action, so the
// shell finds the processes once.
struct Signal {
    ChildId child;
    Incarnation incarnation;
    Pid pid;
    int signal;
    bool then_cont = false;
};

// Health monitoring (probes) of this incarnation may begin / must end. StopProbes comes before
// any stop signal and whenever a child leaves the running state.
struct StartProbes {
    ChildId child;
    Incarnation incarnation;
};
struct StopProbes {
    ChildId child;
};

// MAINPID= made `pid` the main process of the incarnation: the shell must learn of its end
// (through SIGCHLD if it is vigild's child, through a pidfd otherwise) and report it as Exited.
struct WatchMain {
    ChildId child;
    Incarnation incarnation;
    Pid pid;
};

// What a history record says happened.
enum class RecordKind : std::uint8_t {
    Starting,     // a spawn was requested
    Started,      // spawned (no readiness declared) or ready
    Ready,        // readiness reported
    NotReady,     // the readiness probe failed after a success
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
    Notice,       // a fact that is not a decision: a pattern event, MAINPID=, STOPPING=1...
    Exit,         // vigild is about to exit
};

// Why a record's event happened: a field scripts can match on (`vigilctl events --json`), so
// nobody has to parse the English of `message`.
enum class Cause : std::uint8_t {
    None,
    Exited,       // the process ended by itself
    SpawnFailed,  // the program could not be started
    StartTimeout, // not started (or ready) within its start timeout
    Liveness,     // the liveness probe failed
    StartupProbe, // the startup probe failed
    Watchdog,     // no WATCHDOG=1 in time, or WATCHDOG=trigger
    Pattern,      // a log pattern fired
    Command,      // a person or program asked (vigilctl, a signal to vigild)
    Reload,       // reload changed the unit
    Removed,      // reload removed the unit
    Supervisor,   // the parent's restart sweep (one_for_all, rest_for_one) or its own stop
    Shutdown,     // the whole tree is shutting down
    StartFailed,  // a start-up failure rolled the supervisor back
    Intensity,    // a supervisor reached its restart intensity
    AutoShutdown, // significant children ended
    Leftover,     // processes were left after the main process ended
    MainPid,      // MAINPID= moved (or tried to move) the main process
    Notify,       // another sd_notify message (STOPPING=1)
};

// One entry of the event history (also streamed by `vigilctl events -f` and logged by vigild).
// Besides the human `message`, each record carries its facts as fields.
struct Record {
    TimePoint at{};
    ChildId child{};
    std::string unit; // the child's name at the time
    RecordKind kind = RecordKind::Notice;
    std::string message; // human-readable: what happened and why
    Cause cause = Cause::None;
    std::optional<Pid> pid;         // the process concerned
    std::optional<ExitStatus> exit; // how it ended (Exited, Stopped, Killed...)
    std::optional<int> signal;      // the signal sent (Stopping, Killed, signal commands)
    std::optional<Duration> delay;  // the backoff delay of a decided restart
    std::optional<Incarnation> incarnation;
    // What the cause refers to: the probe ("liveness http 127.0.0.1:8080/healthz"), the pattern
    // text, the requester of a command ("vigilctl (uid 0 pid 42)").
    std::string subject;
};

struct Publish {
    Record record;
};

// vigild must exit with this status: the tree has stopped (requested shutdown, give-up at the
// root, start-up failure, or auto-shutdown of the root).
struct Exit {
    int status;
};

using Action = std::variant<Spawn, Signal, StartProbes, StopProbes, WatchMain, Publish, Exit>;

// vigild's exit statuses decided by the core (documented in vigild(8), EXIT STATUS).
// Auto-shutdown of the root exits with the significant child's shell_code() instead.
inline constexpr int exit_clean = 0;        // requested shutdown completed
inline constexpr int exit_start_failed = 3; // the tree failed to start (OTP item 3)
inline constexpr int exit_gave_up = 4;      // the root supervisor reached its intensity

} // namespace vigil::core

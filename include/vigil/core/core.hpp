// vigil/core/core.hpp: the supervision core: events in, actions out.
//
// `Core` is a deterministic state machine over a TreeSpec. It never reads a clock, never
// forks, never touches a file descriptor, and includes no OS or libuv header: the build links
// vigil_core against nothing. The shell (src/daemon) feeds it events and carries out the
// actions it appends to `out`; tests do the same through tests/support/sim.hpp.
//
// Time: every entry point takes `now`. All deadlines (backoff, stop timeout -> SIGKILL, start
// timeout, the watchdog, the wait for a dead service's leftovers) live in one queue;
// next_deadline() is the earliest, and the shell arms one timer for it and feeds
// DeadlineReached when it fires. No deadline: no timer. (The intensity window needs none: it is
// pruned at the next restart.)
//
// One source of truth: everything that decides or is shown lives here: the state and goal, the
// main pid (MAINPID= is an event), readiness over time (probe verdicts are events), the
// watchdog, the end of an incarnation (its main process ended and its output drained), what
// log patterns mean, the history with its structured records. The shell keeps only OS handles.
//
// Semantics: docs/otp-semantics.md items 1-50, plus backoff (a restart is decided and
// counted when the child ends; backoff only delays the spawn) and health failures as causes.
// Departures are listed in docs/otp-departures.md.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vigil/core/action.hpp"
#include "vigil/core/event.hpp"
#include "vigil/core/spec.hpp"

namespace vigil::core {

// Where a child is. `Backoff` means a restart was decided and the spawn waits for its delay.
enum class ChildState : std::uint8_t { Stopped, Starting, Running, Stopping, Backoff };

// Where a child should be (dinit's "desired state"; state.hpp documents every combination).
enum class Goal : std::uint8_t { Down, Up };

// A rolling restart (Core::roll) as the status of the instances it goes over shows it.
enum class RollPhase : std::uint8_t { Running, Done, Stopped };
struct RollStatus {
    std::uint64_t id = 0; // 1, 2, ... over vigild's life: tells one roll of a unit from the next
    std::string unit;     // "web"
    RollPhase phase = RollPhase::Running;
    std::uint32_t done = 0;  // instances replaced (new incarnation started and ready) or passed
    std::uint32_t total = 0; // instances the roll goes over
    std::uint32_t max_unavailable = 1;
    bool in_step = false; // this instance is being replaced by the current step
    std::string at;       // Stopped: the instance where it stopped ("web@3"; may be empty)
    std::string reason;   // Stopped: why ("exited with status 1 before it was ready")
};

// A child as `vigilctl status`, /readyz and /metrics show it: everything shown comes from here.
struct ChildStatus {
    ChildId id;
    std::string name; // a copy: reload may grow the tables it comes from
    Kind kind = Kind::Service;
    std::optional<ChildId> parent;
    ChildState state = ChildState::Stopped;
    Goal goal = Goal::Down;
    // Running, started (ready when it declares readiness) and, with a readiness probe, the
    // probe's last verdict was a success.
    bool ready = false;
    std::optional<Pid> pid;      // the spawned process while the incarnation lives
    std::optional<Pid> main_pid; // its main process (MAINPID= may have moved it)
    Incarnation incarnation;     // 0 before the first start
    TimePoint since;             // when `state` was entered
    std::uint32_t restarts = 0;  // restarts decided for this child (not manual ones)
    std::optional<ExitStatus> last_exit;
    Cause last_cause = Cause::None; // why the last incarnation ended (or failed to start)
    std::string last_reason;        // and in words: "exec pyhton3: No such file or directory"
    std::optional<TimePoint> backoff_until;
    bool exiting = false;         // the main process ended; waiting for its output and leftovers
    std::string status_text;      // sd_notify STATUS=
    std::vector<Pid> left_behind; // processes it left outside its run (LeftBehind)
    std::optional<Duration> watchdog; // the watchdog interval while it is armed
    // The unit was removed by reload (it may still be going down): it is no longer shown or
    // addressable by name. Only reload removes; an ended temporary child is `exited`.
    bool removed = false;
    // Stopped, and its last incarnation ended by itself without a restart: a temporary child
    // that ended, or a transient one that ended normally (or a significant child that shut
    // its supervisor down). It stays in view, addressable by name, with its last exit, until
    // it is started again (a command, or its supervisor's next start) or reload removes it.
    // `vigilctl status` shows the state "exited".
    bool exited = false;
    // A temporary child that ended or was stopped: its supervisor never restarts it and its
    // sweeps pass over it (items 9, 18); a start command, or its supervisor's next (re)start
    // (item 28), brings it back. Its spec is kept and it stays in view.
    bool revivable = false;
    // Stopping and draining (StopSpec::drain): the stop signal is sent at this time, or when
    // the process exits, whichever comes first. Not ready meanwhile.
    std::optional<TimePoint> drain_until;
    // The current or last rolling restart of this child's unit, when it went over this child.
    std::optional<RollStatus> roll;
};

enum class CommandKind : std::uint8_t {
    Start,    // OTP restart_child: start a stopped child; AlreadyRunning if it runs
    Stop,     // OTP terminate_child: stop it and keep the spec (temporary: spec removed)
    Restart,  // stop (if running) then start; not counted in intensity
    Signal,   // send `signal` to the child's process group; state unchanged
    Shutdown, // stop the whole tree in reverse start order, then Exit(exit_clean).
              // A second Shutdown while one is under way kills what is left (SIGKILL).
};

struct Command {
    CommandKind kind;
    ChildId child = root_id; // supervisors: Start/Stop/Restart act on the whole subtree
    int signal = 0;          // for CommandKind::Signal
    std::string who;         // for the history: "vigilctl (uid 0 pid 42)", "SIGTERM", ...
};

enum class CommandOutcome : std::uint8_t {
    Ok,
    AlreadyRunning,
    AlreadyStopped,
    NotFound,     // no such child (or a unit removed by reload)
    NotRunning,   // Signal to a child without a process
    ShuttingDown, // the tree is shutting down; nothing new starts
};

struct CommandResult {
    CommandOutcome outcome = CommandOutcome::Ok;
    std::string message;
};

// What reload changed, for the reply to `vigilctl reload`.
struct ReconfigureResult {
    std::vector<std::string> added, removed, restarted, updated; // updated: params only
    // Units ("update": "rolling") whose restarted instances reload rolls over (Core::roll)
    // instead of restarting them at once; they are listed in `restarted` too.
    std::vector<std::string> rolling;
    // validate() found problems in the new specification: nothing was changed.
    std::vector<std::string> errors;
};

struct SnapshotResult;
struct RestoreResult;

class Core {
public:
    explicit Core(TreeSpec spec);
    ~Core();
    Core(const Core &) = delete;
    Core &operator=(const Core &) = delete;
    // Exchanges the two cores' whole state (vigild takes a restored core in place of the one it
    // built from the unit files).
    void swap(Core &other) noexcept { impl_.swap(other.impl_); }

    // Starts the tree (root's children in start order, depth first).
    void start(TimePoint now, std::vector<Action> &out) noexcept;

    void handle(const Event &ev, TimePoint now, std::vector<Action> &out) noexcept;

    CommandResult command(const Command &cmd, TimePoint now, std::vector<Action> &out) noexcept;

    // Restarts several children as one command (`vigilctl restart web worker`). Children of
    // one supervisor are stopped in reverse start order and started again in start order, the
    // start waiting as the supervisor's start sequence does: one at a time, each once the one
    // before it has started (is ready, when it declares readiness), or in a parallel
    // supervisor each once the siblings it is `after` have started. Stopped children (temporary
    // ones that ended included) and children in backoff among them are started in that order
    // too. Not counted in the intensity, as a single restart. A child that is the only one of
    // its supervisor in the list, or whose supervisor is not running or is in the middle of a
    // sequence of its own (a sweep, a start), is restarted as command(Restart) would. Children
    // of different supervisors are not ordered against each other. `who` is the requester,
    // for the history. Results come in the order of `children`, each what that child's restart
    // gave (NotFound for an id that is no child, ShuttingDown...).
    std::vector<CommandResult> restart(std::span<const ChildId> children, std::string_view who,
                                       TimePoint now, std::vector<Action> &out) noexcept;

    // Rolling restart of `unit` (ChildSpec::unit: "web" for web@1..web@N): its live children
    // are replaced in instance order, a step at a time. A step stops up to `max_unavailable`
    // of them (nullopt: the unit's max_unavailable; clamped to 1..instances) and starts them
    // again, as a restart command would (not counted in the intensity); the next step begins
    // once every new incarnation of the step has started and is ready (wait_ready, and the
    // readiness probe's first success). A child of the unit stopped by command is passed over
    // (counted done) and stays stopped. A new incarnation that fails (spawn failure, start
    // timeout, health failure, an exit before or after ready while its step runs) stops the
    // roll: the instances not reached yet are not touched, the failed one goes on under its
    // restart policy. The roll also stops when a child of the unit is stopped by command, when
    // its supervisor stops (shutdown included), or when reload restarts the unit (a unit that
    // rolls is rolled again from its first instance; one that restarts restarts at once).
    // A plain restart of an instance meanwhile is carried out, and the roll goes on.
    // Records: a Command record, one Notice per step and one at the end ("rolling restart of
    // web done: 4/4", "rolling restart of web stopped at web@3: ..."). Outcomes: NotFound (no
    // live child of that unit), AlreadyRunning (a roll of it is under way; message: its
    // progress), NotRunning (its supervisor is not running), ShuttingDown, Ok (message: "rolling
    // restart 0/4"; roll_status() has its id).
    CommandResult roll(std::string_view unit, std::optional<std::uint32_t> max_unavailable,
                       std::string_view who, TimePoint now, std::vector<Action> &out) noexcept;
    // The current or last roll of `unit`; nullopt if there was none.
    std::optional<RollStatus> roll_status(std::string_view unit) const;

    // Replaces the specification (reload). Children are matched by name: removed units are
    // stopped, added ones started, services whose fingerprint changed are restarted, other
    // parameters (supervisors' strategy, intensity, period, auto_shutdown...) change in place.
    // ChildIds of kept children stay valid; a new child gets the id of a child removed by an
    // earlier reload that is down and that the shell released (forget()), else a new one.
    // Precisely (docs/otp-departures.md, item 49): a service is restarted when its fingerprint
    // or wait_ready changed; the other policy fields (restart, significant, stop, backoff,
    // start_timeout) are updated in place and reported in `updated`. A unit whose parent or
    // kind changed is removed and added again. An invalid `next` (validate()) changes nothing
    // and is reported in `errors`. A child stopped by command stays stopped.
    // A unit with update Rolling whose running instances must restart is rolled instead
    // (roll(), cause Reload; listed in ReconfigureResult::rolling).
    ReconfigureResult reconfigure(TreeSpec next, TimePoint now, std::vector<Action> &out) noexcept;

    // The shell is done with a child whose spec is gone (removed by reload): its per-child
    // history is freed (the records stay in the global history) and, once the child is down,
    // its id may be given to a child a later reload adds. So ids are bounded by the most children
    // that were ever alive at once, not by the number of reloads. The shell must hold nothing of
    // the id once it calls this (no run, no spawn in flight: a child with a spawn in flight is not
    // down). Does nothing for a live spec.
    void forget(ChildId child) noexcept;

    // Records a fact about a child that is not a decision of the core and not an event of its
    // own (output lines a log sink could not write): it enters the history as a Notice, like
    // every record, and comes out as a Publish action. Changes nothing else.
    void note(ChildId child, Cause cause, std::string message, TimePoint now,
              std::vector<Action> &out);

    std::optional<TimePoint> next_deadline() const noexcept;

    // Why a child that should run is not started yet: the siblings it waits for. For a child
    // that is stopped with goal up and whose parent runs, the siblings it is `after` that have
    // not started yet (running, or no longer wanted up); if there are none and the parent
    // starts one child at a time, the earlier sibling its start sequence waits on (starting and
    // not yet ready, or stopping). Empty for any other child, and when nothing holds it (its
    // parent is about to start it). At most the child's `after` list or one sibling.
    std::vector<ChildId> waiting_for(ChildId id) const;

    // Queries.
    std::size_t size() const noexcept; // number of ids allocated (removed ones included)
    ChildStatus status(ChildId id) const noexcept;
    std::optional<ChildId> find(std::string_view name) const noexcept;
    const ChildSpec &spec(ChildId id) const noexcept;
    // The restarts a supervisor's intensity window holds at `now` (at most its intensity + 1):
    // with spec(id).intensity and .period, how close it is to giving up. 0 for a service.
    std::size_t restarts_in_window(ChildId supervisor, TimePoint now) const noexcept;
    // The most recent history records (oldest first), globally or for one child.
    std::vector<Record> history(std::optional<ChildId> child, std::size_t max) const;
    bool finished() const noexcept; // an Exit action has been emitted
    // Process events dropped because they belong to an old incarnation or do not fit the
    // child's state (late exits, reused pids, duplicates). For tests and `vigilctl status`.
    std::uint64_t dropped_events() const noexcept;
    // Inputs dropped because an exception (an allocation that failed) was caught inside the
    // core: the entry points are noexcept and never end vigild.
    std::uint64_t internal_errors() const noexcept;

    // ---- continuity across an exec of vigild (src/core/snapshot.cpp) ---------------------------
    // Everything the core knows, as bytes, so that a new vigild binary can carry on where this
    // one stopped with every service keeping its pid (see "Snapshots" below). Pure: no clock, no
    // descriptor. Call it between entry points (never from inside one: none is reentrant anyway).
    // Fails (empty bytes and an error) only when an allocation fails or a value is beyond a
    // snapshot bound (max_snapshot_*), and then changes nothing: the caller keeps running.
    SnapshotResult snapshot() const noexcept;

    // Rebuilds the core that took `bytes`, for the new binary. `loaded` is the tree the new binary
    // loaded from the unit files; it must be valid (validate()) and have the same units as the
    // snapshot's tree (those not removed by reload): the same names, each of the same kind under
    // the same parent. The restored core is the old one exactly: the same ChildIds (removed
    // units still going down included), and the specs it ran with, not `loaded`'s. The caller
    // then applies `loaded` with reconfigure(), as a reload: parameters change in place and a
    // service whose fingerprint changed is restarted; with unchanged units it changes nothing.
    // Any problem (an unknown format version, bytes that are truncated, corrupt, inconsistent or
    // beyond a bound, a tree that differs) refuses the whole snapshot with an error that says
    // what was wrong, and nothing is adopted: the caller starts the tree cleanly instead.
    static RestoreResult restore(const TreeSpec &loaded,
                                 std::span<const std::uint8_t> bytes) noexcept;

    struct Impl; // the model (src/core/impl.hpp): opaque outside the core

private:
    explicit Core(std::unique_ptr<Impl> impl) noexcept;
    std::unique_ptr<Impl> impl_;
};

// Snapshots (Core::snapshot, Core::restore). vigild re-executes itself (or a newer binary at
// the same path) with every descriptor kept open, and carries the core's state across the exec
// in these bytes. CLOCK_MONOTONIC survives the exec, so every deadline is carried as it is.
// Format (the bytes never leave the machine: native byte order, fixed-width integers):
//   header   "VIGILCOR", u32 format version, u32 0, u64 payload length, u64 payload checksum
//   payload  the core's own fields, every node (its spec as the core holds it, its state, its
//            restart window, its live timer, its history), then the global history.
// A reader refuses any version but its own (snapshot_format_version): a binary that changes the
// format bumps it, and knows how to read the versions before it or refuses them.
inline constexpr std::uint32_t snapshot_format_version = 1;
// Bounds a reader enforces (a snapshot over them is refused; snapshot() fails instead of
// writing one). Nodes: removed units not yet forgotten may add to the loader's 20,001.
inline constexpr std::uint64_t max_snapshot_bytes = std::uint64_t{1} << 30;
inline constexpr std::uint32_t max_snapshot_nodes = 1u << 18;
// Any string (a message with a matched log line, a reason, a status text, a name).
inline constexpr std::uint32_t max_snapshot_string = 4u << 20;

struct SnapshotResult {
    std::vector<std::uint8_t> bytes; // empty on failure
    std::string error;               // "snapshot: <what failed>"
};

struct RestoreResult {
    std::unique_ptr<Core> core; // null on failure
    std::string error;          // "restore: <what was wrong>"
};

// Checks what the type system cannot (OTP item 13): unique names, a well-formed tree (node 0
// the root supervisor, every other node reachable exactly once, services without children),
// significant only on transient/temporary children of a supervisor whose auto_shutdown is not
// `never`, intensity >= 0, period > 0, stop timeouts >= 0. Returns one message per problem,
// empty when the tree is valid. Core::start() refuses an invalid tree: it starts nothing,
// publishes the problems and exits with exit_start_failed.
std::vector<std::string> validate(const TreeSpec &spec);

const char *to_string(ChildState s) noexcept;
const char *to_string(RecordKind k) noexcept;
const char *to_string(Kind k) noexcept;
const char *to_string(Restart r) noexcept;
const char *to_string(Strategy s) noexcept;
const char *to_string(AutoShutdown a) noexcept;
const char *to_string(FailureCause c) noexcept;
const char *to_string(Cause c) noexcept;
const char *to_string(PatternAction a) noexcept;
const char *to_string(RollPhase p) noexcept;
const char *to_string(Update u) noexcept;

} // namespace vigil::core

// impl.hpp: the supervision core's internal model, shared by its parts (not installed).
//
// The core is one object (Core::Impl) split by job over several files:
//   core.cpp         the public API: entry points, queries, status
//   lifecycle.cpp    one child: start, stop, started, the end of an incarnation, health
//   plan.cpp         a supervisor's sequences: start and stop phases, sweeps, its own end
//   decide.cpp       a child is down: who wanted it, restart or not, intensity, backoff,
//                    auto-shutdown
//   events.cpp       the shell's events, and deadlines
//   commands.cpp     commands from people (start, stop, restart, signal, shutdown)
//   reconfigure.cpp  reload
//   records.cpp      the history and the text of its records
//   roll.cpp         rolling restarts of a unit's instances, a step at a time
// Every public entry point sets `now` and `out`, handles its input, then drains the work queue.
// The work queue holds supervisors whose plan (start or stop sequence) may advance; a plan
// advances as far as it can without waiting and then returns, so cascades (one_for_all,
// rest_for_one, escalation up the tree) never recurse (dinit's process_queues).
// Item numbers in comments refer to the OTP checklist, docs/otp-semantics.md.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "deadline_queue.hpp"
#include "history.hpp"
#include "intensity.hpp"
#include "splitmix.hpp"
#include "vigil/core/core.hpp"

namespace vigil::core {

// Why a child is stopping (or why a supervisor ends). When two requests meet, the one with the
// higher precedence() wins: the parent's sweep or shutdown outranks a manual stop, which outranks
// a restart request, which outranks a health stop. The numbers are written out, not taken from the
// enum's order, so reordering the enum can never change a decision.
enum class StopCause : std::uint8_t {
    None,
    Health,        // a health failure: after the stop, an abnormal end
    StartTimeout,  // not started in time: after the kill, a start failure
    StartFailed,   // supervisors: a child failed to start during start-up; roll back
    GaveUp,        // supervisors: restart intensity reached
    AutoShutdown,  // supervisors: significant children ended
    ManualRestart, // a restart command: start again once stopped, not counted
    Reload,        // reload changed the unit: start again once stopped, not counted
    Manual,        // a stop command: stays stopped
    Plan,          // the parent's sweep or shutdown
    Shutdown,      // the root: requested shutdown of the whole tree
    Removed,       // reload removed the unit
};

constexpr int precedence(StopCause c) noexcept {
    switch (c) {
    case StopCause::None:
        return 0;
    case StopCause::Health:
        return 10;
    case StopCause::StartTimeout:
        return 20;
    case StopCause::StartFailed:
        return 30;
    case StopCause::GaveUp:
        return 40;
    case StopCause::AutoShutdown:
        return 50;
    case StopCause::ManualRestart:
        return 60;
    case StopCause::Reload:
        return 70;
    case StopCause::Manual:
        return 80;
    case StopCause::Plan:
        return 90;
    case StopCause::Shutdown:
        return 100;
    case StopCause::Removed:
        return 110;
    }
    return 0;
}

constexpr StopCause stronger(StopCause a, StopCause b) noexcept {
    return precedence(b) > precedence(a) ? b : a;
}

// The record cause that a stop cause, or a health failure, stands for.
Cause record_cause(StopCause c) noexcept;
Cause record_cause(FailureCause c) noexcept;
const char *cause_text(StopCause c) noexcept;

// How a child came to be down, as its parent judges it.
enum class DownKind : std::uint8_t {
    Normal,       // ended by itself with status 0 (OTP `normal`)
    Abnormal,     // ended by itself otherwise, or failed health
    SelfShutdown, // a supervisor that gave up or shut itself down (OTP `shutdown`)
    StartFailed,  // never counted as started
    Stopped,      // stopped on request; Node::stop_cause says whose
};

enum class Phase : std::uint8_t { Idle, Stopping, Starting };

// What a parallel phase's last full scan left in flight: the children it found Starting or
// Stopping, each of which waits for an event of its own. While any of them has not settled
// (Impl::settled: it ran, or went down), a pump of that phase has nothing to do and skips the
// scan, so 10,000 children settling one at a time cost O(n) in all instead of a rescan of
// every child per event, O(n²). Only a scan that found nothing else to wait on fills it (no
// `after` in range, no child held by a predecessor or a restart delay); every plain
// Impl::schedule() of the supervisor drops it, so any other change is seen by a full scan;
// the last child to settle also leads to one, which alone decides that the phase is over.
// A cache: never in a snapshot (a restored plan scans in full first).
struct InFlight {
    std::vector<bool> counted; // by child index: in flight at the scan, not settled since
    std::size_t pending = 0;   // how many are set in `counted`
};

// A supervisor's sequence over its children. Ranges always end at the last child, because every
// sequence OTP defines does (all children, or "this one and those after it").
struct Plan {
    Phase phase = Phase::Idle;
    bool terminal = false;      // after the stop phase the supervisor itself ends
    std::size_t lo = 0;         // stop phase: lowest index to stop
    std::size_t start_from = 0; // start phase begins here
    std::size_t cursor = 0;     // next child to look at
    // A restart command over several siblings (Core::restart): the stop phase stops only the
    // children marked Node::in_set (as ManualRestart), and the start phase wants only them up
    // again. A real sweep that meets it widens it to every child in range.
    bool set_only = false;
    std::unique_ptr<InFlight> in_flight; // parallel phases only; see InFlight
};

// The facts of a record besides its kind and message (Record's structured fields).
struct Facts {
    Cause cause = Cause::None;
    std::optional<Pid> pid;
    std::optional<ExitStatus> exit;
    std::optional<int> signal;
    std::optional<Duration> delay;
    std::string subject;
};

// Why and how a health failure stopped an incarnation, for the records after the stop.
struct HealthStop {
    Cause cause = Cause::None;
    std::string subject; // the probe or pattern
    std::string text;    // "liveness failure: http :8080/healthz: status 503, 3 times"
};

struct Node {
    ChildSpec spec;
    ChildState state = ChildState::Stopped;
    Goal goal = Goal::Down;
    bool ready = false;        // started-ready (spawned, or ready when wait_ready)
    bool probe_ready = true;   // the readiness probe's last verdict (true without a probe)
    bool started = false;      // this incarnation counted as started (item 1)
    bool manual_start = false; // started by a command: a failure is reported, not retried
    // Its start failed and a restart was decided: until it counts as started, it holds back
    // only the siblings after it through `after` (Impl::cannot_start).
    bool retrying = false;
    // Added by reload while its supervisor was starting: its start failure is its own (a
    // failed restart), not the supervisor's, as for a child OTP's start_child adds once init
    // is done. Cleared when the supervisor starts again.
    bool joined_start = false;
    bool gone = false;      // removed by reload
    bool forgotten = false; // gone, and the shell holds nothing of it (Core::forget)
    // A temporary child that ended or was stopped (items 9, 18, 50): never restarted by its
    // supervisor, passed over by its sweeps; kept in view (docs/otp-departures.md).
    bool dropped = false;
    // Its last incarnation ended by itself and was not restarted (ChildStatus::exited).
    bool exited = false;
    // Stopped by a command while its parent's sweep was stopping it: the sweep's start phase
    // must not bring it back (the person's stop came later than the sweep's decision).
    bool held_down = false;
    bool in_set = false; // one of the children a running set restart stops and starts
    // Stopping, and the stop signal waits for the drain (StopSpec::drain) to pass: the timer
    // is the drain's until then.
    std::optional<TimePoint> drain_until;
    StopCause stop_cause = StopCause::None;
    std::optional<Pid> pid;      // the spawned process, while the incarnation lives
    std::optional<Pid> main_pid; // the main process (the spawned one unless MAINPID= moved it)
    std::optional<ExitStatus> main_exit; // the main process ended; the end is not reported yet
    bool drained = false;                // the incarnation's output reached EOF
    Incarnation inc{};
    TimePoint since{};
    TimePoint run_since{}; // when the current incarnation was spawned (for reset_after)
    std::uint32_t restarts = 0;
    std::uint32_t backoff_step = 0;
    std::size_t index = 0; // position in the parent's children
    std::optional<ExitStatus> last_exit;
    Cause last_cause = Cause::None;
    std::string last_reason;
    std::optional<TimePoint> backoff_until;
    std::optional<Duration> watchdog; // the current interval (WATCHDOG_USEC= may move it)
    std::uint64_t timer_seq = 0;      // the live DeadlineQueue entry, 0 for none
    // Reload replaced this node by one of the same name (a move or a change of kind): the old
    // one must be down before the new one starts, or two processes of one unit would run.
    std::optional<ChildId> predecessor, successor;
    HealthStop health; // set with stop_cause Health
    std::string status_text;
    std::vector<Pid> left_behind;
    Plan plan;                  // supervisors
    RestartIntensity intensity; // supervisors
    std::unique_ptr<RecordRing> history;
};

// A rolling restart of one unit's instances (roll.cpp). `order` holds ids; each use checks
// that the node is still a live child of `unit` (reload may remove one, and a forgotten id may
// go to another unit).
struct Roll {
    std::uint64_t id = 0;
    std::string unit;
    RollPhase phase = RollPhase::Running;
    std::vector<ChildId> order;                        // instances, in instance order
    std::size_t next = 0;                              // order[next..]: not reached yet
    std::vector<std::pair<ChildId, Incarnation>> step; // being replaced; incarnation before
    std::uint32_t max_unavailable = 1;
    std::uint32_t done = 0;
    std::uint32_t steps = 0;
    StopCause cause = StopCause::ManualRestart; // or Reload
    std::string who;
    std::string at, reason; // Stopped
};

struct Core::Impl {
    std::vector<Node> nodes;
    std::map<std::string, ChildId, std::less<>> by_name; // live (not gone) children
    DeadlineQueue deadlines;
    SplitMix64 rng;
    std::deque<ChildId> work; // supervisors whose plan may advance
    RecordRing global{global_history};
    std::vector<Action> *out = nullptr;
    TimePoint now{};
    bool finished = false;
    bool kill_all = false; // a second Shutdown: every stop is SIGKILL from now on
    std::uint64_t dropped_events = 0;
    std::uint64_t internal_errors = 0;    // inputs dropped because an exception was caught
    std::vector<std::string> spec_errors; // validate() at construction; start() refuses them
    // The current or last roll of each unit that was rolled (at most one entry a unit name;
    // reload erases those of units it removed).
    std::map<std::string, Roll, std::less<>> rolls;
    std::uint64_t roll_seq = 0;

    explicit Impl(TreeSpec spec);

    // ---- small helpers (core.cpp) -------------------------------------------------------------
    bool valid(ChildId c) const { return c.value < nodes.size(); }
    Node &node(ChildId c) { return nodes[c.value]; }
    const Node &node(ChildId c) const { return nodes[c.value]; }
    std::string_view name(ChildId c) const { return nodes[c.value].spec.name; }
    bool is_service(ChildId c) const { return nodes[c.value].spec.kind == Kind::Service; }
    void set_state(ChildId c, ChildState s);
    void arm(ChildId c, TimePoint when) { node(c).timer_seq = deadlines.push(when, c); }
    void disarm(ChildId c) { node(c).timer_seq = 0; }
    // The supervisor's plan may advance: its next pump scans every child in range.
    void schedule(ChildId sup) {
        node(sup).plan.in_flight.reset();
        work.push_back(sup);
    }
    void settled(ChildId c); // plan.cpp: `c` ran or went down, nothing else changed
    // Appends an action. (Constructed in place: g++ 12 warns falsely about the variant's
    // other members when a small action is pushed as a temporary.)
    template <class A> void emit(A a) { out->emplace_back(std::in_place_type<A>, std::move(a)); }
    void drain();
    void tidy_deadlines();
    ChildStatus status(ChildId id) const;
    template <class F> void guarded(F &&f) noexcept; // core.cpp: runs f, drains, catches
    void start_tree();

    // ---- records (records.cpp) ----------------------------------------------------------------
    void publish(ChildId c, RecordKind kind, std::string message, Facts facts = {});

    // ---- one child (lifecycle.cpp) ------------------------------------------------------------
    void start_child(ChildId c);
    void send_stop(ChildId c);
    bool start_drain(ChildId c, bool was_started);
    void signal_group(ChildId c, int sig, bool then_cont = false);
    bool stop_child(ChildId c, StopCause cause);
    void mark_started(ChildId c, std::string msg);
    void arm_watchdog(ChildId c);
    void main_ended(ChildId c, ExitStatus status);
    void finish_exit(ChildId c);
    void exited_while_starting(ChildId c, ExitStatus status);
    void exited_while_running(ChildId c, ExitStatus status);
    void health_failure(ChildId c, HealthStop stop);
    void kill_now(ChildId c, std::string why);
    void kill_subtree(ChildId s, const char *why);

    // ---- a supervisor's sequences (plan.cpp) ----------------------------------------------------
    bool plan_starts(ChildId parent, std::size_t idx) const;
    bool plan_stops(ChildId parent, std::size_t idx) const;
    bool waits_for_predecessor(const Node &n) const;
    void begin_terminal(ChildId s);
    void end_supervisor(ChildId s, StopCause cause);
    void sweep(ChildId s, std::size_t j);
    void request_start(ChildId s, std::size_t j);
    void pump(ChildId s);
    void begin_sweep_start(ChildId s);
    void supervisor_started(ChildId s);
    bool stop_sequential(ChildId s);
    bool cannot_start(const Node &kn) const;
    bool after_blocked(const Node &kn, const std::vector<bool> &blocked) const;
    bool start_sequential(ChildId s);
    std::vector<ChildId> waiting_for(ChildId c) const;
    bool start_done(const Node &kn) const;
    bool start_parallel(ChildId s);
    bool parallel_deps_started(const Node &kn, std::size_t cursor) const;
    bool stop_parallel(ChildId s);
    bool stop_done(const Plan &p, const Node &kn) const;
    void finish_supervisor(ChildId s);
    void finish_root(StopCause cause);

    // ---- a child is down (decide.cpp) ---------------------------------------------------------
    void drop(ChildId c, const char *why);
    void on_down(ChildId c, DownKind kind, RecordKind rk, std::string what, Facts facts);
    bool down_as_requested(ChildId c, std::string &what, DownKind &kind, RecordKind &rk,
                           Facts &facts);
    void stopped_because(ChildId c, const std::string &what);
    bool down_without_decision(ChildId c, RecordKind rk, const std::string &what,
                               const Facts &facts);
    void decide(ChildId c, DownKind kind, RecordKind rk, std::string what, Facts facts);
    void not_restarted(ChildId c, RecordKind rk, const std::string &what, Facts facts,
                       const char *why_not);
    bool significant_ends(ChildId c, const std::string &what);
    Duration restart_delay(ChildId c);

    // ---- events (events.cpp) ------------------------------------------------------------------
    bool current(ChildId c, Incarnation inc);
    void on_event(const Spawned &ev);
    void on_event(const SpawnFailed &ev);
    void on_event(const Exited &ev);
    void on_event(const Drained &ev);
    void on_event(const BecameReady &ev);
    void on_event(const ProbeReadiness &ev);
    void on_event(const HealthFailed &ev);
    void on_event(const PatternFired &ev);
    void on_event(const MainPidReported &ev);
    void on_event(const WatchdogPing &ev);
    void on_event(const WatchdogInterval &ev);
    void on_event(const StatusText &ev);
    void on_event(const StoppingReported &ev);
    void on_event(const LeftBehind &ev);
    void on_event(const DeadlineReached &ev);
    void on_deadline(ChildId c);
    std::string main_pid_refusal(ChildId c, Pid pid) const;

    // ---- commands (commands.cpp) --------------------------------------------------------------
    CommandResult command(const Command &cmd);
    CommandResult shutdown(const Command &cmd);
    CommandResult start_command(ChildId c, const Command &cmd);
    CommandResult stop_command(ChildId c, const Command &cmd);
    CommandResult restart_command(ChildId c, const Command &cmd);
    CommandResult signal_command(ChildId c, const Command &cmd);
    CommandResult manual_start(ChildId c);
    std::vector<CommandResult> restart_set(std::span<const ChildId> children,
                                           const std::string &who);
    bool restart_siblings(ChildId parent, const std::vector<ChildId> &kids, const Command &cmd,
                          std::vector<CommandResult> &res, const std::vector<std::size_t> &at);
    CommandResult join_set(ChildId c);
    bool tree_shutting_down() const;
    void kill_everything();

    // ---- rolling restarts (roll.cpp) -----------------------------------------------------------
    const std::string &unit_of(ChildId c) const;
    std::vector<ChildId> instances_of(std::string_view unit) const;
    CommandResult roll_command(std::string_view unit, std::optional<std::uint32_t> max,
                               const std::string &who);
    void begin_roll(std::string_view unit, std::vector<ChildId> order, std::uint32_t max,
                    StopCause cause, const std::string &who);
    bool advance_rolls();
    bool advance_roll(Roll &r);
    bool begin_step(Roll &r);
    void replace_instance(ChildId c, StopCause cause);
    void end_roll(Roll &r, RollPhase phase, ChildId at, std::string reason);
    Roll *roll_of(ChildId c);
    bool in_step(const Roll &r, ChildId c) const;
    void roll_member_down(ChildId c, DownKind kind, const std::string &what);
    void roll_member_stopped(ChildId c, const std::string &who);
    std::optional<RollStatus> roll_status(ChildId c) const;

    // ---- reload (reconfigure.cpp) -------------------------------------------------------------
    ReconfigureResult reconfigure(TreeSpec next);
};

// The Facts of a command's record.
Facts command_facts(const Command &cmd);

} // namespace vigil::core

// core.cpp: the supervision core (issue 3). The model is documented in
// include/vigil/core/state.hpp; the rules come from shared/docs/otp-semantics.md, and the item
// numbers in comments refer to that checklist.
//
// Shape: every public entry point sets `now_` and `out_`, handles its event, then drains the work
// queue. The work queue holds supervisors whose plan (start or stop sequence) may advance; a
// plan advances as far as it can without waiting and then returns, so cascades (one_for_all,
// rest_for_one, escalation up the tree) never recurse (dinit's process_queues).
#include "vigil/core/core.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <string>

#include "backoff.hpp"
#include "deadline_queue.hpp"
#include "history.hpp"
#include "intensity.hpp"
#include "splitmix.hpp"
#include "vigil/core/names.hpp"

namespace vigil::core {

namespace {

// Why a child is stopping (or why a supervisor ends). When two requests meet, the larger one
// wins, so the order below is a priority: the parent's sweep or shutdown outranks a manual stop,
// which outranks a restart request, which outranks a health stop.
enum class Cause : std::uint8_t {
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

// How a child came to be down, as its parent judges it.
enum class DownKind : std::uint8_t {
    Normal,       // ended by itself with status 0 (OTP `normal`)
    Abnormal,     // ended by itself otherwise, or failed health
    SelfShutdown, // a supervisor that gave up or shut itself down (OTP `shutdown`)
    StartFailed,  // never counted as started
    Stopped,      // stopped on request; Node::stop_cause says whose
};

enum class Phase : std::uint8_t { Idle, Stopping, Starting };

// A supervisor's sequence over its children. Ranges always end at the last child, because every
// sequence OTP defines does (all children, or "this one and those after it").
struct Plan {
    Phase phase = Phase::Idle;
    bool terminal = false;      // after the stop phase the supervisor itself ends
    std::size_t lo = 0;         // stop phase: lowest index to stop
    std::size_t start_from = 0; // start phase begins here
    std::size_t cursor = 0;     // next child to look at
};

struct Node {
    ChildSpec spec;
    ChildState state = ChildState::Stopped;
    bool want_up = false;
    bool ready = false;
    bool started = false;      // this incarnation counted as started (item 1)
    bool manual_start = false; // started by a command: a failure is reported, not retried
    bool gone = false;         // removed by reload
    bool dropped = false;      // temporary child whose spec is removed (items 9, 18, 50)
    Cause stop_cause = Cause::None;
    std::optional<Pid> pid;
    Incarnation inc{};
    TimePoint since{};
    TimePoint run_since{}; // when the current incarnation was spawned (for reset_after)
    std::uint32_t restarts = 0;
    std::uint32_t backoff_step = 0;
    std::size_t index = 0; // position in the parent's children
    std::optional<ExitStatus> last_exit;
    std::optional<TimePoint> backoff_until;
    std::uint64_t timer_seq = 0; // the live DeadlineQueue entry, 0 for none
    // Reload replaced this node by one of the same name (a move or a change of kind): the old
    // one must be down before the new one starts, or two processes of one unit would run.
    std::optional<ChildId> predecessor, successor;
    std::string stop_detail;    // health failure text, for the record after the stop
    Plan plan;                  // supervisors
    RestartIntensity intensity; // supervisors
    std::unique_ptr<RecordRing> history;
};

bool is_up(ChildState s) {
    switch (s) {
    case ChildState::Stopped:
        return false;
    case ChildState::Starting:
    case ChildState::Running:
    case ChildState::Stopping:
    case ChildState::Backoff:
        return true;
    }
    return false;
}

const char *cause_text(Cause c) {
    switch (c) {
    case Cause::None:
        return "";
    case Cause::Health:
        return "health failure";
    case Cause::StartTimeout:
        return "start timeout";
    case Cause::StartFailed:
        return "start-up failure";
    case Cause::GaveUp:
        return "restart intensity reached";
    case Cause::AutoShutdown:
        return "auto_shutdown";
    case Cause::ManualRestart:
        return "restart command";
    case Cause::Reload:
        return "reload";
    case Cause::Manual:
        return "stop command";
    case Cause::Plan:
        return "supervisor";
    case Cause::Shutdown:
        return "shutdown";
    case Cause::Removed:
        return "reload (unit removed)";
    }
    return "";
}

} // namespace

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
    std::vector<std::string> spec_errors; // validate() at construction; start() refuses them

    explicit Impl(TreeSpec spec) : rng(spec.seed) {
        if (spec.nodes.empty()) {
            ChildSpec root;
            root.name = "root";
            root.kind = Kind::Supervisor;
            spec.nodes.push_back(root);
        }
        nodes.resize(spec.nodes.size());
        for (std::size_t i = 0; i < spec.nodes.size(); ++i) {
            nodes[i].spec = std::move(spec.nodes[i]);
            by_name.emplace(nodes[i].spec.name, ChildId{static_cast<std::uint32_t>(i)});
        }
        nodes[0].spec.kind = Kind::Supervisor;
        nodes[0].spec.parent.reset();
        // Parent links and positions come from the children lists, the one source of truth.
        for (std::size_t p = 0; p < nodes.size(); ++p) {
            auto &kids = nodes[p].spec.children;
            std::erase_if(kids, [&](ChildId c) { return c.value == 0 || c.value >= nodes.size(); });
            for (std::size_t i = 0; i < kids.size(); ++i) {
                nodes[kids[i].value].index = i;
                nodes[kids[i].value].spec.parent = ChildId{static_cast<std::uint32_t>(p)};
            }
        }
    }

    // ---- small helpers ---------------------------------------------------------------------

    bool valid(ChildId c) const { return c.value < nodes.size(); }
    Node &node(ChildId c) { return nodes[c.value]; }
    std::string_view name(ChildId c) const { return nodes[c.value].spec.name; }
    bool is_supervisor(ChildId c) const { return nodes[c.value].spec.kind == Kind::Supervisor; }

    void set_state(ChildId c, ChildState s) {
        Node &n = node(c);
        n.state = s;
        n.since = now;
        n.timer_seq = 0; // each timer belongs to a state: leaving it cancels the timer
    }

    void arm(ChildId c, TimePoint when) { node(c).timer_seq = deadlines.push(when, c); }

    void publish(ChildId c, RecordKind kind, std::string message) {
        Record r{now, c, std::string(name(c)), kind, std::move(message)};
        Node &n = node(c);
        if (!n.history) n.history = std::make_unique<RecordRing>(per_child_history);
        n.history->push(r);
        global.push(r);
        out->push_back(Publish{std::move(r)});
    }

    void schedule(ChildId sup) { work.push_back(sup); }

    void drain() {
        while (!work.empty()) {
            const ChildId s = work.front();
            work.pop_front();
            pump(s);
        }
    }

    // Drops cancelled entries from the top so next_deadline() is exact.
    void tidy_deadlines() {
        while (!deadlines.empty()) {
            const auto &e = deadlines.top();
            if (valid(e.child) && node(e.child).timer_seq == e.seq) break;
            deadlines.pop();
        }
    }

    // Does the parent's running sequence decide when this child starts? (Then a backoff that
    // ends, or a restart without delay, leaves the start to the sequence.)
    bool plan_starts(ChildId parent, std::size_t idx) {
        const Plan &p = node(parent).plan;
        switch (p.phase) {
        case Phase::Idle:
            return false;
        case Phase::Stopping:
            return !p.terminal && (idx >= p.lo || idx >= p.start_from);
        case Phase::Starting:
            return idx >= p.cursor;
        }
        return false;
    }

    // Is the child inside a sweep's stop range (its end is the sweep's business)?
    bool plan_stops(ChildId parent, std::size_t idx) {
        const Plan &p = node(parent).plan;
        return p.phase == Phase::Stopping && idx >= p.lo;
    }

    bool waits_for_predecessor(const Node &n) {
        return n.predecessor && node(*n.predecessor).state != ChildState::Stopped;
    }

    // ---- starting and stopping one child -------------------------------------------------

    // Starts a new incarnation of `c` now. Callers have checked that the parent allows it (its
    // sequence is at `c`, or nothing in the parent decides when `c` starts). A service only gets
    // a Spawn here; it becomes Running when the shell answers Spawned (or BecameReady), and that
    // answer is what lets the parent's start sequence move on (item 1).
    void start_child(ChildId c) {
        Node &n = node(c);
        n.want_up = true;
        n.backoff_until.reset();
        n.stop_cause = Cause::None;
        n.stop_detail.clear();
        n.started = false;
        n.ready = false;
        n.inc.value++;
        n.run_since = now;
        if (n.spec.kind == Kind::Service) {
            n.pid.reset();
            set_state(c, ChildState::Starting);
            if (n.spec.start_timeout) arm(c, now + *n.spec.start_timeout);
            out->push_back(Spawn{c, n.inc});
            return;
        }
        // A supervisor (re)starts as OTP's init/1 would: every kept child spec is wanted up
        // again, temporary ones included, with an empty restart history (item 28).
        set_state(c, ChildState::Starting);
        n.intensity.clear();
        for (ChildId k : n.spec.children) {
            Node &kn = node(k);
            kn.want_up = true;
            kn.dropped = false;
        }
        n.plan = Plan{Phase::Starting, false, 0, 0, 0};
        publish(c, RecordKind::Starting,
                "starting " + std::to_string(n.spec.children.size()) + " children");
        schedule(c);
    }

    // Probes go first so a probe cannot report the child we are stopping as failed (which would
    // be a second, bogus stop cause). brutal_kill (stop signal SIGKILL) arms no timer: there is
    // nothing to escalate to (item 34). A missing timeout is `infinity` (item 36).
    void send_stop(ChildId c) {
        Node &n = node(c);
        const int sig =
            kill_all || n.stop_cause == Cause::StartTimeout ? sig_kill : n.spec.stop.signal;
        out->push_back(StopProbes{c});
        out->push_back(Signal{c, n.inc, *n.pid, sig});
        std::string msg = "sent " + signal_name(sig);
        if (sig != sig_kill) {
            if (n.spec.stop.timeout) {
                arm(c, now + *n.spec.stop.timeout);
                msg += " (stop timeout " + format_duration(*n.spec.stop.timeout) + ")";
            } else {
                msg += " (no stop timeout)";
            }
        }
        msg += std::string("; asked by ") + cause_text(n.stop_cause);
        publish(c, RecordKind::Stopping, std::move(msg));
    }

    // Begins stopping `c`; returns true when it is already down.
    bool stop_child(ChildId c, Cause cause) {
        Node &n = node(c);
        switch (n.state) {
        case ChildState::Stopped:
            return true;
        case ChildState::Backoff:
            set_state(c, ChildState::Stopped);
            n.backoff_until.reset();
            if (cause == Cause::Manual || cause == Cause::Removed)
                publish(c, RecordKind::Stopped, "pending restart cancelled");
            return true;
        case ChildState::Stopping:
            n.stop_cause = std::max(n.stop_cause, cause);
            return false;
        case ChildState::Starting:
        case ChildState::Running:
            n.stop_cause = cause;
            set_state(c, ChildState::Stopping);
            if (n.spec.kind == Kind::Supervisor) {
                // A finite stop timeout on a supervisor bounds its whole ordered shutdown, as
                // OTP's exit(Sup, kill) after the shutdown time would (item 36 is the default).
                if (n.spec.stop.timeout) arm(c, now + *n.spec.stop.timeout);
                begin_terminal(c);
                return false;
            }
            // Without a pid the Spawn is not answered yet: the signal goes out on Spawned.
            if (n.pid) send_stop(c);
            return false;
        }
        return true;
    }

    // The supervisor stops all its children in reverse start order, then ends (items 27, 37).
    void begin_terminal(ChildId s) {
        Node &n = node(s);
        const std::size_t count = n.spec.children.size();
        n.plan = Plan{Phase::Stopping, true, 0, 0, count == 0 ? 0 : count - 1};
        if (count == 0) n.plan.cursor = 0;
        schedule(s);
    }

    // The supervisor decided to end by itself (give-up, auto-shutdown, start-up failure).
    void end_supervisor(ChildId s, Cause cause) {
        Node &n = node(s);
        n.stop_cause = std::max(n.stop_cause, cause);
        if (n.state != ChildState::Stopping) set_state(s, ChildState::Stopping);
        begin_terminal(s);
    }

    // A one_for_all / rest_for_one sweep from index j (items 15-22, 32).
    void sweep(ChildId s, std::size_t j) {
        Node &n = node(s);
        const std::size_t count = n.spec.children.size();
        Plan &p = n.plan;
        if (p.phase == Phase::Stopping && !p.terminal) {
            p.lo = std::min(p.lo, j);
            p.start_from = std::min(p.start_from, j);
        } else {
            p = Plan{Phase::Stopping, false, j, j, 0};
        }
        p.cursor = count - 1; // rescan from the last child: already-down children are skipped
        schedule(s);
    }

    // Asks a running supervisor to start its wanted-up children from index j (reload, commands).
    void request_start(ChildId s, std::size_t j) {
        Plan &p = node(s).plan;
        switch (p.phase) {
        case Phase::Idle:
            p = Plan{Phase::Starting, false, 0, j, j};
            break;
        case Phase::Starting:
            p.cursor = std::min(p.cursor, j);
            break;
        case Phase::Stopping:
            if (!p.terminal) p.start_from = std::min(p.start_from, j);
            break;
        }
        schedule(s);
    }

    // ---- the sequence of a supervisor -----------------------------------------------------

    void pump(ChildId s) {
        Node &sup = node(s);
        if (sup.spec.kind != Kind::Supervisor) return;
        const auto &kids = sup.spec.children;
        const std::size_t count = kids.size();
        for (;;) {
            Plan &p = sup.plan;
            switch (p.phase) {
            case Phase::Idle:
                return;
            case Phase::Stopping: {
                if (sup.spec.parallel) {
                    if (!stop_parallel(s)) return;
                } else {
                    // One child at a time, last first (items 15, 16, 37, 38).
                    if (!stop_sequential(s)) return;
                }
                if (p.terminal) {
                    finish_supervisor(s);
                    return;
                }
                // The sweep's start phase: every kept spec in range is wanted up (items 19, 20);
                // temporary children are not brought back (item 18).
                for (std::size_t i = p.lo; i < count; ++i) {
                    Node &kn = node(kids[i]);
                    if (kn.spec.restart != Restart::Temporary) kn.want_up = true;
                }
                const std::size_t from = std::min(p.lo, p.start_from);
                p = Plan{Phase::Starting, false, 0, from, from};
                continue;
            }
            case Phase::Starting: {
                if (sup.spec.parallel ? !start_parallel(s) : !start_sequential(s)) return;
                p = Plan{};
                if (sup.state == ChildState::Starting) {
                    // Its uptime counts from its start, so it is never shorter than its
                    // children's.
                    const TimePoint began = sup.since;
                    set_state(s, ChildState::Running);
                    sup.since = began;
                    sup.started = true;
                    sup.ready = true;
                    publish(s, RecordKind::Started,
                            sup.spec.parent ? "all children started" : "tree started");
                    if (sup.spec.parent) schedule(*sup.spec.parent);
                }
                return;
            }
            }
        }
    }

    // The stop phase one child at a time, last first; false while a child is still going down.
    bool stop_sequential(ChildId s) {
        const auto &kids = node(s).spec.children;
        const std::size_t count = kids.size();
        Plan &p = node(s).plan;
        while (count > 0 && p.cursor + 1 > p.lo && p.cursor < count) {
            const ChildId k = kids[p.cursor];
            // A sweep keeps a pending restart delay: its start phase waits for it.
            if (!p.terminal && node(k).state == ChildState::Backoff) {
                if (p.cursor == 0) break;
                --p.cursor;
                continue;
            }
            if (!stop_child(k, Cause::Plan)) return false;
            if (p.cursor == 0) break;
            --p.cursor;
        }
        return true;
    }

    // The start phase one child at a time, in order; each must count as started first (items
    // 1, 2). False while the sequence waits.
    bool start_sequential(ChildId s) {
        const auto &kids = node(s).spec.children;
        const std::size_t count = kids.size();
        Plan &p = node(s).plan;
        while (p.cursor < count) {
            const ChildId k = kids[p.cursor];
            Node &kn = node(k);
            if (kn.dropped) {
                ++p.cursor;
                continue;
            }
            switch (kn.state) {
            case ChildState::Running:
                ++p.cursor;
                continue;
            case ChildState::Starting:
            case ChildState::Stopping:
                return false;
            case ChildState::Backoff:
                if (kn.backoff_until && *kn.backoff_until <= now) start_child(k);
                return false;
            case ChildState::Stopped:
                if (!kn.want_up) {
                    ++p.cursor;
                    continue;
                }
                if (waits_for_predecessor(kn)) return false; // rescheduled when down
                start_child(k);
                return false;
            }
        }
        return true;
    }

    // Has child `k` nothing left to do in a start phase (it runs, or nobody wants it up)?
    bool start_done(const Node &kn) {
        return kn.dropped || kn.state == ChildState::Running ||
               (kn.state == ChildState::Stopped && !kn.want_up);
    }

    // A parallel supervisor's start phase: every wanted child from the cursor on starts as soon
    // as the earlier siblings it is `after` have started; done when none is left to start. The
    // cursor skips the finished prefix so a long start sweep does not rescan it.
    bool start_parallel(ChildId s) {
        const auto &kids = node(s).spec.children;
        const std::size_t count = kids.size();
        Plan &p = node(s).plan;
        while (p.cursor < count && start_done(node(kids[p.cursor])))
            ++p.cursor;
        bool waiting = false;
        for (std::size_t i = p.cursor; i < count; ++i) {
            const ChildId k = kids[i];
            Node &kn = node(k);
            if (start_done(kn)) continue;
            waiting = true;
            switch (kn.state) {
            case ChildState::Running:
            case ChildState::Starting:
            case ChildState::Stopping:
                break;
            case ChildState::Backoff:
                if (kn.backoff_until && *kn.backoff_until <= now) start_child(k);
                break;
            case ChildState::Stopped: {
                if (waits_for_predecessor(kn)) break; // rescheduled when it is down
                bool deps = true;
                for (ChildId a : kn.spec.after) {
                    const Node &an = node(a);
                    if (an.index >= p.cursor && !start_done(an)) deps = false;
                }
                if (deps) start_child(k);
                break;
            }
            }
        }
        return !waiting;
    }

    // A parallel supervisor's stop phase: every child in range is stopped at once, except one
    // that a sibling still up is `after` (it stops once that sibling is down). A sweep keeps a
    // pending restart delay, as the sequential one does.
    bool stop_parallel(ChildId s) {
        const auto &kids = node(s).spec.children;
        const std::size_t count = kids.size();
        const Plan &p = node(s).plan;
        auto down = [&](const Node &kn) {
            return kn.state == ChildState::Stopped ||
                   (!p.terminal && kn.state == ChildState::Backoff);
        };
        // Which children a sibling in range that is not down yet still needs.
        std::vector<bool> needed;
        for (std::size_t i = p.lo; i < count; ++i) {
            const Node &kn = node(kids[i]);
            if (kn.spec.after.empty() || down(kn)) continue;
            if (needed.empty()) needed.assign(count, false);
            for (ChildId a : kn.spec.after)
                needed[node(a).index] = true;
        }
        bool waiting = false;
        for (std::size_t i = count; i-- > p.lo;) {
            const ChildId k = kids[i];
            Node &kn = node(k);
            if (down(kn)) continue;
            if (!needed.empty() && needed[i]) {
                waiting = true;
                continue;
            }
            if (!stop_child(k, Cause::Plan)) waiting = true;
        }
        return !waiting;
    }

    void drop(ChildId c, const char *why) {
        Node &n = node(c);
        if (n.dropped) return;
        n.dropped = true;
        n.want_up = false;
        publish(c, RecordKind::Removed, std::string("temporary child removed (") + why + ")");
    }

    // The terminal stop sequence of a supervisor is complete.
    // A supervisor's end is reported to its parent exactly like a process exit: give-up and
    // auto-shutdown are OTP's `shutdown` reason (items 27-29, 48), a failed start-up is a start
    // failure (item 5), anything else was asked for.
    void finish_supervisor(ChildId s) {
        Node &n = node(s);
        n.plan = Plan{};
        set_state(s, ChildState::Stopped);
        n.started = false;
        n.ready = false;
        const Cause cause = n.stop_cause;
        if (!n.spec.parent) {
            finish_root(cause);
            return;
        }
        switch (cause) {
        case Cause::GaveUp:
            on_down(s, DownKind::SelfShutdown, RecordKind::GaveUp, "gave up");
            return;
        case Cause::AutoShutdown:
            on_down(s, DownKind::SelfShutdown, RecordKind::AutoShutdown, "shut itself down");
            return;
        case Cause::StartFailed:
            on_down(s, DownKind::StartFailed, RecordKind::StartFailed, "failed to start");
            return;
        case Cause::None:
        case Cause::Health:
        case Cause::StartTimeout:
        case Cause::ManualRestart:
        case Cause::Reload:
        case Cause::Manual:
        case Cause::Plan:
        case Cause::Shutdown:
        case Cause::Removed:
            on_down(s, DownKind::Stopped, RecordKind::Stopped, "all children stopped");
            return;
        }
    }

    void finish_root(Cause cause) {
        Node &root = node(root_id);
        int status = exit_clean;
        std::string why;
        switch (cause) {
        case Cause::Manual:
            root.want_up = false;
            publish(root_id, RecordKind::Stopped, "tree stopped by command; vigild keeps running");
            return;
        case Cause::ManualRestart:
        case Cause::Reload:
            publish(root_id, RecordKind::Stopped, "tree stopped; starting it again");
            start_child(root_id);
            return;
        case Cause::GaveUp:
            status = exit_gave_up;
            why = "the root supervisor reached its restart intensity";
            break;
        case Cause::StartFailed:
            status = exit_start_failed;
            why = "the tree failed to start";
            break;
        case Cause::AutoShutdown:
            status = root.last_exit ? root.last_exit->shell_code() : exit_clean;
            why = "a significant child ended (auto_shutdown)";
            break;
        case Cause::None:
        case Cause::Health:
        case Cause::StartTimeout:
        case Cause::Plan:
        case Cause::Shutdown:
        case Cause::Removed:
            status = exit_clean;
            why = "shutdown completed";
            break;
        }
        publish(root_id, RecordKind::Exit,
                why + "; vigild exits with status " + std::to_string(status));
        out->push_back(Exit{status});
        finished = true;
    }

    // ---- a child is down: the parent decides (items 7-33, 39, 43-48) ----------------------

    // The single place where a child's end is judged. First: who wanted it? (stop_cause). Then,
    // for ends that nobody asked for, whether anyone may decide now: a stopping supervisor does
    // not restart (item 39) and a running sweep already covers its range (items 21, 33). Start
    // failures roll back a starting supervisor (items 3-5) and count as failed restarts
    // otherwise (item 31). Everything left goes to decide().
    void on_down(ChildId c, DownKind kind, RecordKind rk, std::string what) {
        Node &n = node(c);
        const ChildId p = *n.spec.parent;
        Node &par = node(p);
        const bool was_started = n.started;
        n.started = false;
        n.ready = false;
        if (n.gone) {
            publish(c, RecordKind::Removed, what + "; removed by reload");
            schedule(p);
            if (n.successor) schedule(*node(*n.successor).spec.parent);
            return;
        }
        if (kind == DownKind::Stopped) {
            switch (n.stop_cause) {
            case Cause::Plan:
            case Cause::Shutdown:
            case Cause::StartFailed:
            case Cause::GaveUp:
            case Cause::AutoShutdown:
            case Cause::None:
            case Cause::Removed:
                publish(c, RecordKind::Stopped, "stopped (" + what + ")");
                if (n.spec.restart == Restart::Temporary) drop(c, "stopped");
                schedule(p);
                return;
            case Cause::Manual:
                n.want_up = false;
                publish(c, RecordKind::Stopped, "stopped by command (" + what + ")");
                if (n.spec.restart == Restart::Temporary) drop(c, "stopped by command");
                schedule(p);
                return;
            case Cause::ManualRestart:
            case Cause::Reload:
                publish(c, RecordKind::Stopped,
                        "stopped (" + what + "); starting again (" + cause_text(n.stop_cause) +
                            ")");
                n.want_up = true;
                if ((par.state == ChildState::Running || par.state == ChildState::Starting) &&
                    !plan_starts(p, n.index))
                    start_child(c);
                schedule(p);
                return;
            case Cause::Health:
                what = "stopped after " + n.stop_detail + " (" + what + ")";
                kind = was_started ? DownKind::Abnormal : DownKind::StartFailed;
                rk = was_started ? RecordKind::Exited : RecordKind::StartFailed;
                break;
            case Cause::StartTimeout:
                what = "did not start within " +
                       format_duration(n.spec.start_timeout.value_or(Duration{0})) + " (" + what +
                       ")";
                kind = DownKind::StartFailed;
                rk = RecordKind::StartFailed;
                break;
            }
        }
        // Ended by itself. No decisions while the supervisor stops (item 39), and none for a
        // child a sweep is about to stop anyway (the sweep counts once, items 21, 33).
        if (par.state == ChildState::Stopping || par.state == ChildState::Stopped || finished) {
            publish(c, rk, what + "; supervisor " + std::string(name(p)) + " is stopping");
            if (n.spec.restart == Restart::Temporary) drop(c, "ended");
            schedule(p);
            return;
        }
        if (plan_stops(p, n.index)) {
            publish(c, rk,
                    what + "; the running restart of " + std::string(name(p)) + " covers it");
            if (n.spec.restart == Restart::Temporary) drop(c, "ended during a sweep"); // item 18
            schedule(p);
            return;
        }
        if (kind == DownKind::StartFailed) {
            if (n.manual_start) {
                n.manual_start = false;
                n.want_up = false;
                publish(c, rk, what + "; start command failed, not retried");
                schedule(p);
                return;
            }
            if (par.state == ChildState::Starting && par.plan.phase == Phase::Starting &&
                (par.plan.cursor == n.index || (par.spec.parallel && n.index > par.plan.cursor))) {
                // Start-up failure: roll back in reverse, fail the supervisor's own start
                // (items 3-5). Not a restart, not counted.
                publish(c, rk, what);
                publish(p, RecordKind::StartFailed,
                        "child " + std::string(name(c)) +
                            " failed to start; stopping the children started so far");
                end_supervisor(p, Cause::StartFailed);
                return;
            }
            kind = DownKind::Abnormal; // a failed restart counts (item 31)
        }
        decide(c, kind, rk, std::move(what));
    }

    // The restart decision (items 7-11, 14-33, 43-48). The order matters: restart type first (a
    // child that is not restarted never touches intensity, item 10), then intensity (the restart
    // that would exceed it gives up instead, item 23), and only then backoff, which merely delays
    // the spawn of a restart that has already been counted.
    void decide(ChildId c, DownKind kind, RecordKind rk, std::string what) {
        Node &n = node(c);
        const ChildId p = *n.spec.parent;
        Node &par = node(p);
        bool restart = false;
        const char *why_not = "";
        switch (n.spec.restart) {
        case Restart::Permanent:
            restart = true;
            break;
        case Restart::Transient:
            restart = kind == DownKind::Abnormal;
            why_not = "transient, normal end";
            break;
        case Restart::Temporary:
            restart = false;
            why_not = "temporary";
            break;
        }
        if (!restart) {
            n.want_up = false;
            publish(c, rk, what + "; not restarted (" + why_not + ")");
            if (n.spec.restart == Restart::Temporary) drop(c, "ended");
            if (n.spec.significant && par.spec.auto_shutdown != AutoShutdown::Never) {
                bool last = true;
                if (par.spec.auto_shutdown == AutoShutdown::AllSignificant) {
                    for (ChildId k : par.spec.children) {
                        const Node &kn = node(k);
                        if (k != c && kn.spec.significant && !kn.dropped && is_up(kn.state))
                            last = false;
                    }
                }
                if (last) {
                    // Items 44, 46, 48: the supervisor shuts itself down; at the root, vigild
                    // exits with this child's status.
                    par.last_exit = n.last_exit;
                    publish(p, RecordKind::AutoShutdown,
                            std::string("significant child ") + std::string(name(c)) + " ended (" +
                                what + "); shutting down (" + to_string(par.spec.auto_shutdown) +
                                ")");
                    end_supervisor(p, Cause::AutoShutdown);
                    return;
                }
            }
            schedule(p);
            return;
        }
        if (!par.intensity.add(now, par.spec.intensity, par.spec.period)) {
            // Items 23-27: the restart that would exceed the intensity is not carried out.
            publish(c, rk, what + "; not restarted: restart intensity reached");
            publish(p, RecordKind::GaveUp,
                    "intensity " + std::to_string(par.spec.intensity) + " in " +
                        format_duration(par.spec.period) + " reached (" + std::string(name(c)) +
                        " " + what + "); giving up");
            end_supervisor(p, Cause::GaveUp);
            return;
        }
        n.restarts++;
        n.want_up = true;
        Duration delay{0};
        if (n.spec.kind == Kind::Service) {
            // The backoff spaces starts, it does not add dead time to every crash: the delay
            // counts from the start of the incarnation that ended (as runit's one second
            // between starts does). A crash loop waits the full delay, which grows with each
            // fast crash; a service that ran longer than the delay restarts at once and keeps
            // its step (docs/defaults.md, docs/otp-departures.md).
            const Duration ran = now - n.run_since;
            if (ran >= n.spec.backoff.reset_after) n.backoff_step = 0;
            const Duration spacing = backoff_delay(n.spec.backoff, n.backoff_step, rng);
            if (ran < spacing) {
                delay = spacing - ran;
                // Once the delay has reached its cap there is nothing more to count.
                if (backoff_base(n.spec.backoff, n.backoff_step) < n.spec.backoff.max)
                    n.backoff_step++;
            }
        }
        std::string msg = what + "; ";
        msg += delay.count() > 0 ? "restart in " + format_duration(delay) + " (backoff)"
                                 : std::string("restarting");
        switch (par.spec.strategy) {
        case Strategy::OneForOne:
            break;
        case Strategy::OneForAll:
            msg += "; one_for_all: restarting every child";
            break;
        case Strategy::RestForOne:
            msg += "; rest_for_one: restarting it and those after it";
            break;
        }
        publish(c, rk, std::move(msg));
        if (delay.count() > 0) {
            set_state(c, ChildState::Backoff);
            n.backoff_until = now + delay;
            arm(c, *n.backoff_until);
        }
        switch (par.spec.strategy) {
        case Strategy::OneForOne:
            if (delay.count() == 0) {
                if (plan_starts(p, n.index))
                    schedule(p);
                else
                    start_child(c);
            }
            return;
        case Strategy::OneForAll:
            sweep(p, 0);
            return;
        case Strategy::RestForOne:
            sweep(p, n.index);
            return;
        }
    }

    void mark_started(ChildId c, std::string msg) {
        Node &n = node(c);
        set_state(c, ChildState::Running);
        n.started = true;
        n.ready = true;
        n.manual_start = false; // from now on a failure is a crash, retried as usual
        publish(c, n.spec.wait_ready ? RecordKind::Ready : RecordKind::Started, std::move(msg));
        if (n.spec.parent) schedule(*n.spec.parent);
    }

    // ---- events ---------------------------------------------------------------------------

    // Staleness (house-style §7.4): a process event counts only for the child's current
    // incarnation. An old one (a late SIGCHLD, a pid the kernel reused) is counted and dropped.
    bool current(ChildId c, Incarnation inc) {
        if (!valid(c) || node(c).spec.kind != Kind::Service || node(c).inc != inc) {
            ++dropped_events;
            return false;
        }
        return true;
    }

    void on_spawned(const Spawned &ev) {
        if (!current(ev.child, ev.inc)) return;
        Node &n = node(ev.child);
        switch (n.state) {
        case ChildState::Starting:
            if (n.pid) break;
            n.pid = ev.pid;
            out->push_back(StartProbes{ev.child, n.inc});
            if (!n.spec.wait_ready)
                mark_started(ev.child, "started, pid " + std::to_string(ev.pid.value));
            else
                publish(ev.child, RecordKind::Starting,
                        "spawned, pid " + std::to_string(ev.pid.value) + "; waiting for readiness");
            return;
        case ChildState::Stopping:
            if (n.pid) break;
            n.pid = ev.pid;
            send_stop(ev.child); // a stop arrived before the spawn was answered
            return;
        case ChildState::Stopped:
        case ChildState::Running:
        case ChildState::Backoff:
            break;
        }
        ++dropped_events;
    }

    void on_spawn_failed(const SpawnFailed &ev) {
        if (!current(ev.child, ev.inc)) return;
        Node &n = node(ev.child);
        switch (n.state) {
        case ChildState::Starting:
            if (n.pid) break;
            set_state(ev.child, ChildState::Stopped);
            on_down(ev.child, DownKind::StartFailed, RecordKind::SpawnFailed,
                    "failed to start: " + ev.reason);
            return;
        case ChildState::Stopping:
            if (n.pid) break;
            set_state(ev.child, ChildState::Stopped);
            on_down(ev.child, DownKind::Stopped, RecordKind::SpawnFailed,
                    "failed to start: " + ev.reason);
            return;
        case ChildState::Stopped:
        case ChildState::Running:
        case ChildState::Backoff:
            break;
        }
        ++dropped_events;
    }

    void on_exited(const Exited &ev) {
        if (!current(ev.child, ev.inc)) return;
        Node &n = node(ev.child);
        if (!n.pid || *n.pid != ev.pid) {
            ++dropped_events;
            return;
        }
        const std::string what = describe_exit(ev.status);
        switch (n.state) {
        case ChildState::Starting:
            n.pid.reset();
            n.last_exit = ev.status;
            out->push_back(StopProbes{ev.child});
            set_state(ev.child, ChildState::Stopped);
            on_down(ev.child, DownKind::StartFailed, RecordKind::Exited,
                    what + " before it was ready");
            return;
        case ChildState::Running: {
            n.pid.reset();
            n.last_exit = ev.status;
            out->push_back(StopProbes{ev.child});
            set_state(ev.child, ChildState::Stopped);
            const bool normal = !ev.status.signaled && ev.status.code == 0;
            on_down(ev.child, normal ? DownKind::Normal : DownKind::Abnormal, RecordKind::Exited,
                    what);
            return;
        }
        case ChildState::Stopping:
            n.pid.reset();
            n.last_exit = ev.status;
            set_state(ev.child, ChildState::Stopped);
            on_down(ev.child, DownKind::Stopped, RecordKind::Stopped, what);
            return;
        case ChildState::Stopped:
        case ChildState::Backoff:
            break;
        }
        ++dropped_events;
    }

    void on_ready(const BecameReady &ev) {
        if (!current(ev.child, ev.inc)) return;
        Node &n = node(ev.child);
        switch (n.state) {
        case ChildState::Starting:
            if (!n.pid) break;
            mark_started(ev.child, "ready, pid " + std::to_string(n.pid->value));
            return;
        case ChildState::Running:
            n.ready = true;
            return; // a repeated READY=1
        case ChildState::Stopped:
        case ChildState::Stopping:
        case ChildState::Backoff:
            break;
        }
        ++dropped_events;
    }

    void on_health_failed(const HealthFailed &ev) {
        if (!current(ev.child, ev.inc)) return;
        Node &n = node(ev.child);
        switch (n.state) {
        case ChildState::Starting:
        case ChildState::Running: {
            if (!n.pid) break;
            std::string detail = std::string(to_string(ev.cause)) + " failure";
            if (!ev.detail.empty()) detail += ": " + ev.detail;
            publish(ev.child, RecordKind::Unhealthy, detail + "; stopping");
            stop_child(ev.child, Cause::Health);
            n.stop_detail = std::move(detail);
            return;
        }
        case ChildState::Stopped:
        case ChildState::Stopping:
        case ChildState::Backoff:
            break;
        }
        ++dropped_events;
    }

    // Every due deadline, in (when, seq) order. Each one is interpreted by the state its child is
    // in now: the timer was cancelled if the child left the state (set_state() zeroes timer_seq),
    // so a stale entry is recognised by its seq and skipped. The work queue is drained after each
    // deadline so two deadlines at the same instant act in the order they were armed.
    void on_deadlines() {
        while (!deadlines.empty() && deadlines.top().when <= now) {
            const DeadlineEntry e = deadlines.top();
            deadlines.pop();
            if (!valid(e.child) || node(e.child).timer_seq != e.seq) continue; // cancelled
            Node &n = node(e.child);
            n.timer_seq = 0;
            switch (n.state) {
            case ChildState::Starting:
                // Start timeout: kill the whole group now; its exit is a start failure.
                n.stop_cause = Cause::StartTimeout;
                set_state(e.child, ChildState::Stopping);
                publish(e.child, RecordKind::StartFailed,
                        "not started within " +
                            format_duration(n.spec.start_timeout.value_or(Duration{0})) +
                            "; sent SIGKILL");
                if (n.pid) {
                    out->push_back(StopProbes{e.child});
                    out->push_back(Signal{e.child, n.inc, *n.pid, sig_kill});
                }
                break;
            case ChildState::Stopping:
                // Item 35/41: the stop timeout passed; kill, report, and go on.
                if (n.spec.kind == Kind::Supervisor) {
                    publish(e.child, RecordKind::Killed,
                            "stop timeout " +
                                format_duration(n.spec.stop.timeout.value_or(Duration{0})) +
                                " passed; killing its subtree");
                    kill_subtree(e.child);
                } else if (n.pid) {
                    out->push_back(Signal{e.child, n.inc, *n.pid, sig_kill});
                    publish(e.child, RecordKind::Killed,
                            "stop timeout " +
                                format_duration(n.spec.stop.timeout.value_or(Duration{0})) +
                                " passed; sent SIGKILL");
                }
                break;
            case ChildState::Backoff: {
                const ChildId p = *n.spec.parent;
                if (plan_starts(p, n.index))
                    schedule(p);
                else
                    start_child(e.child);
                break;
            }
            case ChildState::Stopped:
            case ChildState::Running:
                break;
            }
            drain();
        }
    }

    // ---- commands -------------------------------------------------------------------------

    CommandResult result(CommandOutcome o, std::string msg) { return {o, std::move(msg)}; }

    // A second Shutdown: the person is not willing to wait. SIGKILL every live process at once,
    // in id order; the stop sequences still run to completion (they now only collect exits), so
    // the tree is still torn down child by child and the exit status still says what happened.
    void kill_everything() {
        kill_all = true;
        for (std::size_t i = 0; i < nodes.size(); ++i) {
            const ChildId c{static_cast<std::uint32_t>(i)};
            Node &n = nodes[i];
            if (n.spec.kind != Kind::Service || !n.pid) continue;
            switch (n.state) {
            case ChildState::Starting:
            case ChildState::Running:
                out->push_back(StopProbes{c});
                n.stop_cause = Cause::Plan;
                [[fallthrough]];
            case ChildState::Stopping:
                set_state(c, ChildState::Stopping);
                out->push_back(Signal{c, n.inc, *n.pid, sig_kill});
                publish(c, RecordKind::Killed, "second shutdown request; sent SIGKILL");
                break;
            case ChildState::Stopped:
            case ChildState::Backoff:
                break;
            }
        }
    }

    // SIGKILL every live process under supervisor `s` (its stop timeout passed). The stop
    // sequences inside go on and now only collect the exits.
    void kill_subtree(ChildId s) {
        std::vector<ChildId> stack{s};
        while (!stack.empty()) {
            const ChildId k = stack.back();
            stack.pop_back();
            Node &kn = node(k);
            if (kn.spec.kind == Kind::Supervisor) {
                for (auto it = kn.spec.children.rbegin(); it != kn.spec.children.rend(); ++it)
                    stack.push_back(*it);
                continue;
            }
            if (!kn.pid) continue;
            switch (kn.state) {
            case ChildState::Starting:
            case ChildState::Running:
                out->push_back(StopProbes{k});
                kn.stop_cause = Cause::Plan;
                [[fallthrough]];
            case ChildState::Stopping:
                set_state(k, ChildState::Stopping);
                out->push_back(Signal{k, kn.inc, *kn.pid, sig_kill});
                break;
            case ChildState::Stopped:
            case ChildState::Backoff:
                break;
            }
        }
    }

    CommandResult shutdown(const Command &cmd) {
        Node &root = node(root_id);
        publish(root_id, RecordKind::Command, "shutdown requested by " + who(cmd));
        switch (root.state) {
        case ChildState::Stopped:
            finish_root(Cause::Shutdown);
            return result(CommandOutcome::Ok, "tree already stopped; exiting");
        case ChildState::Stopping:
            if (root.stop_cause == Cause::Manual || root.stop_cause == Cause::ManualRestart ||
                root.stop_cause == Cause::Reload) {
                root.stop_cause = Cause::Shutdown;
                return result(CommandOutcome::Ok, "shutting down");
            }
            kill_everything();
            return result(CommandOutcome::Ok, "already shutting down; killing what is left");
        case ChildState::Starting:
        case ChildState::Running:
        case ChildState::Backoff:
            root.want_up = false;
            end_supervisor(root_id, Cause::Shutdown);
            return result(CommandOutcome::Ok, "shutting down");
        }
        return result(CommandOutcome::Ok, "");
    }

    static std::string who(const Command &cmd) { return cmd.who.empty() ? "unknown" : cmd.who; }

    bool tree_shutting_down() {
        const Node &root = node(root_id);
        return root.state == ChildState::Stopping && root.stop_cause >= Cause::StartFailed &&
               root.stop_cause != Cause::Manual && root.stop_cause != Cause::ManualRestart &&
               root.stop_cause != Cause::Reload;
    }

    // Start a stopped child (or one waiting for backoff) on request.
    // OTP's restart_child. A child whose parent is not running cannot be started on its own
    // (start the parent: that is its init). When the parent's start sequence has not reached the
    // child yet, the sequence starts it, so the start order holds even for commands.
    CommandResult manual_start(ChildId c) {
        Node &n = node(c);
        if (!n.spec.parent) {
            start_child(c);
            return result(CommandOutcome::Ok, "starting");
        }
        const ChildId p = *n.spec.parent;
        const Node &par = node(p);
        switch (par.state) {
        case ChildState::Running:
        case ChildState::Starting:
            break;
        case ChildState::Stopping:
            return result(CommandOutcome::ShuttingDown,
                          "supervisor " + std::string(name(p)) + " is stopping");
        case ChildState::Stopped:
        case ChildState::Backoff:
            return result(CommandOutcome::NotRunning,
                          "supervisor " + std::string(name(p)) + " is not running; start it");
        }
        n.want_up = true;
        if (n.spec.kind == Kind::Service) n.manual_start = true;
        if (plan_starts(p, n.index)) {
            if (n.state == ChildState::Backoff) n.backoff_until = now;
            schedule(p);
        } else if (waits_for_predecessor(n)) {
            request_start(p, n.index);
        } else {
            start_child(c);
        }
        return result(CommandOutcome::Ok, "starting");
    }

    CommandResult command(const Command &cmd) {
        if (cmd.kind == CommandKind::Shutdown) return shutdown(cmd);
        if (!valid(cmd.child) || node(cmd.child).gone || node(cmd.child).dropped)
            return result(CommandOutcome::NotFound, "no such child");
        const ChildId c = cmd.child;
        Node &n = node(c);
        switch (cmd.kind) {
        case CommandKind::Start:
            publish(c, RecordKind::Command, "start requested by " + who(cmd));
            if (tree_shutting_down()) return result(CommandOutcome::ShuttingDown, "shutting down");
            switch (n.state) {
            case ChildState::Starting:
            case ChildState::Running:
                return result(CommandOutcome::AlreadyRunning, "running");
            case ChildState::Stopping:
                n.want_up = true;
                if (n.stop_cause == Cause::Manual) n.stop_cause = Cause::ManualRestart;
                return result(CommandOutcome::Ok, "starts again once stopped");
            case ChildState::Backoff:
            case ChildState::Stopped:
                return manual_start(c);
            }
            break;
        case CommandKind::Stop:
            publish(c, RecordKind::Command, "stop requested by " + who(cmd));
            switch (n.state) {
            case ChildState::Stopped:
                n.want_up = false;
                if (n.spec.restart == Restart::Temporary && n.spec.parent)
                    drop(c, "stopped by command");
                return result(CommandOutcome::AlreadyStopped, "stopped");
            case ChildState::Backoff:
                n.want_up = false;
                stop_child(c, Cause::Manual);
                if (n.spec.restart == Restart::Temporary) drop(c, "stopped by command");
                if (n.spec.parent) schedule(*n.spec.parent);
                return result(CommandOutcome::Ok, "stopped");
            case ChildState::Stopping:
                n.want_up = false;
                n.stop_cause = std::max(n.stop_cause, Cause::Manual);
                return result(CommandOutcome::Ok, "stopping");
            case ChildState::Starting:
            case ChildState::Running:
                n.want_up = false;
                stop_child(c, Cause::Manual);
                return result(CommandOutcome::Ok, "stopping");
            }
            break;
        case CommandKind::Restart:
            publish(c, RecordKind::Command, "restart requested by " + who(cmd));
            if (tree_shutting_down()) return result(CommandOutcome::ShuttingDown, "shutting down");
            switch (n.state) {
            case ChildState::Starting:
            case ChildState::Running:
                n.want_up = true;
                stop_child(c, Cause::ManualRestart);
                return result(CommandOutcome::Ok, "restarting");
            case ChildState::Stopping:
                n.want_up = true;
                if (n.stop_cause == Cause::Manual) n.stop_cause = Cause::ManualRestart;
                return result(CommandOutcome::Ok, "starts again once stopped");
            case ChildState::Backoff:
            case ChildState::Stopped:
                return manual_start(c);
            }
            break;
        case CommandKind::Signal: {
            publish(c, RecordKind::Command,
                    "signal " + signal_name(cmd.signal) + " requested by " + who(cmd));
            // Depth first in start order, so a supervisor's subtree is signalled predictably.
            std::size_t sent = 0;
            std::vector<ChildId> stack{c};
            while (!stack.empty()) {
                const ChildId k = stack.back();
                stack.pop_back();
                Node &kn = node(k);
                if (kn.spec.kind == Kind::Service) {
                    if (kn.pid) {
                        out->push_back(Signal{k, kn.inc, *kn.pid, cmd.signal});
                        ++sent;
                    }
                    continue;
                }
                for (auto it = kn.spec.children.rbegin(); it != kn.spec.children.rend(); ++it)
                    stack.push_back(*it);
            }
            if (sent == 0) return result(CommandOutcome::NotRunning, "no running process");
            return result(CommandOutcome::Ok, "sent " + signal_name(cmd.signal));
        }
        case CommandKind::Shutdown:
            break;
        }
        return result(CommandOutcome::Ok, "");
    }

    // ---- reload ---------------------------------------------------------------------------

    ReconfigureResult reconfigure(TreeSpec next);
};

// Reload (docs/otp-departures.md, item 49). The new TreeSpec has its own indices; kept nodes
// are mapped to their old ids, so ChildIds held by the shell, the control server and history
// stay valid. Nothing here waits: stops and starts are requested and the usual sequences do
// the rest, so a reload behaves exactly like the commands it stands for.
ReconfigureResult Core::Impl::reconfigure(TreeSpec next) {
    ReconfigureResult res;
    res.errors = validate(next);
    if (!res.errors.empty()) return res; // keep running the old specification
    auto &nn = next.nodes;
    const std::size_t m = nn.size();
    std::vector<std::optional<ChildId>> id_of(m);
    std::vector<bool> fresh(m, false);
    std::vector<bool> claimed(nodes.size(), false);
    id_of[0] = root_id;
    claimed[0] = true;

    // Breadth first from the new root so a parent is matched before its children. A child is
    // kept when a live child of the same name, kind and (kept) parent exists; anything else is
    // new. A unit that moved to another supervisor is therefore removed and added again.
    std::vector<std::size_t> order{0};
    std::vector<bool> seen(m, false);
    seen[0] = true;
    for (std::size_t qi = 0; qi < order.size(); ++qi) {
        const std::size_t i = order[qi];
        for (ChildId k : nn[i].children) {
            if (k.value >= m || seen[k.value] || k.value == 0) continue;
            seen[k.value] = true;
            order.push_back(k.value);
            const ChildSpec &ks = nn[k.value];
            auto it = by_name.find(ks.name);
            if (it != by_name.end() && !claimed[it->second.value] && !fresh[i]) {
                Node &old = node(it->second);
                if (old.spec.kind == ks.kind && old.spec.parent == id_of[i]) {
                    id_of[k.value] = it->second;
                    claimed[it->second.value] = true;
                    continue;
                }
            }
            fresh[k.value] = true;
            id_of[k.value] = ChildId{static_cast<std::uint32_t>(nodes.size())};
            nodes.emplace_back();
            nodes.back().since = now; // "stopped since it was added", not since boot
            claimed.push_back(true);
        }
    }

    // Remember where each running plan stands, by child, to find it again after reordering.
    struct PlanMark {
        ChildId sup;
        std::optional<ChildId> lo, start_from, cursor;
    };
    std::vector<PlanMark> marks;
    for (std::size_t i = 0; i < claimed.size() && i < nodes.size(); ++i) {
        Node &n = nodes[i];
        if (n.spec.kind != Kind::Supervisor || n.plan.phase == Phase::Idle || n.gone) continue;
        auto at = [&](std::size_t idx) -> std::optional<ChildId> {
            if (idx < n.spec.children.size()) return n.spec.children[idx];
            return std::nullopt;
        };
        marks.push_back({ChildId{static_cast<std::uint32_t>(i)}, at(n.plan.lo),
                         at(n.plan.start_from), at(n.plan.cursor)});
    }

    // Removed: every live node that was not claimed.
    std::vector<ChildId> removed;
    for (std::size_t i = 1; i < claimed.size(); ++i) {
        Node &n = nodes[i];
        if (claimed[i] || n.gone || n.spec.name.empty()) continue;
        n.gone = true;
        n.want_up = false;
        removed.push_back(ChildId{static_cast<std::uint32_t>(i)});
        res.removed.push_back(n.spec.name);
    }
    std::map<std::string_view, ChildId> removed_by_name;
    for (ChildId r : removed) {
        removed_by_name.emplace(node(r).spec.name, r);
        auto it = by_name.find(node(r).spec.name);
        if (it != by_name.end() && it->second == r) by_name.erase(it);
    }
    for (std::size_t i : order) {
        if (!fresh[i]) continue;
        auto it = removed_by_name.find(nn[i].name);
        if (it == removed_by_name.end()) continue;
        node(*id_of[i]).predecessor = it->second;
        node(it->second).successor = *id_of[i];
    }

    // Apply the new specs.
    std::vector<ChildId> restart, added;
    for (std::size_t i : order) {
        const ChildId id = *id_of[i];
        ChildSpec s = std::move(nn[i]);
        std::vector<ChildId> kids;
        for (ChildId k : s.children)
            if (k.value < m && k.value != 0 && id_of[k.value]) kids.push_back(*id_of[k.value]);
        s.children = std::move(kids);
        std::vector<ChildId> after;
        for (ChildId a : s.after)
            if (a.value < m && a.value != 0 && id_of[a.value]) after.push_back(*id_of[a.value]);
        s.after = std::move(after);
        s.parent = i == 0 ? std::nullopt : node(id).spec.parent;
        Node &n = node(id);
        if (fresh[i]) {
            n.spec = std::move(s);
            n.since = now;
            by_name[n.spec.name] = id;
            res.added.push_back(n.spec.name);
            added.push_back(id);
            continue;
        }
        const ChildSpec &o = n.spec;
        const bool needs_restart = i != 0 && o.kind == Kind::Service &&
                                   (o.fingerprint != s.fingerprint || o.wait_ready != s.wait_ready);
        const bool params =
            o.restart != s.restart || o.significant != s.significant ||
            o.stop.signal != s.stop.signal || o.stop.timeout != s.stop.timeout ||
            o.backoff.initial != s.backoff.initial || o.backoff.max != s.backoff.max ||
            o.backoff.factor != s.backoff.factor || o.backoff.jitter != s.backoff.jitter ||
            o.backoff.reset_after != s.backoff.reset_after || o.start_timeout != s.start_timeout ||
            o.strategy != s.strategy || o.parallel != s.parallel || o.intensity != s.intensity ||
            o.period != s.period || o.auto_shutdown != s.auto_shutdown ||
            (o.kind == Kind::Supervisor && o.fingerprint != s.fingerprint);
        n.spec = std::move(s);
        if (needs_restart) {
            restart.push_back(id);
            res.restarted.push_back(n.spec.name);
        } else if (params) {
            res.updated.push_back(n.spec.name);
            publish(id, RecordKind::Reconfigured, "parameters updated by reload");
        }
    }
    // Parent links and positions of the new tree.
    for (std::size_t i : order) {
        const ChildId id = *id_of[i];
        const auto &kids = node(id).spec.children;
        for (std::size_t j = 0; j < kids.size(); ++j) {
            node(kids[j]).spec.parent = id;
            node(kids[j]).index = j;
        }
    }
    for (const PlanMark &mk : marks) {
        Node &n = node(mk.sup);
        const auto &kids = n.spec.children;
        auto pos = [&](std::optional<ChildId> c) -> std::size_t {
            if (!c) return kids.size();
            auto it = std::find(kids.begin(), kids.end(), *c);
            return it == kids.end() ? 0 : static_cast<std::size_t>(it - kids.begin());
        };
        n.plan.lo = std::min(pos(mk.lo), kids.empty() ? 0 : kids.size() - 1);
        n.plan.start_from = pos(mk.start_from);
        if (n.plan.phase == Phase::Stopping)
            n.plan.cursor = kids.empty() ? 0 : kids.size() - 1;
        else
            n.plan.cursor = pos(mk.cursor);
        schedule(mk.sup);
    }

    // Stop removed units (a removed supervisor stops its removed subtree itself).
    for (ChildId r : removed) {
        Node &n = node(r);
        if (n.spec.parent && node(*n.spec.parent).gone) continue;
        if (stop_child(r, Cause::Removed)) publish(r, RecordKind::Removed, "removed by reload");
    }
    // Restart changed services, in id order (deterministic).
    std::sort(restart.begin(), restart.end());
    for (ChildId c : restart) {
        Node &n = node(c);
        publish(c, RecordKind::Reconfigured, "unit changed; restarting");
        switch (n.state) {
        case ChildState::Starting:
        case ChildState::Running:
            stop_child(c, Cause::Reload);
            break;
        case ChildState::Stopping:
            // Already stopping: a stop command keeps it down (item 50), any other cause
            // starts it again anyway, with the new spec.
            break;
        case ChildState::Stopped:
        case ChildState::Backoff:
            break;
        }
    }
    // Start added children whose parent is up (a new supervisor starts its own children).
    for (ChildId a : added) {
        Node &n = node(a);
        publish(a, RecordKind::Reconfigured, "added by reload");
        n.want_up = true;
        const ChildId p = *n.spec.parent;
        const Node &par = node(p);
        if (par.gone || std::find(added.begin(), added.end(), p) != added.end()) continue;
        if (par.state == ChildState::Running || par.state == ChildState::Starting)
            request_start(p, n.index);
    }
    return res;
}

// ---- Core -------------------------------------------------------------------------------

Core::Core(TreeSpec spec) {
    std::vector<std::string> errors = validate(spec);
    impl_ = std::make_unique<Impl>(std::move(spec));
    impl_->spec_errors = std::move(errors);
}
Core::~Core() = default;

void Core::start(TimePoint now, std::vector<Action> &out) noexcept {
    Impl &m = *impl_;
    if (m.finished || m.node(root_id).state != ChildState::Stopped) return;
    m.now = now;
    m.out = &out;
    // Every child has been in its first state since the tree was started (status shows
    // since_ms from here, not from the clock's epoch).
    for (auto &n : m.nodes)
        n.since = now;
    if (!m.spec_errors.empty()) {
        // Item 13: an invalid specification starts nothing.
        for (const std::string &e : m.spec_errors)
            m.publish(root_id, RecordKind::StartFailed, "invalid specification: " + e);
        m.finish_root(Cause::StartFailed);
        return;
    }
    m.start_child(root_id);
    m.drain();
    m.tidy_deadlines();
}

void Core::handle(const Event &ev, TimePoint now, std::vector<Action> &out) noexcept {
    Impl &m = *impl_;
    m.now = now;
    m.out = &out;
    if (m.finished) {
        ++m.dropped_events;
        return;
    }
    std::visit(
        [&](const auto &e) {
            using T = std::decay_t<decltype(e)>;
            if constexpr (std::is_same_v<T, Spawned>)
                m.on_spawned(e);
            else if constexpr (std::is_same_v<T, SpawnFailed>)
                m.on_spawn_failed(e);
            else if constexpr (std::is_same_v<T, Exited>)
                m.on_exited(e);
            else if constexpr (std::is_same_v<T, BecameReady>)
                m.on_ready(e);
            else if constexpr (std::is_same_v<T, HealthFailed>)
                m.on_health_failed(e);
            else
                m.on_deadlines();
        },
        ev);
    m.drain();
    m.tidy_deadlines();
}

CommandResult Core::command(const Command &cmd, TimePoint now, std::vector<Action> &out) noexcept {
    Impl &m = *impl_;
    m.now = now;
    m.out = &out;
    if (m.finished) return {CommandOutcome::ShuttingDown, "vigild is exiting"};
    CommandResult r = m.command(cmd);
    m.drain();
    m.tidy_deadlines();
    return r;
}

void Core::forget(ChildId child) noexcept {
    Impl &m = *impl_;
    if (!m.valid(child)) return;
    auto &n = m.node(child);
    if (n.gone || n.dropped) n.history.reset(); // its records stay in the global history
}

void Core::note(ChildId child, RecordKind kind, std::string message, TimePoint now,
                std::vector<Action> &out) {
    Impl &m = *impl_;
    if (!m.valid(child)) return;
    m.now = now;
    m.out = &out;
    m.publish(child, kind, std::move(message));
}

ReconfigureResult Core::reconfigure(TreeSpec next, TimePoint now,
                                    std::vector<Action> &out) noexcept {
    Impl &m = *impl_;
    m.now = now;
    m.out = &out;
    if (m.finished) return {};
    ReconfigureResult r = m.reconfigure(std::move(next));
    m.drain();
    m.tidy_deadlines();
    return r;
}

std::optional<TimePoint> Core::next_deadline() const noexcept {
    if (impl_->deadlines.empty() || impl_->finished) return std::nullopt;
    return impl_->deadlines.top().when;
}

std::size_t Core::size() const noexcept {
    return impl_->nodes.size();
}

ChildStatus Core::status(ChildId id) const noexcept {
    ChildStatus s;
    if (!impl_->valid(id)) return s;
    const Node &n = impl_->nodes[id.value];
    s.id = id;
    s.name = n.spec.name;
    s.kind = n.spec.kind;
    s.parent = n.spec.parent;
    s.state = n.state;
    s.want_up = n.want_up;
    s.ready = n.ready && n.state == ChildState::Running;
    s.pid = n.pid;
    s.inc = n.inc;
    s.since = n.since;
    s.restarts = n.restarts;
    s.last_exit = n.last_exit;
    if (n.state == ChildState::Backoff) s.backoff_until = n.backoff_until;
    s.removed = n.gone || n.dropped;
    s.revivable = n.dropped && !n.gone;
    return s;
}

std::optional<ChildId> Core::find(std::string_view name) const noexcept {
    auto it = impl_->by_name.find(name);
    if (it == impl_->by_name.end()) return std::nullopt;
    return it->second;
}

const ChildSpec &Core::spec(ChildId id) const noexcept {
    static const ChildSpec none{};
    if (!impl_->valid(id)) return none;
    return impl_->nodes[id.value].spec;
}

std::vector<Record> Core::history(std::optional<ChildId> child, std::size_t max) const {
    if (!child) return impl_->global.last(max);
    if (!impl_->valid(*child) || !impl_->nodes[child->value].history) return {};
    return impl_->nodes[child->value].history->last(max);
}

bool Core::finished() const noexcept {
    return impl_->finished;
}

std::uint64_t Core::dropped_events() const noexcept {
    return impl_->dropped_events;
}

} // namespace vigil::core

// restore.cpp: Core::restore, the reading half of snapshot.cpp (which says what is carried).
//
// Three steps, and a Core is made only after the last: parse the bytes into a new model (every
// field range-checked as it is read, every count bounded before anything is allocated for it),
// check the model whole (check_model: what a field alone cannot tell), and compare its live tree
// with the tree the new binary loaded (match_loaded). The first problem ends the restore with a
// message that says what was wrong and where.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "impl.hpp"
#include "snapshot_format.hpp"

namespace vigil::core {

namespace {

namespace frame = snapshot_frame;
using namespace snapshot_frame::flag;

// Reads the payload. After the first problem every read returns a zero value and `error` says
// what it was; callers check ok() where a bad value would be used for a size.
class Reader {
public:
    Reader(const std::uint8_t *p, std::size_t n) : begin_(p), p_(p), end_(p + n) {}

    bool ok() const noexcept { return error_.empty(); }
    const std::string &error() const noexcept { return error_; }
    std::size_t left() const noexcept { return static_cast<std::size_t>(end_ - p_); }
    // What is being read, for messages: the node (its index, and its name once read), or
    // `section` when node is null.
    const char *section = "the core's own fields";
    std::optional<std::size_t> node;
    const std::string *name = nullptr;

    void fail(const std::string &what) {
        if (!ok()) return;
        std::string where = section;
        if (node) where = "child " + std::to_string(*node) + (name ? " (\"" + *name + "\")" : "");
        error_ = what + " in " + where + " (payload byte " +
                 std::to_string(static_cast<std::size_t>(p_ - begin_)) + ")";
        p_ = end_;
    }

    template <class T> T raw(const char *what) {
        static_assert(std::is_trivially_copyable_v<T>);
        T v{};
        if (left() < sizeof v) {
            fail(std::string("truncated: the bytes end inside ") + what);
            return T{};
        }
        std::memcpy(&v, p_, sizeof v);
        p_ += sizeof v;
        return v;
    }
    std::uint32_t u32(const char *what) { return raw<std::uint32_t>(what); }
    std::uint64_t u64(const char *what) { return raw<std::uint64_t>(what); }
    std::int32_t i32(const char *what) { return raw<std::int32_t>(what); }
    std::int64_t i64(const char *what) { return raw<std::int64_t>(what); }

    bool flag(const char *what) {
        const auto v = raw<std::uint8_t>(what);
        if (v > 1) fail(std::string("bad value ") + std::to_string(v) + " for " + what);
        return v == 1;
    }
    template <class E> E en(E max, const char *what) {
        const auto v = raw<std::uint8_t>(what);
        if (v > static_cast<std::uint8_t>(max))
            fail(std::string("bad value ") + std::to_string(v) + " for " + what);
        return static_cast<E>(v > static_cast<std::uint8_t>(max) ? 0 : v);
    }
    double f64(const char *what) {
        const double d = std::bit_cast<double>(raw<std::uint64_t>(what));
        if (!std::isfinite(d)) fail(std::string("a non-finite number for ") + what);
        return std::isfinite(d) ? d : 0.0;
    }
    Duration dur(const char *what) {
        const std::int64_t v = i64(what);
        if (v < 0 || v > frame::max_duration_ms)
            fail(std::string("duration ") + std::to_string(v) + " ms out of range for " + what);
        return Duration{v < 0 || v > frame::max_duration_ms ? 0 : v};
    }
    TimePoint time(const char *what) {
        const std::int64_t v = i64(what);
        if (v < -frame::max_time_ms || v > frame::max_time_ms)
            fail(std::string("time ") + std::to_string(v) + " ms out of range for " + what);
        return at_ms(v < -frame::max_time_ms || v > frame::max_time_ms ? 0 : v);
    }
    Pid pid(const char *what) {
        const std::int32_t v = i32(what);
        if (v <= 0) fail(std::string("pid ") + std::to_string(v) + " for " + what);
        return Pid{v};
    }
    // A count of items of at least `item_bytes` each, at most `max`, that the bytes left hold.
    std::uint32_t count(std::uint64_t max, std::size_t item_bytes, const char *what) {
        const std::uint32_t n = u32(what);
        if (n > max) {
            fail(std::string("count ") + std::to_string(n) + " over the bound of " +
                 std::to_string(max) + " for " + what);
            return 0;
        }
        if (static_cast<std::uint64_t>(n) * item_bytes > left()) {
            fail(std::string("truncated: count ") + std::to_string(n) + " for " + what +
                 " is more than the bytes left hold");
            return 0;
        }
        return n;
    }
    std::string str(const char *what) {
        const std::uint32_t n = count(max_snapshot_string, 1, what);
        std::string s(reinterpret_cast<const char *>(p_), n);
        p_ += n;
        return s;
    }
    template <class T, class F> std::optional<T> opt(const char *what, F &&get) {
        if (!flag(what)) return std::nullopt;
        return get();
    }
    ExitStatus exit(const char *what) {
        ExitStatus e;
        e.signaled = flag(what);
        e.code = i32(what);
        e.core_dumped = flag(what);
        return e;
    }
    std::vector<ChildId> ids(const char *what) {
        const std::uint32_t n = count(max_snapshot_nodes, 4, what);
        std::vector<ChildId> v(n);
        for (ChildId &c : v)
            c.value = u32(what);
        return v;
    }

private:
    const std::uint8_t *begin_, *p_, *end_;
    std::string error_;
};

void get_spec(Reader &r, ChildSpec &s) {
    s.name = r.str("name");
    r.name = &s.name;
    s.kind = r.en(Kind::Supervisor, "kind");
    s.parent = r.opt<ChildId>("parent", [&] { return ChildId{r.u32("parent")}; });
    s.children = r.ids("children");
    s.restart = r.en(Restart::Temporary, "restart");
    s.significant = r.flag("significant");
    s.stop.signal = r.i32("stop.signal");
    s.stop.timeout = r.opt<Duration>("stop.timeout", [&] { return r.dur("stop.timeout"); });
    s.stop.drain = r.dur("stop.drain");
    s.backoff.initial = r.dur("backoff.initial");
    s.backoff.max = r.dur("backoff.max");
    s.backoff.factor = r.f64("backoff.factor");
    s.backoff.jitter = r.f64("backoff.jitter");
    s.backoff.reset_after = r.dur("backoff.reset_after");
    s.wait_ready = r.flag("wait_ready");
    s.start_timeout = r.opt<Duration>("start_timeout", [&] { return r.dur("start_timeout"); });
    s.readiness_probe = r.flag("readiness_probe");
    s.watchdog = r.opt<Duration>("watchdog", [&] { return r.dur("watchdog"); });
    s.after = r.ids("after");
    s.parallel = r.flag("parallel");
    s.strategy = r.en(Strategy::RestForOne, "strategy");
    s.intensity = r.i32("intensity");
    s.period = r.dur("period");
    s.auto_shutdown = r.en(AutoShutdown::AllSignificant, "auto_shutdown");
    s.fingerprint = r.u64("fingerprint");
    s.unit = r.str("unit");
    s.instance = r.i32("instance");
    s.update = r.en(Update::Rolling, "update");
    s.max_unavailable = r.i32("max_unavailable");
}

Record get_record(Reader &r) {
    Record rec;
    rec.at = r.time("record time");
    rec.child = ChildId{r.u32("record child")};
    rec.unit = r.str("record unit");
    rec.kind = r.en(RecordKind::Exit, "record kind");
    rec.message = r.str("record message");
    rec.cause = r.en(Cause::Notify, "record cause");
    rec.pid = r.opt<Pid>("record pid", [&] { return Pid{r.i32("record pid")}; });
    rec.exit = r.opt<ExitStatus>("record exit", [&] { return r.exit("record exit"); });
    rec.signal = r.opt<int>("record signal", [&] { return r.i32("record signal"); });
    rec.delay = r.opt<Duration>("record delay", [&] { return r.dur("record delay"); });
    rec.incarnation = r.opt<Incarnation>("record incarnation",
                                         [&] { return Incarnation{r.u64("record incarnation")}; });
    rec.subject = r.str("record subject");
    return rec;
}

// The smallest record: the fixed fields and empty strings.
constexpr std::size_t min_record_bytes = 8 + 4 + 4 + 1 + 4 + 1 + 5 + 4;

void get_ring(Reader &r, RecordRing &ring) {
    const std::uint32_t n = r.count(ring.capacity(), min_record_bytes, "history");
    for (std::uint32_t i = 0; i < n && r.ok(); ++i)
        ring.push(get_record(r));
}

void set_flags(Node &n, std::uint16_t f) {
    n.ready = f & f_ready;
    n.probe_ready = f & f_probe_ready;
    n.started = f & f_started;
    n.manual_start = f & f_manual_start;
    n.retrying = f & f_retrying;
    n.joined_start = f & f_joined_start;
    n.gone = f & f_gone;
    n.forgotten = f & f_forgotten;
    n.dropped = f & f_dropped;
    n.exited = f & f_exited;
    n.held_down = f & f_held_down;
    n.in_set = f & f_in_set;
    n.drained = f & f_drained;
}

// A node's state; returns the deadline of its live timer (when timer_seq != 0).
TimePoint get_state(Reader &r, Node &n) {
    n.state = r.en(ChildState::Backoff, "state");
    n.goal = r.en(Goal::Up, "goal");
    const auto f = r.raw<std::uint16_t>("flags");
    if ((f & ~f_all) != 0) r.fail("unknown flags " + std::to_string(f));
    set_flags(n, f);
    n.stop_cause = r.en(StopCause::Removed, "stop cause");
    n.pid = r.opt<Pid>("pid", [&] { return r.pid("pid"); });
    n.main_pid = r.opt<Pid>("main pid", [&] { return r.pid("main pid"); });
    n.main_exit = r.opt<ExitStatus>("main exit", [&] { return r.exit("main exit"); });
    n.inc = Incarnation{r.u64("incarnation")};
    n.since = r.time("since");
    n.run_since = r.time("run_since");
    n.restarts = r.u32("restarts");
    n.backoff_step = r.u32("backoff step");
    n.index = r.u32("index");
    n.last_exit = r.opt<ExitStatus>("last exit", [&] { return r.exit("last exit"); });
    n.last_cause = r.en(Cause::Notify, "last cause");
    n.last_reason = r.str("last reason");
    n.backoff_until = r.opt<TimePoint>("backoff_until", [&] { return r.time("backoff_until"); });
    n.watchdog = r.opt<Duration>("watchdog interval", [&] { return r.dur("watchdog interval"); });
    n.drain_until = r.opt<TimePoint>("drain_until", [&] { return r.time("drain_until"); });
    n.timer_seq = r.u64("timer seq");
    const TimePoint when = n.timer_seq != 0 ? r.time("deadline") : TimePoint{};
    n.predecessor = r.opt<ChildId>("predecessor", [&] { return ChildId{r.u32("predecessor")}; });
    n.successor = r.opt<ChildId>("successor", [&] { return ChildId{r.u32("successor")}; });
    n.health.cause = r.en(Cause::Notify, "health cause");
    n.health.subject = r.str("health subject");
    n.health.text = r.str("health text");
    n.status_text = r.str("status text");
    const std::uint32_t lb = r.count(frame::max_left_behind, 4, "left-behind pids");
    n.left_behind.resize(lb);
    for (Pid &p : n.left_behind)
        p = r.pid("left-behind pid");
    return when;
}

TimePoint get_node(Reader &r, Node &n) {
    get_spec(r, n.spec);
    const TimePoint when = get_state(r, n);
    Plan &p = n.plan;
    p.phase = r.en(Phase::Starting, "plan phase");
    p.terminal = r.flag("plan terminal");
    p.lo = r.u32("plan lo");
    p.start_from = r.u32("plan start_from");
    p.cursor = r.u32("plan cursor");
    p.set_only = r.flag("plan set_only");
    const std::uint32_t ns = r.count(frame::max_restart_window, 8, "restart window");
    std::deque<std::int64_t> stamps;
    for (std::uint32_t i = 0; i < ns && r.ok(); ++i)
        stamps.push_back(r.i64("restart window"));
    n.intensity.restore(std::move(stamps));
    if (r.flag("history present")) {
        n.history = std::make_unique<RecordRing>(per_child_history);
        get_ring(r, *n.history);
    }
    return when;
}

// A roll takes at least 60 bytes (its fixed fields and empty strings and lists).
constexpr std::size_t min_roll_bytes = 60;

void get_rolls(Reader &r, Core::Impl &m) {
    r.section = "the rolls";
    m.roll_seq = r.u64("roll seq");
    const std::uint32_t n = r.count(max_snapshot_nodes, min_roll_bytes, "rolls");
    for (std::uint32_t i = 0; i < n && r.ok(); ++i) {
        Roll roll;
        roll.id = r.u64("roll id");
        roll.unit = r.str("roll unit");
        roll.phase = r.en(RollPhase::Stopped, "roll phase");
        roll.order = r.ids("roll order");
        roll.next = r.u32("roll next");
        const std::uint32_t steps = r.count(max_snapshot_nodes, 12, "roll step");
        for (std::uint32_t k = 0; k < steps && r.ok(); ++k) {
            const ChildId c{r.u32("roll step child")};
            roll.step.emplace_back(c, Incarnation{r.u64("roll step incarnation")});
        }
        roll.max_unavailable = r.u32("roll width");
        roll.done = r.u32("roll done");
        roll.steps = r.u32("roll steps");
        roll.cause = r.en(StopCause::Removed, "roll cause");
        roll.who = r.str("roll requester");
        roll.at = r.str("roll stopped at");
        roll.reason = r.str("roll reason");
        if (!r.ok()) break;
        std::string key = roll.unit;
        if (!m.rolls.emplace(std::move(key), std::move(roll)).second)
            r.fail("two rolls of one unit");
    }
}

// Every id a roll holds is a child's, and its cursor is within its order.
std::string check_rolls(const Core::Impl &m) {
    for (const auto &[unit, roll] : m.rolls) {
        if (roll.next > roll.order.size()) return "the roll of " + unit + " points past its end";
        if (roll.id == 0 || roll.id > m.roll_seq) return "a roll id never handed out";
        for (ChildId c : roll.order)
            if (c.value >= m.nodes.size()) return "the roll of " + unit + " names no child";
        for (const auto &[c, inc] : roll.step)
            if (c.value >= m.nodes.size()) return "the roll of " + unit + " names no child";
    }
    return {};
}

std::string child_name(const Core::Impl &m, std::size_t i) {
    return "child " + std::to_string(i) + " (\"" + m.nodes[i].spec.name + "\")";
}

// The core's own fields, every node, the global history; the last byte must be the history's.
// Returns, per node, the deadline of its live timer.
std::vector<TimePoint> parse(Reader &r, Core::Impl &m) {
    m.now = r.time("now");
    m.finished = r.flag("finished");
    m.kill_all = r.flag("kill_all");
    m.dropped_events = r.u64("dropped events");
    m.internal_errors = r.u64("internal errors");
    m.rng = SplitMix64(r.u64("generator state"));
    const std::uint64_t last_seq = r.u64("last timer seq");
    m.deadlines.restore({}, last_seq);
    // A node takes at least 100 bytes: the count cannot make the reader allocate much more than
    // the bytes it was given.
    const std::uint32_t n = r.count(max_snapshot_nodes, 100, "the number of children");
    if (r.ok() && n == 0) r.fail("no root supervisor");
    m.nodes.clear();
    m.nodes.resize(n);
    std::vector<TimePoint> when(n);
    for (std::uint32_t i = 0; i < n && r.ok(); ++i) {
        r.node = i;
        r.name = nullptr;
        when[i] = get_node(r, m.nodes[i]);
    }
    r.node.reset();
    get_rolls(r, m);
    r.section = "the global history";
    get_ring(r, m.global);
    if (r.ok() && r.left() != 0)
        r.fail(std::to_string(r.left()) + " bytes after the end of the snapshot");
    return when;
}

// What one node's fields must agree on: ids in range, and no state the core cannot be in
// (state.hpp: a Stopped service has no process, a Running one has its pid, a timer belongs to a
// state that has one...).
std::string check_ids(const Core::Impl &m, std::size_t i) {
    const Node &n = m.nodes[i];
    const std::size_t count = m.nodes.size();
    auto bad = [&](ChildId c) { return c.value >= count || c.value == 0 || c.value == i; };
    if (i == 0 && (n.spec.kind != Kind::Supervisor || n.spec.parent || n.gone))
        return "the root is not a supervisor without a parent";
    if (i != 0 && (!n.spec.parent || n.spec.parent->value >= count || n.spec.parent->value == i))
        return "its parent is missing or out of range";
    for (const auto *list : {&n.spec.children, &n.spec.after})
        for (ChildId c : *list)
            if (bad(c)) return "a child id out of range (" + std::to_string(c.value) + ")";
    if ((n.predecessor && bad(*n.predecessor)) || (n.successor && bad(*n.successor)))
        return "a predecessor or successor out of range";
    if (n.spec.kind == Kind::Service && !n.spec.children.empty()) return "a service with children";
    const Plan &p = n.plan;
    const std::size_t kids = n.spec.children.size();
    if (p.lo > kids || p.start_from > kids || p.cursor > kids)
        return "its start or stop sequence points past its children";
    if (n.spec.kind == Kind::Service && p.phase != Phase::Idle) return "a service with a sequence";
    return {};
}

std::string check_state(const Core::Impl &m, const Node &n) {
    const bool service = n.spec.kind == Kind::Service;
    const bool down = n.state == ChildState::Stopped || n.state == ChildState::Backoff;
    if (n.pid.has_value() != n.main_pid.has_value()) return "a pid without a main pid";
    if (!service && (n.pid || n.main_exit || n.drained)) return "a supervisor with a process";
    if ((n.main_exit || n.drained) && !n.pid) return "an ending incarnation without a pid";
    if (n.main_exit && n.drained) return "an incarnation that ended and drained but is not down";
    if (down && n.pid) return "a process while it is stopped or in backoff";
    if (service && n.state == ChildState::Running && !n.pid) return "running without a pid";
    if (n.state == ChildState::Backoff && (!service || !n.backoff_until))
        return "in backoff without a restart time";
    if (n.state != ChildState::Stopped && n.inc.value == 0) return "running before its first start";
    if (n.timer_seq > m.deadlines.last_seq()) return "a timer seq never handed out";
    if (n.timer_seq != 0 && n.state == ChildState::Stopped) return "a timer while stopped";
    if (n.spec.kind == Kind::Supervisor && (n.spec.intensity < 0 || n.spec.period.count() <= 0))
        return "a supervisor with a negative intensity or no period";
    const std::deque<std::int64_t> *st = n.intensity.stamps();
    if (st && !std::is_sorted(st->begin(), st->end())) return "a restart window out of order";
    if (st && (st->front() < -frame::max_time_ms / 1000 || st->back() > frame::max_time_ms / 1000))
        return "a restart window out of range";
    return {};
}

// The live tree (nodes not removed by reload): reached from the root exactly once through the
// children lists of live supervisors, each child knowing its parent and its position, `after`
// naming earlier siblings only, names unique.
std::string check_live_tree(const Core::Impl &m) {
    const std::size_t count = m.nodes.size();
    std::vector<std::uint8_t> reached(count, 0);
    std::vector<std::size_t> queue{0};
    reached[0] = 1;
    for (std::size_t q = 0; q < queue.size(); ++q) {
        const std::size_t s = queue[q];
        const auto &kids = m.nodes[s].spec.children;
        for (std::size_t j = 0; j < kids.size(); ++j) {
            const std::size_t k = kids[j].value;
            const Node &kn = m.nodes[k];
            if (reached[k]) return child_name(m, k) + " is listed twice in the tree";
            if (kn.gone || kn.spec.parent->value != s || kn.index != j)
                return child_name(m, k) + " does not match its place in the tree";
            for (ChildId a : kn.spec.after)
                if (m.nodes[a.value].spec.parent != kn.spec.parent || m.nodes[a.value].index >= j)
                    return child_name(m, k) + ": \"after\" names no earlier sibling";
            reached[k] = 1;
            queue.push_back(k);
        }
    }
    for (std::size_t i = 0; i < count; ++i)
        if (!m.nodes[i].gone && !reached[i])
            return child_name(m, i) + " is not removed and not in the tree";
    return {};
}

// Every supervisor (removed ones still going down included): a parallel stop marks the
// siblings a child is `after` by their position, which must be in its children list.
std::string check_after_positions(const Core::Impl &m) {
    for (std::size_t s = 0; s < m.nodes.size(); ++s) {
        const auto &kids = m.nodes[s].spec.children;
        for (ChildId k : kids)
            for (ChildId a : m.nodes[k.value].spec.after)
                if (m.nodes[a.value].index >= kids.size())
                    return child_name(m, k.value) + ": \"after\" names a child out of place";
    }
    return {};
}

// Records name the child they are about.
std::string check_records(const Core::Impl &m) {
    std::string e;
    auto check = [&](const Record &r) {
        if (e.empty() && r.child.value >= m.nodes.size())
            e = "a record of child " + std::to_string(r.child.value) + ", out of range";
    };
    for (const Node &n : m.nodes)
        if (n.history) n.history->for_each(check);
    m.global.for_each(check);
    return e;
}

std::string check_model(const Core::Impl &m) {
    std::vector<std::uint64_t> seqs;
    for (std::size_t i = 0; i < m.nodes.size(); ++i) {
        std::string e = check_ids(m, i);
        if (e.empty()) e = check_state(m, m.nodes[i]);
        if (!e.empty()) return child_name(m, i) + ": " + e;
        if (m.nodes[i].timer_seq != 0) seqs.push_back(m.nodes[i].timer_seq);
    }
    std::sort(seqs.begin(), seqs.end());
    if (std::adjacent_find(seqs.begin(), seqs.end()) != seqs.end()) return "two timers share a seq";
    std::string e = check_live_tree(m);
    if (e.empty()) e = check_after_positions(m);
    if (e.empty()) e = check_records(m);
    if (e.empty()) e = check_rolls(m);
    return e;
}

// The rebuilt parts: by_name (live nodes) and the deadline queue (live timers).
void rebuild(Core::Impl &m, const std::vector<TimePoint> &when) {
    m.by_name.clear();
    std::vector<DeadlineEntry> entries;
    for (std::size_t i = 0; i < m.nodes.size(); ++i) {
        const Node &n = m.nodes[i];
        const ChildId id{static_cast<std::uint32_t>(i)};
        if (!n.gone) m.by_name.emplace(n.spec.name, id);
        if (n.timer_seq != 0) entries.push_back(DeadlineEntry{when[i], n.timer_seq, id});
    }
    m.deadlines.restore(std::move(entries), m.deadlines.last_seq());
}

// The loaded tree must have the snapshot's live units: the same names, kinds and parents.
std::string match_loaded(const Core::Impl &m, const TreeSpec &loaded) {
    if (m.by_name.size() !=
        m.nodes.size() - static_cast<std::size_t>(std::count_if(
                             m.nodes.begin(), m.nodes.end(), [](const Node &n) { return n.gone; })))
        return "two units of the snapshot share a name";
    if (loaded.nodes.size() != m.by_name.size())
        return "the loaded tree has " + std::to_string(loaded.nodes.size() - 1) +
               " units, the snapshot " + std::to_string(m.by_name.size() - 1);
    for (std::size_t i = 1; i < loaded.nodes.size(); ++i) {
        const ChildSpec &l = loaded.nodes[i];
        const auto it = m.by_name.find(l.name);
        if (it == m.by_name.end() || it->second == root_id)
            return "unit \"" + l.name + "\" is not in the snapshot";
        const Node &n = m.node(it->second);
        const std::size_t lp = l.parent ? l.parent->value : 0;
        const std::string_view parent = lp == 0 ? "" : std::string_view(loaded.nodes[lp].name);
        const std::string_view had = n.spec.parent->value == 0 ? "" : m.name(*n.spec.parent);
        if (n.spec.kind != l.kind || parent != had)
            return "unit \"" + l.name + "\" changed its kind or its supervisor";
    }
    return {};
}

// The header: magic, version, length, checksum. Returns the payload's size, or an error.
std::string check_frame(std::span<const std::uint8_t> bytes) {
    if (bytes.size() < frame::header_bytes)
        return "truncated: " + std::to_string(bytes.size()) + " bytes, less than a header";
    if (bytes.size() > max_snapshot_bytes)
        return std::to_string(bytes.size()) + " bytes, over the bound of " +
               std::to_string(max_snapshot_bytes);
    if (std::memcmp(bytes.data(), frame::magic, sizeof frame::magic) != 0)
        return "not a vigil core snapshot (bad magic)";
    std::uint32_t version = 0, zero = 0;
    std::uint64_t length = 0, sum = 0;
    std::memcpy(&version, bytes.data() + frame::version_at, 4);
    std::memcpy(&zero, bytes.data() + frame::version_at + 4, 4);
    std::memcpy(&length, bytes.data() + frame::length_at, 8);
    std::memcpy(&sum, bytes.data() + frame::checksum_at, 8);
    if (version != snapshot_format_version)
        return "snapshot format version " + std::to_string(version) +
               " is not known to this vigild (it reads version " +
               std::to_string(snapshot_format_version) + ")";
    if (zero != 0) return "a reserved header field is not 0";
    if (length != bytes.size() - frame::header_bytes)
        return "truncated or padded: the header says " + std::to_string(length) +
               " payload bytes, there are " + std::to_string(bytes.size() - frame::header_bytes);
    if (sum != frame::checksum(bytes.data() + frame::header_bytes, length))
        return "checksum mismatch: the snapshot is corrupt";
    return {};
}

} // namespace

RestoreResult Core::restore(const TreeSpec &loaded, std::span<const std::uint8_t> bytes) noexcept {
    RestoreResult res;
    try {
        std::string error = check_frame(bytes);
        if (!error.empty()) {
            res.error = "restore: " + error;
            return res;
        }
        const std::vector<std::string> invalid = validate(loaded);
        if (!invalid.empty()) {
            res.error = "restore: the loaded units are not a valid tree: " + invalid.front();
            return res;
        }
        auto m = std::make_unique<Impl>(TreeSpec{});
        Reader r(bytes.data() + frame::header_bytes, bytes.size() - frame::header_bytes);
        const std::vector<TimePoint> when = parse(r, *m);
        error = r.ok() ? check_model(*m) : r.error();
        if (error.empty()) rebuild(*m, when);
        if (error.empty()) error = match_loaded(*m, loaded);
        if (!error.empty()) {
            res.error = "restore: " + error;
            return res;
        }
        res.core.reset(new Core(std::move(m)));
    } catch (...) {
        res.core.reset();
        res.error = "restore: out of memory";
    }
    return res;
}

} // namespace vigil::core

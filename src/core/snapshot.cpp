// snapshot.cpp: Core::snapshot and Core::restore, the core's state across an exec of vigild
// (the format: "Snapshots" in include/vigil/core/core.hpp; the frame: snapshot_format.hpp).
//
// Every member of the model (impl.hpp) is carried or rebuilt from what is carried:
//   carried   Impl: now, finished, kill_all, dropped_events, internal_errors, the jitter
//             generator's state, the deadline queue's last seq, the rolls and their seq, the
//             global history (oldest first). Node: every field, its spec (as the core holds it, ids
//             and all) and, for its one live timer, the seq and the deadline. A ring refilled
//             oldest first holds the same records and overwrites them in the same order.
//   rebuilt   by_name (the live nodes), the deadline queue (the live timers of the nodes, with
//             their seqs, so ties still fire in the order they were armed; stale entries change
//             nothing), spec_errors (empty: restore requires a valid loaded tree).
//   dropped   work (empty between entry points: every one drains it), out (set by every entry
//             point).
// The records of the history have no sequence number of their own: their order is the ring's.
//
// Reading never half-adopts: the bytes are parsed into a new model, which is checked whole
// (check_model: ids in range, the live tree well formed, no state that the core cannot be in)
// and compared with the loaded tree before a Core is made of it. Every count is bounded before
// anything is allocated for it, and by the bytes left, so a hostile length cannot make the
// reader allocate more than a small multiple of its input.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "impl.hpp"
#include "snapshot_format.hpp"

namespace vigil::core {

// A field added to the model must be carried here (or rebuilt, and said so above): these sizes
// fail the build until it is. They hold for libstdc++ on 64-bit Linux, where vigil is built.
#if defined(__GLIBCXX__) && (defined(__x86_64__) || defined(__aarch64__))
static_assert(sizeof(Node) == 792, "Node changed: carry the new field in a snapshot");
static_assert(sizeof(ChildSpec) == 296, "ChildSpec changed: carry the new field in a snapshot");
static_assert(sizeof(Core::Impl) == 352, "Core::Impl changed: carry the new field in a snapshot");
static_assert(sizeof(Record) == 192, "Record changed: carry the new field in a snapshot");
static_assert(sizeof(Plan) == 48, "Plan changed: carry the new field in a snapshot");
static_assert(sizeof(HealthStop) == 72, "HealthStop changed: carry the new field in a snapshot");
#endif

namespace {

namespace frame = snapshot_frame;
using namespace snapshot_frame::flag;

// ---- writing ------------------------------------------------------------------------------

class Writer {
public:
    explicit Writer(std::size_t estimate) { buf_.resize(estimate); }

    template <class T> void raw(T v) {
        static_assert(std::is_trivially_copyable_v<T>);
        reserve(sizeof v);
        std::memcpy(buf_.data() + size_, &v, sizeof v);
        size_ += sizeof v;
    }
    void u8(std::uint8_t v) { raw(v); }
    void u32(std::uint32_t v) { raw(v); }
    void u64(std::uint64_t v) { raw(v); }
    void i32(std::int32_t v) { raw(v); }
    void i64(std::int64_t v) { raw(v); }
    void f64(double v) { raw(std::bit_cast<std::uint64_t>(v)); }
    template <class E> void en(E v) { u8(static_cast<std::uint8_t>(v)); }
    void flag(bool v) { u8(v ? 1 : 0); }
    void dur(Duration d) { i64(d.count()); }
    void time(TimePoint t) { i64(t.time_since_epoch().count()); }
    void id(ChildId c) { u32(c.value); }
    void str(const std::string &s) {
        if (s.size() > max_snapshot_string && error.empty())
            error = "a string of " + std::to_string(s.size()) + " bytes (at most " +
                    std::to_string(max_snapshot_string) + ")";
        u32(static_cast<std::uint32_t>(s.size()));
        reserve(s.size());
        std::memcpy(buf_.data() + size_, s.data(), s.size());
        size_ += s.size();
    }
    template <class T, class F> void opt(const std::optional<T> &v, F &&put) {
        flag(v.has_value());
        if (v) put(*v);
    }
    void ids(const std::vector<ChildId> &v) {
        u32(static_cast<std::uint32_t>(v.size()));
        for (ChildId c : v)
            id(c);
    }
    void exit(const ExitStatus &e) {
        flag(e.signaled);
        i32(e.code);
        flag(e.core_dumped);
    }

    std::size_t size() const noexcept { return size_; }
    std::uint8_t *at(std::size_t offset) noexcept { return buf_.data() + offset; }
    std::vector<std::uint8_t> take() {
        buf_.resize(size_);
        return std::move(buf_);
    }
    std::string error; // the first value beyond a bound

private:
    void reserve(std::size_t n) {
        if (buf_.size() - size_ >= n) return;
        buf_.resize(std::max(buf_.size() * 2, size_ + n));
    }
    std::vector<std::uint8_t> buf_;
    std::size_t size_ = 0;
};

void put_spec(Writer &w, const ChildSpec &s) {
    w.str(s.name);
    w.en(s.kind);
    w.opt(s.parent, [&](ChildId c) { w.id(c); });
    w.ids(s.children);
    w.en(s.restart);
    w.flag(s.significant);
    w.i32(s.stop.signal);
    w.opt(s.stop.timeout, [&](Duration d) { w.dur(d); });
    w.dur(s.stop.drain);
    w.dur(s.backoff.initial);
    w.dur(s.backoff.max);
    w.f64(s.backoff.factor);
    w.f64(s.backoff.jitter);
    w.dur(s.backoff.reset_after);
    w.flag(s.wait_ready);
    w.opt(s.start_timeout, [&](Duration d) { w.dur(d); });
    w.flag(s.readiness_probe);
    w.opt(s.watchdog, [&](Duration d) { w.dur(d); });
    w.ids(s.after);
    w.flag(s.parallel);
    w.en(s.strategy);
    w.i32(s.intensity);
    w.dur(s.period);
    w.en(s.auto_shutdown);
    w.u64(s.fingerprint);
    w.str(s.unit);
    w.i32(s.instance);
    w.en(s.update);
    w.i32(s.max_unavailable);
}

void put_record(Writer &w, const Record &r) {
    w.time(r.at);
    w.id(r.child);
    w.str(r.unit);
    w.en(r.kind);
    w.str(r.message);
    w.en(r.cause);
    w.opt(r.pid, [&](Pid p) { w.i32(p.value); });
    w.opt(r.exit, [&](const ExitStatus &e) { w.exit(e); });
    w.opt(r.signal, [&](int s) { w.i32(s); });
    w.opt(r.delay, [&](Duration d) { w.dur(d); });
    w.opt(r.incarnation, [&](Incarnation i) { w.u64(i.value); });
    w.str(r.subject);
}

void put_ring(Writer &w, const RecordRing &ring) {
    w.u32(static_cast<std::uint32_t>(ring.size()));
    ring.for_each([&](const Record &r) { put_record(w, r); });
}

std::uint16_t flags_of(const Node &n) {
    std::uint16_t f = 0;
    const std::pair<bool, std::uint16_t> bits[] = {
        {n.ready, f_ready},         {n.probe_ready, f_probe_ready},
        {n.started, f_started},     {n.manual_start, f_manual_start},
        {n.retrying, f_retrying},   {n.joined_start, f_joined_start},
        {n.gone, f_gone},           {n.forgotten, f_forgotten},
        {n.dropped, f_dropped},     {n.exited, f_exited},
        {n.held_down, f_held_down}, {n.in_set, f_in_set},
        {n.drained, f_drained}};
    for (auto [on, bit] : bits)
        if (on) f = static_cast<std::uint16_t>(f | bit);
    return f;
}

// A node's state; `when` is the deadline of its live timer (timer_seq != 0).
void put_state(Writer &w, const Node &n, TimePoint when) {
    w.en(n.state);
    w.en(n.goal);
    w.raw(flags_of(n));
    w.en(n.stop_cause);
    w.opt(n.pid, [&](Pid p) { w.i32(p.value); });
    w.opt(n.main_pid, [&](Pid p) { w.i32(p.value); });
    w.opt(n.main_exit, [&](const ExitStatus &e) { w.exit(e); });
    w.u64(n.inc.value);
    w.time(n.since);
    w.time(n.run_since);
    w.u32(n.restarts);
    w.u32(n.backoff_step);
    w.u32(static_cast<std::uint32_t>(n.index));
    w.opt(n.last_exit, [&](const ExitStatus &e) { w.exit(e); });
    w.en(n.last_cause);
    w.str(n.last_reason);
    w.opt(n.backoff_until, [&](TimePoint t) { w.time(t); });
    w.opt(n.watchdog, [&](Duration d) { w.dur(d); });
    w.opt(n.drain_until, [&](TimePoint t) { w.time(t); });
    w.u64(n.timer_seq);
    if (n.timer_seq != 0) w.time(when);
    w.opt(n.predecessor, [&](ChildId c) { w.id(c); });
    w.opt(n.successor, [&](ChildId c) { w.id(c); });
    w.en(n.health.cause);
    w.str(n.health.subject);
    w.str(n.health.text);
    w.str(n.status_text);
    w.u32(static_cast<std::uint32_t>(n.left_behind.size()));
    for (Pid p : n.left_behind)
        w.i32(p.value);
}

void put_node(Writer &w, const Node &n, TimePoint when) {
    put_spec(w, n.spec);
    put_state(w, n, when);
    const Plan &p = n.plan;
    w.en(p.phase);
    w.flag(p.terminal);
    w.u32(static_cast<std::uint32_t>(p.lo));
    w.u32(static_cast<std::uint32_t>(p.start_from));
    w.u32(static_cast<std::uint32_t>(p.cursor));
    w.flag(p.set_only);
    const std::deque<std::int64_t> *stamps = n.intensity.stamps();
    w.u32(stamps ? static_cast<std::uint32_t>(stamps->size()) : 0);
    if (stamps)
        for (std::int64_t t : *stamps)
            w.i64(t);
    w.flag(n.history != nullptr);
    if (n.history) put_ring(w, *n.history);
}

// The rolls of units (the current or last one of each unit that was rolled).
void put_rolls(Writer &w, const Core::Impl &m) {
    w.u64(m.roll_seq);
    w.u32(static_cast<std::uint32_t>(m.rolls.size()));
    for (const auto &[unit, r] : m.rolls) {
        w.u64(r.id);
        w.str(r.unit);
        w.en(r.phase);
        w.ids(r.order);
        w.u32(static_cast<std::uint32_t>(r.next));
        w.u32(static_cast<std::uint32_t>(r.step.size()));
        for (const auto &[c, inc] : r.step) {
            w.id(c);
            w.u64(inc.value);
        }
        w.u32(r.max_unavailable);
        w.u32(r.done);
        w.u32(r.steps);
        w.en(r.cause);
        w.str(r.who);
        w.str(r.at);
        w.str(r.reason);
    }
}

} // namespace

SnapshotResult Core::snapshot() const noexcept {
    SnapshotResult res;
    try {
        const Impl &m = *impl_;
        if (m.nodes.size() > max_snapshot_nodes) {
            res.error = "snapshot: " + std::to_string(m.nodes.size()) + " children (at most " +
                        std::to_string(max_snapshot_nodes) + ")";
            return res;
        }
        // The deadline of each node's live timer.
        std::vector<TimePoint> when(m.nodes.size());
        std::size_t found = 0, live = 0;
        for (const DeadlineEntry &e : m.deadlines.entries())
            if (m.valid(e.child) && m.node(e.child).timer_seq == e.seq) {
                when[e.child.value] = e.when;
                ++found;
            }
        for (const Node &n : m.nodes)
            live += n.timer_seq != 0;
        if (found != live) {
            res.error = "snapshot: a timer has no deadline (an internal error of the core)";
            return res;
        }
        Writer w(std::size_t{64} << 10 | m.nodes.size() * 512); // grows by doubling
        for (std::size_t i = 0; i < frame::header_bytes; ++i)
            w.u8(0);
        w.time(m.now);
        w.flag(m.finished);
        w.flag(m.kill_all);
        w.u64(m.dropped_events);
        w.u64(m.internal_errors);
        w.u64(m.rng.state());
        w.u64(m.deadlines.last_seq());
        w.u32(static_cast<std::uint32_t>(m.nodes.size()));
        for (std::size_t i = 0; i < m.nodes.size(); ++i)
            put_node(w, m.nodes[i], when[i]);
        put_rolls(w, m);
        put_ring(w, m.global);
        if (!w.error.empty()) {
            res.error = "snapshot: " + w.error;
            return res;
        }
        if (w.size() > max_snapshot_bytes) {
            res.error = "snapshot: " + std::to_string(w.size()) + " bytes (at most " +
                        std::to_string(max_snapshot_bytes) + ")";
            return res;
        }
        const std::uint64_t length = w.size() - frame::header_bytes;
        const std::uint32_t version = snapshot_format_version;
        std::memcpy(w.at(0), frame::magic, sizeof frame::magic);
        std::memcpy(w.at(frame::version_at), &version, sizeof version);
        std::memcpy(w.at(frame::length_at), &length, sizeof length);
        res.bytes = w.take();
        frame::seal(res.bytes.data(), res.bytes.size());
    } catch (...) {
        res.bytes.clear();
        res.error = "snapshot: out of memory";
    }
    return res;
}

} // namespace vigil::core

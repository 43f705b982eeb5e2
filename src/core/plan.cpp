// plan.cpp: a supervisor's sequences over its children: the start phase (one at a time in
// start order, or in parallel keeping only `after`), the stop phase (reverse start order), the
// sweeps of one_for_all and rest_for_one, and the supervisor's own end.
#include "impl.hpp"

namespace vigil::core {

// Does the parent's running sequence decide when this child starts? (Then a backoff that ends,
// or a restart without delay, leaves the start to the sequence.)
bool Core::Impl::plan_starts(ChildId parent, std::size_t idx) const {
    const Node &par = node(parent);
    const Plan &p = par.plan;
    switch (p.phase) {
    case Phase::Idle:
        return false;
    case Phase::Stopping:
        // A set restart's stop phase leaves the other children to themselves.
        if (p.set_only && (idx >= par.spec.children.size() || !node(par.spec.children[idx]).in_set))
            return false;
        return !p.terminal && (idx >= p.lo || idx >= p.start_from);
    case Phase::Starting:
        return idx >= p.cursor;
    }
    return false;
}

// Is the child inside a sweep's stop range (its end is the sweep's business)?
bool Core::Impl::plan_stops(ChildId parent, std::size_t idx) const {
    const Node &par = node(parent);
    const Plan &p = par.plan;
    if (p.phase != Phase::Stopping || idx < p.lo) return false;
    return !p.set_only || (idx < par.spec.children.size() && node(par.spec.children[idx]).in_set);
}

bool Core::Impl::waits_for_predecessor(const Node &n) const {
    return n.predecessor && node(*n.predecessor).state != ChildState::Stopped;
}

// The supervisor stops all its children in reverse start order, then ends (items 27, 37).
void Core::Impl::begin_terminal(ChildId s) {
    Node &n = node(s);
    const std::size_t count = n.spec.children.size();
    n.plan = Plan{Phase::Stopping, true, 0, 0, count == 0 ? 0 : count - 1};
    for (ChildId k : n.spec.children)
        node(k).in_set = false;
    schedule(s);
}

// The supervisor decided to end by itself (give-up, auto-shutdown, start-up failure).
void Core::Impl::end_supervisor(ChildId s, StopCause cause) {
    Node &n = node(s);
    n.stop_cause = stronger(n.stop_cause, cause);
    if (n.state != ChildState::Stopping) set_state(s, ChildState::Stopping);
    begin_terminal(s);
}

// A one_for_all / rest_for_one sweep from index j (items 15-22, 32).
void Core::Impl::sweep(ChildId s, std::size_t j) {
    Node &n = node(s);
    const std::size_t count = n.spec.children.size();
    Plan &p = n.plan;
    if (p.phase == Phase::Stopping && !p.terminal) {
        p.lo = std::min(p.lo, j);
        p.start_from = std::min(p.start_from, j);
    } else {
        p = Plan{Phase::Stopping, false, j, j, 0};
    }
    p.set_only = false;   // a set restart under way becomes part of the sweep
    p.cursor = count - 1; // rescan from the last child: already-down children are skipped
    schedule(s);
}

// Asks a running supervisor to start its wanted-up children from index j (reload, commands).
void Core::Impl::request_start(ChildId s, std::size_t j) {
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

void Core::Impl::pump(ChildId s) {
    Node &sup = node(s);
    if (sup.spec.kind != Kind::Supervisor) return;
    for (;;) {
        Plan &p = sup.plan;
        switch (p.phase) {
        case Phase::Idle:
            return;
        case Phase::Stopping:
            // One child at a time, last first (items 15, 16, 37, 38), or all at once.
            if (!(sup.spec.parallel ? stop_parallel(s) : stop_sequential(s))) return;
            if (p.terminal) {
                finish_supervisor(s);
                return;
            }
            begin_sweep_start(s);
            continue;
        case Phase::Starting:
            if (!(sup.spec.parallel ? start_parallel(s) : start_sequential(s))) return;
            p = Plan{};
            if (sup.state == ChildState::Starting) supervisor_started(s);
            return;
        }
    }
}

// The sweep's start phase: every kept spec in range is wanted up (items 19, 20); temporary
// children are not brought back (item 18), nor one that a stop command took down during the
// sweep (the person asked after the sweep began).
void Core::Impl::begin_sweep_start(ChildId s) {
    Node &sup = node(s);
    const auto &kids = sup.spec.children;
    Plan &p = sup.plan;
    for (std::size_t i = p.lo; i < kids.size(); ++i) {
        Node &kn = node(kids[i]);
        const bool wanted = p.set_only ? kn.in_set : kn.spec.restart != Restart::Temporary;
        if (wanted && !kn.held_down) kn.goal = Goal::Up;
        kn.held_down = false;
        kn.in_set = false;
    }
    const std::size_t from = std::min(p.lo, p.start_from);
    p = Plan{Phase::Starting, false, 0, from, from};
}

void Core::Impl::supervisor_started(ChildId s) {
    Node &sup = node(s);
    // Its uptime counts from its start, so it is never shorter than its children's.
    const TimePoint began = sup.since;
    set_state(s, ChildState::Running);
    sup.since = began;
    sup.started = true;
    sup.ready = true;
    publish(s, RecordKind::Started, sup.spec.parent ? "all children started" : "tree started");
    if (sup.spec.parent) schedule(*sup.spec.parent);
}

// The stop phase one child at a time, last first; false while a child is still going down.
bool Core::Impl::stop_sequential(ChildId s) {
    const auto &kids = node(s).spec.children;
    const std::size_t count = kids.size();
    Plan &p = node(s).plan;
    while (count > 0 && p.cursor + 1 > p.lo && p.cursor < count) {
        const ChildId k = kids[p.cursor];
        // A sweep keeps a pending restart delay: its start phase waits for it. A set restart
        // stops only its own children.
        const bool skip = (!p.terminal && node(k).state == ChildState::Backoff) ||
                          (p.set_only && !node(k).in_set);
        if (!skip && !stop_child(k, p.set_only ? StopCause::ManualRestart : StopCause::Plan))
            return false;
        if (p.cursor == 0) break;
        --p.cursor;
    }
    return true;
}

// Can child `kn` not start for now (docs/otp-departures.md, "Blocking follows `after`")? Its
// start failed and it is retried: it waits for the restart delay, or starts again. Such a child
// does not hold the sequence; only the siblings ordered after it through `after` wait for it.
// A child in backoff after a crash of a run that had started still holds a sweep's start
// phase: the strategy restarts the others because they depend on it (items 15, 16).
bool Core::Impl::cannot_start(const Node &kn) const {
    if (kn.dropped || kn.goal == Goal::Down || !kn.retrying) return false;
    return kn.state == ChildState::Backoff || kn.state == ChildState::Starting;
}

// Is `kn` ordered (directly or, through `blocked`, transitively) after a sibling that cannot
// start? `blocked` marks the earlier children of this scan that cannot start or wait for one.
bool Core::Impl::after_blocked(const Node &kn, const std::vector<bool> &blocked) const {
    for (ChildId a : kn.spec.after) {
        const Node &an = node(a);
        if (an.index < blocked.size() && blocked[an.index]) return true;
        if (cannot_start(an)) return true; // before the scan's start (a crash after it started)
    }
    return false;
}

// The start phase one child at a time, in order; each must count as started first (items 1,
// 2). A child that cannot start (cannot_start) holds back only the siblings after it through
// `after`; the scan goes on past it, and the cursor stays at the first one. False while the
// sequence waits.
bool Core::Impl::start_sequential(ChildId s) {
    const auto &kids = node(s).spec.children;
    const std::size_t count = kids.size();
    Plan &p = node(s).plan;
    std::vector<bool> blocked; // by index; empty until a child cannot start
    for (std::size_t i = p.cursor; i < count; ++i) {
        const ChildId k = kids[i];
        Node &kn = node(k);
        const bool prefix = blocked.empty(); // everything before i has started
        if (start_done(kn)) {
            if (prefix) p.cursor = i + 1;
            continue;
        }
        if (kn.state == ChildState::Backoff && kn.backoff_until && *kn.backoff_until <= now)
            start_child(k);
        if (cannot_start(kn) || (kn.state == ChildState::Stopped && after_blocked(kn, blocked))) {
            if (blocked.empty()) blocked.assign(count, false);
            blocked[i] = true;
            continue;
        }
        // Starting (readiness), Stopping, or about to start: one at a time.
        if (kn.state == ChildState::Stopped && !waits_for_predecessor(kn)) start_child(k);
        return false; // a predecessor still going down reschedules this supervisor
    }
    return blocked.empty();
}

// Core::waiting_for: the `after` siblings not started yet, else the one a one-at-a-time start
// sequence waits on before it reaches `c`.
std::vector<ChildId> Core::Impl::waiting_for(ChildId c) const {
    std::vector<ChildId> ids;
    if (!valid(c) || !node(c).spec.parent) return ids;
    const Node &n = node(c);
    const ChildId p = *n.spec.parent;
    const Node &par = node(p);
    if (n.state != ChildState::Stopped || n.goal != Goal::Up || n.dropped || n.gone ||
        (par.state != ChildState::Running && par.state != ChildState::Starting))
        return ids;
    for (ChildId a : n.spec.after)
        if (!start_done(node(a))) ids.push_back(a);
    if (!ids.empty() || par.spec.parallel || par.plan.phase != Phase::Starting) return ids;
    const auto &kids = par.spec.children;
    for (std::size_t i = par.plan.cursor; i < n.index && i < kids.size(); ++i) {
        const Node &kn = node(kids[i]);
        if (start_done(kn) || cannot_start(kn) || kn.state == ChildState::Stopped) continue;
        ids.push_back(kids[i]);
        break;
    }
    return ids;
}

// Has child `k` nothing left to do in a start phase (it runs, or nobody wants it up)?
bool Core::Impl::start_done(const Node &kn) const {
    return kn.dropped || kn.state == ChildState::Running ||
           (kn.state == ChildState::Stopped && kn.goal == Goal::Down);
}

bool Core::Impl::parallel_deps_started(const Node &kn, std::size_t cursor) const {
    for (ChildId a : kn.spec.after) {
        const Node &an = node(a);
        if (an.index >= cursor && !start_done(an)) return false;
    }
    return true;
}

// A parallel supervisor's start phase: every wanted child from the cursor on starts as soon as
// the earlier siblings it is `after` have started; done when none is left to start. The cursor
// skips the finished prefix so a long start sweep does not rescan it, and while children the
// last scan left in flight have not all settled, nothing else can have changed (InFlight).
bool Core::Impl::start_parallel(ChildId s) {
    const auto &kids = node(s).spec.children;
    const std::size_t count = kids.size();
    Plan &p = node(s).plan;
    while (p.cursor < count && start_done(node(kids[p.cursor])))
        ++p.cursor;
    if (p.in_flight && p.in_flight->pending > 0) return false;
    auto flight = std::make_unique<InFlight>();
    flight->counted.assign(count, false);
    bool cacheable = true;
    bool waiting = false;
    for (std::size_t i = p.cursor; i < count; ++i) {
        const ChildId k = kids[i];
        Node &kn = node(k);
        if (!kn.spec.after.empty()) cacheable = false;
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
        case ChildState::Stopped:
            // A predecessor still going down reschedules this supervisor when it is down.
            if (!waits_for_predecessor(kn) && parallel_deps_started(kn, p.cursor)) start_child(k);
            break;
        }
        if (kn.state != ChildState::Starting && kn.state != ChildState::Stopping) {
            cacheable = false; // held by something other than its own next event
        } else {
            flight->counted[i] = true;
            ++flight->pending;
        }
    }
    p.in_flight.reset();
    if (cacheable && flight->pending > 0) p.in_flight = std::move(flight);
    return !waiting;
}

// Is child `kn` down as far as the stop phase `p` is concerned? A sweep keeps a pending restart
// delay, and a set restart stops only its own children.
bool Core::Impl::stop_done(const Plan &p, const Node &kn) const {
    return kn.state == ChildState::Stopped || (!p.terminal && kn.state == ChildState::Backoff) ||
           (p.set_only && !kn.in_set);
}

// A parallel supervisor's stop phase: every child in range is stopped at once, except one that
// a sibling still up is `after` (it stops once that sibling is down). A sweep keeps a pending
// restart delay, as the sequential one does. Between full scans, as for the start (InFlight).
bool Core::Impl::stop_parallel(ChildId s) {
    const auto &kids = node(s).spec.children;
    const std::size_t count = kids.size();
    Plan &p = node(s).plan;
    if (p.in_flight && p.in_flight->pending > 0) return false;
    const StopCause cause = p.set_only ? StopCause::ManualRestart : StopCause::Plan;
    // Which children a sibling in range that is not down yet still needs.
    std::vector<bool> needed;
    for (std::size_t i = p.lo; i < count; ++i) {
        const Node &kn = node(kids[i]);
        if (kn.spec.after.empty() || stop_done(p, kn)) continue;
        if (needed.empty()) needed.assign(count, false);
        for (ChildId a : kn.spec.after)
            needed[node(a).index] = true;
    }
    auto flight = std::make_unique<InFlight>();
    flight->counted.assign(count, false);
    bool waiting = false;
    for (std::size_t i = count; i-- > p.lo;) {
        const ChildId k = kids[i];
        if (stop_done(p, node(k))) continue;
        if ((!needed.empty() && needed[i]) || !stop_child(k, cause)) waiting = true;
        if (!stop_done(p, node(k)) && node(k).state == ChildState::Stopping) {
            flight->counted[i] = true;
            ++flight->pending;
        }
    }
    p.in_flight.reset();
    if (needed.empty() && flight->pending > 0) p.in_flight = std::move(flight);
    return !waiting;
}

// `c` reached Running, or went down (and nothing else about its siblings changed): when the
// parent's parallel phase counted it in flight, one fewer to wait for, without a scan.
// Otherwise (it was not counted, or it is not done in that phase's sense) a full scan.
void Core::Impl::settled(ChildId c) {
    const Node &n = node(c);
    if (!n.spec.parent) return;
    const ChildId p = *n.spec.parent;
    Plan &plan = node(p).plan;
    InFlight *f = plan.in_flight.get();
    const bool done = plan.phase == Phase::Starting   ? start_done(n)
                      : plan.phase == Phase::Stopping ? stop_done(plan, n)
                                                      : false;
    if (!f || !done || n.index >= f->counted.size() || !f->counted[n.index]) {
        schedule(p);
        return;
    }
    f->counted[n.index] = false;
    --f->pending;
    work.push_back(p);
}

// The terminal stop sequence of a supervisor is complete. A supervisor's end is reported to its
// parent exactly like a process exit: give-up and auto-shutdown are OTP's `shutdown` reason
// (items 27-29, 48), a failed start-up is a start failure (item 5), anything else was asked for.
void Core::Impl::finish_supervisor(ChildId s) {
    Node &n = node(s);
    n.plan = Plan{};
    set_state(s, ChildState::Stopped);
    n.started = false;
    n.ready = false;
    const StopCause cause = n.stop_cause;
    if (!n.spec.parent) {
        finish_root(cause);
        return;
    }
    Facts f{record_cause(cause)};
    switch (cause) {
    case StopCause::GaveUp:
        on_down(s, DownKind::SelfShutdown, RecordKind::GaveUp, "gave up", f);
        return;
    case StopCause::AutoShutdown:
        on_down(s, DownKind::SelfShutdown, RecordKind::AutoShutdown, "shut itself down", f);
        return;
    case StopCause::StartFailed:
        on_down(s, DownKind::StartFailed, RecordKind::StartFailed, "failed to start", f);
        return;
    case StopCause::None:
    case StopCause::Health:
    case StopCause::StartTimeout:
    case StopCause::ManualRestart:
    case StopCause::Reload:
    case StopCause::Manual:
    case StopCause::Plan:
    case StopCause::Shutdown:
    case StopCause::Removed:
        on_down(s, DownKind::Stopped, RecordKind::Stopped, "all children stopped", f);
        return;
    }
}

void Core::Impl::finish_root(StopCause cause) {
    Node &root = node(root_id);
    int status = exit_clean;
    std::string why;
    switch (cause) {
    case StopCause::Manual:
        root.goal = Goal::Down;
        publish(root_id, RecordKind::Stopped, "tree stopped by command; vigild keeps running",
                Facts{Cause::Command});
        return;
    case StopCause::ManualRestart:
    case StopCause::Reload:
        publish(root_id, RecordKind::Stopped, "tree stopped; starting it again",
                Facts{record_cause(cause)});
        start_child(root_id);
        return;
    case StopCause::GaveUp:
        status = exit_gave_up;
        why = "the root supervisor reached its restart intensity";
        break;
    case StopCause::StartFailed:
        status = exit_start_failed;
        why = "the tree failed to start";
        break;
    case StopCause::AutoShutdown:
        status = root.last_exit ? root.last_exit->shell_code() : exit_clean;
        why = "a significant child ended (auto_shutdown)";
        break;
    case StopCause::None:
    case StopCause::Health:
    case StopCause::StartTimeout:
    case StopCause::Plan:
    case StopCause::Shutdown:
    case StopCause::Removed:
        status = exit_clean;
        why = "shutdown completed";
        break;
    }
    publish(root_id, RecordKind::Exit, why + "; vigild exits with status " + std::to_string(status),
            Facts{record_cause(cause)});
    emit(Exit{status});
    finished = true;
}

} // namespace vigil::core

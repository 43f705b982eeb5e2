// roll.cpp: rolling restarts (Core::roll): a unit's instances replaced a step at a time, each
// step once every instance of the step before runs a new incarnation that has started and is
// ready. The roll only decides: its stops and starts go through stop_child and start_child as a
// restart command's do, so the drain, the stop timeout, readiness and the restart policy of a
// new incarnation that fails are the usual ones, and nothing of it is counted in the intensity.
//
// Where each fact is seen:
//  - progress: advance_rolls(), called by drain() once the work queue is empty, after every
//    input: a step is over when each of its instances runs an incarnation newer than the one the
//    step found and status shows it ready;
//  - a new incarnation that fails or ends: on_down() -> roll_member_down();
//  - a stop command for an instance of the unit: stop_command() -> roll_member_stopped();
//  - its supervisor stopping, the tree shutting down: advance_roll() checks them first;
//  - reload: reconfigure.cpp starts a new roll (update "rolling") or ends the running one.
// At most one roll a unit runs at a time; the last one of each unit stays in `rolls` for
// status (vigilctl waits on its id) until reload removes the unit.
#include <algorithm>

#include "impl.hpp"

namespace vigil::core {

namespace {
std::string progress(const Roll &r) {
    return std::to_string(r.done) + "/" + std::to_string(r.order.size());
}
} // namespace

const std::string &Core::Impl::unit_of(ChildId c) const {
    const ChildSpec &s = node(c).spec;
    return s.unit.empty() ? s.name : s.unit;
}

// The live services of `unit` under one supervisor (the first one's), in instance order.
std::vector<ChildId> Core::Impl::instances_of(std::string_view unit) const {
    std::vector<ChildId> found;
    for (std::size_t i = 1; i < nodes.size(); ++i) {
        const ChildId c{static_cast<std::uint32_t>(i)};
        const Node &n = nodes[i];
        if (n.gone || n.spec.kind != Kind::Service || unit_of(c) != unit) continue;
        if (!found.empty() && n.spec.parent != node(found.front()).spec.parent) continue;
        found.push_back(c);
    }
    std::stable_sort(found.begin(), found.end(), [&](ChildId a, ChildId b) {
        return node(a).spec.instance < node(b).spec.instance;
    });
    return found;
}

CommandResult Core::Impl::roll_command(std::string_view unit, std::optional<std::uint32_t> max,
                                       const std::string &who) {
    std::vector<ChildId> order = instances_of(unit);
    if (order.empty())
        return {CommandOutcome::NotFound, "no unit named " + std::string(unit) + " to roll"};
    const std::string u(unit);
    publish(order.front(), RecordKind::Command, "rolling restart of " + u + " requested by " + who,
            Facts{Cause::Command, std::nullopt, std::nullopt, std::nullopt, std::nullopt, who});
    if (tree_shutting_down()) return {CommandOutcome::ShuttingDown, "shutting down"};
    if (auto it = rolls.find(unit); it != rolls.end() && it->second.phase == RollPhase::Running)
        return {CommandOutcome::AlreadyRunning,
                "a rolling restart of " + u + " is under way: " + progress(it->second)};
    const ChildId p = *node(order.front()).spec.parent;
    if (node(p).state != ChildState::Running || node(p).plan.phase != Phase::Idle)
        return {CommandOutcome::NotRunning,
                "supervisor " + std::string(name(p)) + " is not running (or is restarting)"};
    const std::uint32_t m = max.value_or(
        static_cast<std::uint32_t>(std::max(1, node(order.front()).spec.max_unavailable)));
    const std::size_t total = order.size();
    begin_roll(unit, std::move(order), m, StopCause::ManualRestart, who);
    return {CommandOutcome::Ok, "rolling restart 0/" + std::to_string(total)};
}

// A new roll of `unit` over `order` (the caller ended any running one). Its first step begins
// when the work queue has drained (advance_rolls).
void Core::Impl::begin_roll(std::string_view unit, std::vector<ChildId> order, std::uint32_t max,
                            StopCause cause, const std::string &who) {
    Roll r;
    r.id = ++roll_seq;
    r.unit = std::string(unit);
    r.max_unavailable = std::clamp<std::uint32_t>(
        max, 1, static_cast<std::uint32_t>(std::max<std::size_t>(order.size(), 1)));
    r.order = std::move(order);
    r.cause = cause;
    r.who = who;
    rolls.insert_or_assign(r.unit, std::move(r));
}

bool Core::Impl::advance_rolls() {
    bool acted = false;
    for (auto &[unit, r] : rolls)
        if (r.phase == RollPhase::Running && advance_roll(r)) acted = true;
    return acted;
}

// True when it began a step (actions emitted, work maybe scheduled).
bool Core::Impl::advance_roll(Roll &r) {
    std::optional<ChildId> parent;
    for (ChildId c : r.order)
        if (valid(c) && !node(c).gone && unit_of(c) == r.unit) parent = node(c).spec.parent;
    if (!parent) {
        end_roll(r, RollPhase::Stopped, root_id, "the unit was removed");
        return false;
    }
    const Node &par = node(*parent);
    if (tree_shutting_down() || finished) {
        end_roll(r, RollPhase::Stopped, root_id, "vigild is shutting down");
        return false;
    }
    if (par.state != ChildState::Running) {
        end_roll(r, RollPhase::Stopped, *parent,
                 "supervisor " + par.spec.name + " is " + to_string(par.state));
        return false;
    }
    if (par.plan.phase != Phase::Idle) return false; // a sweep inside it: wait for it
    for (const auto &[c, base] : r.step) {
        const Node &n = node(c);
        if (n.gone || unit_of(c) != r.unit) continue; // removed: nothing to wait for
        const bool ready =
            n.state == ChildState::Running && n.ready && n.probe_ready && !n.main_exit;
        if (n.inc.value <= base.value || !ready) return false;
    }
    r.done += static_cast<std::uint32_t>(r.step.size());
    r.step.clear();
    return begin_step(r);
}

// The next up to max_unavailable instances not reached yet. One stopped by command (or removed)
// is passed over and counted done. No instance left: the roll is done.
bool Core::Impl::begin_step(Roll &r) {
    std::string names;
    while (r.next < r.order.size() && r.step.size() < r.max_unavailable) {
        const ChildId c = r.order[r.next++];
        const Node &n = node(c);
        if (n.gone || unit_of(c) != r.unit ||
            (n.goal == Goal::Down && n.state == ChildState::Stopped)) {
            ++r.done;
            continue;
        }
        r.step.emplace_back(c, n.inc);
        names += (names.empty() ? "" : ", ") + n.spec.name;
    }
    if (r.step.empty()) {
        end_roll(r, RollPhase::Done, r.order.empty() ? root_id : r.order.back(), "");
        return false;
    }
    ++r.steps;
    publish(r.step.front().first, RecordKind::Notice,
            "rolling restart of " + r.unit + ": step " + std::to_string(r.steps) + ", restarting " +
                names + " (" + progress(r) + " done)",
            Facts{record_cause(r.cause), std::nullopt, std::nullopt, std::nullopt, std::nullopt,
                  r.who});
    for (const auto &[c, base] : r.step)
        replace_instance(c, r.cause);
    return true;
}

// As a restart command: a running instance is stopped and starts again once down; one in
// backoff or stopped with goal up is started now (or by its supervisor's start sequence).
void Core::Impl::replace_instance(ChildId c, StopCause cause) {
    Node &n = node(c);
    n.held_down = false;
    n.goal = Goal::Up;
    switch (n.state) {
    case ChildState::Starting:
    case ChildState::Running:
        stop_child(c, cause);
        return;
    case ChildState::Stopping:
        if (n.stop_cause == StopCause::Manual) n.stop_cause = cause;
        return;
    case ChildState::Backoff:
    case ChildState::Stopped: {
        const ChildId p = *n.spec.parent;
        n.retrying = false;
        if (plan_starts(p, n.index)) {
            if (n.state == ChildState::Backoff) n.backoff_until = now;
            schedule(p);
        } else {
            start_child(c);
        }
        return;
    }
    }
}

void Core::Impl::end_roll(Roll &r, RollPhase phase, ChildId at, std::string reason) {
    r.phase = phase;
    r.step.clear();
    const bool member = at != root_id && valid(at) && !node(at).gone;
    r.at = member ? node(at).spec.name : "";
    r.reason = std::move(reason);
    std::string msg = "rolling restart of " + r.unit;
    if (phase == RollPhase::Done)
        msg += " done: " + progress(r);
    else
        msg += " stopped" + (r.at.empty() ? std::string() : " at " + r.at) + ": " + r.reason +
               " (" + progress(r) + " done)";
    publish(member ? at : root_id, RecordKind::Notice, std::move(msg),
            Facts{record_cause(r.cause), std::nullopt, std::nullopt, std::nullopt, std::nullopt,
                  r.who});
}

Roll *Core::Impl::roll_of(ChildId c) {
    auto it = rolls.find(unit_of(c));
    if (it == rolls.end()) return nullptr;
    const auto &o = it->second.order;
    return std::find(o.begin(), o.end(), c) == o.end() ? nullptr : &it->second;
}

bool Core::Impl::in_step(const Roll &r, ChildId c) const {
    return std::any_of(r.step.begin(), r.step.end(), [&](const auto &s) { return s.first == c; });
}

// An incarnation of `c` ended without being asked to. A new one of the current step: the roll
// stops there (the instance itself goes on under its restart policy).
void Core::Impl::roll_member_down(ChildId c, DownKind kind, const std::string &what) {
    if (kind == DownKind::Stopped) return;
    Roll *r = roll_of(c);
    if (!r || r->phase != RollPhase::Running) return;
    for (const auto &[m, base] : r->step)
        if (m == c && node(c).inc.value > base.value) {
            end_roll(*r, RollPhase::Stopped, c, what);
            return;
        }
}

// A stop command for an instance of a unit under a roll ends the roll.
void Core::Impl::roll_member_stopped(ChildId c, const std::string &who) {
    Roll *r = roll_of(c);
    if (!r || r->phase != RollPhase::Running) return;
    end_roll(*r, RollPhase::Stopped, c, "stop of " + node(c).spec.name + " requested by " + who);
}

std::optional<RollStatus> Core::Impl::roll_status(ChildId c) const {
    auto it = rolls.find(unit_of(c));
    if (it == rolls.end()) return std::nullopt;
    const Roll &r = it->second;
    if (std::find(r.order.begin(), r.order.end(), c) == r.order.end()) return std::nullopt;
    RollStatus s{r.id,
                 r.unit,
                 r.phase,
                 r.done,
                 static_cast<std::uint32_t>(r.order.size()),
                 r.max_unavailable,
                 in_step(r, c),
                 r.at,
                 r.reason};
    return s;
}

} // namespace vigil::core

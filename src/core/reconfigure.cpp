// reconfigure.cpp: reload (docs/otp-departures.md, item 49). The new TreeSpec has its own
// indices; kept nodes are mapped to their old ids, so ChildIds held by the shell, the control
// server and history stay valid. Nothing here waits: stops and starts are requested and the usual
// sequences do the rest, so a reload behaves exactly like the commands it stands for.
//
// The steps, in order: match the new tree to the old one (match), remember where running plans
// stand (PlanMark), mark what was removed, install the new specs (apply), relink parents and
// positions, put the plans back at the same children, then stop removed units, restart changed
// services and start added children.
#include <algorithm>

#include "impl.hpp"

namespace vigil::core {

namespace {

// Where a running plan stands, by child, to find it again after reordering.
struct PlanMark {
    ChildId sup;
    std::optional<ChildId> lo, start_from, cursor;
};

struct Reload {
    TreeSpec next;
    std::vector<std::optional<ChildId>> id_of; // new index -> id
    std::vector<bool> fresh;                   // new index -> a new child
    std::vector<std::size_t> order;            // new indices, breadth first from the root
    std::vector<PlanMark> marks;
    std::vector<ChildId> removed, restart, added;
};

bool params_changed(const ChildSpec &o, const ChildSpec &s) {
    return o.restart != s.restart || o.significant != s.significant ||
           o.stop.signal != s.stop.signal || o.stop.timeout != s.stop.timeout ||
           o.backoff.initial != s.backoff.initial || o.backoff.max != s.backoff.max ||
           o.backoff.factor != s.backoff.factor || o.backoff.jitter != s.backoff.jitter ||
           o.backoff.reset_after != s.backoff.reset_after || o.start_timeout != s.start_timeout ||
           o.strategy != s.strategy || o.parallel != s.parallel || o.intensity != s.intensity ||
           o.period != s.period || o.auto_shutdown != s.auto_shutdown || o.watchdog != s.watchdog ||
           o.readiness_probe != s.readiness_probe || o.stop.drain != s.stop.drain ||
           o.update != s.update || o.max_unavailable != s.max_unavailable ||
           (o.kind == Kind::Supervisor && o.fingerprint != s.fingerprint);
}

// The ids a new child may take: children removed by an earlier reload that are down and that the
// shell forgot (Core::forget), lowest first. Nothing refers to them any more but links from
// the children that replaced them (predecessor), which are cut here: the wait they stood for is
// over. Stale deadlines of theirs are told apart by their seq.
std::vector<ChildId> free_ids(std::vector<Node> &nodes) {
    std::vector<ChildId> out;
    for (std::size_t i = 1; i < nodes.size(); ++i)
        if (nodes[i].gone && nodes[i].forgotten && nodes[i].state == ChildState::Stopped)
            out.push_back(ChildId{static_cast<std::uint32_t>(i)});
    for (Node &n : nodes)
        if (n.predecessor && std::binary_search(out.begin(), out.end(), *n.predecessor))
            n.predecessor.reset();
    return out;
}

// A fresh node for a new child: a free id when there is one, else a new one.
ChildId new_node(std::vector<Node> &nodes, std::vector<ChildId> &free, std::size_t &next_free,
                 std::vector<bool> &claimed, TimePoint now) {
    ChildId id{static_cast<std::uint32_t>(nodes.size())};
    if (next_free < free.size()) {
        id = free[next_free++];
        nodes[id.value] = Node{};
        claimed[id.value] = true;
    } else {
        nodes.emplace_back();
        claimed.push_back(true);
    }
    nodes[id.value].since = now; // "stopped since it was added", not since boot
    return id;
}

// Maps new indices to ids, breadth first from the new root so a parent is matched before its
// children. A child is kept when a live child of the same name, kind and (kept) parent exists;
// anything else is new. A unit that moved to another supervisor is therefore removed and added
// again (vigil.unit(5), docs/otp-departures.md).
void match(std::vector<Node> &nodes, const std::map<std::string, ChildId, std::less<>> &by_name,
           TimePoint now, Reload &r, std::vector<bool> &claimed) {
    std::vector<ChildId> free = free_ids(nodes);
    std::size_t next_free = 0;
    auto &nn = r.next.nodes;
    const std::size_t m = nn.size();
    r.id_of.assign(m, std::nullopt);
    r.fresh.assign(m, false);
    r.id_of[0] = root_id;
    claimed[0] = true;
    r.order = {0};
    std::vector<bool> seen(m, false);
    seen[0] = true;
    for (std::size_t qi = 0; qi < r.order.size(); ++qi) {
        const std::size_t i = r.order[qi];
        for (ChildId k : nn[i].children) {
            if (k.value >= m || seen[k.value] || k.value == 0) continue;
            seen[k.value] = true;
            r.order.push_back(k.value);
            auto it = by_name.find(nn[k.value].name);
            if (it != by_name.end() && !claimed[it->second.value] && !r.fresh[i]) {
                const Node &old = nodes[it->second.value];
                if (old.spec.kind == nn[k.value].kind && old.spec.parent == r.id_of[i]) {
                    r.id_of[k.value] = it->second;
                    claimed[it->second.value] = true;
                    continue;
                }
            }
            r.fresh[k.value] = true;
            r.id_of[k.value] = new_node(nodes, free, next_free, claimed, now);
        }
    }
}

std::vector<ChildId> map_ids(const std::vector<ChildId> &ids, const Reload &r) {
    std::vector<ChildId> out;
    for (ChildId k : ids)
        if (k.value < r.id_of.size() && k.value != 0 && r.id_of[k.value])
            out.push_back(*r.id_of[k.value]);
    return out;
}

// Remembers where each running plan stands, by child.
void mark_plans(const std::vector<Node> &nodes, Reload &r) {
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        const Node &n = nodes[i];
        if (n.spec.kind != Kind::Supervisor || n.plan.phase == Phase::Idle || n.gone) continue;
        auto at = [&](std::size_t idx) -> std::optional<ChildId> {
            if (idx < n.spec.children.size()) return n.spec.children[idx];
            return std::nullopt;
        };
        r.marks.push_back({ChildId{static_cast<std::uint32_t>(i)}, at(n.plan.lo),
                           at(n.plan.start_from), at(n.plan.cursor)});
    }
}

// Removed: every live node that was not claimed. A new node of a removed one's name waits until
// the old one is down (predecessor / successor), whether this reload removed it or an earlier
// one did and it is still going down.
void mark_removed(Core::Impl &m, Reload &r, const std::vector<bool> &claimed,
                  ReconfigureResult &res) {
    std::map<std::string_view, ChildId> removed_by_name;
    // The one to wait for: one still going down, if any.
    auto remember = [&](std::string_view name, ChildId id) {
        auto [it, added] = removed_by_name.emplace(name, id);
        if (!added && m.node(it->second).state == ChildState::Stopped) it->second = id;
    };
    for (std::size_t i = 1; i < claimed.size(); ++i) {
        Node &n = m.nodes[i];
        if (n.gone && !claimed[i] && n.state != ChildState::Stopped && !n.spec.name.empty())
            remember(n.spec.name, ChildId{static_cast<std::uint32_t>(i)});
        if (claimed[i] || n.gone || n.spec.name.empty()) continue;
        n.gone = true;
        n.goal = Goal::Down;
        const ChildId id{static_cast<std::uint32_t>(i)};
        r.removed.push_back(id);
        res.removed.push_back(n.spec.name);
        remember(n.spec.name, id);
        auto it = m.by_name.find(n.spec.name);
        if (it != m.by_name.end() && it->second == id) m.by_name.erase(it);
    }
    for (std::size_t i : r.order) {
        if (!r.fresh[i]) continue;
        auto it = removed_by_name.find(r.next.nodes[i].name);
        if (it == removed_by_name.end()) continue;
        m.node(*r.id_of[i]).predecessor = it->second;
        m.node(it->second).successor = *r.id_of[i];
    }
}

// Installs the new specs: fresh nodes get theirs, kept ones are compared first (restart or
// parameters updated in place).
void apply_specs(Core::Impl &m, Reload &r, ReconfigureResult &res) {
    for (std::size_t i : r.order) {
        const ChildId id = *r.id_of[i];
        ChildSpec s = std::move(r.next.nodes[i]);
        s.children = map_ids(s.children, r);
        s.after = map_ids(s.after, r);
        s.parent = i == 0 ? std::nullopt : m.node(id).spec.parent;
        Node &n = m.node(id);
        if (r.fresh[i]) {
            n.spec = std::move(s);
            n.since = m.now;
            m.by_name[n.spec.name] = id;
            res.added.push_back(n.spec.name);
            r.added.push_back(id);
            continue;
        }
        const bool needs_restart =
            i != 0 && n.spec.kind == Kind::Service &&
            (n.spec.fingerprint != s.fingerprint || n.spec.wait_ready != s.wait_ready);
        const bool params = params_changed(n.spec, s);
        n.spec = std::move(s);
        if (needs_restart) {
            r.restart.push_back(id);
            res.restarted.push_back(n.spec.name);
        } else if (params) {
            res.updated.push_back(n.spec.name);
            m.publish(id, RecordKind::Reconfigured, "parameters updated by reload",
                      Facts{Cause::Reload});
        }
    }
}

// Parent links and positions of the new tree, then the plans back at the same children.
void relink(Core::Impl &m, const Reload &r) {
    for (std::size_t i : r.order) {
        const ChildId id = *r.id_of[i];
        const auto &kids = m.node(id).spec.children;
        for (std::size_t j = 0; j < kids.size(); ++j) {
            m.node(kids[j]).spec.parent = id;
            m.node(kids[j]).index = j;
        }
    }
    for (const PlanMark &mk : r.marks) {
        Node &n = m.node(mk.sup);
        const auto &kids = n.spec.children;
        auto pos = [&](std::optional<ChildId> c) -> std::size_t {
            if (!c) return kids.size();
            auto it = std::find(kids.begin(), kids.end(), *c);
            return it == kids.end() ? 0 : static_cast<std::size_t>(it - kids.begin());
        };
        n.plan.lo = std::min(pos(mk.lo), kids.empty() ? 0 : kids.size() - 1);
        n.plan.start_from = pos(mk.start_from);
        n.plan.cursor =
            n.plan.phase == Phase::Stopping ? (kids.empty() ? 0 : kids.size() - 1) : pos(mk.cursor);
        m.schedule(mk.sup);
    }
}

// Stops removed units (a removed supervisor stops its removed subtree itself), restarts changed
// services in id order (restart_changed) (one already stopping: a stop command keeps it down, item
// 50; any other cause starts it again anyway, with the new spec), and starts added children whose
// parent is up (a new supervisor starts its own children). Restarted services of units with update
// "rolling" that run are rolled (one roll a unit; the instances of a roll reload ends come first,
// so it never has more of them down at once); the others stop now. A roll under way of a unit that
// restarts at once ends.
void restart_changed(Core::Impl &m, Reload &r, ReconfigureResult &res) {
    std::sort(r.restart.begin(), r.restart.end());
    std::map<std::string, std::vector<ChildId>> rolled;
    for (ChildId c : r.restart) {
        const ChildState st = m.node(c).state;
        const bool up = st == ChildState::Starting || st == ChildState::Running;
        // A roll needs its supervisor running (advance_roll); one that is starting or
        // stopping restarts the unit as before.
        const Node &par = m.node(*m.node(c).spec.parent);
        const bool roll = up && m.node(c).spec.update == Update::Rolling &&
                          par.state == ChildState::Running && !par.plan.terminal;
        m.publish(c, RecordKind::Reconfigured,
                  roll ? "unit changed; rolling restart" : "unit changed; restarting",
                  Facts{Cause::Reload});
        if (roll) {
            rolled[m.unit_of(c)].push_back(c);
            continue;
        }
        if (Roll *running = m.roll_of(c); running && running->phase == RollPhase::Running)
            m.end_roll(*running, RollPhase::Stopped, c, "reload restarts the unit at once");
        if (up) m.stop_child(c, StopCause::Reload);
    }
    for (auto &[unit, kids] : rolled) {
        std::vector<ChildId> order;
        auto it = m.rolls.find(unit);
        if (it != m.rolls.end() && it->second.phase == RollPhase::Running) {
            for (const auto &[c, base] : it->second.step)
                if (!m.node(c).gone && m.unit_of(c) == unit) order.push_back(c);
            m.end_roll(it->second, RollPhase::Stopped, root_id, "reload changed the unit again");
        }
        std::stable_sort(kids.begin(), kids.end(), [&](ChildId a, ChildId b) {
            return m.node(a).spec.instance < m.node(b).spec.instance;
        });
        for (ChildId c : kids)
            if (std::find(order.begin(), order.end(), c) == order.end()) order.push_back(c);
        const int max = m.node(kids.front()).spec.max_unavailable;
        m.begin_roll(unit, std::move(order), static_cast<std::uint32_t>(std::max(1, max)),
                     StopCause::Reload, "reload");
        res.rolling.push_back(unit);
    }
}

// Rolls of units that reload removed are forgotten.
void forget_rolls(Core::Impl &m) {
    for (auto it = m.rolls.begin(); it != m.rolls.end();) {
        if (!m.instances_of(it->first).empty()) {
            ++it;
            continue;
        }
        if (it->second.phase == RollPhase::Running)
            m.end_roll(it->second, RollPhase::Stopped, root_id, "the unit was removed");
        it = m.rolls.erase(it);
    }
}

void act_on_changes(Core::Impl &m, Reload &r, ReconfigureResult &res) {
    for (ChildId id : r.removed) {
        const Node &n = m.node(id);
        if (n.spec.parent && m.node(*n.spec.parent).gone) continue;
        if (m.stop_child(id, StopCause::Removed))
            m.publish(id, RecordKind::Removed, "removed by reload", Facts{Cause::Removed});
    }
    restart_changed(m, r, res);
    for (ChildId a : r.added) {
        m.publish(a, RecordKind::Reconfigured, "added by reload", Facts{Cause::Reload});
        m.node(a).goal = Goal::Up;
        const ChildId p = *m.node(a).spec.parent;
        const Node &par = m.node(p);
        if (par.gone || std::find(r.added.begin(), r.added.end(), p) != r.added.end()) continue;
        if (par.state == ChildState::Starting) m.node(a).joined_start = true;
        if (par.state == ChildState::Running || par.state == ChildState::Starting)
            m.request_start(p, m.node(a).index);
    }
}

} // namespace

ReconfigureResult Core::Impl::reconfigure(TreeSpec next) {
    ReconfigureResult res;
    res.errors = validate(next);
    if (!res.errors.empty()) return res; // keep running the old specification
    Reload r{std::move(next), {}, {}, {}, {}, {}, {}, {}};
    std::vector<bool> claimed(nodes.size(), false);
    mark_plans(nodes, r);
    match(nodes, by_name, now, r, claimed);
    mark_removed(*this, r, claimed, res);
    apply_specs(*this, r, res);
    relink(*this, r);
    act_on_changes(*this, r, res);
    forget_rolls(*this);
    return res;
}

} // namespace vigil::core

// The parts of vigil/ctl/shapes.hpp that query a core::Core (and so link vigil_core).
#include "vigil/ctl/shapes.hpp"

#include "vigil/core/names.hpp"

#include <algorithm>
#include <charconv>
#include <optional>

namespace vigil::ctl {

namespace {

struct Lineage {
    std::string_view parent, held_down_by; // views into the specs, which outlive the caller
};

Lineage lineage(const core::Core &core, const core::ChildStatus &s) {
    Lineage l;
    if (s.parent) l.parent = core.spec(*s.parent).name;
    // The top-most ancestor whose goal is down. Bounded by the tree's size, so a malformed
    // parent chain cannot loop.
    std::optional<ChildId> up = s.parent;
    for (std::size_t hops = 0; up && hops < core.size(); ++hops) {
        core::ChildStatus a = core.status(*up);
        if (a.goal == core::Goal::Down) l.held_down_by = core.spec(*up).name;
        up = a.parent;
    }
    return l;
}

template <class T> void append_number(std::string &out, T v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

// The keys of one object, written in the order given: `{"key":` for the first, `,"key":` after.
// With `brief`, a key whose value is its default is left out (skip()).
struct Keys {
    std::string &out;
    bool brief = false;
    bool first = true;
    void key(std::string_view k) {
        out += first ? "{\"" : ",\"";
        first = false;
        out += k;
        out += "\":";
    }
    // Whether to write a key whose value is `at_default` now: always, unless brief.
    bool want(bool at_default) const { return !brief || !at_default; }
    void end() { out += first ? "{}" : "}"; }
};

template <class T> void number_or_null(std::string &out, const std::optional<T> &v) {
    if (v)
        append_number(out, *v);
    else
        out += "null";
}

// `[a,b,...]`, each item written by `item`.
template <class Range, class F> void append_array(std::string &out, const Range &items, F item) {
    out += '[';
    bool first = true;
    for (const auto &v : items) {
        if (!first) out += ',';
        first = false;
        item(v);
    }
    out += ']';
}

void append_bool(std::string &out, bool b) {
    out += b ? "true" : "false";
}

void append_exit(std::string &out, const core::ExitStatus &e) {
    if (e.signaled) {
        out += "{\"signal\":";
        append_json_string(out, core::signal_name(e.code));
        out += ",\"signo\":";
        append_number(out, e.code);
        out += '}';
        return;
    }
    out += "{\"code\":";
    append_number(out, e.code);
    out += '}';
}

} // namespace

Json status_json(const core::Core &core, ChildId id, TimePoint now) {
    core::ChildStatus s = core.status(id);
    const Lineage l = lineage(core, s);
    return status_json(s, now, l.parent, l.held_down_by);
}

// Every key in sorted order (as nlohmann writes them). `brief` (a table's request): only the
// keys a table reads, each only when it is not at its default (null, false, "", []);
// vigil/ctl/protocol.hpp lists them.
void append_status(std::string &out, const core::Core &core, ChildId id, TimePoint now,
                   const StatusExtras &x, bool brief) {
    const core::ChildStatus s = core.status(id);
    const Lineage l = lineage(core, s);
    auto ms = [](Duration d) { return std::max<std::int64_t>(0, d.count()); };
    Keys k{out, brief};
    const bool backoff = s.state == core::ChildState::Backoff && s.backoff_until;
    if (k.want(!backoff)) {
        k.key("backoff_ms");
        number_or_null(out, backoff ? std::optional<std::int64_t>(ms(*s.backoff_until - now))
                                    : std::nullopt);
    }
    if (k.want(!s.drain_until)) {
        k.key("drain_ms");
        number_or_null(out, s.drain_until ? std::optional<std::int64_t>(ms(*s.drain_until - now))
                                          : std::nullopt);
    }
    k.key("effective_goal");
    append_json_string(out, s.goal == core::Goal::Up && l.held_down_by.empty() ? "up" : "down");
    if (k.want(!s.exiting)) {
        k.key("exiting");
        append_bool(out, s.exiting);
    }
    if (!brief) {
        k.key("forward_dropped");
        append_number(out, x.forward_dropped);
    }
    k.key("goal");
    append_json_string(out, s.goal == core::Goal::Up ? "up" : "down");
    if (k.want(l.held_down_by.empty())) {
        k.key("held_down_by");
        if (l.held_down_by.empty())
            out += "null";
        else
            append_json_string(out, l.held_down_by);
    }
    if (!brief) {
        k.key("incarnation");
        append_number(out, s.incarnation.value);
    }
    k.key("kind");
    append_json_string(out, kind_name(s.kind));
    k.key("last_cause");
    append_json_string(out, core::to_string(s.last_cause));
    if (k.want(!s.last_exit)) {
        k.key("last_exit");
        if (s.last_exit)
            append_exit(out, *s.last_exit);
        else
            out += "null";
    }
    if (k.want(s.last_reason.empty())) {
        k.key("last_reason");
        append_json_string(out, s.last_reason);
    }
    if (k.want(s.left_behind.empty())) {
        k.key("left_behind");
        append_array(out, s.left_behind, [&](Pid p) { append_number(out, p.value); });
    }
    if (!brief) {
        k.key("log_lines_failed");
        append_number(out, x.log_lines_failed);
    }
    k.key("name");
    append_json_string(out, s.name);
    if (!brief) {
        k.key("parent");
        if (l.parent.empty())
            out += "null";
        else
            append_json_string(out, l.parent);
    }
    if (k.want(!s.main_pid)) {
        k.key("pid");
        number_or_null(out,
                       s.main_pid ? std::optional<std::int32_t>(s.main_pid->value) : std::nullopt);
    }
    if (!brief) {
        k.key("probe_failures");
        append_number(out, x.probe_failures);
    }
    if (k.want(!s.ready)) {
        k.key("ready");
        append_bool(out, s.ready);
    }
    if (k.want(!s.removed)) {
        k.key("removed");
        append_bool(out, s.removed);
    }
    k.key("restarts");
    append_number(out, s.restarts);
    if (k.want(!s.roll)) {
        k.key("roll");
        if (s.roll)
            out += encode_item(roll_json(*s.roll));
        else
            out += "null";
    }
    k.key("since_ms");
    append_number(out, ms(now - s.since));
    if (!brief) {
        k.key("spawned_pid");
        number_or_null(out, s.pid ? std::optional<std::int32_t>(s.pid->value) : std::nullopt);
    }
    k.key("state");
    append_json_string(out, s.exited ? "exited" : state_name(s.state));
    if (k.want(s.status_text.empty())) {
        k.key("status_text");
        append_json_string(out, s.status_text);
    }
    if (k.want(x.waiting_for.empty())) {
        k.key("waiting_for");
        append_array(out, x.waiting_for,
                     [&](const std::string &name) { append_json_string(out, name); });
    }
    if (!brief) {
        k.key("watchdog_ms");
        number_or_null(out, s.watchdog ? std::optional<std::int64_t>(s.watchdog->count())
                                       : std::nullopt);
    }
    k.end();
}

Json status_result_json(const core::Core &core, std::span<const ChildId> ids, TimePoint now) {
    Json units = Json::array();
    for (ChildId id : ids)
        units.push_back(status_json(core, id, now));
    return Json{{"units", std::move(units)}};
}

Json tree_json(const core::Core &core, TimePoint now) {
    // Built without recursion (trees may be deep): collect the depth-first order first, then
    // attach every node to its parent from the leaves up.
    std::vector<ChildId> order;
    std::vector<ChildId> stack{root_id};
    std::vector<char> seen(core.size(), 0);
    while (!stack.empty()) {
        ChildId id = stack.back();
        stack.pop_back();
        if (id.value >= seen.size() || seen[id.value]) continue;
        seen[id.value] = 1;
        if (id != root_id && core.status(id).removed) continue;
        order.push_back(id);
        const auto &ch = core.spec(id).children;
        for (auto it = ch.rbegin(); it != ch.rend(); ++it)
            stack.push_back(*it);
    }
    std::vector<Json> node(core.size());
    std::vector<char> included(core.size(), 0);
    for (ChildId id : order) {
        node[id.value] = status_json(core, id, now);
        node[id.value]["children"] = Json::array();
        included[id.value] = 1;
    }
    // Parents come before their children in `order`: walking it backwards, every node's
    // subtree is complete (its children appended last-first, hence the reverse) before the
    // node moves into its parent.
    auto finish = [](Json &n) {
        auto &arr = n["children"];
        std::reverse(arr.begin(), arr.end());
    };
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
        if (*it == root_id) continue;
        auto parent = core.status(*it).parent;
        if (!parent || !included[parent->value]) continue;
        finish(node[it->value]);
        node[parent->value]["children"].push_back(std::move(node[it->value]));
    }
    finish(node[root_id.value]);
    return Json{{"root", std::move(node[root_id.value])}};
}

namespace {

// One exact name, the common request (`vigilctl status web`): looked up by name, and only its
// subtree is walked, so the answer does not cost a pass over every unit (a table of 1,000 or
// 10,000 nodes, each with a Core::status call, was most of vigild's own work for a status
// query). Gives exactly what the table walk gives for the same pattern.
// Nothing when no child has that name: the caller then walks the table, where the name may
// still be an instanced unit's.
std::optional<std::vector<ChildId>> resolve_name(const core::Core &core, const std::string &name,
                                                 Expand expand) {
    std::optional<ChildId> id = core.find(name);
    if (!id || core.status(*id).removed) return std::nullopt;
    // The table walk starts at the root and never enters a removed node: a unit under one
    // is matched (no error) but never reached.
    std::optional<ChildId> up = core.status(*id).parent;
    for (std::size_t hops = 0; up && hops < core.size(); ++hops) {
        core::ChildStatus a = core.status(*up);
        if (a.removed) return std::vector<ChildId>{};
        up = a.parent;
    }
    std::vector<ChildId> out;
    std::vector<ChildId> stack{*id};
    // Depth first in start order, bounded like the table walk's `seen` (a malformed tree
    // cannot loop).
    for (std::size_t budget = core.size(); !stack.empty() && budget > 0; --budget) {
        ChildId c = stack.back();
        stack.pop_back();
        core::ChildStatus s = core.status(c);
        if (s.removed) continue;
        if (expand != Expand::Services || s.kind == core::Kind::Service) out.push_back(c);
        if (expand == Expand::Named) break; // the supervisor's command covers its children
        const auto &ch = core.spec(c).children;
        for (auto it = ch.rbegin(); it != ch.rend(); ++it)
            stack.push_back(*it);
    }
    return out;
}

} // namespace

std::vector<ChildId> resolve_targets(const core::Core &core,
                                     const std::vector<std::string> &patterns, std::string *error,
                                     Expand expand, const UnitOf &unit_of, std::string *unmatched) {
    if (patterns.size() == 1 && !is_glob(patterns[0]))
        if (auto ids = resolve_name(core, patterns[0], expand)) return std::move(*ids);
    std::vector<TargetNode> nodes(core.size());
    for (std::uint32_t i = 0; i < nodes.size(); ++i) {
        const core::ChildSpec &spec = core.spec(ChildId{i});
        nodes[i].name = spec.name; // the spec outlives this call
        nodes[i].kind = spec.kind;
        nodes[i].children = spec.children;
        nodes[i].removed = core.status(ChildId{i}).removed;
        if (unit_of) nodes[i].unit = unit_of(ChildId{i});
    }
    return resolve_targets(nodes, patterns, expand, error, unmatched);
}

} // namespace vigil::ctl

// JSON shapes and unit patterns that need no Core object (see vigil/ctl/shapes.hpp).
// Functions that query a core::Core live in shapes_core.cpp, so this file links without
// vigil_core.
#include "vigil/ctl/shapes.hpp"

#include "vigil/core/names.hpp"

#include <algorithm>
#include <fnmatch.h>

namespace vigil::ctl {

const char *state_name(core::ChildState s) noexcept {
    switch (s) {
    case core::ChildState::Stopped:
        return "stopped";
    case core::ChildState::Starting:
        return "starting";
    case core::ChildState::Running:
        return "running";
    case core::ChildState::Stopping:
        return "stopping";
    case core::ChildState::Backoff:
        return "backoff";
    }
    return "unknown";
}

const char *kind_name(core::Kind k) noexcept {
    switch (k) {
    case core::Kind::Service:
        return "service";
    case core::Kind::Supervisor:
        return "supervisor";
    }
    return "unknown";
}

const char *record_kind_name(core::RecordKind k) noexcept {
    using K = core::RecordKind;
    switch (k) {
    case K::Starting:
        return "starting";
    case K::Started:
        return "started";
    case K::Ready:
        return "ready";
    case K::NotReady:
        return "not_ready";
    case K::Exited:
        return "exited";
    case K::Stopping:
        return "stopping";
    case K::Killed:
        return "killed";
    case K::Stopped:
        return "stopped";
    case K::SpawnFailed:
        return "spawn_failed";
    case K::StartFailed:
        return "start_failed";
    case K::Unhealthy:
        return "unhealthy";
    case K::Restarting:
        return "restarting";
    case K::GaveUp:
        return "gave_up";
    case K::AutoShutdown:
        return "auto_shutdown";
    case K::Command:
        return "command";
    case K::Reconfigured:
        return "reconfigured";
    case K::Removed:
        return "removed";
    case K::Notice:
        return "notice";
    case K::Exit:
        return "exit";
    }
    return "unknown";
}

const char *outcome_name(core::CommandOutcome o) noexcept {
    using O = core::CommandOutcome;
    switch (o) {
    case O::Ok:
        return "ok";
    case O::AlreadyRunning:
        return "already_running";
    case O::AlreadyStopped:
        return "already_stopped";
    case O::NotFound:
        return "not_found";
    case O::NotRunning:
        return "not_running";
    case O::ShuttingDown:
        return "shutting_down";
    }
    return "unknown";
}

Json exit_json(const core::ExitStatus &e) {
    if (e.signaled) return Json{{"signal", core::signal_name(e.code)}, {"signo", e.code}};
    return Json{{"code", e.code}};
}

Json status_json(const core::ChildStatus &s, TimePoint now, std::string_view parent,
                 std::string_view held_down_by) {
    auto ms = [](Duration d) { return std::max<std::int64_t>(0, d.count()); };
    Json j = Json::object();
    j["name"] = s.name;
    j["kind"] = kind_name(s.kind);
    j["parent"] = parent.empty() ? Json(nullptr) : Json(parent);
    // An ended service that stays in view (core::ChildStatus::exited) has its own state name.
    j["state"] = s.exited ? "exited" : state_name(s.state);
    j["goal"] = s.goal == core::Goal::Up ? "up" : "down";
    j["pid"] = s.main_pid ? Json(s.main_pid->value) : Json(nullptr);
    j["spawned_pid"] = s.pid ? Json(s.pid->value) : Json(nullptr);
    j["incarnation"] = s.incarnation.value;
    j["since_ms"] = ms(now - s.since);
    j["restarts"] = s.restarts;
    j["last_exit"] = s.last_exit ? exit_json(*s.last_exit) : Json(nullptr);
    j["last_cause"] = core::to_string(s.last_cause);
    j["last_reason"] = s.last_reason;
    j["backoff_ms"] = s.state == core::ChildState::Backoff && s.backoff_until
                          ? Json(ms(*s.backoff_until - now))
                          : Json(nullptr);
    j["ready"] = s.ready;
    j["exiting"] = s.exiting;
    j["status_text"] = s.status_text;
    j["watchdog_ms"] = s.watchdog ? Json(s.watchdog->count()) : Json(nullptr);
    j["removed"] = s.removed;
    // Where the child is heading once its ancestors are counted.
    j["effective_goal"] = s.goal == core::Goal::Up && held_down_by.empty() ? "up" : "down";
    j["held_down_by"] = held_down_by.empty() ? Json(nullptr) : Json(held_down_by);
    Json left = Json::array();
    for (Pid p : s.left_behind)
        left.push_back(p.value);
    j["left_behind"] = std::move(left);
    j["drain_ms"] = s.drain_until ? Json(ms(*s.drain_until - now)) : Json(nullptr);
    j["roll"] = s.roll ? roll_json(*s.roll) : Json(nullptr);
    return j;
}

// Printable ASCII without a quote or a backslash (names, states, most reasons) is written as
// it is; anything else goes through nlohmann's serializer, so escapes and the U+FFFD
// replacement of invalid UTF-8 are exactly encode_item's.
void append_json_string(std::string &out, std::string_view s) {
    const bool plain = std::all_of(
        s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; });
    if (!plain) {
        out += encode_item(Json(s));
        return;
    }
    out += '"';
    out += s;
    out += '"';
}

Json roll_json(const core::RollStatus &r) {
    return Json{{"id", r.id},
                {"unit", r.unit},
                {"state", core::to_string(r.phase)},
                {"done", r.done},
                {"total", r.total},
                {"max_unavailable", r.max_unavailable},
                {"in_step", r.in_step},
                {"at", r.at.empty() ? Json(nullptr) : Json(r.at)},
                {"reason", r.reason}};
}

Json record_json(const core::Record &r) {
    Json j{{"at_ms", r.at.time_since_epoch().count()},
           {"unit", r.unit},
           {"child", r.child.value},
           {"kind", record_kind_name(r.kind)},
           {"message", r.message},
           {"cause", core::to_string(r.cause)}};
    if (r.pid) j["pid"] = r.pid->value;
    if (r.incarnation) j["incarnation"] = r.incarnation->value;
    if (r.exit) j["exit"] = exit_json(*r.exit);
    if (r.signal) j["signal"] = core::signal_name(*r.signal);
    if (r.delay) j["delay_ms"] = r.delay->count();
    if (!r.subject.empty()) j["subject"] = r.subject;
    return j;
}

Json record_json(const core::Record &r, TimePoint now, std::int64_t wall_now_ms) {
    Json j = record_json(r);
    j["time"] = wall_now_ms - (now - r.at).count();
    return j;
}

Json command_result_json(std::string_view unit, const core::CommandResult &r) {
    return Json{{"unit", unit}, {"outcome", outcome_name(r.outcome)}, {"message", r.message}};
}

Json reload_json(const core::ReconfigureResult &r, const std::vector<std::string> &diagnostics) {
    return Json{{"added", r.added},     {"removed", r.removed}, {"restarted", r.restarted},
                {"updated", r.updated}, {"rolling", r.rolling}, {"diagnostics", diagnostics}};
}

bool is_glob(std::string_view pattern) noexcept {
    return pattern.find_first_of("*?[") != std::string_view::npos;
}

bool glob_match(std::string_view pattern, std::string_view name) {
    std::string p(pattern), n(name); // fnmatch wants NUL-terminated strings
    return fnmatch(p.c_str(), n.c_str(), 0) == 0;
}

std::vector<ChildId> resolve_targets(std::span<const TargetNode> nodes,
                                     const std::vector<std::string> &patterns, Expand expand,
                                     std::string *error, std::string *unmatched) {
    std::vector<char> selected(nodes.size(), 0);
    bool everything = patterns.empty();
    if (everything) {
        // Every child: the root's subtree without the root itself.
        if (nodes.empty()) return {};
        selected[root_id.value] = 1;
        if (expand == Expand::Named) expand = Expand::Subtree;
    }
    for (const auto &p : patterns) {
        bool glob = is_glob(p);
        bool any = false;
        for (std::size_t i = 0; i < nodes.size(); ++i) {
            if (nodes[i].removed) continue;
            const TargetNode &n = nodes[i];
            bool hit = glob ? i != root_id.value && (glob_match(p, n.name) ||
                                                     (!n.unit.empty() && glob_match(p, n.unit)))
                            : n.name == p || n.unit == p;
            if (hit) {
                selected[i] = 1;
                any = true;
            }
        }
        if (!any) {
            if (error) *error = glob ? "no unit matches '" + p + "'" : "no unit named '" + p + "'";
            if (unmatched) *unmatched = p;
            return {};
        }
    }

    // Depth-first walk in start order; `covered` says an ancestor was selected. An explicit
    // stack (not recursion) because trees of 10k children may be deep.
    std::vector<ChildId> out;
    struct Frame {
        std::uint32_t id;
        bool covered;
    };
    std::vector<Frame> stack{{root_id.value, false}};
    std::vector<char> seen(nodes.size(), 0);
    while (!stack.empty()) {
        Frame f = stack.back();
        stack.pop_back();
        if (f.id >= nodes.size() || seen[f.id] || nodes[f.id].removed) continue;
        seen[f.id] = 1; // guards against a malformed table with cycles
        const TargetNode &n = nodes[f.id];
        bool sel = selected[f.id] != 0;
        bool take = false;
        switch (expand) {
        case Expand::Named:
            take = sel && !f.covered;
            break;
        case Expand::Subtree:
            take = sel || f.covered;
            break;
        case Expand::Services:
            take = (sel || f.covered) && n.kind == core::Kind::Service;
            break;
        }
        if (take && !(everything && f.id == root_id.value)) out.push_back(ChildId{f.id});
        for (auto it = n.children.rbegin(); it != n.children.rend(); ++it)
            stack.push_back({it->value, f.covered || sel});
    }
    return out;
}

} // namespace vigil::ctl

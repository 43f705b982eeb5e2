// src/cli/wait.cpp: the rules of src/cli/wait.hpp.
#include "wait.hpp"

#include <algorithm>
#include <string_view>
#include <unordered_map>

#include "json_read.hpp"
#include "render.hpp"

namespace vigil::cli {

namespace {

// A count from a status object; -1 when absent or not a non-negative integer.
std::int64_t count(const Json &j, const char *key) {
    if (!j.is_object()) return -1;
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) return -1;
    if (it->is_number_unsigned())
        return it->get<std::uint64_t>() > INT64_MAX ? -1 : it->get<std::int64_t>();
    std::int64_t n = it->get<std::int64_t>();
    return n < 0 ? -1 : n;
}

bool gone(const Json &u) {
    return !u.is_object() || flag(u, "removed");
}

const char *going(Want w) {
    return w == Want::Down ? "stopping" : w == Want::NewUp ? "restarting" : "starting";
}

// Why the unit's last run ended or did not start, in vigild's words when it gave them.
std::string reason(const Json &u) {
    std::string r = one_line(str(u, "last_reason", ""));
    if (!r.empty()) return r;
    r = one_line(str(u, "last_cause", ""));
    for (char &c : r)
        if (c == '_') c = ' ';
    if (!r.empty() && r != "none") return r;
    return "state " + one_line(str(u, "state", ""));
}

// The last run ended on its own with status 0 (a task that was done).
bool ended_well(const Json &u) {
    if (str(u, "last_cause", "") != "exited") return false;
    const Json &e = u.is_object() && u.contains("last_exit") ? u["last_exit"] : Json();
    return e.is_object() && !e.contains("signal") && count(e, "code") == 0;
}

// Stopped, or "exited": a temporary or transient service that ended by itself, in view.
bool is_down(const std::string &state) {
    return state == "stopped" || state == "exited";
}

// Where a unit heading up is, for a timeout's message: "state starting, waiting for readiness".
std::string where_up(const Json &u, bool old_run) {
    std::string state = one_line(str(u, "state", ""));
    std::string what;
    if (is_down(state)) {
        std::string names;
        if (auto it = u.find("waiting_for"); it != u.end() && it->is_array())
            for (const auto &n : *it)
                if (n.is_string())
                    names += (names.empty() ? "" : ", ") + one_line(n.get<std::string>());
        what = names.empty() ? "not started yet" : "waiting for " + names;
    } else if (state == "starting") {
        what = str(u, "kind", "") == "supervisor" ? "starting its children"
               : u.value("pid", Json()).is_null() ? "being spawned"
                                                  : "waiting for readiness";
    } else if (state == "running") {
        what = old_run              ? "the old run has not been stopped yet"
               : flag(u, "exiting") ? "its main process ended"
                                    : "readiness probe not passing";
    } else if (state == "stopping") {
        what = "the old run is ending";
    } else if (state == "backoff") {
        std::int64_t ms = count(u, "backoff_ms");
        what = ms < 0 ? "restart pending" : "restart in " + format_duration(ms);
    }
    return "state " + state + (what.empty() ? "" : ", " + what);
}

Judgement judge_down(const WaitTarget &t, const Json &now) {
    std::string state = str(now, "state", "");
    if (is_down(state) && !flag(now, "exiting")) return {Verdict::Done, state, ""};
    std::int64_t base = count(t.before, "incarnation");
    if (base >= 0 && count(now, "incarnation") > base && state != "stopping")
        return {Verdict::Failed, "started again",
                "a new run began before it stopped (another command started it)"};
    std::string detail = "state " + one_line(state);
    if (state == "stopping")
        detail += flag(now, "exiting") ? ", waiting for its output and leftover processes"
                                       : ", waiting for it to end";
    return {Verdict::Waiting, "stopping", detail};
}

// A unit that is down against the command (effective goal "down"): why it will not come up.
Judgement held_down(const Json &now, bool ended) {
    std::string by = one_line(str(now, "held_down_by", ""));
    if (!by.empty() && by != one_line(str(now, "name", "")))
        return {Verdict::Failed, "not started",
                "its supervisor " + by + " is stopped; start it: vigilctl start " + by};
    if (ended) return {Verdict::Failed, "failed to start", reason(now)};
    return {Verdict::Failed, "not started", "its goal is down: another command stopped it"};
}

Judgement judge_up(const WaitTarget &t, const Json &now) {
    const std::string state = str(now, "state", "");
    const bool supervisor = str(now, "kind", "") == "supervisor";
    const std::int64_t inc = count(now, "incarnation");
    const std::int64_t base = count(t.before, "incarnation");
    const bool new_run = base < 0 || inc > base;
    const bool old_run = t.want == Want::NewUp && !new_run;
    if (state == "running" && !old_run && !flag(now, "exiting") &&
        (supervisor || flag(now, "ready")))
        return {Verdict::Done, supervisor ? "running" : "running, ready", ""};
    // Ended after the command: a new run ended, or the run that was up before (start of a
    // running unit) did. The end of an old run that was stopping, or is being restarted, is
    // what the command expects.
    const std::string was = str(t.before, "state", "");
    const bool was_up = was == "starting" || was == "running";
    const bool ended =
        (is_down(state) || state == "backoff") && (new_run || (t.want == Want::Up && was_up));
    if (ended && is_down(state) && ended_well(now) && inc > 0)
        return {Verdict::Done, "ran and exited with status 0", ""};
    if (str(now, "effective_goal", "") == "down") {
        if (t.allow_down) return {Verdict::Done, "stays stopped (goal down)", ""};
        return held_down(now, ended);
    }
    // Two runs later, one ran and ended between two looks.
    if (ended || (base >= 0 && inc >= base + 2))
        return {Verdict::Failed, "failed to start", reason(now)};
    return {Verdict::Waiting, going(t.want), where_up(now, old_run)};
}

} // namespace

// The roll with t.roll_id among the instances' "roll" objects (see wait.hpp).
Judgement judge_roll(const WaitTarget &t, const Json &instances) {
    const Json *mine = nullptr;
    std::int64_t newest = -1;
    if (instances.is_array())
        for (const auto &u : instances) {
            if (gone(u) || !u.contains("roll") || !u["roll"].is_object()) continue;
            const Json &r = u["roll"];
            if (str(r, "unit", "") != t.unit) continue; // polled with every unit: another's roll
            const std::int64_t id = count(r, "id");
            newest = std::max(newest, id);
            if (id >= 0 && static_cast<std::uint64_t>(id) == t.roll_id) mine = &r;
        }
    const std::string again =
        "; once fixed, run it again: vigilctl restart --rolling " + one_line(t.unit);
    if (!mine) {
        if (newest > static_cast<std::int64_t>(t.roll_id))
            return {Verdict::Failed, "rolling restart replaced",
                    "a newer rolling restart of the unit (a reload) took its place"};
        return {Verdict::Failed, "rolling restart lost", "no instance of the unit shows it"};
    }
    const std::string n = std::to_string(std::max<std::int64_t>(count(*mine, "done"), 0)) + "/" +
                          std::to_string(std::max<std::int64_t>(count(*mine, "total"), 0));
    const std::string state = str(*mine, "state", "");
    if (state == "done") return {Verdict::Done, "rolling restart done " + n, ""};
    if (state == "stopped") {
        const std::string at = one_line(str(*mine, "at", ""));
        std::string why = one_line(str(*mine, "reason", ""));
        if (why.empty()) why = "stopped";
        return {Verdict::Failed,
                "rolling restart stopped" + (at.empty() ? "" : " at " + at) + " (" + n + ")",
                why + again};
    }
    std::string where = "replacing";
    for (const auto &u : instances)
        if (u.is_object() && u.contains("roll") && u["roll"].is_object() &&
            str(u["roll"], "unit", "") == t.unit && flag(u["roll"], "in_step"))
            where += " " + one_line(str(u, "name", ""));
    return {Verdict::Waiting, "rolling restart " + n,
            where == "replacing" ? "between steps" : where};
}

Judgement judge(const WaitTarget &t, const Json &now) {
    if (t.want == Want::Roll) return judge_roll(t, now);
    if (gone(now)) {
        if (t.want == Want::Down) return {Verdict::Done, "stopped (removed)", ""};
        return {Verdict::Failed, "not started", "removed from the unit files"};
    }
    return t.want == Want::Down ? judge_down(t, now) : judge_up(t, now);
}

std::vector<WaitTarget> wait_targets(ctl::Cmd cmd, const Json &result, const Json &before) {
    std::unordered_map<std::string_view, const Json *> old;
    if (before.is_object())
        if (auto it = before.find("units"); it != before.end() && it->is_array())
            for (const auto &u : *it)
                if (u.is_object() && u.contains("name") && u["name"].is_string())
                    old.emplace(u["name"].get_ref<const std::string &>(), &u);
    auto status_before = [&](const std::string &name) {
        auto it = old.find(name);
        return it == old.end() ? Json() : *it->second;
    };
    std::vector<WaitTarget> out;
    auto add = [&](const Json &name, Want w, bool allow_down, Json b) {
        if (!name.is_string() || out.size() >= max_wait_targets) return;
        out.push_back({name.get<std::string>(), w, std::move(b), allow_down});
    };
    if (!result.is_object()) return out;
    if (cmd == ctl::Cmd::Reload) {
        // An added unit is a new child: stopped, never run (a unit added again under another
        // parent is a new child too, whatever status said of the old one).
        const Json fresh{{"state", "stopped"}, {"incarnation", 0}};
        if (auto it = result.find("added"); it != result.end() && it->is_array())
            for (const auto &n : *it)
                add(n, Want::Up, true, fresh);
        if (auto it = result.find("restarted"); it != result.end() && it->is_array())
            for (const auto &n : *it)
                add(n, Want::NewUp, true, n.is_string() ? status_before(n) : Json());
        return out;
    }
    auto it = result.find("results");
    if (it == result.end() || !it->is_array()) return out;
    if (auto r = result.find("roll");
        cmd == ctl::Cmd::Restart && r != result.end() && r->is_object()) {
        const std::int64_t id = count(*r, "id");
        const Json unit = r->value("unit", Json());
        if (id > 0 && unit.is_string()) {
            add(unit, Want::Roll, false, Json());
            out.back().roll_id = static_cast<std::uint64_t>(id);
        }
        return out;
    }
    for (const auto &r : *it) {
        const std::string outcome = str(r, "outcome", "");
        const Json name = r.is_object() ? r.value("unit", Json()) : Json();
        Json b = name.is_string() ? status_before(name) : Json();
        if (cmd == ctl::Cmd::Start && (outcome == "ok" || outcome == "already_running"))
            add(name, Want::Up, false, std::move(b));
        else if (cmd == ctl::Cmd::Restart && outcome == "ok")
            add(name, Want::NewUp, false, std::move(b));
        else if (cmd == ctl::Cmd::Stop && (outcome == "ok" || outcome == "already_stopped"))
            add(name, Want::Down, false, std::move(b));
    }
    return out;
}

std::string wait_line(const std::string &unit, const Judgement &j, std::int64_t elapsed_ms) {
    std::string u = one_line(unit);
    switch (j.verdict) {
    case Verdict::Done:
        return u + ": " + j.what + " (" + format_duration(elapsed_ms) + ")";
    case Verdict::Waiting:
        return u + ": still " + j.what + " after " + format_duration(elapsed_ms) + " (" + j.detail +
               ")";
    case Verdict::Failed:
        break;
    }
    return u + ": " + j.what + ": " + j.detail + "; see: vigilctl status " + u +
           "; vigilctl logs " + u;
}

} // namespace vigil::cli

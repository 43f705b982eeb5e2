// vigilctl's tables and trees: see render.hpp.
#include "render.hpp"

#include "json_read.hpp"
#include "vigil/core/names.hpp"
#include "vigil/unit/values.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <optional>
#include <string_view>
#include <vector>

namespace vigil::cli {

namespace {

constexpr const char *reset = "\033[0m";
constexpr const char *green = "\033[32m";
constexpr const char *yellow = "\033[33m";
constexpr const char *red = "\033[31m";
constexpr const char *dim = "\033[2m";
constexpr const char *bold = "\033[1m";

constexpr std::size_t min_info = 16; // columns of INFO kept however narrow the terminal

std::optional<std::int64_t> num(const Json &j, const char *key) {
    return int_of(member(j, key));
}

// The keys of a status object that a row of the table (and the tree) reads.
enum class K : std::size_t {
    name,
    state,
    effective_goal,
    goal,
    kind,
    ready,
    pid,
    since_ms,
    restarts,
    last_exit,
    last_cause,
    last_reason,
    waiting_for,
    left_behind,
    roll,
    drain_ms,
    backoff_ms,
    exiting,
    held_down_by,
    removed,
    status_text,
    count
};
constexpr std::array<std::string_view, static_cast<std::size_t>(K::count)> key_names{
    "name",         "state",       "effective_goal", "goal",      "kind",       "ready",
    "pid",          "since_ms",    "restarts",       "last_exit", "last_cause", "last_reason",
    "waiting_for",  "left_behind", "roll",           "drain_ms",  "backoff_ms", "exiting",
    "held_down_by", "removed",     "status_text"};

// A status object's values by key, found in one pass over it: a row reads some twenty keys,
// and a lookup in the object's map for each weighs on a table of thousands of rows
// (bench/README.md, "Status of all in brief"). Not explicit: the detail view's lines pass
// the status object itself to the helpers below.
struct Fields {
    std::array<const Json *, key_names.size()> at{};
    Fields(const Json &u) {
        if (!u.is_object()) return;
        for (auto it = u.begin(); it != u.end(); ++it) {
            const std::string &key = it.key();
            for (std::size_t k = 0; k < key_names.size(); ++k)
                if (key_names[k] == key) {
                    at[k] = &*it;
                    break;
                }
        }
    }
    const Json *operator[](K k) const { return at[static_cast<std::size_t>(k)]; }
};

std::string str(const Fields &f, K key, const char *fallback = "-") {
    return text_of(f[key], fallback);
}

std::optional<std::int64_t> num(const Fields &f, K key) {
    return int_of(f[key]);
}

bool flag(const Fields &f, K key) {
    return flag_of(f[key]);
}

// The readers of a status object itself (json_read.hpp) and those of its Fields: one overload
// set, not one hiding the other.
using cli::flag;
using cli::str;

// The value, or null when the object has none.
const Json &field(const Fields &f, K key) {
    static const Json none;
    const Json *v = f[key];
    return v ? *v : none;
}

// Display width: UTF-8 continuation bytes take no column (names are ASCII in practice; the
// tree's box-drawing characters are not).
std::size_t width(std::string_view s) {
    std::size_t w = 0;
    for (unsigned char c : s)
        if ((c & 0xC0) != 0x80) ++w;
    return w;
}

// The width of each column of a table: its widest cell, the heading included.
std::vector<std::size_t> column_widths(const std::vector<std::string> &head,
                                       const std::vector<std::vector<std::string>> &rows) {
    std::vector<std::size_t> w(head.size());
    for (std::size_t c = 0; c < head.size(); ++c) {
        w[c] = width(head[c]);
        for (const auto &r : rows)
            w[c] = std::max(w[c], width(r[c]));
    }
    return w;
}

std::string pad(std::string s, std::size_t w) {
    std::size_t have = width(s);
    if (have < w) s.append(w - have, ' ');
    return s;
}

std::string paint(const std::string &s, const char *colour, const Style &st) {
    if (!st.color || !colour) return s;
    return colour + s + reset;
}

// Where the unit is heading: "effective_goal" (its own goal and its ancestors'), or "goal"
// from a vigild that does not send it. A child whose supervisor is stopped keeps its own goal
// "up" (it comes back with the supervisor) but is not heading anywhere.
std::string heading(const Fields &u) {
    std::string g = str(u, K::effective_goal, "");
    return g.empty() ? str(u, K::goal) : g;
}

// Did the last incarnation end with status 0?
bool clean_exit(const Fields &u) {
    const Json &e = field(u, K::last_exit);
    return e.is_object() && !e.contains("signal") && num(e, "code") == 0;
}

// The words of a status object that most of a row reads, looked up once.
struct Words {
    std::string state, goal, kind; // goal: heading()
    explicit Words(const Fields &u)
        : state(str(u, K::state)), goal(heading(u)), kind(str(u, K::kind)) {}
};

// The colour of a state: green when all is well, yellow in transition, red when the child
// should run but does not.
const char *state_colour(const Fields &u, const Words &w) {
    const std::string &state = w.state;
    bool up = w.goal == "up";
    if (state == "running") {
        if (!up) return yellow;
        if (w.kind == "service" && !flag(u, K::ready)) return yellow;
        return green;
    }
    if (state == "starting" || state == "stopping") return yellow;
    if (state == "backoff") return red;
    if (state == "stopped") return up ? red : dim;
    if (state == "exited") return clean_exit(u) ? dim : red; // ended by itself, not restarted
    return nullptr;
}

const char *state_colour(const Fields &u) {
    return state_colour(u, Words(u));
}

} // namespace

// render.hpp says what.
std::string one_line(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if (c == '\t' || c == '\n' || c == '\r')
            out += ' ';
        else if (c < 0x20 || c == 0x7f)
            out += '?';
        else if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
                 static_cast<unsigned char>(s[i + 1]) <= 0x9f) {
            out += '?'; // U+0080..U+009F in UTF-8
            ++i;
        } else
            out += static_cast<char>(c);
    }
    return out;
}

namespace {

// Causes that say why a unit is down against its will (core::Cause's spelling); the others
// (none, command, reload, removed, supervisor, shutdown, notify) need no explaining.
bool failure(const std::string &cause) {
    for (const char *c :
         {"exited", "spawn_failed", "start_timeout", "liveness", "startup_probe", "watchdog",
          "pattern", "start_failed", "intensity", "auto_shutdown", "leftover", "main_pid"})
        if (cause == c) return true;
    return false;
}

// Why the last incarnation ended, short: "exit 3", "SIGKILL" for an exit (LAST-EXIT has the
// detail), vigild's words for the rest ("exec pyhton3: No such file or directory", "did not
// start within 5s (...)"). Empty when it ended as wanted, or the answer does not say.
std::string down_reason(const Fields &u, bool brief) {
    std::string cause = str(u, K::last_cause, "");
    if (!failure(cause)) return "";
    std::string reason = one_line(str(u, K::last_reason, ""));
    if (cause == "exited") {
        const Json &e = field(u, K::last_exit);
        if (e.is_object() && !e.contains("signal") && num(e, "code") == 0) return "";
        if (brief || reason.empty()) {
            std::string x = format_exit(e);
            if (x == "-") return reason;
            return x.rfind("SIG", 0) == 0 || x.rfind("signal", 0) == 0 ? x : "exit " + x;
        }
    }
    if (!reason.empty()) return reason;
    for (auto &c : cause)
        if (c == '_') c = ' ';
    return cause;
}

// The siblings a stopped unit waits for ("waiting_for", sent by vigild).
std::string waiting(const Fields &u) {
    std::string names;
    if (const Json &w = field(u, K::waiting_for); w.is_array())
        for (const auto &n : w)
            if (n.is_string())
                names += (names.empty() ? "" : ", ") + one_line(n.get<std::string>());
    return names;
}

// Why a unit that is meant to stay down (its own goal) stopped: it ended by itself ("exited 0",
// a temporary or transient unit; "exited 3", "killed by SIGKILL") when its last exit is the one
// recorded as the cause of its end; otherwise a command stopped it (a stop changes the last
// exit, not the cause, which says why the incarnation before ended).
std::string stopped_why(const Fields &u) {
    const Json &e = field(u, K::last_exit);
    const std::string reason = str(u, K::last_reason, "");
    if (str(u, K::last_cause, "") == "exited" && e.is_object()) {
        if (auto c = num(e, "code");
            c && reason.rfind("exited with status " + std::to_string(*c), 0) == 0)
            return "exited " + std::to_string(*c);
        if (std::string x = format_exit(e);
            x.rfind("SIG", 0) == 0 && reason.rfind("killed by " + x, 0) == 0)
            return "killed by " + x;
    }
    if (str(u, K::last_cause, "") == "spawn_failed" && !e.is_object())
        return one_line(reason); // never ran: a temporary unit whose exec failed
    return "stopped by command";
}

// The pids of "left_behind", space-separated.
std::string left_pids(const Fields &u) {
    std::string pids;
    if (const Json &l = field(u, K::left_behind); l.is_array())
        for (const auto &p : l)
            if (p.is_number_integer())
                pids += (pids.empty() ? "" : " ") + std::to_string(p.get<long long>());
    return pids;
}

// A roll of the unit under way: "rolling restart 2/4"; with `last`, also how the last one ended
// ("rolling restart done 4/4", "rolling restart stopped at web@3 (2/4): ..."). Empty: none.
std::string roll_words(const Fields &u, bool last) {
    const Json &r = field(u, K::roll);
    if (!r.is_object()) return "";
    const std::string state = str(r, "state");
    const auto done = num(r, "done");
    const auto total = num(r, "total");
    if (!done || !total) return "";
    const std::string n = std::to_string(*done) + "/" + std::to_string(*total);
    if (state == "running") return "rolling restart " + n;
    if (!last) return "";
    if (state == "done") return "rolling restart done " + n;
    std::string at = str(r, "at", "");
    std::string out = "rolling restart stopped" + (at.empty() ? "" : " at " + one_line(at));
    out += " (" + n + ")";
    if (std::string why = one_line(str(r, "reason", "")); !why.empty()) out += ": " + why;
    return out;
}

std::string info(const Fields &u, const Words &words) {
    std::vector<std::string> parts;
    const std::string &state = words.state;
    const std::string &goal = words.goal;
    if (words.kind == "supervisor") parts.emplace_back("supervisor");
    if (auto d = state == "stopping" ? num(u, K::drain_ms) : std::nullopt)
        parts.push_back("draining, " + format_duration(*d) + " left");
    if (std::string r = roll_words(u, false); !r.empty()) parts.push_back(r);
    if (state == "backoff") {
        std::string why = down_reason(u, true);
        if (!why.empty()) parts.push_back("backoff after " + why);
        if (auto b = num(u, K::backoff_ms)) parts.push_back("restart in " + format_duration(*b));
    }
    if (state == "running" && words.kind == "service" && !flag(u, K::ready))
        parts.emplace_back("not ready");
    if (state == "running" && flag(u, K::exiting)) parts.emplace_back("exiting");
    // Ended by itself and not restarted: how it ended ("exit 0", "exit 3", "SIGKILL").
    if (state == "exited") {
        std::string x = format_exit(field(u, K::last_exit));
        if (x != "-")
            parts.push_back(x.rfind("SIG", 0) == 0 || x.rfind("signal", 0) == 0 ? x : "exit " + x);
    }
    // Stopped but heading up: what it waits for, or what went wrong. (Stopped on purpose needs
    // no words: the last cause then says who stopped it.)
    if (state == "stopped" && goal == "up") {
        if (std::string w = waiting(u); !w.empty())
            parts.push_back("waiting for " + w);
        else
            parts.emplace_back("goal up");
        if (std::string why = down_reason(u, false); !why.empty()) parts.push_back(why);
    }
    if (state == "stopped" && str(u, K::goal) == "down") parts.push_back(stopped_why(u));
    if ((state == "running" || state == "starting") && goal == "down")
        parts.emplace_back("goal down");
    // Stopped with its supervisor: say which start brings it back.
    if (std::string by = state == "stopped" ? str(u, K::held_down_by, "") : "";
        !by.empty() && str(u, K::goal) == "up")
        parts.push_back("until " + by + " starts");
    if (flag(u, K::removed)) parts.emplace_back("removed");
    // Processes a stop cannot reach (no cgroup): the user has to deal with them.
    if (std::string pids = left_pids(u); !pids.empty()) parts.push_back("left behind: " + pids);
    // What the service says of itself (sd_notify STATUS=), last: the longest part, and the one
    // a narrow terminal cuts first.
    if (state == "running" || state == "starting")
        if (std::string text = one_line(str(u, K::status_text, "")); !text.empty())
            parts.push_back(text);
    std::string out;
    for (const auto &p : parts) {
        if (!out.empty()) out += ", ";
        out += p;
    }
    return out;
}

// At most `w` columns of `s`: cut at a character boundary, "…" marking the cut.
std::string fit(const std::string &s, std::size_t w) {
    if (width(s) <= w) return s;
    if (w == 0) return "";
    std::string out;
    std::size_t cols = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        if ((c & 0xC0) != 0x80 && ++cols > w - 1) break;
        out += s[i];
    }
    return out + "…";
}

std::string uptime(const Fields &u, const std::string &state) {
    auto since = state == "running" ? num(u, K::since_ms) : std::nullopt; // time in the state
    return since ? format_duration(*since) : "-";
}

std::string pid_text(const Fields &u) {
    auto p = num(u, K::pid);
    return p ? std::to_string(*p) : "-";
}

void tree_lines(const Json &node, const std::string &prefix, const std::string &branch,
                std::vector<std::pair<std::string, const Json *>> &out, int depth) {
    out.emplace_back(prefix + branch + str(node, "name"), &node);
    if (depth > 1000) return; // a malformed answer must not exhaust the stack
    auto it = node.find("children");
    if (it == node.end() || !it->is_array()) return;
    std::string child_prefix = prefix;
    if (branch == "├─ ")
        child_prefix += "│  ";
    else if (branch == "└─ ")
        child_prefix += "   ";
    for (std::size_t i = 0; i < it->size(); ++i) {
        bool last = i + 1 == it->size();
        tree_lines((*it)[i], child_prefix, last ? "└─ " : "├─ ", out, depth + 1);
    }
}

} // namespace

std::string format_duration(std::int64_t ms) {
    if (ms < 0) ms = 0;
    // An age at a glance: exact below 10 s, then rounded down to the second, the minute, the
    // hour; spelled by the one duration formatter (core::format_duration).
    std::int64_t unit = 1;
    if (ms >= 86'400'000)
        unit = 3'600'000;
    else if (ms >= 3'600'000)
        unit = 60'000;
    else if (ms >= 10'000)
        unit = 1'000;
    return core::format_duration(Duration{ms - ms % unit});
}

std::string format_exit(const Json &e) {
    if (!e.is_object()) return "-";
    if (auto it = e.find("signal"); it != e.end() && it->is_string()) {
        std::string s = it->get<std::string>();
        bool numeric = !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
        if (numeric) return "signal " + s;
        return s.rfind("SIG", 0) == 0 ? s : "SIG" + s;
    }
    if (auto c = num(e, "code")) return std::to_string(*c);
    return "-";
}

std::string render_status(const Json &units, const Style &st) {
    if (!units.is_array() || units.empty()) return "no units\n";
    const std::vector<std::string> head{"NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST-EXIT"};
    std::vector<std::vector<std::string>> rows;
    std::vector<const char *> colours;
    rows.reserve(units.size());
    colours.reserve(units.size());
    for (const auto &unit : units) {
        const Fields u(unit);
        const Words w(u);
        auto restarts = num(u, K::restarts);
        rows.push_back({str(u, K::name), w.state, pid_text(u), uptime(u, w.state),
                        restarts ? std::to_string(*restarts) : "-",
                        format_exit(field(u, K::last_exit)), info(u, w)});
        colours.push_back(state_colour(u, w));
    }
    std::vector<std::size_t> w = column_widths(head, rows);
    std::string out;
    for (std::size_t c = 0; c < head.size(); ++c)
        out += paint(pad(head[c], w[c]), bold, st) + "  ";
    out += paint("INFO", bold, st);
    out += '\n';
    for (std::size_t i = 0; i < rows.size(); ++i) {
        const auto &r = rows[i];
        std::string line;
        for (std::size_t c = 0; c < head.size(); ++c) {
            std::string cell = pad(r[c], w[c]);
            line += c == 1 ? paint(cell, colours[i], st) : cell;
            line += "  ";
        }
        // On a terminal the row stays one line: INFO is cut to what is left of the width
        // (at least min_info columns, so a narrow one still shows its start).
        if (st.width > 0) {
            std::size_t used = width(line);
            line += fit(r[6], std::max(st.width > used ? st.width - used : 0, min_info));
        } else {
            line += r[6];
        }
        while (!line.empty() && line.back() == ' ')
            line.pop_back();
        out += line + '\n';
    }
    return out;
}

namespace {

const char *check_colour(const std::string &state) {
    if (state == "passing") return green;
    if (state == "failing") return red;
    if (state == "pending") return yellow;
    return dim;
}

std::string check_row_text(const Json &c) {
    auto n = num(c, "in_a_row");
    if (!n || *n <= 0) return "-";
    return std::to_string(*n) + (c.value("in_a_row_ok", true) ? " ok" : " failed");
}

std::string check_last_failure(const Json &c, std::int64_t now) {
    const Json f = c.is_object() ? c.value("last_failure", Json()) : Json();
    if (!f.is_object()) return "-";
    std::string msg = one_line(str(f, "message", ""));
    auto t = num(f, "time");
    if (!t) return msg;
    const std::int64_t age = now > *t ? now - *t : 0;
    return format_duration(age - age % 1000) + " ago: " + msg;
}

std::string check_next(const Json &c) {
    auto n = num(c, "next_ms");
    if (!n) return "-";
    if (*n <= 0) return "now";
    return "in " + format_duration((*n + 999) / 1000 * 1000);
}

} // namespace

std::string render_checks(const Json &result, const Style &st, std::int64_t now_wall_ms) {
    const Json rows_in = result.is_object() ? result.value("checks", Json()) : Json();
    if (!rows_in.is_array() || rows_in.empty()) return "no probes or watchdogs\n";
    const std::vector<std::string> head{"UNIT",  "PROBE", "KIND",         "TARGET",
                                        "STATE", "ROW",   "LAST-FAILURE", "NEXT"};
    constexpr std::size_t state_col = 4, failure_col = 6, next_col = 7;
    std::vector<std::vector<std::string>> rows;
    for (const auto &c : rows_in)
        rows.push_back({str(c, "unit"), str(c, "probe"), str(c, "kind"), one_line(str(c, "target")),
                        str(c, "state"), check_row_text(c), check_last_failure(c, now_wall_ms),
                        check_next(c)});
    std::vector<std::size_t> w = column_widths(head, rows);
    if (st.width > 0) {
        // On a terminal a row stays one line: LAST-FAILURE gives up what does not fit (it
        // keeps at least min_info columns).
        std::size_t others = 0;
        for (std::size_t c = 0; c < head.size(); ++c)
            if (c != failure_col) others += w[c] + 2;
        const std::size_t room = std::max(st.width > others ? st.width - others : 0, min_info);
        w[failure_col] = std::min(w[failure_col], std::max(room, width(head[failure_col])));
        for (auto &r : rows)
            r[failure_col] = fit(r[failure_col], w[failure_col]);
    }
    std::string out;
    for (std::size_t c = 0; c < head.size(); ++c)
        out += paint(c == next_col ? head[c] : pad(head[c], w[c]), bold, st) + "  ";
    out.resize(out.size() - 2);
    out += '\n';
    for (const auto &r : rows) {
        std::string line;
        for (std::size_t c = 0; c < head.size(); ++c) {
            std::string cell = c == next_col ? r[c] : pad(r[c], w[c]);
            line += (c == state_col ? paint(cell, check_colour(r[c]), st) : cell) + "  ";
        }
        while (!line.empty() && line.back() == ' ')
            line.pop_back();
        out += line + '\n';
    }
    return out;
}

std::string render_check_run(const Json &result, const Style &st) {
    const bool ok = flag(result, "ok");
    std::string out = str(result, "unit") + "/" + str(result, "probe") + ": ";
    out += paint(ok ? "passed" : "failed", ok ? green : red, st);
    if (auto d = num(result, "duration_ms")) out += " in " + format_duration(*d);
    if (std::string m = one_line(str(result, "message", "")); !m.empty()) out += ": " + m;
    return out + '\n';
}

std::string render_tree(const Json &result, const Style &st) {
    if (!result.is_object() || !result.contains("root")) return "no tree\n";
    std::vector<std::pair<std::string, const Json *>> lines;
    tree_lines(result["root"], "", "", lines, 0);
    std::size_t w = 0;
    for (const auto &l : lines)
        w = std::max(w, width(l.first));
    std::string out;
    for (const auto &[label, node] : lines) {
        const Fields u(*node);
        const Words words(u);
        std::string line =
            pad(label, w) + "  " + paint(pad(words.state, 8), state_colour(u, words), st);
        std::vector<std::string> more;
        if (auto p = num(u, K::pid)) more.push_back("pid " + std::to_string(*p));
        if (std::string up = uptime(u, words.state); up != "-") more.push_back("up " + up);
        if (auto r = num(u, K::restarts); r && *r > 0)
            more.push_back(std::to_string(*r) + " restarts");
        if (std::string e = format_exit(field(u, K::last_exit)); e != "-")
            more.push_back("last exit " + e);
        if (std::string i = info(u, words); !i.empty()) more.push_back(i);
        for (const auto &m : more)
            line += "  " + m;
        while (!line.empty() && line.back() == ' ')
            line.pop_back();
        out += line + '\n';
    }
    return out;
}

// "2026-12-06 10:12:03.123" in local time, from milliseconds since the epoch.
std::string format_wall(std::int64_t ms) {
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    localtime_r(&secs, &tm);
    char base[32];
    std::strftime(base, sizeof base, "%Y-%m-%d %H:%M:%S", &tm);
    char when[48];
    std::snprintf(when, sizeof when, "%s.%03lld", base, static_cast<long long>(ms % 1000));
    return when;
}

std::string render_event(const Json &r, const Style &st) {
    std::string when = "-";
    if (auto t = num(r, "time")) {
        when = format_wall(*t);
    } else if (auto a = num(r, "at_ms")) {
        char rel[48];
        std::snprintf(rel, sizeof rel, "+%lld.%03llds", static_cast<long long>(*a / 1000),
                      static_cast<long long>(*a % 1000));
        when = rel;
    }
    std::string kind = str(r, "kind");
    const char *colour = nullptr;
    if (kind == "exited" || kind == "killed" || kind == "spawn_failed" || kind == "start_failed" ||
        kind == "unhealthy" || kind == "gave_up")
        colour = red;
    else if (kind == "started" || kind == "ready")
        colour = green;
    else if (kind == "restarting" || kind == "stopping" || kind == "command")
        colour = yellow;
    // Streamed, so the widest name is unknown: a fixed minimum keeps most lines aligned.
    return when + "  " + pad(str(r, "unit"), 12) + "  " + paint(pad(kind, 13), colour, st) +
           str(r, "message", "") + '\n';
}

std::string render_log(const Json &item, const Style &st, bool prefix) {
    const bool err = str(item, "stream") == "stderr";
    std::string line = str(item, "line", "");
    if (st.color && err) line = paint(line, red, st);
    if (prefix) {
        auto t = num(item, "time");
        line = paint(t ? format_wall(*t) : std::string("-"), dim, st) + " " +
               paint(str(item, "unit") + "[" + (err ? "stderr" : "stdout") + "]:", err ? red : dim,
                     st) +
               " " + line;
    }
    // A line longer than the framer's limit arrives in pieces; only the last ends the line.
    if (!flag(item, "continued")) line += '\n';
    return line;
}

std::optional<std::int64_t> parse_since(std::string_view text, std::int64_t now_ms) {
    if (text.empty()) return std::nullopt;
    if (text.front() == '@') { // seconds since the epoch
        std::int64_t secs = 0;
        auto [end, ec] = std::from_chars(text.data() + 1, text.data() + text.size(), secs);
        if (ec != std::errc{} || end != text.data() + text.size() || text.size() == 1 || secs < 0 ||
            secs > (std::int64_t{1} << 53) / 1000)
            return std::nullopt;
        return secs * 1000;
    }
    if (auto d = unit::scan_duration(text).value) // an age: "10m", "1h30m", "90s"
        return std::max<std::int64_t>(0, now_ms - d->count());
    // A local date and time: "YYYY-MM-DD[ HH:MM[:SS]]" ('T' too), or "HH:MM[:SS]" today.
    std::time_t now_s = static_cast<std::time_t>(now_ms / 1000);
    std::tm tm{};
    localtime_r(&now_s, &tm);
    std::string s(text);
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, used = 0;
    const char *c = s.c_str();
    if (std::sscanf(c, "%4d-%2d-%2d%n", &y, &mo, &d, &used) != 3) {
        y = 0; // not a date: a time today
    } else {
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        c += used;
        if (*c == ' ' || *c == 'T')
            ++c;
        else if (*c != '\0')
            return std::nullopt;
    }
    used = 0;
    if (*c != '\0') {
        int n = std::sscanf(c, "%2d:%2d%n:%2d%n", &h, &mi, &used, &sec, &used);
        if (n < 2 || c[used] != '\0' || h > 23 || mi > 59 || sec > 60) return std::nullopt;
    }
    if (y == 0 && *c == '\0') return std::nullopt;
    if (y != 0 && (mo < 1 || mo > 12 || d < 1 || d > 31)) return std::nullopt;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    tm.tm_isdst = -1;
    std::time_t t = std::mktime(&tm);
    if (t == static_cast<std::time_t>(-1) || t < 0) return std::nullopt;
    return static_cast<std::int64_t>(t) * 1000;
}

std::string render_results(const Json &result, const Style &st) {
    std::string out;
    auto it = result.find("results");
    if (it == result.end() || !it->is_array()) return out;
    for (const auto &r : *it) {
        std::string outcome = str(r, "outcome");
        std::string msg = str(r, "message", "");
        // "already running" says that nothing was done; the core's message ("running") alone
        // reads as if the command had started it.
        if (msg.empty() || outcome == "already_running" || outcome == "already_stopped") {
            msg = outcome;
            for (auto &c : msg)
                if (c == '_') c = ' ';
        }
        const char *colour = outcome == "ok"                                                ? green
                             : outcome == "already_running" || outcome == "already_stopped" ? dim
                                                                                            : red;
        out += str(r, "unit") + ": " + paint(msg, colour, st) + '\n';
    }
    return out;
}

std::string render_reload(const Json &result, const Style &st) {
    std::string out;
    bool any = false;
    for (const char *key : {"added", "removed", "restarted", "updated"}) {
        auto it = result.find(key);
        if (it == result.end() || !it->is_array() || it->empty()) continue;
        any = true;
        std::string names;
        for (const auto &n : *it) {
            if (!names.empty()) names += ", ";
            names += n.is_string() ? n.get<std::string>() : n.dump();
        }
        out += paint(std::string(key) + ":", bold, st) + " " + names + '\n';
    }
    if (!any) out += "reloaded: nothing changed\n";
    return out;
}

// ---- status NAME: the detail view ----------------------------------------------------------

namespace {

constexpr std::size_t label_width = 10; // "Last exit:" and the labels right-aligned to it

// "     Unit: value", continuation lines indented to the value's column.
void labelled(std::string &out, const char *label, const std::string &value) {
    std::string l = std::string(label) + ":";
    std::string head = std::string(label_width > l.size() ? label_width - l.size() : 0, ' ') + l;
    std::size_t start = 0;
    for (;;) {
        std::size_t nl = value.find('\n', start);
        out += (start == 0 ? head : std::string(label_width, ' ')) + " " +
               value.substr(start, nl == std::string::npos ? nl : nl - start) + '\n';
        if (nl == std::string::npos) break;
        start = nl + 1;
    }
}

// A wall-clock time in the local zone, "2026-12-06 10:12:03 UTC".
std::string wall_time(std::int64_t ms, const char *format = "%Y-%m-%d %H:%M:%S %Z") {
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    localtime_r(&secs, &tm);
    char buf[64];
    if (std::strftime(buf, sizeof buf, format, &tm) == 0) return "-";
    return buf;
}

// "vigilctl (uid 0 pid 42)" as "vigilctl signal, uid 0 pid 42" (the command that did it).
std::string requester(const Json &by) {
    std::string who = one_line(str(by, "by", "unknown"));
    std::string cmd = str(by, "command", "");
    if (who.rfind("vigilctl (", 0) == 0 && who.back() == ')')
        return "vigilctl " + cmd + ", " + who.substr(10, who.size() - 11);
    return cmd.empty() ? who : cmd + " by " + who;
}

// "exited with status 3", "killed by SIGKILL (sent by vigilctl signal, uid 0 pid 42)",
// "exec error: exec pyhton3: No such file or directory", "liveness probe failed: ...".
std::string last_exit_words(const Json &u) {
    const Json e = u.is_object() ? u.value("last_exit", Json()) : Json();
    std::string cause = str(u, "last_cause", "");
    std::string reason = one_line(str(u, "last_reason", ""));
    if (cause == "spawn_failed") return "exec error: " + (reason.empty() ? "-" : reason);
    std::string words;
    if (auto c = num(e, "code"))
        words = "exited with status " + std::to_string(*c);
    else if (std::string x = format_exit(e); x != "-")
        words = "killed by " + x;
    const Json by = u.is_object() ? u.value("last_exit_by", Json()) : Json();
    if (by.is_object()) {
        bool sent = str(by, "command", "") == "signal" && e.is_object() &&
                    str(by, "signal", "") == format_exit(e);
        std::string how = sent ? "sent by " : "after " + str(by, "signal", "") + " from ";
        if (!sent && !by.contains("signal")) how = "after ";
        words += (words.empty() ? "(" : " (") + how + requester(by) + ")";
    } else if (failure(cause) && cause != "exited" && !reason.empty()) {
        words += (words.empty() ? "" : " (") + reason + (words.empty() ? "" : ")");
    }
    return words;
}

// "running (ready) since 2026-12-06 10:12:03 UTC; 3m2s ago".
std::string state_words(const Json &u, std::int64_t now_ms) {
    std::string state = str(u, "state");
    std::vector<std::string> notes;
    if (state == "running" && str(u, "kind") == "service")
        notes.emplace_back(flag(u, "ready") ? "ready" : "not ready");
    if (flag(u, "exiting")) notes.emplace_back("exiting");
    if (heading(u) == "down" && state != "stopped" && state != "exited")
        notes.emplace_back("goal down");
    if (std::string by = str(u, "held_down_by", ""); !by.empty())
        notes.push_back("until " + one_line(by) + " starts");
    if (std::string w = waiting(u); !w.empty()) notes.push_back("waiting for " + w);
    std::string out = state;
    for (std::size_t i = 0; i < notes.size(); ++i)
        out += (i == 0 ? " (" : ", ") + notes[i] + (i + 1 == notes.size() ? ")" : "");
    if (auto since = num(u, "since_ms"); since && now_ms > 0)
        out += " since " + wall_time(now_ms - *since) + "; " + format_duration(*since) + " ago";
    return out;
}

// "intensity 3 of 5 left in 10s": how many more restarts its supervisor takes.
std::string restarts_words(const Json &u) {
    auto r = num(u, "restarts");
    std::string out = r ? std::to_string(*r) : "-";
    const Json i = u.is_object() ? u.value("intensity", Json()) : Json();
    auto max = num(i, "max"), used = num(i, "used"), period = num(i, "period_ms");
    if (max && used && period)
        out += "; intensity " + std::to_string(std::max<std::int64_t>(0, *max - *used)) + " of " +
               std::to_string(*max) + " left in " + format_duration(*period);
    return out;
}

// One probe: "liveness http http://127.0.0.1:8080/healthz passing (120 ok, 4 failed; last
// failure 2m ago: status 500)".
// The watchdog's row has no target and is its own kind: "watchdog passing (...)".
std::string probe_words(const Json &c, std::int64_t now_ms) {
    std::string out = one_line(str(c, "probe"));
    if (std::string kind = one_line(str(c, "kind")); kind != out) out += " " + kind;
    if (std::string target = one_line(str(c, "target", "")); !target.empty()) out += " " + target;
    out += " " + one_line(str(c, "state"));
    std::vector<std::string> counts;
    if (auto ok = num(c, "successes")) counts.push_back(std::to_string(*ok) + " ok");
    if (auto bad = num(c, "failures")) counts.push_back(std::to_string(*bad) + " failed");
    std::string tail;
    for (const auto &x : counts)
        tail += (tail.empty() ? "" : ", ") + x;
    const Json f = c.is_object() ? c.value("last_failure", Json()) : Json();
    if (f.is_object()) {
        std::string when;
        if (auto t = num(f, "time"); t && now_ms > 0)
            when = " " + format_duration(now_ms - *t) + " ago";
        tail += (tail.empty() ? "" : "; ") + std::string("last failure") + when + ": " +
                one_line(str(f, "message", "-"));
    }
    return tail.empty() ? out : out + " (" + tail + ")";
}

std::string probes_words(const Json &checks, std::int64_t now_ms) {
    std::string out;
    auto it = checks.is_object() ? checks.find("checks") : checks.end();
    if (!checks.is_object() || it == checks.end() || !it->is_array()) return out;
    for (const auto &c : *it)
        out += (out.empty() ? "" : "\n") + probe_words(c, now_ms);
    return out;
}

// The log lines, pieces of one line ("continued") joined: "10:12:03 stdout text".
std::string log_lines(const Json &items, const Style &st) {
    std::string out, line;
    bool open = false;
    for (const auto &it : items) {
        if (!open) {
            auto t = num(it, "time");
            std::string stream = str(it, "stream");
            line = (t ? wall_time(*t, "%H:%M:%S") : std::string("-")) + " " + pad(stream, 6) + " ";
            line = paint(line, dim, st);
            if (st.color && stream == "stderr") line += red;
        }
        line += one_line(str(it, "line", ""));
        open = flag(it, "continued");
        if (open) continue;
        if (st.color && str(it, "stream") == "stderr") line += reset;
        out += line + '\n';
    }
    if (open) out += line + (st.color ? reset : "") + '\n';
    return out;
}

bool plain_word(const std::string &w) {
    if (w.empty()) return false;
    for (unsigned char c : w)
        if (!std::isalnum(c) &&
            std::string_view("_@%+=:,./-").find(static_cast<char>(c)) == std::string_view::npos)
            return false;
    return true;
}

} // namespace

std::string shell_quote(const Json &argv) {
    std::string out;
    if (!argv.is_array()) return out;
    for (const auto &a : argv) {
        std::string w = a.is_string() ? a.get<std::string>() : a.dump();
        if (!out.empty()) out += ' ';
        if (plain_word(w)) {
            out += w;
            continue;
        }
        out += '\'';
        for (char c : w)
            out += c == '\'' ? std::string("'\\''") : std::string(1, c);
        out += '\'';
    }
    return one_line(out);
}

std::string format_bytes(std::int64_t bytes) {
    if (bytes < 1024) return std::to_string(std::max<std::int64_t>(0, bytes)) + "B";
    const char *units = "KMGTPE";
    double v = static_cast<double>(bytes);
    int i = -1;
    while (v >= 1024 && i < 5) {
        v /= 1024;
        ++i;
    }
    char buf[32];
    std::snprintf(buf, sizeof buf, v < 10 ? "%.1f%c" : "%.0f%c", v, units[i]);
    return buf;
}

// The sockets vigild holds for the unit, one a line: "tcp 0.0.0.0:8080 (web)".
std::string listen_words(const Json &u) {
    const Json l = u.is_object() ? u.value("listen", Json()) : Json();
    if (!l.is_array()) return "";
    std::string out;
    for (const Json &s : l) {
        if (!s.is_object()) continue;
        std::string line =
            one_line(str(s, "address", "?")) + " (" + one_line(str(s, "name", "")) + ")";
        if (s.value("reuseport", false)) line += ", own socket (reuseport)";
        if (!s.value("open", true)) line += ", not open";
        out += (out.empty() ? "" : "\n") + line;
    }
    return out;
}

std::string render_status_detail(const Detail &d, const Style &st) {
    const Json &u = d.unit;
    std::string out = paint("●", state_colour(u), st) + " " + paint(str(u, "name"), bold, st);
    if (std::string desc = one_line(str(u, "description", "")); !desc.empty()) out += " - " + desc;
    out += '\n';
    if (std::string f = one_line(str(u, "unit_file", "")); !f.empty()) labelled(out, "Unit", f);
    if (std::string c = shell_quote(u.is_object() ? u.value("command", Json()) : Json());
        !c.empty())
        labelled(out, "Command", c);
    labelled(out, "State", paint(state_words(u, d.now_ms), state_colour(u), st));
    if (auto pid = num(u, "pid")) {
        std::string p = std::to_string(*pid);
        if (auto sp = num(u, "spawned_pid"); sp && *sp != *pid)
            p += " (spawned " + std::to_string(*sp) + ")";
        labelled(out, "Main PID", p);
    }
    labelled(out, "Restarts", restarts_words(u));
    if (auto b = num(u, "backoff_ms"); b && str(u, "state") == "backoff")
        labelled(out, "Backoff", "restart in " + format_duration(*b));
    if (std::string e = last_exit_words(u); !e.empty()) labelled(out, "Last exit", e);
    if (auto dr = num(u, "drain_ms"); dr && str(u, "state") == "stopping")
        labelled(out, "Drain",
                 "draining, " + format_duration(*dr) + " left before the stop signal");
    if (std::string r = roll_words(u, true); !r.empty()) labelled(out, "Roll", r);
    std::string state = str(u, "state");
    if (std::string t = one_line(str(u, "status_text", ""));
        !t.empty() && state != "stopped" && state != "exited" && state != "backoff")
        labelled(out, "Status", "\"" + t + "\"");
    if (d.rss || d.cpu) {
        std::string m = d.rss ? format_bytes(*d.rss) + " (RSS)" : "";
        if (d.cpu) {
            char cpu[48];
            std::snprintf(cpu, sizeof cpu, "%lld.%03llds", static_cast<long long>(*d.cpu / 1000),
                          static_cast<long long>(*d.cpu % 1000));
            m += (m.empty() ? "" : "   CPU: ") + std::string(cpu);
        }
        labelled(out, d.rss ? "Memory" : "CPU", m);
    }
    if (std::string p = probes_words(d.checks, d.now_ms); !p.empty()) labelled(out, "Probes", p);
    if (std::string pids = left_pids(u); !pids.empty())
        labelled(out, "Processes", "left behind: " + pids);
    if (std::string l = listen_words(u); !l.empty()) labelled(out, "Listen", l);
    if (d.log.is_array() && !d.log.empty()) out += '\n' + log_lines(d.log, st);
    return out;
}

} // namespace vigil::cli

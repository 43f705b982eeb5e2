// src/cli/render.hpp: how vigilctl shows vigild's answers to people.
//
// Every function takes the JSON shapes of vigil/ctl/shapes.hpp and returns text ending in a
// newline (or nothing). Colour is an explicit parameter: main() decides it once (a TTY, no
// NO_COLOR, no --no-color, TERM not "dumb"), so piped output is plain and tests are exact.
// Missing or mistyped fields render as "-", never throw: a newer vigild may add or change
// fields, and vigilctl must still print what it can.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace vigil::cli {

using Json = nlohmann::json;

struct Style {
    bool color = false;
    // The terminal's columns when the output is one (status cuts INFO to keep a row on one
    // line); 0 when piped: nothing is cut.
    std::size_t width = 0;
};

// An age at a glance, spelled by core::format_duration: exact below 10 s ("1s250ms"), then
// rounded down to the second ("4m12s"), the minute ("3h4m") or the hour ("2d3h").
std::string format_duration(std::int64_t ms);

// NAME STATE PID UPTIME RESTARTS LAST-EXIT INFO, one row per status object. INFO says why a
// unit is not running ("backoff after exit 3, restart in 27s", "waiting for db", the last
// spawn error; meant to stay down: "exited 0", "killed by SIGKILL", "stopped by command"), what
// is pending ("not ready", "goal down") and the service's own STATUS= text;
// text from a service or a unit file is shown on one line, control characters replaced.
std::string render_status(const Json &units, const Style &st);
// The supervision tree with box-drawing characters, from tree_json's {"root": ...}.
std::string render_tree(const Json &result, const Style &st);
// One history record per line: time, unit, kind, message.
std::string render_event(const Json &record, const Style &st);
// One log line (the line itself; stderr lines red when coloured). A piece with
// "continued":true (more of the same line follows) gets no newline. prefix: the line's time,
// unit and stream first, "2026-12-06 10:12:03.123 web[stderr]: " (the caller leaves it out on
// a continued line's later pieces).
std::string render_log(const Json &item, const Style &st, bool prefix = false);
// `--since`: an age ("10m", "1h30m": before now_ms), a local date and time
// ("2026-12-06 10:00", "2026-12-06T10:00:05", "2026-12-06"), a time today ("10:00"), or
// "@SECONDS" since the epoch. Milliseconds since the epoch, or nullopt when unreadable.
std::optional<std::int64_t> parse_since(std::string_view text, std::int64_t now_ms);
// "web: started" per result of start/stop/restart/signal.
std::string render_results(const Json &result, const Style &st);
// What reload changed.
std::string render_reload(const Json &result, const Style &st);

// Text a service or a unit file wrote (STATUS=, a spawn error naming the command) on one line
// and harmless on a terminal: tabs and line breaks become spaces, other C0 and C1 control
// characters (escape sequences: colours, cursor moves, a fake prompt) a '?'.
std::string one_line(std::string_view s);
// `vigilctl checks`: UNIT PROBE KIND TARGET STATE ROW LAST-FAILURE NEXT, one row per check
// object of the `checks` answer (protocol.hpp). ROW is the current run ("3 ok", "2 failed");
// LAST-FAILURE its age against `now_wall_ms` and its message, cut to the terminal's width;
// NEXT "in 4s", "now" while a check runs. STATE green when passing, red failing, yellow pending.
std::string render_checks(const Json &result, const Style &st, std::int64_t now_wall_ms);
// The outcome of `vigilctl check --run`: "web/liveness: passed in 12ms: status 200".
std::string render_check_run(const Json &result, const Style &st);

// "3 exited" -> "3", signals as "SIGTERM"; "-" when there is no last exit.
std::string format_exit(const Json &last_exit);

// What `vigilctl status NAME` shows of one unit, like `systemctl status`: a head line
// ("● web - Example web server", the dot coloured by state), then labelled lines (Unit,
// Command, State, Main PID, Restarts, Backoff, Last exit, Status, Memory/CPU, Probes; each
// left out when it has nothing to say), a blank line and the unit's last log lines
// ("HH:MM:SS stdout line", stderr red when coloured).
struct Detail {
    Json unit;                       // a status object of a `status` with detail:true
    Json checks;                     // the `checks` result ({"checks":[...]}); null: none
    Json log = Json::array();        // the `logs` stream items, oldest first
    std::optional<std::int64_t> rss; // bytes, read from /proc by vigilctl; nothing: not shown
    std::optional<std::int64_t> cpu; // milliseconds of CPU time, user and system
    std::int64_t now_ms = 0;         // wall clock, ms since the epoch ("since", "ago")
};
std::string render_status_detail(const Detail &d, const Style &st);
// argv as a shell would read it back: words quoted with '...' when they hold anything but
// [A-Za-z0-9_@%+=:,./-] (control characters shown as '?').
std::string shell_quote(const Json &argv);
// 12.3M, 512K, 1.1G, 800B.
std::string format_bytes(std::int64_t bytes);

} // namespace vigil::cli

// vigilctl's rendering of vigild's answers (pure: JSON in, text out).
#include <doctest/doctest.h>

#include <cstdlib>
#include <ctime>

#include "proc_figures.hpp"
#include "render.hpp"

#include <cstdlib>
#include <ctime>
#include <unistd.h>

using namespace vigil::cli;

TEST_SUITE("ctl") {

    TEST_CASE("durations read at a glance") {
        CHECK(format_duration(-5) == "0s");
        CHECK(format_duration(350) == "350ms");
        CHECK(format_duration(1250) == "1s250ms");
        CHECK(format_duration(12'000) == "12s");
        CHECK(format_duration(252'000) == "4m12s");
        CHECK(format_duration(3 * 3600'000 + 4 * 60'000 + 5'000) == "3h4m");
        CHECK(format_duration(2 * 86400'000LL + 3 * 3600'000 + 60'000) == "2d3h");
    }

    TEST_CASE("last exit: a code, a signal name, or a dash") {
        CHECK(format_exit(nullptr) == "-");
        CHECK(format_exit(Json{{"code", 3}}) == "3");
        CHECK(format_exit(Json{{"signal", "SIGTERM"}, {"signo", 15}}) == "SIGTERM");
        CHECK(format_exit(Json{{"signal", "TERM"}, {"signo", 15}}) == "SIGTERM");
        CHECK(format_exit(Json{{"signal", "40"}, {"signo", 40}}) == "signal 40");
    }

    TEST_CASE("status: info column, colour only when asked, tolerant of odd fields") {
        Json units = Json::array();
        units.push_back({{"name", "web"},
                         {"kind", "service"},
                         {"state", "backoff"},
                         {"goal", "up"},
                         {"pid", nullptr},
                         {"since_ms", 10},
                         {"restarts", 4},
                         {"last_exit", {{"code", 1}}},
                         {"backoff_ms", 2500},
                         {"ready", false}});
        units.push_back({{"name", "app"},
                         {"kind", "supervisor"},
                         {"state", "running"},
                         {"goal", "up"},
                         {"since_ms", 61'000},
                         {"restarts", 0}});
        units.push_back({{"name", 5}, {"state", nullptr}}); // garbage renders as dashes
        std::string plain = render_status(units, Style{false});
        CHECK(plain == "NAME  STATE    PID  UPTIME  RESTARTS  LAST-EXIT  INFO\n"
                       "web   backoff  -    -       4         1          restart in 2s500ms\n"
                       "app   running  -    1m1s    0         -          supervisor\n"
                       "-     -        -    -       -         -\n");
        std::string coloured = render_status(units, Style{true});
        CHECK(coloured.find("\033[31mbackoff") != std::string::npos);
        CHECK(coloured.find("\033[32mrunning") != std::string::npos);
        CHECK(render_status(Json::array(), Style{}) == "no units\n");
    }

    // The INFO column of one unit (the last column of its row).
    std::string info_of(const Json &u, std::size_t width = 0) {
        std::string t = render_status(Json::array({u}), Style{false, width});
        std::string row = t.substr(t.find('\n') + 1);
        row.pop_back(); // '\n'
        std::string head = t.substr(0, t.find('\n'));
        std::size_t at = head.find("INFO");
        return row.size() > at ? row.substr(at) : "";
    }

    TEST_CASE("status: an exited unit says how it ended, red only when it failed") {
        Json u = {{"name", "migrate"},
                  {"kind", "service"},
                  {"state", "exited"},
                  {"goal", "down"},
                  {"effective_goal", "down"},
                  {"since_ms", 100},
                  {"last_exit", {{"code", 0}}},
                  {"last_cause", "exited"},
                  {"last_reason", "exited with status 0"}};
        CHECK(info_of(u) == "exit 0");
        std::string t = render_status(Json::array({u}), Style{true});
        CHECK(t.find("\033[2mexited") != std::string::npos);
        u["last_exit"] = {{"code", 3}};
        CHECK(info_of(u) == "exit 3");
        t = render_status(Json::array({u}), Style{true});
        CHECK(t.find("\033[31mexited") != std::string::npos);
        u["last_exit"] = {{"signal", "SIGKILL"}, {"signo", 9}};
        CHECK(info_of(u) == "SIGKILL");
        CHECK(render_status(Json::array({u}), Style{false}).find("exited") != std::string::npos);
    }

    TEST_CASE("status: INFO says why a unit is not running") {
        Json u = {{"name", "web"},
                  {"kind", "service"},
                  {"state", "backoff"},
                  {"goal", "up"},
                  {"effective_goal", "up"},
                  {"restarts", 2},
                  {"since_ms", 100},
                  {"last_exit", {{"code", 3}}},
                  {"last_cause", "exited"},
                  {"backoff_ms", 27'000},
                  {"last_reason", "exited with status 3"}};
        CHECK(info_of(u) == "backoff after exit 3, restart in 27s");
        u["last_exit"] = {{"signal", "SIGKILL"}, {"signo", 9}};
        CHECK(info_of(u) == "backoff after SIGKILL, restart in 27s");
        // The last spawn error, in vigild's words.
        u["last_exit"] = nullptr;
        u["last_cause"] = "spawn_failed";
        u["last_reason"] = "exec pyhton3: No such file or directory";
        CHECK(info_of(u) ==
              "backoff after exec pyhton3: No such file or directory, restart in 27s");
        u["state"] = "stopped";
        u["backoff_ms"] = nullptr;
        CHECK(info_of(u) == "goal up, exec pyhton3: No such file or directory");
        u["last_cause"] = "start_timeout";
        u["last_reason"] = "did not start within 5s (exited with status 1)";
        CHECK(info_of(u) == "goal up, did not start within 5s (exited with status 1)");
        // Stopped on purpose: by a command, whatever the cause of the run before says.
        u["goal"] = u["effective_goal"] = "down";
        CHECK(info_of(u) == "stopped by command");
        u["last_cause"] = "command";
        CHECK(info_of(u) == "stopped by command");
        // Down because it ended by itself (a transient or temporary unit): its last exit is the
        // one recorded as the cause. After a stop, the exit is the stop's and the cause older.
        u["last_cause"] = "exited";
        u["last_exit"] = {{"code", 0}};
        u["last_reason"] = "exited with status 0";
        CHECK(info_of(u) == "exited 0");
        u["last_exit"] = {{"signal", "SIGKILL"}, {"signo", 9}};
        u["last_reason"] = "killed by SIGKILL";
        CHECK(info_of(u) == "killed by SIGKILL");
        u["last_exit"] = {{"signal", "SIGTERM"}, {"signo", 15}}; // the stop's
        CHECK(info_of(u) == "stopped by command");
        u["last_cause"] = "spawn_failed"; // a temporary unit that never ran
        u["last_exit"] = nullptr;
        u["last_reason"] = "exec pyhton3: No such file or directory";
        CHECK(info_of(u) == "exec pyhton3: No such file or directory");
        // Its supervisor is down: which start brings it back, not a command of its own.
        u["goal"] = u["effective_goal"] = "up";
        u["effective_goal"] = "down";
        u["held_down_by"] = "app";
        u["last_cause"] = "exited";
        u["last_exit"] = {{"code", 0}};
        CHECK(info_of(u) == "until app starts");
        u.erase("held_down_by");
        u["last_reason"] = "exited with status 3";
        u["goal"] = u["effective_goal"] = "up";
        u["last_cause"] = "exited"; // a clean exit is no failure
        u["last_exit"] = {{"code", 0}};
        CHECK(info_of(u) == "goal up");
        u["last_exit"] = {{"code", 2}};
        u["last_reason"] = "exited with status 2";
        CHECK(info_of(u) == "goal up, exited with status 2");
        // Waiting for an `after` sibling that is not up yet.
        Json w = {{"name", "api"},
                  {"kind", "service"},
                  {"state", "stopped"},
                  {"goal", "up"},
                  {"effective_goal", "up"},
                  {"last_cause", "none"},
                  {"waiting_for", {"db", "cache"}}};
        CHECK(info_of(w) == "waiting for db, cache");
        w["waiting_for"] = Json::array();
        CHECK(info_of(w) == "goal up");
        w["waiting_for"] = {1, nullptr}; // garbage is skipped
        CHECK(info_of(w) == "goal up");
    }

    TEST_CASE("status: the service's STATUS= text, on one line and without escapes") {
        Json u = {{"name", "db"},  {"kind", "service"}, {"state", "running"},
                  {"goal", "up"},  {"pid", 7},          {"since_ms", 5000},
                  {"ready", true}, {"restarts", 0},     {"status_text", "Accepting connections"}};
        CHECK(info_of(u) == "Accepting connections");
        u["ready"] = false;
        u["status_text"] = "Loading\tdata\n40%";
        CHECK(info_of(u) == "not ready, Loading data 40%");
        // A service must not drive the admin's terminal: C0 and C1 controls are replaced.
        u["status_text"] = "ok\033]0;pwned\007 \xc2\x9b"
                           "2J";
        CHECK(info_of(u) == "not ready, ok?]0;pwned? ?2J");
        u["state"] = "stopped";
        CHECK(info_of(u).find("ok") == std::string::npos); // an old STATUS= of a stopped unit
        u["status_text"] = 42;
        u["state"] = "running";
        CHECK(info_of(u) == "not ready");
    }

    TEST_CASE("status: on a terminal INFO is cut to the width, at a character") {
        Json u = {{"name", "db"},
                  {"kind", "service"},
                  {"state", "running"},
                  {"goal", "up"},
                  {"pid", 7},
                  {"since_ms", 5000},
                  {"ready", true},
                  {"restarts", 0},
                  {"status_text", "Replaying the write-ahead log: segment 4 of 17 (é)"}};
        std::string wide = render_status(Json::array({u}), Style{false, 0});
        CHECK(wide.find("(é)\n") != std::string::npos);
        std::string t = render_status(Json::array({u}), Style{false, 60});
        std::string row = t.substr(t.find('\n') + 1);
        row.pop_back();
        CHECK(row == "db    running  7    5s      0         -          Replaying the w…");
        CHECK(info_of(u, 60) == "Replaying the w…");
        // However narrow, the start of INFO stays (16 columns).
        CHECK(info_of(u, 10) == "Replaying the w…");
        // Exactly as wide as the terminal (49 columns before INFO, 50 of INFO): not cut; one
        // column less: cut.
        CHECK(info_of(u, 99) == "Replaying the write-ahead log: segment 4 of 17 (é)");
        CHECK(info_of(u, 98) == "Replaying the write-ahead log: segment 4 of 17 (…");
        u["status_text"] = "ééééééééééééééééééé";
        CHECK(info_of(u, 20) == "ééééééééééééééé…");
    }

    TEST_CASE("logs --since: ages, local times, dates and epoch seconds") {
        const std::int64_t now = 1'764'151'923'123; // 2025-11-26 10:12:03.123 UTC
        CHECK(parse_since("10m", now) == now - 600'000);
        CHECK(parse_since("1h30m", now) == now - 5'400'000);
        CHECK(parse_since("@1764151000", now) == 1'764'151'000'000);
        setenv("TZ", "UTC", 1);
        tzset();
        CHECK(parse_since("2025-11-26 10:00", now) == 1'764'151'200'000);
        CHECK(parse_since("2025-11-26T10:00:05", now) == 1'764'151'205'000);
        CHECK(parse_since("2025-11-26", now) == 1'764'115'200'000);
        CHECK(parse_since("10:00", now) == 1'764'151'200'000);
        for (const char *bad : {"", "x", "10", "25:00", "10:61", "2025-13-01", "2025-11-26 x", "@",
                                "@-5", "@12x", "10:00:00:00"})
            CHECK_MESSAGE(!parse_since(bad, now), bad);
    }

    TEST_CASE("logs: a stream of several units names each line's unit") {
        Json l = {{"unit", "web@2"}, {"line", "hello"}, {"stream", "stdout"}};
        l["time"] = 1764151923123;
        CHECK(render_log(l, Style{}, true).ends_with(":03.123 web@2[stdout]: hello\n"));
        CHECK(render_log(l, Style{}) == "hello\n");
        CHECK(render_log(l, Style{true}, true).ends_with("\033[2mweb@2[stdout]:\033[0m hello\n"));
    }

    TEST_CASE("status: a draining unit and a roll under way say so in the info column") {
        Json u{{"name", "web@2"},
               {"kind", "service"},
               {"state", "stopping"},
               {"goal", "up"},
               {"drain_ms", 3000},
               {"roll",
                {{"id", 1}, {"unit", "web"}, {"state", "running"}, {"done", 1}, {"total", 4}}}};
        CHECK(info_of(u) == "draining, 3s left, rolling restart 1/4");
        u["roll"]["state"] = "done"; // a roll that is over is not news in the table
        u["drain_ms"] = nullptr;
        CHECK(info_of(u).find("rolling") == std::string::npos);
        CHECK(info_of(u).find("draining") == std::string::npos);
    }

    TEST_CASE("status: processes left behind are listed in the info column") {
        Json u = {{"name", "d"},   {"kind", "service"}, {"state", "running"},
                  {"goal", "up"},  {"pid", 12},         {"since_ms", 1000},
                  {"ready", true}, {"restarts", 1},     {"left_behind", {4321, 4400}}};
        CHECK(render_status(Json::array({u}), Style{false}).find("left behind: 4321 4400") !=
              std::string::npos);
        u["left_behind"] = Json::array({"x", nullptr}); // garbage is skipped
        CHECK(render_status(Json::array({u}), Style{false}).find("left behind") ==
              std::string::npos);
    }

    TEST_CASE("tree: box drawing, aligned states") {
        Json leaf = {
            {"name", "api"}, {"state", "running"}, {"goal", "up"},     {"kind", "service"},
            {"ready", true}, {"pid", 7},           {"since_ms", 5000}, {"children", Json::array()}};
        Json other = leaf;
        other["name"] = "web";
        other["state"] = "stopped";
        other["goal"] = "down";
        other.erase("pid");
        Json app = {{"name", "app"},
                    {"state", "running"},
                    {"goal", "up"},
                    {"kind", "supervisor"},
                    {"children", {leaf, other}}};
        Json root = {{"name", "root"},
                     {"state", "running"},
                     {"goal", "up"},
                     {"kind", "supervisor"},
                     {"children", {app, leaf}}};
        CHECK(render_tree(Json{{"root", root}}, Style{}) ==
              "root       running   supervisor\n"
              "├─ app     running   supervisor\n"
              "│  ├─ api  running   pid 7  up 5s\n"
              "│  └─ web  stopped   stopped by command\n"
              "└─ api     running   pid 7  up 5s\n");
    }

    TEST_CASE("logs: pieces of a long line are joined; events show time, unit and kind") {
        CHECK(render_log(Json{{"line", "ab"}, {"continued", true}}, Style{}) == "ab");
        CHECK(render_log(Json{{"line", "cd"}, {"continued", false}}, Style{}) == "cd\n");
        CHECK(render_log(Json{{"line", "x"}, {"stream", "stderr"}}, Style{true}) ==
              "\033[31mx\033[0m\n");
        std::string e = render_event(Json{{"at_ms", 1500},
                                          {"unit", "db"},
                                          {"kind", "exited"},
                                          {"message", "exited with status 1"}},
                                     Style{});
        CHECK(e == "+1.500s  db            exited       exited with status 1\n");
    }

    TEST_CASE("results and reload summaries") {
        Json r = {{"results",
                   {{{"unit", "a"}, {"outcome", "ok"}, {"message", "a started"}},
                    {{"unit", "b"}, {"outcome", "already_running"}, {"message", ""}}}}};
        CHECK(render_results(r, Style{}) == "a: a started\nb: already running\n");
        CHECK(render_reload(
                  Json{{"added", {"x"}}, {"removed", Json::array()}, {"restarted", {"y", "z"}}},
                  Style{}) == "added: x\nrestarted: y, z\n");
        CHECK(render_reload(Json::object(), Style{}) == "reloaded: nothing changed\n");
    }

    TEST_CASE("checks: a row per check, the state coloured, the last failure's age and message "
              "cut to the terminal") {
        const std::int64_t now = 1'700'000'100'000;
        Json live{{"unit", "web"},
                  {"probe", "liveness"},
                  {"kind", "http"},
                  {"target", "http://127.0.0.1:8080/healthz"},
                  {"state", "passing"},
                  {"in_a_row", 3},
                  {"in_a_row_ok", true},
                  {"last_failure", {{"time", now - 65'400}, {"message", "status 500\x1b[2J"}}},
                  {"next_ms", 850}};
        Json dog{{"unit", "web"},           {"probe", "watchdog"}, {"kind", "watchdog"},
                 {"target", nullptr},       {"state", "off"},      {"in_a_row", 0},
                 {"last_failure", nullptr}, {"next_ms", nullptr}};
        Json result{{"checks", {live, dog}}};
        CHECK(render_checks(result, Style{}, now) ==
              "UNIT  PROBE     KIND      TARGET                         STATE    ROW   "
              "LAST-FAILURE              NEXT\n"
              "web   liveness  http      http://127.0.0.1:8080/healthz  passing  3 ok  "
              "1m5s ago: status 500?[2J  in 1s\n"
              "web   watchdog  watchdog  -                              off      -     "
              "-                         -\n");
        Style colour{true, 0};
        CHECK(render_checks(result, colour, now).find("\033[32mpassing\033[0m") !=
              std::string::npos);
        // A narrow terminal cuts LAST-FAILURE (to at least 16 columns), nothing else.
        Style narrow{false, 60};
        std::string cut = render_checks(result, narrow, now);
        CHECK(cut.find("1m5s ago: statu…  in 1s") != std::string::npos);
        CHECK(render_checks(Json{{"checks", Json::array()}}, Style{}, now) ==
              "no probes or watchdogs\n");
        CHECK(render_checks(Json("odd"), Style{}, now) == "no probes or watchdogs\n");
    }

    TEST_CASE("check --run: passed or failed, how long, and what the probe saw") {
        CHECK(render_check_run(Json{{"unit", "web"},
                                    {"probe", "liveness"},
                                    {"ok", false},
                                    {"message", "connect: connection refused"},
                                    {"duration_ms", 3}},
                               Style{}) == "web/liveness: failed in 3ms: connect: connection "
                                           "refused\n");
        CHECK(render_check_run(Json::object(), Style{}) == "-/-: failed\n");
    }

    // ---- status NAME: the detail view ------------------------------------------------------

    // A running service as `status` with detail:true shows it; times against now_ms.
    Detail web_detail() {
        Detail d;
        d.now_ms = 1'796'551'200'000; // 2026-12-06 10:00:00 UTC
        d.unit = {{"name", "web"},
                  {"kind", "service"},
                  {"state", "running"},
                  {"goal", "up"},
                  {"effective_goal", "up"},
                  {"ready", true},
                  {"pid", 4242},
                  {"spawned_pid", 4240},
                  {"since_ms", 182'000},
                  {"restarts", 2},
                  {"last_exit", {{"code", 3}}},
                  {"last_cause", "exited"},
                  {"last_reason", "exited with status 3"},
                  {"status_text", "Serving 12 clients"},
                  {"description", "Example web server"},
                  {"unit_file", "/etc/vigil/units/web.json"},
                  {"command", {"/usr/bin/python3", "-m", "http.server", "8080"}},
                  {"intensity", {{"max", 5}, {"period_ms", 10'000}, {"used", 2}}},
                  {"last_exit_by", nullptr}};
        return d;
    }

    struct Utc { // the detail view prints local times: UTC in these tests
        Utc() {
            setenv("TZ", "UTC", 1);
            tzset();
        }
    };

    TEST_CASE("status NAME: every line of a running service") {
        Utc utc;
        Detail d = web_detail();
        d.rss = 12'900'000;
        d.cpu = 1234;
        d.checks = Json::parse(R"({"checks":[{"unit":"web","probe":"liveness","kind":"http",
            "target":"http://127.0.0.1:8080/healthz","state":"passing","in_a_row":3,
            "successes":120,"failures":4,"last_failure":{"time":1796551080000,
            "message":"status 500"},"next_ms":800,"period_ms":10000,"threshold":3}]})");
        d.log = Json::parse(R"([
            {"unit":"web","seq":1,"time":1796551190000,"stream":"stdout","line":"GET /",
             "continued":false},
            {"unit":"web","seq":2,"time":1796551191000,"stream":"stderr","line":"par",
             "continued":true},
            {"unit":"web","seq":3,"time":1796551191000,"stream":"stderr","line":"tial\u001b[2J",
             "continued":false}])");
        CHECK(render_status_detail(d, Style{}) ==
              "● web - Example web server\n"
              "     Unit: /etc/vigil/units/web.json\n"
              "  Command: /usr/bin/python3 -m http.server 8080\n"
              "    State: running (ready) since 2026-12-06 09:56:58 UTC; 3m2s ago\n"
              " Main PID: 4242 (spawned 4240)\n"
              " Restarts: 2; intensity 3 of 5 left in 10s\n"
              "Last exit: exited with status 3\n"
              "   Status: \"Serving 12 clients\"\n"
              "   Memory: 12M (RSS)   CPU: 1.234s\n"
              "   Probes: liveness http http://127.0.0.1:8080/healthz passing (120 ok, 4 failed; "
              "last failure 2m ago: status 500)\n"
              "\n"
              "09:59:50 stdout GET /\n"
              "09:59:51 stderr partial?[2J\n");
        // On a terminal: the dot and the state in the state's colour, stderr lines red.
        std::string tty = render_status_detail(d, Style{true, 0});
        CHECK(tty.find("\033[32m●") == 0);
        CHECK(tty.find("\033[31mpartial?[2J\033[0m") != std::string::npos);
        // Without checks (a vigild without `checks`), /proc figures or log lines: left out.
        d.checks = nullptr;
        d.rss.reset();
        d.cpu.reset();
        d.log = Json::array();
        std::string bare = render_status_detail(d, Style{});
        CHECK(bare.find("Probes:") == std::string::npos);
        CHECK(bare.find("Memory:") == std::string::npos);
        CHECK(bare.back() == '\n');
        CHECK(bare.find("\n\n") == std::string::npos);
    }

    TEST_CASE("status NAME: backoff after an exec error, a kill by vigilctl, a stop") {
        Utc utc;
        Detail d = web_detail();
        d.unit["state"] = "backoff";
        d.unit["pid"] = d.unit["spawned_pid"] = nullptr;
        d.unit["backoff_ms"] = 1200;
        d.unit["last_exit"] = nullptr;
        d.unit["last_cause"] = "spawn_failed";
        d.unit["last_reason"] = "exec /usr/bin/pyhton3: No such file or directory";
        d.unit["since_ms"] = 800;
        std::string out = render_status_detail(d, Style{});
        CHECK(out.find("    State: backoff since 2026-12-06 09:59:59 UTC; 800ms ago\n") !=
              std::string::npos);
        CHECK(out.find("  Backoff: restart in 1s200ms\n") != std::string::npos);
        CHECK(out.find("Last exit: exec error: exec /usr/bin/pyhton3: No such file or "
                       "directory\n") != std::string::npos);
        CHECK(out.find("Main PID") == std::string::npos);
        CHECK(out.find("Status:") == std::string::npos); // an old STATUS= of a unit not running
        // Killed by the signal a vigilctl user sent, then stopped by another's command.
        d.unit["last_cause"] = "exited";
        d.unit["last_exit"] = {{"signal", "SIGKILL"}, {"signo", 9}};
        d.unit["last_exit_by"] = {
            {"command", "signal"}, {"signal", "SIGKILL"}, {"by", "vigilctl (uid 0 pid 42)"}};
        CHECK(render_status_detail(d, Style{})
                  .find("Last exit: killed by SIGKILL (sent by vigilctl signal, uid 0 pid 42)\n") !=
              std::string::npos);
        d.unit["last_exit"] = {{"signal", "SIGTERM"}, {"signo", 15}};
        d.unit["last_exit_by"] = {{"command", "stop"}, {"by", "vigilctl (uid 1000 pid 7)"}};
        CHECK(render_status_detail(d, Style{})
                  .find("Last exit: killed by SIGTERM (after vigilctl stop, uid 1000 pid 7)\n") !=
              std::string::npos);
        d.unit["last_exit"] = {{"code", 0}};
        d.unit["last_exit_by"] = {
            {"command", "signal"}, {"signal", "SIGHUP"}, {"by", "vigilctl (uid 0 pid 9)"}};
        CHECK(
            render_status_detail(d, Style{})
                .find(
                    "Last exit: exited with status 0 (after SIGHUP from vigilctl signal, uid 0 pid "
                    "9)\n") != std::string::npos);
        // A health failure says what failed.
        d.unit["last_exit_by"] = nullptr;
        d.unit["last_cause"] = "liveness";
        d.unit["last_reason"] = "liveness http 127.0.0.1:8080/healthz: status 500, 3 times";
        CHECK(
            render_status_detail(d, Style{})
                .find(
                    "Last exit: exited with status 0 (liveness http 127.0.0.1:8080/healthz: status "
                    "500, 3 times)\n") != std::string::npos);
    }

    TEST_CASE("status NAME: hostile text stays on its line; odd fields are left out") {
        Utc utc;
        Detail d = web_detail();
        d.unit["description"] = "web\n\033[2Jfake";
        d.unit["command"] = {"sh", "-c", "echo 'hi'; exit 1", "a\nb"};
        d.unit["intensity"] = "garbage";
        d.unit["restarts"] = "x";
        d.checks = Json::parse(R"({"checks":[{"probe":"readiness","kind":"tcp","target":"x\u001b",
            "state":"failing","last_failure":{"message":"refused"}}, 7,
            {"unit":"web","probe":"watchdog","kind":"watchdog","target":null,"state":"passing",
             "successes":12,"failures":0,"last_failure":null}]})");
        std::string out = render_status_detail(d, Style{});
        CHECK(out.find("● web - web ?[2Jfake\n") == 0);
        CHECK(out.find("  Command: sh -c 'echo '\\''hi'\\''; exit 1' 'a b'\n") !=
              std::string::npos);
        CHECK(out.find(" Restarts: -\n") != std::string::npos);
        CHECK(out.find("   Probes: readiness tcp x? failing (last failure: refused)\n"
                       "           - -\n"
                       "           watchdog passing (12 ok, 0 failed)\n") != std::string::npos);
        CHECK(render_status_detail(Detail{}, Style{}).find("● -\n") == 0); // no throw
    }

    TEST_CASE("shell quoting and byte sizes") {
        CHECK(shell_quote(Json{"ls", "-l", "a b", "", "x=1", "it's"}) ==
              "ls -l 'a b' '' x=1 'it'\\''s'");
        CHECK(shell_quote(nullptr).empty());
        CHECK(format_bytes(800) == "800B");
        CHECK(format_bytes(2048) == "2.0K");
        CHECK(format_bytes(12'900'000) == "12M");
        CHECK(format_bytes(5'000'000) == "4.8M");
        CHECK(format_bytes(3LL << 30) == "3.0G");
    }

    TEST_CASE("/proc figures: RSS from statm, CPU from stat's utime + stime") {
        // The command name may hold spaces and ')': fields count from the last ')'.
        std::string stat = "4242 (we) b) S 1 4242 4242 0 -1 4194560 100 0 0 0 "
                           "250 73 0 0 20 0 1 0 12345 1000000 300 18446744073709551615";
        auto f = parse_proc_figures(stat, "2500 300 200 1 0 150 0\n", 100, 4096);
        REQUIRE(f);
        CHECK(f->cpu_ms == 3230);
        CHECK(f->rss_bytes == 300u * 4096);
        CHECK_FALSE(parse_proc_figures("4242 (x S 1", "1 2", 100, 4096));
        CHECK_FALSE(parse_proc_figures(stat, "", 100, 4096));
        CHECK_FALSE(parse_proc_figures(stat, "1 x", 100, 4096));
        CHECK_FALSE(parse_proc_figures(stat, "1 2", 0, 4096));
        CHECK_FALSE(parse_proc_figures(stat, "1 99999999999999999999", 100, 4096)); // too big
        // Not this process's pid namespace: nothing is read.
        CHECK_FALSE(read_proc_figures(getpid(), "pid:[1]"));
        CHECK_FALSE(read_proc_figures(-1, "pid:[1]"));
        char own[64];
        ssize_t n = readlink("/proc/self/ns/pid", own, sizeof own);
        REQUIRE(n > 0);
        auto self = read_proc_figures(getpid(), std::string(own, static_cast<std::size_t>(n)));
        REQUIRE(self);
        CHECK(self->rss_bytes > 0);
    }

} // TEST_SUITE

// vigilctl's rendering of vigild's answers (pure: JSON in, text out).
#include <doctest/doctest.h>

#include <cstdlib>
#include <ctime>

#include "render.hpp"

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
        // Stopped on purpose: nothing to explain, whatever the last cause says.
        u["goal"] = u["effective_goal"] = "down";
        CHECK(info_of(u).empty());
        u["last_cause"] = "command";
        CHECK(info_of(u).empty());
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
        CHECK(render_tree(Json{{"root", root}}, Style{}) == "root       running   supervisor\n"
                                                            "├─ app     running   supervisor\n"
                                                            "│  ├─ api  running   pid 7  up 5s\n"
                                                            "│  └─ web  stopped\n"
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
} // TEST_SUITE

// JSON shapes (status, record, tree, results) and unit patterns, against the real core
// driven by tests/support/sim (pure: no processes, no clock).
#include <doctest/doctest.h>

#include <csignal>

#include "render.hpp"
#include "sim.hpp"
#include "vigil/ctl/shapes.hpp"

using namespace vigil;
using namespace vigil::ctl;
using namespace vigil::test;
using core::Kind;
using core::Strategy;

namespace {

// root ─ db
//      └ app (supervisor) ─ api, web-1, web-2
//      └ web-x
core::TreeSpec sample() {
    return root(Strategy::OneForOne,
                {service("db"),
                 supervisor("app", Strategy::OneForOne,
                            {service("api"), service("web-1"), service("web-2")}),
                 service("web-x")});
}

std::vector<std::string> names(const core::Core &c, const std::vector<ChildId> &ids) {
    std::vector<std::string> out;
    for (ChildId id : ids)
        out.emplace_back(c.status(id).name);
    return out;
}

using Names = std::vector<std::string>;

} // namespace

TEST_SUITE("ctl") {

    TEST_CASE("status_json of a hand-made status has every documented field") {
        core::ChildStatus s{};
        s.id = ChildId{3};
        s.name = "web";
        s.kind = Kind::Service;
        s.state = core::ChildState::Backoff;
        s.goal = core::Goal::Up;
        s.incarnation = Incarnation{4};
        s.since = at_ms(1000);
        s.restarts = 3;
        s.last_exit = core::ExitStatus::killed(SIGSEGV);
        s.backoff_until = at_ms(2500);
        Json j = status_json(s, at_ms(2000), "app");
        CHECK(j["name"] == "web");
        CHECK(j["kind"] == "service");
        CHECK(j["parent"] == "app");
        CHECK(j["state"] == "backoff");
        CHECK(j["goal"] == "up");
        CHECK(j["pid"].is_null());
        CHECK(j["spawned_pid"].is_null());
        CHECK(j["incarnation"] == 4);
        CHECK(j["since_ms"] == 1000);
        CHECK(j["restarts"] == 3);
        CHECK(j["last_exit"] == Json{{"signal", "SIGSEGV"}, {"signo", SIGSEGV}});
        CHECK(j["backoff_ms"] == 500);
        CHECK(j["ready"] == false);
        CHECK(j["removed"] == false);
        CHECK(j["effective_goal"] == "up");
        CHECK(j["held_down_by"].is_null());
        CHECK(j["last_cause"] == "none");
        CHECK(j["last_reason"] == "");
        CHECK(j["exiting"] == false);
        CHECK(j["status_text"] == "");
        CHECK(j["watchdog_ms"].is_null());
        CHECK(j["left_behind"] == Json::array());
        CHECK(j["drain_ms"].is_null());
        CHECK(j["roll"].is_null());
        CHECK(j.size() == 24);
        // Under a supervisor whose goal is down, the child keeps its own goal but heads
        // nowhere.
        j = status_json(s, at_ms(2000), "app", "app");
        CHECK(j["goal"] == "up");
        CHECK(j["effective_goal"] == "down");
        CHECK(j["held_down_by"] == "app");

        s.state = core::ChildState::Running;
        s.pid = Pid{1234};
        s.main_pid = Pid{1240}; // MAINPID= moved the main role
        s.ready = true;
        s.last_exit = core::ExitStatus::exited(2);
        s.last_cause = core::Cause::Exited;
        s.last_reason = "exited with status 2";
        s.goal = core::Goal::Down;
        s.status_text = "busy";
        s.watchdog = Duration{30'000};
        j = status_json(s, at_ms(2000));
        CHECK(j["parent"].is_null());
        CHECK(j["pid"] == 1240);
        CHECK(j["spawned_pid"] == 1234);
        CHECK(j["last_cause"] == "exited");
        CHECK(j["last_reason"] == "exited with status 2");
        CHECK(j["status_text"] == "busy");
        CHECK(j["watchdog_ms"] == 30'000);
        CHECK(j["last_exit"] == Json{{"code", 2}});
        CHECK(j["backoff_ms"].is_null()); // only while in backoff
        CHECK(j["goal"] == "down");
        CHECK(j["effective_goal"] == "down");
        CHECK(j["ready"] == true);

        // Draining, in a roll that stopped elsewhere.
        s.state = core::ChildState::Stopping;
        s.drain_until = at_ms(5000);
        s.roll = core::RollStatus{7,     "web",   core::RollPhase::Stopped,
                                  2,     4,       1,
                                  false, "web@3", "exited with status 1 before it was ready"};
        j = status_json(s, at_ms(2000));
        CHECK(j["drain_ms"] == 3000);
        CHECK(j["roll"] == Json{{"id", 7},
                                {"unit", "web"},
                                {"state", "stopped"},
                                {"done", 2},
                                {"total", 4},
                                {"max_unavailable", 1},
                                {"in_step", false},
                                {"at", "web@3"},
                                {"reason", "exited with status 1 before it was ready"}});
        s.roll->at.clear();
        CHECK(status_json(s, at_ms(2000))["roll"]["at"].is_null());
    }

    TEST_CASE("record_json, command_result_json and reload_json") {
        core::Record r{at_ms(5000), ChildId{2}, "db", core::RecordKind::Exited,
                       "exited with status 1"};
        Json j = record_json(r);
        CHECK(j == Json{{"at_ms", 5000},
                        {"unit", "db"},
                        {"child", 2},
                        {"kind", "exited"},
                        {"message", "exited with status 1"},
                        {"cause", "none"}});
        // The facts as fields: a script never parses the message.
        r.cause = core::Cause::Liveness;
        r.exit = core::ExitStatus::exited(1);
        r.pid = Pid{77};
        r.incarnation = Incarnation{3};
        r.signal = SIGTERM;
        r.delay = Duration{400};
        r.subject = "liveness http 127.0.0.1:8080/healthz";
        j = record_json(r);
        CHECK(j["cause"] == "liveness");
        CHECK(j["exit"] == Json{{"code", 1}});
        CHECK(j["pid"] == 77);
        CHECK(j["incarnation"] == 3);
        CHECK(j["signal"] == "SIGTERM");
        CHECK(j["delay_ms"] == 400);
        CHECK(j["subject"] == "liveness http 127.0.0.1:8080/healthz");
        Json w = record_json(r, at_ms(6000), 1'700'000'000'000);
        CHECK(w["time"] == 1'699'999'999'000);

        core::CommandResult cr{core::CommandOutcome::AlreadyRunning, "db is already running"};
        CHECK(command_result_json("db", cr) == Json{{"unit", "db"},
                                                    {"outcome", "already_running"},
                                                    {"message", "db is already running"}});

        core::ReconfigureResult rr;
        rr.added = {"new"};
        rr.restarted = {"web"};
        Json rl = reload_json(rr, {"units/x.json:1:1: bad"});
        CHECK(rl["added"] == Json{"new"});
        CHECK(rl["removed"] == Json::array());
        CHECK(rl["restarted"] == Json{"web"});
        CHECK(rl["updated"] == Json::array());
        CHECK(rl["rolling"] == Json::array());
        CHECK(rl["diagnostics"][0] == "units/x.json:1:1: bad");
    }

    TEST_CASE("every enum has a protocol name") {
        for (int i = 0; i <= static_cast<int>(core::RecordKind::Exit); ++i)
            CHECK(std::string(record_kind_name(static_cast<core::RecordKind>(i))) != "unknown");
        for (int i = 0; i <= static_cast<int>(core::Cause::Notify); ++i)
            CHECK((i == 0 || std::string(core::to_string(static_cast<core::Cause>(i))) != "none"));
        for (int i = 0; i <= static_cast<int>(core::ChildState::Backoff); ++i)
            CHECK(std::string(state_name(static_cast<core::ChildState>(i))) != "unknown");
        for (int i = 0; i <= static_cast<int>(core::CommandOutcome::ShuttingDown); ++i)
            CHECK(std::string(outcome_name(static_cast<core::CommandOutcome>(i))) != "unknown");
        CHECK(std::string(record_kind_name(core::RecordKind::SpawnFailed)) == "spawn_failed");
    }

    TEST_CASE("glob_match is fnmatch") {
        CHECK(is_glob("web-*"));
        CHECK(is_glob("db-[12]"));
        CHECK(is_glob("a?"));
        CHECK_FALSE(is_glob("web"));
        CHECK(glob_match("web-*", "web-1"));
        CHECK_FALSE(glob_match("web-*", "web"));
        CHECK(glob_match("db-[12]", "db-2"));
        CHECK_FALSE(glob_match("db-[12]", "db-3"));
        CHECK(glob_match("?pi", "api"));
    }

    TEST_CASE("resolve_targets on a node table: order, duplicates, removed nodes, errors") {
        // 0 root {1 db, 2 app {3 api, 4 web-1}, 5 gone(removed)}
        const std::vector<ChildId> root_children{ChildId{1}, ChildId{2}, ChildId{5}};
        const std::vector<ChildId> app_children{ChildId{3}, ChildId{4}};
        std::vector<TargetNode> n(6);
        n[0] = {"root", Kind::Supervisor, root_children, false};
        n[1] = {"db", Kind::Service, {}, false};
        n[2] = {"app", Kind::Supervisor, app_children, false};
        n[3] = {"api", Kind::Service, {}, false};
        n[4] = {"web-1", Kind::Service, {}, false};
        n[5] = {"gone", Kind::Service, {}, true};
        std::string err;
        auto ids = [](std::vector<ChildId> v) {
            std::vector<std::uint32_t> out;
            for (auto i : v)
                out.push_back(i.value);
            return out;
        };
        using V = std::vector<std::uint32_t>;
        CHECK(ids(resolve_targets(n, {}, Expand::Named, &err)) == V{1, 2, 3, 4});
        CHECK(ids(resolve_targets(n, {}, Expand::Services, &err)) == V{1, 3, 4});
        CHECK(ids(resolve_targets(n, {"web-1", "app"}, Expand::Named, &err)) == V{2});
        CHECK(ids(resolve_targets(n, {"web-1", "app"}, Expand::Subtree, &err)) == V{2, 3, 4});
        CHECK(ids(resolve_targets(n, {"app", "db"}, Expand::Services, &err)) == V{1, 3, 4});
        CHECK(ids(resolve_targets(n, {"*"}, Expand::Named, &err)) == V{1, 2});
        CHECK(ids(resolve_targets(n, {"root"}, Expand::Services, &err)) == V{1, 3, 4});
        CHECK(ids(resolve_targets(n, {"a*", "api"}, Expand::Subtree, &err)) == V{2, 3, 4});
        CHECK(resolve_targets(n, {"gone"}, Expand::Named, &err).empty());
        CHECK(err == "no unit named 'gone'");
        CHECK(resolve_targets(n, {"db", "x-*"}, Expand::Named, &err).empty());
        CHECK(err == "no unit matches 'x-*'");
    }

    TEST_CASE("resolve_targets: an instanced unit's name or a glob of it stands for its "
              "instances; the unmatched pattern is reported") {
        // 0 root {1 web@1, 2 web@2 (instances of web), 3 web@3 (a unit of its own), 4 db}
        const std::vector<ChildId> root_children{ChildId{1}, ChildId{2}, ChildId{3}, ChildId{4}};
        std::vector<TargetNode> n(5);
        n[0] = {"root", Kind::Supervisor, root_children, false};
        n[1] = {"web@1", Kind::Service, {}, false, "web"};
        n[2] = {"web@2", Kind::Service, {}, false, "web"};
        n[3] = {"web@3", Kind::Service, {}, false};
        n[4] = {"db", Kind::Service, {}, false};
        std::string err, unmatched;
        auto ids = [](std::vector<ChildId> v) {
            std::vector<std::uint32_t> out;
            for (auto i : v)
                out.push_back(i.value);
            return out;
        };
        using V = std::vector<std::uint32_t>;
        CHECK(ids(resolve_targets(n, {"web"}, Expand::Named, &err)) == V{1, 2});
        CHECK(ids(resolve_targets(n, {"we?"}, Expand::Named, &err)) == V{1, 2});
        CHECK(ids(resolve_targets(n, {"web@*"}, Expand::Named, &err)) == V{1, 2, 3});
        CHECK(ids(resolve_targets(n, {"web@2", "web"}, Expand::Named, &err)) == V{1, 2});
        CHECK(resolve_targets(n, {"db", "wbe"}, Expand::Named, &err, &unmatched).empty());
        CHECK(err == "no unit named 'wbe'");
        CHECK(unmatched == "wbe");
    }

    TEST_CASE("status, tree and patterns against a running core") {
        Sim sim{sample()};
        sim.start_all();
        sim.now = at_ms(10'000);
        sim.exit("web-2", 3); // restarted at once (test trees have no backoff)
        const core::Core &c = sim.core;
        std::string err;

        CHECK(names(c, resolve_targets(c, {}, &err)) ==
              Names{"db", "app", "api", "web-1", "web-2", "web-x"});
        CHECK(names(c, resolve_targets(c, {"web-*"}, &err)) == Names{"web-1", "web-2", "web-x"});
        CHECK(names(c, resolve_targets(c, {"app", "web-1"}, &err)) == Names{"app"});
        CHECK(names(c, resolve_targets(c, {"app"}, &err, Expand::Services)) ==
              Names{"api", "web-1", "web-2"});
        CHECK(names(c, resolve_targets(c, {"app"}, &err, Expand::Subtree)) ==
              Names{"app", "api", "web-1", "web-2"});
        CHECK(resolve_targets(c, {"nope"}, &err).empty());
        CHECK(err == "no unit named 'nope'");
        // The single-name fast path falls back to the table when the name is a unit's: here
        // web-1 and web-2 play instances of a unit "web" (the daemon says so from the files).
        UnitOf unit_of = [&](ChildId id) -> std::string_view {
            std::string_view name = c.spec(id).name;
            return name == "web-1" || name == "web-2" ? "web" : "";
        };
        std::string unmatched;
        CHECK(names(c, resolve_targets(c, {"web"}, &err, Expand::Named, unit_of)) ==
              Names{"web-1", "web-2"});
        CHECK(names(c, resolve_targets(c, {"web-1"}, &err, Expand::Named, unit_of)) ==
              Names{"web-1"});
        CHECK(resolve_targets(c, {"web"}, &err).empty()); // without unit_of: no such unit
        CHECK(resolve_targets(c, {"wbe"}, &err, Expand::Named, unit_of, &unmatched).empty());
        CHECK(unmatched == "wbe");

        ChildId w2 = *c.find("web-2");
        Json s = status_json(c, w2, sim.now);
        CHECK(s["name"] == "web-2");
        CHECK(s["parent"] == "app");
        CHECK(s["state"] == "running");
        CHECK(s["goal"] == "up");
        CHECK(s["pid"] == sim.pid("web-2").value);
        CHECK(s["restarts"] == 1);
        CHECK(s["last_exit"] == Json{{"code", 3}});
        CHECK(s["incarnation"] == 2);

        std::vector<ChildId> two{*c.find("db"), w2};
        Json st = status_result_json(c, two, sim.now);
        REQUIRE(st["units"].size() == 2);
        CHECK(st["units"][0]["name"] == "db");
        CHECK(st["units"][0]["parent"] == "root");

        Json t = tree_json(c, sim.now)["root"];
        CHECK(t["name"] == "root");
        CHECK(t["kind"] == "supervisor");
        REQUIRE(t["children"].size() == 3);
        CHECK(t["children"][0]["name"] == "db");
        CHECK(t["children"][0]["children"] == Json::array());
        CHECK(t["children"][1]["name"] == "app");
        REQUIRE(t["children"][1]["children"].size() == 3);
        CHECK(t["children"][1]["children"][0]["name"] == "api");
        CHECK(t["children"][1]["children"][2]["name"] == "web-2");
        CHECK(t["children"][2]["name"] == "web-x");
    }

    TEST_CASE("append_status writes the bytes of status_json with vigild's counters") {
        // Every kind of value: supervisors held down, a signal exit, a backoff, a watchdog,
        // leftovers, and status texts that need escapes or are not UTF-8.
        core::TreeSpec spec = root(
            Strategy::OneForOne,
            {service("db",
                     [](core::ChildSpec &s) {
                         s.backoff = {Duration{500}, Duration{4000}, 2.0, 0.0, Duration{60'000}};
                     }),
             supervisor("app", Strategy::OneForOne,
                        {service("api", wait_ready()), service("web-1"), service("web-2")}),
             service("web-x", [](core::ChildSpec &s) { s.watchdog = Duration{700}; })});
        Sim sim{spec};
        sim.start_all();
        sim.now = at_ms(10'000);
        const core::Core &c = sim.core;
        auto inc = [&](const char *n) { return c.status(*c.find(n)).incarnation; };
        sim.inject(core::StatusText{*c.find("web-x"), inc("web-x"),
                                    "say \"hi\"\\\n\t\x01 \xff\xfe ok \xc3"});
        sim.inject(core::StatusText{*c.find("web-1"), inc("web-1"), "caf\xc3\xa9 \x7f /"});
        sim.inject(core::LeftBehind{*c.find("web-1"), {Pid{4242}, Pid{4243}}});
        sim.exit_by_signal("db", SIGSEGV); // ran long enough: restarted at once
        sim.exit_by_signal("db", SIGSEGV); // at once again: waits for its backoff
        sim.command(core::CommandKind::Stop, "app");
        sim.now = at_ms(10'100);
        std::vector<ChildId> ids;
        for (std::uint32_t i = 0; i < c.size(); ++i)
            ids.push_back(ChildId{i});
        std::uint64_t k = 0;
        for (ChildId id : ids) {
            CAPTURE(c.status(id).name);
            StatusExtras x{k, k * 7, k * 1'000'000'007ULL, {}};
            if (k % 2 == 1) x.waiting_for = {"db", "a \"b\""};
            ++k;
            Json j = status_json(c, id, sim.now);
            j["log_lines_failed"] = x.log_lines_failed;
            j["forward_dropped"] = x.forward_dropped;
            j["probe_failures"] = x.probe_failures;
            j["waiting_for"] = x.waiting_for;
            std::string out;
            append_status(out, c, id, sim.now, x);
            CHECK(out == encode_item(j));
            // brief: the same object without the keys a table does not read, nor the ones at
            // their default; and the table reads the same from it.
            std::string brief;
            append_status(brief, c, id, sim.now, x, true);
            Json want = j;
            for (const char *gone : {"forward_dropped", "incarnation", "log_lines_failed", "parent",
                                     "probe_failures", "spawned_pid", "watchdog_ms"})
                want.erase(gone);
            for (auto it = want.begin(); it != want.end();) {
                const bool fixed =
                    it.key() == "restarts" || it.key() == "since_ms" || it.key() == "last_cause";
                const bool at_default = it->is_null() || (it->is_boolean() && !it->get<bool>()) ||
                                        (it->is_string() && it->get<std::string>().empty()) ||
                                        (it->is_array() && it->empty());
                it = !fixed && at_default ? want.erase(it) : std::next(it);
            }
            CHECK(brief == encode_item(want));
            Json one = Json::array({Json::parse(brief)}), full = Json::array({j});
            for (std::size_t width : {0u, 60u})
                CHECK(cli::render_status(one, {false, width}) ==
                      cli::render_status(full, {false, width}));
            CHECK(cli::render_status(one, {true, 0}) == cli::render_status(full, {true, 0}));
        }
        CHECK(c.status(*c.find("db")).state == core::ChildState::Backoff);
        CHECK(status_json(c, *c.find("api"), sim.now)["held_down_by"] == "app");
    }

    TEST_CASE("one exact name resolves like the table walk, without one") {
        // resolve_targets(core, ...) takes a shortcut for a single exact name (looked up by
        // name, only its subtree walked): it must answer what the table walk answers, for
        // every unit, every expansion, a removed unit and a name that does not exist.
        auto tree = [](bool with_tmp) {
            std::vector<NodeDef> app{
                service("api"),
                supervisor("inner", Strategy::OneForOne, {service("deep-1"), service("deep-2")})};
            if (with_tmp) app.push_back(service("tmp", temporary()));
            return root(
                Strategy::OneForOne,
                {service("db"), supervisor("app", Strategy::OneForOne, app), service("web-x")});
        };
        Sim sim{tree(true)};
        sim.start_all();
        const ChildId tmp = sim.id("tmp");
        sim.reload(tree(false)); // removed by reload
        const core::Core &c = sim.core;
        REQUIRE(c.status(tmp).removed);
        std::vector<TargetNode> nodes(c.size());
        for (std::uint32_t i = 0; i < nodes.size(); ++i) {
            const core::ChildSpec &spec = c.spec(ChildId{i});
            nodes[i] = {spec.name, spec.kind, spec.children, c.status(ChildId{i}).removed};
        }
        for (const char *name :
             {"root", "db", "app", "api", "inner", "deep-1", "deep-2", "tmp", "web-x", "nope"}) {
            for (Expand e : {Expand::Named, Expand::Subtree, Expand::Services}) {
                CAPTURE(name);
                CAPTURE(static_cast<int>(e));
                std::string err_fast = "unset", err_table = "unset";
                auto fast = resolve_targets(c, {name}, &err_fast, e);
                auto table = resolve_targets(nodes, {name}, e, &err_table);
                CHECK(names(c, fast) == names(c, table));
                CHECK(err_fast == err_table);
            }
        }
        CHECK(names(c, resolve_targets(c, {"app"}, nullptr, Expand::Subtree)) ==
              Names{"app", "api", "inner", "deep-1", "deep-2"});
        CHECK(names(c, resolve_targets(c, {"inner"}, nullptr, Expand::Services)) ==
              Names{"deep-1", "deep-2"});
    }

    TEST_CASE("a deep tree is walked without recursion") {
        // A chain of 5000 nested supervisors: recursion per level would be fine here, but the
        // table walk must not depend on it.
        core::TreeSpec spec;
        spec.nodes.resize(5001);
        for (std::uint32_t i = 0; i <= 5000; ++i) {
            auto &n = spec.nodes[i];
            n.name = i == 0 ? "root" : "s" + std::to_string(i);
            n.kind = i == 5000 ? Kind::Service : Kind::Supervisor;
            if (i > 0) n.parent = ChildId{i - 1};
            if (i < 5000) n.children = {ChildId{i + 1}};
        }
        std::vector<TargetNode> nodes(spec.nodes.size());
        for (std::size_t i = 0; i < nodes.size(); ++i)
            nodes[i] = {spec.nodes[i].name, spec.nodes[i].kind, spec.nodes[i].children, false};
        std::string err;
        auto s = resolve_targets(nodes, {"s1"}, Expand::Services, &err);
        REQUIRE(s.size() == 1);
        CHECK(s[0].value == 5000);
    }

} // TEST_SUITE

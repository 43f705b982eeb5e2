// dayone_test.cpp: what a person sees on the first day with vigil: why a unit waits (blocking
// follows `after`), ended services that stay in view (`exited`), a restart of several units in
// start order, and what status says after a stop by command.
#include <doctest/doctest.h>

#include "sim.hpp"

using namespace vigil;
using namespace vigil::core;
using namespace vigil::test;
using namespace std::chrono_literals;

using Names = std::vector<std::string>;

namespace {
Tweak backoff(Duration initial) {
    return [=](ChildSpec &s) {
        s.backoff.initial = initial;
        s.backoff.jitter = 0;
    };
}
Names names(const Sim &sim, const std::vector<ChildId> &ids) {
    Names out;
    for (ChildId id : ids)
        out.push_back(sim.core.status(id).name);
    return out;
}
} // namespace

TEST_SUITE("core") {

    TEST_CASE("stop by command: status says the command stopped it, with its exit") {
        Sim sim{root(Strategy::OneForOne, {service("a")})};
        sim.start_all();
        sim.exit("a", 1); // an earlier crash: its cause must not linger
        CHECK(sim.status("a").last_cause == Cause::Exited);
        CHECK(sim.command(CommandKind::Stop, "a").outcome == CommandOutcome::Ok);
        const ChildStatus st = sim.status("a");
        CHECK(st.state == ChildState::Stopped);
        CHECK(st.last_cause == Cause::Command);
        CHECK(st.last_reason.find("stopped by stop command") == 0);
        REQUIRE(st.last_exit);
        CHECK(st.last_exit->signaled);
    }

    TEST_CASE("stop by command during a backoff: status says the command stopped it") {
        Sim sim{root(Strategy::OneForOne, {service("a", backoff(1s))})};
        sim.start_all();
        sim.exit("a", 3);
        REQUIRE(sim.status("a").state == ChildState::Backoff);
        CHECK(sim.command(CommandKind::Stop, "a").outcome == CommandOutcome::Ok);
        const ChildStatus st = sim.status("a");
        CHECK(st.state == ChildState::Stopped);
        CHECK(st.last_cause == Cause::Command);
        CHECK(st.last_reason == "stopped by stop command (pending restart cancelled)");
        REQUIRE(st.last_exit);
        CHECK(st.last_exit->code == 3);
    }

    // ---- blocking follows `after`

    // A running supervisor starts units a reload added; `a` fails its start and is retried.
    TreeSpec added_units(bool parallel) {
        TreeSpec t = root(Strategy::OneForOne,
                          {service("x"),
                           service("a",
                                   [](ChildSpec &s) {
                                       s.wait_ready = true;
                                       backoff(1s)(s);
                                   }),
                           service("b"), service("c"), service("d"), service("e", wait_ready())},
                          [=](ChildSpec &s) {
                              s.intensity = 100;
                              s.parallel = parallel;
                          });
        set_after(t, "c", {"a"});
        set_after(t, "d", {"c"});
        return t;
    }

    TEST_CASE("blocking: a child retrying a failed start holds back only what is after it") {
        Sim sim{root(Strategy::OneForOne, {service("x")}, intensity(100, 10s))};
        sim.start_all();
        sim.reload(added_units(false));
        CHECK(sim.state("a") == ChildState::Starting);
        CHECK(sim.state("b") == ChildState::Stopped); // a merely starting holds the sequence
        CHECK(names(sim, sim.core.waiting_for(sim.id("b"))) == Names{"a"});
        sim.clear_log();
        sim.exit("a", 1); // before it was ready: a failed start, retried after 1 s
        CHECK(sim.state("a") == ChildState::Backoff);
        // b and e do not depend on a: they start, one at a time (e waits for readiness)
        CHECK(sim.starts() == Names{"b", "e"});
        CHECK(sim.state("c") == ChildState::Stopped);
        CHECK(sim.state("d") == ChildState::Stopped);
        CHECK(names(sim, sim.core.waiting_for(sim.id("c"))) == Names{"a"});
        CHECK(names(sim, sim.core.waiting_for(sim.id("d"))) == Names{"c"});
        sim.ready("e");
        sim.advance(1s); // a starts again and is not ready yet: c and d still wait (transitive)
        CHECK(sim.state("a") == ChildState::Starting);
        CHECK(sim.state("c") == ChildState::Stopped);
        CHECK(sim.state("d") == ChildState::Stopped);
        sim.exit("a", 1);
        sim.advance(2s);
        sim.clear_log();
        sim.ready("a");
        CHECK(sim.starts() == Names{"c", "d"});
        CHECK(sim.state("d") == ChildState::Running);
        CHECK(sim.core.waiting_for(sim.id("d")).empty());
    }

    TEST_CASE("blocking: a child that starts merely slowly still holds a sequential start") {
        Sim sim{root(Strategy::OneForOne, {service("a", wait_ready()), service("b")})};
        sim.start_all();
        CHECK(sim.starts() == Names{"a"});
        CHECK(names(sim, sim.core.waiting_for(sim.id("b"))) == Names{"a"});
        sim.ready("a");
        CHECK(sim.starts() == Names{"a", "b"});
    }

    TEST_CASE("blocking: a parallel supervisor starts the independent ones at once, as before") {
        Sim sim{root(Strategy::OneForOne, {service("x")}, intensity(100, 10s))};
        sim.start_all();
        sim.clear_log();
        sim.reload(added_units(true));
        CHECK(sim.starts() == Names{"a", "b", "e"});
        sim.exit("a", 1);
        CHECK(sim.state("c") == ChildState::Stopped);
        CHECK(names(sim, sim.core.waiting_for(sim.id("c"))) == Names{"a"});
        sim.advance(1s);
        sim.ready("a");
        CHECK(sim.state("d") == ChildState::Running);
    }

    TEST_CASE("blocking: a start failure while the supervisor starts still rolls it back") {
        TreeSpec t = root(Strategy::OneForOne, {service("a", wait_ready()), service("b")});
        Sim sim{std::move(t)};
        sim.start_all();
        sim.exit("a", 1);
        CHECK(sim.spawns("b") == 0);
        CHECK(sim.exit_status == exit_start_failed);
    }

    // ---- moving units

    TEST_CASE("move: a unit moved to another supervisor is stopped, then started under it") {
        Sim sim{root(Strategy::OneForOne,
                     {supervisor("s1", Strategy::OneForOne, {service("w")}, intensity(0, 60s)),
                      supervisor("s2", Strategy::OneForOne, {service("z")}, intensity(0, 60s))},
                     intensity(0, 60s))};
        sim.exit_after_signal("w", 300ms);
        sim.start_all();
        sim.clear_log();
        auto r = sim.reload(root(Strategy::OneForOne,
                                 {supervisor("s1", Strategy::OneForOne, {}, intensity(0, 60s)),
                                  supervisor("s2", Strategy::OneForOne,
                                             {service("z"), service("w")}, intensity(0, 60s))},
                                 intensity(0, 60s)));
        CHECK(r.removed == Names{"w"});
        CHECK(r.added == Names{"w"});
        CHECK(sim.starts().empty()); // the old process is still stopping
        sim.advance(300ms);
        CHECK(sim.starts() == Names{"w"});
        CHECK(sim.when("spawn w") == at_ms(300));
        CHECK(sim.state("w") == ChildState::Running);
        CHECK(sim.spawns("w") == 2); // (the fake process table reuses pids)
        CHECK(*sim.status("w").parent == sim.id("s2"));
        CHECK(sim.state("s1") == ChildState::Running); // not counted: nobody gave up
        CHECK_FALSE(sim.exit_status);
    }

    // ---- ended services stay in view

    TEST_CASE("exited: a temporary service that ended stays in view with its exit and history") {
        Sim sim{root(Strategy::OneForOne, {service("migrate", temporary()), service("web")})};
        sim.start_all();
        const ChildId id = sim.id("migrate");
        sim.exit("migrate", 3);
        ChildStatus st = sim.core.status(id);
        CHECK(st.state == ChildState::Stopped);
        CHECK(st.exited);
        CHECK_FALSE(st.removed);
        CHECK(st.last_exit == ExitStatus::exited(3));
        CHECK(st.last_cause == Cause::Exited);
        CHECK(sim.core.find("migrate") == id);
        CHECK_FALSE(sim.has_record("migrate", RecordKind::Removed)); // the shell keeps its logs
        CHECK_FALSE(sim.core.history(id, 100).empty());
        CHECK(sim.command(CommandKind::Stop, "migrate").outcome == CommandOutcome::AlreadyStopped);
        CHECK(sim.status("migrate").exited);
        CHECK(sim.command(CommandKind::Signal, "migrate", "t", 1).outcome ==
              CommandOutcome::NotRunning);
        // started again as a new incarnation, still never restarted by its supervisor
        CHECK(sim.command(CommandKind::Start, "migrate").outcome == CommandOutcome::Ok);
        CHECK(sim.incarnation("migrate") == 2);
        CHECK_FALSE(sim.status("migrate").exited);
        sim.exit("migrate", 0);
        sim.advance(10s);
        CHECK(sim.spawns("migrate") == 2);
        CHECK(sim.status("migrate").exited);
        CHECK(sim.status("migrate").last_exit == ExitStatus::exited(0));
    }

    TEST_CASE("exited: a transient service that ended normally is exited; a crash restarts it") {
        Sim sim{root(Strategy::OneForOne, {service("job", transient())})};
        sim.start_all();
        sim.exit("job", 1);
        CHECK(sim.state("job") == ChildState::Running);
        CHECK_FALSE(sim.status("job").exited);
        sim.exit("job", 0);
        CHECK(sim.status("job").exited);
        CHECK(sim.status("job").goal == Goal::Down);
    }

    TEST_CASE("exited: a stopped service is not exited; a removed unit leaves the view") {
        Sim sim{root(Strategy::OneForOne, {service("a"), service("tmp", temporary())})};
        sim.start_all();
        sim.command(CommandKind::Stop, "a");
        CHECK_FALSE(sim.status("a").exited);
        sim.exit("tmp", 0);
        const ChildId tmp = sim.id("tmp");
        CHECK(sim.core.status(tmp).exited);
        auto r = sim.reload(root(Strategy::OneForOne, {service("a")}));
        CHECK(r.removed == Names{"tmp"});
        CHECK(sim.core.status(tmp).removed);
        CHECK_FALSE(sim.core.status(tmp).exited);
        CHECK_FALSE(sim.core.find("tmp"));
    }

    TEST_CASE("exited: a supervisor's restart brings an exited temporary child back") {
        Sim sim{root(Strategy::OneForOne,
                     {supervisor("s", Strategy::OneForOne, {service("tmp", temporary())})})};
        sim.start_all();
        sim.exit("tmp", 0);
        CHECK(sim.status("tmp").exited);
        CHECK(sim.command(CommandKind::Restart, "s").outcome == CommandOutcome::Ok);
        CHECK(sim.state("tmp") == ChildState::Running);
        CHECK_FALSE(sim.status("tmp").exited);
    }

    // ---- a restart of several units

    TreeSpec web_worker(bool parallel) {
        TreeSpec t =
            root(Strategy::OneForOne,
                 {service("db"), service("web", wait_ready()), service("worker"), service("other")},
                 [=](ChildSpec &s) {
                     s.intensity = 0; // a counted restart would end the tree
                     s.parallel = parallel;
                 });
        set_after(t, "web", {"db"});
        set_after(t, "worker", {"web"});
        return t;
    }

    TEST_CASE("restart of several: stop in reverse start order, start in start order") {
        Sim sim{web_worker(false)};
        sim.exit_after_signal("web", 200ms);
        sim.exit_after_signal("worker", 300ms);
        sim.start_all();
        sim.ready("web");
        const Pid other = sim.pid("other");
        sim.clear_log();
        auto r = sim.restart({"worker", "web"}, "vigilctl");
        REQUIRE(r.size() == 2);
        CHECK(r[0].outcome == CommandOutcome::Ok);
        CHECK(r[1].outcome == CommandOutcome::Ok);
        CHECK(sim.stop_order() == Names{"worker"}); // web only once worker is down
        sim.advance(300ms);
        CHECK(sim.stop_order() == Names{"worker", "web"});
        CHECK(sim.starts().empty()); // nothing starts before both are down
        sim.advance(200ms);
        CHECK(sim.starts() == Names{"web"});
        CHECK(sim.state("worker") == ChildState::Stopped); // waits for web to be ready
        CHECK(names(sim, sim.core.waiting_for(sim.id("worker"))) == Names{"web"});
        sim.ready("web");
        CHECK(sim.starts() == Names{"web", "worker"});
        CHECK(sim.state("worker") == ChildState::Running);
        CHECK(sim.pid("other") == other); // untouched
        CHECK(sim.signals_to("other").empty());
        CHECK(sim.status("web").restarts == 0); // not counted
        CHECK_FALSE(sim.exit_status);
        CHECK(sim.has_record("worker", RecordKind::Command, "restart requested by vigilctl"));
    }

    TEST_CASE("restart of several: a parallel supervisor keeps only the `after` order") {
        Sim sim{web_worker(true)};
        sim.exit_after_signal("web", 200ms);
        sim.exit_after_signal("worker", 300ms);
        sim.start_all();
        sim.ready("web");
        sim.clear_log();
        sim.restart({"web", "worker", "db"});
        CHECK(sim.stop_order() == Names{"worker"}); // web and db are needed by what is after
        sim.advance(300ms);
        CHECK(sim.stop_order() == Names{"worker", "web"});
        sim.advance(200ms);
        CHECK(sim.stop_order() == Names{"worker", "web", "db"});
        CHECK(sim.starts() == Names{"db", "web"});
        sim.ready("web");
        CHECK(sim.starts() == Names{"db", "web", "worker"});
        CHECK_FALSE(sim.exit_status);
    }

    TEST_CASE("restart of several: stopped and unknown ones, and a crash meanwhile") {
        Sim sim{root(Strategy::OneForOne,
                     {service("a"), service("b", temporary()), service("c"), service("d")},
                     intensity(5, 60s))};
        sim.exit_after_signal("c", 300ms);
        sim.start_all();
        sim.exit("b", 0); // exited
        sim.clear_log();
        auto r = sim.restart({"c", "", "b"});
        REQUIRE(r.size() == 3);
        CHECK(r[1].outcome == CommandOutcome::NotFound);
        CHECK(r[2].message == "starting");
        sim.exit("d", 1); // not in the set: its own restart, decided and counted as usual
        CHECK(sim.status("d").restarts == 1);
        CHECK(sim.state("d") == ChildState::Running);
        sim.advance(300ms);
        CHECK(sim.starts() == Names{"d", "b", "c"}); // d at once, not held by the set
        CHECK(sim.state("b") == ChildState::Running);
        CHECK(sim.state("c") == ChildState::Running);
    }
}

// core_test.cpp: the core beyond the OTP checklist: staleness, start timeout, readiness,
// health failures, probes, commands, reload, exit statuses, history and deadlines.
#include <doctest/doctest.h>

#include "sim.hpp"
#include "vigil/core/state.hpp"

using namespace vigil;
using namespace vigil::core;
using namespace vigil::test;
using namespace std::chrono_literals;

using Names = std::vector<std::string>;
using Sigs = std::vector<int>;

namespace {
Tweak start_timeout(Duration d) {
    return [=](ChildSpec &s) {
        s.start_timeout = d;
        s.wait_ready = true;
    };
}
Tweak fingerprint(std::uint64_t f) {
    return [=](ChildSpec &s) { s.fingerprint = f; };
}
// Index of the first action matching `pred`, or -1.
template <class T, class P> int find_action(const Sim &sim, P pred, int from = 0) {
    for (int i = from; i < static_cast<int>(sim.actions.size()); ++i)
        if (auto *a = std::get_if<T>(&sim.actions[static_cast<std::size_t>(i)]); a && pred(*a))
            return i;
    return -1;
}
} // namespace

TEST_SUITE("core") {

    // ---- staleness
    // ----------------------------------------------------------------------------------

    TEST_CASE("staleness: an exit of an old incarnation is dropped, even with a reused pid") {
        Sim sim{root(Strategy::OneForOne, {service("w"), service("x")})};
        sim.start_all();
        const Pid old_pid = sim.pid("w");
        sim.exit("w", 1);
        CHECK(sim.pid("w") == old_pid); // the smallest free pid: reused on purpose
        CHECK(sim.incarnation("w") == 2);
        const auto dropped = sim.core.dropped_events();
        sim.inject(Exited{sim.id("w"), Incarnation{1}, old_pid, ExitStatus::exited(1)});
        CHECK(sim.core.dropped_events() == dropped + 1);
        CHECK(sim.state("w") == ChildState::Running);
        CHECK(sim.incarnation("w") == 2);
        CHECK(sim.spawns("w") == 2);
        // Wrong pid for the current incarnation, late Spawned, late readiness and health.
        sim.inject(Exited{sim.id("w"), Incarnation{2}, Pid{999}, ExitStatus::exited(1)});
        sim.inject(Spawned{sim.id("w"), Incarnation{1}, Pid{555}});
        sim.inject(Spawned{sim.id("w"), Incarnation{2}, Pid{555}}); // duplicate answer
        sim.inject(BecameReady{sim.id("w"), Incarnation{1}});
        sim.inject(HealthFailed{sim.id("w"), Incarnation{1}, FailureCause::Liveness, "old"});
        sim.inject(SpawnFailed{sim.id("w"), Incarnation{1}, "old"});
        CHECK(sim.core.dropped_events() == dropped + 7);
        CHECK(sim.state("w") == ChildState::Running);
        CHECK(sim.pid("w") == old_pid);
        CHECK(sim.all_signals_to("w").empty());
        CHECK(sim.stray_signals == 0);
    }

    TEST_CASE("staleness: another child's old pid reused by a new process is not confused") {
        Sim sim{root(
            Strategy::OneForOne,
            {service("a", [](ChildSpec &s) { s.restart = Restart::Temporary; }), service("b")})};
        sim.start_all();
        const Pid pa = sim.pid("a");
        sim.exit("a", 0); // a is gone; its pid is free
        sim.exit("b", 1); // b restarts and gets a's old pid
        CHECK(sim.pid("b") == pa);
        sim.inject(Exited{sim.id("a"), Incarnation{1}, pa, ExitStatus::exited(1)});
        CHECK(sim.state("b") == ChildState::Running);
        CHECK(sim.incarnation("b") == 2);
    }

    // ---- start-up: readiness and start timeout
    // ---------------------------------------------------------

    TEST_CASE("readiness: probes start at spawn; later siblings wait for ready, then start") {
        Sim sim{root(Strategy::OneForOne, {service("db", wait_ready()), service("api")})};
        sim.start_all();
        CHECK(sim.lines("probes-on ") == Names{"db"}); // readiness probes run while starting
        CHECK(sim.state("db") == ChildState::Starting);
        CHECK_FALSE(sim.status("db").ready);
        CHECK(sim.spawns("api") == 0);
        CHECK(sim.state("root") == ChildState::Starting);
        sim.advance(3s);
        sim.ready("db");
        CHECK(sim.status("db").ready);
        CHECK(sim.when("spawn api") == at_ms(3000));
        CHECK(sim.has_record("db", RecordKind::Ready));
        CHECK(sim.state("root") == ChildState::Running);
        sim.ready("db"); // a repeated READY=1 changes nothing
        CHECK(sim.spawns("api") == 1);
    }

    TEST_CASE("readiness: dying before ready at boot is a start failure") {
        Sim sim{
            root(Strategy::OneForOne, {service("a"), service("db", wait_ready()), service("api")})};
        sim.start_all();
        sim.exit("db", 0);
        CHECK(sim.exit_status == exit_start_failed);
        CHECK(sim.spawns("api") == 0);
        CHECK(sim.all_signals_to("a") == Sigs{sig_term});
    }

    TEST_CASE("start timeout: not ready in time is killed (SIGKILL only) and fails start-up") {
        Sim sim{root(Strategy::OneForOne,
                     {service("a"), service("db", start_timeout(2s)), service("api")})};
        sim.start_all();
        sim.advance(1999ms);
        CHECK(sim.all_signals_to("db").empty());
        sim.advance(1ms);
        CHECK(sim.all_signals_to("db") == Sigs{sig_kill});
        CHECK(sim.has_record("db", RecordKind::StartFailed, "not started within 2s; sent SIGKILL"));
        CHECK(sim.exit_status == exit_start_failed);
        CHECK(sim.spawns("api") == 0);
        // StopProbes precedes the kill.
        const int off = find_action<StopProbes>(
            sim, [&](const StopProbes &p) { return p.child == sim.id("db"); });
        const int kill =
            find_action<Signal>(sim, [&](const Signal &s) { return s.child == sim.id("db"); });
        CHECK(off >= 0);
        CHECK(off < kill);
    }

    TEST_CASE("start timeout: during a restart it is a failed restart, counted and retried") {
        Sim sim{root(Strategy::OneForOne, {service("db", start_timeout(1s))}, intensity(2, 60s))};
        sim.start_all();
        sim.ready("db");
        sim.exit("db", 1); // restart 1
        sim.advance(1s);   // not ready: killed, restart 2
        CHECK(sim.all_signals_to("db") == Sigs{sig_kill});
        CHECK(sim.incarnation("db") == 3);
        CHECK_FALSE(sim.exit_status);
        sim.ready("db");
        CHECK(sim.state("db") == ChildState::Running);
        CHECK_FALSE(sim.core.next_deadline()); // readiness cancelled the timeout
        sim.exit("db", 1);                     // restart 3 > 2
        CHECK(sim.exit_status == exit_gave_up);
    }

    // ---- health
    // ----------------------------------------------------------------------------------------------

    TEST_CASE(
        "health failure: probes stop, the process is stopped, then restarted as an abnormal end") {
        Sim sim{root(Strategy::OneForOne, {service("web", [](ChildSpec &s) {
                         s.restart = Restart::Transient;
                         s.stop.timeout = 3s;
                     })})};
        sim.on_signal("web", OnSignal::Ignore);
        sim.start_all();
        sim.advance(10s);
        sim.health_fail("web", FailureCause::Liveness, "http :8080/healthz: 503 three times");
        CHECK(sim.state("web") == ChildState::Stopping);
        CHECK(sim.has_record("web", RecordKind::Unhealthy,
                             "liveness failure: http :8080/healthz: 503"));
        const auto off = sim.lines("probes-off ");
        CHECK(off == Names{"web"});
        sim.advance(3s);
        CHECK(sim.all_signals_to("web") == Sigs{sig_term, sig_kill});
        CHECK(sim.incarnation("web") == 2); // transient but restarted: a health failure is abnormal
        CHECK(sim.status("web").restarts == 1);
        CHECK(sim.has_record("web", RecordKind::Exited, "stopped after liveness failure"));
    }

    TEST_CASE("health failure: counted in intensity; ignored when not running") {
        Sim sim{root(Strategy::OneForOne, {service("a"), service("w")}, intensity(0, 60s))};
        sim.start_all();
        sim.health_fail("w", FailureCause::Watchdog, "no WATCHDOG=1 for 30s");
        CHECK(sim.exit_status == exit_gave_up);
        CHECK(sim.has_record("root", RecordKind::GaveUp, "watchdog failure"));
    }

    TEST_CASE("probes: StartProbes when running, StopProbes before every stop signal") {
        Sim sim{root(Strategy::OneForOne, {service("a"), service("b")})};
        sim.start_all();
        CHECK(sim.lines("probes-on ") == Names{"a", "b"});
        sim.command(CommandKind::Shutdown, "");
        for (const auto *n : {"a", "b"}) {
            const ChildId c = sim.id(n);
            const int off =
                find_action<StopProbes>(sim, [&](const StopProbes &p) { return p.child == c; });
            const int sig = find_action<Signal>(sim, [&](const Signal &s) { return s.child == c; });
            CHECK(off >= 0);
            CHECK(off < sig);
        }
        sim.exit_status.reset();
        Sim sim2{root(Strategy::OneForOne, {service("w")})};
        sim2.start_all();
        sim2.exit("w", 1); // an exit by itself also stops the probes, before the restart
        CHECK(sim2.lines("probes-off ") == Names{"w"});
        CHECK(sim2.lines("probes-on ") == Names{"w", "w"});
    }

    // ---- commands
    // -------------------------------------------------------------------------------------------

    TEST_CASE("commands: signal a service or a whole subtree; not running is an error") {
        Sim sim{root(
            Strategy::OneForOne,
            {service("a"), supervisor("sup1", Strategy::OneForOne, {service("b"), service("c")})})};
        sim.on_signal("b", OnSignal::Ignore);
        sim.on_signal("c", OnSignal::Ignore);
        sim.on_signal("a", OnSignal::Ignore);
        sim.start_all();
        CHECK(sim.command(CommandKind::Signal, "a", "vigilctl", 1).outcome == CommandOutcome::Ok);
        CHECK(sim.all_signals_to("a") == Sigs{1});
        CHECK(sim.state("a") == ChildState::Running);
        CHECK(sim.command(CommandKind::Signal, "sup1", "vigilctl", 10).outcome ==
              CommandOutcome::Ok);
        CHECK(sim.lines("signal ") == Names{"a SIGHUP", "b SIGUSR1", "c SIGUSR1"});
        CHECK(sim.has_record("sup1", RecordKind::Command, "signal SIGUSR1 requested by vigilctl"));
        sim.command(CommandKind::Stop, "sup1");
        sim.exit("c", 0);
        sim.exit("b", 0);
        CHECK(sim.command(CommandKind::Signal, "b", "x", 1).outcome == CommandOutcome::NotRunning);
    }

    TEST_CASE("commands: stop and start a supervisor act on its subtree, in order") {
        Sim sim{root(Strategy::OneForOne,
                     {service("a"),
                      supervisor("sup1", Strategy::OneForOne, {service("b"), service("c")}),
                      service("d")},
                     intensity(0, 60s))};
        sim.start_all();
        sim.clear_log();
        CHECK(sim.command(CommandKind::Stop, "sup1").outcome == CommandOutcome::Ok);
        CHECK(sim.stop_order() == Names{"c", "b"});
        CHECK(sim.state("sup1") == ChildState::Stopped);
        CHECK_FALSE(sim.status("sup1").goal == core::Goal::Up);
        CHECK_FALSE(sim.exit_status); // not counted
        CHECK(sim.command(CommandKind::Start, "b").outcome == CommandOutcome::NotRunning);
        CHECK(sim.command(CommandKind::Start, "sup1").outcome == CommandOutcome::Ok);
        CHECK(sim.starts() == Names{"b", "c"});
        CHECK(sim.state("sup1") == ChildState::Running);
        CHECK(sim.command(CommandKind::Start, "sup1").outcome == CommandOutcome::AlreadyRunning);
        std::vector<Action> out;
        CHECK(sim.core.command(Command{CommandKind::Stop, ChildId{999}, 0, "t"}, sim.now, out)
                  .outcome == CommandOutcome::NotFound);
        CHECK(out.empty());
    }

    TEST_CASE("commands: restart stops then starts, and is not counted") {
        Sim sim{root(Strategy::OneForOne, {service("a"), service("b")}, intensity(0, 60s))};
        sim.exit_after_signal("b", 200ms);
        sim.start_all();
        CHECK(sim.command(CommandKind::Restart, "b", "vigilctl").outcome == CommandOutcome::Ok);
        CHECK(sim.state("b") == ChildState::Stopping);
        sim.advance(200ms);
        CHECK(sim.incarnation("b") == 2);
        CHECK(sim.when("spawn b", 1) == at_ms(200));
        CHECK(sim.status("b").restarts == 0);
        CHECK_FALSE(sim.exit_status);
        // Restart of a supervisor restarts its subtree.
        Sim s2{root(Strategy::OneForOne,
                    {supervisor("sup1", Strategy::OneForOne, {service("x"), service("y")})})};
        s2.start_all();
        s2.clear_log();
        s2.command(CommandKind::Restart, "sup1");
        CHECK(s2.stop_order() == Names{"y", "x"});
        CHECK(s2.starts() == Names{"x", "y"});
        CHECK(s2.incarnation("sup1") == 2);
    }

    TEST_CASE(
        "commands: a second shutdown kills what is left; nothing starts while shutting down") {
        Sim sim{root(Strategy::OneForOne,
                     {service("a", [](ChildSpec &s) { s.stop.timeout.reset(); }),
                      service("b", [](ChildSpec &s) { s.stop.timeout.reset(); })})};
        sim.on_signal("a", OnSignal::Ignore);
        sim.on_signal("b", OnSignal::Ignore);
        sim.start_all();
        CHECK(sim.command(CommandKind::Shutdown, "", "SIGTERM").outcome == CommandOutcome::Ok);
        sim.advance(60s);
        CHECK(sim.all_signals_to("b") == Sigs{sig_term});
        CHECK(sim.command(CommandKind::Start, "a").outcome == CommandOutcome::ShuttingDown);
        CHECK(sim.command(CommandKind::Shutdown, "", "SIGINT").outcome == CommandOutcome::Ok);
        CHECK(sim.all_signals_to("b") == Sigs{sig_term, sig_kill});
        CHECK(sim.all_signals_to("a") == Sigs{sig_kill}); // never got a graceful stop
        CHECK(sim.exit_status == exit_clean);
        CHECK(sim.core.finished());
        CHECK(sim.command(CommandKind::Start, "a").outcome == CommandOutcome::ShuttingDown);
    }

    TEST_CASE("commands: a failed start command is reported, not retried; later failures are") {
        Sim sim{root(Strategy::OneForOne, {service("w")}, intensity(5, 60s))};
        sim.start_all();
        sim.command(CommandKind::Stop, "w");
        sim.fail_spawn("w", 1);
        CHECK(sim.command(CommandKind::Start, "w").outcome == CommandOutcome::Ok);
        CHECK(sim.state("w") == ChildState::Stopped);
        CHECK_FALSE(sim.status("w").goal == core::Goal::Up);
        CHECK(sim.has_record("w", RecordKind::SpawnFailed, "start command failed, not retried"));
        CHECK(sim.status("w").restarts == 0);
        CHECK(sim.command(CommandKind::Start, "w").outcome == CommandOutcome::Ok);
        CHECK(sim.state("w") == ChildState::Running);
        // Started by a command, then crashing: an ordinary restart, and a failed one is retried.
        sim.fail_spawn("w", 2);
        sim.exit("w", 1);
        CHECK(sim.lines("spawn-failed ") == Names{"w", "w", "w"});
        CHECK(sim.state("w") == ChildState::Running);
        CHECK(sim.status("w").restarts == 3);
    }

    TEST_CASE("a supervisor with a finite stop timeout has its subtree killed when it passes") {
        Sim sim{root(
            Strategy::OneForOne,
            {service("a"), supervisor("sup1", Strategy::OneForOne, {service("b"), service("c")},
                                      [](ChildSpec &s) { s.stop.timeout = 1500ms; })})};
        sim.on_signal("b", OnSignal::Ignore);
        sim.on_signal("c", OnSignal::Ignore);
        sim.start_all();
        sim.command(CommandKind::Shutdown, "");
        sim.advance(1499ms);
        CHECK(sim.all_signals_to("b").empty()); // c still has 10 s of its own
        sim.advance(1ms);
        CHECK(sim.all_signals_to("c") == Sigs{sig_term, sig_kill});
        CHECK(sim.all_signals_to("b") == Sigs{sig_kill});
        CHECK(sim.has_record("sup1", RecordKind::Killed, "stop timeout 1s500ms passed"));
        CHECK(sim.when("signal a SIGTERM") == at_ms(1500));
        CHECK(sim.exit_status == exit_clean);
    }

    TEST_CASE("commands: stopping the root keeps vigild running; starting it again works") {
        Sim sim{root(Strategy::OneForOne, {service("a"), service("b")})};
        sim.start_all();
        CHECK(sim.command(CommandKind::Stop, "root").outcome == CommandOutcome::Ok);
        CHECK(sim.state("root") == ChildState::Stopped);
        CHECK_FALSE(sim.exit_status);
        CHECK(sim.command(CommandKind::Start, "root").outcome == CommandOutcome::Ok);
        CHECK(sim.incarnation("a") == 2);
        CHECK(sim.incarnation("b") == 2);
        sim.command(CommandKind::Stop, "root");
        sim.command(CommandKind::Shutdown, "");
        CHECK(sim.exit_status == exit_clean);
    }

    // ---- reload
    // -------------------------------------------------------------------------------------------------

    TEST_CASE("reload: add, remove, change and params; ids stay, new ids are appended (no id "
              "was forgotten)") {
        Sim sim{root(Strategy::OneForOne,
                     {service("a"), service("b", fingerprint(1)), service("c"), service("d")})};
        sim.start_all();
        const ChildId ida = sim.id("a"), idb = sim.id("b");
        const std::size_t before = sim.core.size();
        CHECK(sim.command(CommandKind::Stop, "d").outcome == CommandOutcome::Ok);
        auto next = root(Strategy::OneForAll,
                         {service("a", [](ChildSpec &s) { s.stop.timeout = 1s; }),
                          service("b", fingerprint(2)), service("d"), service("e")},
                         intensity(1, 30s));
        auto r = sim.reload(next);
        CHECK(r.added == Names{"e"});
        CHECK(r.removed == Names{"c"});
        CHECK(r.restarted == Names{"b"});
        CHECK(r.updated == Names{"root", "a"});
        CHECK(sim.id("a") == ida);
        CHECK(sim.id("b") == idb);
        CHECK(sim.id("e").value == before); // appended: c was not forgotten (Core::forget)
        CHECK(sim.core.size() == before + 1);
        CHECK_FALSE(sim.core.find("c"));
        CHECK(sim.core.status(ChildId{3}).removed);
        CHECK(sim.incarnation("a") == 1); // params only: same process
        CHECK(sim.incarnation("b") == 2); // fingerprint changed: restarted, not counted
        CHECK(sim.status("b").restarts == 0);
        CHECK(sim.state("e") == ChildState::Running);
        CHECK(sim.state("d") == ChildState::Stopped); // a stopped child stays stopped
        CHECK(sim.core.spec(ida).stop.timeout == Duration{1000});
        // The new supervisor parameters apply: one_for_all now.
        sim.clear_log();
        sim.exit("e", 1);
        CHECK(sim.stop_order() == Names{"b", "a"});
        CHECK(sim.has_record("c", RecordKind::Removed));
    }

    TEST_CASE("reload: a child still stopping after a stop command stays stopped when changed") {
        Sim sim{root(Strategy::OneForOne, {service("a"), service("w", fingerprint(1))})};
        sim.exit_after_signal("w", 800ms);
        sim.start_all();
        sim.command(CommandKind::Stop, "w");
        CHECK(sim.state("w") == ChildState::Stopping);
        auto r =
            sim.reload(root(Strategy::OneForOne, {service("a"), service("w", fingerprint(2))}));
        CHECK(r.restarted == Names{"w"});
        sim.advance(2s);
        CHECK(sim.state("w") == ChildState::Stopped);
        CHECK(sim.spawns("w") == 1); // item 50: stopped by command, reload or not
        CHECK(sim.command(CommandKind::Start, "w").outcome == CommandOutcome::Ok);
        CHECK(sim.core.spec(sim.id("w")).fingerprint == 2);
    }

    TEST_CASE("reload: a unit moved to another supervisor never runs twice") {
        Sim sim{root(Strategy::OneForOne,
                     {supervisor("app", Strategy::OneForOne, {service("w1"), service("w2")}),
                      service("b")})};
        sim.exit_after_signal("w2", 500ms);
        sim.start_all();
        const ChildId old = sim.id("w2");
        auto r = sim.reload(
            root(Strategy::OneForOne, {supervisor("app", Strategy::OneForOne, {service("w1")}),
                                       service("b"), service("w2")}));
        CHECK(r.added == Names{"w2"});
        CHECK(r.removed == Names{"w2"});
        CHECK(sim.spawns("w2") == 1); // the old process is still stopping
        CHECK(sim.core.status(old).state == ChildState::Stopping);
        sim.advance(499ms);
        CHECK(sim.spawns("w2") == 1);
        sim.advance(1ms);
        CHECK(sim.core.status(old).state == ChildState::Stopped);
        CHECK(sim.spawns("w2") == 2);
        CHECK(sim.when("spawn w2", 1) == sim.when("exit w2 0"));
        CHECK(sim.status("w2").parent == root_id);
        CHECK(sim.state("w2") == ChildState::Running);
    }

    TEST_CASE("reload: a unit added back while its removed self still stops waits for it, even "
              "when another reload removed it") {
        Sim sim{root(Strategy::OneForOne, {service("a"), service("x")})};
        sim.exit_after_signal("x", 500ms);
        sim.start_all();
        const ChildId old = sim.id("x");
        sim.reload(root(Strategy::OneForOne, {service("a")}));
        CHECK(sim.core.status(old).state == ChildState::Stopping);
        sim.core.forget(old); // a shell would not yet; the core must not reuse it either
        auto r = sim.reload(root(Strategy::OneForOne, {service("a"), service("x")}));
        CHECK(r.added == Names{"x"});
        CHECK(sim.id("x") != old);
        CHECK(sim.spawns("x") == 1);
        sim.advance(499ms);
        CHECK(sim.spawns("x") == 1);
        sim.advance(1ms);
        CHECK(sim.core.status(old).state == ChildState::Stopped);
        CHECK(sim.spawns("x") == 2);
        CHECK(sim.state("x") == ChildState::Running);
    }

    TEST_CASE("reload: ids of removed children the shell forgot go to new ones, so add/remove "
              "cycles keep the number of ids bounded") {
        Sim sim{root(Strategy::OneForOne, {service("a")})};
        sim.start_all();
        const std::size_t base = sim.core.size();
        for (int i = 0; i < 1000; ++i) {
            sim.reload(root(Strategy::OneForOne, {service("a"), service("x")}));
            REQUIRE(sim.state("x") == ChildState::Running);
            REQUIRE(sim.incarnation("x") == 1); // a new child, whichever id it got
            REQUIRE(sim.status("x").restarts == 0);
            const ChildId x = sim.id("x");
            sim.reload(root(Strategy::OneForOne, {service("a")}));
            REQUIRE(sim.core.status(x).state == ChildState::Stopped);
            sim.core.forget(x);
        }
        CHECK(sim.core.size() == base + 1);
        CHECK(sim.incarnation("a") == 1);
        CHECK(sim.state("a") == ChildState::Running);
    }

    TEST_CASE("reload: a child added while the tree starts that fails to start fails alone, as "
              "one added after OTP's init would") {
        Sim sim{root(Strategy::OneForOne,
                     {service("a", [](ChildSpec &s) { s.wait_ready = true; }), service("b")})};
        sim.start_all();
        REQUIRE(sim.state("a") == ChildState::Starting); // the tree waits for a to be ready
        sim.fail_spawn("x");
        auto r = sim.reload(
            root(Strategy::OneForOne, {service("a", [](ChildSpec &s) { s.wait_ready = true; }),
                                       service("b"), service("x")}));
        CHECK(r.added == Names{"x"});
        sim.ready("a");
        sim.run_until_quiescent();
        CHECK_FALSE(sim.exit_status); // no roll-back of the tree, vigild does not exit
        CHECK(sim.lines("spawn-failed ") == Names{"x"});
        CHECK(sim.spawns("x") == 1); // its failed start counted as a failed restart: retried
        CHECK(sim.state("x") == ChildState::Running);
        CHECK(sim.state("b") == ChildState::Running);
        CHECK(sim.status("x").restarts == 1);
    }

    TEST_CASE("reload: an invalid specification changes nothing") {
        Sim sim{root(Strategy::OneForOne, {service("a"), service("b")})};
        sim.start_all();
        auto r = sim.reload(root(Strategy::OneForOne, {service("a"), service("a"), service("c")}));
        REQUIRE(r.errors.size() == 1);
        CHECK(r.errors[0].find("share the name") != std::string::npos);
        CHECK(r.added.empty());
        CHECK(r.removed.empty());
        CHECK_FALSE(sim.core.find("c"));
        CHECK(sim.state("b") == ChildState::Running);
        CHECK(sim.all_signals_to("b").empty());
    }

    TEST_CASE("reload: a removed supervisor stops its subtree; a moved unit is removed and added") {
        Sim sim{root(Strategy::OneForOne,
                     {supervisor("s1", Strategy::OneForOne, {service("x"), service("y")}),
                      supervisor("s2", Strategy::OneForOne, {service("z")})})};
        sim.start_all();
        const ChildId old_y = sim.id("y");
        auto next = root(Strategy::OneForOne,
                         {supervisor("s2", Strategy::OneForOne, {service("z"), service("y")})});
        auto r = sim.reload(next);
        CHECK(r.removed == Names{"s1", "x", "y"});
        CHECK(r.added == Names{"y"});
        CHECK(sim.id("y") != old_y);
        CHECK(sim.core.status(old_y).removed);
        CHECK(sim.core.status(sim.id("z")).state == ChildState::Running);
        CHECK(sim.state("y") == ChildState::Running);
        CHECK(sim.all_signals_to("x") == Sigs{sig_term});
        CHECK(sim.core.status(ChildId{1}).removed); // s1
        CHECK(sim.core.status(ChildId{1}).state == ChildState::Stopped);
    }

    // ---- sweeps
    // ---------------------------------------------------------------------------------------------

    TEST_CASE("sweep: a child that ends by itself inside a running sweep is not counted again") {
        Sim sim{root(Strategy::OneForAll, {service("1"), service("2"), service("3")},
                     intensity(1, 60s))};
        sim.exit_after_signal("3", 500ms);
        sim.start_all();
        sim.clear_log();
        sim.exit("2", 1); // sweep: 3 is stopping for 500 ms
        sim.advance(100ms);
        sim.exit("1", 1);             // 1 crashes before the sweep reached it: the sweep covers it
        CHECK_FALSE(sim.exit_status); // a second count would exceed intensity 1
        sim.advance(1s);
        CHECK(sim.starts() == Names{"1", "2", "3"});
        CHECK(sim.all_signals_to("1").empty());
        CHECK(sim.status("1").restarts == 0);
        for (auto n : {"1", "2", "3"})
            CHECK(sim.incarnation(n) == 2);
    }

    TEST_CASE("sweep: a temporary child that ends by itself inside a sweep is not brought back") {
        Sim sim{
            root(Strategy::OneForAll, {service("1"), service("tmp", temporary()), service("3")})};
        sim.exit_after_signal("3", 500ms);
        sim.start_all();
        sim.clear_log();
        sim.exit("1", 1);   // sweep: 3 stopping for 500 ms
        sim.exit("tmp", 0); // tmp ends by itself before the sweep reaches it
        sim.advance(1s);
        CHECK(sim.starts() == Names{"1", "3"});
        CHECK(sim.state("tmp") == ChildState::Stopped);
    }

    TEST_CASE("sweep: a crash before a rest_for_one sweep's range widens it") {
        Sim sim{root(Strategy::RestForOne, {service("1"), service("2"), service("3"), service("4")},
                     intensity(5, 60s))};
        sim.exit_after_signal("4", 500ms);
        sim.start_all();
        sim.clear_log();
        sim.exit("3", 1); // sweep from 3: 4 stopping
        sim.exit("1", 1); // a new crash earlier in the list: now everything from 1
        sim.advance(1s);
        CHECK(sim.stop_order() == Names{"4", "2"});
        CHECK(sim.starts() == Names{"1", "2", "3", "4"});
        CHECK(sim.when("signal 2 SIGTERM") == at_ms(500));
    }

    // ---- interrupted transitions
    // -----------------------------------------------------------------------

    TEST_CASE("interrupted: shutdown cancels a pending backoff; nothing is spawned afterwards") {
        Sim sim{root(Strategy::OneForOne,
                     {service("a"), service("w", [](ChildSpec &s) { s.backoff.initial = 5s; })})};
        sim.start_all();
        sim.exit("w", 1);
        CHECK(sim.state("w") == ChildState::Backoff);
        sim.command(CommandKind::Shutdown, "");
        CHECK(sim.exit_status == exit_clean);
        CHECK(sim.state("w") == ChildState::Stopped);
        sim.advance(10s);
        CHECK(sim.spawns("w") == 1);
    }

    TEST_CASE("interrupted: shutdown during a sweep stops everything and starts nothing") {
        Sim sim{root(Strategy::OneForAll, {service("1"), service("2"), service("3")})};
        sim.exit_after_signal("3", 1s);
        sim.start_all();
        sim.clear_log();
        sim.exit("2", 1); // sweep: 3 is stopping for 1 s
        sim.advance(100ms);
        sim.command(CommandKind::Shutdown, "");
        sim.advance(5s);
        CHECK(sim.starts().empty());
        CHECK(sim.stop_order() == Names{"3", "1"});
        CHECK(sim.exit_status == exit_clean);
    }

    TEST_CASE("interrupted: a give-up stops a nested supervisor that is still starting") {
        Sim sim{root(
            Strategy::OneForOne,
            {service("a"), supervisor("sup1", Strategy::OneForOne,
                                      {service("b"), service("c", wait_ready()), service("d")})},
            intensity(0, 60s))};
        sim.start_all();
        CHECK(sim.state("sup1") == ChildState::Starting);
        sim.exit("a", 1); // root gives up while sup1 waits for c's readiness
        CHECK(sim.stop_order() == Names{"c", "b"});
        CHECK(sim.spawns("d") == 0);
        CHECK(sim.exit_status == exit_gave_up);
    }

    TEST_CASE("interrupted: a startup probe failure at boot is a start failure") {
        Sim sim{
            root(Strategy::OneForOne, {service("a"), service("db", wait_ready()), service("api")})};
        sim.start_all();
        sim.health_fail("db", FailureCause::StartupProbe, "pg_isready: no response");
        CHECK(sim.all_signals_to("db") == Sigs{sig_term});
        CHECK(sim.exit_status == exit_start_failed);
        CHECK(sim.spawns("api") == 0);
        CHECK(sim.has_record("db", RecordKind::StartFailed, "startup probe failure"));
    }

    TEST_CASE("interrupted: reload during a sweep keeps the sweep going") {
        Sim sim{root(Strategy::RestForOne, {service("1"), service("2"), service("3")})};
        sim.exit_after_signal("3", 1s);
        sim.start_all();
        sim.clear_log();
        sim.exit("2", 1); // sweep from 2: 3 is stopping
        auto r = sim.reload(
            root(Strategy::RestForOne, {service("0"), service("1"), service("2"), service("3")}));
        CHECK(r.added == Names{"0"});
        sim.advance(2s);
        CHECK(sim.starts() == Names{"0", "2", "3"});
        for (auto n : {"0", "1", "2", "3"})
            CHECK(sim.state(n) == ChildState::Running);
        CHECK(sim.incarnation("1") == 1);
    }

    // ---- exit statuses, history, deadlines
    // ------------------------------------------------------------------------

    TEST_CASE("exit status rules: clean shutdown 0, start failure 3, give-up 4, auto_shutdown the "
              "child's") {
        {
            Sim sim{root(Strategy::OneForOne, {service("a")})};
            sim.start_all();
            sim.command(CommandKind::Shutdown, "");
            CHECK(sim.exit_status == exit_clean);
            CHECK(sim.has_record("root", RecordKind::Exit, "vigild exits with status 0"));
        }
        {
            Sim sim{root(Strategy::OneForOne, {service("a")})};
            sim.fail_spawn("a");
            sim.start_all();
            CHECK(sim.exit_status == 3);
        }
        {
            Sim sim{root(Strategy::OneForOne, {service("a")}, intensity(0, 1s))};
            sim.start_all();
            sim.exit_by_signal("a", 11);
            CHECK(sim.exit_status == 4);
        }
        {
            Sim sim{root(Strategy::OneForOne,
                         {service("main",
                                  [](ChildSpec &s) {
                                      s.restart = Restart::Transient;
                                      s.significant = true;
                                  })},
                         [](ChildSpec &s) { s.auto_shutdown = AutoShutdown::AnySignificant; })};
            sim.start_all();
            sim.exit_by_signal("main", 6); // SIGABRT: abnormal, transient: restarted
            CHECK_FALSE(sim.exit_status);
            sim.exit("main", 0);
            CHECK(sim.exit_status == 0);
        }
        {
            Sim sim{root(Strategy::OneForOne, {service("a")})};
            sim.start_all();
            sim.command(CommandKind::Stop, "root");
            CHECK_FALSE(sim.exit_status);
            sim.command(CommandKind::Shutdown, "");
            CHECK(sim.exit_status == exit_clean);
        }
    }

    TEST_CASE("history: bounded rings, oldest first, mirrored by Publish actions") {
        Sim sim{root(Strategy::OneForOne, {service("w"), service("x")}, intensity(1000, 1s))};
        sim.start_all();
        for (int i = 0; i < 50; ++i)
            sim.exit("w", i % 2 == 0 ? 1 : 0);
        const auto hw = sim.core.history(sim.id("w"), 1000);
        CHECK(hw.size() == 32);
        CHECK(hw.back().kind == RecordKind::Started);
        const auto all = sim.core.history(std::nullopt, 1000);
        CHECK(all.size() == sim.records.size()); // under 4096: everything is kept
        CHECK(all.back().message == sim.records.back().message);
        const auto last3 = sim.core.history(std::nullopt, 3);
        REQUIRE(last3.size() == 3);
        CHECK(last3[2].message == all.back().message);
        CHECK(sim.has_record("w", RecordKind::Exited, "exited with status 0; restarting"));
        CHECK(sim.core.history(sim.id("x"), 10).size() == 1);
        for (const auto &r : all)
            CHECK_FALSE(r.message.empty());
        // The global ring keeps the newest 4096.
        for (int i = 0; i < 2100; ++i) {
            if (i % 400 == 0) sim.advance(1s); // stay under intensity 1000 per second
            sim.exit("x", 1);
        }
        const auto capped = sim.core.history(std::nullopt, 100'000);
        CHECK(capped.size() == 4096);
        CHECK(capped.back().message == sim.records.back().message);
        CHECK(capped.front().message == sim.records[sim.records.size() - 4096].message);
    }

    TEST_CASE("history: messages name signals and who asked") {
        Sim sim{root(Strategy::OneForOne, {service("w")})};
        sim.start_all();
        sim.exit_by_signal("w", 9);
        CHECK(sim.has_record("w", RecordKind::Exited, "killed by SIGKILL; restarting"));
        sim.command(CommandKind::Stop, "w", "vigilctl (uid 1000)");
        CHECK(sim.has_record("w", RecordKind::Command, "stop requested by vigilctl (uid 1000)"));
        CHECK(sim.has_record("w", RecordKind::Stopping, "sent SIGTERM (stop timeout 10s)"));
        CHECK(sim.has_record("w", RecordKind::Stopped, "stopped by command (killed by SIGTERM)"));
    }

    TEST_CASE("deadlines: none when idle; the earliest of many children; ties in arming order") {
        Sim sim{root(Strategy::OneForOne, {service("a",
                                                   [](ChildSpec &s) {
                                                       s.backoff = {300ms, 1s, 2.0, 0.0, 60s};
                                                   }),
                                           service("b",
                                                   [](ChildSpec &s) {
                                                       s.backoff = {100ms, 1s, 2.0, 0.0, 60s};
                                                   }),
                                           service("c", [](ChildSpec &s) {
                                               s.backoff = {100ms, 1s, 2.0, 0.0, 60s};
                                           })})};
        sim.start_all();
        CHECK_FALSE(sim.core.next_deadline());
        sim.exit("a", 1);
        sim.exit("c", 1);
        sim.exit("b", 1);
        CHECK(sim.core.next_deadline() == at_ms(100));
        sim.clear_log();
        sim.advance(100ms);
        CHECK(sim.starts() == Names{"c", "b"}); // same instant: armed first, fires first
        CHECK(sim.core.next_deadline() == at_ms(300));
        sim.advance(1s);
        CHECK_FALSE(sim.core.next_deadline());
    }

    TEST_CASE("state.hpp: every state and goal pair has a description") {
        for (auto s : {ChildState::Stopped, ChildState::Starting, ChildState::Running,
                       ChildState::Stopping, ChildState::Backoff})
            for (auto g : {Goal::Up, Goal::Down})
                CHECK(std::string(describe(s, g)) != "?");
        CHECK(std::string(to_string(ChildState::Backoff)) == "backoff");
        CHECK(std::string(to_string(Strategy::RestForOne)) == "rest_for_one");
    }

    // A stop command that arrives while a one_for_all sweep is stopping its children is the
    // person's last word: the sweep's start phase must not bring that child back.
    TEST_CASE("a stop that arrives during a sweep is not undone by the sweep") {
        Sim sim{root(Strategy::OneForAll,
                     {service("a"), service("b"),
                      service("c", [](ChildSpec &s) { s.stop.timeout = Duration{5000}; })})};
        sim.start_all();
        sim.on_signal("c", OnSignal::Ignore); // the sweep waits for c (5 s, then SIGKILL)
        sim.exit("a", 1);
        CHECK(sim.state("c") == ChildState::Stopping);
        CHECK(sim.state("b") == ChildState::Running);
        CHECK(sim.command(CommandKind::Stop, "b").outcome == CommandOutcome::Ok);
        CHECK(sim.state("b") == ChildState::Stopped);
        sim.advance(5s);
        CHECK(sim.state("a") == ChildState::Running);
        CHECK(sim.state("c") == ChildState::Running);
        CHECK(sim.state("b") == ChildState::Stopped);
        CHECK(sim.status("b").goal == Goal::Down);
        CHECK(sim.spawns("b") == 1);
        // A later sweep is a new decision: b was stopped before it, so it comes back (item 20).
        sim.exit("a", 1);
        sim.advance(10s);
        CHECK(sim.state("b") == ChildState::Running);
    }

} // TEST_SUITE

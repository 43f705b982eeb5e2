// otp_test.cpp: one test case per item of docs/otp-semantics.md (items 1-50).
//
// Every case drives vigil::core::Core through the simulated shell (tests/support/sim.hpp) and
// checks what a person would check on a real system: which processes were spawned, in which
// order, which signals they got and when (fake clock), and how vigild exits.
#include <doctest/doctest.h>

#include "sim.hpp"

using namespace vigil;
using namespace vigil::core;
using namespace vigil::test;
using namespace std::chrono_literals;

using Names = std::vector<std::string>;
using Sigs = std::vector<int>;

namespace {
Tweak brutal_kill() {
    return [](ChildSpec &s) { s.stop.signal = sig_kill; };
}
Tweak significant(Restart r) {
    return [=](ChildSpec &s) {
        s.significant = true;
        s.restart = r;
    };
}
Tweak auto_shutdown(AutoShutdown a, int max_restarts = 5) {
    return [=](ChildSpec &s) {
        s.auto_shutdown = a;
        s.intensity = max_restarts;
    };
}
Tweak all(std::vector<Tweak> ts) {
    return [=](ChildSpec &s) {
        for (const auto &t : ts)
            t(s);
    };
}
} // namespace

TEST_SUITE("core") {

    // ---- A. Start order and start-up ------------------------------------------------------------

    TEST_CASE("otp-01 children start strictly in list order, each after the previous has started") {
        Sim sim{root(Strategy::OneForOne,
                     {service("a", wait_ready()), service("b", wait_ready()), service("c")})};
        sim.start_all();
        CHECK(sim.starts() == Names{"a"}); // b waits for a's readiness
        CHECK(sim.state("a") == ChildState::Starting);
        sim.ready("a");
        CHECK(sim.starts() == Names{"a", "b"});
        sim.ready("b");
        CHECK(sim.starts() == Names{"a", "b", "c"});
        CHECK(sim.state("c") == ChildState::Running);
        CHECK(sim.state("root") == ChildState::Running);
    }

    TEST_CASE("otp-02 nested start is depth first") {
        Sim sim{root(Strategy::OneForOne, {service("a"),
                                           supervisor("sup1", Strategy::OneForOne,
                                                      {service("b", wait_ready()), service("c")}),
                                           service("d")})};
        sim.start_all();
        CHECK(sim.starts() == Names{"a", "b"}); // d waits until sup1 has started everything
        CHECK(sim.state("sup1") == ChildState::Starting);
        sim.ready("b");
        CHECK(sim.starts() == Names{"a", "b", "c", "d"});
        CHECK(sim.state("sup1") == ChildState::Running);
    }

    TEST_CASE("otp-03 a start-up failure rolls back and fails the root") {
        Sim sim{root(Strategy::OneForOne, {service("a"), service("b"), service("c")})};
        sim.fail_spawn("b");
        sim.start_all();
        CHECK(sim.starts() == Names{"a"});                // c is never started
        CHECK(sim.all_signals_to("a") == Sigs{sig_term}); // a is stopped per its shutdown spec
        CHECK(sim.spawns("c") == 0);
        REQUIRE(sim.exit_status);
        CHECK(*sim.exit_status == exit_start_failed);
        CHECK(sim.has_record("root", RecordKind::StartFailed, "child b failed to start"));
        CHECK(sim.has_record("b", RecordKind::SpawnFailed, "No such file"));
    }

    TEST_CASE("otp-04 roll-back is in reverse start order") {
        Sim sim{
            root(Strategy::OneForOne, {service("a"), service("b"), service("c"), service("d")})};
        sim.on_signal("c", OnSignal::Ignore); // c takes its full stop timeout: b must wait for it
        sim.fail_spawn("d");
        sim.start_all();
        sim.advance(20s);
        CHECK(sim.stop_order() == Names{"c", "b", "a"});
        CHECK(sim.when("signal b SIGTERM") == at_ms(10'000)); // after c was killed at its timeout
        CHECK(sim.exit_status == exit_start_failed);
    }

    TEST_CASE("otp-05 a start-up failure is not retried, not counted, and fails the parent too") {
        Sim sim{root(Strategy::OneForOne,
                     {service("a"), supervisor("sup1", Strategy::OneForOne,
                                               {service("b"), service("c")}, intensity(10, 10s))})};
        sim.fail_spawn("c", 5);
        sim.start_all();
        CHECK(sim.lines("spawn-failed ") == Names{"c"}); // one attempt only
        CHECK(sim.stop_order() == Names{"b", "a"});      // sup1 rolled back, then root
        CHECK(sim.status("c").restarts == 0);
        CHECK(sim.status("sup1").restarts == 0);
        CHECK(sim.exit_status == exit_start_failed);
        CHECK(sim.has_record("sup1", RecordKind::StartFailed, "child c failed"));
        CHECK(sim.has_record("root", RecordKind::StartFailed, "child sup1 failed"));
    }

    TEST_CASE("otp-06 (departure) there is no ignore: a child that cannot start fails start-up") {
        // vigil has no "condition not met" result, so OTP's ignore has no equivalent (see
        // docs/otp-departures.md). A unit that cannot run fails start-up like any other.
        Sim sim{root(Strategy::OneForOne, {service("a"), service("cond"), service("c")})};
        sim.fail_spawn("cond", 1, "condition not met");
        sim.start_all();
        CHECK(sim.spawns("c") == 0);
        CHECK(sim.exit_status == exit_start_failed);
    }

    // ---- B. Restart types -----------------------------------------------------------------------

    TEST_CASE("otp-07 permanent children are always restarted") {
        Sim sim{root(Strategy::OneForOne, {service("p")}, intensity(10, 10s))};
        sim.start_all();
        sim.exit("p", 0);
        CHECK(sim.incarnation("p") == 2);
        sim.exit("p", 1);
        CHECK(sim.incarnation("p") == 3);
        sim.exit_by_signal("p", sig_kill);
        CHECK(sim.incarnation("p") == 4);
        CHECK(sim.state("p") == ChildState::Running);
        CHECK(sim.spawns("p") == 4);
        CHECK(sim.status("p").restarts == 3);
    }

    TEST_CASE("otp-08 transient children are restarted only after an abnormal end") {
        Sim sim{root(Strategy::OneForOne, {service("t", transient()), service("u", transient())},
                     intensity(10, 10s))};
        sim.start_all();
        sim.exit("t", 1);
        CHECK(sim.incarnation("t") == 2);
        sim.exit_by_signal("t", 11); // SIGSEGV
        CHECK(sim.incarnation("t") == 3);
        sim.exit_by_signal("t", sig_kill);
        CHECK(sim.incarnation("t") == 4);
        sim.exit("t", 0);
        CHECK(sim.state("t") == ChildState::Stopped);
        CHECK(sim.incarnation("t") == 4);
        CHECK_FALSE(sim.status("t").goal == core::Goal::Up);
        // Ended by a stop (shutdown reason): not restarted either.
        CHECK(sim.command(CommandKind::Stop, "u").outcome == CommandOutcome::Ok);
        CHECK(sim.state("u") == ChildState::Stopped);
        CHECK(sim.spawns("u") == 1);
    }

    TEST_CASE("otp-09 temporary children are never restarted (departure: they stay in view, "
              "exited, and a start command starts them again)") {
        Sim sim{
            root(Strategy::OneForOne, {service("tmp", temporary()), service("tmp2", temporary())})};
        sim.start_all();
        sim.exit("tmp", 1);
        sim.exit_by_signal("tmp2", sig_kill);
        CHECK(sim.spawns("tmp") == 1);
        CHECK(sim.spawns("tmp2") == 1);
        CHECK_FALSE(sim.status("tmp").removed);
        CHECK(sim.status("tmp").exited);
        CHECK(sim.status("tmp2").exited);
        CHECK(sim.status("tmp").last_exit == ExitStatus::exited(1));
        sim.advance(60s);
        CHECK(sim.spawns("tmp") == 1); // never by itself
        CHECK(sim.command(CommandKind::Start, "tmp").outcome == CommandOutcome::Ok);
        CHECK(sim.command(CommandKind::Restart, "tmp2").outcome == CommandOutcome::Ok);
        CHECK(sim.spawns("tmp") == 2);
        CHECK(sim.spawns("tmp2") == 2);
        CHECK_FALSE(sim.status("tmp").exited);
        CHECK(sim.state("tmp") == ChildState::Running);
        sim.exit("tmp", 0); // the new incarnation is temporary too
        sim.advance(60s);
        CHECK(sim.spawns("tmp") == 2);
        CHECK(sim.status("tmp").exited);
    }

    TEST_CASE("otp-10 only real restarts count towards intensity") {
        Sim sim{root(Strategy::OneForOne,
                     {service("t", transient()), service("tmp", temporary()), service("p")},
                     intensity(0, 10s))};
        sim.start_all();
        sim.exit("t", 0);
        sim.exit("tmp", 1);
        CHECK_FALSE(sim.exit_status); // intensity 0 and still running
        CHECK(sim.state("p") == ChildState::Running);
        sim.exit("p", 1); // the first real restart exceeds intensity 0
        CHECK(sim.exit_status == exit_gave_up);
    }

    TEST_CASE("otp-11 a permanent child exiting 0 is restarted and counted") {
        Sim sim{root(Strategy::OneForOne, {service("p")}, intensity(1, 5s))};
        sim.start_all();
        sim.exit("p", 0);
        CHECK(sim.incarnation("p") == 2);
        CHECK_FALSE(sim.exit_status);
        sim.advance(2s);
        sim.exit("p", 0);
        CHECK(sim.exit_status == exit_gave_up);
        CHECK(sim.spawns("p") == 2);
    }

    TEST_CASE("otp-12 defaults (vigil's own, see docs/otp-departures.md)") {
        const ChildSpec d{};
        CHECK(d.strategy == Strategy::OneForOne);
        CHECK(d.intensity == 5);             // OTP: 1
        CHECK(d.period == Duration{10'000}); // OTP: 5 s
        CHECK(d.auto_shutdown == AutoShutdown::Never);
        CHECK(d.restart == Restart::Permanent);
        CHECK(d.kind == Kind::Service);
        CHECK(d.stop.signal == sig_term);
        CHECK(d.stop.timeout == Duration{10'000}); // OTP: 5000 ms for workers
        CHECK_FALSE(d.significant);
        // The defaults in action: 5 restarts in 10 s are carried out, the 6th gives up.
        TreeSpec t;
        ChildSpec r;
        r.name = "root";
        r.kind = Kind::Supervisor;
        r.children = {ChildId{1}};
        ChildSpec w;
        w.name = "w";
        w.backoff.initial = Duration{0};
        w.backoff.jitter = 0;
        t.nodes = {r, w};
        Sim sim{t};
        sim.start_all();
        for (int i = 0; i < 5; ++i)
            sim.exit("w", 1);
        CHECK_FALSE(sim.exit_status);
        sim.exit("w", 1);
        CHECK(sim.exit_status == exit_gave_up);
    }

    TEST_CASE("otp-13 an invalid specification starts nothing") {
        auto bad = [](TreeSpec t) {
            Sim sim{t};
            sim.start_all();
            CHECK(sim.starts().empty());
            CHECK(sim.exit_status == exit_start_failed);
            return validate(t);
        };
        auto dup = root(Strategy::OneForOne, {service("a"), service("a")});
        CHECK(bad(dup).at(0).find("share the name") != std::string::npos);
        auto perm_sig =
            root(Strategy::OneForOne, {service("a"), service("s", significant(Restart::Permanent))},
                 auto_shutdown(AutoShutdown::AnySignificant));
        CHECK(bad(perm_sig).at(0).find("transient or temporary") != std::string::npos);
        auto never_sig = root(Strategy::OneForOne, {service("s", significant(Restart::Transient))});
        CHECK(bad(never_sig).at(0).find("other than never") != std::string::npos);
        auto neg = root(Strategy::OneForOne, {service("a")}, intensity(-1, 5s));
        CHECK(bad(neg).at(0).find("intensity") != std::string::npos);
        auto zero_period = root(Strategy::OneForOne, {service("a")}, intensity(1, 0s));
        CHECK(bad(zero_period).at(0).find("period") != std::string::npos);
        auto neg_timeout = root(Strategy::OneForOne, {service("a", stop_timeout(Duration{-1}))});
        CHECK(bad(neg_timeout).at(0).find("stop timeout") != std::string::npos);
        CHECK(validate(root(Strategy::OneForOne, {service("a")})).empty());
    }

    // ---- C. Strategies
    // ----------------------------------------------------------------------------

    TEST_CASE("otp-14 one_for_one restarts only the dead child") {
        Sim sim{root(Strategy::OneForOne, {service("1"), service("2"), service("3")})};
        sim.start_all();
        const Pid p1 = sim.pid("1"), p3 = sim.pid("3");
        sim.exit("2", 1);
        CHECK(sim.incarnation("2") == 2);
        CHECK(sim.incarnation("1") == 1);
        CHECK(sim.incarnation("3") == 1);
        CHECK(sim.pid("1") == p1);
        CHECK(sim.pid("3") == p3);
        CHECK(sim.all_signals_to("1").empty());
        CHECK(sim.all_signals_to("3").empty());
        CHECK(sim.starts() == Names{"1", "2", "3", "2"});
    }

    TEST_CASE("otp-15 one_for_all stops the survivors in reverse, then starts all in order") {
        Sim sim{root(Strategy::OneForAll, {service("1"), service("2"), service("3")})};
        sim.exit_after_signal("3", 300ms); // 3 takes 300 ms to stop
        sim.start_all();
        sim.clear_log();
        sim.exit("2", 1);
        sim.advance(1s);
        CHECK(sim.stop_order() == Names{"3", "1"});
        CHECK(sim.when("exit 3 0") == at_ms(300));
        CHECK(sim.when("signal 1 SIGTERM") == at_ms(300)); // only after 3 has ended
        CHECK(sim.starts() == Names{"1", "2", "3"});
        CHECK(sim.when("spawn 1") >= sim.when("exit 1 SIGTERM"));
        for (auto n : {"1", "2", "3"})
            CHECK(sim.incarnation(n) == 2);
        CHECK(sim.all_signals_to("2").empty()); // the dead child gets no signal
    }

    TEST_CASE("otp-16 rest_for_one restarts the crashed child and those after it") {
        Sim sim{
            root(Strategy::RestForOne, {service("1"), service("2"), service("3"), service("4")})};
        sim.start_all();
        const Pid p1 = sim.pid("1");
        sim.clear_log();
        sim.exit("2", 1);
        CHECK(sim.stop_order() == Names{"4", "3"});
        CHECK(sim.starts() == Names{"2", "3", "4"});
        CHECK(sim.pid("1") == p1);
        CHECK(sim.incarnation("1") == 1);
        CHECK(sim.all_signals_to("1").empty());
        for (auto n : {"2", "3", "4"})
            CHECK(sim.incarnation(n) == 2);
    }

    TEST_CASE("otp-17 rest_for_one edge cases: last child, first child") {
        Sim sim{
            root(Strategy::RestForOne, {service("1"), service("2"), service("3"), service("4")})};
        sim.start_all();
        sim.clear_log();
        sim.exit("4", 1);
        CHECK(sim.stop_order().empty());
        CHECK(sim.starts() == Names{"4"});
        sim.clear_log();
        sim.exit("1", 1);
        CHECK(sim.stop_order() == Names{"4", "3", "2"});
        CHECK(sim.starts() == Names{"1", "2", "3", "4"});
    }

    TEST_CASE("otp-18 temporary siblings are stopped by a sweep and not brought back") {
        Sim sim{root(Strategy::OneForAll, {service("1"), service("2", temporary()), service("3")})};
        sim.start_all();
        sim.clear_log();
        sim.exit("3", 1);
        CHECK(sim.stop_order() == Names{"2", "1"});
        CHECK(sim.starts() == Names{"1", "3"});
        CHECK_FALSE(sim.alive("2"));
        CHECK(sim.state("2") == ChildState::Stopped);
        CHECK_FALSE(sim.status("2").exited); // stopped by the sweep, not ended by itself
        CHECK(sim.state("1") == ChildState::Running);
        CHECK(sim.state("3") == ChildState::Running);
        sim.exit("3", 1); // a second sweep passes over it too
        CHECK(sim.spawns("2") == 1);
        // departure: it stays in view, and a start command starts it again
        CHECK(sim.command(CommandKind::Start, "2").outcome == CommandOutcome::Ok);
        CHECK(sim.spawns("2") == 2);
    }

    TEST_CASE("otp-19 transient siblings stopped by a sweep are brought back") {
        Sim sim{root(Strategy::OneForAll, {service("1"), service("2", transient()), service("3")})};
        sim.start_all();
        sim.exit("3", 1);
        CHECK(sim.all_signals_to("2") == Sigs{sig_term});
        CHECK(sim.incarnation("2") == 2);
        CHECK(sim.state("2") == ChildState::Running);
    }

    TEST_CASE("otp-20 kept but stopped specs are started by a sweep") {
        Sim sim{root(Strategy::OneForAll,
                     {service("1"), service("2", transient()), service("3"), service("4")})};
        sim.start_all();
        sim.exit("2", 0); // transient, normal: stays down
        CHECK(sim.state("2") == ChildState::Stopped);
        CHECK(sim.command(CommandKind::Stop, "4").outcome == CommandOutcome::Ok); // terminate_child
        CHECK(sim.state("4") == ChildState::Stopped);
        sim.clear_log();
        sim.exit("3", 1);
        CHECK(sim.starts() == Names{"1", "2", "3", "4"});
        CHECK(sim.state("2") == ChildState::Running);
        CHECK(sim.state("4") == ChildState::Running);
    }

    TEST_CASE("otp-21 a multi-child restart counts once") {
        Sim sim{root(Strategy::OneForAll,
                     {service("1"), service("2"), service("3"), service("4"), service("5")},
                     intensity(1, 60s))};
        sim.start_all();
        sim.exit("3", 1);
        CHECK_FALSE(sim.exit_status); // five children restarted, one entry
        for (auto n : {"1", "2", "3", "4", "5"})
            CHECK(sim.incarnation(n) == 2);
        CHECK(sim.status("3").restarts == 1);
        CHECK(sim.status("1").restarts == 0);
        sim.advance(1s);
        sim.exit("1", 1); // the second entry within 60 s exceeds intensity 1
        CHECK(sim.exit_status == exit_gave_up);
    }

    TEST_CASE("otp-22 positions are stable across restarts") {
        Sim sim{root(Strategy::RestForOne, {service("a"), service("b"), service("c")})};
        sim.start_all();
        sim.exit("b", 1); // b and c restarted: the latest starts are b, c
        sim.exit("a", 1); // rest_for_one from a: c then b, by list order
        sim.clear_log();
        sim.exit("b", 1);
        CHECK(sim.stop_order() == Names{"c"});
        CHECK(sim.starts() == Names{"b", "c"});
        sim.clear_log();
        sim.command(CommandKind::Shutdown, "");
        CHECK(sim.stop_order() == Names{"c", "b", "a"});
    }

    // ---- D. Restart intensity and period --------------------------------------------------------

    TEST_CASE(
        "otp-23 intensity threshold: MaxR restarts in MaxT are carried out, the next gives up") {
        Sim sim{root(Strategy::OneForOne, {service("w"), service("x")}, intensity(3, 10s))};
        sim.start_all();
        for (int t = 0; t < 3; ++t) {
            sim.exit("w", 1);
            CHECK_FALSE(sim.exit_status);
            sim.advance(1s);
        }
        CHECK(sim.spawns("w") == 4);
        sim.exit("w", 1); // t = 3 s: the fourth restart within 10 s
        CHECK(sim.exit_status == exit_gave_up);
        CHECK(sim.spawns("w") == 4);
        CHECK(sim.has_record("root", RecordKind::GaveUp, "intensity 3 in 10s reached"));
    }

    TEST_CASE("otp-24 the window slides; it is not a fixed bucket") {
        SUBCASE("crashes at 0, 6, 12 are all restarted") {
            Sim sim{root(Strategy::OneForOne, {service("w")}, intensity(1, 5s))};
            sim.start_all();
            sim.exit("w", 1);
            sim.advance(6s);
            sim.exit("w", 1);
            sim.advance(6s);
            sim.exit("w", 1);
            CHECK_FALSE(sim.exit_status);
            CHECK(sim.spawns("w") == 4);
        }
        SUBCASE("crashes at 0 and 3 end the supervisor") {
            Sim sim{root(Strategy::OneForOne, {service("w")}, intensity(1, 5s))};
            sim.start_all();
            sim.exit("w", 1);
            sim.advance(3s);
            sim.exit("w", 1);
            CHECK(sim.exit_status == exit_gave_up);
        }
        SUBCASE("crashes at 0 and 4.5 end the supervisor") {
            Sim sim{root(Strategy::OneForOne, {service("w")}, intensity(1, 5s))};
            sim.start_all();
            sim.exit("w", 1);
            sim.advance(4500ms);
            sim.exit("w", 1);
            CHECK(sim.exit_status == exit_gave_up);
        }
    }

    TEST_CASE("otp-25 intensity 0: the first crash ends the supervisor") {
        Sim sim{root(Strategy::OneForOne, {service("a"), service("w")}, intensity(0, 5s))};
        sim.start_all();
        sim.exit("w", 1);
        CHECK(sim.spawns("w") == 1); // no restart attempted
        CHECK(sim.all_signals_to("a") == Sigs{sig_term});
        CHECK(sim.exit_status == exit_gave_up);
    }

    TEST_CASE("otp-26 timestamps are whole seconds; an entry is kept while T >= now - period") {
        SUBCASE("0.9 s and 5.1 s are seconds 0 and 5: 0 >= 5 - 5 still counts") {
            Sim sim{root(Strategy::OneForOne, {service("w")}, intensity(1, 5s))};
            sim.start_all();
            sim.advance(900ms);
            sim.exit("w", 1);
            sim.advance(4200ms);
            sim.exit("w", 1);
            CHECK(sim.exit_status == exit_gave_up);
        }
        SUBCASE("0.1 s and 6.0 s are seconds 0 and 6: dropped") {
            Sim sim{root(Strategy::OneForOne, {service("w")}, intensity(1, 5s))};
            sim.start_all();
            sim.advance(100ms);
            sim.exit("w", 1);
            sim.advance(5900ms);
            sim.exit("w", 1);
            CHECK_FALSE(sim.exit_status);
        }
    }

    TEST_CASE("otp-27 giving up stops the others in reverse order, then the supervisor ends") {
        Sim sim{root(Strategy::OneForOne, {service("a"), service("b"), service("c")},
                     intensity(0, 5s))};
        sim.exit_after_signal("c", 200ms);
        sim.start_all();
        sim.exit("b", 1);
        CHECK_FALSE(sim.exit_status); // c is still stopping
        sim.advance(1s);
        CHECK(sim.spawns("b") == 1);
        CHECK(sim.stop_order() == Names{"c", "a"});
        CHECK(sim.when("signal a SIGTERM") == at_ms(200));
        CHECK(sim.exit_status == exit_gave_up);
        CHECK(sim.has_record("root", RecordKind::GaveUp, "giving up"));
        CHECK(sim.has_record("root", RecordKind::Exit, "status 4"));
    }

    TEST_CASE("otp-28 a permanent child supervisor that gives up is restarted by its parent") {
        Sim sim{root(Strategy::OneForOne,
                     {supervisor("sup1", Strategy::OneForOne, {service("w"), service("v")},
                                 intensity(1, 60s)),
                      service("x")},
                     intensity(3, 60s))};
        sim.start_all();
        const Pid px = sim.pid("x");
        sim.exit("w", 1);
        sim.exit("w", 1); // sup1 gives up; root restarts it
        CHECK(sim.has_record("sup1", RecordKind::GaveUp));
        CHECK(sim.incarnation("sup1") == 2);
        CHECK(sim.status("sup1").restarts == 1);
        CHECK(sim.state("sup1") == ChildState::Running);
        CHECK(sim.lines("spawn ") == Names{"w", "v", "x", "w", "w", "v"});
        CHECK(sim.pid("x") == px);
        CHECK(sim.all_signals_to("x").empty());
        // The new sup1 has an empty history: one more crash is restarted, not a give-up.
        sim.exit("w", 1);
        CHECK(sim.incarnation("sup1") == 2);
        CHECK_FALSE(sim.exit_status);
    }

    TEST_CASE("otp-29 a transient child supervisor that gives up is not restarted") {
        Sim sim{root(Strategy::OneForOne, {supervisor("sup1", Strategy::OneForOne, {service("w")},
                                                      all({intensity(0, 60s), transient()})),
                                           service("x")})};
        sim.start_all();
        sim.exit("w", 1);
        CHECK(sim.state("sup1") == ChildState::Stopped);
        CHECK(sim.state("w") == ChildState::Stopped);
        CHECK(sim.spawns("w") == 1);
        CHECK(sim.state("x") == ChildState::Running);
        CHECK(sim.all_signals_to("x").empty());
        CHECK_FALSE(sim.exit_status);
    }

    TEST_CASE("otp-30 restart budgets multiply down the tree") {
        Sim sim{root(Strategy::OneForOne,
                     {supervisor("sup1", Strategy::OneForOne, {service("w")}, intensity(1, 3600s))},
                     intensity(1, 3600s))};
        sim.start_all();
        for (int i = 0; i < 20 && !sim.exit_status; ++i) {
            sim.advance(100ms);
            if (sim.alive("w")) sim.exit("w", 1);
        }
        CHECK(sim.spawns("w") == 4); // (1 + 1) * (1 + 1)
        CHECK(sim.incarnation("sup1") == 2);
        CHECK(sim.exit_status == exit_gave_up);
    }

    TEST_CASE("otp-31 failed restarts keep counting, then the supervisor gives up") {
        Sim sim{root(Strategy::OneForOne,
                     {supervisor("sup1", Strategy::OneForOne, {service("a"), service("w")},
                                 all({intensity(3, 60s), transient()})),
                      service("x")})};
        sim.start_all();
        sim.fail_spawn("w", 100);
        sim.exit("w", 1);
        CHECK(sim.lines("spawn-failed ") == Names{"w", "w", "w"}); // MaxR attempts, no endless loop
        CHECK(sim.has_record("sup1", RecordKind::GaveUp));
        // a was left alone until the give-up: its only signal is the give-up's stop.
        CHECK(sim.all_signals_to("a") == Sigs{sig_term});
        auto lines = sim.log;
        std::size_t last_fail = 0, a_stop = 0;
        for (std::size_t i = 0; i < lines.size(); ++i) {
            if (lines[i].text == "spawn-failed w") last_fail = i;
            if (lines[i].text == "signal a SIGTERM") a_stop = i;
        }
        CHECK(a_stop > last_fail);
        CHECK(sim.state("x") == ChildState::Running);
    }

    TEST_CASE("otp-32 a failed sweep retries from the failed child") {
        SUBCASE("rest_for_one: children before k stay running, the retry begins at k") {
            Sim sim{root(Strategy::RestForOne,
                         {service("1"), service("2"), service("3"), service("4")},
                         intensity(5, 60s))};
            sim.start_all();
            sim.fail_spawn("3", 1);
            sim.clear_log();
            sim.exit("2", 1);
            CHECK(sim.lines("spawn-failed ") == Names{"3"});
            CHECK(sim.starts() == Names{"2", "3", "4"});
            CHECK(sim.stop_order() == Names{"4", "3"}); // 2 is not stopped again
            CHECK(sim.incarnation("2") == 2);
            CHECK(sim.state("4") == ChildState::Running);
            CHECK(sim.all_signals_to("1").empty());
        }
        SUBCASE("one_for_all: the retry is a full sweep again") {
            Sim sim{root(Strategy::OneForAll, {service("1"), service("2"), service("3")},
                         intensity(5, 60s))};
            sim.start_all();
            sim.fail_spawn("2", 1);
            sim.clear_log();
            sim.exit("1", 1);
            // stop 3, 2; start 1; 2 fails: stop 1; start 1, 2, 3.
            CHECK(sim.stop_order() == Names{"3", "2", "1"});
            CHECK(sim.starts() == Names{"1", "1", "2", "3"});
            CHECK(sim.incarnation("1") == 3);
            CHECK(sim.state("3") == ChildState::Running);
        }
    }

    TEST_CASE("otp-33 manual stops and sweep stops add nothing to the restart count") {
        Sim sim{root(Strategy::OneForAll, {service("a"), service("b"), service("c")},
                     intensity(1, 60s))};
        sim.start_all();
        CHECK(sim.command(CommandKind::Stop, "b", "vigilctl").outcome == CommandOutcome::Ok);
        CHECK(sim.command(CommandKind::Restart, "c", "vigilctl").outcome == CommandOutcome::Ok);
        CHECK(sim.state("b") == ChildState::Stopped);
        CHECK(sim.spawns("b") == 1); // not restarted
        CHECK(sim.incarnation("c") == 2);
        CHECK(sim.incarnation("a") == 1); // a manual restart is not a sweep
        sim.exit("a", 1);                 // the first counted restart: a sweep, counted once
        CHECK_FALSE(sim.exit_status);
        CHECK(sim.spawns("c") == 3); // no extra restart beyond the sweep's own start phase
        CHECK(sim.spawns("a") == 2);
    }

    // ---- E. Shutdown
    // ------------------------------------------------------------------------------

    TEST_CASE("otp-34 brutal_kill sends SIGKILL and nothing else") {
        Sim sim{root(Strategy::OneForOne, {service("k", brutal_kill())})};
        sim.on_signal("k", OnSignal::Ignore); // traps SIGTERM: irrelevant
        sim.start_all();
        sim.command(CommandKind::Shutdown, "", "SIGTERM");
        CHECK(sim.all_signals_to("k") == Sigs{sig_kill});
        CHECK(sim.when("exit k SIGKILL") == at_ms(0));
        CHECK(sim.exit_status == exit_clean);
    }

    TEST_CASE("otp-35 an integer stop timeout: SIGKILL exactly when it passes, not before") {
        Sim sim{root(Strategy::OneForOne,
                     {service("slow", stop_timeout(500ms)), service("fast", stop_timeout(500ms))})};
        sim.on_signal("slow", OnSignal::Ignore);
        sim.exit_after_signal("fast", 100ms);
        sim.start_all();
        sim.advance(1s);
        sim.command(CommandKind::Stop, "slow");
        sim.advance(499ms);
        CHECK(sim.all_signals_to("slow") == Sigs{sig_term});
        sim.advance(1ms);
        CHECK(sim.all_signals_to("slow") == Sigs{sig_term, sig_kill});
        CHECK(sim.when("signal slow SIGKILL") == at_ms(1500));
        sim.command(CommandKind::Stop, "fast");
        sim.advance(2s);
        CHECK(sim.all_signals_to("fast") == Sigs{sig_term}); // exited after 100 ms: no SIGKILL
        CHECK(sim.state("fast") == ChildState::Stopped);
    }

    TEST_CASE("otp-36 infinity: never SIGKILL; the default for supervisors") {
        Sim sim{root(Strategy::OneForOne,
                     {supervisor("sup1", Strategy::OneForOne, {service("w", stop_timeout(2s))}),
                      service("inf", stop_timeout(std::nullopt))})};
        CHECK_FALSE(sim.core.spec(sim.id("sup1")).stop.timeout.has_value());
        sim.on_signal("inf", OnSignal::Ignore);
        sim.on_signal("w", OnSignal::Ignore);
        sim.start_all();
        sim.command(CommandKind::Shutdown, "");
        sim.advance(3600s);
        CHECK(sim.all_signals_to("inf") == Sigs{sig_term});
        CHECK(sim.state("inf") == ChildState::Stopping);
        CHECK_FALSE(sim.core.next_deadline()); // no timer armed at all
        sim.exit("inf", 0);
        // sup1 waited without limit while w got its own 2 s timeout.
        sim.advance(2s);
        CHECK(sim.all_signals_to("w") == Sigs{sig_term, sig_kill});
        CHECK(sim.exit_status == exit_clean);
    }

    TEST_CASE("otp-37 a supervisor stops its children in reverse order, one at a time") {
        Sim sim{root(Strategy::OneForOne, {service("a"), service("b"), service("c")})};
        for (auto n : {"a", "b", "c"})
            sim.exit_after_signal(n, 100ms);
        sim.start_all();
        sim.command(CommandKind::Shutdown, "");
        sim.advance(1s);
        CHECK(sim.stop_order() == Names{"c", "b", "a"});
        CHECK(sim.when("signal c SIGTERM") == at_ms(0));
        CHECK(sim.when("signal b SIGTERM") == at_ms(100));
        CHECK(sim.when("signal a SIGTERM") == at_ms(200));
        CHECK(sim.when("exit-vigild 0") == at_ms(300));
    }

    TEST_CASE("otp-38 nested stop is depth first in reverse") {
        Sim sim{root(Strategy::OneForOne,
                     {service("a"),
                      supervisor("sup1", Strategy::OneForOne, {service("b"), service("c")}),
                      service("d")})};
        sim.exit_after_signal("b", 50ms);
        sim.start_all();
        sim.command(CommandKind::Shutdown, "");
        sim.advance(1s);
        CHECK(sim.stop_order() == Names{"d", "c", "b", "a"});
        CHECK(sim.when("signal a SIGTERM") >= sim.when("exit b 0"));
        CHECK(sim.when("signal a SIGTERM") == at_ms(50));
        CHECK(sim.has_record("sup1", RecordKind::Stopped));
        CHECK(sim.exit_status == exit_clean);
    }

    TEST_CASE("otp-39 no restarts during shutdown") {
        Sim sim{root(Strategy::OneForOne, {service("a"), service("b", stop_timeout(1s))},
                     intensity(0, 60s))};
        sim.on_signal("b", OnSignal::Ignore);
        sim.start_all();
        sim.command(CommandKind::Shutdown, "");
        sim.exit("a", 1); // a crashes while b is stopping
        CHECK(sim.spawns("a") == 1);
        sim.advance(2s);
        CHECK(sim.exit_status == exit_clean); // not exit_gave_up: nothing was counted
        CHECK(sim.all_signals_to("a").empty());
    }

    TEST_CASE("otp-40 sweeps use each child's own stop timeout") {
        Sim sim{root(Strategy::OneForAll,
                     {service("1"), service("2"), service("3", stop_timeout(2s))})};
        sim.on_signal("3", OnSignal::Ignore);
        sim.start_all();
        sim.clear_log();
        sim.exit("1", 1);
        sim.advance(1999ms);
        CHECK(sim.starts().empty());
        sim.advance(1ms);
        CHECK(sim.all_signals_to("3") == Sigs{sig_term, sig_kill});
        CHECK(sim.starts() == Names{"1", "2", "3"});
        CHECK(sim.when("spawn 1") == at_ms(2000));
    }

    TEST_CASE("otp-41 a kill after the timeout is reported and the sequence goes on") {
        Sim sim{root(Strategy::OneForOne, {service("a"), service("b", stop_timeout(500ms))})};
        sim.on_signal("b", OnSignal::Ignore);
        sim.start_all();
        sim.command(CommandKind::Shutdown, "");
        sim.advance(1s);
        CHECK(sim.has_record("b", RecordKind::Killed, "stop timeout 500ms passed; sent SIGKILL"));
        CHECK(sim.when("signal a SIGTERM") == at_ms(500));
        CHECK(sim.exit_status == exit_clean);
    }

    TEST_CASE("otp-42 (departure) no simple_one_for_one: a flat supervisor stops one at a time") {
        Sim sim{root(Strategy::OneForOne, {service("w1"), service("w2"), service("w3")})};
        for (auto n : {"w1", "w2", "w3"})
            sim.exit_after_signal(n, 10ms);
        sim.start_all();
        sim.command(CommandKind::Shutdown, "");
        sim.advance(1s);
        CHECK(sim.when("signal w2 SIGTERM") == at_ms(10));
        CHECK(sim.when("signal w1 SIGTERM") == at_ms(20));
    }

    // ---- F. Significant children and auto_shutdown
    // ------------------------------------------------

    TEST_CASE(
        "otp-43 auto_shutdown never: significant is rejected, endings never stop the supervisor") {
        CHECK_FALSE(
            validate(root(Strategy::OneForOne, {service("s", significant(Restart::Transient))}))
                .empty());
        Sim sim{root(Strategy::OneForOne,
                     {service("t", transient()), service("tmp", temporary()), service("w")})};
        sim.start_all();
        sim.exit("t", 0);
        sim.exit("tmp", 0);
        CHECK_FALSE(sim.exit_status);
        CHECK(sim.state("root") == ChildState::Running);
        CHECK(sim.state("w") == ChildState::Running);
    }

    TEST_CASE(
        "otp-44 any_significant: a significant child ending by itself shuts the supervisor down") {
        SUBCASE("transient significant exiting 0; vigild exits with its status") {
            Sim sim{root(Strategy::OneForOne,
                         {service("w"), service("main", significant(Restart::Transient))},
                         auto_shutdown(AutoShutdown::AnySignificant))};
            sim.start_all();
            sim.exit("main", 0);
            CHECK(sim.all_signals_to("w") == Sigs{sig_term});
            CHECK(sim.exit_status == 0);
            CHECK(sim.has_record("root", RecordKind::AutoShutdown, "significant child main"));
        }
        SUBCASE("temporary significant exiting 3: vigild exits 3 (the container convention)") {
            Sim sim{root(Strategy::OneForOne,
                         {service("w"), service("main", significant(Restart::Temporary))},
                         auto_shutdown(AutoShutdown::AnySignificant))};
            sim.start_all();
            sim.exit("main", 3);
            CHECK(sim.all_signals_to("w") == Sigs{sig_term});
            CHECK(sim.exit_status == 3);
        }
        SUBCASE("killed by a signal: 128 + N") {
            Sim sim{root(Strategy::OneForOne, {service("main", significant(Restart::Temporary))},
                         auto_shutdown(AutoShutdown::AnySignificant))};
            sim.start_all();
            sim.exit_by_signal("main", 11);
            CHECK(sim.exit_status == 139);
        }
    }

    TEST_CASE("otp-45 a significant transient crash is restarted, not a shutdown") {
        Sim sim{root(Strategy::OneForOne,
                     {service("w"), service("s", significant(Restart::Transient))},
                     auto_shutdown(AutoShutdown::AnySignificant))};
        sim.start_all();
        sim.exit("s", 1);
        CHECK(sim.incarnation("s") == 2);
        CHECK(sim.all_signals_to("w").empty());
        CHECK_FALSE(sim.exit_status);
        CHECK(sim.status("s").restarts == 1);
    }

    TEST_CASE("otp-46 all_significant: only the last significant child ending shuts down") {
        Sim sim{root(Strategy::OneForOne,
                     {service("s1", significant(Restart::Transient)),
                      service("s2", significant(Restart::Transient)), service("w")},
                     auto_shutdown(AutoShutdown::AllSignificant))};
        sim.start_all();
        sim.exit("s1", 0);
        CHECK_FALSE(sim.exit_status);
        CHECK(sim.all_signals_to("w").empty());
        CHECK(sim.state("s2") == ChildState::Running);
        sim.exit("s2", 0);
        CHECK(sim.all_signals_to("w") == Sigs{sig_term});
        CHECK(sim.exit_status == 0);
    }

    TEST_CASE("otp-47 only self-caused endings trigger auto_shutdown") {
        SUBCASE("a stop command") {
            Sim sim{root(Strategy::OneForOne,
                         {service("s", significant(Restart::Transient)), service("w")},
                         auto_shutdown(AutoShutdown::AnySignificant))};
            sim.start_all();
            sim.command(CommandKind::Stop, "s");
            CHECK(sim.state("s") == ChildState::Stopped);
            CHECK_FALSE(sim.exit_status);
            CHECK(sim.state("w") == ChildState::Running);
        }
        SUBCASE("a sweep") {
            Sim sim{root(Strategy::OneForAll,
                         {service("s", significant(Restart::Transient)), service("w")},
                         auto_shutdown(AutoShutdown::AnySignificant))};
            sim.start_all();
            sim.exit("w", 1);
            CHECK(sim.all_signals_to("s") == Sigs{sig_term});
            CHECK(sim.incarnation("s") == 2);
            CHECK_FALSE(sim.exit_status);
        }
        SUBCASE("the supervisor's own shutdown") {
            Sim sim{root(Strategy::OneForOne,
                         {supervisor("sup1", Strategy::OneForOne,
                                     {service("s", significant(Restart::Temporary))},
                                     auto_shutdown(AutoShutdown::AnySignificant)),
                          service("w")})};
            sim.start_all();
            sim.command(CommandKind::Stop, "sup1");
            CHECK(sim.state("sup1") == ChildState::Stopped);
            CHECK_FALSE(sim.has_record("sup1", RecordKind::AutoShutdown));
            CHECK_FALSE(sim.exit_status);
        }
    }

    TEST_CASE("otp-48 auto_shutdown cascades up the tree as shutdown") {
        SUBCASE("transient significant supervisor in an any_significant parent") {
            Sim sim{root(Strategy::OneForOne,
                         {service("x"), supervisor("sup1", Strategy::OneForOne,
                                                   {service("s", significant(Restart::Temporary))},
                                                   all({auto_shutdown(AutoShutdown::AnySignificant),
                                                        significant(Restart::Transient)}))},
                         auto_shutdown(AutoShutdown::AnySignificant))};
            sim.start_all();
            sim.exit("s", 7);
            CHECK(sim.has_record("sup1", RecordKind::AutoShutdown));
            CHECK(sim.has_record("root", RecordKind::AutoShutdown, "sup1"));
            CHECK(sim.all_signals_to("x") == Sigs{sig_term});
            CHECK(sim.exit_status == 7);
        }
        SUBCASE("transient, not significant: not restarted, the parent stays up") {
            Sim sim{root(Strategy::OneForOne,
                         {service("x"), supervisor("sup1", Strategy::OneForOne,
                                                   {service("s", significant(Restart::Temporary))},
                                                   all({auto_shutdown(AutoShutdown::AnySignificant),
                                                        transient()}))})};
            sim.start_all();
            sim.exit("s", 0);
            CHECK(sim.state("sup1") == ChildState::Stopped);
            CHECK(sim.incarnation("sup1") == 1);
            CHECK_FALSE(sim.exit_status);
        }
        SUBCASE("permanent: restarted, and the loop uses up the parent's intensity") {
            Sim sim{root(Strategy::OneForOne,
                         {supervisor("sup1", Strategy::OneForOne,
                                     {service("s", significant(Restart::Temporary))},
                                     auto_shutdown(AutoShutdown::AnySignificant))},
                         intensity(2, 60s))};
            sim.start_all();
            sim.exit("s", 0);
            CHECK(sim.incarnation("sup1") == 2);
            CHECK(sim.incarnation("s") == 2); // the restarted sup1 starts its temporary child again
            sim.exit("s", 0);
            CHECK_FALSE(sim.exit_status);
            sim.exit("s", 0);
            CHECK(sim.exit_status == exit_gave_up);
        }
    }

    // ---- G. Manual control
    // --------------------------------------------------------------------------

    TEST_CASE("otp-49 (departure) children added by reload take their place in the spec order") {
        Sim sim{root(Strategy::RestForOne, {service("a"), service("b")})};
        sim.start_all();
        auto next = root(Strategy::RestForOne, {service("a"), service("b"), service("z")});
        auto r = sim.reload(next);
        CHECK(r.added == Names{"z"});
        CHECK(sim.state("z") == ChildState::Running);
        sim.clear_log();
        sim.exit("b", 1); // rest_for_one: z comes after b
        CHECK(sim.stop_order() == Names{"z"});
        sim.clear_log();
        sim.command(CommandKind::Shutdown, "");
        CHECK(sim.stop_order() == Names{"z", "b", "a"}); // stopped first
    }

    TEST_CASE("otp-50 manual stop and start") {
        Sim sim{root(Strategy::OneForOne,
                     {service("p"), service("t", transient()), service("tmp", temporary())},
                     intensity(0, 60s))};
        sim.start_all();
        CHECK(sim.command(CommandKind::Stop, "p", "vigilctl (uid 0)").outcome ==
              CommandOutcome::Ok);
        CHECK(sim.command(CommandKind::Stop, "t").outcome == CommandOutcome::Ok);
        CHECK(sim.all_signals_to("p") == Sigs{sig_term});
        CHECK(sim.state("p") == ChildState::Stopped);
        CHECK_FALSE(sim.exit_status); // not counted (intensity 0)
        CHECK_FALSE(sim.status("p").removed);
        CHECK(sim.command(CommandKind::Stop, "p").outcome == CommandOutcome::AlreadyStopped);
        CHECK(sim.has_record("p", RecordKind::Command, "stop requested by vigilctl (uid 0)"));
        CHECK(sim.command(CommandKind::Start, "p").outcome == CommandOutcome::Ok);
        CHECK(sim.incarnation("p") == 2);
        CHECK(sim.state("p") == ChildState::Running);
        CHECK(sim.command(CommandKind::Start, "p").outcome == CommandOutcome::AlreadyRunning);
        CHECK(sim.command(CommandKind::Start, "t").outcome == CommandOutcome::Ok);
        CHECK(sim.state("t") == ChildState::Running);
        CHECK(sim.command(CommandKind::Stop, "tmp").outcome == CommandOutcome::Ok);
        // departure: a temporary child stopped by command stays in view, and can be started
        CHECK(sim.state("tmp") == ChildState::Stopped);
        CHECK_FALSE(sim.status("tmp").exited);
        CHECK(sim.command(CommandKind::Start, "tmp").outcome == CommandOutcome::Ok);
        CHECK(sim.state("tmp") == ChildState::Running);
        CHECK_FALSE(sim.exit_status);
    }

} // TEST_SUITE

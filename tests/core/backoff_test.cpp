// backoff_test.cpp: vigil's restart delay (not in OTP): sequence, cap, jitter, reset, and how
// it combines with intensity (decided and counted when the child ends; only the spawn waits).
#include <algorithm>
#include <doctest/doctest.h>

#include "sim.hpp"

using namespace vigil;
using namespace vigil::core;
using namespace vigil::test;
using namespace std::chrono_literals;

namespace {
Tweak backoff(Duration initial, Duration max, double factor, double jitter,
              Duration reset_after = 3600s) {
    return [=](ChildSpec &s) {
        s.backoff = BackoffSpec{initial, max, factor, jitter, reset_after};
    };
}

// Crashes `w` as soon as it runs, `n` times, and returns each restart delay (exit -> spawn).
std::vector<std::int64_t> delays(Sim &sim, int n) {
    std::vector<std::int64_t> out;
    for (int i = 0; i < n; ++i) {
        sim.exit("w", 1);
        const TimePoint crashed = sim.now;
        REQUIRE(sim.state("w") == ChildState::Backoff);
        sim.advance(Duration{*sim.status("w").backoff_until - sim.now});
        REQUIRE(sim.state("w") == ChildState::Running);
        out.push_back((*sim.when("spawn w", sim.spawns("w") - 1) - crashed).count());
    }
    return out;
}
} // namespace

TEST_SUITE("core") {

    TEST_CASE("backoff: delays grow by the factor and stop at the cap") {
        Sim sim{root(Strategy::OneForOne, {service("w", backoff(100ms, 1000ms, 2.0, 0.0))},
                     intensity(100, 1s))};
        sim.start_all();
        CHECK(delays(sim, 7) == std::vector<std::int64_t>{100, 200, 400, 800, 1000, 1000, 1000});
    }

    TEST_CASE("backoff: the state says Backoff and until when; the timer is the core's deadline") {
        Sim sim{root(Strategy::OneForOne, {service("w", backoff(750ms, 30s, 2.0, 0.0))})};
        sim.start_all();
        sim.advance(500ms);
        sim.exit("w", 1);
        // The delay spaces starts: 750ms from the spawn at t=0, so 250ms after this crash.
        const ChildStatus s = sim.status("w");
        CHECK(s.state == ChildState::Backoff);
        CHECK(s.goal == core::Goal::Up);
        REQUIRE(s.backoff_until);
        CHECK(*s.backoff_until == at_ms(750));
        CHECK(sim.core.next_deadline() == at_ms(750));
        CHECK(sim.has_record("w", RecordKind::Exited,
                             "exited with status 1; restart in 250ms (backoff)"));
        sim.advance(249ms);
        CHECK(sim.spawns("w") == 1);
        sim.advance(1ms);
        CHECK(sim.spawns("w") == 2);
        CHECK_FALSE(sim.status("w").backoff_until);
        CHECK_FALSE(sim.core.next_deadline());
    }

    TEST_CASE(
        "backoff: jitter stays within [1-j, 1+j], varies, and is reproducible from the seed") {
        auto run = [](std::uint64_t seed) {
            TreeSpec t =
                root(Strategy::OneForOne, {service("w", backoff(1000ms, 1000ms, 1.0, 0.25))},
                     intensity(1000, 1s));
            t.seed = seed;
            Sim sim{t};
            sim.start_all();
            return delays(sim, 40);
        };
        const auto a = run(42), b = run(42), c = run(43);
        CHECK(a == b);
        CHECK(a != c);
        for (auto d : a) {
            CHECK(d >= 750);
            CHECK(d <= 1250);
        }
        CHECK(*std::min_element(a.begin(), a.end()) < 900); // it really spreads
        CHECK(*std::max_element(a.begin(), a.end()) > 1100);
    }

    TEST_CASE("backoff: a run longer than the delay restarts at once, the step still grows; "
              "reset_after resets it") {
        Sim sim{root(Strategy::OneForOne, {service("w", backoff(100ms, 10s, 2.0, 0.0, 5s))},
                     intensity(100, 1s))};
        sim.start_all();
        CHECK(delays(sim, 3) == std::vector<std::int64_t>{100, 200, 400});
        // Ran 1s, longer than the next delay (800ms): restarted at once, but it was a failure
        // like the others: the next one is spaced by the next step.
        sim.advance(1s);
        sim.exit("w", 1);
        CHECK(sim.state("w") == ChildState::Running);
        CHECK(sim.spawns("w") == 5);
        CHECK(sim.has_record("w", RecordKind::Exited, "exited with status 1; restarting"));
        CHECK(delays(sim, 1) == std::vector<std::int64_t>{1600});
        sim.advance(4999ms); // not quite reset_after: at once (the delay is 3.2s), step grows
        sim.exit("w", 1);
        CHECK(sim.state("w") == ChildState::Running);
        CHECK(delays(sim, 1) == std::vector<std::int64_t>{6400});
        sim.advance(5s); // a healthy run: back to the first step, which is used up at once
        sim.exit("w", 1);
        CHECK(sim.state("w") == ChildState::Running);
        CHECK(delays(sim, 1) == std::vector<std::int64_t>{200});
    }

    // A service that crashes a little after it starts (here 300 ms) must not escape the backoff
    // by outliving the first delays: counted from each start, the spacing grows with every
    // consecutive failure, so restarts thin out (100 crashes without this took 30 s).
    TEST_CASE("backoff: a slow crasher is restarted less and less often") {
        Sim sim{root(Strategy::OneForOne, {service("w", backoff(100ms, 30s, 2.0, 0.0, 60s))},
                     intensity(1000, 1s))};
        sim.start_all();
        for (int i = 0; i < 12; ++i) {
            sim.advance(300ms);
            sim.exit("w", 1);
            if (sim.state("w") == ChildState::Backoff)
                sim.advance(Duration{*sim.status("w").backoff_until - sim.now});
        }
        // Spacings 100, 200 (at once after 300 ms), 400, 800, ... 30 s: 12 crashes take about
        // 0.3 + 0.3 + 0.4 + 0.8 + 1.6 + 3.2 + 6.4 + 12.8 + 25.6 + 30 + 30 + 30 s.
        CHECK(sim.spawns("w") == 13);
        CHECK(sim.now >= at_ms(140'000));
        std::vector<std::int64_t> gaps;
        for (int i = 1; i < 13; ++i)
            gaps.push_back((*sim.when("spawn w", i) - *sim.when("spawn w", i - 1)).count());
        CHECK(gaps.front() == 300);
        CHECK(gaps.back() == 30'000);
        CHECK(std::is_sorted(gaps.begin(), gaps.end()));
    }

    TEST_CASE("backoff: the restart is counted when the child ends, not when it is spawned") {
        // intensity 1 in 5 s, a 6 s delay. Counted at the crash (t=0 and t=6.5): the entries are
        // 6.5 s apart and no give-up. Counted at the spawns (t=6 and ...) it would give up.
        Sim sim{root(Strategy::OneForOne, {service("w", backoff(6s, 60s, 1.0, 0.0))},
                     intensity(1, 5s))};
        sim.start_all();
        sim.exit("w", 1);
        sim.advance(6500ms);
        CHECK(sim.spawns("w") == 2);
        sim.exit("w", 1);
        CHECK_FALSE(sim.exit_status);
        CHECK(sim.state("w") == ChildState::Backoff);
    }

    TEST_CASE("backoff: giving up happens at the decision, never after the delay") {
        Sim sim{root(Strategy::OneForOne, {service("w", backoff(10s, 60s, 2.0, 0.0))},
                     intensity(0, 5s))};
        sim.start_all();
        sim.exit("w", 1);
        CHECK(sim.exit_status == exit_gave_up);
        CHECK(sim.now == at_ms(0));
        CHECK(sim.state("w") == ChildState::Stopped);
    }

    TEST_CASE("backoff: a stop command cancels a pending restart") {
        Sim sim{root(Strategy::OneForOne, {service("w", backoff(1s, 60s, 2.0, 0.0))})};
        sim.start_all();
        sim.exit("w", 1);
        CHECK(sim.command(CommandKind::Stop, "w").outcome == CommandOutcome::Ok);
        CHECK(sim.state("w") == ChildState::Stopped);
        CHECK_FALSE(sim.core.next_deadline());
        sim.advance(10s);
        CHECK(sim.spawns("w") == 1);
        // A start command during backoff starts at once.
        sim.command(CommandKind::Start, "w");
        sim.exit("w", 1);
        CHECK(sim.state("w") == ChildState::Backoff);
        CHECK(sim.command(CommandKind::Start, "w").outcome == CommandOutcome::Ok);
        CHECK(sim.state("w") == ChildState::Running);
        CHECK(sim.spawns("w") == 3);
    }

    TEST_CASE(
        "backoff: in a sweep the siblings start in order and wait for the crashed child's delay") {
        Sim sim{root(Strategy::OneForAll,
                     {service("1"), service("2", backoff(300ms, 60s, 2.0, 0.0)), service("3")})};
        sim.start_all();
        sim.clear_log();
        sim.exit("2", 1);
        CHECK(sim.stop_order() == std::vector<std::string>{"3", "1"});
        CHECK(sim.starts() == std::vector<std::string>{"1"});
        sim.advance(300ms);
        CHECK(sim.starts() == std::vector<std::string>{"1", "2", "3"});
        CHECK(sim.when("spawn 2") == at_ms(300));
    }

    TEST_CASE("backoff: supervisors restart without delay") {
        Sim sim{root(Strategy::OneForOne,
                     {supervisor("sup1", Strategy::OneForOne,
                                 {service("w", backoff(5s, 60s, 2.0, 0.0))}, intensity(0, 60s))})};
        sim.start_all();
        sim.exit("w", 1); // sup1 gives up at once; root restarts it at once
        CHECK(sim.incarnation("sup1") == 2);
        CHECK(sim.spawns("w") == 2);
        CHECK(sim.when("spawn w", 1) == at_ms(0));
    }

} // TEST_SUITE

// parallel_test.cpp: supervisors with `parallel: true` (docs/otp-departures.md, item 42).
//
// A parallel supervisor starts every child at once and stops every child at once, keeping only
// the order that `after` gives; strategies, intensity and start-up rollback are the sequential
// ones. Each case checks, through the simulated shell, which processes exist and which signals
// they got before any other event could happen.
#include <doctest/doctest.h>

#include <algorithm>

#include "sim.hpp"

using namespace vigil;
using namespace vigil::core;
using namespace vigil::test;
using namespace std::chrono_literals;

using Names = std::vector<std::string>;

namespace {
Tweak parallel(Strategy strategy = Strategy::OneForOne) {
    return [=](ChildSpec &s) {
        s.parallel = true;
        s.strategy = strategy;
        s.intensity = 100;
    };
}

TreeSpec abc(Strategy strategy = Strategy::OneForOne) {
    return root(
        strategy,
        {service("a", wait_ready()), service("b", wait_ready()), service("c", wait_ready())},
        parallel(strategy));
}

Names sorted(Names v) {
    std::sort(v.begin(), v.end());
    return v;
}
} // namespace

TEST_SUITE("core") {

    TEST_CASE("parallel: every child is spawned at once, the supervisor runs when all have") {
        Sim sim{abc()};
        sim.start_all();
        CHECK(sim.starts() == Names{"a", "b", "c"}); // nobody waited for a's readiness
        CHECK(sim.state("root") == ChildState::Starting);
        sim.ready("c");
        sim.ready("a");
        CHECK(sim.state("root") == ChildState::Starting);
        sim.ready("b");
        CHECK(sim.state("root") == ChildState::Running);
    }

    TEST_CASE("parallel: `after` still orders the start") {
        TreeSpec t = abc();
        set_after(t, "c", {"a"});
        Sim sim{t};
        sim.start_all();
        CHECK(sim.starts() == Names{"a", "b"});
        sim.ready("b");
        CHECK(sim.starts() == Names{"a", "b"}); // c waits for a, not for b
        sim.ready("a");
        CHECK(sim.starts() == Names{"a", "b", "c"});
    }

    TEST_CASE("parallel: shutdown signals every child at once; `after` stops dependents first") {
        TreeSpec t = abc();
        set_after(t, "c", {"a"});
        Sim sim{t};
        sim.start_all();
        for (const char *n : {"a", "b", "c"})
            sim.ready(n);
        for (const char *n : {"a", "b", "c"})
            sim.on_signal(n, OnSignal::Ignore);
        sim.command(CommandKind::Shutdown, "", "test");
        // b and c at once; a only once c, which is `after` it, is down.
        CHECK(sorted(sim.stop_order()) == Names{"b", "c"});
        sim.exit("c", 0);
        REQUIRE(sim.stop_order().size() == 3); // b still ignores its SIGTERM
        CHECK(sim.stop_order()[2] == "a");
        sim.exit("a", 0);
        CHECK_FALSE(sim.exit_status);
        sim.advance(10s); // b's stop timeout: SIGKILL
        REQUIRE(sim.exit_status);
        CHECK(*sim.exit_status == exit_clean);
    }

    TEST_CASE("parallel: a start-up failure rolls back every child started so far (item 3)") {
        Sim sim{abc()};
        sim.start_all();
        sim.ready("a");
        sim.exit("b", 1); // b ends before it was ready: the tree fails to start
        REQUIRE(sim.exit_status);
        CHECK(*sim.exit_status == exit_start_failed);
        CHECK_FALSE(sim.alive("a"));
        CHECK_FALSE(sim.alive("c"));
        CHECK(sim.spawns("b") == 1); // not retried
    }

    TEST_CASE("parallel one_for_all: the sweep stops the survivors at once, then starts all") {
        Sim sim{abc(Strategy::OneForAll)};
        sim.start_all();
        for (const char *n : {"a", "b", "c"})
            sim.ready(n);
        sim.on_signal("a", OnSignal::Ignore);
        sim.clear_log();
        sim.exit("b", 1);
        CHECK(sorted(sim.stop_order()) == Names{"a", "c"});
        CHECK(sim.starts().empty()); // the start phase waits for a
        sim.exit("a", 0);
        CHECK(sim.starts() == Names{"a", "b", "c"});
        CHECK(sim.status("b").restarts == 1);
    }

    TEST_CASE("parallel one_for_one: a crash restarts only that child, while others start") {
        Sim sim{abc()};
        sim.start_all();
        sim.ready("a");
        sim.clear_log();
        sim.exit("a", 1); // a started already: a crash, restarted at once (no backoff here)
        CHECK(sim.starts() == Names{"a"});
        CHECK(sim.state("root") == ChildState::Starting);
        for (const char *n : {"a", "b", "c"})
            sim.ready(n);
        CHECK(sim.state("root") == ChildState::Running);
    }

    TEST_CASE("parallel: reload can switch a supervisor between parallel and sequential") {
        TreeSpec seq =
            root(Strategy::OneForOne, {service("a", wait_ready()), service("b", wait_ready())});
        Sim sim{seq};
        sim.start_all();
        CHECK(sim.starts() == Names{"a"});
        sim.ready("a");
        sim.ready("b");
        TreeSpec par = abc();
        const auto r = sim.reload(par);
        CHECK(r.errors.empty());
        CHECK(r.updated == std::vector<std::string>{"root"});
        CHECK(sim.starts() == Names{"a", "b", "c"});
        sim.ready("c");
        for (const char *n : {"a", "b", "c"})
            sim.on_signal(n, OnSignal::Ignore);
        sim.command(CommandKind::Shutdown, "", "test");
        CHECK(sorted(sim.stop_order()) == Names{"a", "b", "c"});
    }

    TEST_CASE("parallel: `after` must name an earlier sibling") {
        TreeSpec t = abc();
        set_after(t, "a", {"c"});
        const auto errors = validate(t);
        REQUIRE(errors.size() == 1);
        CHECK(errors[0] == "\"a\": \"after\" names a child that is not an earlier sibling");
    }

} // TEST_SUITE

// chaos_test.cpp: random event sequences against invariants (a deterministic soak).
//
// A fixed-seed generator drives a nested tree through crashes, health failures, commands,
// readiness and time. After every step the simulated process table and the core must agree
// (a child has a pid exactly when its process lives), no signal may reach a process that is
// not the child's current one, and at the end a shutdown must stop everything and exit.
#include <doctest/doctest.h>

#include <cstdint>

#include "sim.hpp"

using namespace vigil;
using namespace vigil::core;
using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

struct Rng {
    std::uint64_t s;
    std::uint64_t next() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return s;
    }
    int below(int n) { return static_cast<int>(next() % static_cast<std::uint64_t>(n)); }
};

TreeSpec chaos_tree(Rng &rng) {
    auto svc = [&](std::string name) {
        return service(std::move(name), [&rng](ChildSpec &s) {
            s.restart = static_cast<Restart>(rng.below(3));
            s.wait_ready = rng.below(4) == 0;
            s.stop.timeout = Duration{100 * (1 + rng.below(5))};
            if (rng.below(5) == 0) s.stop.signal = sig_kill;
            if (rng.below(3) == 0) s.backoff = {Duration{50}, Duration{400}, 2.0, 0.3, 1s};
            if (rng.below(4) == 0) s.start_timeout = Duration{300};
        });
    };
    auto sup_tweak = [&rng](ChildSpec &s) {
        s.strategy = static_cast<Strategy>(rng.below(3));
        s.intensity = 2 + rng.below(6);
        s.period = 5s;
    };
    std::vector<NodeDef> kids;
    int n = 0;
    for (int g = 0; g < 3; ++g) {
        std::vector<NodeDef> inner;
        for (int i = 0; i < 3; ++i)
            inner.push_back(svc("s" + std::to_string(n++)));
        kids.push_back(
            supervisor("g" + std::to_string(g), Strategy::OneForOne, std::move(inner), sup_tweak));
        kids.push_back(svc("s" + std::to_string(n++)));
    }
    auto t = root(Strategy::OneForOne, std::move(kids), [](ChildSpec &s) {
        s.intensity = 1000;
        s.period = 1s;
    });
    t.seed = rng.next();
    return t;
}

} // namespace

TEST_SUITE("core") {

    TEST_CASE("chaos: random crashes, commands and time keep the core and processes in step") {
        int spawns = 0, steps = 0, gave_up = 0;
        for (std::uint64_t seed = 1; seed <= 40; ++seed) {
            CAPTURE(seed);
            Rng rng{seed * 0x9e3779b97f4a7c15ULL};
            const TreeSpec spec = chaos_tree(rng);
            Sim sim{spec};
            std::vector<std::string> names;
            for (const auto &n : spec.nodes)
                if (n.kind == Kind::Service) names.push_back(n.name);
            std::vector<std::string> all;
            for (const auto &n : spec.nodes)
                all.push_back(n.name);
            for (const auto &n : names)
                if (rng.below(3) == 0) sim.on_signal(n, OnSignal::Ignore);
            sim.start_all();
            // Boot cleanly (a failure at boot would end the run at once: covered elsewhere).
            for (int i = 0; i < 20 && sim.state("root") == ChildState::Starting; ++i)
                for (const auto &m : names)
                    if (sim.alive(m) && sim.state(m) == ChildState::Starting) sim.ready(m);
            REQUIRE(sim.state("root") == ChildState::Running);
            for (int step = 0; step < 300 && !sim.exit_status; ++step, ++steps) {
                const std::string &n =
                    names[static_cast<std::size_t>(rng.below(static_cast<int>(names.size())))];
                switch (rng.below(9)) {
                case 0:
                case 1:
                    if (sim.alive(n)) sim.exit(n, rng.below(3));
                    break;
                case 2:
                    if (sim.alive(n)) sim.exit_by_signal(n, rng.below(2) ? 9 : 11);
                    break;
                case 3:
                    if (sim.alive(n)) sim.ready(n);
                    break;
                case 4:
                    if (sim.alive(n)) sim.health_fail(n);
                    break;
                case 5: {
                    const auto kind = static_cast<CommandKind>(rng.below(4));
                    const std::string &target =
                        all[static_cast<std::size_t>(rng.below(static_cast<int>(all.size())))];
                    if (!sim.status(target).removed) sim.command(kind, target, "chaos", 10);
                    break;
                }
                default:
                    sim.advance(Duration{rng.below(700)});
                    break;
                }
                REQUIRE(sim.stray_signals == 0);
                for (const auto &m : names) {
                    const ChildStatus st = sim.status(m);
                    CHECK(st.pid.has_value() == sim.alive(m));
                    if (st.state == ChildState::Stopped || st.state == ChildState::Backoff)
                        CHECK_FALSE(st.pid.has_value());
                }
            }
            if (!sim.exit_status) {
                sim.command(CommandKind::Shutdown, "", "chaos");
                sim.advance(10s);
            }
            REQUIRE(sim.exit_status);
            if (*sim.exit_status == exit_gave_up) ++gave_up;
            CHECK(sim.core.finished());
            for (const auto &m : names)
                spawns += sim.spawns(m);
            for (const auto &m : names)
                CHECK_FALSE(sim.alive(m));
            CHECK(sim.stray_signals == 0);
        }
        MESSAGE("chaos: " << steps << " steps, " << spawns << " spawns, " << gave_up
                          << " root give-ups");
        CHECK(spawns > 2000); // the soak really churned
        CHECK(steps > 8000);
    }

} // TEST_SUITE

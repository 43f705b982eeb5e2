// parallel_flight_test.cpp: a parallel phase that skips its scan while children it left in
// flight settle (InFlight, src/core/impl.hpp) must do exactly what a full scan on every pump
// does.
//
// The reference is a core restored from a snapshot before every input (snapshot_twin.hpp): a
// restored plan carries no InFlight, so that twin scans in full at its next pump, while the
// original keeps its counts across inputs. Random walks (fixed seeds) over parallel
// supervisors without `after` (the only ones that keep counts), of each strategy, with spawns
// held and answered late, failed spawns, crashes, readiness, stop, start and restart commands,
// set restarts, processes that ignore SIGTERM, time, and a shutdown at the end: after every
// input both must have given the same actions and hold byte-identical snapshots.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "sim.hpp"
#include "snapshot_twin.hpp"

using namespace vigil;
using namespace vigil::core;
using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

constexpr int kids_per_group = 8;

struct Walk {
    std::uint64_t s;
    int below(int n) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return static_cast<int>(s % static_cast<std::uint64_t>(n));
    }
};

std::string kid(int group, int k) {
    return "p" + std::to_string(group) + "k" + std::to_string(k);
}

// Two parallel supervisors (strategies from the seed) under a one_for_one root.
TreeSpec flight_tree(Walk &w) {
    std::vector<NodeDef> groups;
    for (int g = 0; g < 2; ++g) {
        std::vector<NodeDef> kids;
        for (int k = 0; k < kids_per_group; ++k)
            kids.push_back(service(kid(g, k), [&w](ChildSpec &s) {
                s.restart = static_cast<Restart>(w.below(3));
                s.wait_ready = w.below(3) == 0;
                s.stop.timeout = Duration{100 * (1 + w.below(4))};
                if (w.below(3) == 0) s.backoff = {Duration{50}, Duration{400}, 2.0, 0.3, 1s};
            }));
        auto sup = supervisor("p" + std::to_string(g), static_cast<Strategy>(w.below(3)),
                              std::move(kids), intensity(1000, 1s));
        sup.spec.parallel = true;
        groups.push_back(std::move(sup));
    }
    TreeSpec t = root(Strategy::OneForOne, std::move(groups), intensity(1000, 1s));
    t.seed = w.s;
    return t;
}

// One random input; a child that is not up is left alone by the inputs that need a process.
void step(Twin &t, Walk &w) {
    const std::string name = kid(w.below(2), w.below(kids_per_group));
    const ChildStatus s = t.st(name);
    switch (w.below(10)) {
    case 0:
    case 1:
        if (s.pid && !s.exiting) t.exit(name, w.below(3) == 0 ? 0 : 1);
        break;
    case 2:
        if (s.pid && s.state == ChildState::Starting) t.ready(name);
        break;
    case 3:
        t.command(static_cast<CommandKind>(w.below(3)), name); // start, stop, restart
        break;
    case 4:
        t.restart({name, kid(w.below(2), w.below(kids_per_group))});
        break;
    case 5:
        if (w.below(2) == 0)
            t.hold_spawn.insert(name);
        else
            t.release_spawns(), t.hold_spawn.clear();
        break;
    case 6:
        w.below(2) == 0 ? (void)t.ignore_term.insert(name) : t.ignore_term.clear();
        break;
    case 7:
        w.below(4) == 0 ? (void)t.fail_spawn.insert(name) : t.fail_spawn.clear();
        break;
    default:
        t.advance(Duration{50 * (1 + w.below(6))});
        break;
    }
}

} // namespace

TEST_SUITE("core") {

    TEST_CASE("parallel: a phase that skips scans while children settle acts as a full scan") {
        for (std::uint64_t seed = 1; seed <= 12; ++seed) {
            CAPTURE(seed);
            Walk w{seed * 0x9e37'79b9'7f4a'7c15ULL};
            Twin t(flight_tree(w), true, -1);
            t.hold_spawn = {kid(0, 3), kid(1, 5)}; // some spawns are answered late
            t.start();
            for (int i = 0; i < 100; ++i)
                step(t, w);
            t.hold_spawn.clear();
            t.fail_spawn.clear();
            t.release_spawns();
            t.command(CommandKind::Shutdown, "root");
            t.advance(5s);
            CHECK(t.a_core().finished());
            t.finish();
            CHECK(t.restores == t.steps);
        }
    }
}

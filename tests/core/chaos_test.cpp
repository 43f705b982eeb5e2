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

// Lets time pass with every process behaving (becoming ready when asked), long enough for
// every backoff, stop timeout and start sequence to finish.
void settle(Sim &sim, const std::vector<std::string> &names) {
    for (int round = 0; round < 400 && !sim.exit_status; ++round) {
        for (const auto &m : names)
            if (sim.alive(m) && sim.state(m) == ChildState::Starting) sim.ready(m);
        sim.advance(Duration{100});
    }
}

void check_no_stall(Sim &sim, const std::vector<std::string> &all, const char *where) {
    if (sim.exit_status) return;
    for (const auto &m : all) {
        const ChildStatus st = sim.status(m);
        if (st.removed || !st.parent || st.goal != core::Goal::Up) continue;
        const ChildStatus par = sim.core.status(*st.parent);
        if (par.state != ChildState::Running) continue;
        CAPTURE(where);
        CAPTURE(m);
        CHECK(st.state != ChildState::Stopped);
    }
}

// Liveness: once the chaos stops and every process is left alone, no child may stay down while
// it is wanted up under a running supervisor (the soak's "stopped (goal up)" stall). Then the
// soak's restore: start every unit, supervisors first; every service must end up running.
void restore_and_check(Sim &sim, const std::vector<std::string> &names,
                       const std::vector<std::string> &all) {
    if (sim.exit_status) return;
    settle(sim, names);
    check_no_stall(sim, all, "after chaos");
    for (const auto &m : all)
        if (!sim.status(m).removed && sim.status(m).kind == Kind::Supervisor)
            sim.command(CommandKind::Start, m, "chaos", 10);
    for (const auto &m : names)
        if (!sim.status(m).removed) sim.command(CommandKind::Start, m, "chaos", 10);
    settle(sim, names);
    check_no_stall(sim, all, "after start all");
    for (const auto &m : names) {
        const ChildStatus st = sim.status(m);
        if (st.removed || sim.exit_status) continue;
        CAPTURE(m);
        CHECK(st.state == ChildState::Running);
    }
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
                // A state the core reaches can cross an exec: restore accepts its snapshot.
                if (step % 25 == 0) {
                    const SnapshotResult snap = sim.core.snapshot();
                    REQUIRE(snap.error.empty());
                    const RestoreResult back = Core::restore(spec, snap.bytes);
                    REQUIRE_MESSAGE(back.core, back.error);
                }
            }
            restore_and_check(sim, names, all);
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

    // The soak's mix in miniature: the same chaos plus reloads that add and remove services
    // and change others (a changed fingerprint restarts them), over a deeper tree.
    TEST_CASE("chaos with reloads: nothing stays down that is wanted up") {
        int steps = 0, reloads = 0;
        for (std::uint64_t seed = 1; seed <= 60; ++seed) {
            CAPTURE(seed);
            Rng rng{seed * 0x2545f4914f6cdd1dULL};
            struct Svc {
                std::string name;
                int group; // index into groups, -1 for the root
                std::uint64_t props;
                std::uint64_t fingerprint = 1;
            };
            struct Group {
                std::string name;
                int parent; // -1 for the root
                Strategy strategy;
                bool parallel;
            };
            std::vector<Group> groups;
            for (int g = 0; g < 4; ++g)
                groups.push_back({"g" + std::to_string(g), g == 3 ? 0 : -1,
                                  static_cast<Strategy>(rng.below(3)), rng.below(2) == 0});
            std::vector<Svc> svcs;
            int serial = 0;
            for (int i = 0; i < 12; ++i)
                svcs.push_back({"s" + std::to_string(serial++), rng.below(5) - 1, rng.next()});
            auto build = [&] {
                auto svc_def = [](const Svc &d) {
                    return service(d.name, [d](ChildSpec &s) {
                        Rng r{d.props | 1};
                        s.restart = static_cast<Restart>(r.below(3));
                        s.wait_ready = r.below(4) == 0;
                        s.stop.timeout = Duration{100 * (1 + r.below(5))};
                        if (r.below(3) == 0)
                            s.backoff = {Duration{50}, Duration{400}, 2.0, 0.3, 1s};
                        if (r.below(4) == 0) s.start_timeout = Duration{300};
                        s.fingerprint = d.fingerprint;
                    });
                };
                std::function<NodeDef(int)> group_def = [&](int g) {
                    std::vector<NodeDef> kids;
                    for (int h = 0; h < static_cast<int>(groups.size()); ++h)
                        if (groups[static_cast<std::size_t>(h)].parent == g)
                            kids.push_back(group_def(h));
                    for (const Svc &d : svcs)
                        if (d.group == g) kids.push_back(svc_def(d));
                    return supervisor(
                        groups[static_cast<std::size_t>(g)].name,
                        groups[static_cast<std::size_t>(g)].strategy, std::move(kids),
                        [par = groups[static_cast<std::size_t>(g)].parallel](ChildSpec &s) {
                            s.intensity = 1000;
                            s.period = 1s;
                            s.parallel = par;
                        });
                };
                std::vector<NodeDef> top;
                for (int h = 0; h < static_cast<int>(groups.size()); ++h)
                    if (groups[static_cast<std::size_t>(h)].parent == -1)
                        top.push_back(group_def(h));
                for (const Svc &d : svcs)
                    if (d.group == -1) top.push_back(svc_def(d));
                auto t = root(Strategy::OneForOne, std::move(top), [](ChildSpec &s) {
                    s.intensity = 100000;
                    s.period = 1s;
                });
                t.seed = seed;
                return t;
            };
            auto names_now = [&] {
                std::vector<std::string> v;
                for (const Svc &d : svcs)
                    v.push_back(d.name);
                return v;
            };
            auto all_now = [&] {
                std::vector<std::string> v = names_now();
                for (const Group &g : groups)
                    v.push_back(g.name);
                return v;
            };
            Sim sim{build()};
            sim.start_all();
            for (int i = 0; i < 40 && sim.state("root") == ChildState::Starting; ++i) {
                for (const auto &m : names_now())
                    if (sim.alive(m) && sim.state(m) == ChildState::Starting) sim.ready(m);
                sim.advance(Duration{100});
            }
            REQUIRE(sim.state("root") == ChildState::Running);
            for (int step = 0; step < 400 && !sim.exit_status; ++step, ++steps) {
                const auto names = names_now();
                const auto all = all_now();
                const std::string n =
                    names[static_cast<std::size_t>(rng.below(static_cast<int>(names.size())))];
                switch (rng.below(12)) {
                case 0:
                case 1:
                    if (sim.alive(n)) sim.exit(n, rng.below(3));
                    break;
                case 2:
                    if (sim.alive(n)) sim.exit_by_signal(n, 9);
                    break;
                case 3:
                    if (rng.below(2) == 0)
                        sim.fail_spawn(n, 1 + rng.below(3)); // the spawner helper died
                    else if (sim.alive(n))
                        sim.health_fail(n);
                    break;
                case 4:
                    for (const auto &m : names)
                        if (sim.alive(m) && sim.state(m) == ChildState::Starting) sim.ready(m);
                    break;
                case 5:
                case 6: {
                    const auto kind = static_cast<CommandKind>(rng.below(3));
                    const std::string &target =
                        all[static_cast<std::size_t>(rng.below(static_cast<int>(all.size())))];
                    if (kind == CommandKind::Restart && rng.below(2) == 0) {
                        // A restart of several units as one command (Core::restart).
                        std::vector<std::string> set;
                        for (int k = 0; k < 3; ++k) {
                            const std::string &t = all[static_cast<std::size_t>(
                                rng.below(static_cast<int>(all.size())))];
                            if (!sim.status(t).removed) set.push_back(t);
                        }
                        sim.restart(set, "chaos");
                        break;
                    }
                    if (!sim.status(target).removed) sim.command(kind, target, "chaos", 10);
                    break;
                }
                case 7: {
                    // A reload: add, remove or change a service.
                    const int what = rng.below(3);
                    if (what == 0 || svcs.size() < 4) {
                        svcs.push_back(
                            {"s" + std::to_string(serial++), rng.below(5) - 1, rng.next()});
                    } else if (what == 1) {
                        svcs.erase(svcs.begin() + rng.below(static_cast<int>(svcs.size())));
                    } else {
                        svcs[static_cast<std::size_t>(rng.below(static_cast<int>(svcs.size())))]
                            .fingerprint++;
                    }
                    const auto r = sim.reload(build());
                    REQUIRE(r.errors.empty());
                    ++reloads;
                    break;
                }
                default:
                    sim.advance(Duration{rng.below(400)});
                    break;
                }
                REQUIRE(sim.stray_signals == 0);
            }
            const auto names = names_now();
            const auto all = all_now();
            for (const auto &m : names)
                sim.fail_spawn(m, 0); // the helper is back: spawns work again
            restore_and_check(sim, names, all);
            if (!sim.exit_status) {
                sim.command(CommandKind::Shutdown, "", "chaos");
                sim.advance(10s);
            }
            REQUIRE(sim.exit_status);
            CHECK(sim.core.finished());
            for (const auto &m : names)
                CHECK_FALSE(sim.alive(m));
        }
        MESSAGE("chaos with reloads: " << steps << " steps, " << reloads << " reloads");
        CHECK(steps > 15000);
    }

} // TEST_SUITE

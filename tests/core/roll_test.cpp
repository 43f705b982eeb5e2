// roll_test.cpp: rolling restarts (Core::roll, reload of a unit with update "rolling") and the
// drain before the stop signal (StopSpec::drain), driven through the simulated shell.
#include <doctest/doctest.h>

#include <algorithm>

#include "sim.hpp"

using namespace vigil;
using namespace vigil::core;
using namespace vigil::test;
using namespace std::chrono_literals;

using Names = std::vector<std::string>;
using Sigs = std::vector<int>;

namespace {

std::string inst(int k) {
    return "web@" + std::to_string(k);
}

// Instance k of unit "web": waits for readiness, as the services a roll is for do.
NodeDef web(int k, const Tweak &extra = {}) {
    return service(inst(k), [=](ChildSpec &s) {
        s.unit = "web";
        s.instance = k;
        s.wait_ready = true;
        if (extra) extra(s);
    });
}

std::vector<NodeDef> webs(int n, const Tweak &extra = {}) {
    std::vector<NodeDef> out;
    for (int k = 1; k <= n; ++k)
        out.push_back(web(k, extra));
    return out;
}

// Started, every instance ready, the log cleared.
void boot(Sim &sim, int n) {
    sim.start_all();
    for (int k = 1; k <= n; ++k)
        sim.ready(inst(k));
    sim.clear_log();
}

int not_ready(const Sim &sim, int n) {
    int count = 0;
    for (int k = 1; k <= n; ++k)
        if (!sim.status(inst(k)).ready) ++count;
    return count;
}

std::vector<std::uint64_t> incarnations(const Sim &sim, int n) {
    std::vector<std::uint64_t> out;
    for (int k = 1; k <= n; ++k)
        out.push_back(sim.incarnation(inst(k)));
    return out;
}

bool has_notice(const Sim &sim, const std::string &fragment) {
    return std::any_of(sim.records.begin(), sim.records.end(), [&](const Record &r) {
        return r.message.find(fragment) != std::string::npos;
    });
}

int notices(const Sim &sim, const std::string &fragment) {
    return static_cast<int>(std::count_if(sim.records.begin(), sim.records.end(), [&](auto &r) {
        return r.message.find(fragment) != std::string::npos;
    }));
}

Tweak drain(Duration d) {
    return [=](ChildSpec &s) { s.stop.drain = d; };
}

} // namespace

TEST_SUITE("core") {

    TEST_CASE("roll: instances are replaced one at a time, in order, each once the one before "
              "is ready") {
        Sim sim{root(Strategy::OneForOne, webs(4))};
        boot(sim, 4);
        const auto before = incarnations(sim, 4);
        CHECK(sim.roll("web").outcome == CommandOutcome::Ok);
        for (int k = 1; k <= 4; ++k) {
            CAPTURE(k);
            // Instance k has been replaced and waits for readiness; the ones after it run on.
            CHECK(sim.state(inst(k)) == ChildState::Starting);
            CHECK(sim.incarnation(inst(k)) == before[static_cast<std::size_t>(k - 1)] + 1);
            for (int j = k + 1; j <= 4; ++j)
                CHECK(sim.incarnation(inst(j)) == before[static_cast<std::size_t>(j - 1)]);
            CHECK(not_ready(sim, 4) == 1);
            CHECK(sim.status(inst(k)).roll->in_step);
            CHECK(sim.status(inst(k)).roll->done == static_cast<std::uint32_t>(k - 1));
            sim.advance(1s); // time alone does not move the roll on
            if (k < 4) CHECK(sim.incarnation(inst(k + 1)) == before[static_cast<std::size_t>(k)]);
            sim.ready(inst(k));
        }
        CHECK(sim.starts() == Names{"web@1", "web@2", "web@3", "web@4"});
        CHECK(sim.stop_order() == Names{"web@1", "web@2", "web@3", "web@4"});
        CHECK(not_ready(sim, 4) == 0);
        CHECK(notices(sim, "rolling restart of web: step ") == 4);
        CHECK(has_notice(sim, "rolling restart of web done: 4/4"));
        const auto st = sim.core.roll_status("web");
        REQUIRE(st);
        CHECK(st->phase == RollPhase::Done);
        CHECK(st->done == 4);
        CHECK(st->total == 4);
        CHECK(sim.status("web@1").restarts == 0); // a manual restart: not counted
    }

    TEST_CASE("roll: the readiness probe's first success gates the next step") {
        Sim sim{root(Strategy::OneForOne, webs(2, [](ChildSpec &s) {
                         s.wait_ready = false;
                         s.readiness_probe = true;
                     }))};
        sim.start_all();
        for (int k = 1; k <= 2; ++k) {
            const auto s = sim.status(inst(k));
            sim.inject(ProbeReadiness{s.id, s.incarnation, true, ""});
        }
        sim.clear_log();
        sim.roll("web");
        CHECK(sim.state("web@1") == ChildState::Running); // spawned: started, not yet ready
        CHECK_FALSE(sim.status("web@1").ready);
        CHECK(sim.spawns("web@2") == 1);
        CHECK(sim.signals_to("web@2").empty());
        const auto s = sim.status("web@1");
        sim.inject(ProbeReadiness{s.id, s.incarnation, true, ""});
        CHECK(sim.spawns("web@2") == 2);
    }

    TEST_CASE("roll: max_unavailable 2 replaces two at a time; the next step waits for both") {
        Sim sim{root(Strategy::OneForOne, webs(4))};
        boot(sim, 4);
        sim.roll("web", 2);
        CHECK(sim.starts() == Names{"web@1", "web@2"});
        CHECK(not_ready(sim, 4) == 2);
        sim.ready("web@2");
        CHECK(sim.starts() == Names{"web@1", "web@2"}); // web@1 is not ready yet
        sim.ready("web@1");
        CHECK(sim.starts() == Names{"web@1", "web@2", "web@3", "web@4"});
        CHECK(not_ready(sim, 4) == 2);
        sim.ready("web@3");
        sim.ready("web@4");
        CHECK(has_notice(sim, "rolling restart of web done: 4/4"));
        CHECK(notices(sim, "rolling restart of web: step ") == 2);
    }

    TEST_CASE("roll: max_unavailable defaults to the unit's and is clamped to the instances") {
        Sim sim{root(Strategy::OneForOne, webs(3, [](ChildSpec &s) { s.max_unavailable = 2; }))};
        boot(sim, 3);
        sim.roll("web");
        CHECK(sim.starts() == Names{"web@1", "web@2"});
        sim.ready("web@1");
        sim.ready("web@2");
        sim.ready("web@3");
        Sim big{root(Strategy::OneForOne, webs(2))};
        boot(big, 2);
        big.roll("web", 9);
        CHECK(big.core.roll_status("web")->max_unavailable == 2);
        CHECK(big.starts() == Names{"web@1", "web@2"});
    }

    TEST_CASE("roll: a new instance that fails to start stops the roll; the rest are untouched") {
        Sim sim{root(Strategy::OneForOne, webs(4))};
        boot(sim, 4);
        const auto before = incarnations(sim, 4);
        sim.fail_spawn("web@2");
        sim.roll("web");
        sim.ready("web@1");
        // web@2's new incarnation could not be spawned: the roll stops there.
        CHECK(has_notice(sim, "rolling restart of web stopped at web@2: failed to start"));
        const auto st = sim.core.roll_status("web");
        CHECK(st->phase == RollPhase::Stopped);
        CHECK(st->at == "web@2");
        CHECK(st->done == 1);
        // web@3 and web@4 run their old incarnations, never signalled.
        CHECK(sim.incarnation("web@3") == before[2]);
        CHECK(sim.incarnation("web@4") == before[3]);
        CHECK(sim.signals_to("web@3").empty());
        CHECK(sim.signals_to("web@4").empty());
        // web@2 goes on under its restart policy (a failed restart, counted).
        CHECK(sim.spawns("web@2") == 2); // the first, and the retry (the failed one is not counted)
        CHECK(sim.status("web@2").restarts == 1);
        sim.ready("web@2");
        CHECK(sim.spawns("web@3") == 1);
    }

    TEST_CASE("roll: an exit before ready, or a start timeout, stops the roll too") {
        Sim sim{root(Strategy::OneForOne, webs(3, [](ChildSpec &s) { s.start_timeout = 5s; }))};
        boot(sim, 3);
        sim.roll("web");
        sim.exit("web@1", 1);
        CHECK(has_notice(sim, "stopped at web@1: exited with status 1 before it was ready"));
        CHECK(sim.spawns("web@2") == 1);
        sim.ready("web@1");
        // Again: this time web@2 never reports ready.
        sim.clear_log();
        CHECK(sim.roll("web").outcome == CommandOutcome::Ok);
        sim.ready("web@1");
        sim.advance(6s);
        CHECK(has_notice(sim, "stopped at web@2: did not start within 5s"));
        CHECK(sim.spawns("web@3") == 1);
    }

    TEST_CASE("roll: a stop command ends it; a second roll is refused; a restart goes through") {
        Sim sim{root(Strategy::OneForOne, webs(4))};
        boot(sim, 4);
        sim.roll("web");
        const auto again = sim.roll("web");
        CHECK(again.outcome == CommandOutcome::AlreadyRunning);
        CHECK(again.message == "a rolling restart of web is under way: 0/4");
        // A plain restart of an instance not reached yet is carried out; the roll goes on.
        sim.command(CommandKind::Restart, "web@4");
        sim.ready("web@4");
        CHECK(sim.core.roll_status("web")->phase == RollPhase::Running);
        sim.ready("web@1");
        CHECK(sim.status("web@2").roll->in_step);
        sim.command(CommandKind::Stop, "web@3");
        CHECK(has_notice(sim, "rolling restart of web stopped at web@3: stop of web@3 requested"));
        sim.ready("web@2");
        CHECK(sim.spawns("web@3") == 1); // not started again by the roll
        CHECK(sim.state("web@3") == ChildState::Stopped);
    }

    TEST_CASE("roll: an instance stopped by command is passed over and stays stopped") {
        Sim sim{root(Strategy::OneForOne, webs(3))};
        boot(sim, 3);
        sim.command(CommandKind::Stop, "web@2");
        sim.roll("web");
        sim.ready("web@1");
        CHECK(sim.spawns("web@3") == 2);
        sim.ready("web@3");
        CHECK(sim.state("web@2") == ChildState::Stopped);
        CHECK(has_notice(sim, "rolling restart of web done: 3/3"));
    }

    TEST_CASE("roll: shutdown ends it and stops everything") {
        Sim sim{root(Strategy::OneForOne, webs(3))};
        boot(sim, 3);
        sim.roll("web");
        sim.command(CommandKind::Shutdown, "");
        CHECK(has_notice(sim, "rolling restart of web stopped: vigild is shutting down"));
        CHECK(sim.exit_status == exit_clean);
        CHECK(sim.spawns("web@2") == 1);
    }

    TEST_CASE("roll: a unit without instances rolls over itself; an unknown unit is not found") {
        Sim sim{root(Strategy::OneForOne, {service("api", wait_ready())})};
        sim.start_all();
        sim.ready("api");
        CHECK(sim.roll("api").outcome == CommandOutcome::Ok);
        CHECK(sim.spawns("api") == 2);
        sim.ready("api");
        CHECK(has_notice(sim, "rolling restart of api done: 1/1"));
        CHECK(sim.roll("nope").outcome == CommandOutcome::NotFound);
    }

    TEST_CASE("roll: reload rolls a unit with update rolling, restarts one with update restart") {
        auto spec = [](std::uint64_t fp, Update u) {
            return root(Strategy::OneForOne, webs(3, [=](ChildSpec &s) {
                            s.fingerprint = fp;
                            s.update = u;
                        }));
        };
        Sim sim{spec(1, Update::Rolling)};
        boot(sim, 3);
        const auto res = sim.reload(spec(2, Update::Rolling));
        CHECK(res.rolling == Names{"web"});
        CHECK(res.restarted.size() == 3);
        CHECK(sim.starts() == Names{"web@1"});
        CHECK(not_ready(sim, 3) == 1);
        sim.ready("web@1");
        sim.ready("web@2");
        sim.ready("web@3");
        CHECK(sim.starts() == Names{"web@1", "web@2", "web@3"});
        CHECK(has_notice(sim, "rolling restart of web done: 3/3"));
        sim.clear_log();
        // A reload while a roll runs: the instance being replaced comes first in the new roll.
        sim.reload(spec(3, Update::Rolling));
        sim.ready("web@1");
        CHECK(sim.starts() == Names{"web@1", "web@2"});
        sim.reload(spec(4, Update::Rolling));
        CHECK(has_notice(sim, "stopped: reload changed the unit again"));
        CHECK(not_ready(sim, 3) == 1);
        CHECK(sim.status("web@2").roll->in_step);
        sim.clear_log();
        // update "restart": at once, and the roll under way ends.
        sim.reload(spec(5, Update::Restart));
        CHECK(sim.starts() == Names{"web@1", "web@2", "web@3"});
        CHECK(has_notice(sim, "reload restarts the unit at once"));
    }

    TEST_CASE("roll: reload while the supervisor is still starting restarts at once") {
        auto spec = [](std::uint64_t fp) {
            return root(Strategy::OneForOne, webs(2, [=](ChildSpec &s) {
                            s.fingerprint = fp;
                            s.update = Update::Rolling;
                        }));
        };
        Sim sim{spec(1)};
        sim.start_all(); // web@1 waits for readiness: root is starting
        const auto res = sim.reload(spec(2));
        CHECK(res.rolling.empty());
        CHECK(sim.spawns("web@1") == 2);
        CHECK_FALSE(sim.core.roll_status("web"));
    }

    // ---- drain ---------------------------------------------------------------------------------

    TEST_CASE("drain: not ready at once, the stop signal after the drain, the timeout after it") {
        Sim sim{root(Strategy::OneForOne, {service("api", [](ChildSpec &s) {
                         s.stop.drain = 5s;
                         s.stop.timeout = 10s;
                     })})};
        sim.start_all();
        sim.on_signal("api", OnSignal::Ignore);
        sim.advance(1s);
        sim.command(CommandKind::Stop, "api");
        CHECK(sim.state("api") == ChildState::Stopping);
        CHECK_FALSE(sim.status("api").ready);
        CHECK(sim.status("api").drain_until == at_ms(6000));
        CHECK(sim.lines("probes-off ") == Names{"api"});
        CHECK(sim.signals_to("api").empty());
        sim.advance(4999ms);
        CHECK(sim.signals_to("api").empty());
        sim.advance(1ms);
        CHECK(sim.when("signal api SIGTERM") == at_ms(6000));
        CHECK_FALSE(sim.status("api").drain_until);
        sim.advance(10s);
        CHECK(sim.when("signal api SIGKILL") == at_ms(16000));
        CHECK(sim.state("api") == ChildState::Stopped);
    }

    TEST_CASE("drain: an exit during the drain ends it; no stop signal to a process that is gone") {
        Sim sim{root(Strategy::OneForOne, {service("api", drain(5s))})};
        sim.start_all();
        sim.command(CommandKind::Stop, "api");
        sim.advance(2s);
        sim.exit("api", 0);
        CHECK(sim.state("api") == ChildState::Stopped);
        CHECK(sim.all_signals_to("api").empty());
        CHECK(sim.has_record("api", RecordKind::Stopped, "stopped by command"));
        sim.advance(10s); // the drain's timer is gone with the state
        CHECK(sim.all_signals_to("api").empty());

        // Something it left holds its output: what is left gets the stop signal at the exit,
        // not when the drain would have ended.
        Sim left{root(Strategy::OneForOne, {service("api", drain(5s))})};
        left.start_all();
        left.linger("api");
        left.command(CommandKind::Stop, "api");
        left.advance(1s);
        left.exit("api", 0);
        CHECK(left.when("signal-leftover api SIGTERM") == at_ms(1000));
        CHECK(left.state("api") == ChildState::Stopped);
    }

    TEST_CASE("drain: shutdown drains, then stops in order; a second shutdown kills at once") {
        Sim sim{root(Strategy::OneForOne, {service("db", drain(3s)), service("api", drain(5s))})};
        sim.start_all();
        sim.command(CommandKind::Shutdown, "");
        CHECK(sim.signals_to("api").empty());
        sim.advance(5s);
        CHECK(sim.when("signal api SIGTERM") == at_ms(5000));
        CHECK(sim.signals_to("db").empty()); // db drains only once api is down
        sim.advance(3s);
        CHECK(sim.when("signal db SIGTERM") == at_ms(8000));
        CHECK(sim.exit_status == exit_clean);

        Sim twice{root(Strategy::OneForOne, {service("api", drain(5s))})};
        twice.start_all();
        twice.command(CommandKind::Shutdown, "");
        twice.command(CommandKind::Shutdown, "");
        CHECK(twice.signals_to("api") == Sigs{sig_kill});
        CHECK(twice.exit_status == exit_clean);
    }

    TEST_CASE("drain: a roll drains each old instance before its signal") {
        Sim sim{root(Strategy::OneForOne, webs(2, drain(2s)))};
        boot(sim, 2);
        sim.roll("web");
        CHECK(sim.spawns("web@1") == 1);
        CHECK(not_ready(sim, 2) == 1);
        sim.advance(2s);
        CHECK(sim.when("signal web@1 SIGTERM") == at_ms(2000));
        CHECK(sim.spawns("web@1") == 2);
        CHECK(sim.signals_to("web@2").empty());
    }

    TEST_CASE("drain: none for a service not started yet, nor after a health failure") {
        // (A service that is starting has not been told of traffic: the signal goes at once.)
        Sim sim{root(Strategy::OneForOne, {service("db",
                                                   [](ChildSpec &s) {
                                                       s.stop.drain = 5s;
                                                       s.wait_ready = true;
                                                   }),
                                           service("api", drain(5s))})};
        sim.start_all();
        sim.command(CommandKind::Stop, "db"); // still waiting for readiness
        CHECK(sim.when("signal db SIGTERM") == at_ms(0));
        sim.command(CommandKind::Start, "db");
        sim.ready("db");
        sim.clear_log();
        sim.health_fail("api");
        CHECK(sim.when("signal api SIGTERM") == at_ms(0));
    }
}

// snapshot_test.cpp: Core::snapshot and Core::restore (the core's state across an exec).
//
// The differential tests drive a core through a scenario that passes through every state the
// model can hold between two entry points (restarts in the intensity window, backoff, a stop
// with its timeout running, readiness with a start timeout, a MAINPID move, the watchdog, a
// supervisor part-way through its start and through a sweep, an exited temporary child,
// leftovers, a set restart, units removed by reload and still going down, a reused id, a
// second shutdown), restore a second core from a snapshot of the first, and check that from
// then on both give the same actions and answers and hold the same state (snapshot_twin.hpp).
// The refusal tests feed restore bad bytes of every kind: each must be refused with an error
// that says what was wrong, and nothing may crash (the ASan/UBSan build runs them too).
#include <doctest/doctest.h>

#include <cstring>

#include "sim.hpp"
#include "snapshot_format.hpp"
#include "snapshot_twin.hpp"

using namespace vigil;
using namespace vigil::core;
using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

TreeSpec scenario_tree(bool with_slow = true, bool with_g4 = false) {
    std::vector<NodeDef> kids;
    kids.push_back(service("crashy", [](ChildSpec &s) {
        s.backoff = {Duration{200}, Duration{2000}, 2.0, 0.3, 10s};
        s.stop.timeout = Duration{1000};
    }));
    if (with_slow)
        kids.push_back(service("slow", [](ChildSpec &s) { s.stop.timeout = Duration{1500}; }));
    kids.push_back(service("ready", [](ChildSpec &s) {
        s.wait_ready = true;
        s.start_timeout = Duration{1000};
        s.readiness_probe = true;
    }));
    kids.push_back(service("mover"));
    kids.push_back(service("dog", [](ChildSpec &s) { s.watchdog = Duration{500}; }));
    kids.push_back(service("temp", temporary()));
    std::vector<NodeDef> g{service("g1", wait_ready()), service("g2"), service("g3")};
    if (with_g4) g.push_back(service("g4"));
    kids.push_back(supervisor("g", Strategy::RestForOne, std::move(g), intensity(2, 5s)));
    auto par = supervisor("p", Strategy::OneForAll,
                          {service("p1"), service("p2", wait_ready()), service("p3")});
    par.spec.parallel = true;
    kids.push_back(std::move(par));
    kids.push_back(service("lin", [](ChildSpec &s) { s.stop.timeout = Duration{800}; }));
    TreeSpec t = root(Strategy::OneForOne, std::move(kids), intensity(50, 60s));
    // p2 is after p1 (ids: p is followed by p1, p2, p3).
    for (std::size_t i = 0; i < t.nodes.size(); ++i)
        if (t.nodes[i].name == "p2")
            t.nodes[i].after = {ChildId{static_cast<std::uint32_t>(i - 1)}};
    t.seed = 0x1234'5678'9abc'def0ULL;
    return t;
}

// The start: root's sequence waits for `ready`, then g waits for g1 (mid-start), p for p2.
void scenario_start(Twin &t) {
    t.ignore_term = {"slow"};
    t.start();
    CHECK(t.st("ready").state == ChildState::Starting);
    CHECK(t.a_core().next_deadline() == std::optional<TimePoint>(at_ms(1000)));
    t.advance(400ms);
    t.event(ProbeReadiness{t.id("ready"), t.st("ready").incarnation, true, "probe ok"});
    t.ready("ready");
    CHECK(t.st("g").state == ChildState::Starting);
    t.advance(200ms);
    t.ready("g1");
    t.ready("p2");
    CHECK(t.st("root").state == ChildState::Running);
    for (int i = 0; i < 3; ++i) {
        t.advance(300ms);
        t.event(WatchdogPing{t.id("dog"), t.st("dog").incarnation});
    }
    CHECK(t.st("dog").watchdog == std::optional<Duration>(500ms));
}

// Crashes in the window, backoff, a MAINPID move, a stop whose timeout runs, a start timeout.
void scenario_crashes(Twin &t) {
    t.exit("crashy", 1); // ran long enough: restarts at once
    t.exit("crashy", 1); // at once again: waits for its backoff
    CHECK(t.st("crashy").state == ChildState::Backoff);
    t.advance(100ms);
    t.advance(1000ms);
    CHECK(t.st("crashy").state == ChildState::Running);
    t.event(StatusText{t.id("mover"), t.st("mover").incarnation, "moving"});
    t.event(MainPidReported{t.id("mover"), t.st("mover").incarnation, Pid{5000}, ""});
    t.event(MainPidReported{t.id("mover"), t.st("mover").incarnation, Pid{5001}, "not ours"});
    CHECK(t.st("mover").main_pid == std::optional<Pid>(Pid{5000}));
    t.exit("mover", 3);
    t.command(CommandKind::Stop, "slow");
    CHECK(t.st("slow").state == ChildState::Stopping);
    t.advance(800ms);
    t.advance(800ms); // the stop timeout: SIGKILL
    CHECK(t.st("slow").state == ChildState::Stopped);
    t.command(CommandKind::Start, "slow");
    t.command(CommandKind::Restart, "ready");
    CHECK(t.st("ready").state == ChildState::Starting);
    t.advance(1100ms); // the start timeout passes
    t.ready("ready");
    t.event(WatchdogInterval{t.id("dog"), t.st("dog").incarnation, 700ms});
    t.advance(800ms); // no ping: the watchdog fails
    t.event(WatchdogInterval{t.id("dog"), t.st("dog").incarnation, 0ms}); // and is switched off
    t.event(HealthFailed{t.id("crashy"), t.st("crashy").incarnation, FailureCause::Liveness,
                         "liveness http :8080/", "status 503"});
}

// Temporary, leftovers, a sweep, give-up of g, a set restart, patterns, a held spawn.
void scenario_tree_work(Twin &t) {
    t.exit("temp", 0);
    CHECK(t.st("temp").exited);
    t.fail_spawn = {"temp"};
    t.command(CommandKind::Start, "temp"); // a start command that fails is not retried
    t.fail_spawn.clear();
    CHECK(t.st("temp").state == ChildState::Stopped);
    t.command(CommandKind::Start, "temp");
    t.linger = {"lin"};
    t.ignore_term.insert("lin");
    t.exit("lin", 0);
    CHECK(t.st("lin").exiting);
    t.event(LeftBehind{t.id("lin"), {Pid{9001}, Pid{9002}}});
    t.advance(900ms); // the leftovers' wait: SIGKILL, then the end
    t.linger.clear();
    t.ignore_term.insert("g3");
    t.exit("g2", 1); // rest_for_one: g3 (which takes its time) and g2
    CHECK(t.st("g3").state == ChildState::Stopping);
    t.command(CommandKind::Stop, "g3"); // during the sweep: its start phase leaves g3 down
    t.advance(10'100ms);
    CHECK(t.st("g3").state == ChildState::Stopped);
    t.ignore_term.erase("g3");
    t.command(CommandKind::Start, "g3");
    for (int i = 0; i < 3; ++i) {
        t.exit("g1", 1);
        if (t.st("g").state == ChildState::Running) t.ready("g1");
    }
    t.advance(50ms);
    CHECK(t.st("g").state == ChildState::Starting); // gave up; the root starts it again
    t.reload(scenario_tree(true, true));            // g4 joins g's start
    t.ready("g1");
    CHECK(t.st("g4").state == ChildState::Running);
    t.restart({"p1", "p3"});
    t.ready("p2");
    t.event(
        PatternFired{t.id("p3"), t.st("p3").incarnation, PatternAction::Event, "oops", "oops 1"});
    t.event(PatternFired{t.id("p3"), t.st("p3").incarnation, PatternAction::Restart, "panic",
                         "panic!"});
    t.ready("p2");
    t.event(StoppingReported{t.id("crashy"), t.st("crashy").incarnation});
    t.hold_spawn = {"crashy"};
    t.command(CommandKind::Restart, "crashy");
    CHECK(t.st("crashy").state == ChildState::Starting);
    CHECK(!t.st("crashy").pid);
    t.command(CommandKind::Stop, "crashy"); // stops once it has a pid
    t.hold_spawn.clear();
    t.release_spawns();
    t.command(CommandKind::Start, "crashy");
    t.command(CommandKind::Signal, "p", sig_hup);
    t.note("mover", "3 lines lost");
}

// Reload removes slow (still going down: it ignores SIGTERM) and changes crashy; forget; the
// next reload gives slow's id to a new unit; then shutdown, twice.
void scenario_reload_and_end(Twin &t) {
    TreeSpec next = scenario_tree(false, true);
    for (auto &n : next.nodes)
        if (n.name == "crashy") n.fingerprint = 7;
    next.nodes[0].children.push_back(ChildId{static_cast<std::uint32_t>(next.nodes.size())});
    next.nodes.push_back(service("extra").spec);
    next.nodes.back().parent = root_id;
    const auto res = t.reload(next);
    CHECK(res.errors.empty());
    CHECK(t.a_core().status(ChildId{2}).removed);
    CHECK(t.a_core().status(ChildId{2}).state == ChildState::Stopping);
    // slow comes back while the old one is still going down: the new one waits for it.
    TreeSpec back = scenario_tree(true, true);
    back.nodes[0].children.push_back(ChildId{static_cast<std::uint32_t>(back.nodes.size())});
    back.nodes.push_back(service("extra").spec);
    back.nodes.back().parent = root_id;
    for (auto &n : back.nodes)
        if (n.name == "crashy") n.fingerprint = 7;
    t.reload(back);
    CHECK(t.st("slow").state == ChildState::Stopped);
    CHECK(t.st("slow").id != ChildId{2});
    t.advance(1600ms);
    CHECK(t.st("slow").state == ChildState::Running);
    // The old slow is down: forget it, remove the new one, and "newer" takes the old id.
    t.forget(ChildId{2});
    TreeSpec third = next;
    third.nodes[0].children.push_back(ChildId{static_cast<std::uint32_t>(third.nodes.size())});
    third.nodes.push_back(service("newer").spec);
    third.nodes.back().parent = root_id;
    t.reload(third);
    CHECK(t.id("newer") == ChildId{2});
    t.ignore_term = {"ready"};
    t.command(CommandKind::Shutdown, "root");
    t.advance(100ms);
    t.command(CommandKind::Shutdown, "root"); // kills what is left
    t.advance(5s);
    CHECK(t.a_core().finished());
}

void scenario(Twin &t) {
    scenario_start(t);
    scenario_crashes(t);
    scenario_tree_work(t);
    scenario_reload_and_end(t);
    t.finish();
}

// Three instances of "web" behind a drain; a rolling restart of width 1, restored across its
// steps, its drains and its end.
TreeSpec roll_tree() {
    std::vector<NodeDef> kids;
    for (int k = 1; k <= 3; ++k)
        kids.push_back(service("web@" + std::to_string(k), [k](ChildSpec &s) {
            s.unit = "web";
            s.instance = k;
            s.wait_ready = true;
            s.stop.drain = Duration{300};
        }));
    return root(Strategy::OneForOne, std::move(kids), intensity(50, 60s));
}

void roll_scenario(Twin &t) {
    t.start();
    for (int k = 1; k <= 3; ++k)
        t.ready("web@" + std::to_string(k));
    CHECK(t.roll("web").outcome == CommandOutcome::Ok);
    for (int k = 1; k <= 3; ++k) {
        const std::string name = "web@" + std::to_string(k);
        CHECK(t.st(name).state == ChildState::Stopping); // draining
        t.advance(150ms);
        t.advance(200ms); // the drain ends: the stop signal, the exit, the new incarnation
        t.ready(name);
    }
    const auto rs = t.a_core().roll_status("web");
    REQUIRE(rs);
    CHECK(rs->phase == RollPhase::Done);
    CHECK(rs->done == 3);
    t.finish();
}

} // namespace

TEST_SUITE("core") {

    TEST_CASE("snapshot: a rolling restart and its drains go on in a restored core") {
        Twin t(roll_tree(), true, -1);
        roll_scenario(t);
        CHECK(t.restores == t.steps);
        for (int k = 0; k < t.steps; ++k) {
            CAPTURE(k);
            Twin once(roll_tree(), false, k);
            roll_scenario(once);
            CHECK(once.restores == 1);
        }
    }

    TEST_CASE("snapshot: a core restored before every input behaves as the original") {
        Twin t(scenario_tree(), true, -1);
        scenario(t);
        CHECK(t.restores == t.steps);
        CHECK(t.steps > 100);
    }

    TEST_CASE("snapshot: a core restored once, at any step, behaves as the original to the end") {
        int total = 0;
        {
            Twin probe(scenario_tree(), false, -1);
            scenario(probe);
            total = probe.steps;
        }
        CHECK(total > 100);
        // Every 7th step (the test above restores at each one, for one step).
        for (int k = 0; k < total; k += 7) {
            CAPTURE(k);
            Twin t(scenario_tree(), false, k);
            scenario(t);
            CHECK(t.restores == 1);
        }
    }
}

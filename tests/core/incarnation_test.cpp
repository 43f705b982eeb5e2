// incarnation_test.cpp: one incarnation from the core's side: its end (main process and
// drained output, leftovers), MAINPID=, readiness over time, the watchdog, log patterns, STATUS=,
// and the structured fields of the records that tell all this.
#include <doctest/doctest.h>

#include "impl.hpp" // StopCause precedence
#include "sim.hpp"
#include "vigil/core/names.hpp"

using namespace vigil;
using namespace vigil::core;
using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

using Sigs = std::vector<int>;

const Record *last_record(const Sim &sim, const std::string &unit, RecordKind kind) {
    for (auto it = sim.records.rbegin(); it != sim.records.rend(); ++it)
        if (it->unit == unit && it->kind == kind) return &*it;
    return nullptr;
}

} // namespace

TEST_SUITE("core") {

    TEST_CASE("end: a dead main process whose output is still held waits for it, and what is "
              "left gets the stop signal and SIGCONT") {
        Sim sim{root(Strategy::OneForOne, {service("w", stop_timeout(2s))})};
        sim.start_all();
        const Pid p = sim.pid("w");
        sim.linger("w");
        sim.on_signal("w", OnSignal::Ignore); // the main process itself dies of the exit below
        const int conts = sim.conts;
        sim.exit("w", 1);
        // The stop signal reached what was left, which went away: drained, then reported.
        CHECK(sim.lines("signal-leftover ") == std::vector<std::string>{"w SIGTERM"});
        CHECK(sim.conts == conts + 1);
        CHECK(sim.when("drained w").has_value());
        CHECK(sim.state("w") == ChildState::Running);
        CHECK(sim.incarnation("w") == 2);
        const Record *r = last_record(sim, "w", RecordKind::Exited);
        REQUIRE(r);
        CHECK(r->exit == ExitStatus::exited(1));
        CHECK(r->cause == Cause::Exited);
        CHECK(r->incarnation == Incarnation{1});
        (void)p;
    }

    TEST_CASE("end: leftovers that ignore the stop signal are killed after the stop timeout, and "
              "the exit is reported then") {
        Sim sim{root(Strategy::OneForOne, {service("w", stop_timeout(2s))})};
        sim.start_all();
        sim.linger("w", /*ignores_term=*/true);
        sim.exit("w", 0);
        CHECK(sim.state("w") == ChildState::Running);
        CHECK(sim.status("w").exiting);
        CHECK_FALSE(sim.status("w").ready);
        CHECK(sim.incarnation("w") == 1); // not reported yet: no restart
        sim.advance(1999ms);
        CHECK(sim.incarnation("w") == 1);
        sim.advance(1ms);
        CHECK(sim.lines("signal-leftover ") == std::vector<std::string>{"w SIGTERM", "w SIGKILL"});
        CHECK(sim.incarnation("w") == 2);
        const Record *k = last_record(sim, "w", RecordKind::Killed);
        REQUIRE(k);
        CHECK(k->cause == Cause::Leftover);
        CHECK(k->signal == sig_kill);
    }

    TEST_CASE("end: a drain that comes before the exit reports the exit at once") {
        Sim sim{root(Strategy::OneForOne, {service("w")})};
        sim.start_all();
        const ChildStatus s = sim.status("w");
        sim.inject(Drained{s.id, s.incarnation}); // the service closed its stdout and stderr
        CHECK(sim.state("w") == ChildState::Running);
        sim.inject(Drained{s.id, s.incarnation}); // a second one is stale
        sim.exit("w", 3);
        CHECK(sim.incarnation("w") == 2);
        CHECK(sim.lines("signal-leftover ").empty());
    }

    TEST_CASE("end: a stop that finds the main process gone keeps waiting for the output") {
        Sim sim{root(Strategy::OneForOne, {service("w", stop_timeout(3s))})};
        sim.start_all();
        sim.linger("w", true);
        sim.exit("w", 1); // leftovers got SIGTERM, the stop timeout (3s) runs
        sim.advance(1s);
        CHECK(sim.command(CommandKind::Stop, "w").outcome == CommandOutcome::Ok);
        CHECK(sim.state("w") == ChildState::Stopping);
        sim.advance(1999ms);
        CHECK(sim.state("w") == ChildState::Stopping);
        sim.advance(1ms); // the original deadline: SIGKILL, then stopped (as the command asked)
        CHECK(sim.state("w") == ChildState::Stopped);
        CHECK(sim.status("w").goal == Goal::Down);
    }

    TEST_CASE("SIGCONT follows every graceful stop signal, never SIGKILL") {
        Sim sim{root(Strategy::OneForOne,
                     {service("a"), service("b", [](ChildSpec &s) { s.stop.signal = sig_kill; })})};
        sim.start_all();
        int conts = sim.conts;
        sim.command(CommandKind::Stop, "a");
        CHECK(sim.conts == conts + 1);
        conts = sim.conts;
        sim.command(CommandKind::Stop, "b");
        CHECK(sim.conts == conts);
    }

    TEST_CASE("MAINPID: the main process moves; the spawned process's end is not the service's") {
        Sim sim{root(Strategy::OneForOne, {service("w")})};
        sim.start_all();
        const ChildStatus s = sim.status("w");
        const std::size_t actions = sim.actions.size();
        sim.inject(MainPidReported{s.id, s.incarnation, Pid{4242}, ""});
        CHECK(sim.status("w").main_pid == Pid{4242});
        CHECK(sim.status("w").pid == s.pid);
        bool watched = false;
        for (std::size_t i = actions; i < sim.actions.size(); ++i)
            if (auto *w = std::get_if<WatchMain>(&sim.actions[i])) watched = w->pid == Pid{4242};
        CHECK(watched);
        // The spawned process exits (the classic forking daemon): nothing happens.
        sim.inject(Drained{s.id, s.incarnation});
        sim.inject(Exited{s.id, s.incarnation, *s.pid, ExitStatus::exited(0)});
        CHECK(sim.state("w") == ChildState::Running);
        CHECK(sim.incarnation("w") == 1);
        // The main process ends: that is the service's end.
        sim.inject(Exited{s.id, s.incarnation, Pid{4242}, ExitStatus::exited(7)});
        CHECK(sim.incarnation("w") == 2);
        CHECK(sim.status("w").last_exit == ExitStatus::exited(7));
    }

    TEST_CASE("MAINPID: refusals are recorded and change nothing") {
        Sim sim{root(Strategy::OneForOne, {service("a"), service("b")})};
        sim.start_all();
        const ChildStatus a = sim.status("a"), b = sim.status("b");
        sim.inject(MainPidReported{a.id, a.incarnation, *b.pid, ""});
        CHECK(sim.status("a").main_pid == a.pid);
        CHECK(sim.has_record("a", RecordKind::Notice, "belongs to unit b"));
        sim.inject(MainPidReported{a.id, a.incarnation, Pid{77}, "no such process"});
        CHECK(sim.status("a").main_pid == a.pid);
        const Record *r = last_record(sim, "a", RecordKind::Notice);
        REQUIRE(r);
        CHECK(r->message == "ignored MAINPID=77: no such process");
        CHECK(r->cause == Cause::MainPid);
        CHECK(r->pid == Pid{77});
        // Too late once the main process has ended.
        sim.linger("a", true);
        sim.exit("a", 1);
        sim.inject(MainPidReported{a.id, a.incarnation, Pid{78}, ""});
        CHECK(sim.has_record("a", RecordKind::Notice,
                             "ignored MAINPID=78: the main process has "
                             "ended already"));
    }

    TEST_CASE("readiness over time: a readiness probe moves `ready` back and forth") {
        Sim sim{root(Strategy::OneForOne,
                     {service("w", [](ChildSpec &s) { s.readiness_probe = true; })})};
        sim.start_all();
        const ChildStatus s = sim.status("w");
        CHECK(s.state == ChildState::Running);
        CHECK_FALSE(s.ready); // not ready until the probe's first success
        sim.inject(ProbeReadiness{s.id, s.incarnation, true, ""});
        CHECK(sim.status("w").ready);
        sim.inject(
            ProbeReadiness{s.id, s.incarnation, false, "readiness tcp :1: refused, 3 times"});
        CHECK_FALSE(sim.status("w").ready);
        CHECK(sim.has_record("w", RecordKind::NotReady, "refused, 3 times; not ready"));
        sim.inject(ProbeReadiness{s.id, s.incarnation, true, ""});
        CHECK(sim.status("w").ready);
        CHECK(sim.state("w") == ChildState::Running); // readiness never restarts anything
    }

    TEST_CASE("readiness: a child that waits for readiness starts at BecameReady; the probe's "
              "later verdicts only move `ready`") {
        Sim sim{root(Strategy::OneForOne, {service("w",
                                                   [](ChildSpec &s) {
                                                       s.wait_ready = true;
                                                       s.readiness_probe = true;
                                                   }),
                                           service("x")})};
        sim.start_all();
        CHECK(sim.state("w") == ChildState::Starting);
        CHECK(sim.spawns("x") == 0);
        const ChildStatus s = sim.status("w");
        sim.inject(ProbeReadiness{s.id, s.incarnation, true, ""});
        CHECK(sim.state("w") == ChildState::Starting); // the shell says BecameReady for that
        sim.ready("w");
        CHECK(sim.state("w") == ChildState::Running);
        CHECK(sim.status("w").ready);
        CHECK(sim.spawns("x") == 1);
    }

    TEST_CASE("watchdog: armed once up, re-armed by pings, a miss is a health failure") {
        Sim sim{root(Strategy::OneForOne,
                     {service("w", [](ChildSpec &s) { s.watchdog = Duration{1000}; })})};
        sim.start_all();
        const ChildStatus s = sim.status("w");
        CHECK(s.watchdog == Duration{1000});
        sim.advance(900ms);
        sim.inject(WatchdogPing{s.id, s.incarnation});
        sim.advance(900ms);
        CHECK(sim.incarnation("w") == 1);
        sim.advance(100ms); // 1000ms since the ping
        CHECK(sim.incarnation("w") == 2);
        const Record *u = last_record(sim, "w", RecordKind::Unhealthy);
        REQUIRE(u);
        CHECK(u->cause == Cause::Watchdog);
        CHECK(u->message == "watchdog failure: no WATCHDOG=1 within 1s; stopping");
        const Record *e = last_record(sim, "w", RecordKind::Exited);
        REQUIRE(e);
        CHECK(e->cause == Cause::Watchdog);
    }

    TEST_CASE("watchdog: WATCHDOG_USEC= moves the interval and restarts the countdown; 0 stops "
              "it") {
        Sim sim{root(Strategy::OneForOne,
                     {service("w", [](ChildSpec &s) { s.watchdog = Duration{1000}; })})};
        sim.start_all();
        const ChildStatus s = sim.status("w");
        sim.advance(500ms);
        sim.inject(WatchdogInterval{s.id, s.incarnation, Duration{3000}});
        sim.advance(2999ms);
        CHECK(sim.incarnation("w") == 1);
        sim.inject(WatchdogInterval{s.id, s.incarnation, Duration{0}});
        CHECK_FALSE(sim.status("w").watchdog);
        sim.advance(60s);
        CHECK(sim.incarnation("w") == 1);
    }

    TEST_CASE("patterns: restart and unhealthy are health failures reported as the pattern; stop "
              "stops and holds; event is a notice") {
        Sim sim{root(Strategy::OneForOne, {service("a"), service("b"), service("c")})};
        sim.start_all();
        auto fire = [&](const std::string &n, PatternAction act) {
            const ChildStatus s = sim.status(n);
            sim.inject(PatternFired{s.id, s.incarnation, act, "OOM", "java: OOM here"});
        };
        fire("a", PatternAction::Unhealthy);
        CHECK(sim.incarnation("a") == 2);
        const Record *u = last_record(sim, "a", RecordKind::Unhealthy);
        REQUIRE(u);
        CHECK(u->cause == Cause::Pattern);
        CHECK(u->subject == "pattern /OOM/");
        CHECK(u->message.find("liveness") == std::string::npos);
        CHECK(u->message == "unhealthy: pattern /OOM/ matched: java: OOM here; stopping");
        fire("b", PatternAction::Stop);
        CHECK(sim.state("b") == ChildState::Stopped);
        CHECK(sim.status("b").goal == Goal::Down);
        CHECK(sim.has_record("b", RecordKind::Command, "stop requested by pattern /OOM/"));
        fire("c", PatternAction::Event);
        CHECK(sim.incarnation("c") == 1);
        const Record *n = last_record(sim, "c", RecordKind::Notice);
        REQUIRE(n);
        CHECK(n->cause == Cause::Pattern);
    }

    TEST_CASE("status: STATUS= text, why the last run ended, for a spawn failure too") {
        Sim sim{root(Strategy::OneForOne, {service("w"), service("bad")}, intensity(100, 1s))};
        sim.start_all();
        sim.fail_spawn("bad", 1, "exec pyhton3: No such file or directory");
        sim.exit("bad", 1); // its restart fails to spawn, the retry works
        const ChildStatus s = sim.status("w");
        sim.inject(StatusText{s.id, s.incarnation, "serving 12 clients"});
        CHECK(sim.status("w").status_text == "serving 12 clients");
        sim.inject(StoppingReported{s.id, s.incarnation});
        CHECK(sim.has_record("w", RecordKind::Notice, "STOPPING=1"));
        CHECK(sim.status("bad").last_cause == Cause::SpawnFailed);
        CHECK(sim.status("bad").last_reason == "exec pyhton3: No such file or directory");
        sim.exit("w", 2);
        CHECK(sim.status("w").last_cause == Cause::Exited);
        CHECK(sim.status("w").last_reason == "exited with status 2");
        CHECK(sim.status("w").status_text.empty()); // a new incarnation
    }

    TEST_CASE("records: a decided restart carries its delay, a stop its signal and cause") {
        Sim sim{root(Strategy::OneForOne, {service("w", [](ChildSpec &s) {
                         s.backoff.initial = Duration{250};
                         s.backoff.jitter = 0.0;
                     })})};
        sim.start_all();
        sim.exit("w", 1);
        const Record *e = last_record(sim, "w", RecordKind::Exited);
        REQUIRE(e);
        CHECK(e->delay == Duration{250});
        CHECK(e->exit == ExitStatus::exited(1));
        sim.advance(250ms);
        sim.command(CommandKind::Stop, "w", "vigilctl (uid 0 pid 9)");
        const Record *st = last_record(sim, "w", RecordKind::Stopping);
        REQUIRE(st);
        CHECK(st->signal == sig_term);
        CHECK(st->cause == Cause::Command);
        const Record *cmd = last_record(sim, "w", RecordKind::Command);
        REQUIRE(cmd);
        CHECK(cmd->subject == "vigilctl (uid 0 pid 9)");
    }

    TEST_CASE("stop precedence is explicit: a sweep outranks a manual stop, which outranks a "
              "restart, which outranks a health stop") {
        CHECK(precedence(StopCause::Plan) > precedence(StopCause::Manual));
        CHECK(precedence(StopCause::Manual) > precedence(StopCause::ManualRestart));
        CHECK(precedence(StopCause::ManualRestart) > precedence(StopCause::Health));
        CHECK(stronger(StopCause::Health, StopCause::Manual) == StopCause::Manual);
        CHECK(stronger(StopCause::Removed, StopCause::Shutdown) == StopCause::Removed);
    }

} // TEST_SUITE

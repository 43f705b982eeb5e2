// shell_test.cpp: vigild's shell (src/daemon) driven through the fake OS (fake_os.hpp):
// deterministic, no process, no sleep. Each case is a sequence of OS happenings in an order the
// real OS may produce, and checks what the shell did with it: the events it fed the core, the
// signals it sent, what it kept open.
#include <doctest/doctest.h>

#include <csignal>

#include "control_api.hpp"
#include "fake_os.hpp"
#include "status_view.hpp"

using namespace vigil;
using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

// The unit's ring, as `vigilctl logs` shows it.
std::vector<std::string> ring(Harness &h, const std::string &unit) {
    std::vector<std::string> out;
    const daemon::UnitRuntime *r = h.shell->runtime_if(h.id(unit));
    if (!r || !r->log) return out;
    for (const log::RingLine &l : r->log->ring().last(1000))
        out.emplace_back(l.text);
    return out;
}

bool has_record(Harness &h, const std::string &unit, core::RecordKind kind,
                const std::string &fragment) {
    for (const core::Record &r : h.shell->core().history(h.id(unit), 1000))
        if (r.kind == kind && r.message.find(fragment) != std::string::npos) return true;
    return false;
}

} // namespace

TEST_SUITE("daemon") {

    TEST_CASE("spawning is asynchronous: the child is Starting until the answer comes") {
        Harness h({{"a", svc}, {"b", svc}}, /*auto_answer=*/false);
        REQUIRE(h.os.spawns.size() == 1); // sequential root: b waits for a
        CHECK(h.status("a").state == core::ChildState::Starting);
        CHECK_FALSE(h.status("a").pid);
        const int pid = h.os.answer(0);
        CHECK(h.status("a").state == core::ChildState::Running);
        CHECK(h.pid("a") == pid);
        REQUIRE(h.os.spawns.size() == 2);
        h.os.fail(1, "exec /bin/nope: No such file or directory");
        CHECK(h.status("b").last_cause == core::Cause::SpawnFailed);
    }

    // A service runs as soon as it is exec'd; the spawner's answer with its pid comes after.
    // What it says in between (its ready fd, READY=1) must not be lost.
    TEST_CASE("readiness that arrives before the spawn's answer is kept and replayed") {
        Harness h({{"fd", svc_with(R"("ready": {"fd": 3})")},
                   {"nt", svc_with(R"("ready": {"notify": true}, "after": ["fd"])")}},
                  false);
        REQUIRE(h.os.ready_fds.size() == 1);
        h.os.ready_fds[0](); // the service wrote its newline
        CHECK(h.status("fd").state == core::ChildState::Starting);
        h.os.answer(0);
        CHECK(h.status("fd").state == core::ChildState::Running);
        REQUIRE(h.os.spawns.size() == 2);
        // READY=1 from the pid the answer will carry (FakeOs gives the next pid: 101).
        h.os.notify("nt", "READY=1\nSTATUS=up", 101);
        h.os.notify("nt", "READY=1", 4242); // a stranger: kept, then refused at the answer
        // A helper of the service (systemd-notify: its session is the service's) that is gone
        // by the answer: it is judged by what it was when its message came.
        vigil::test::FakeProc helper;
        helper.pid = 4300;
        helper.session = 101;
        h.os.procs[4300] = helper;
        h.os.notify("nt", "STATUS=from a helper", 4300);
        h.os.procs.erase(4300); // ended and reaped before the answer
        CHECK(h.status("nt").state == core::ChildState::Starting);
        CHECK(h.os.answer(1) == 101);
        CHECK(h.status("nt").state == core::ChildState::Running);
        CHECK(h.status("nt").status_text == "from a helper");
        CHECK(h.os.has_journal("refused a notification from pid 4242"));
        CHECK_FALSE(h.os.has_journal("refused a notification from pid 4300"));
    }

    TEST_CASE("an exit while the pipes are still open: the last lines come first, what is left "
              "gets the stop signal, the end is reported at EOF") {
        Harness h({{"w", svc_with(R"("stop": {"timeout": "5s"})")}});
        const int pid = h.os.pid_of("w");
        const int child = h.os.fork(pid); // a background process holding the pipes
        h.os.write(pid, log::Stream::Stdout, "last words");
        h.os.exit(pid, 3);
        // The shell read the pipe before it reported the exit.
        CHECK(ring(h, "w") == std::vector<std::string>{"last words"});
        CHECK(h.status("w").exiting);
        CHECK(h.status("w").incarnation.value == 1);
        // What was left got SIGTERM (and died of it; SIGCONT follows, see below).
        CHECK(h.os.procs[child].signals == std::vector<int>{SIGTERM});
        h.os.reap(child);
        h.os.close_output(pid);
        CHECK(h.status("w").incarnation.value == 2);
        CHECK(h.status("w").last_exit == core::ExitStatus::exited(3));
    }

    TEST_CASE("an answer that comes after its process was reaped still reports both") {
        Harness h({{"w", svc}}, false);
        // The process exited and vigild reaped it before the spawner's answer was read.
        h.os.answer(0);
        const int pid = h.os.pid_of("w");
        h.os.write(pid, log::Stream::Stdout, "hello");
        h.os.close_output(pid);
        h.os.exit(pid, 0);
        CHECK(ring(h, "w") == std::vector<std::string>{"hello"});
        CHECK(h.status("w").incarnation.value == 2); // restarted (permanent)
    }

    TEST_CASE("a reload during a one_for_all sweep applies to the sweep's restarts") {
        const std::string root = R"({"kind": "supervisor", "strategy": "one_for_all"})";
        Harness h({{"root", root},
                   {"a", svc},
                   {"b", svc_with(R"("after": ["a"])")},
                   {"c", svc_with(R"("after": ["b"], "stop": {"timeout": "5s"})")}});
        const int c = h.os.pid_of("c");
        h.os.procs[c].ignores_term = true;
        h.os.exit(h.os.pid_of("a"), 1); // the sweep stops c (slow), then b, then starts all
        CHECK(h.status("c").state == core::ChildState::Stopping);
        // Meanwhile: b's command changes and d appears.
        h.os.next_load =
            load_units({{"root", root},
                        {"a", svc},
                        {"b", R"({"command": ["/bin/echo", "b2"], "after": ["a"]})"},
                        {"c", svc_with(R"("after": ["b"], "stop": {"timeout": "5s"})")},
                        {"d", svc}});
        bool answered = false;
        h.shell->reload("test", [&](const daemon::Shell::ReloadOutcome &o) {
            answered = true;
            CHECK(o.diagnostics.empty());
            CHECK(o.result.added == std::vector<std::string>{"d"});
            CHECK(o.result.restarted == std::vector<std::string>{"b"});
        });
        CHECK(h.os.loading());
        h.os.finish_load();
        CHECK(answered);
        h.os.advance(5s); // c gets SIGKILL; the sweep goes on
        h.os.reap(c);
        h.os.close_output(c);
        h.os.settle(); // b, stopped by the reload, is reaped; the sweep goes on
        for (const char *n : {"a", "b", "c", "d"})
            CHECK_MESSAGE(h.status(n).state == core::ChildState::Running, n);
        // b's new incarnation runs the new command.
        CHECK(h.os.spawns.back().spec.argv.size() >= 1);
        bool b2 = false;
        for (const auto &s : h.os.spawns)
            b2 = b2 || (s.spec.argv.size() == 2 && s.spec.argv[1] == "b2");
        CHECK(b2);
    }

    TEST_CASE("a stop that arrives during a sweep is not undone by the sweep") {
        const std::string root = R"({"kind": "supervisor", "strategy": "one_for_all"})";
        Harness h({{"root", root},
                   {"a", svc},
                   {"b", svc_with(R"("after": ["a"])")},
                   {"c", svc_with(R"("after": ["b"], "stop": {"timeout": "5s"})")}});
        h.os.procs[h.os.pid_of("c")].ignores_term = true;
        h.os.exit(h.os.pid_of("a"), 1);
        const int b = h.os.pid_of("b");
        core::CommandResult r =
            h.shell->command(core::Command{core::CommandKind::Stop, h.id("b"), 0, "test"});
        CHECK(r.outcome == core::CommandOutcome::Ok);
        h.os.reap(b);
        h.os.close_output(b);
        h.os.advance(5s);
        h.os.reap(h.os.pid_of("c"));
        h.os.close_output(h.os.pid_of("c"));
        CHECK(h.status("a").state == core::ChildState::Running);
        CHECK(h.status("c").state == core::ChildState::Running);
        CHECK(h.status("b").state == core::ChildState::Stopped);
        CHECK(h.status("b").goal == core::Goal::Down);
    }

    TEST_CASE("MAINPID= hands over the main process; a pid outside the service is refused") {
        Harness h({{"d", svc_with(R"("ready": {"notify": true})")}});
        const int launcher = h.os.pid_of("d");
        const int daemon_pid = h.os.fork(launcher);
        const int stranger = h.os.fork(launcher, /*setsid=*/true);
        h.os.notify("d", "MAINPID=" + std::to_string(stranger), launcher);
        CHECK(h.pid("d") == launcher);
        CHECK(has_record(h, "d", core::RecordKind::Notice, "not part of the service"));
        h.os.notify("d", "READY=1\nMAINPID=" + std::to_string(daemon_pid), launcher);
        CHECK(h.pid("d") == daemon_pid);
        CHECK(h.status("d").state == core::ChildState::Running);
        // The launcher exits (the classic forking daemon): nothing happens.
        h.os.exit(launcher, 0);
        CHECK(h.status("d").incarnation.value == 1);
        CHECK(h.status("d").state == core::ChildState::Running);
        // The daemon is not vigild's child: its end comes through the watch (a pidfd).
        REQUIRE(h.os.watches.count(daemon_pid));
        auto ended = h.os.watches[daemon_pid];
        h.os.procs[daemon_pid].alive = false;
        ended(std::optional<int>(9)); // killed by SIGKILL
        h.os.close_output(launcher);
        CHECK(h.status("d").last_exit == core::ExitStatus::killed(9));
        CHECK(h.status("d").incarnation.value == 2);
    }

    TEST_CASE("readiness flipping back and forth shows the same in status, /readyz and "
              "/metrics") {
        Harness h({{"web", svc_with(R"("readiness": {"tcp": {"port": 8080}})")}});
        auto ready_everywhere = [&](bool want) {
            CHECK(h.status("web").ready == want);
            http::Snapshot snap = daemon::snapshot(*h.shell);
            REQUIRE(snap.units.size() == 1);
            CHECK(snap.units[0].ready == want);
            CHECK(http::not_ready(snap).empty() == want);
            ctl::Json st = daemon::status_json(*h.shell, daemon::live_units(*h.shell));
            CHECK(st["units"][0]["ready"] == want);
        };
        ready_everywhere(false); // not until the probe's first success
        h.os.probe_ready("web", true);
        ready_everywhere(true);
        h.os.probe_ready("web", false);
        ready_everywhere(false);
        h.os.probe_ready("web", true);
        ready_everywhere(true);
        CHECK(h.status("web").incarnation.value == 1);
    }

    TEST_CASE("an ended temporary service is `exited` in status and in /metrics") {
        Harness h({{"job", svc_with(R"("restart": "temporary")")}});
        const int pid = h.os.pid_of("job");
        h.os.exit(pid, 0);
        h.os.close_output(pid);
        CHECK(daemon::status_json(*h.shell, daemon::live_units(*h.shell))["units"][0]["state"] ==
              "exited");
        http::Snapshot snap = daemon::snapshot(*h.shell);
        REQUIRE(snap.units.size() == 1);
        CHECK(snap.units[0].state == "exited");
        CHECK(http::render_metrics(snap).find("vigil_units{state=\"exited\"} 1\n") !=
              std::string::npos);
    }

    TEST_CASE("a blocked stdout drops forwarded lines with a count and pauses nobody") {
        Harness h({{"loud", svc}, {"quiet", svc}}, true, [](FakeOs &os) { os.block_stdout(); });
        REQUIRE(h.status("loud").state == core::ChildState::Running);
        const int loud = h.os.pid_of("loud");
        const std::string line(1000, 'x');
        for (int i = 0; i < 8000; ++i) // 8 MB: more than the forwarder's 4 MiB queue
            h.os.write(loud, log::Stream::Stdout, line);
        h.os.deliver();
        const daemon::UnitRuntime &r = h.shell->runtime(h.id("loud"));
        REQUIRE(r.log);
        CHECK(r.log->counters().forward_dropped > 0);
        CHECK(r.log->counters().lines >= 8000); // the ring and patterns saw every line
        for (const FakeOutput &o : h.os.outputs)
            CHECK(o.pauses == 0);
        // Supervision goes on: the quiet one crashes and is restarted.
        h.os.exit(h.os.pid_of("quiet"), 1);
        h.os.close_output(h.os.pid_of("quiet"));
        CHECK(h.status("quiet").state == core::ChildState::Running);
        ctl::Json st = daemon::status_json(*h.shell, {h.id("loud")});
        CHECK(st["units"][0]["forward_dropped"].get<std::uint64_t>() > 0);
    }

    TEST_CASE("a log file that pushes back pauses its own unit only") {
        Harness h({{"a", svc_with(R"("logs": {"file": "/tmp/a.log"})")}, {"b", svc}});
        REQUIRE(h.os.files.size() == 1);
        h.os.files[0]->set_congested(true);
        const int a = h.os.pid_of("a");
        const int b = h.os.pid_of("b");
        CHECK(h.os.outputs[static_cast<std::size_t>(h.os.procs[a].output)].paused);
        CHECK_FALSE(h.os.outputs[static_cast<std::size_t>(h.os.procs[b].output)].paused);
        h.os.files[0]->set_congested(false);
        CHECK_FALSE(h.os.outputs[static_cast<std::size_t>(h.os.procs[a].output)].paused);
        // A short push-back is routine; one that lasts is said, with the file, and its end too.
        h.os.files[0]->set_congested(true);
        h.os.advance(9s);
        CHECK_FALSE(has_record(h, "a", core::RecordKind::Notice, "has taken no output"));
        h.os.advance(1s);
        CHECK(has_record(h, "a", core::RecordKind::Notice,
                         "its log file /tmp/a.log has taken no output for 10s"));
        CHECK(h.os.has_journal("its log file /tmp/a.log has taken no output for 10s"));
        h.os.advance(5s);
        h.os.files[0]->set_congested(false);
        CHECK(has_record(h, "a", core::RecordKind::Notice,
                         "its log file takes output again, after 15s"));
        CHECK_FALSE(has_record(h, "b", core::RecordKind::Notice, "log file"));
    }

    TEST_CASE("reload while a unit with patterns is stopping: the old run's hits never index "
              "the new list") {
        const std::string three = svc_with(
            R"("stop": {"timeout": "5s"}, "patterns": [{"match": "one"}, {"match": "two"},
               {"match": "three", "action": "restart"}])");
        Harness h({{"p", three}});
        const int old = h.os.pid_of("p");
        h.os.procs[old].ignores_term = true;
        h.os.next_load = load_units({{"p", svc_with(R"("patterns": [{"match": "zzz"}])")}});
        h.shell->reload("test", {});
        h.os.finish_load();
        CHECK(h.status("p").state == core::ChildState::Stopping);
        // The old incarnation still writes, matching its third pattern.
        h.os.write(old, log::Stream::Stdout, "three");
        h.os.deliver();
        CHECK(h.status("p").state == core::ChildState::Stopping); // not a second stop
        h.os.advance(10s); // the new unit's stop timeout (the default) applies
        CHECK(h.status("p").state == core::ChildState::Running);
        CHECK(h.status("p").incarnation.value == 2);
    }

    TEST_CASE("a spawner helper that dies: the spawn fails, the service is started again") {
        Harness h({{"w", R"({"command": ["/bin/true"],
                               "backoff": {"initial": "100ms", "jitter": 0}})"},
                   {"x", svc}},
                  false);
        h.os.answer(0);
        h.os.answer(1);
        h.os.exit(h.os.pid_of("w"), 1);
        h.os.close_output(h.os.pid_of("w"));
        h.os.advance(100ms);
        REQUIRE(h.os.spawns.size() == 3);
        h.os.fail(2, "spawner helper died during the spawn; its process (pid 999) was killed");
        CHECK(h.status("w").last_reason.find("spawner helper died") != std::string::npos);
        h.os.advance(1s);
        REQUIRE(h.os.spawns.size() == 4);
        h.os.answer(3);
        CHECK(h.status("w").state == core::ChildState::Running);
        CHECK(h.status("x").incarnation.value == 1); // untouched
    }

    TEST_CASE("exec probes run through the service's spawn path with its spec") {
        Harness h({{"e", svc_with(R"("user": "0", "group": "0", "cwd": "/tmp",
                                     "liveness": {"exec": ["/bin/check"]})")}});
        const auto &p = h.os.probes.at("e");
        CHECK(p.exec.base.cwd == std::string("/tmp"));
        REQUIRE(p.exec.spawn);
        const std::size_t before = h.os.spawns.size();
        p.exec.spawn(p.exec.base, {}, [](proc::SpawnCompletion) {});
        CHECK(h.os.spawns.size() == before + 1);
    }

    TEST_CASE("notifications: STATUS= is shown, WATCHDOG=1 keeps the watchdog quiet, a "
              "stranger's datagram is refused and rate-limited in the journal") {
        Harness h({{"n", svc_with(R"("watchdog": "2s")")}});
        const int pid = h.os.pid_of("n");
        h.os.notify("n", "STATUS=serving", pid);
        CHECK(h.status("n").status_text == "serving");
        h.os.advance(1500ms);
        h.os.notify("n", "WATCHDOG=1", pid);
        h.os.advance(1500ms);
        CHECK(h.status("n").incarnation.value == 1);
        const int stranger = h.os.fork(pid, true);
        for (int i = 0; i < 1000; ++i)
            h.os.notify("n", "READY=1", stranger);
        int refusals = 0;
        for (const auto &l : h.os.journal)
            if (l.find("refused a notification") != std::string::npos) ++refusals;
        CHECK(refusals <= daemon::Journal::burst);
        h.os.advance(2s); // no ping for 2s
        CHECK(h.status("n").incarnation.value == 1);
        CHECK(h.status("n").state == core::ChildState::Stopping);
    }

    // FakeOs has no cgroups, as vigild --no-cgroups or on a machine without a writable cgroup2.
    TEST_CASE("without a cgroup, a process that left the service's process group is listed as "
              "left behind until it ends; one in the group is the stop's to end") {
        Harness h({{"d", svc}});
        const int pid = h.os.pid_of("d");
        const int escaped = h.os.fork(pid, /*setsid=*/true);
        h.os.procs[escaped].output = -1;  // it closed its copies of the pipes, as daemons do
        const int stays = h.os.fork(pid); // in the group: the stop reaches it
        h.os.procs[stays].output = -1;
        h.os.exit(pid, 0);
        h.os.settle();
        // The group got the stop signal; the escaped process did not, and is listed.
        CHECK(h.os.procs[stays].signals.at(0) == SIGTERM);
        CHECK_FALSE(h.os.procs[stays].alive);
        CHECK(h.os.procs[escaped].signals.empty());
        CHECK(h.status("d").incarnation.value == 2); // restarted at once (permanent)
        REQUIRE(h.status("d").left_behind.size() == 1);
        CHECK(h.status("d").left_behind[0].value == escaped);
        CHECK(has_record(h, "d", core::RecordKind::Notice,
                         "processes left behind: " + std::to_string(escaped)));
        CHECK(h.os.watches.count(escaped) == 1);
        // The new incarnation: a process in its group is not listed, one that left it is.
        const int pid2 = h.os.pid_of("d");
        h.os.fork(pid2);
        const int escaped2 = h.os.fork(pid2, true);
        h.os.kill(escaped, SIGKILL); // the escaped process ends: the list loses it
        h.os.settle();
        CHECK(h.os.watches.count(escaped) == 0);
        REQUIRE(h.status("d").left_behind.size() == 1);
        CHECK(h.status("d").left_behind[0].value == escaped2);
        h.os.kill(escaped2, SIGKILL);
        h.os.settle();
        CHECK(h.status("d").left_behind.empty());
    }

    TEST_CASE("without a cgroup, the end waits for the process group to empty: a process that "
              "closed its output and ignores SIGTERM gets SIGKILL after the stop timeout") {
        Harness h({{"g", svc_with(R"("stop": {"timeout": "3s"})")}});
        const int pid = h.os.pid_of("g");
        const int stubborn = h.os.fork(pid);
        h.os.procs[stubborn].output = -1;
        h.os.procs[stubborn].ignores_term = true;
        h.os.exit(pid, 0);
        h.os.settle();
        CHECK(h.os.procs[stubborn].signals == std::vector<int>{SIGTERM, SIGCONT});
        CHECK(h.status("g").exiting);
        CHECK(h.status("g").incarnation.value == 1); // not restarted while it lives
        h.os.advance(3s);
        CHECK(h.os.procs[stubborn].signals.back() == SIGKILL);
        CHECK_FALSE(h.os.procs[stubborn].alive);
        CHECK(h.status("g").incarnation.value == 2);
    }

    TEST_CASE("with a cgroup: a stop sends the stop signal and SIGCONT to its processes; an EOF "
              "before the reap waits for it, then one read of cgroup.events settles the end; "
              "the pipes of the stopped service are closed") {
        Harness h({{"a", svc}}, true, [](FakeOs &os) { os.cgroups = true; });
        const int pid = h.os.pid_of("a");
        REQUIRE(h.os.procs[pid].cgroup == "a");
        const auto out = static_cast<std::size_t>(h.os.procs[pid].output);
        h.shell->command(core::Command{core::CommandKind::Stop, h.id("a"), 0, "test"});
        CHECK(h.os.procs[pid].signals == std::vector<int>{SIGTERM, SIGCONT});
        // The fake reads the pipes before it reaps: EOF came first.
        h.os.settle();
        CHECK(h.status("a").state == core::ChildState::Stopped);
        CHECK(h.os.cgroup_states["a"].events_reads == 1);
        CHECK(h.os.cgroup_states["a"].waits == 0);
        CHECK_FALSE(h.os.outputs[out].alive);
        CHECK(h.os.cgroup_states["a"].exists); // kept for its next start
    }

    TEST_CASE("with a cgroup: once vigild is going down, each service's cgroup is removed as it "
              "drains, not at the exit; and /proc is not read for what it left behind (its stop "
              "reached all of it)") {
        Harness h({{"a", svc}, {"b", svc}}, true, [](FakeOs &os) { os.cgroups = true; });
        const int a = h.os.pid_of("a");
        h.os.procs[a].ignores_term = true; // holds the tree's stop
        h.shell->command(core::Command{core::CommandKind::Shutdown, root_id, 0, "test"});
        h.os.settle();
        CHECK(h.status("b").state == core::ChildState::Stopped);
        CHECK_FALSE(h.os.cgroup_states["b"].exists);
        CHECK(h.os.cgroup_states["a"].exists);
        CHECK_FALSE(h.shell->exit_status());
        h.os.advance(10s); // a's stop timeout: SIGKILL
        CHECK_FALSE(h.os.procs[a].alive);
        CHECK_FALSE(h.os.cgroup_states["a"].exists);
        CHECK(h.shell->exit_status());
        CHECK(h.os.scans == 0);
        CHECK(h.os.finds.empty());
    }

    TEST_CASE("with a cgroup: an EOF before the reap reads nothing of the cgroup until the reap") {
        Harness h({{"a", svc}}, true, [](FakeOs &os) { os.cgroups = true; });
        const int pid = h.os.pid_of("a");
        h.os.end(pid, 0);
        h.os.deliver(); // EOF
        CHECK(h.os.cgroup_states["a"].events_reads == 0);
        CHECK(h.status("a").incarnation.value == 1);
        h.os.reap(pid);
        CHECK(h.os.cgroup_states["a"].events_reads == 1);
        h.os.settle();
        CHECK(h.status("a").incarnation.value == 2);
    }

    TEST_CASE("with a cgroup: a process left in it, outside the session, without the pipes and "
              "deaf to SIGTERM, holds the end until it ends") {
        Harness h({{"a", svc}}, true, [](FakeOs &os) { os.cgroups = true; });
        const int pid = h.os.pid_of("a");
        const int left = h.os.fork(pid, true);
        h.os.procs[left].output = -1;
        h.os.procs[left].ignores_term = true;
        CHECK(h.os.procs[left].cgroup == "a");
        h.os.exit(pid, 0);
        h.os.settle();
        CHECK(h.os.procs[left].signals == std::vector<int>{SIGTERM, SIGCONT});
        CHECK(h.os.cgroup_states["a"].waits == 1);
        CHECK(h.status("a").incarnation.value == 1); // not restarted while it lives
        h.os.kill(left, SIGKILL);
        h.os.settle();
        CHECK(h.status("a").incarnation.value == 2);
    }

    TEST_CASE("left-behind scans: one at a time, the units asked for meanwhile in the next; a "
              "unit removed by reload meanwhile is skipped") {
        Harness h({{"a", svc}, {"b", svc}});
        h.os.fork(h.os.pid_of("a"), true);
        h.os.exit(h.os.pid_of("a"), 0); // scan 1: a
        h.os.fork(h.os.pid_of("b"), true);
        h.os.exit(h.os.pid_of("b"), 0); // waits for scan 1
        REQUIRE(h.os.finds.size() == 1);
        CHECK(h.os.finds[0].units == std::vector<std::string>{"a"});
        h.os.next_load = load_units({{"a", svc}});
        h.shell->reload("test", [](const daemon::Shell::ReloadOutcome &) {});
        h.os.finish_load(); // b is gone
        h.os.settle();      // scan 1 answered, scan 2 (b) asked and answered
        CHECK(h.os.scans == 2);
        CHECK(h.status("a").left_behind.size() == 1);
        CHECK_FALSE(h.shell->core().find("b"));
    }

} // TEST_SUITE

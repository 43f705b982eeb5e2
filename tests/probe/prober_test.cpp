// Probers and Monitor against real sockets and processes on a real libuv loop (suite sys).
#include <doctest/doctest.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <dirent.h>
#include <string>
#include <sys/prctl.h>
#include <vector>

#include "test_loop.hpp"
#include "vigil/probe/monitor.hpp"
#include "vigil/probe/prober.hpp"
#include "vigil/proc/spawn.hpp"

using namespace std::chrono_literals;
using vigil::probe::CheckResult;
using vigil::probe::ExecRegistry;
using vigil::probe::ExecSpawn;
using vigil::probe::Monitor;
using vigil::probe::Prober;
using vigil::test::TestHttpServer;
using vigil::test::TestLoop;
using vigil::test::TestReaper;
using vigil::unit::ProbeKind;
using vigil::unit::ProbeSpec;

namespace {

ProbeSpec fast(ProbeKind kind) {
    ProbeSpec s;
    s.kind = kind;
    s.period = 20ms;
    s.timeout = 500ms;
    s.failure_threshold = 3;
    s.success_threshold = 1;
    return s;
}

// The daemon's spawn function, for tests: proc::spawn in this process (with a pidfd), the
// completion delivered from the loop a moment later, as the Spawner's pump() would. With
// `hold`, completions wait in `held` until deliver().
struct TestSpawner {
    using Done = std::function<void(vigil::proc::SpawnCompletion)>;
    struct Pending {
        uv_timer_t timer;
        vigil::proc::SpawnCompletion c;
        Done done;
    };
    uv_loop_t *loop;
    bool hold = false;
    std::vector<std::pair<vigil::proc::SpawnCompletion, Done>> held;
    std::vector<vigil::proc::SpawnExtras> extras_seen;

    explicit TestSpawner(uv_loop_t *l) : loop(l) {}

    ExecSpawn exec(vigil::proc::SpawnSpec base = {}) {
        return {[this](vigil::proc::SpawnSpec spec, vigil::proc::SpawnExtras x, Done done) {
                    extras_seen.push_back(x);
                    vigil::proc::SpawnCompletion c;
                    c.result = vigil::proc::spawn(spec, x, c.pidfd);
                    if (hold) {
                        held.emplace_back(std::move(c), std::move(done));
                        return;
                    }
                    auto *p = new Pending{{}, std::move(c), std::move(done)};
                    uv_timer_init(loop, &p->timer);
                    p->timer.data = p;
                    uv_timer_start(
                        &p->timer,
                        [](uv_timer_t *t) {
                            auto *pending = static_cast<Pending *>(t->data);
                            pending->done(std::move(pending->c));
                            uv_close(reinterpret_cast<uv_handle_t *>(t), [](uv_handle_t *h) {
                                delete static_cast<Pending *>(h->data);
                            });
                        },
                        0, 0);
                },
                std::move(base)};
    }

    void deliver() {
        auto all = std::move(held);
        held.clear();
        for (auto &[c, done] : all)
            done(std::move(c));
    }
};

std::size_t open_fd_count() {
    std::size_t n = 0;
    if (DIR *d = opendir("/proc/self/fd")) {
        while (readdir(d))
            ++n;
        closedir(d);
    }
    return n;
}

struct Record {
    std::vector<std::string> failed;
    int succeeded = 0;
    std::vector<CheckResult> checks;

    Prober::Callbacks callbacks() {
        return {[this](const std::string &d) { failed.push_back(d); }, [this] { ++succeeded; },
                [this](const CheckResult &r) { checks.push_back(r); }};
    }
};

} // namespace

TEST_SUITE("probe") {
    TEST_CASE("tcp probe on a closed port fails after failure_threshold checks") {
        TestLoop t;
        ExecRegistry reg;
        Record rec;
        auto s = fast(ProbeKind::Tcp);
        s.port = vigil::test::closed_port();
        Prober p{&t.loop, reg, "liveness", s, rec.callbacks()};
        CHECK_FALSE(uv_loop_alive(&t.loop)); // constructed, not started: nothing armed
        p.start();
        REQUIRE(t.run_until([&] { return !rec.failed.empty(); }, 3000));
        CHECK(rec.checks.size() == 3);
        CHECK(rec.failed[0] == "liveness tcp 127.0.0.1:" + std::to_string(s.port) +
                                   ": connect: connection refused, 3 times");
        CHECK(rec.succeeded == 0);
        p.stop();
        CHECK_FALSE(uv_loop_alive(&t.loop)); // stopped: no timer armed
    }

    TEST_CASE("a re-exec's prober goes on from its counters and its next check's time") {
        TestLoop t;
        ExecRegistry reg;
        Record rec;
        auto s = fast(ProbeKind::Tcp);
        s.port = vigil::test::closed_port();
        s.period = 300ms;
        Prober p{&t.loop, reg, "liveness", s, rec.callbacks()};
        p.start();
        REQUIRE(t.run_until([&] { return rec.checks.size() == 2; }, 3000));
        const vigil::probe::ProberState st = p.state();
        p.stop();
        CHECK(st.failures == 2);
        CHECK(st.checks_total == 2);
        const std::uint64_t due = st.next_due_ms;
        // The new binary's prober: one more failure makes three in a row, at the time the old
        // one would have checked (not after a whole period, nor at once).
        Record rec2;
        Prober q{&t.loop, reg, "liveness", s, rec2.callbacks()};
        q.resume(st);
        CHECK(q.checks_total() == 2);
        REQUIRE(t.run_until([&] { return !rec2.failed.empty(); }, 3000));
        CHECK(rec2.checks.size() == 1);
        const std::uint64_t at = uv_now(&t.loop);
        CHECK(at + 1 >= due);
        CHECK(at <= due + 100);
        CHECK(q.tally().failures() == 3);
        q.stop();
        // Counters that break the thresholds' invariants are not taken.
        vigil::probe::Thresholds th(3, 1);
        th.restore(5, 0, vigil::probe::Verdict::Unknown);
        CHECK(th.consecutive_failures() == 0);
        th.restore(1, 1, vigil::probe::Verdict::Unknown);
        CHECK(th.consecutive_successes() == 0);
        th.restore(0, 2, vigil::probe::Verdict::Success);
        CHECK(th.verdict() == vigil::probe::Verdict::Unknown);
        th.restore(5, 0, vigil::probe::Verdict::Failure);
        CHECK(th.consecutive_failures() == 5);
        th.restore(0, 1, vigil::probe::Verdict::Success);
        CHECK(th.verdict() == vigil::probe::Verdict::Success);
    }

    TEST_CASE("tcp probe on an open listener succeeds") {
        TestLoop t;
        ExecRegistry reg;
        Record rec;
        TestHttpServer srv{&t.loop};
        auto s = fast(ProbeKind::Tcp);
        s.port = srv.port;
        Prober p{&t.loop, reg, "readiness", s, rec.callbacks()};
        p.start();
        REQUIRE(t.run_until([&] { return rec.succeeded > 0; }, 3000));
        CHECK(rec.failed.empty());
        CHECK(rec.checks.at(0).ok);
    }

    TEST_CASE("http probe: 200 succeeds, 500 fails after exactly failure_threshold checks") {
        TestLoop t;
        ExecRegistry reg;
        Record rec;
        TestHttpServer srv{&t.loop};
        auto s = fast(ProbeKind::Http);
        s.port = srv.port;
        s.path = "/healthz";
        s.headers = {{"X-Probe", "vigil"}};
        Prober p{&t.loop, reg, "liveness", s, rec.callbacks()};
        p.start();
        REQUIRE(t.run_until([&] { return rec.succeeded == 1; }, 3000));
        CHECK(srv.last_request.rfind("GET /healthz HTTP/1.1\r\n", 0) == 0);
        CHECK(srv.last_request.find("\r\nX-Probe: vigil\r\n") != std::string::npos);
        CHECK(srv.last_request.find("\r\nHost: 127.0.0.1:") != std::string::npos);

        srv.respond_status(500);
        std::size_t before = rec.checks.size();
        REQUIRE(t.run_until([&] { return !rec.failed.empty(); }, 3000));
        CHECK(rec.checks.size() - before == 3);
        CHECK(rec.failed[0] == "liveness http 127.0.0.1:" + std::to_string(srv.port) +
                                   "/healthz: status 500, 3 times");
        CHECK(p.failures_total() == 3);

        // 3xx counts as success, like the kubelet.
        srv.respond_status(302);
        REQUIRE(t.run_until([&] { return rec.succeeded == 2; }, 3000));
    }

    TEST_CASE("http probe: a garbage reply is a failure") {
        TestLoop t;
        ExecRegistry reg;
        Record rec;
        TestHttpServer srv{&t.loop};
        srv.response = "SSH-2.0-OpenSSH\r\n\r\n";
        auto s = fast(ProbeKind::Http);
        s.port = srv.port;
        s.failure_threshold = 1;
        Prober p{&t.loop, reg, "liveness", s, rec.callbacks()};
        p.start();
        REQUIRE(t.run_until([&] { return !rec.failed.empty(); }, 3000));
        CHECK(rec.failed[0].find("malformed response") != std::string::npos);
    }

    TEST_CASE("http probe times out against a listener that never answers") {
        TestLoop t;
        ExecRegistry reg;
        Record rec;
        // A listening socket nobody accepts from: connect succeeds, no reply ever comes.
        uv_tcp_t mute;
        uv_tcp_init(&t.loop, &mute);
        sockaddr_in a{};
        uv_ip4_addr("127.0.0.1", 0, &a);
        REQUIRE(uv_tcp_bind(&mute, reinterpret_cast<sockaddr *>(&a), 0) == 0);
        REQUIRE(uv_listen(reinterpret_cast<uv_stream_t *>(&mute), 8, [](uv_stream_t *, int) {}) ==
                0);
        sockaddr_storage ss{};
        int len = sizeof ss;
        uv_tcp_getsockname(&mute, reinterpret_cast<sockaddr *>(&ss), &len);
        auto s = fast(ProbeKind::Http);
        s.port = ntohs(reinterpret_cast<sockaddr_in *>(&ss)->sin_port);
        s.timeout = 100ms;
        s.failure_threshold = 1;
        {
            Prober p{&t.loop, reg, "liveness", s, rec.callbacks()};
            p.start();
            REQUIRE(t.run_until([&] { return !rec.failed.empty(); }, 3000));
            CHECK(rec.failed[0].find("timed out after 100ms") != std::string::npos);
        }
        uv_close(reinterpret_cast<uv_handle_t *>(&mute), nullptr);
    }

    TEST_CASE("http probe resolves localhost") {
        TestLoop t;
        ExecRegistry reg;
        Record rec;
        TestHttpServer srv{&t.loop};
        auto s = fast(ProbeKind::Http);
        s.host = "localhost";
        s.port = srv.port;
        Prober p{&t.loop, reg, "readiness", s, rec.callbacks()};
        p.start();
        REQUIRE(t.run_until([&] { return rec.succeeded == 1; }, 3000));
    }

    TEST_CASE("exec probe: exit 0 succeeds, exit 1 and a missing command fail") {
        TestLoop t;
        ExecRegistry reg;
        TestReaper reaper{&t.loop, [&](int pid, int ws) { return reg.on_reaped(pid, ws); }};
        TestSpawner sp{&t.loop};
        Record ok, bad, missing;
        auto s = fast(ProbeKind::Exec);
        s.failure_threshold = 2;
        s.command = {"true"};
        Prober p1{&t.loop, reg, "readiness", s, ok.callbacks(), sp.exec()};
        s.command = {"sh", "-c", "echo 'no response' >&2; exit 1"};
        Prober p2{&t.loop, reg, "liveness", s, bad.callbacks(), sp.exec()};
        s.command = {"/nonexistent/vigil-probe"};
        Prober p3{&t.loop, reg, "liveness", s, missing.callbacks(), sp.exec()};
        p1.start();
        p2.start();
        p3.start();
        REQUIRE(t.run_until(
            [&] { return ok.succeeded && !bad.failed.empty() && !missing.failed.empty(); }, 5000));
        CHECK(bad.failed[0] ==
              "liveness exec sh -c echo 'no response' >&2; exit 1: exited with status 1: no "
              "response, 2 times");
        CHECK(missing.failed[0] ==
              "liveness exec /nonexistent/vigil-probe: exec /nonexistent/vigil-probe: No such file "
              "or directory, 2 times");
        p1.stop();
        p2.stop();
        REQUIRE(t.run_until([&] { return reg.pending() == 0; }, 3000));
        for (const auto &r : reaper.reaped)
            CHECK(r.claimed);
        // Every check asked for one pipe (stdout and stderr merged).
        for (const auto &x : sp.extras_seen)
            CHECK(x.merge_stderr);
    }

    TEST_CASE("exec probe: a command printing more than a pipe holds is drained, not blocked") {
        TestLoop t;
        ExecRegistry reg;
        TestReaper reaper{&t.loop, [&](int pid, int ws) { return reg.on_reaped(pid, ws); }};
        TestSpawner sp{&t.loop};
        Record rec;
        auto s = fast(ProbeKind::Exec);
        s.timeout = 5s;
        s.failure_threshold = 1;
        // 1 MiB of output (16 pipe buffers), then a failure.
        s.command = {"sh", "-c", "head -c 1048576 /dev/zero | tr '\\0' x; exit 3"};
        Prober p{&t.loop, reg, "liveness", s, rec.callbacks(), sp.exec()};
        p.start();
        REQUIRE(t.run_until([&] { return !rec.failed.empty(); }, 5000));
        CHECK(rec.checks.at(0).detail == "exited with status 3: " + std::string(200, 'x') + "...");
        p.stop(); // may kill a next check already running: wait until it is reaped too
        REQUIRE(t.run_until([&] { return reg.pending() == 0; }, 3000));
    }

    TEST_CASE("exec probe that hangs is killed with its process group at its timeout") {
        TestLoop t;
        ExecRegistry reg;
        TestReaper reaper{&t.loop, [&](int pid, int ws) { return reg.on_reaped(pid, ws); }};
        TestSpawner sp{&t.loop};
        Record rec;
        auto s = fast(ProbeKind::Exec);
        s.timeout = 150ms;
        s.period = 10s;
        s.failure_threshold = 1;
        // The shell starts a grandchild in the same group; both must die. As vigild does, the
        // test is a child subreaper, so the orphaned grandchild comes back to its reaper
        // (rather than waiting for whatever PID 1 is to reap it).
        REQUIRE(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
        s.command = {"sh", "-c", "sleep 30 & exec sleep 31"};
        Prober p{&t.loop, reg, "liveness", s, rec.callbacks(), sp.exec()};
        auto t0 = uv_hrtime();
        p.start();
        REQUIRE(t.run_until([&] { return !rec.failed.empty(); }, 3000));
        auto elapsed_ms = (uv_hrtime() - t0) / 1'000'000;
        CHECK(elapsed_ms >= 140);
        CHECK(elapsed_ms < 1500);
        CHECK(rec.failed[0] == "liveness exec sh -c sleep 30 & exec sleep 31: timed out after "
                               "150ms, once");
        // Both the check (SIGKILL) and its grandchild (re-parented to us or to init) are gone.
        REQUIRE(t.run_until([&] { return reg.pending() == 0; }, 3000));
        bool saw_kill = false;
        for (const auto &r : reaper.reaped)
            if (r.claimed && WIFSIGNALED(r.wstatus) && WTERMSIG(r.wstatus) == SIGKILL)
                saw_kill = true;
        CHECK(saw_kill);
        // The grandchild (same process group) was killed too: the group is empty.
        int pgid = reaper.reaped.at(0).pid;
        CHECK(t.run_until([&] { return kill(-pgid, 0) < 0 && errno == ESRCH; }, 3000));
        // The check was claimed by the registry; the grandchild came back to us as an orphan.
        CHECK(std::count_if(reaper.reaped.begin(), reaper.reaped.end(),
                            [](const auto &r) { return r.claimed; }) == 1);
        CHECK(std::count_if(reaper.reaped.begin(), reaper.reaped.end(),
                            [](const auto &r) { return !r.claimed; }) >= 1);
        p.stop();
        prctl(PR_SET_CHILD_SUBREAPER, 0);
    }

    TEST_CASE("stop() cancels an exec check in flight without calling back") {
        TestLoop t;
        ExecRegistry reg;
        TestReaper reaper{&t.loop, [&](int pid, int ws) { return reg.on_reaped(pid, ws); }};
        TestSpawner sp{&t.loop};
        Record rec;
        auto s = fast(ProbeKind::Exec);
        s.timeout = 10s;
        s.command = {"sleep", "30"};
        Prober p{&t.loop, reg, "liveness", s, rec.callbacks(), sp.exec()};
        p.start();
        REQUIRE(t.run_until([&] { return reg.pending() == 1; }, 3000));
        p.stop();
        REQUIRE(t.run_until([&] { return reg.pending() == 0; }, 3000));
        CHECK(rec.checks.empty());
        CHECK(rec.failed.empty());
        REQUIRE(reaper.reaped.size() == 1);
        CHECK(WTERMSIG(reaper.reaped[0].wstatus) == SIGKILL);
    }

    TEST_CASE("exec probe runs with the unit's spec: its env and cwd, the probe's command") {
        TestLoop t;
        ExecRegistry reg;
        TestReaper reaper{&t.loop, [&](int pid, int ws) { return reg.on_reaped(pid, ws); }};
        TestSpawner sp{&t.loop};
        Record rec;
        char tmpl[] = "/tmp/vigil-probe-test-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        std::string dir = tmpl;
        vigil::proc::SpawnSpec unit;
        unit.argv = {"/nonexistent/the-service-itself"}; // replaced by the probe's command
        unit.env = {{"PROBE_VAR", "from-unit"}};
        unit.cwd = dir;
        auto s = fast(ProbeKind::Exec);
        s.failure_threshold = 1;
        s.command = {"sh", "-c", "echo \"$PROBE_VAR\" \"$(pwd)\" >&2; exit 3"};
        Prober p{&t.loop, reg, "liveness", s, rec.callbacks(), sp.exec(unit)};
        p.start();
        REQUIRE(t.run_until([&] { return !rec.failed.empty(); }, 5000));
        CHECK(rec.checks.at(0).detail == "exited with status 3: from-unit " + dir);
        p.stop();
        REQUIRE(t.run_until([&] { return reg.pending() == 0; }, 3000));
        rmdir(dir.c_str());
    }

    TEST_CASE("exec probe: a spawn completing after stop() or after the Prober is harmless") {
        TestLoop t;
        ExecRegistry reg;
        TestReaper reaper{&t.loop, [&](int pid, int ws) { return reg.on_reaped(pid, ws); }};
        TestSpawner sp{&t.loop};
        sp.hold = true;
        Record rec;
        auto s = fast(ProbeKind::Exec);
        s.timeout = 10s;
        s.command = {"sleep", "30"};
        std::size_t fds = open_fd_count();
        for (bool destroy : {false, true}) {
            auto p =
                std::make_unique<Prober>(&t.loop, reg, "liveness", s, rec.callbacks(), sp.exec());
            p->start();
            REQUIRE(t.run_until([&] { return sp.held.size() == 1; }, 3000));
            REQUIRE(sp.held[0].first.result.ok);
            int pid = sp.held[0].first.result.ok->pid;
            if (destroy)
                p.reset();
            else
                p->stop();
            sp.deliver(); // too late: the process is killed, its descriptors closed
            CHECK(open_fd_count() == fds);
            REQUIRE(t.run_until([&] { return reg.pending() == 0; }, 3000));
            auto it = std::find_if(reaper.reaped.begin(), reaper.reaped.end(),
                                   [&](const auto &r) { return r.pid == pid; });
            REQUIRE(it != reaper.reaped.end());
            CHECK(it->claimed);
            CHECK(WIFSIGNALED(it->wstatus));
            CHECK(WTERMSIG(it->wstatus) == SIGKILL);
        }
        CHECK(rec.checks.empty());
    }

    TEST_CASE("exec probe without a spawn function fails its checks, and says why") {
        TestLoop t;
        ExecRegistry reg;
        Record rec;
        auto s = fast(ProbeKind::Exec);
        s.failure_threshold = 1;
        s.command = {"true"};
        Prober p{&t.loop, reg, "liveness", s, rec.callbacks()};
        p.start();
        REQUIRE(t.run_until([&] { return !rec.failed.empty(); }, 3000));
        CHECK(rec.failed[0] == "liveness exec true: exec: no spawn function, once");
        p.stop();
    }

    TEST_CASE("a callback may destroy its prober") {
        TestLoop t;
        ExecRegistry reg;
        auto s = fast(ProbeKind::Tcp);
        s.port = vigil::test::closed_port();
        s.failure_threshold = 1;
        std::unique_ptr<Prober> p;
        bool failed = false;
        p = std::make_unique<Prober>(&t.loop, reg, "liveness", s,
                                     Prober::Callbacks{[&](const std::string &) {
                                                           failed = true;
                                                           p.reset();
                                                       },
                                                       {},
                                                       {}});
        p->start();
        REQUIRE(t.run_until([&] { return failed; }, 3000));
        CHECK(!p);
    }

    TEST_CASE("run_now checks at once, out of schedule, and counts like any check") {
        TestLoop t;
        ExecRegistry reg;
        Record rec;
        TestHttpServer srv{&t.loop};
        srv.respond_status(500);
        auto s = fast(ProbeKind::Http);
        s.port = srv.port;
        s.period = std::chrono::milliseconds(3'600'000); // only the first scheduled check runs
        s.failure_threshold = 2;
        Prober p{&t.loop, reg, "liveness", s, rec.callbacks()};
        CHECK_FALSE(p.run_now([](const CheckResult &, std::uint64_t) {})); // not running
        CHECK_FALSE(p.next_ms());
        p.start();
        REQUIRE(t.run_until([&] { return rec.checks.size() == 1; }, 3000));
        CHECK(p.tally().in_a_row() == -1);
        CHECK(*p.next_ms() > 3'000'000); // the next scheduled check is an hour away
        std::vector<CheckResult> got;
        bool called_inside = true;
        REQUIRE(p.run_now([&](const CheckResult &r, std::uint64_t) { got.push_back(r); }));
        // A second request while the first waits joins it: one check, two answers.
        REQUIRE(p.run_now([&](const CheckResult &r, std::uint64_t) { got.push_back(r); }));
        called_inside = !got.empty();
        CHECK_FALSE(called_inside);
        REQUIRE(t.run_until([&] { return got.size() == 2; }, 3000));
        CHECK(rec.checks.size() == 2);
        CHECK_FALSE(got[0].ok);
        CHECK(got[0].detail == "status 500");
        CHECK(p.tally().in_a_row() == -2);
        CHECK(p.tally().failures() == 2);
        CHECK(rec.failed.size() == 1); // the on-demand run reached the failure threshold
        CHECK(*p.next_ms() > 3'000'000);
    }

    TEST_CASE("stop() answers a waiting run_now with a cancelled result") {
        TestLoop t;
        ExecRegistry reg;
        Record rec;
        auto s = fast(ProbeKind::Tcp);
        s.port = vigil::test::closed_port();
        s.initial_delay = std::chrono::milliseconds(3'600'000);
        Prober p{&t.loop, reg, "readiness", s, rec.callbacks()};
        p.start();
        std::vector<CheckResult> got;
        for (std::size_t i = 0; i < Prober::max_run_waiters; ++i)
            REQUIRE(p.run_now([&](const CheckResult &r, std::uint64_t) { got.push_back(r); }));
        CHECK_FALSE(p.run_now([](const CheckResult &, std::uint64_t) {})); // bounded
        p.stop();
        REQUIRE(got.size() == Prober::max_run_waiters);
        CHECK_FALSE(got[0].ok);
        CHECK(got[0].detail == "cancelled: the readiness probe stopped");
        CHECK(rec.checks.empty());
    }

    TEST_CASE("monitor: startup gates liveness and readiness; liveness failure is reported") {
        TestLoop t;
        ExecRegistry reg;
        TestHttpServer srv{&t.loop};
        vigil::probe::MonitorSpecs specs;
        specs.startup = fast(ProbeKind::Tcp);
        specs.startup->port = srv.port;
        specs.readiness = fast(ProbeKind::Http);
        specs.readiness->port = srv.port;
        specs.liveness = fast(ProbeKind::Http);
        specs.liveness->port = srv.port;
        specs.liveness->path = "/live";
        std::vector<bool> readiness;
        std::vector<std::pair<vigil::core::FailureCause, std::string>> failures;
        std::vector<std::string> roles;
        Monitor m{&t.loop, reg, specs,
                  Monitor::Callbacks{[&](bool r) { readiness.push_back(r); },
                                     [&](vigil::core::FailureCause c, const std::string &d) {
                                         failures.emplace_back(c, d);
                                     },
                                     [&](const std::string &role, const CheckResult &) {
                                         roles.push_back(role);
                                     }}};
        CHECK(m.decides_readiness());
        m.start();
        REQUIRE(t.run_until([&] { return !readiness.empty(); }, 3000));
        CHECK(readiness == std::vector<bool>{true});
        CHECK(m.started());
        REQUIRE(!roles.empty());
        CHECK(roles.front() == "startup"); // startup ran first, alone
        CHECK(std::count(roles.begin(), roles.end(), "startup") == 1);

        srv.respond_status(503);
        REQUIRE(t.run_until([&] { return !failures.empty(); }, 3000));
        CHECK(failures[0].first == vigil::core::FailureCause::Liveness);
        CHECK(failures[0].second ==
              "liveness http 127.0.0.1:" + std::to_string(srv.port) + "/live: status 503, 3 times");
        // After a failure every probe is stopped: nothing armed on the loop but the server.
        std::size_t checks = roles.size();
        t.run_for(100);
        CHECK(roles.size() == checks);
        CHECK(m.failures_total() >= 3);
    }

    TEST_CASE("monitor: a failing startup probe is a StartupProbe failure; liveness never runs") {
        TestLoop t;
        ExecRegistry reg;
        vigil::probe::MonitorSpecs specs;
        specs.startup = fast(ProbeKind::Tcp);
        specs.startup->port = vigil::test::closed_port();
        specs.startup->failure_threshold = 2;
        specs.liveness = fast(ProbeKind::Tcp);
        specs.liveness->port = specs.startup->port;
        std::vector<std::string> roles;
        std::optional<vigil::core::FailureCause> cause;
        Monitor m{
            &t.loop, reg, specs,
            Monitor::Callbacks{
                [&](bool) { FAIL("not ready ever"); },
                [&](vigil::core::FailureCause c, const std::string &) { cause = c; },
                [&](const std::string &role, const CheckResult &) { roles.push_back(role); }}};
        m.start();
        REQUIRE(t.run_until([&] { return cause.has_value(); }, 3000));
        CHECK(*cause == vigil::core::FailureCause::StartupProbe);
        CHECK(roles == std::vector<std::string>{"startup", "startup"});
        CHECK_FALSE(uv_loop_alive(&t.loop));
    }

    TEST_CASE("monitor: on_failed may destroy the monitor (as the daemon's StopProbes does)") {
        TestLoop t;
        ExecRegistry reg;
        vigil::probe::MonitorSpecs specs;
        specs.liveness = fast(ProbeKind::Tcp);
        specs.liveness->port = vigil::test::closed_port();
        specs.liveness->failure_threshold = 1;
        std::unique_ptr<Monitor> m;
        std::string detail;
        m = std::make_unique<Monitor>(
            &t.loop, reg, specs,
            Monitor::Callbacks{
                {},
                [&, keep = std::string(100, 'k')](vigil::core::FailureCause, const std::string &d) {
                    m.reset();
                    detail = d + keep.substr(0, 0); // captures still usable
                },
                {}});
        m->start();
        REQUIRE(t.run_until([&] { return !m; }, 3000));
        CHECK(detail.find("connection refused") != std::string::npos);
    }

    TEST_CASE("monitor with no probes arms nothing") {
        TestLoop t;
        ExecRegistry reg;
        Monitor m{&t.loop, reg, {}, {}};
        m.start();
        CHECK_FALSE(m.decides_readiness());
        CHECK_FALSE(uv_loop_alive(&t.loop));
    }
}

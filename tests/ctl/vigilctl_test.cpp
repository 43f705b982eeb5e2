// The vigilctl binary against a fake vigild (a ctl::Server with canned answers on a loop
// thread): exit codes, messages, tables and --json. The binary's path comes from $VIGILCTL
// (set by meson). Every child is waited for with a bound.
#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exit_codes.hpp"
#include "loop_thread.hpp"
#include "vigil/ctl/server.hpp"
#include "vigil/ctl/shapes.hpp"

using namespace vigil;
using namespace vigil::ctl;
using vigil::test::LoopThread;
using vigil::test::scaled;

namespace {

struct Ran {
    int code = -1; // exit status, or 128+N when killed by signal N
    std::string out, err;
};

// Runs vigilctl with `args` and the extra environment `env` ("K=V"), bounded by timeout_ms.
Ran run_ctl(const std::vector<std::string> &args, const std::vector<std::string> &env = {},
            int timeout_ms = 5000) {
    const char *bin = std::getenv("VIGILCTL");
    REQUIRE_MESSAGE(bin != nullptr, "VIGILCTL is not set (run through meson test)");
    std::vector<std::string> argv_s{bin};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char *> argv;
    for (auto &a : argv_s)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_s;
    for (char **e = environ; *e; ++e) {
        std::string kv = *e;
        if (kv.rfind("VIGIL_SOCKET=", 0) == 0 || kv.rfind("NO_COLOR=", 0) == 0) continue;
        env_s.push_back(kv);
    }
    env_s.insert(env_s.end(), env.begin(), env.end());
    std::vector<char *> envp;
    for (auto &e : env_s)
        envp.push_back(e.data());
    envp.push_back(nullptr);

    int o[2], e[2];
    REQUIRE(pipe2(o, O_CLOEXEC) == 0);
    REQUIRE(pipe2(e, O_CLOEXEC) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(o[1], 1);
        dup2(e[1], 2);
        std::signal(SIGPIPE, SIG_DFL); // LoopThread ignores it (as vigild does); vigilctl must not
        execve(argv[0], argv.data(), envp.data());
        _exit(127);
    }
    close(o[1]);
    close(e[1]);
    Ran r;
    auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(scaled(timeout_ms));
    pollfd fds[2] = {{o[0], POLLIN, 0}, {e[0], POLLIN, 0}};
    int open_fds = 2;
    while (open_fds > 0 && std::chrono::steady_clock::now() < deadline) {
        if (poll(fds, 2, 50) <= 0) continue;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
            char buf[4096];
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                --open_fds;
            } else {
                (i == 0 ? r.out : r.err).append(buf, static_cast<std::size_t>(n));
            }
        }
    }
    for (auto &f : fds)
        if (f.fd >= 0) close(f.fd);
    int status = 0;
    if (open_fds > 0) kill(pid, SIGKILL); // it overran the bound: the test fails below
    waitpid(pid, &status, 0);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r;
}

core::ChildStatus make_status(const char *name, core::ChildState state, std::optional<int> pid) {
    core::ChildStatus s{};
    s.name = name;
    s.kind = core::Kind::Service;
    s.state = state;
    s.goal = state != core::ChildState::Stopped ? core::Goal::Up : core::Goal::Down;
    s.ready = state == core::ChildState::Running;
    if (pid) s.pid = s.main_pid = Pid{*pid};
    s.incarnation = Incarnation{2};
    s.since = at_ms(1000);
    s.restarts = 1;
    s.last_exit = core::ExitStatus::killed(SIGKILL);
    return s;
}

// Canned answers in the shapes vigild sends.
void fake_vigild(const ResponderPtr &s, const Request &r) {
    const TimePoint now = at_ms(66'000);
    Json web = status_json(make_status("web", core::ChildState::Running, 4242), now, "root");
    Json db = status_json(make_status("db", core::ChildState::Stopped, std::nullopt), now, "root");
    switch (r.cmd) {
    case Cmd::Version:
        s->reply(r.id, Json{{"server", "fake-1.0"}, {"protocol", protocol_version}});
        return;
    case Cmd::Status: {
        Json units = Json::array();
        if (r.units.empty()) units = {web, db};
        for (const auto &u : r.units) {
            if (u == "web")
                units.push_back(web);
            else if (u == "db")
                units.push_back(db);
            else {
                s->error(r.id, ErrorCode::NotFound, "no unit named '" + u + "'");
                return;
            }
        }
        s->reply(r.id, Json{{"units", units}});
        return;
    }
    case Cmd::Start:
    case Cmd::Stop:
    case Cmd::Restart:
    case Cmd::Signal: {
        Json results = Json::array();
        for (const auto &u : r.units) {
            core::CommandResult cr;
            if (u == "ghost")
                cr = {core::CommandOutcome::NotFound, "no unit named 'ghost'"};
            else if (u == "db" && r.cmd == Cmd::Signal)
                cr = {core::CommandOutcome::NotRunning, "db is not running"};
            else
                cr = {core::CommandOutcome::Ok,
                      u + " " + to_string(r.cmd) + " (signal " + std::to_string(r.signal) + ")"};
            results.push_back(command_result_json(u, cr));
        }
        s->reply(r.id, Json{{"results", results}});
        return;
    }
    case Cmd::Reload:
        s->error(r.id, ErrorCode::Invalid, "unit files have errors; nothing changed",
                 Json{{"diagnostics", {"units/web.json:3:12: /restart: expected one of ..."}}});
        return;
    case Cmd::Tree: {
        Json root = status_json(make_status("root", core::ChildState::Running, std::nullopt), now);
        root["kind"] = "supervisor";
        Json app =
            status_json(make_status("app", core::ChildState::Running, std::nullopt), now, "root");
        app["kind"] = "supervisor";
        web["children"] = Json::array();
        db["children"] = Json::array();
        // Json::array: `= {web}` is an array of one for gcc but a copy of web for clang.
        app["children"] = Json::array({web});
        root["children"] = {app, db};
        s->reply(r.id, Json{{"root", root}});
        return;
    }
    case Cmd::Events:
        s->stream(r.id, record_json(core::Record{at_ms(1000), ChildId{1}, "web",
                                                 core::RecordKind::Exited, "killed by SIGKILL"}));
        s->end(r.id);
        return;
    case Cmd::Logs:
        if (r.unit == "flood") {
            // Far more at once than the server lets wait for one client (8 MiB): it drops the
            // rest and tells vigilctl why.
            Json item{
                {"seq", 1}, {"stream", "stdout"}, {"time", 0}, {"line", std::string(1000, 'x')}};
            while (s->stream(r.id, item)) {
            }
            return;
        }
        s->stream(r.id, Json{{"seq", 1}, {"stream", "stdout"}, {"time", 0}, {"line", "hello"}});
        s->stream(r.id, Json{{"seq", 2}, {"stream", "stderr"}, {"time", 0}, {"line", "oops"}});
        s->end(r.id);
        return;
    case Cmd::Shutdown:
        s->error(r.id, ErrorCode::ShuttingDown, "vigild is already shutting down");
        return;
    case Cmd::Checks:
        s->reply(r.id, Json{{"checks",
                             {{{"unit", "web"},
                               {"probe", "liveness"},
                               {"kind", "http"},
                               {"target", "http://127.0.0.1:8080/healthz"},
                               {"state", "failing"},
                               {"in_a_row", 2},
                               {"in_a_row_ok", false},
                               {"successes", 5},
                               {"failures", 2},
                               {"last_failure", nullptr},
                               {"next_ms", 3500},
                               {"period_ms", 10000},
                               {"threshold", 3}}}}});
        return;
    case Cmd::Check:
        if (r.probe != "liveness") {
            s->error(r.id, ErrorCode::NotFound,
                     r.unit + " has no probe '" + r.probe + "'; its probes: liveness");
            return;
        }
        s->reply(r.id, Json{{"unit", r.unit},
                            {"probe", r.probe},
                            {"ok", r.unit == "web"},
                            {"message", r.unit == "web" ? "status 200" : "status 500"},
                            {"duration_ms", 12}});
        return;
    case Cmd::Reexec:
        s->reply(r.id, Json{{"pid", 1},
                            {"generation", 1},
                            {"services", 3},
                            {"pause_ms", 14.5},
                            {"binary", "/usr/sbin/vigild"}});
        return;
    }
}

struct FakeVigild {
    std::string dir;
    std::string path;
    LoopThread lt;
    std::unique_ptr<Server> server;
    FakeVigild() {
        char tmpl[] = "/tmp/vigilctl-test.XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        dir = tmpl;
        path = dir + "/control.sock";
        ServerOptions o;
        o.path = path;
        server = std::make_unique<Server>(lt.loop(), o, fake_vigild);
        std::string msg;
        REQUIRE_MESSAGE(server->listen(&msg) == 0, msg);
        lt.start();
    }
    ~FakeVigild() {
        lt.stop([this](std::function<void()> done) { server->close(done); });
        server.reset();
        rmdir(dir.c_str());
    }
    Ran ctl(std::vector<std::string> args, std::vector<std::string> env = {}) {
        args.insert(args.begin(), {"--socket", path});
        return run_ctl(args, env);
    }
};

bool has(const std::string &hay, const std::string &needle) {
    return hay.find(needle) != std::string::npos;
}

} // namespace

TEST_SUITE("ctl") {

    TEST_CASE("vigilctl: usage errors exit 2 with a hint, help exits 0") {
        Ran r = run_ctl({});
        CHECK(r.code == 2);
        CHECK(has(r.err, "vigilctl: "));
        CHECK(has(r.err, "--help"));
        CHECK(run_ctl({"status", "--bogus"}).code == 2);
        CHECK(run_ctl({"frobnicate"}).code == 2);
        CHECK(run_ctl({"start"}).code == 2); // units required
        CHECK(run_ctl({"logs", "--since", "yesterday-ish"}).code == 2);
        CHECK(run_ctl({"logs", "-n", "x", "web"}).code == 2);
        CHECK(run_ctl({"--timeout", "-1", "status"}).code == 2);
        Ran s = run_ctl({"signal", "NOPE", "web"});
        CHECK(s.code == 2);
        CHECK(has(s.err, "unknown signal 'NOPE'"));
        Ran h = run_ctl({"--help"});
        CHECK(h.code == 0);
        CHECK(has(h.out, "status"));
        Ran v = run_ctl({"--version"});
        CHECK(v.code == 0);
        CHECK(has(v.out, "vigilctl " VIGIL_VERSION));
    }

    TEST_CASE("vigilctl: cannot connect exits 7 and says what to do next") {
        Ran r = run_ctl({"--socket", "/tmp/vigil-no-such-dir/control.sock", "status"});
        CHECK(r.code == 7);
        CHECK(r.err ==
              "vigilctl: cannot connect to /tmp/vigil-no-such-dir/control.sock: No such file "
              "or directory: is vigild running? see --socket\n");
        // VIGIL_SOCKET is the default when --socket is absent.
        Ran e = run_ctl({"version"}, {"VIGIL_SOCKET=/tmp/vigil-no-such-dir/env.sock"});
        CHECK(e.code == 7);
        CHECK(has(e.err, "/tmp/vigil-no-such-dir/env.sock"));
    }

    TEST_CASE("vigilctl: a server that never answers is a timeout (exit 7)") {
        char tmpl[] = "/tmp/vigilctl-test.XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        std::string path = std::string(tmpl) + "/mute.sock";
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        std::strcpy(sa.sun_path, path.c_str());
        REQUIRE(bind(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0);
        REQUIRE(listen(fd, 4) == 0); // accepts (in the backlog) but never says a word
        Ran r = run_ctl({"--socket", path, "--timeout", "0.2", "status"});
        CHECK(r.code == 7);
        CHECK(has(r.err, "no answer from vigild within 0.2 s; see --timeout"));
        close(fd);
        unlink(path.c_str());
        rmdir(tmpl);
    }

    TEST_CASE("vigilctl: a server run by another user is refused (exit 6), not believed") {
        if (geteuid() != 0) {
            MESSAGE("skipped: needs root to run a fake server as uid 65534");
            return;
        }
        // A fake vigild run by uid 65534 in a folder it owns (as in a hijacked /tmp/vigil-UID):
        // it answers every request with an empty, successful status.
        char tmpl[] = "/tmp/vigilctl-test.XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        REQUIRE(chmod(tmpl, 0755) == 0);
        std::string sub = std::string(tmpl) + "/fake";
        REQUIRE(mkdir(sub.c_str(), 0700) == 0);
        REQUIRE(chown(sub.c_str(), 65534, 65534) == 0);
        std::string path = sub + "/control.sock";
        int ready[2];
        REQUIRE(pipe(ready) == 0);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            close(ready[0]);
            gid_t g = 65534;
            if (setgroups(1, &g) != 0 || setresgid(g, g, g) != 0 || setresuid(65534, 65534, 65534))
                _exit(10);
            int fd = socket(AF_UNIX, SOCK_STREAM, 0);
            sockaddr_un sa{};
            sa.sun_family = AF_UNIX;
            std::strcpy(sa.sun_path, path.c_str());
            if (bind(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) != 0 || listen(fd, 8) != 0)
                _exit(11);
            if (write(ready[1], "r", 1) != 1) _exit(12);
            for (;;) {
                int c = accept(fd, nullptr, nullptr);
                if (c < 0) continue;
                std::string out =
                    make_hello("fake") + make_reply(1, Json{{"units", Json::array()}});
                (void)!send(c, out.data(), out.size(), MSG_NOSIGNAL);
                char buf[4096];
                (void)!read(c, buf, sizeof buf);
                close(c);
            }
        }
        close(ready[1]);
        struct Reap { // the fake server ends with the test, whatever fails
            pid_t pid;
            ~Reap() {
                kill(pid, SIGKILL);
                int status = 0;
                waitpid(pid, &status, 0);
            }
        } reap{pid};
        char c = 0;
        pollfd p{ready[0], POLLIN, 0};
        REQUIRE(poll(&p, 1, scaled(5000)) == 1);
        REQUIRE(read(ready[0], &c, 1) == 1);
        close(ready[0]);

        Ran r = run_ctl({"--socket", path, "status"});
        CHECK(r.code == 6);
        CHECK(r.out.empty());
        CHECK(has(r.err, "runs as uid 65534"));
        CHECK(has(r.err, path));
        Ran j = run_ctl({"--socket", path, "--json", "version"});
        CHECK_MESSAGE(j.code == 6, j.err);
        CHECK(j.out.empty());
        std::string rm = std::string("rm -rf '") + tmpl + "'";
        CHECK(std::system(rm.c_str()) == 0);
    }

    TEST_CASE("vigilctl against a fake vigild") {
        FakeVigild v;

        SUBCASE("version") {
            Ran r = v.ctl({"version"});
            CHECK(r.code == 0);
            CHECK(r.out == std::string("vigilctl " VIGIL_VERSION "\nvigild fake-1.0 (protocol ") +
                               std::to_string(protocol_version) + ")\n");
            Ran j = v.ctl({"--json", "version"});
            CHECK(j.code == 0);
            Json parsed = Json::parse(j.out);
            CHECK(parsed["server"] == "fake-1.0");
            CHECK(parsed["client"] == VIGIL_VERSION);
        }
        SUBCASE("status: a plain table when piped; 3 when a named unit is not running") {
            Ran all = v.ctl({"status"});
            CHECK(all.code == 0);
            CHECK(all.err.empty());
            CHECK(!has(all.out, "\033[")); // no colour into a pipe
            CHECK(all.out ==
                  "NAME  STATE    PID   UPTIME  RESTARTS  LAST-EXIT  INFO\n"
                  "web   running  4242  1m5s    1         SIGKILL\n"
                  "db    stopped  -     -       1         SIGKILL    stopped by command\n");
            CHECK(v.ctl({"status", "web"}).code == 0);
            CHECK(v.ctl({"status", "web", "db"}).code == 3);
            Ran nf = v.ctl({"status", "nope"});
            CHECK(nf.code == 4);
            CHECK(nf.err == "vigilctl: no unit named 'nope'\n");
            Ran j = v.ctl({"status", "db", "--json"}); // global options may follow the command
            CHECK(j.code == 3);
            CHECK(Json::parse(j.out)["units"][0]["state"] == "stopped");
        }
        SUBCASE("checks: a plain table when piped; check --run exits 0 passed, 1 failed") {
            Ran c = v.ctl({"checks"});
            CHECK(c.code == 0);
            CHECK(c.out ==
                  "UNIT  PROBE     KIND  TARGET                         STATE    ROW       "
                  "LAST-FAILURE  NEXT\n"
                  "web   liveness  http  http://127.0.0.1:8080/healthz  failing  2 failed  "
                  "-             in 4s\n");
            Ran pass = v.ctl({"check", "--run", "web/liveness"});
            CHECK(pass.code == 0);
            CHECK(pass.out == "web/liveness: passed in 12ms: status 200\n");
            Ran fail = v.ctl({"check", "--run", "db/liveness"});
            CHECK(fail.code == 1);
            CHECK(fail.out == "db/liveness: failed in 12ms: status 500\n");
            Ran unknown = v.ctl({"check", "--run", "web/lively"});
            CHECK(unknown.code == 4);
            CHECK(has(unknown.err, "its probes: liveness"));
            Ran bad = v.ctl({"check", "--run", "web"});
            CHECK(bad.code == 2);
            CHECK(has(bad.err, "--run takes UNIT/PROBE"));
            Ran j = v.ctl({"--json", "check", "--run", "web/liveness"});
            CHECK(Json::parse(j.out)["duration_ms"] == 12);
        }
        SUBCASE("status NAME: one service in detail, its probes and its log lines after it") {
            Ran r = v.ctl({"status", "web"});
            CHECK(r.code == 0);
            CHECK(r.err.empty());
            CHECK(r.out.rfind("● web\n", 0) == 0);
            CHECK(has(r.out, "\n    State: running (ready) since "));
            CHECK(has(r.out, "\n Main PID: 4242\n"));
            CHECK(has(r.out, "\nLast exit: killed by SIGKILL\n"));
            CHECK(has(r.out, "\n   Probes: liveness http http://127.0.0.1:8080/healthz failing"));
            CHECK(!has(r.out, "Memory:")); // no pid_namespace in the answer: /proc is not read
            CHECK(has(r.out, "\n\n"));
            CHECK(has(r.out, " stdout hello\n"));
            CHECK(has(r.out, " stderr oops\n"));
            Ran db = v.ctl({"status", "db"});
            CHECK(db.code == 3);
            CHECK(db.out.rfind("● db\n", 0) == 0);
            // A glob, or two names: the table.
            CHECK(v.ctl({"status", "w*"}).code == 4); // the fake knows no globs
            CHECK(v.ctl({"status", "web", "web"}).out.rfind("NAME", 0) == 0);
        }
        SUBCASE("start/stop/restart/signal report per unit; not found is 4") {
            // The fake's units never change: --no-wait (the waiting has its own subcase).
            Ran r = v.ctl({"restart", "--no-wait", "web", "db"});
            CHECK(r.code == 0);
            CHECK(r.out == "web: web restart (signal 0)\ndb: db restart (signal 0)\n");
            Ran g = v.ctl({"stop", "--no-wait", "web", "ghost"});
            CHECK(g.code == 4);
            CHECK(has(g.out, "ghost: no unit named 'ghost'"));
            Ran s = v.ctl({"signal", "hup", "web"});
            CHECK(s.code == 0);
            CHECK(has(s.out, "signal 1)"));
            CHECK(v.ctl({"signal", "USR1", "db"}).code == 1); // not running: refused
        }
        SUBCASE("waiting: done at once for a ready unit; a timeout names where a unit is") {
            Ran r = v.ctl({"start", "web"}); // running and ready: done
            CHECK(r.code == 0);
            CHECK(r.out == "web: web start (signal 0)\n");
            CHECK(r.err.empty());
            Ran j = v.ctl({"--json", "start", "web"});
            CHECK(j.code == 0);
            CHECK(Json::parse(j.out)["results"][0]["unit"] == "web");
            // web stays in its old run: the limit (given after the command) ends the wait.
            auto t0 = std::chrono::steady_clock::now();
            Ran t = v.ctl({"restart", "web", "--timeout", "0.3"});
            auto took = std::chrono::steady_clock::now() - t0;
            CHECK(t.code == 1);
            CHECK(took >= std::chrono::milliseconds(300));
            CHECK(has(t.err, "vigilctl: web: still restarting after "));
            CHECK(has(t.err, " (state running, the old run has not been stopped yet)\n"));
            CHECK(has(t.err, "vigilctl: stopped waiting after 0.3 s (see --timeout); vigild "
                             "goes on with the change\n"));
            // db's goal stays down after the start: it fails at once, with what to do next.
            Ran f = v.ctl({"start", "db"});
            CHECK(f.code == 1);
            CHECK(f.err == "vigilctl: db: not started: its goal is down: another command stopped "
                           "it; see: vigilctl status db; vigilctl logs db\n");
            // A stop of a unit that stays running: the same, and --no-wait does not wait.
            CHECK(v.ctl({"stop", "web", "--timeout", "0.2"}).code == 1);
            CHECK(v.ctl({"stop", "web", "--no-wait"}).code == 0);
        }
        SUBCASE("reload errors print every diagnostic on stderr and exit 1") {
            Ran r = v.ctl({"reload"});
            CHECK(r.code == 1);
            CHECK(r.err == "units/web.json:3:12: /restart: expected one of ...\n"
                           "vigilctl: unit files have errors; nothing changed\n");
        }
        SUBCASE("tree draws the hierarchy") {
            Ran r = v.ctl({"tree"});
            CHECK(r.code == 0);
            CHECK(has(r.out, "root "));
            CHECK(has(r.out, "├─ app"));
            CHECK(has(r.out, "│  └─ web"));
            CHECK(has(r.out, "└─ db"));
            CHECK(has(r.out, "pid 4242"));
        }
        SUBCASE("events and logs stream until the end; --json gives one object a line") {
            Ran e = v.ctl({"events"});
            CHECK(e.code == 0);
            CHECK(has(e.out, "web           exited"));
            CHECK(has(e.out, "killed by SIGKILL"));
            Ran l = v.ctl({"logs", "-n", "2", "--raw", "web"});
            CHECK(l.code == 0);
            CHECK(l.out == "hello\noops\n");
            Ran p = v.ctl({"logs", "-n", "2", "web"}); // each line's time, unit and stream
            CHECK(p.code == 0);
            CHECK(has(p.out, "[stdout]: hello\n"));
            CHECK(has(p.out, "[stderr]: oops\n"));
            Ran lj = v.ctl({"--json", "logs", "web"});
            CHECK(lj.code == 0);
            auto nl = lj.out.find('\n');
            REQUIRE(nl != std::string::npos);
            CHECK(Json::parse(lj.out.substr(0, nl))["line"] == "hello");
        }
        SUBCASE("a stream vigild gives up on for not being read: the reason and what to do") {
            Ran r = v.ctl({"logs", "-f", "flood"});
            CHECK(r.code == 1);
            CHECK(has(r.out, std::string(1000, 'x') + "\n"));
            CHECK(has(r.err, "vigilctl: vigild closed this connection: "));
            CHECK(has(r.err, "waited unread, more than the 8388608 a client may leave; "
                             "vigilctl's output was not read fast enough"));
            CHECK(has(r.err, "--lines N, or without --follow"));
            CHECK(!has(r.err, "before answering"));
        }
        SUBCASE("an error reply exits 1 with the server's message") {
            Ran r = v.ctl({"shutdown"});
            CHECK(r.code == 1);
            CHECK(r.err == "vigilctl: vigild is already shutting down\n");
        }
        SUBCASE("latency of `vigilctl version` (informational)") {
            std::vector<double> ms;
            for (int i = 0; i < 50; ++i) {
                auto t0 = std::chrono::steady_clock::now();
                Ran r = v.ctl({"version"});
                auto t1 = std::chrono::steady_clock::now();
                REQUIRE(r.code == 0);
                ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
            }
            std::sort(ms.begin(), ms.end());
            MESSAGE("vigilctl version against the fake vigild: median "
                    << ms[25] << " ms, p90 " << ms[45] << " ms (50 runs)");
        }
    }

} // TEST_SUITE

TEST_SUITE("ctl") {

    TEST_CASE("vigilctl(1) documents every command, every option and every exit status") {
        const char *man_path = std::getenv("VIGILCTL_MAN");
        REQUIRE_MESSAGE(man_path != nullptr, "VIGILCTL_MAN is not set (run through meson test)");
        std::string man;
        {
            FILE *f = std::fopen(man_path, "r");
            REQUIRE(f != nullptr);
            char buf[4096];
            std::size_t n;
            while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
                man.append(buf, n);
            std::fclose(f);
        }
        // roff escapes minus signs; compare against the unescaped text.
        std::string text;
        for (std::size_t i = 0; i < man.size(); ++i) {
            if (man[i] == '\\' && i + 1 < man.size() && man[i + 1] == '-') continue;
            text.push_back(man[i]);
        }
        auto options_in = [](const std::string &help) {
            std::vector<std::string> opts;
            for (std::size_t p = 0; (p = help.find("-", p)) != std::string::npos;) {
                bool start = p == 0 || help[p - 1] == ' ' || help[p - 1] == ',';
                std::size_t e = help.find_first_of(" ,=\n", p);
                std::string tok = help.substr(p, e - p);
                p = e == std::string::npos ? help.size() : e;
                if (start && tok.size() > 1 && tok != "--" && (tok[1] == '-' || tok.size() == 2))
                    opts.push_back(tok);
            }
            return opts;
        };
        std::vector<std::string> commands{"status",  "start",  "stop",   "restart", "signal",
                                          "reload",  "logs",   "tree",   "events",  "shutdown",
                                          "version", "import", "checks", "check"};
        Ran top = run_ctl({"--help"});
        REQUIRE(top.code == 0);
        for (const auto &c : commands) {
            CAPTURE(c);
            CHECK(has(top.out, "  " + c + " ")); // the help lists it
            CHECK((has(text, ".B " + c) || has(text, ".BI " + c) || has(text, ".BR " + c)));
            Ran h = run_ctl({c, "--help"});
            REQUIRE(h.code == 0);
            for (const auto &o : options_in(h.out)) {
                CAPTURE(o);
                CHECK(has(text, o));
            }
        }
        for (const auto &o : options_in(top.out)) {
            CAPTURE(o);
            CHECK(has(text, o));
        }
        auto section = text.substr(text.find(".SH EXIT STATUS"));
        section = section.substr(0, section.find(".SH", 4));
        for (const auto &e : vigil::cli::exit_table) {
            std::string code = std::to_string(vigil::cli::code(e.code));
            CAPTURE(code);
            CHECK(has(section, ".B " + code + "\n"));
        }
    }

} // TEST_SUITE

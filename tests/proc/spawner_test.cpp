// spawner_test.cpp: the asynchronous Spawner against proc::spawn() on real processes.
//
// Suite `sys`. Most cases run the same request both ways (proc::spawn, and submit() + pump()
// through the helper) and check that the results agree (messages, what the kernel shows of
// the child), and that a Spawner child is a child of the test process (CLONE_PARENT), reaped
// by plain waitpid. Then the Spawner's own contract: many requests in order, pidfds, helper
// deaths at a known point (a child blocked in its cgroup write on a full pipe), env_file
// attacks. Every wait is bounded (sys_util.hpp).
#include "child_util.hpp"
#include "sys_util.hpp"

#include "vigil/proc/spawner.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

using namespace vigil::proc;
using namespace vigil::proc::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

using SpawnFn = std::function<SpawnResult(const SpawnSpec &, const SpawnExtras &)>;

// Pumps until `n` completions arrived or `timeout` passed, polling fd() in between.
std::vector<SpawnCompletion> pump_n(Spawner &sp, std::size_t n,
                                    std::chrono::milliseconds timeout = 10s) {
    std::vector<SpawnCompletion> out;
    auto deadline = std::chrono::steady_clock::now() + scaled(timeout);
    for (;;) {
        for (SpawnCompletion &c : sp.pump())
            out.push_back(std::move(c));
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (out.size() >= n || left.count() <= 0) break;
        pollfd p{sp.fd(), POLLIN, 0};
        poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 100)));
    }
    return out;
}

// Pumps (bounded) until `done`, adding the completions to `got`.
bool pump_until(Spawner &sp, std::vector<SpawnCompletion> &got, const std::function<bool()> &done) {
    return wait_until([&] {
        for (SpawnCompletion &c : sp.pump())
            got.push_back(std::move(c));
        return done();
    });
}

// submit() + pump(): one completion; its pidfd is closed.
SpawnResult via_submit(Spawner &sp, const SpawnSpec &s, const SpawnExtras &x) {
    std::uint64_t ticket = sp.submit(s, x);
    CHECK(ticket != 0);
    std::vector<SpawnCompletion> got = pump_n(sp, 1);
    REQUIRE(got.size() == 1);
    CHECK(got[0].ticket == ticket);
    if (got[0].pidfd >= 0) close(got[0].pidfd);
    return std::move(got[0].result);
}

// A started Spawner and the two ways to spawn. The Spawner reaps its helper at scope exit.
struct Both {
    Spawner sp;
    SpawnFn direct = [](const SpawnSpec &s, const SpawnExtras &x) { return spawn(s, x); };
    SpawnFn helper = [this](const SpawnSpec &s, const SpawnExtras &x) {
        return via_submit(sp, s, x);
    };
    Both() {
        REQUIRE(sp.start() == 0);
        REQUIRE(sp.helper_pid() > 0);
        REQUIRE(sp.fd() >= 0);
    }
};

// "(spawned)" or the error message; a spawned child is killed and reaped.
std::string outcome(const SpawnFn &fn, const SpawnSpec &spec, const SpawnExtras &extras = {}) {
    SpawnResult r = fn(spec, extras);
    if (r.ok) {
        Child c(r);
        return "(spawned)";
    }
    REQUIRE(r.error.has_value());
    return r.error->message();
}

// Runs to completion; "stdout|stderr|exit status".
std::string run(const SpawnFn &fn, const SpawnSpec &spec, const SpawnExtras &extras = {}) {
    Child c(fn(spec, extras));
    std::string out = read_all(c.s.stdout_fd);
    std::string err = read_all(c.s.stderr_fd);
    auto st = c.wait();
    REQUIRE(st.has_value());
    return out + "|" + err + "|" + std::to_string(*st);
}

// /proc/<pid>/comm without its newline.
std::string comm(int pid) {
    std::string s = slurp("/proc/" + std::to_string(pid) + "/comm");
    if (!s.empty() && s.back() == '\n') s.pop_back();
    return s;
}

// Field 38 of /proc/<pid>/stat: the signal the parent gets when the process dies.
int exit_signal(int pid) {
    std::string s = slurp("/proc/" + std::to_string(pid) + "/stat");
    std::istringstream in(s.substr(s.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 38 && in >> field; ++i) {
    }
    return std::atoi(field.c_str());
}

// Our children other than `except` (zombies included).
std::set<int> my_children(int except) {
    std::set<int> out;
    for (const auto &e : fs::directory_iterator("/proc")) {
        std::string name = e.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos) continue;
        int pid = std::stoi(name);
        auto st = proc_stat(pid);
        if (st && st->ppid == getpid() && pid != except) out.insert(pid);
    }
    return out;
}

// A pipe whose buffer is full: a blocking write to p[1] waits until p[0] is read.
void full_pipe(int p[2]) {
    REQUIRE(pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
    char block[4096] = {};
    while (write(p[1], block, sizeof block) > 0) {
    }
    REQUIRE(errno == EAGAIN);
    // Blocking again (the flag is the open file's, shared with the Spawner's duplicate).
    REQUIRE(fcntl(p[1], F_SETFL, 0) == 0);
}

// The child of ours (not the helper) that sleeps in a pipe write, or -1.
int child_in_pipe_write(int helper) {
    for (int pid : my_children(helper)) {
        if (slurp("/proc/" + std::to_string(pid) + "/wchan").find("pipe_write") !=
            std::string::npos)
            return pid;
    }
    return -1;
}

// The pid a pidfd refers to (its fdinfo), or -1.
int pidfd_pid(int pidfd) {
    std::istringstream in(slurp("/proc/self/fdinfo/" + std::to_string(pidfd)));
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("Pid:", 0) == 0) return std::atoi(line.c_str() + 4);
    return -1;
}

// Waits (bounded) until `pid` is gone: reaped here (then its status) or by someone else.
std::optional<int> wait_gone(int pid) {
    std::optional<int> status;
    bool gone = wait_until([&] {
        int st = 0;
        int r = waitpid(pid, &st, WNOHANG);
        if (r == pid) status = st;
        return r == pid || (r < 0 && errno == ECHILD);
    });
    REQUIRE(gone);
    return status;
}

long vm_hwm_kib(int pid) {
    return std::atol(status_field(pid, "VmHWM").c_str());
}

// A writable cgroup v2 directory for the test, or empty (then the test skips).
struct TestCgroup {
    fs::path dir;
    TestCgroup() {
        for (const char *root : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
            if (!fs::exists(fs::path(root) / "cgroup.controllers")) continue; // not cgroup2
            fs::path d = fs::path(root) / ("vigil-spawner-test-" + std::to_string(getpid()));
            if (mkdir(d.c_str(), 0755) == 0) {
                dir = d;
                return;
            }
        }
    }
    ~TestCgroup() {
        if (!dir.empty()) rmdir(dir.c_str());
    }
};

} // namespace

TEST_SUITE("proc") {

    TEST_CASE("spawner: the child is ours (CLONE_PARENT), a session leader, with our read ends") {
        Both b;
        SpawnSpec spec;
        spec.argv = {"/bin/sleep", "5"};
        Child c(b.helper(spec, {}));
        auto st = proc_stat(c.pid());
        REQUIRE(st);
        CHECK(st->ppid == getpid());
        CHECK(st->session == c.pid());
        CHECK(st->pgrp == c.pid());
        CHECK(exit_signal(c.pid()) == SIGCHLD);
        for (int fd : {c.s.stdout_fd, c.s.stderr_fd}) {
            REQUIRE(fd >= 0);
            CHECK((fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
            CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
        }
        // The helper keeps no copy of the child's pipes: killing the child gives EOF here.
        kill(c.pid(), SIGKILL);
        CHECK(read_all(c.s.stdout_fd) == "");
        auto ws = c.wait();
        REQUIRE(ws);
        CHECK(WIFSIGNALED(*ws));
    }

    TEST_CASE("spawner: output, stdin and exit status match proc::spawn") {
        Both b;
        SpawnSpec spec = sh("cat; echo out; echo err >&2; exit 3");
        std::string want = "out\n|err\n|" + std::to_string(3 << 8);
        CHECK(run(b.direct, spec) == want);
        CHECK(run(b.helper, spec) == want);
    }

    TEST_CASE("listen_pid: LISTEN_PID is the child's own pid; inherited LISTEN_* never pass") {
        // vigild's own socket-activation variables must not reach its services.
        REQUIRE(setenv("LISTEN_PID", "1", 1) == 0);
        REQUIRE(setenv("LISTEN_FDS", "9", 1) == 0);
        REQUIRE(setenv("LISTEN_FDNAMES", "vigild", 1) == 0);
        Both b; // the helper's environment is ours as of now
        const SpawnSpec spec = sh("echo \"$$ ${LISTEN_PID-none} ${LISTEN_FDS-none} "
                                  "${LISTEN_FDNAMES-none}\"");
        for (const SpawnFn *fn : {&b.direct, &b.helper}) {
            const std::string plain = run(*fn, spec);
            CHECK(plain.substr(plain.find(' ')) == " none none none\n||0");
            SpawnExtras x;
            x.listen_pid = true;
            x.env = {{"LISTEN_FDS", "2"}, {"LISTEN_FDNAMES", "a:b"}};
            for (int i = 0; i < 3; ++i) { // a fresh pid each time, in the room prepared for it
                const std::string out = run(*fn, spec, x);
                const auto sp = out.find(' ');
                REQUIRE(sp != std::string::npos);
                const std::string pid = out.substr(0, sp);
                CHECK(std::stoi(pid) > 1);
                CHECK(out == pid + " " + pid + " 2 a:b\n||0");
            }
        }
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
    }

    TEST_CASE("spawner: exec failures give the same messages, and the failed child is reaped") {
        Both b;
        SpawnSpec spec;
        for (auto argv :
             {std::vector<std::string>{"/usr/bin/pyhton3", "-V"},
              std::vector<std::string>{"/etc/passwd"},
              std::vector<std::string>{"vigil-no-such-tool"}, std::vector<std::string>{""}}) {
            spec.argv = argv;
            std::string direct = outcome(b.direct, spec);
            CHECK(direct != "(spawned)");
            CHECK(outcome(b.helper, spec) == direct);
            CHECK(my_children(b.sp.helper_pid()).empty());
        }
        spec.argv = {"/usr/bin/pyhton3"};
        SpawnResult r = b.helper(spec, {});
        REQUIRE(r.error);
        CHECK(r.error->stage == ExecStage::Exec);
        CHECK(r.error->error == ENOENT);
        CHECK(r.error->message() == "exec /usr/bin/pyhton3: No such file or directory");
        CHECK(reap_all().empty());
    }

    TEST_CASE("spawner: chdir, rlimit, user and env_file failures give the same messages") {
        Both b;
        TempDir dir;
        std::vector<SpawnSpec> specs;
        SpawnSpec s;
        s.argv = {"/bin/true"};
        s.cwd = "/nope";
        specs.push_back(s);
        s = SpawnSpec{};
        s.argv = {"/bin/true"};
        s.limits = {{RLIMIT_NOFILE, 500, 100}};
        specs.push_back(s);
        s = SpawnSpec{};
        s.argv = {"/bin/true"};
        s.user = "vigil-no-such-user";
        specs.push_back(s);
        s = SpawnSpec{};
        s.argv = {"/bin/true"};
        s.env_file = "/nonexistent/web.env";
        specs.push_back(s);
        s.env_file = dir.file("bad.env", "A=1\nthis line is wrong\n");
        specs.push_back(s);
        for (const SpawnSpec &spec : specs) {
            std::string direct = outcome(b.direct, spec);
            CHECK(direct != "(spawned)");
            CHECK(outcome(b.helper, spec) == direct);
        }
        CHECK(outcome(b.helper, specs[0]) == "chdir /nope: No such file or directory");
        CHECK(outcome(b.helper, specs[1]) == "setrlimit nofile: Invalid argument");
        CHECK(my_children(b.sp.helper_pid()).empty());
    }

    TEST_CASE("spawner: cwd, umask, env, env_file; the environment is the caller's at start()") {
        TempDir dir;
        std::string env_file = dir.file("web.env", "A=file\nB=file\nexport E='quoted value'\n");
        REQUIRE(setenv("VIGIL_TEST_EARLY", "early", 1) == 0);
        REQUIRE(setenv("B", "inherited", 1) == 0);
        Both b; // the helper's environment is ours as of now
        // Set after the helper was forked: only a spawn in the caller sees it.
        REQUIRE(setenv("VIGIL_TEST_LATE", "late", 1) == 0);
        SpawnSpec spec = sh("pwd; umask; echo \"$VIGIL_TEST_EARLY|$VIGIL_TEST_LATE|$A|$B|$C|$E\"");
        spec.cwd = dir.path.string();
        spec.umask = 027;
        spec.env_file = env_file;
        spec.env = {{"B", "spec"}, {"C", "spec"}};
        SpawnExtras x;
        x.env = {{"C", "extra"}};
        std::string head = dir.path.string() + "\n0027\nearly|";
        CHECK(run(b.direct, spec, x) == head + "late|file|spec|extra|quoted value\n||0");
        CHECK(run(b.helper, spec, x) == head + "|file|spec|extra|quoted value\n||0");
        unsetenv("VIGIL_TEST_LATE");
        // The whole environment, byte for byte.
        SpawnSpec env;
        env.argv = {"/usr/bin/env"};
        CHECK(run(b.helper, env, x) == run(b.direct, env, x));
        unsetenv("VIGIL_TEST_EARLY");
        unsetenv("B");
    }

    TEST_CASE("spawner: rlimits and process groups") {
        Both b;
        SpawnSpec spec;
        spec.argv = {"/bin/sleep", "5"};
        spec.limits = {{RLIMIT_NOFILE, 123, 456}, {RLIMIT_CORE, 0, 0}};
        std::string limits[2];
        int i = 0;
        for (const SpawnFn *fn : {&b.direct, &b.helper}) {
            Child c((*fn)(spec, {}));
            limits[i++] = slurp("/proc/" + std::to_string(c.pid()) + "/limits");
        }
        CHECK(limits[1].find("Max open files            123                  456") !=
              std::string::npos);
        CHECK(limits[0] == limits[1]);

        SpawnExtras x;
        x.new_session = false;
        Child c(b.helper(spec, x));
        auto st = proc_stat(c.pid());
        REQUIRE(st);
        CHECK(st->pgrp == c.pid());
        CHECK(st->session == getsid(0));
    }

    TEST_CASE("spawner: extra fds arrive at their numbers, nothing else is inherited") {
        Both b; // before the many fds, as vigild does
        std::vector<int> many;
        for (int i = 0; i < 300; ++i) {
            int fd = open("/dev/null", O_RDONLY | (i % 2 ? O_CLOEXEC : 0));
            REQUIRE(fd >= 0);
            many.push_back(fd);
        }
        int p1[2], p2[2];
        REQUIRE(pipe(p1) == 0);
        REQUIRE(pipe(p2) == 0);
        SpawnExtras x;
        // p2[1] goes to p1[0]'s number while p1[0] goes elsewhere: installs must not clobber.
        x.fds = {{p1[0], 7}, {p2[1], p1[0]}, {p2[0], 5}};
        SpawnSpec spec;
        spec.argv = {"/bin/sleep", "5"};
        for (const SpawnFn *fn : {&b.direct, &b.helper}) {
            Child c((*fn)(spec, x));
            std::set<int> expected{0, 1, 2, 5, 7, p1[0]};
            // sleep opens locale files for a moment after exec: wait for the steady state.
            CHECK(wait_until([&] { return open_fds(c.pid()) == expected; }));
            CHECK(fd_target(c.pid(), 7) == fd_target(getpid(), p1[0]));
            CHECK(fd_target(c.pid(), p1[0]) == fd_target(getpid(), p2[1]));
            CHECK(fd_target(c.pid(), 5) == fd_target(getpid(), p2[0]));
            CHECK(fd_target(c.pid(), 0) == "/dev/null");
            CHECK(fd_target(c.pid(), 1).rfind("pipe:", 0) == 0);
        }
        // The helper holds its socket and 0, 1, 2; the extras it received are closed again.
        CHECK(open_fds(b.sp.helper_pid()) == std::set<int>{0, 1, 2, 3});

        // A closed source: the same message both ways.
        // (A number nothing opens meanwhile: a just-closed one would be reused by the pipes.)
        close(p1[1]);
        int closed = 1000;
        REQUIRE(fcntl(closed, F_GETFD) < 0);
        x.fds = {{closed, 4}};
        std::string direct = outcome(b.direct, spec, x);
        CHECK(direct == "stdio fd 4: Bad file descriptor");
        CHECK(outcome(b.helper, spec, x) == direct);
        for (int fd : many)
            close(fd);
        for (int fd : {p1[0], p2[0], p2[1]})
            close(fd);
    }

    TEST_CASE("spawner: out of descriptors, the same error both ways and no child left") {
        Both b;
        rlimit saved{};
        REQUIRE(getrlimit(RLIMIT_NOFILE, &saved) == 0);
        rlimit low = saved;
        low.rlim_cur = 512;
        REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
        // Fill the table but one: the report's two read ends cannot both arrive.
        std::vector<int> filler;
        for (int fd; (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0;)
            filler.push_back(fd);
        REQUIRE(!filler.empty());
        close(filler.back());
        filler.pop_back();
        SpawnSpec spec;
        spec.argv = {"/bin/sleep", "5"};
        std::string direct = outcome(b.direct, spec);
        std::string helper = outcome(b.helper, spec);
        for (int fd : filler)
            close(fd);
        REQUIRE(setrlimit(RLIMIT_NOFILE, &saved) == 0);
        CHECK(direct == "pipe: Too many open files");
        CHECK(helper == direct);
        CHECK(b.sp.take_warning() == "");
        CHECK(b.sp.using_helper());
        // The helper's child was killed through its pidfd; it is ours to reap, and the
        // Spawner claims it.
        bool claimed = true;
        CHECK(wait_until([&] {
            for (const Reaped &r : reap_all())
                claimed = claimed && b.sp.on_reaped(r.pid, r.wstatus);
            return my_children(b.sp.helper_pid()).empty();
        }));
        CHECK(claimed);
        CHECK(run(b.helper, sh("echo ok")) == "ok\n||0");
    }

    TEST_CASE("spawner: an extra fd delivers the child's output") {
        Both b;
        int p[2];
        REQUIRE(pipe2(p, O_CLOEXEC) == 0);
        SpawnExtras x;
        x.fds = {{p[1], 9}};
        Child c(b.helper(sh("echo ready >&9"), x));
        close(p[1]);
        CHECK(read_all(p[0]) == "ready\n");
        close(p[0]);
    }

    TEST_CASE("spawner: Stdio::Inherit goes the direct way (no pipes)") {
        Both b;
        SpawnExtras x;
        x.stdio = Stdio::Inherit;
        SpawnSpec spec;
        spec.argv = {"/bin/true"};
        Child c(b.helper(spec, x));
        CHECK(c.s.stdout_fd == -1);
        CHECK(c.s.stderr_fd == -1);
        auto st = c.wait();
        REQUIRE(st);
        CHECK(*st == 0);
    }

    TEST_CASE(
        "spawner: a dead helper is restarted, at most 3 times in 10 s, then spawns run here") {
        Both b;
        SpawnSpec spec = sh("echo hi");
        CHECK(run(b.helper, spec) == "hi\n||0");
        CHECK(b.sp.take_warning() == "");

        auto ends_with = [](const std::string &s, const std::string &tail) {
            return s.size() >= tail.size() &&
                   s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
        };
        // Dead between requests (a zombie before the next submit): nothing is in flight, so
        // the next request goes to a new helper.
        auto kill_helper_now = [&] {
            int old = b.sp.helper_pid();
            REQUIRE(old > 0);
            REQUIRE(kill(old, SIGKILL) == 0);
            REQUIRE(wait_until([&] {
                auto st = proc_stat(old);
                return st && st->state == 'Z';
            }));
            return old;
        };
        for (int i = 0; i < Spawner::max_restarts; ++i) {
            int old = kill_helper_now();
            CHECK(run(b.helper, spec) == "hi\n||0");
            std::string w = b.sp.take_warning();
            CHECK_MESSAGE(w == "spawner helper died (killed by SIGKILL); restarted", w);
            CHECK(b.sp.using_helper());
            CHECK(b.sp.helper_pid() != old);
            CHECK_FALSE(process_exists(old)); // reaped by the restart
        }
        kill_helper_now();
        CHECK(run(b.helper, spec) == "hi\n||0");
        std::string w = b.sp.take_warning();
        CHECK_MESSAGE(
            w.rfind("spawner helper died (killed by SIGKILL) (4 times within 10s)", 0) == 0, w);
        CHECK_MESSAGE(ends_with(w, "; spawning from vigild directly from now on"), w);
        CHECK_FALSE(b.sp.using_helper());
        CHECK(b.sp.helper_pid() == -1);
        CHECK(run(b.helper, spec) == "hi\n||0");
        CHECK(my_children(-1).empty());
    }

    TEST_CASE("spawner: the caller may close its extra fd right after submit()") {
        Both b;
        int p[2];
        REQUIRE(pipe2(p, O_CLOEXEC) == 0);
        SpawnExtras x;
        x.fds = {{p[1], 9}};
        std::uint64_t ticket = b.sp.submit(sh("echo ready >&9"), x);
        close(p[1]); // the Spawner holds its own duplicate until the request is sent
        auto got = pump_n(b.sp, 1);
        REQUIRE(got.size() == 1);
        CHECK(got[0].ticket == ticket);
        Child c(got[0].result);
        close(got[0].pidfd);
        CHECK(read_all(p[0]) == "ready\n");
        close(p[0]);
    }

    TEST_CASE("spawner: without start() it is proc::spawn") {
        Spawner sp;
        SpawnSpec spec = sh("echo hi");
        {
            Child c(sp.spawn(spec, {}));
            CHECK(read_all(c.s.stdout_fd) == "hi\n");
            CHECK(c.wait());
        }
        // The same through submit(): no fd() to poll, the completion is ready at once.
        CHECK(sp.fd() == -1);
        std::uint64_t ticket = sp.submit(spec, {});
        auto got = sp.pump();
        REQUIRE(got.size() == 1);
        CHECK(got[0].ticket == ticket);
        CHECK(got[0].pidfd >= 0);
        close(got[0].pidfd);
        Child c(got[0].result);
        CHECK(read_all(c.s.stdout_fd) == "hi\n");
    }

    TEST_CASE("spawner: the helper exits when the Spawner goes") {
        int pid = -1;
        {
            Both b;
            pid = b.sp.helper_pid();
            CHECK(process_exists(pid));
        }
        CHECK_FALSE(process_exists(pid));
    }

    TEST_CASE("spawner: 500 requests, more than the socket takes, complete in order with pidfds") {
        Both b;
        std::set<int> fds_before = open_fds(getpid());
        SpawnSpec spec;
        spec.argv = {"/bin/true"};
        // 12 KB each: 6 MB in all, more than the socket's buffer (at most 4 MiB here), so
        // requests wait in the Spawner and go out as the helper reads.
        spec.env = {{"VIGIL_PAD", std::string(12000, 'x')}};
        constexpr std::size_t n = 500;
        std::vector<std::uint64_t> tickets;
        for (std::size_t i = 0; i < n; ++i)
            tickets.push_back(b.sp.submit(spec, {}));
        CHECK(b.sp.pending() == n);
        std::vector<int> pids;
        bool in_order = true, all_ok = true, pidfds_right = true;
        auto deadline = std::chrono::steady_clock::now() + scaled(60s);
        while (pids.size() < n && std::chrono::steady_clock::now() < deadline) {
            for (SpawnCompletion &c : b.sp.pump()) {
                in_order = in_order && c.ticket == tickets[pids.size()];
                if (!c.result.ok) {
                    all_ok = false;
                    pids.push_back(-1);
                    continue;
                }
                pids.push_back(c.result.ok->pid);
                pidfds_right =
                    pidfds_right && c.pidfd >= 0 && pidfd_pid(c.pidfd) == c.result.ok->pid;
                close(c.result.ok->stdout_fd);
                close(c.result.ok->stderr_fd);
                close(c.pidfd);
            }
            pollfd p{b.sp.fd(), POLLIN, 0};
            poll(&p, 1, 100);
        }
        REQUIRE(pids.size() == n);
        CHECK(in_order);
        CHECK(all_ok);
        CHECK(pidfds_right);
        CHECK(b.sp.pending() == 0);
        CHECK(std::set<int>(pids.begin(), pids.end()).size() == n);
        for (int pid : pids) {
            auto st = wait_exit(pid);
            CHECK((st && *st == 0));
        }
        CHECK(b.sp.take_warning() == "");
        CHECK(open_fds(getpid()) == fds_before);
    }

    TEST_CASE("spawner: the child reports itself: its pidfd names it, and only it") {
        Both b;
        SpawnSpec spec;
        spec.argv = {"/bin/sleep", "30"};
        auto check = [](const SpawnResult &r, int pidfd) {
            REQUIRE(r.ok);
            int pid = r.ok->pid;
            REQUIRE(pidfd >= 0);
            CHECK((fcntl(pidfd, F_GETFD) & FD_CLOEXEC) != 0);
            CHECK(pidfd_pid(pidfd) == pid);
            CHECK(signal_pidfd(pidfd, 0) == 0);
            CHECK(signal_pidfd(pidfd, SIGKILL) == 0);
            auto st = wait_exit(pid);
            REQUIRE(st);
            CHECK(WIFSIGNALED(*st));
            CHECK(WTERMSIG(*st) == SIGKILL);
            // Reaped: the pidfd names no process any more, whoever gets the pid next.
            CHECK(signal_pidfd(pidfd, 0) == ESRCH);
            close(r.ok->stdout_fd);
            close(r.ok->stderr_fd);
            close(pidfd);
        };
        b.sp.submit(spec, {});
        auto got = pump_n(b.sp, 1);
        REQUIRE(got.size() == 1);
        check(got[0].result, got[0].pidfd);
        // proc::spawn gives one too (CLONE_PIDFD).
        int pidfd = -1;
        SpawnResult r = spawn(spec, {}, pidfd);
        check(r, pidfd);
    }

    TEST_CASE("spawner: merge_stderr puts both streams in one pipe, in order") {
        Both b;
        SpawnExtras x;
        x.merge_stderr = true;
        for (const SpawnFn *fn : {&b.direct, &b.helper}) {
            Child c((*fn)(sh("echo out; echo err >&2; echo out2"), x));
            CHECK(c.s.stderr_fd == -1);
            CHECK(read_all(c.s.stdout_fd) == "out\nerr\nout2\n");
        }
    }

    TEST_CASE("spawner: cgroup_procs_fd moves the child into that cgroup first") {
        TestCgroup cg;
        if (cg.dir.empty()) {
            MESSAGE("no writable cgroup v2 mount: skipping");
            return;
        }
        Both b;
        int procs = open((cg.dir / "cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
        REQUIRE(procs >= 0);
        SpawnExtras x;
        x.cgroup_procs_fd = procs;
        SpawnSpec spec;
        spec.argv = {"/bin/sleep", "30"};
        std::string name = "/" + cg.dir.filename().string() + "\n";
        for (const SpawnFn *fn : {&b.direct, &b.helper}) {
            Child c((*fn)(spec, x));
            std::string line = slurp("/proc/" + std::to_string(c.pid()) + "/cgroup");
            std::string v2 = line.substr(line.find("0::"));
            CHECK_MESSAGE(v2.size() >= name.size(), v2);
            CHECK_MESSAGE(v2.compare(v2.size() - name.size(), name.size(), name) == 0, v2);
            CHECK(fcntl(procs, F_GETFD) >= 0); // still the caller's
            kill(c.pid(), SIGKILL);
            c.wait();
        }
        close(procs);
        // A descriptor that cannot be written: the spawn fails at the cgroup stage.
        x.cgroup_procs_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        REQUIRE(x.cgroup_procs_fd >= 0);
        CHECK(outcome(b.direct, spec, x) == "cgroup: Bad file descriptor");
        CHECK(outcome(b.helper, spec, x) == "cgroup: Bad file descriptor");
        close(x.cgroup_procs_fd);
        CHECK(my_children(b.sp.helper_pid()).empty());
    }

    TEST_CASE("spawner: the helper dies with a child before exec and requests queued: each is "
              "sent again and completes once, with a process, and nothing is left behind") {
        Both b;
        reap_all(); // strays of earlier cases (killed helpers) are not ours to judge
        int p[2];
        full_pipe(p);
        SpawnExtras stuck;
        stuck.cgroup_procs_fd = p[1]; // the child blocks in its write, after its report
        std::vector<std::uint64_t> tickets{b.sp.submit(sh("echo r0"), stuck)};
        close(p[1]);
        int helper = b.sp.helper_pid();
        int child = -1;
        REQUIRE(wait_until([&] { return (child = child_in_pipe_write(helper)) > 0; }));
        // Until it exec's, the child bears a name no program can have after an exec.
        CHECK(comm(child) == "vigild/spawn");
        constexpr int n = 20; // all in the dead helper's socket
        for (int i = 1; i <= n; ++i)
            tickets.push_back(b.sp.submit(sh("echo r" + std::to_string(i)), {}));
        std::vector<SpawnCompletion> got = b.sp.pump();
        CHECK(got.empty());

        REQUIRE(kill(helper, SIGKILL) == 0);
        REQUIRE(pump_until(b.sp, got, [&] { return b.sp.helper_pid() != helper; }));
        CHECK(got.empty()); // nothing failed
        CHECK(b.sp.helper_pid() > 0);
        CHECK(b.sp.take_warning() == "spawner helper died (killed by SIGKILL); restarted");
        // The child that never ran its program was killed; it is the Spawner's to claim.
        std::optional<int> st = wait_gone(child);
        if (st) {
            CHECK(WIFSIGNALED(*st));
            CHECK(WTERMSIG(*st) == SIGKILL);
            CHECK(b.sp.on_reaped(child, *st));
        }
        // The new helper has the request again: its new child blocks as the first did.
        int again = -1;
        REQUIRE(wait_until([&] { return (again = child_in_pipe_write(b.sp.helper_pid())) > 0; }));
        CHECK(again != child);
        char block[4096];
        REQUIRE(read(p[0], block, sizeof block) > 0);

        for (SpawnCompletion &c : pump_n(b.sp, n + 1, 30s))
            got.push_back(std::move(c));
        REQUIRE(got.size() == n + 1);
        for (int i = 0; i <= n; ++i) {
            const SpawnCompletion &c = got[static_cast<std::size_t>(i)];
            CHECK(c.ticket == tickets[static_cast<std::size_t>(i)]);
            REQUIRE_MESSAGE(c.result.ok, c.result.error->message());
            CHECK(pidfd_pid(c.pidfd) == c.result.ok->pid);
            CHECK(read_all(c.result.ok->stdout_fd) == "r" + std::to_string(i) + "\n");
            auto ws = wait_exit(c.result.ok->pid);
            CHECK((ws && *ws == 0));
            close(c.result.ok->stdout_fd);
            close(c.result.ok->stderr_fd);
            close(c.pidfd);
        }
        CHECK(got[0].result.ok->pid == again);
        CHECK(b.sp.pending() == 0);
        CHECK(pump_n(b.sp, 1, 200ms).empty()); // each exactly once
        CHECK(my_children(b.sp.helper_pid()).empty());
        close(p[0]);
    }

    TEST_CASE("spawner: the helper dies before it forked any child: every request it had is "
              "sent again, in order, and runs once") {
        Both b;
        reap_all();
        std::set<int> strays = my_children(b.sp.helper_pid());
        int helper = b.sp.helper_pid();
        // Stopped, the helper takes no request out of its socket, and forks nothing.
        REQUIRE(kill(helper, SIGSTOP) == 0);
        REQUIRE(wait_until([&] {
            auto st = proc_stat(helper);
            return st && st->state == 'T';
        }));
        constexpr int n = 10;
        std::vector<std::uint64_t> tickets;
        for (int i = 0; i < n; ++i)
            tickets.push_back(b.sp.submit(sh("echo s" + std::to_string(i)), {}));
        CHECK(b.sp.pump().empty());
        CHECK(my_children(helper) == strays);
        REQUIRE(kill(helper, SIGKILL) == 0);

        std::vector<SpawnCompletion> got = pump_n(b.sp, n);
        REQUIRE(got.size() == n);
        for (int i = 0; i < n; ++i) {
            const SpawnCompletion &c = got[static_cast<std::size_t>(i)];
            CHECK(c.ticket == tickets[static_cast<std::size_t>(i)]);
            REQUIRE_MESSAGE(c.result.ok, c.result.error->message());
            CHECK(read_all(c.result.ok->stdout_fd) == "s" + std::to_string(i) + "\n");
            auto ws = wait_exit(c.result.ok->pid);
            CHECK((ws && *ws == 0));
            close(c.result.ok->stdout_fd);
            close(c.result.ok->stderr_fd);
            close(c.pidfd);
        }
        // Its socket may close before its status is known: the warning then has none, and
        // the dead helper is the caller's to reap and the Spawner's to claim.
        std::string w = b.sp.take_warning();
        CHECK_MESSAGE((w == "spawner helper died (killed by SIGKILL); restarted" ||
                       w == "spawner helper died; restarted"),
                      w);
        CHECK(b.sp.helper_pid() != helper);
        if (std::optional<int> st = wait_gone(helper)) CHECK(b.sp.on_reaped(helper, *st));
        CHECK(b.sp.pending() == 0);
        CHECK(pump_n(b.sp, 1, 200ms).empty()); // each exactly once
        CHECK(my_children(b.sp.helper_pid()) == strays);
    }

    TEST_CASE("spawner: the helper dies after its child exec'd, before its reply: the caller "
              "gets the process, with its output") {
        Both b;
        int p[2];
        full_pipe(p);
        SpawnExtras stuck;
        stuck.cgroup_procs_fd = p[1];
        std::uint64_t first = b.sp.submit(sh("echo started; exec sleep 30"), stuck);
        close(p[1]);
        int helper = b.sp.helper_pid();
        int child = -1;
        REQUIRE(wait_until([&] { return (child = child_in_pipe_write(helper)) > 0; }));
        // Stopped, the helper cannot reply once its child has exec'd.
        REQUIRE(kill(helper, SIGSTOP) == 0);
        std::uint64_t second = b.sp.submit(sh("echo next"), {});
        char block[4096];
        REQUIRE(read(p[0], block, sizeof block) > 0);
        REQUIRE(wait_until([&] { return comm(child) == "sleep"; }));
        REQUIRE(kill(helper, SIGKILL) == 0);

        std::vector<SpawnCompletion> got = pump_n(b.sp, 2);
        REQUIRE(got.size() == 2);
        CHECK(got[0].ticket == first);
        REQUIRE_MESSAGE(got[0].result.ok, got[0].result.error->message());
        CHECK(got[0].result.ok->pid == child);
        CHECK(pidfd_pid(got[0].pidfd) == child);
        CHECK_FALSE(got[0].reaped_wstatus);
        CHECK(comm(child) == "sleep"); // running: not killed
        CHECK(signal_pidfd(got[0].pidfd, SIGTERM) == 0);
        CHECK(read_all(got[0].result.ok->stdout_fd) == "started\n");
        CHECK(read_all(got[0].result.ok->stderr_fd) == "");
        auto ws = wait_exit(child);
        REQUIRE(ws);
        CHECK(WIFSIGNALED(*ws));
        CHECK(WTERMSIG(*ws) == SIGTERM);
        close(got[0].result.ok->stdout_fd);
        close(got[0].result.ok->stderr_fd);
        close(got[0].pidfd);

        CHECK(got[1].ticket == second);
        Child c(got[1].result);
        close(got[1].pidfd);
        CHECK(read_all(c.s.stdout_fd) == "next\n");
        // With its child exec'd, the socket closes with the helper: its status may not be
        // known yet when its death is.
        std::string w = b.sp.take_warning();
        CHECK_MESSAGE((w == "spawner helper died (killed by SIGKILL); restarted" ||
                       w == "spawner helper died; restarted"),
                      w);
        close(p[0]);
    }

    TEST_CASE("spawner: the helper dies after its child exec'd and ended, before its reply: the "
              "caller gets the process's death") {
        Both b;
        int p[2];
        full_pipe(p);
        SpawnExtras stuck;
        stuck.cgroup_procs_fd = p[1];
        std::uint64_t ticket = b.sp.submit(sh("echo bye; exit 7"), stuck);
        close(p[1]);
        int helper = b.sp.helper_pid();
        int child = -1;
        REQUIRE(wait_until([&] { return (child = child_in_pipe_write(helper)) > 0; }));
        REQUIRE(kill(helper, SIGSTOP) == 0);
        char block[4096];
        REQUIRE(read(p[0], block, sizeof block) > 0);
        // vigild's reaper takes it before the helper's death is known.
        int ws = 0;
        REQUIRE(wait_until([&] { return waitpid(child, &ws, WNOHANG) == child; }));
        CHECK(b.sp.on_reaped(child, ws));
        REQUIRE(kill(helper, SIGKILL) == 0);

        std::vector<SpawnCompletion> got = pump_n(b.sp, 1);
        REQUIRE(got.size() == 1);
        CHECK(got[0].ticket == ticket);
        REQUIRE_MESSAGE(got[0].result.ok, got[0].result.error->message());
        CHECK(got[0].result.ok->pid == child);
        REQUIRE(got[0].reaped_wstatus);
        CHECK(*got[0].reaped_wstatus == ws);
        CHECK(WIFEXITED(ws));
        CHECK(WEXITSTATUS(ws) == 7);
        CHECK(read_all(got[0].result.ok->stdout_fd) == "bye\n");
        close(got[0].result.ok->stdout_fd);
        close(got[0].result.ok->stderr_fd);
        close(got[0].pidfd);
        close(p[0]);
    }

    TEST_CASE("spawner: a request its helper dies with 4 times fails, naming the deaths; then "
              "the Spawner gives up and the rest run here") {
        Both b;
        reap_all();
        int p[2];
        full_pipe(p);
        SpawnExtras stuck;
        stuck.cgroup_procs_fd = p[1];
        std::vector<std::uint64_t> tickets{b.sp.submit(sh("echo r0"), stuck)};
        close(p[1]);
        constexpr int n = 3;
        for (int i = 1; i <= n; ++i)
            tickets.push_back(b.sp.submit(sh("echo r" + std::to_string(i)), {}));
        std::vector<SpawnCompletion> got;
        std::vector<int> killed;
        for (int death = 1; death <= Spawner::max_resends + 1; ++death) {
            int helper = b.sp.helper_pid();
            REQUIRE(helper > 0);
            int child = -1;
            REQUIRE(wait_until([&] { return (child = child_in_pipe_write(helper)) > 0; }));
            killed.push_back(child);
            REQUIRE(kill(helper, SIGKILL) == 0);
            REQUIRE(pump_until(b.sp, got, [&] { return b.sp.helper_pid() != helper; }));
            if (death <= Spawner::max_resends) CHECK(got.empty());
        }
        // The fourth death is also the fourth within 10 s: spawns run in vigild from now on.
        CHECK_FALSE(b.sp.using_helper());
        for (SpawnCompletion &c : pump_n(b.sp, n + 1 - got.size()))
            got.push_back(std::move(c));
        REQUIRE(got.size() == n + 1);
        CHECK(got[0].ticket == tickets[0]);
        REQUIRE(got[0].result.error);
        CHECK(got[0].result.error->message() ==
              "spawner helper died during this spawn 4 times (the last time: died (killed by "
              "SIGKILL)); its process (pid " +
                  std::to_string(killed.back()) + ") was killed");
        for (int i = 1; i <= n; ++i) {
            const SpawnCompletion &c = got[static_cast<std::size_t>(i)];
            CHECK(c.ticket == tickets[static_cast<std::size_t>(i)]);
            Child ch(c.result);
            CHECK(read_all(ch.s.stdout_fd) == "r" + std::to_string(i) + "\n");
            if (c.pidfd >= 0) close(c.pidfd);
        }
        std::string w = b.sp.take_warning();
        CHECK_MESSAGE(w.find("spawner helper died (killed by SIGKILL) (4 times within 10s); "
                             "spawning from vigild directly from now on") != std::string::npos,
                      w);
        for (int pid : killed) {
            std::optional<int> st = wait_gone(pid);
            if (st) CHECK(b.sp.on_reaped(pid, *st));
        }
        reap_all();
        CHECK(my_children(-1).empty());
        close(p[0]);
    }

    TEST_CASE("spawner: kill_helper() fails the request it was serving and sends the rest again") {
        Both b;
        int p[2];
        full_pipe(p);
        SpawnExtras stuck;
        stuck.cgroup_procs_fd = p[1];
        SpawnSpec spec;
        spec.argv = {"/bin/sleep", "30"};
        std::vector<std::uint64_t> tickets{b.sp.submit(spec, stuck)};
        close(p[1]);
        int helper = b.sp.helper_pid();
        int child = -1;
        REQUIRE(wait_until([&] { return (child = child_in_pipe_write(helper)) > 0; }));
        // While the helper is stuck: 15 MB of requests, more than its socket takes.
        SpawnSpec quick;
        quick.argv = {"/bin/true"};
        quick.env = {{"VIGIL_PAD", std::string(50000, 'x')}};
        constexpr std::size_t n = 300;
        for (std::size_t i = 0; i < n; ++i)
            tickets.push_back(b.sp.submit(quick, {}));
        CHECK(b.sp.pump().empty());

        b.sp.kill_helper("spawn pending for too long");
        CHECK(b.sp.take_warning() ==
              "spawner helper killed: spawn pending for too long; restarted");
        std::vector<SpawnCompletion> got = pump_n(b.sp, n + 1, 60s);
        REQUIRE(got.size() == n + 1);
        CHECK(got[0].ticket == tickets[0]);
        REQUIRE(got[0].result.error);
        CHECK(got[0].result.error->message() ==
              "spawner helper died during the spawn; its process (pid " + std::to_string(child) +
                  ") was killed");
        // In order, and every other request ran, through the new helper.
        bool in_order = true, all_ok = true;
        for (std::size_t i = 1; i <= n; ++i) {
            in_order = in_order && got[i].ticket == tickets[i];
            if (!got[i].result.ok) {
                all_ok = false;
                continue;
            }
            close(got[i].result.ok->stdout_fd);
            close(got[i].result.ok->stderr_fd);
            close(got[i].pidfd);
            auto st = wait_exit(got[i].result.ok->pid);
            CHECK((st && *st == 0));
        }
        CHECK(in_order);
        CHECK(all_ok);
        wait_gone(child);
        CHECK(b.sp.helper_pid() != helper);
        CHECK(b.sp.pump().empty());
        close(p[0]);
    }

    TEST_CASE("spawner: on_reaped() claims a process whose completion was not pumped yet") {
        Both b;
        SpawnSpec spec;
        spec.argv = {"/bin/true"};
        // Earlier cases may have left processes for us to reap (killed helpers): not ours.
        reap_all();
        std::set<int> strays = my_children(b.sp.helper_pid());
        std::uint64_t ticket = b.sp.submit(spec, {});
        // vigild's SIGCHLD handler may reap the child before pump() tells its pid.
        int pid = -1, ws = 0;
        REQUIRE(wait_until([&] {
            int st = 0;
            int r = waitpid(-1, &st, WNOHANG);
            if (r > 0 && strays.count(r)) return false;
            if (r > 0) {
                pid = r;
                ws = st;
            }
            return r > 0;
        }));
        CHECK(pid != b.sp.helper_pid());
        CHECK(b.sp.on_reaped(pid, ws));
        auto got = pump_n(b.sp, 1);
        REQUIRE(got.size() == 1);
        CHECK(got[0].ticket == ticket);
        REQUIRE(got[0].result.ok);
        CHECK(got[0].result.ok->pid == pid);
        REQUIRE(got[0].reaped_wstatus);
        CHECK(*got[0].reaped_wstatus == ws);
        CHECK(WIFEXITED(ws));
        close(got[0].result.ok->stdout_fd);
        close(got[0].result.ok->stderr_fd);
        close(got[0].pidfd);
        CHECK_FALSE(b.sp.on_reaped(pid, ws)); // delivered: the caller's now
    }

    TEST_CASE("env_file: /dev/zero, a FIFO, a directory, 2 MiB, too many variables: refused") {
        Both b;
        TempDir dir;
        SpawnSpec spec = sh("echo $A");
        std::string zero = (dir.path / "zero.env").string();
        REQUIRE(symlink("/dev/zero", zero.c_str()) == 0);
        std::string fifo = (dir.path / "fifo.env").string();
        REQUIRE(mkfifo(fifo.c_str(), 0644) == 0);
        std::string big = dir.file("big.env", std::string(2 << 20, '#'));
        std::string many;
        for (int i = 0; i < 5000; ++i)
            many += "V" + std::to_string(i) + "=1\n";
        std::string lots = dir.file("many.env", many);
        long helper_hwm = vm_hwm_kib(b.sp.helper_pid());
        long own_hwm = vm_hwm_kib(getpid());

        spec.env_file = zero;
        std::string want = "env_file " + zero + ": not a regular file (character device)";
        CHECK(outcome(b.helper, spec) == want);
        CHECK(outcome(b.direct, spec) == want);
        // A FIFO with no writer: refused at once, not waited on (through the helper only, so
        // that a regression fails the bounded pump instead of hanging this test).
        spec.env_file = fifo;
        auto t0 = std::chrono::steady_clock::now();
        CHECK(outcome(b.helper, spec) == "env_file " + fifo + ": not a regular file (FIFO)");
        CHECK(std::chrono::steady_clock::now() - t0 < 2s);
        spec.env_file = dir.path.string();
        CHECK(outcome(b.helper, spec) ==
              "env_file " + dir.path.string() + ": not a regular file (directory)");
        spec.env_file = big;
        CHECK(outcome(b.helper, spec) == "env_file " + big + ": larger than 1 MiB");
        CHECK(outcome(b.direct, spec) == "env_file " + big + ": larger than 1 MiB");
        spec.env_file = lots;
        CHECK(outcome(b.helper, spec) == "env_file " + lots + ": more than 4096 variables");
        // No memory grew reading any of them.
        CHECK(vm_hwm_kib(b.sp.helper_pid()) - helper_hwm < 8192);
        CHECK(vm_hwm_kib(getpid()) - own_hwm < 8192);
        // A normal file is still read, and "-/path" still tolerates a missing one.
        spec.env_file = dir.file("ok.env", "A=fine\n");
        CHECK(run(b.helper, spec) == "fine\n||0");
        spec.env_file = (dir.path / "missing.env").string();
        spec.env_file_optional = true;
        CHECK(run(b.helper, spec) == "\n||0");
        CHECK(b.sp.take_warning() == "");
    }

    TEST_CASE("env_file: read as the unit's user, so a link to a root-only file is refused") {
        if (geteuid() != 0) {
            MESSAGE("not root: skipping the identity checks");
            return;
        }
        Both b;
        TempDir dir;
        fs::permissions(dir.path, fs::perms::owner_all | fs::perms::group_read |
                                      fs::perms::group_exec | fs::perms::others_read |
                                      fs::perms::others_exec);
        std::string secret = dir.file("secret.env", "A=root-only\n");
        fs::permissions(secret, fs::perms::owner_read | fs::perms::owner_write);
        std::string link = (dir.path / "link.env").string();
        REQUIRE(symlink(secret.c_str(), link.c_str()) == 0);
        std::string shared = dir.file("shared.env", "A=shared\n");
        fs::permissions(shared, fs::perms::owner_read | fs::perms::owner_write |
                                    fs::perms::group_read | fs::perms::others_read);
        std::string shared_link = (dir.path / "shared-link.env").string();
        REQUIRE(symlink(shared.c_str(), shared_link.c_str()) == 0);

        IdentityResult nobody = resolve_identity(std::string("nobody"), std::nullopt);
        REQUIRE(nobody.identity);
        SpawnSpec spec = sh("echo $A");
        spec.user = "nobody";
        spec.identity = *nobody.identity;
        std::string helper_status_uid = status_field(b.sp.helper_pid(), "Uid");
        std::string helper_groups = status_field(b.sp.helper_pid(), "Groups");
        std::string own_groups = status_field(getpid(), "Groups");

        spec.env_file = link;
        std::string want = "env_file " + link + ": Permission denied (read as user nobody)";
        CHECK(outcome(b.helper, spec) == want);
        CHECK(outcome(b.direct, spec) == want);
        spec.env_file = shared_link;
        CHECK(run(b.helper, spec) == "shared\n||0");
        CHECK(run(b.direct, spec) == "shared\n||0");
        // Both went back to their own identity (the fourth Uid is the fsuid).
        CHECK(status_field(b.sp.helper_pid(), "Uid") == helper_status_uid);
        CHECK(status_field(b.sp.helper_pid(), "Groups") == helper_groups);
        CHECK(status_field(getpid(), "Uid") == "0\t0\t0\t0");
        CHECK(status_field(getpid(), "Groups") == own_groups);
    }
}

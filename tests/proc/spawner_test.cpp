// spawner_test.cpp: Spawner::spawn() against proc::spawn() on real processes.
//
// Suite `sys`. Each case runs the same request both ways and checks that the results agree
// (messages, what the kernel shows of the child), and that a Spawner child is a child of the
// test process (CLONE_PARENT), reaped by plain waitpid. Every wait is bounded (sys_util.hpp).
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
#include <unistd.h>

using namespace vigil::proc;
using namespace vigil::proc::test;
namespace fs = std::filesystem;

namespace {

using SpawnFn = std::function<SpawnResult(const SpawnSpec &, const SpawnExtras &)>;

// A started Spawner and the two ways to spawn. The Spawner reaps its helper at scope exit.
struct Both {
    Spawner sp;
    SpawnFn direct = [](const SpawnSpec &s, const SpawnExtras &x) { return spawn(s, x); };
    SpawnFn helper = [this](const SpawnSpec &s, const SpawnExtras &x) { return sp.spawn(s, x); };
    Both() {
        REQUIRE(sp.start() == 0);
        REQUIRE(sp.helper_pid() > 0);
    }
};

struct TempDir {
    fs::path path;
    TempDir() {
        char tmpl[] = "/tmp/vigil-spawner-test-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string file(const std::string &name, const std::string &content) const {
        fs::path p = path / name;
        std::ofstream(p) << content;
        return p.string();
    }
};

// Owns a spawned child: kills and reaps it, and closes its pipes, at scope exit.
struct Child {
    Spawned s;
    bool reaped = false;
    explicit Child(const SpawnResult &r) {
        REQUIRE_MESSAGE(r.ok.has_value(), (r.error ? r.error->message() : std::string("?")));
        s = *r.ok;
    }
    Child(const Child &) = delete;
    Child &operator=(const Child &) = delete;
    ~Child() {
        if (!reaped) {
            kill(s.pid, SIGKILL);
            wait_exit(s.pid);
        }
        if (s.stdout_fd >= 0) close(s.stdout_fd);
        if (s.stderr_fd >= 0) close(s.stderr_fd);
    }
    int pid() const { return s.pid; }
    std::optional<int> wait() {
        auto st = wait_exit(s.pid);
        reaped = true;
        return st;
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

SpawnSpec sh(const std::string &script) {
    SpawnSpec spec;
    spec.argv = {"/bin/sh", "-c", script};
    return spec;
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

std::set<int> open_fds(int pid) {
    std::set<int> fds;
    for (const auto &e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
        fds.insert(std::stoi(e.path().filename().string()));
    return fds;
}

std::string fd_target(int pid, int fd) {
    std::error_code ec;
    return fs::read_symlink("/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd), ec)
        .string();
}

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

    TEST_CASE("spawner: cwd, umask, env, env_file and the caller's current environment") {
        Both b;
        TempDir dir;
        std::string env_file = dir.file("web.env", "A=file\nB=file\nexport E='quoted value'\n");
        // Set after the helper was forked: the environment is the caller's at spawn time.
        REQUIRE(setenv("VIGIL_TEST_LATE", "late", 1) == 0);
        REQUIRE(setenv("B", "inherited", 1) == 0);
        SpawnSpec spec = sh("pwd; umask; echo \"$VIGIL_TEST_LATE|$A|$B|$C|$E\"");
        spec.cwd = dir.path.string();
        spec.umask = 027;
        spec.env_file = env_file;
        spec.env = {{"B", "spec"}, {"C", "spec"}};
        SpawnExtras x;
        x.env = {{"C", "extra"}};
        std::string want = dir.path.string() + "\n0027\nlate|file|spec|extra|quoted value\n||0";
        CHECK(run(b.direct, spec, x) == want);
        CHECK(run(b.helper, spec, x) == want);
        unsetenv("VIGIL_TEST_LATE");
        unsetenv("B");
        // The whole environment, byte for byte.
        SpawnSpec env;
        env.argv = {"/usr/bin/env"};
        CHECK(run(b.helper, env, x) == run(b.direct, env, x));
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
        // Fill the table but one: the reply's two read ends cannot both arrive.
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
        CHECK(my_children(b.sp.helper_pid()).empty());
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

    TEST_CASE("spawner: a dead helper is restarted once, then spawns fall back to the caller") {
        Both b;
        SpawnSpec spec = sh("echo hi");
        CHECK(run(b.helper, spec) == "hi\n||0");
        CHECK(b.sp.take_warning() == "");

        auto ends_with = [](const std::string &s, const std::string &tail) {
            return s.size() >= tail.size() &&
                   s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
        };
        int first = b.sp.helper_pid();
        REQUIRE(kill(first, SIGKILL) == 0);
        CHECK(run(b.helper, spec) == "hi\n||0");
        std::string w = b.sp.take_warning();
        CHECK_MESSAGE(w.rfind("spawner helper died", 0) == 0, w);
        CHECK_MESSAGE(ends_with(w, "; restarted"), w);
        CHECK(b.sp.using_helper());
        CHECK(b.sp.helper_pid() != first);
        CHECK_FALSE(process_exists(first)); // reaped by the restart

        REQUIRE(kill(b.sp.helper_pid(), SIGKILL) == 0);
        CHECK(run(b.helper, spec) == "hi\n||0");
        w = b.sp.take_warning();
        CHECK_MESSAGE(w.rfind("spawner helper died", 0) == 0, w);
        CHECK_MESSAGE(ends_with(w, "; spawning from vigild directly from now on"), w);
        CHECK_FALSE(b.sp.using_helper());
        CHECK(b.sp.helper_pid() == -1);
        CHECK(run(b.helper, spec) == "hi\n||0");
        CHECK(my_children(-1).empty());
    }

    TEST_CASE("spawner: without start() it is proc::spawn") {
        Spawner sp;
        SpawnSpec spec = sh("echo hi");
        Child c(sp.spawn(spec, {}));
        CHECK(read_all(c.s.stdout_fd) == "hi\n");
        CHECK(c.wait());
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
}

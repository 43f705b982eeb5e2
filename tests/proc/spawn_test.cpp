// spawn_test.cpp: spawn(), reap_all() and signalling against real, short-lived processes.
//
// Suite `sys`. Each test checks what the kernel shows (/proc/<pid>/{status,stat,limits,fd}),
// not what spawn() claims. Every wait is bounded (sys_util.hpp).
#include "child_util.hpp"
#include "sys_util.hpp"

#include "vigil/proc/spawn.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <cstdio>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iterator>
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

std::string spawn_error(const SpawnSpec &spec, const SpawnExtras &extras = {}) {
    SpawnResult r = spawn(spec, extras);
    if (r.ok) {
        kill(r.ok->pid, SIGKILL);
        wait_exit(r.ok->pid);
        if (r.ok->stdout_fd >= 0) close(r.ok->stdout_fd);
        if (r.ok->stderr_fd >= 0) close(r.ok->stderr_fd);
        return "(spawned)";
    }
    REQUIRE(r.error.has_value());
    return r.error->message();
}

// Runs `spec` to completion with pipes and returns its stdout (stderr is checked empty).
std::string run_stdout(const SpawnSpec &spec, SpawnExtras extras = {}) {
    Child c(spawn(spec, extras));
    std::string out = read_all(c.s.stdout_fd);
    std::string err = read_all(c.s.stderr_fd);
    auto st = c.wait();
    REQUIRE(st.has_value());
    CHECK_MESSAGE(WIFEXITED(*st), "status " << *st);
    CHECK(err == "");
    return out;
}

// True once `pid` sleeps in clock_nanosleep (/proc/PID/syscall): /bin/sleep got past its
// dynamic loader, which opens (and closes) libraries on descriptors of its own.
bool in_nanosleep(int pid) {
    std::ifstream f("/proc/" + std::to_string(pid) + "/syscall");
    long nr = -1;
    return (f >> nr) && nr == SYS_clock_nanosleep;
}

bool no_children_left() {
    errno = 0;
    return waitpid(-1, nullptr, WNOHANG) < 0 && errno == ECHILD;
}

} // namespace

TEST_SUITE("proc") {

    TEST_CASE("spawn returns a live pid and non-blocking close-on-exec read ends") {
        SpawnSpec spec;
        spec.argv = {"/bin/sleep", "5"};
        Child c(spawn(spec, {}));
        CHECK(c.pid() > 0);
        CHECK(fs::exists("/proc/" + std::to_string(c.pid())));
        // The child has exec'd by the time spawn returns (vfork semantics).
        CHECK(slurp("/proc/" + std::to_string(c.pid()) + "/comm") == "sleep\n");
        for (int fd : {c.s.stdout_fd, c.s.stderr_fd}) {
            REQUIRE(fd >= 0);
            CHECK((fcntl(fd, F_GETFL) & O_NONBLOCK) != 0);
            CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
        }
    }

    TEST_CASE("stdout and stderr reach the pipes; stdin is /dev/null") {
        Child c(spawn(sh("cat; echo out; echo err >&2"), {}));
        CHECK(read_all(c.s.stdout_fd) == "out\n");
        CHECK(read_all(c.s.stderr_fd) == "err\n");
        auto st = c.wait();
        REQUIRE(st);
        CHECK(WIFEXITED(*st));
        CHECK(WEXITSTATUS(*st) == 0);
    }

    TEST_CASE("Stdio::Inherit returns no pipes") {
        SpawnExtras x;
        x.stdio = Stdio::Inherit;
        SpawnSpec spec;
        spec.argv = {"/bin/true"};
        Child c(spawn(spec, x));
        CHECK(c.s.stdout_fd == -1);
        CHECK(c.s.stderr_fd == -1);
        auto st = c.wait();
        REQUIRE(st);
        CHECK(*st == 0);
    }

    TEST_CASE("exec failure is a message, and the failed child is already reaped") {
        SpawnSpec spec;
        spec.argv = {"/usr/bin/pyhton3", "-V"};
        SpawnResult r = spawn(spec, {});
        REQUIRE_FALSE(r.ok);
        REQUIRE(r.error);
        CHECK(r.error->stage == ExecStage::Exec);
        CHECK(r.error->error == ENOENT);
        CHECK(r.error->message() == "exec /usr/bin/pyhton3: No such file or directory");
        CHECK(reap_all().empty());
        CHECK(no_children_left());

        spec.argv = {"/etc/passwd"};
        CHECK(spawn_error(spec) == "exec /etc/passwd: Permission denied");
        CHECK(no_children_left());
    }

    TEST_CASE("argv[0] without a slash is looked up in PATH") {
        CHECK(run_stdout(sh("echo hi")) == "hi\n");
        SpawnSpec spec;
        spec.argv = {"sh", "-c", "echo found"};
        CHECK(run_stdout(spec) == "found\n");

        TempDir dir;
        dir.file("vigil-fake-tool", "#!/bin/sh\necho \"tool $1\"\n", true);
        dir.file("vigil-not-exec", "#!/bin/sh\necho no\n", false);
        spec.argv = {"vigil-fake-tool", "x"};
        spec.env["PATH"] = "/nonexistent:" + dir.path.string();
        CHECK(run_stdout(spec) == "tool x\n");

        spec.argv = {"vigil-no-such-tool"};
        CHECK(spawn_error(spec) == "exec vigil-no-such-tool: No such file or directory");
        spec.argv = {"vigil-not-exec"};
        CHECK(spawn_error(spec) == "exec vigil-not-exec: Permission denied");
    }

    TEST_CASE("cwd, umask, env and env_file are applied; later sources win") {
        TempDir dir;
        std::string env_file =
            dir.file("web.env", "# comment\nA=file\nB=file\nexport E='quoted value'\n");
        REQUIRE(setenv("VIGIL_TEST_INHERITED", "inherited", 1) == 0);
        REQUIRE(setenv("B", "inherited", 1) == 0);
        SpawnSpec spec = sh("pwd; umask; echo \"$VIGIL_TEST_INHERITED|$A|$B|$C|$E\"");
        spec.cwd = dir.path.string();
        spec.umask = 027;
        spec.env_file = env_file;
        spec.env = {{"B", "spec"}, {"C", "spec"}};
        SpawnExtras x;
        x.env = {{"C", "extra"}};
        CHECK(run_stdout(spec, x) ==
              dir.path.string() + "\n0027\ninherited|file|spec|extra|quoted value\n");
        unsetenv("VIGIL_TEST_INHERITED");
        unsetenv("B");
    }

    TEST_CASE("env_file errors: missing, optional, malformed") {
        SpawnSpec spec = sh("echo ${A:-unset}");
        spec.env_file = "/nonexistent/web.env";
        CHECK(spawn_error(spec) == "env_file /nonexistent/web.env: No such file or directory");
        spec.env_file_optional = true;
        CHECK(run_stdout(spec) == "unset\n");

        TempDir dir;
        spec.env_file = dir.file("bad.env", "A=1\nthis line is wrong\n");
        spec.env_file_optional = false;
        CHECK(spawn_error(spec) ==
              "env_file " + *spec.env_file + ": line 2: expected '=' after 'this'");
    }

    TEST_CASE("cwd failure names the directory") {
        SpawnSpec spec;
        spec.argv = {"/bin/true"};
        spec.cwd = "/nope";
        CHECK(spawn_error(spec) == "chdir /nope: No such file or directory");
        CHECK(no_children_left());
    }

    TEST_CASE("rlimits are applied in the child") {
        SpawnSpec spec;
        spec.argv = {"/bin/sleep", "5"};
        spec.limits = {{RLIMIT_NOFILE, 123, 456}, {RLIMIT_CORE, 0, 0}};
        Child c(spawn(spec, {}));
        std::string limits = slurp("/proc/" + std::to_string(c.pid()) + "/limits");
        CHECK(limits.find("Max open files            123                  456") !=
              std::string::npos);
        CHECK(limits.find("Max core file size        0                    0") != std::string::npos);

        // A soft limit above the hard one is refused by the kernel: named by its unit-file name.
        spec.limits = {{RLIMIT_NOFILE, 500, 100}};
        CHECK(spawn_error(spec) == "setrlimit nofile: Invalid argument");
    }

    TEST_CASE("new_session makes the child a session and group leader") {
        SpawnSpec spec;
        spec.argv = {"/bin/sleep", "5"};
        {
            Child c(spawn(spec, {}));
            auto st = proc_stat(c.pid());
            REQUIRE(st);
            CHECK(st->session == c.pid());
            CHECK(st->pgrp == c.pid());
        }
        {
            SpawnExtras x;
            x.new_session = false;
            x.foreground_tty = true; // no terminal here: must be a harmless no-op
            Child c(spawn(spec, x));
            auto st = proc_stat(c.pid());
            REQUIRE(st);
            CHECK(st->pgrp == c.pid());
            CHECK(st->session == getsid(0));
        }
    }

    TEST_CASE("only 0, 1, 2 and the extra fds are inherited") {
        // A leaky fd in the parent (no O_CLOEXEC): it must not reach the child.
        int leaky = open("/dev/null", O_RDONLY);
        REQUIRE(leaky >= 0);
        int p1[2], p2[2];
        REQUIRE(pipe(p1) == 0);
        REQUIRE(pipe(p2) == 0);
        SpawnExtras x;
        // p2[1] goes to p1[0]'s number while p1[0] goes elsewhere: installs must not clobber.
        // And a close-on-exec fd passed under its own number (wrapper mode's inherited fds).
        int same = fcntl(p2[0], F_DUPFD_CLOEXEC, 20);
        REQUIRE(same >= 20);
        x.fds = {{p1[0], 7}, {p2[1], p1[0]}, {same, same}};
        SpawnSpec spec;
        spec.argv = {"/bin/sleep", "5"};
        std::string p1_read = fd_target(getpid(), p1[0]);
        std::string p2_write = fd_target(getpid(), p2[1]);
        {
            Child c(spawn(spec, x));
            std::set<int> expected{0, 1, 2, 7, p1[0], same};
            // spawn() returns once the exec is done, but the new program's dynamic loader may
            // still hold a library open for a moment (seen on a loaded machine): the
            // descriptors are read once the program sleeps.
            REQUIRE(wait_until([&] { return in_nanosleep(c.pid()); }));
            CHECK(open_fds(c.pid()) == expected);
            CHECK(fd_target(c.pid(), 7) == p1_read);
            CHECK(fd_target(c.pid(), p1[0]) == p2_write);
            CHECK(fd_target(c.pid(), 0) == "/dev/null");
            CHECK(fd_target(c.pid(), 1).rfind("pipe:", 0) == 0);
            CHECK(fd_target(c.pid(), same) == fd_target(getpid(), p2[0]));
        }
        for (int fd : {leaky, p1[0], p1[1], p2[0], p2[1], same})
            close(fd);
    }

    TEST_CASE("the child starts with an empty mask and default dispositions") {
        sigset_t block, old_mask;
        sigemptyset(&block);
        sigaddset(&block, SIGUSR1);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGCHLD);
        REQUIRE(pthread_sigmask(SIG_BLOCK, &block, &old_mask) == 0);
        struct sigaction ign {
        }, handler{}, old_int{}, old_pipe{}, old_usr2{};
        ign.sa_handler = SIG_IGN;
        handler.sa_handler = [](int) {};
        sigaction(SIGINT, &ign, &old_int);
        sigaction(SIGPIPE, &ign, &old_pipe);
        sigaction(SIGUSR2, &handler, &old_usr2);
        REQUIRE(status_field(getpid(), "SigIgn") != "0000000000000000");

        SpawnSpec spec;
        spec.argv = {"/bin/sleep", "5"};
        {
            Child c(spawn(spec, {}));
            CHECK(status_field(c.pid(), "SigBlk") == "0000000000000000");
            CHECK(status_field(c.pid(), "SigIgn") == "0000000000000000");
            CHECK(status_field(c.pid(), "SigCgt") == "0000000000000000");
        }
        // spawn() restored our own mask.
        sigset_t now;
        pthread_sigmask(SIG_SETMASK, nullptr, &now);
        CHECK(sigismember(&now, SIGUSR1) == 1);
        CHECK(sigismember(&now, SIGHUP) == 0);

        sigaction(SIGINT, &old_int, nullptr);
        sigaction(SIGPIPE, &old_pipe, nullptr);
        sigaction(SIGUSR2, &old_usr2, nullptr);
        pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    }

    TEST_CASE("user and group: dropped in order when root, errors named") {
        SpawnSpec spec;
        spec.argv = {"/bin/sleep", "5"};
        spec.user = "vigil-no-such-user";
        CHECK(spawn_error(spec) == "user vigil-no-such-user: no such user");
        spec.user = "nobody";
        spec.group = "vigil-no-such-group";
        CHECK(spawn_error(spec) == "group vigil-no-such-group: no such group");
        spec.user = "4242";
        spec.group.reset();
        CHECK(spawn_error(spec) == "user 4242: no passwd entry; set `group` explicitly");

        if (geteuid() != 0) {
            MESSAGE("not root: skipping the setuid checks");
            return;
        }
        spec.user = "nobody";
        {
            Child c(spawn(spec, {}));
            CHECK(status_field(c.pid(), "Uid") == "65534\t65534\t65534\t65534");
            std::string gid = status_field(c.pid(), "Gid");
            CHECK(gid.substr(0, gid.find('\t')) != "0");
            std::istringstream groups(status_field(c.pid(), "Groups"));
            std::set<int> gids{std::istream_iterator<int>(groups), std::istream_iterator<int>()};
            CHECK(gids.count(0) == 0); // root's supplementary groups are gone
        }
        spec.user = "65534";
        spec.group = "12345";
        {
            Child c(spawn(spec, {}));
            CHECK(status_field(c.pid(), "Uid") == "65534\t65534\t65534\t65534");
            CHECK(status_field(c.pid(), "Gid") == "12345\t12345\t12345\t12345");
            CHECK(status_field(c.pid(), "Groups") == "12345");
        }
        // chdir happens after setuid, with the service's own permissions.
        TempDir dir;
        fs::permissions(dir.path, fs::perms::owner_all);
        spec.user = "nobody";
        spec.group.reset();
        spec.cwd = dir.path.string();
        CHECK(spawn_error(spec) == "chdir " + dir.path.string() + ": Permission denied");
        // USER/LOGNAME/HOME follow the user.
        SpawnSpec env = sh("echo $USER $LOGNAME");
        env.user = "nobody";
        CHECK(run_stdout(env) == "nobody nobody\n");
    }

    TEST_CASE("reap_all collects an orphan of a double fork when we are a subreaper") {
        REQUIRE(become_subreaper() == 0);
        TempDir dir;
        std::string log = (dir.path / "svc.log").string();
        SpawnSpec spec;
        spec.argv = {testsvc(), "--id", "dbl", "--log", log, "orphan", "3", "50"};
        SpawnResult r = spawn(spec, {});
        REQUIRE(r.ok);
        close(r.ok->stdout_fd);
        close(r.ok->stderr_fd);

        std::set<int> reaped;
        std::map<int, int> statuses;
        auto orphans = [&] {
            std::set<int> pids;
            std::istringstream in(slurp(log));
            std::string kind, id;
            int pid;
            long ms;
            while (in >> kind >> id >> pid >> ms)
                if (kind == "orphan") pids.insert(pid);
            return pids;
        };
        bool all = wait_until([&] {
            for (const Reaped &x : reap_all()) {
                reaped.insert(x.pid);
                statuses[x.pid] = x.wstatus;
            }
            std::set<int> want = orphans();
            if (want.size() != 3) return false;
            want.insert(r.ok->pid);
            for (int p : want)
                if (!reaped.count(p)) return false;
            return true;
        });
        CHECK(all);
        CHECK(orphans().size() == 3);
        CHECK(statuses[r.ok->pid] == 0);
        for (int p : orphans()) {
            CHECK(reaped.count(p) == 1);
            CHECK(statuses[p] == 0);
            CHECK_FALSE(process_exists(p));
        }
        CHECK(reap_all().empty());
    }

    TEST_CASE("100 orphans: reap_all leaves no zombie behind") {
        REQUIRE(become_subreaper() == 0);
        SpawnSpec spec;
        spec.argv = {testsvc(), "orphan", "100", "20"};
        SpawnResult r = spawn(spec, {});
        REQUIRE(r.ok);
        close(r.ok->stdout_fd);
        close(r.ok->stderr_fd);
        std::set<int> reaped;
        // 1 testsvc + 100 orphans; their intermediate parents are testsvc's to reap.
        CHECK(wait_until([&] {
            for (const Reaped &x : reap_all())
                reaped.insert(x.pid);
            return reaped.size() >= 101;
        }));
        CHECK(reaped.size() == 101);
        CHECK(reaped.count(r.ok->pid) == 1);
        // The kernel agrees: no process (zombie or not) is our child any more.
        CHECK(no_children_left());
    }

    TEST_CASE("signal_group reaches a grandchild; group_alive follows") {
        REQUIRE(become_subreaper() == 0);
        TempDir dir;
        std::string log = (dir.path / "svc.log").string();
        SpawnSpec spec;
        spec.argv = {testsvc(), "--id", "grp",   "--log", log,
                     "orphan",  "1",    "30000", "sleep", "30000"};
        SpawnResult r = spawn(spec, {});
        REQUIRE(r.ok);
        close(r.ok->stdout_fd);
        close(r.ok->stderr_fd);
        int pid = r.ok->pid;
        int orphan = 0;
        REQUIRE(wait_until([&] {
            std::istringstream in(slurp(log));
            std::string kind, id;
            int p;
            long ms;
            while (in >> kind >> id >> p >> ms)
                if (kind == "orphan") orphan = p;
            return orphan != 0;
        }));
        // Re-parented to us, the subreaper, once its parent (testsvc's fork) has exited.
        CHECK(wait_until([&] {
            auto s = proc_stat(orphan);
            return s && s->ppid == getpid();
        }));
        auto st = proc_stat(orphan);
        REQUIRE(st);
        CHECK(st->pgrp == pid);
        CHECK(group_alive(pid));

        CHECK(signal_group(pid, SIGTERM) == 0);
        std::map<int, int> statuses;
        CHECK(wait_until([&] {
            for (const Reaped &x : reap_all())
                statuses[x.pid] = x.wstatus;
            return statuses.count(pid) && statuses.count(orphan);
        }));
        CHECK(WIFSIGNALED(statuses[pid]));
        CHECK(WTERMSIG(statuses[pid]) == SIGTERM);
        CHECK(WIFSIGNALED(statuses[orphan]));
        CHECK(WTERMSIG(statuses[orphan]) == SIGTERM);
        CHECK_FALSE(group_alive(pid));
        CHECK(signal_group(pid, SIGTERM) == ESRCH);
        CHECK(slurp(log).find("stop grp SIGTERM") != std::string::npos);
    }

    TEST_CASE("signal_process and argument checks") {
        SpawnSpec spec;
        spec.argv = {"/bin/sleep", "5"};
        Child c(spawn(spec, {}));
        CHECK(signal_process(c.pid(), SIGKILL) == 0);
        auto st = c.wait();
        REQUIRE(st);
        CHECK(WIFSIGNALED(*st));
        CHECK(WTERMSIG(*st) == SIGKILL);
        CHECK(signal_process(c.pid(), 0) == ESRCH);
        CHECK(signal_group(1, SIGTERM) == EINVAL);
        CHECK(signal_group(0, SIGTERM) == EINVAL);
        CHECK(signal_process(0, SIGTERM) == EINVAL);
        CHECK_FALSE(group_alive(0));
    }

    TEST_CASE("foreground_tty makes the child's group the terminal's foreground group") {
        // Needs a controlling terminal: a forked helper becomes a session leader, takes a new pty
        // as its controlling terminal on stdin, and spawns from there (as wrapper mode does).
        int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        REQUIRE(master >= 0);
        REQUIRE(grantpt(master) == 0);
        REQUIRE(unlockpt(master) == 0);
        std::string slave = ptsname(master);
        pid_t helper = fork();
        REQUIRE(helper >= 0);
        if (helper == 0) {
            // Exit codes: 0 ok, 10+ setup failed, 20 wrong foreground group.
            if (setsid() < 0) _exit(10);
            int tty = open(slave.c_str(), O_RDWR); // the first tty a session leader opens: its ctty
            if (tty < 0 || dup2(tty, 0) < 0) _exit(11);
            if (tcgetpgrp(0) != getpid()) _exit(12);
            SpawnSpec spec;
            spec.argv = {"/bin/sleep", "5"};
            SpawnExtras x;
            x.stdio = Stdio::Inherit;
            x.new_session = false;
            x.foreground_tty = true;
            SpawnResult r = spawn(spec, x);
            if (!r.ok) _exit(13);
            int rc = tcgetpgrp(0) == r.ok->pid && getpgid(r.ok->pid) == r.ok->pid ? 0 : 20;
            kill(r.ok->pid, SIGKILL);
            waitpid(r.ok->pid, nullptr, 0);
            _exit(rc);
        }
        auto st = wait_exit(helper);
        close(master);
        REQUIRE(st);
        CHECK(WIFEXITED(*st));
        CHECK(WEXITSTATUS(*st) == 0);
    }

    TEST_CASE("spawn leaks no fd in the parent, on success or failure") {
        auto count_fds = [] {
            return std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator());
        };
        auto before = count_fds();
        SpawnSpec ok;
        ok.argv = {"/bin/true"};
        SpawnSpec bad;
        bad.argv = {"/nonexistent/x"};
        SpawnSpec bad_cwd;
        bad_cwd.argv = {"/bin/true"};
        bad_cwd.cwd = "/nonexistent";
        for (int i = 0; i < 20; ++i) {
            SpawnResult r = spawn(ok, {});
            REQUIRE(r.ok);
            close(r.ok->stdout_fd);
            close(r.ok->stderr_fd);
            REQUIRE(wait_exit(r.ok->pid) == 0);
            CHECK_FALSE(spawn(bad, {}).ok);
            CHECK_FALSE(spawn(bad_cwd, {}).ok);
        }
        CHECK(count_fds() == before);
        CHECK(no_children_left());
    }

    TEST_CASE("an empty argv is a prepare error") {
        SpawnSpec spec;
        CHECK(spawn_error(spec) == "argv: empty command");
    }

} // TEST_SUITE

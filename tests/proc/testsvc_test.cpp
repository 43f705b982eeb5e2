// testsvc_test.cpp: vigil-testsvc does what its usage text promises (suite sys).
//
// Other test folders build on this helper, so its modes are checked here once, through
// spawn(), against the kernel's view (wait statuses, fds, sockets).
#include "child_util.hpp"
#include "sys_util.hpp"

#include "vigil/core/names.hpp"
#include "vigil/proc/exit.hpp"
#include "vigil/proc/spawn.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

using namespace vigil::proc;
using namespace vigil::proc::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct Run {
    int wstatus = -1;
    std::string out, err;
};

// Runs testsvc with `args` to completion (bounded) and collects its output.
Run run(std::vector<std::string> args, SpawnExtras extras = {}) {
    SpawnSpec spec;
    spec.argv = {testsvc()};
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    SpawnResult r = spawn(spec, extras);
    REQUIRE_MESSAGE(r.ok, (r.error ? r.error->message() : ""));
    Run out;
    out.out = read_all(r.ok->stdout_fd);
    out.err = read_all(r.ok->stderr_fd);
    close(r.ok->stdout_fd);
    close(r.ok->stderr_fd);
    auto st = wait_exit(r.ok->pid);
    REQUIRE(st);
    out.wstatus = *st;
    return out;
}

struct TempLog {
    std::string path;
    TempLog() {
        char tmpl[] = "/tmp/vigil-testsvc-XXXXXX";
        int fd = mkstemp(tmpl);
        REQUIRE(fd >= 0);
        close(fd);
        path = tmpl;
    }
    ~TempLog() { unlink(path.c_str()); }
    std::vector<std::vector<std::string>> lines() const {
        std::vector<std::vector<std::string>> out;
        std::istringstream in(slurp(path));
        std::string line;
        while (std::getline(in, line)) {
            std::istringstream words(line);
            std::vector<std::string> w;
            for (std::string x; words >> x;)
                w.push_back(x);
            out.push_back(w);
        }
        return out;
    }
};

} // namespace

TEST_SUITE("testsvc") {

    TEST_CASE("exit, lines and the log") {
        TempLog log;
        Run r = run({"--id", "web", "--log", log.path, "start", "lines", "3", "stderr-lines", "2",
                     "oops", "exit", "42"});
        CHECK(shell_exit_code(r.wstatus) == 42);
        CHECK(r.out == "web seq=1\nweb seq=2\nweb seq=3\n");
        CHECK(r.err == "oops seq=1\noops seq=2\n");
        auto l = log.lines();
        REQUIRE(l.size() == 2);
        CHECK(l[0][0] == "start");
        CHECK(l[0][1] == "web");
        CHECK(l[1][0] == "exit");
        CHECK(l[1][2] == "42");
        CHECK(std::stol(l[1][3]) >= std::stol(l[0][3]));
    }

    TEST_CASE("bad usage exits 2") {
        Run r = run({"no-such-mode"});
        CHECK(shell_exit_code(r.wstatus) == 2);
        CHECK(r.err.find("unknown mode: no-such-mode") != std::string::npos);
    }

    TEST_CASE("crash-after dies of SIGSEGV and logs it") {
        TempLog log;
        SpawnSpec spec;
        Run r = run({"--id", "c", "--log", log.path, "crash-after", "10"});
        CHECK(WIFSIGNALED(r.wstatus));
        CHECK(WTERMSIG(r.wstatus) == SIGSEGV);
        CHECK(log.lines().back()[0] == "stop");
        CHECK(log.lines().back()[2] == "SIGSEGV");
    }

    TEST_CASE("SIGTERM: default, term-delay and ignore-term") {
        TempLog log;
        SpawnSpec spec;
        SpawnExtras x;
        x.stdio = Stdio::Inherit;
        auto marks = [&] {
            std::size_t n = 0;
            for (auto &l : log.lines())
                n += l[0] == "mark";
            return n;
        };
        auto start = [&](std::vector<std::string> modes) {
            spec.argv = {testsvc(), "--id", "t", "--log", log.path};
            spec.argv.insert(spec.argv.end(), modes.begin(), modes.end());
            std::size_t before = marks();
            SpawnResult r = spawn(spec, x);
            REQUIRE(r.ok);
            int pid = r.ok->pid;
            // Signal only once the modes before `mark` took effect.
            REQUIRE(wait_until([&] { return marks() == before + 1; }));
            return pid;
        };

        int pid = start({"mark", "armed", "sleep"});
        kill(pid, SIGTERM);
        auto st = wait_exit(pid);
        REQUIRE(st);
        CHECK(shell_exit_code(*st) == 143);
        CHECK(log.lines().back()[0] == "stop");
        CHECK(log.lines().back()[2] == "SIGTERM");

        pid = start({"term-delay", "150", "mark", "armed", "sleep"});
        auto t0 = std::chrono::steady_clock::now();
        kill(pid, SIGTERM);
        st = wait_exit(pid);
        REQUIRE(st);
        CHECK(std::chrono::steady_clock::now() - t0 >= 150ms);
        CHECK(shell_exit_code(*st) == 143);

        pid = start({"ignore-term", "mark", "armed", "sleep", "200"});
        CHECK(status_field(pid, "SigIgn") == "0000000000004000"); // bit 15 - 1: SIGTERM
        kill(pid, SIGTERM);
        st = wait_exit(pid);
        REQUIRE(st);
        CHECK(shell_exit_code(*st) == 0); // slept its 200 ms and exited normally
    }

    TEST_CASE("log-signals logs and survives all but TERM and INT") {
        TempLog log;
        SpawnSpec spec;
        spec.argv = {testsvc(),     "--id", "s",  "--log", log.path,
                     "log-signals", "mark", "on", "sleep"};
        SpawnExtras x;
        x.stdio = Stdio::Inherit;
        SpawnResult r = spawn(spec, x);
        REQUIRE(r.ok);
        int pid = r.ok->pid;
        REQUIRE(wait_until([&] { return log.lines().size() == 2; })); // start, mark
        CHECK(log.lines().back()[0] == "mark");
        int n = 2;
        for (int sig : {SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH, SIGQUIT, SIGALRM, SIGCONT}) {
            kill(pid, sig);
            ++n;
            REQUIRE(wait_until([&] { return static_cast<int>(log.lines().size()) == n; }));
            CHECK(log.lines().back()[2] == vigil::core::signal_name(sig));
        }
        kill(pid, SIGINT);
        auto st = wait_exit(pid);
        REQUIRE(st);
        CHECK(shell_exit_code(*st) == 130);
        auto l = log.lines();
        REQUIRE(l.size() == static_cast<std::size_t>(n + 2));
        CHECK(l[static_cast<std::size_t>(n)][0] == "signal");
        CHECK(l.back()[0] == "stop");
        CHECK(l.back()[2] == "SIGINT");
    }

    TEST_CASE("ready-fd and notify-ready") {
        int p[2];
        REQUIRE(pipe2(p, O_CLOEXEC) == 0);
        SpawnExtras x;
        x.fds = {{p[1], 5}};
        Run r = run({"ready-fd", "5"}, x);
        close(p[1]);
        CHECK(shell_exit_code(r.wstatus) == 0);
        CHECK(read_all(p[0]) == "\n");
        close(p[0]);

        int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        REQUIRE(sock >= 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::string name = "vigil-testsvc-" + std::to_string(getpid());
        std::memcpy(addr.sun_path + 1, name.data(), name.size()); // abstract
        REQUIRE(bind(sock, reinterpret_cast<sockaddr *>(&addr),
                     static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size())) ==
                0);
        x.fds.clear();
        x.env = {{"NOTIFY_SOCKET", "@" + name}};
        r = run({"notify-ready", "notify", "WATCHDOG=1"}, x);
        CHECK(shell_exit_code(r.wstatus) == 0);
        auto datagram = [&] {
            pollfd pfd{sock, POLLIN, 0};
            if (poll(&pfd, 1, static_cast<int>(scaled(2000ms).count())) != 1) return std::string();
            char buf[256];
            ssize_t n = recv(sock, buf, sizeof buf, 0);
            return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
        };
        CHECK(datagram() == "READY=1");
        CHECK(datagram() == "WATCHDOG=1");
        close(sock);
    }

    TEST_CASE("http answers /healthz, then 500 after --fail-after") {
        TempLog log;
        SpawnSpec spec;
        spec.argv = {testsvc(), "--id", "h", "--log", log.path, "--fail-after", "1", "http", "0"};
        SpawnExtras x;
        x.stdio = Stdio::Inherit;
        SpawnResult r = spawn(spec, x);
        REQUIRE(r.ok);
        int port = 0;
        REQUIRE(wait_until([&] {
            for (auto &l : log.lines())
                if (l[0] == "http") port = std::stoi(l[2]);
            return port != 0;
        }));
        auto get = [&](const char *path) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_port = htons(static_cast<std::uint16_t>(port));
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            REQUIRE(connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0);
            std::string req = std::string("GET ") + path + " HTTP/1.1\r\nHost: x\r\n\r\n";
            REQUIRE(write(fd, req.data(), req.size()) == static_cast<ssize_t>(req.size()));
            std::string resp = read_all(fd);
            close(fd);
            return resp.substr(0, resp.find("\r\n"));
        };
        CHECK(get("/healthz") == "HTTP/1.1 200 OK");
        CHECK(get("/other") == "HTTP/1.1 404 Not Found");
        CHECK(get("/healthz") == "HTTP/1.1 500 Internal Server Error");
        kill(r.ok->pid, SIGTERM);
        auto st = wait_exit(r.ok->pid);
        REQUIRE(st);
        CHECK(shell_exit_code(*st) == 143);
    }

} // TEST_SUITE

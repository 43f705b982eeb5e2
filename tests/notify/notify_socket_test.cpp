// NotifySocket, ReadyFd and Watchdog with real processes and sockets (suite sys).
#include <doctest/doctest.h>

#include <fcntl.h>
#include <spawn.h>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

#include "test_loop.hpp"
#include "vigil/notify/notify_socket.hpp"
#include "vigil/notify/process_watch.hpp"

extern char **environ;

using namespace std::chrono_literals;
using vigil::notify::Message;
using vigil::notify::NotifySocket;
using vigil::notify::ProcessWatch;
using vigil::notify::ReadyFd;
using vigil::notify::Watchdog;
using vigil::test::TestLoop;
using vigil::test::TestReaper;

namespace {

// A private runtime directory for sockets, removed at the end.
struct TempDir {
    std::string path;
    TempDir() {
        char tmpl[] = "/tmp/vigil-notify-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::string cmd = "rm -rf '" + path + "'";
        CHECK(std::system(cmd.c_str()) == 0);
    }
};

// Spawns argv as a service would run: its own session (so its session id is its pid), extra
// environment, and optionally `fd` duplicated to `child_fd`.
int spawn_service(const std::vector<std::string> &argv, const std::vector<std::string> &env,
                  int fd = -1, int child_fd = -1) {
    std::vector<char *> av;
    for (const auto &a : argv)
        av.push_back(const_cast<char *>(a.c_str()));
    av.push_back(nullptr);
    std::vector<std::string> envs = env;
    for (char **e = environ; *e; ++e)
        envs.emplace_back(*e);
    std::vector<char *> ev;
    for (auto &e : envs)
        ev.push_back(e.data());
    ev.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (fd >= 0) posix_spawn_file_actions_adddup2(&fa, fd, child_fd);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
    pid_t pid = -1;
    int err = posix_spawnp(&pid, av[0], &fa, &attr, av.data(), ev.data());
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    REQUIRE_MESSAGE(err == 0, "spawn ", argv[0], ": ", std::strerror(err));
    return pid;
}

// Sends one datagram to `path` from this process (a foreign sender for the service).
bool send_datagram(const std::string &path, const std::string &text) {
    int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
    ssize_t n =
        ::sendto(fd, text.data(), text.size(), 0, reinterpret_cast<sockaddr *>(&a), sizeof a);
    ::close(fd);
    return n == static_cast<ssize_t>(text.size());
}

struct Inbox {
    std::vector<std::pair<Message, int>> messages;
    std::vector<std::pair<int, std::string>> refused;
    int main_pid = -1;

    NotifySocket::Callbacks callbacks() {
        return {[this](int pid) { return vigil::notify::in_service(pid, main_pid); },
                [this](const Message &m, int pid) { messages.emplace_back(m, pid); },
                [this](int pid, const std::string &why) { refused.emplace_back(pid, why); }};
    }
};

} // namespace

TEST_SUITE("notify") {
    TEST_CASE("notify socket: READY=1 from the service's own process is accepted") {
        TestLoop t;
        TempDir dir;
        TestReaper reaper{&t.loop, [](int, int) { return false; }};
        Inbox in;
        REQUIRE(vigil::notify::prepare_socket_dir(dir.path + "/notify").empty());
        auto path = vigil::notify::socket_path(dir.path + "/notify", "web");
        auto r = NotifySocket::open(&t.loop, path, in.callbacks());
        REQUIRE_MESSAGE(r.socket, r.error);
        struct stat st {};
        REQUIRE(::stat(path.c_str(), &st) == 0);
        CHECK(S_ISSOCK(st.st_mode));
        CHECK((st.st_mode & 07777) == 0666);
        CHECK(r.socket->env() == std::pair<std::string, std::string>{"NOTIFY_SOCKET", path});

        // The service's main process itself sends (python3 plays a daemon speaking the protocol).
        in.main_pid = spawn_service(
            {"python3", "-c",
             "import os,socket; s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
             "s.sendto(b'READY=1\\nSTATUS=up and running', os.environ['NOTIFY_SOCKET'])"},
            {"NOTIFY_SOCKET=" + path});
        REQUIRE(t.run_until([&] { return !in.messages.empty(); }, 5000));
        CHECK(in.messages[0].first.ready);
        CHECK(in.messages[0].first.status == "up and running");
        CHECK(in.messages[0].second == in.main_pid);
        CHECK(in.refused.empty());
        CHECK(r.socket->accepted_total() == 1);
        REQUIRE(t.run_until([&] { return reaper.reaped.size() == 1; }, 5000));

        r.socket.reset();
        CHECK(::access(path.c_str(), F_OK) != 0); // the socket file is removed
    }

    TEST_CASE("notify socket: a foreign sender is refused") {
        TestLoop t;
        TempDir dir;
        TestReaper reaper{&t.loop, [](int, int) { return false; }};
        Inbox in;
        auto path = dir.path + "/web.sock";
        auto r = NotifySocket::open(&t.loop, path, in.callbacks());
        REQUIRE_MESSAGE(r.socket, r.error);
        // The service is some other process: this test process is not in its session.
        in.main_pid = spawn_service({"sleep", "5"}, {});
        REQUIRE(send_datagram(path, "READY=1"));
        REQUIRE(t.run_until([&] { return !in.refused.empty(); }, 3000));
        CHECK(in.messages.empty());
        CHECK(in.refused[0].first == ::getpid());
        CHECK(in.refused[0].second.find("not part of the service") != std::string::npos);
        CHECK(r.socket->refused_total() == 1);
        ::kill(in.main_pid, SIGKILL);
        REQUIRE(t.run_until([&] { return reaper.reaped.size() == 1; }, 3000));
    }

    TEST_CASE("notify socket: oversized datagrams are refused, the next one is read") {
        TestLoop t;
        TempDir dir;
        Inbox in;
        in.main_pid = ::getpid(); // this time the test process is the service
        auto path = dir.path + "/big.sock";
        auto r = NotifySocket::open(&t.loop, path, in.callbacks());
        REQUIRE_MESSAGE(r.socket, r.error);
        REQUIRE(send_datagram(path, "STATUS=" + std::string(5000, 'x')));
        REQUIRE(send_datagram(path, "READY=1"));
        REQUIRE(t.run_until([&] { return !in.messages.empty(); }, 3000));
        REQUIRE(in.refused.size() == 1);
        CHECK(in.refused[0].second == "message longer than 4096 bytes");
        CHECK(in.messages[0].first.ready);
    }

    TEST_CASE("notify socket: Debian's systemd-notify --ready, from a service's shell script") {
        if (::access("/usr/bin/systemd-notify", X_OK) != 0) {
            MESSAGE("systemd-notify not installed (apt-get install systemd): skipped");
            return;
        }
        TestLoop t;
        TempDir dir;
        TestReaper reaper{&t.loop, [](int, int) { return false; }};
        Inbox in;
        auto path = dir.path + "/db.sock";
        auto r = NotifySocket::open(&t.loop, path, in.callbacks());
        REQUIRE_MESSAGE(r.socket, r.error);
        auto t0 = uv_hrtime();
        in.main_pid =
            spawn_service({"sh", "-c", "systemd-notify --ready --status='accepting connections'"},
                          {"NOTIFY_SOCKET=" + path});
        REQUIRE(
            t.run_until([&] { return !in.messages.empty() && reaper.reaped.size() == 1; }, 8000));
        CHECK(in.messages[0].first.ready);
        CHECK(in.messages[0].first.status == "accepting connections");
        // Its BARRIER=1 is attributed too: its fd is closed only after the sender was checked,
        // while systemd-notify still waits for that closing (it used to be refused when
        // systemd-notify had exited and been reaped before the check).
        REQUIRE(in.messages.size() == 2);
        CHECK(in.messages[1].first.barrier);
        CHECK(in.refused.empty());
        // systemd-notify exits 0 only if its BARRIER=1 fd was closed (else it waits 5 s and
        // fails with "Failed to invoke barrier").
        CHECK(WIFEXITED(reaper.reaped[0].wstatus));
        CHECK(WEXITSTATUS(reaper.reaped[0].wstatus) == 0);
        CHECK((uv_hrtime() - t0) / 1'000'000 < 3000);
    }

    TEST_CASE("notify socket: systemd-notify as an unprivileged user is attributed by session") {
        // Without CAP_SYS_ADMIN systemd-notify sends its own pid (not its parent's): the
        // sender is then a grandchild, accepted because it runs in the service's session.
        if (::getuid() != 0 || ::access("/usr/bin/systemd-notify", X_OK) != 0 ||
            ::access("/usr/bin/setpriv", X_OK) != 0) {
            MESSAGE("needs root, systemd-notify and setpriv: skipped");
            return;
        }
        TestLoop t;
        TempDir dir;
        REQUIRE(::chmod(dir.path.c_str(), 0755) == 0);
        TestReaper reaper{&t.loop, [](int, int) { return false; }};
        Inbox in;
        auto path = dir.path + "/db.sock";
        auto r = NotifySocket::open(&t.loop, path, in.callbacks());
        REQUIRE_MESSAGE(r.socket, r.error);
        in.main_pid = spawn_service({"sh", "-c",
                                     "setpriv --reuid=65534 --regid=65534 --clear-groups "
                                     "systemd-notify --ready; exit $?"},
                                    {"NOTIFY_SOCKET=" + path});
        REQUIRE(
            t.run_until([&] { return !in.messages.empty() && reaper.reaped.size() == 1; }, 8000));
        CHECK(in.messages[0].first.ready);
        CHECK(in.messages[0].second != in.main_pid); // systemd-notify's own pid
        CHECK(in.refused.empty());
        CHECK(WEXITSTATUS(reaper.reaped[0].wstatus) == 0);
    }

#ifdef VIGIL_SD_NOTIFY_HELPER
    TEST_CASE("notify socket: a program linked with libsystemd's sd_notify") {
        TestLoop t;
        TempDir dir;
        TestReaper reaper{&t.loop, [](int, int) { return false; }};
        Inbox in;
        auto path = dir.path + "/api.sock";
        auto r = NotifySocket::open(&t.loop, path, in.callbacks());
        REQUIRE_MESSAGE(r.socket, r.error);
        in.main_pid = spawn_service({VIGIL_SD_NOTIFY_HELPER, "READY=1\nWATCHDOG=1"},
                                    {"NOTIFY_SOCKET=" + path});
        REQUIRE(
            t.run_until([&] { return !in.messages.empty() && reaper.reaped.size() == 1; }, 5000));
        CHECK(in.messages[0].first.ready);
        CHECK(in.messages[0].first.watchdog);
        CHECK(WEXITSTATUS(reaper.reaped[0].wstatus) == 0);
    }
#endif

    TEST_CASE("notify socket: errors are values") {
        TestLoop t;
        auto r = NotifySocket::open(&t.loop, "/proc/vigil-no-such-dir/x/y.sock", {});
        CHECK_FALSE(r.socket);
        CHECK(r.error == "bind /proc/vigil-no-such-dir/x/y.sock: No such file or directory");
        auto r2 = NotifySocket::open(&t.loop, "/tmp/" + std::string(120, 'a'), {});
        CHECK_FALSE(r2.socket);
        CHECK(r2.error.find("path longer than") != std::string::npos);
    }

    TEST_CASE("ready fd: a newline written to fd N makes the service ready") {
        TestLoop t;
        TestReaper reaper{&t.loop, [](int, int) { return false; }};
        int fired = 0;
        auto r = ReadyFd::open(&t.loop, [&] { ++fired; });
        REQUIRE_MESSAGE(r.ready_fd, r.error);
        int pid =
            spawn_service({"sh", "-c", "printf 'rea' >&5; sleep 0.05; echo dy >&5; sleep 0.1"}, {},
                          r.ready_fd->child_end(), 5);
        r.ready_fd->close_child_end();
        CHECK(r.ready_fd->child_end() == -1);
        REQUIRE(t.run_until([&] { return fired == 1; }, 3000));
        CHECK(r.ready_fd->fired());
        REQUIRE(t.run_until([&] { return reaper.reaped.size() == 1; }, 3000));
        CHECK(reaper.reaped[0].pid == pid);
        CHECK(fired == 1);
    }

    TEST_CASE("ready fd: EOF without a newline is not ready, and stops polling") {
        TestLoop t;
        TestReaper reaper{&t.loop, [](int, int) { return false; }};
        int fired = 0;
        auto r = ReadyFd::open(&t.loop, [&] { ++fired; });
        REQUIRE_MESSAGE(r.ready_fd, r.error);
        spawn_service({"sh", "-c", "printf 'no newline' >&5"}, {}, r.ready_fd->child_end(), 5);
        r.ready_fd->close_child_end();
        REQUIRE(t.run_until([&] { return r.ready_fd->eof(); }, 3000));
        CHECK(fired == 0);
        REQUIRE(t.run_until([&] { return reaper.reaped.size() == 1; }, 3000));
        CHECK_FALSE(uv_loop_alive(&t.loop)); // no poll left (the reaper is unref'd)
    }

    TEST_CASE("watchdog: pings keep it quiet; a missed interval fires once") {
        TestLoop t;
        int missed = 0;
        Watchdog w{&t.loop, 80ms, [&] { ++missed; }};
        CHECK_FALSE(uv_loop_alive(&t.loop)); // constructed but not started: nothing armed
        w.start();
        CHECK(w.armed());
        // Ping every 20 ms for 300 ms: no miss.
        uv_timer_t pinger;
        uv_timer_init(&t.loop, &pinger);
        pinger.data = &w;
        uv_timer_start(
            &pinger, [](uv_timer_t *p) { static_cast<Watchdog *>(p->data)->ping(); }, 20, 20);
        t.run_for(300);
        CHECK(missed == 0);
        uv_timer_stop(&pinger);
        auto t0 = uv_hrtime();
        REQUIRE(t.run_until([&] { return missed == 1; }, 2000));
        auto ms = (uv_hrtime() - t0) / 1'000'000;
        CHECK(ms >= 50); // the last ping was at most 20 ms before
        CHECK(ms < 1000);
        CHECK_FALSE(w.armed());
        t.run_for(200);
        CHECK(missed == 1); // once, until start() again
        uv_close(reinterpret_cast<uv_handle_t *>(&pinger), nullptr);
    }

    TEST_CASE("callbacks may destroy their watchdog and notify socket") {
        TestLoop t;
        TempDir dir;
        std::unique_ptr<Watchdog> w;
        std::string said;
        w = std::make_unique<Watchdog>(&t.loop, 10ms, [&, keep = std::string(64, 'w')] {
            w.reset();
            said = keep; // captures still usable after the owner is gone
        });
        w->start();
        REQUIRE(t.run_until([&] { return !w; }, 2000));
        CHECK(said.size() == 64);

        Inbox in;
        in.main_pid = ::getpid();
        auto path = dir.path + "/x.sock";
        auto cb = in.callbacks();
        std::unique_ptr<NotifySocket> sock;
        cb.message = [&, keep = std::string(64, 'm')](const Message &, int) {
            sock.reset();
            said = keep;
        };
        auto r = NotifySocket::open(&t.loop, path, cb);
        REQUIRE_MESSAGE(r.socket, r.error);
        sock = std::move(r.socket);
        REQUIRE(send_datagram(path, "READY=1"));
        REQUIRE(send_datagram(path, "READY=1")); // a second datagram in the same batch
        REQUIRE(t.run_until([&] { return !sock; }, 2000));
        CHECK(said == std::string(64, 'm'));
    }

    TEST_CASE("watchdog: WATCHDOG_USEC=0 disables, stop() disarms") {
        TestLoop t;
        int missed = 0;
        Watchdog w{&t.loop, 30ms, [&] { ++missed; }};
        w.start();
        w.set_interval(0ms);
        CHECK_FALSE(w.armed());
        t.run_for(100);
        CHECK(missed == 0);
        w.set_interval(30ms);
        CHECK(w.armed());
        w.stop();
        t.run_for(100);
        CHECK(missed == 0);
        CHECK_FALSE(uv_loop_alive(&t.loop));
    }

    TEST_CASE("notify socket folder: 0711, and only one vigild's user may have made it") {
        TempDir dir;
        std::string d = dir.path + "/notify";
        ::umask(077);
        CHECK(vigil::notify::prepare_socket_dir(d) == "");
        ::umask(022);
        struct stat st {};
        REQUIRE(::lstat(d.c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0711);
        // A folder of ours left by an earlier run gets the mode back.
        REQUIRE(::chmod(d.c_str(), 0777) == 0);
        CHECK(vigil::notify::prepare_socket_dir(d) == "");
        REQUIRE(::lstat(d.c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0711);
        // A symlink planted in its place, a file, another user's folder: refused.
        std::string link = dir.path + "/link";
        REQUIRE(::symlink(d.c_str(), link.c_str()) == 0);
        CHECK(vigil::notify::prepare_socket_dir(link) == link + ": not a directory");
        CHECK(vigil::notify::prepare_socket_dir("/dev/null") == "/dev/null: not a directory");
        if (::geteuid() == 0) {
            REQUIRE(::chown(d.c_str(), 65534, 65534) == 0);
            CHECK(vigil::notify::prepare_socket_dir(d) ==
                  d + ": owned by uid 65534, not by vigild's user (uid 0)");
        }
        CHECK(vigil::notify::prepare_socket_dir("/proc/vigil-no-such-dir/x") ==
              "mkdir /proc/vigil-no-such-dir/x: No such file or directory");
    }

    TEST_CASE("notify socket: a lone BARRIER=1 nobody can be credited with is dropped quietly") {
        TestLoop t;
        TempDir dir;
        Inbox in;
        in.main_pid = 999999999; // the test process is a foreign sender
        auto path = dir.path + "/q.sock";
        auto r = NotifySocket::open(&t.loop, path, in.callbacks());
        REQUIRE_MESSAGE(r.socket, r.error);
        // A barrier with a pipe end, as sd_notify_barrier(3) sends it: the fd is closed (the
        // read end sees POLLHUP) even though the sender is refused.
        int p[2];
        REQUIRE(::pipe(p) == 0);
        int sock = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
        char text[] = "BARRIER=1";
        iovec iov{text, sizeof text - 1};
        alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))]{};
        msghdr mh{};
        mh.msg_name = &a;
        mh.msg_namelen = sizeof a;
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = ctrl;
        mh.msg_controllen = sizeof ctrl;
        cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &p[1], sizeof(int));
        REQUIRE(::sendmsg(sock, &mh, 0) > 0);
        ::close(sock);
        ::close(p[1]);
        REQUIRE(send_datagram(path, "READY=1")); // this one asks for something: reported
        REQUIRE(t.run_until([&] { return r.socket->refused_total() == 2; }, 3000));
        REQUIRE(in.refused.size() == 1);
        CHECK(in.refused[0].second.find("not part of the service") != std::string::npos);
        CHECK(in.messages.empty());
        char byte;
        CHECK(::read(p[0], &byte, 1) == 0); // EOF: every copy of the write end is closed
        ::close(p[0]);
    }

    TEST_CASE("process watch: the end of a process that is not our child") {
        TestLoop t;
        TestReaper reaper{&t.loop, [](int, int) { return false; }};
        // sh (our child) starts sleep (its child, not ours), prints its pid and reaps it.
        int out[2];
        REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
        spawn_service({"sh", "-c", "sleep 30 & echo $!; wait $!; exit 0"}, {}, out[1], 1);
        ::close(out[1]);
        char buf[32]{};
        REQUIRE(::read(out[0], buf, sizeof buf - 1) > 0);
        ::close(out[0]);
        int grandchild = std::atoi(buf);
        REQUIRE(grandchild > 0);
        int ended = 0;
        auto w = ProcessWatch::open(&t.loop, grandchild, [&] { ++ended; });
        REQUIRE_MESSAGE(w.watch, w.error);
        CHECK(w.watch->pid() == grandchild);
        t.run_for(100);
        CHECK(ended == 0);
        CHECK_FALSE(vigil::notify::ended_status(grandchild)); // still running
        ::kill(grandchild, SIGKILL);
        REQUIRE(t.run_until([&] { return ended == 1; }, 3000));
        REQUIRE(t.run_until([&] { return reaper.reaped.size() == 1; }, 3000)); // sh
        CHECK(ended == 1);
        w.watch.reset();
        auto gone = ProcessWatch::open(&t.loop, grandchild, [] {});
        CHECK_FALSE(gone.watch);
        CHECK(gone.error == "pidfd_open " + std::to_string(grandchild) + ": No such process");
    }

    TEST_CASE("process watch: a zombie's status, and MAINPID= checks") {
        TestLoop t;
        TestReaper reaper{&t.loop, [](int, int) { return false; }};
        // A child killed by SIGTERM, not yet reaped: a zombie whose status /proc shows us.
        int pid = spawn_service({"sleep", "30"}, {});
        CHECK(vigil::notify::main_pid_refusal(pid, pid) == "");
        CHECK(vigil::notify::main_pid_refusal(::getpid(), pid) == "that is vigild itself");
        CHECK(vigil::notify::main_pid_refusal(999999999, pid) == "no such process");
        CHECK(vigil::notify::main_pid_refusal(pid, pid + 1).find("not part of the service") !=
              std::string::npos);
        ::kill(pid, SIGTERM);
        // Poll /proc until it is a zombie (the reaper only runs inside the loop, not here).
        std::optional<int> status;
        for (int i = 0; i < 300 && !status; ++i) {
            status = vigil::notify::ended_status(pid);
            if (!status) ::usleep(10'000);
        }
        REQUIRE(status);
        CHECK(WIFSIGNALED(*status));
        CHECK(WTERMSIG(*status) == SIGTERM);
        CHECK(vigil::notify::main_pid_refusal(pid, pid) == "the process has exited");
        REQUIRE(t.run_until([&] { return reaper.reaped.size() == 1; }, 3000));
        CHECK(reaper.reaped[0].wstatus == *status);
    }
}

// vigild's own sd_notify socket (vigil/notify/manager.hpp) against real sockets: what a
// manager bound at a path or an abstract name receives, and that a manager that is gone, or
// does not read, never blocks the sender. Also take_manager_env() on this process's own
// environment.
#include <doctest/doctest.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <string>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vigil/notify/manager.hpp"

using namespace vigil::notify;

namespace {

// A manager's socket: bound, non-blocking for the test's reads, SO_PASSCRED as systemd's.
struct Receiver {
    int fd = -1;
    std::string path; // unlinked at the end when it is one
    explicit Receiver(const ManagerAddress &a, std::string p = {}) : path(std::move(p)) {
        fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        const int on = 1;
        ::setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on);
        REQUIRE(::bind(fd, reinterpret_cast<const sockaddr *>(&a.addr), a.length) == 0);
    }
    ~Receiver() {
        ::close(fd);
        if (!path.empty()) ::unlink(path.c_str());
    }
    // The next datagram and its sender's pid (SCM_CREDENTIALS), or "" when none is queued.
    std::string next(int *pid = nullptr) {
        char buf[8192];
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
        iovec iov{buf, sizeof buf};
        msghdr mh{};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = control;
        mh.msg_controllen = sizeof control;
        const ssize_t n = ::recvmsg(fd, &mh, MSG_DONTWAIT);
        if (n < 0) return "";
        for (cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS && pid) {
                ucred cred{};
                std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
                *pid = cred.pid;
            }
        return std::string(buf, static_cast<std::size_t>(n));
    }
};

std::string unique_name(const char *what) {
    return std::string("vigil-test-") + what + "-" + std::to_string(::getpid());
}

} // namespace

TEST_SUITE("notify_sys") {
    TEST_CASE("a datagram reaches a manager bound at an abstract name, from vigild's pid") {
        const std::string name = "@" + unique_name("abstract");
        auto addr = parse_manager_address(name, nullptr);
        REQUIRE(addr);
        Receiver r(*addr);
        auto s = ManagerSocket::open(*addr, nullptr);
        REQUIRE(s);
        // Non-blocking and close-on-exec: no service inherits it, no send waits.
        CHECK((::fcntl(s->fd(), F_GETFL) & O_NONBLOCK) != 0);
        CHECK((::fcntl(s->fd(), F_GETFD) & FD_CLOEXEC) != 0);
        CHECK(s->send(ready_message("1 service running")) == 0);
        int pid = 0;
        CHECK(r.next(&pid) == "READY=1\nSTATUS=1 service running");
        CHECK(pid == ::getpid()); // what NotifyAccess=main checks
    }

    TEST_CASE("a datagram reaches a manager bound at a path") {
        char cwd[4096];
        REQUIRE(::getcwd(cwd, sizeof cwd));
        std::string path = std::string(cwd) + "/" + unique_name("path") + ".sock";
        if (path.size() > 100) path = "/run/" + unique_name("path") + ".sock";
        ::unlink(path.c_str());
        auto addr = parse_manager_address(path, nullptr);
        REQUIRE(addr);
        Receiver r(*addr, path);
        auto s = ManagerSocket::open(*addr, nullptr);
        REQUIRE(s);
        CHECK(s->send(watchdog_message()) == 0);
        CHECK(s->send(stopping_message("")) == 0);
        CHECK(r.next() == "WATCHDOG=1");
        CHECK(r.next() == "STOPPING=1");
    }

    TEST_CASE("no manager, a manager that does not read: an errno, never a block") {
        auto gone = parse_manager_address("@" + unique_name("nobody"), nullptr);
        REQUIRE(gone);
        auto s = ManagerSocket::open(*gone, nullptr);
        REQUIRE(s);
        CHECK(s->send(watchdog_message()) == ECONNREFUSED);
        auto missing = parse_manager_address("/nonexistent-vigil-dir/notify", nullptr);
        auto m = ManagerSocket::open(*missing, nullptr);
        CHECK(m->send(watchdog_message()) == ENOENT);

        auto full = parse_manager_address("@" + unique_name("full"), nullptr);
        Receiver r(*full);
        auto f = ManagerSocket::open(*full, nullptr);
        int err = 0;
        int sent = 0;
        // A receiver's queue holds net.unix.max_dgram_qlen datagrams (512 by default).
        for (int i = 0; i < 100'000 && err == 0; ++i)
            if ((err = f->send(watchdog_message())) == 0) ++sent;
        CHECK(err == EAGAIN);
        CHECK(sent > 0);
        CHECK(r.next() == "WATCHDOG=1"); // what was queued is intact
        CHECK(f->send(std::string(max_message + 1, 'x')) == EMSGSIZE);
    }

    TEST_CASE("take_manager_env reads the manager's variables and removes them all") {
        const std::string name = "@" + unique_name("env");
        ::setenv("NOTIFY_SOCKET", name.c_str(), 1);
        ::setenv("WATCHDOG_USEC", "2000000", 1);
        ::setenv("WATCHDOG_PID", std::to_string(::getpid()).c_str(), 1);
        ::setenv("LISTEN_FDS", "2", 1);
        ::setenv("LISTEN_PID", "1", 1);
        ::setenv("LISTEN_FDNAMES", "a:b", 1);
        ::setenv("VIGIL_TEST_KEPT", "yes", 1);
        ManagerEnv e = take_manager_env();
        CHECK(e.socket == name);
        CHECK(e.address);
        CHECK(e.watchdog_usec == std::optional<std::uint64_t>(2'000'000));
        for (const char *var : manager_env_vars)
            CHECK_MESSAGE(std::getenv(var) == nullptr, var);
        CHECK(std::string(std::getenv("VIGIL_TEST_KEPT")) == "yes");
        ::unsetenv("VIGIL_TEST_KEPT");
        // Taken once: a second look finds nothing.
        CHECK_FALSE(take_manager_env().address);
    }
}

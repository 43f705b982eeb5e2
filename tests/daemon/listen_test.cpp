// listen_test.cpp: the sockets the shell holds for services (`listen`, src/daemon/listening.cpp)
// on the fake OS: bound once, passed to every spawn at fd 3.. with the socket-activation
// variables, kept across restarts, and across reload kept, bound or closed as the units say.
#include <doctest/doctest.h>

#include <algorithm>

#include "fake_os.hpp"

using namespace vigil;
using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

// The fake socket descriptor for `what` (ListenSpec::describe()), -1 when none is open; with
// several (reuseport), the n-th.
int socket_of(const FakeOs &os, const std::string &what, int n = 0) {
    for (const auto &[fd, d] : os.sockets)
        if (d == what && n-- == 0) return fd;
    return -1;
}

std::string env_of(const PendingSpawn &s, const std::string &key) {
    for (const auto &[k, v] : s.extras.env)
        if (k == key) return v;
    return "(unset)";
}

// The descriptors a spawn installs at 3.. (fd in vigild by target).
std::map<int, int> fds_of(const PendingSpawn &s) {
    std::map<int, int> out;
    for (const auto &[src, target] : s.extras.fds)
        out[target] = src;
    return out;
}

const PendingSpawn &last_spawn(const FakeOs &os, const std::string &unit) {
    for (auto it = os.spawns.rbegin(); it != os.spawns.rend(); ++it)
        if (env_of(*it, "VIGIL_UNIT") == unit) return *it;
    FAIL("no spawn of " << unit);
    throw 0;
}

const std::string web = svc_with(R"("instances": 2, "listen": [
    {"tcp": "0.0.0.0:8080"}, {"unix": "/run/web.sock", "name": "ctl"},
    {"tcp": "0.0.0.0:9090", "reuseport": true}])");

} // namespace

TEST_SUITE("daemon") {

    TEST_CASE("listen: instances share a socket (reuseport: one each), at fd 3.. with "
              "LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID, in every incarnation") {
        Harness h({{"web", web}, {"plain", svc_with(R"("env": {"A": "1"})")}});
        CHECK(h.os.binds == 4); // 8080 and the unix socket once, 9090 once per instance
        const int shared = socket_of(h.os, "tcp 0.0.0.0:8080");
        const int unix_fd = socket_of(h.os, "unix /run/web.sock");
        const std::set<int> own{socket_of(h.os, "tcp 0.0.0.0:9090", 0),
                                socket_of(h.os, "tcp 0.0.0.0:9090", 1)};
        REQUIRE(shared >= 0);
        REQUIRE(unix_fd >= 0);
        std::set<int> seen_own;
        for (const char *name : {"web@1", "web@2"}) {
            const PendingSpawn &s = last_spawn(h.os, name);
            const auto fds = fds_of(s);
            CHECK(fds.at(3) == shared);
            CHECK(fds.at(4) == unix_fd);
            CHECK(own.contains(fds.at(5)));
            seen_own.insert(fds.at(5));
            CHECK(env_of(s, "LISTEN_FDS") == "3");
            CHECK(env_of(s, "LISTEN_FDNAMES") == "web:ctl:web");
            CHECK(s.extras.listen_pid);
        }
        CHECK(seen_own == own); // each instance its own reuseport socket
        // A unit without `listen` gets nothing of it.
        const PendingSpawn &p = last_spawn(h.os, "plain");
        CHECK(p.extras.fds.empty());
        CHECK(env_of(p, "LISTEN_FDS") == "(unset)");
        CHECK_FALSE(p.extras.listen_pid);
        // A restart: the same sockets, none bound again, none closed.
        const auto before = fds_of(last_spawn(h.os, "web@1"));
        const std::size_t spawns = h.os.spawns.size();
        const int first = h.os.pid_of("web@1");
        h.os.exit(first, 1);
        h.os.close_output(first);
        h.os.settle();
        h.os.advance(1s);
        REQUIRE(h.os.spawns.size() > spawns);
        CHECK(fds_of(last_spawn(h.os, "web@1")) == before);
        CHECK(h.os.binds == 4);
        CHECK(h.os.sockets.size() == 4);
    }

    TEST_CASE("listen: a socket that cannot be bound at start-up: nothing starts, nothing is "
              "left open, vigild exits with 1") {
        Harness h({{"a", svc_with(R"("listen": [{"tcp": "0.0.0.0:81"}])")},
                   {"b", svc_with(R"("listen": [{"tcp": "0.0.0.0:80"}])")}},
                  true, [](FakeOs &os) { os.refuse_bind.insert("tcp 0.0.0.0:80"); });
        CHECK(h.shell->exit_status() == 1);
        CHECK(h.os.spawns.empty());
        CHECK(h.os.sockets.empty());
        CHECK(h.os.has_journal("listen tcp 0.0.0.0:80: bind: Address already in use"));
    }

    TEST_CASE("listen: reload keeps an unchanged entry's socket, binds a new one before the "
              "restart, listens again with a new backlog, closes a removed unit's once it is "
              "down") {
        Harness h({{"a", svc_with(R"("listen": [{"tcp": "0.0.0.0:8080"},
                                                {"tcp": "0.0.0.0:8081"}])")},
                   {"b", svc_with(R"("stop": {"timeout": "5s"},
                                     "listen": [{"tcp": "0.0.0.0:9000"}])")}});
        const int kept = socket_of(h.os, "tcp 0.0.0.0:8080");
        const int b_pid = h.os.pid_of("b");
        const int a_pid = h.os.pid_of("a");
        h.os.procs[b_pid].ignores_term = true;
        h.os.next_load =
            load_units({{"a", svc_with(R"("listen": [{"tcp": "0.0.0.0:8080", "backlog": 16},
                                          {"tcp": "0.0.0.0:8082"}])")}});
        bool answered = false;
        h.shell->reload("test", [&](const daemon::Shell::ReloadOutcome &o) {
            answered = true;
            CHECK(o.diagnostics.empty());
        });
        h.os.finish_load();
        REQUIRE(h.os.binding()); // 8082, off the loop, before anything changes
        CHECK_FALSE(answered);
        CHECK(socket_of(h.os, "tcp 0.0.0.0:8081") >= 0);
        h.os.finish_bind();
        CHECK(answered);
        CHECK(socket_of(h.os, "tcp 0.0.0.0:8080") == kept);
        CHECK(h.os.relistened == std::map<int, int>{{kept, 16}});
        CHECK(socket_of(h.os, "tcp 0.0.0.0:8081") == -1); // no unit lists it
        const int added = socket_of(h.os, "tcp 0.0.0.0:8082");
        REQUIRE(added >= 0);
        // b is stopping (it ignores SIGTERM): its socket stays until it is down.
        CHECK(socket_of(h.os, "tcp 0.0.0.0:9000") >= 0);
        h.os.close_output(a_pid); // a restarts (its listen changed)
        h.os.settle();
        REQUIRE(h.os.pid_of("a") != a_pid);
        const auto fds = fds_of(last_spawn(h.os, "a"));
        CHECK(fds.at(3) == kept);
        CHECK(fds.at(4) == added);
        h.os.advance(5s); // b's stop timeout: SIGKILL
        h.os.close_output(b_pid);
        h.os.settle();
        CHECK(socket_of(h.os, "tcp 0.0.0.0:9000") == -1);
        CHECK(h.os.sockets.size() == 2);
    }

    TEST_CASE("listen: a reload whose new socket cannot be bound is refused; the running "
              "configuration and its sockets are kept") {
        Harness h({{"a", svc_with(R"("listen": [{"tcp": "0.0.0.0:8080"}])")}});
        const int kept = socket_of(h.os, "tcp 0.0.0.0:8080");
        const int pid = h.os.pid_of("a");
        h.os.refuse_bind.insert("tcp 0.0.0.0:8082");
        h.os.next_load = load_units({{"a", svc_with(R"("listen": [{"tcp": "0.0.0.0:8080"},
                                                                   {"tcp": "0.0.0.0:8081"},
                                                                   {"tcp": "0.0.0.0:8082"}])")}});
        std::vector<std::string> diagnostics;
        h.shell->reload(
            "test", [&](const daemon::Shell::ReloadOutcome &o) { diagnostics = o.diagnostics; });
        h.os.finish_load();
        h.os.finish_bind();
        REQUIRE(diagnostics.size() == 1);
        CHECK(diagnostics[0] == "listen tcp 0.0.0.0:8082: bind: Address already in use");
        CHECK(h.os.sockets == std::map<int, std::string>{{kept, "tcp 0.0.0.0:8080"}});
        CHECK(h.os.pid_of("a") == pid); // not restarted
        CHECK(h.status("a").state == core::ChildState::Running);
    }
}

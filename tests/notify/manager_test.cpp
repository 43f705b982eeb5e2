// vigild's own sd_notify (vigil/notify/manager.hpp), the pure parts: the manager's address,
// its variables, and the datagrams, each read back by vigil's own parser (message.hpp), which
// reads them as systemd does.
#include <doctest/doctest.h>

#include <cstddef>
#include <map>
#include <string>

#include "vigil/notify/manager.hpp"
#include "vigil/notify/message.hpp"

using namespace vigil::notify;

namespace {

// getenv over a map.
struct Env {
    std::map<std::string, std::string> vars;
    const char *operator()(const char *name) const {
        auto it = vars.find(name);
        return it == vars.end() ? nullptr : it->second.c_str();
    }
};

ManagerEnv read(const std::map<std::string, std::string> &vars, int self = 1) {
    Env e{vars};
    return read_manager_env([&e](const char *n) { return e(n); }, self);
}

std::string sun_path_of(const ManagerAddress &a) {
    const std::size_t n = a.length - offsetof(sockaddr_un, sun_path);
    return std::string(a.addr.sun_path, n);
}

} // namespace

TEST_SUITE("notify") {
    TEST_CASE("NOTIFY_SOCKET: a path, or @ for an abstract name") {
        std::string error;
        auto path = parse_manager_address("/run/systemd/notify", &error);
        REQUIRE(path);
        CHECK(path->addr.sun_family == AF_UNIX);
        CHECK(sun_path_of(*path) == std::string("/run/systemd/notify\0", 20));
        auto abstract = parse_manager_address("@vigil/manager", &error);
        REQUIRE(abstract);
        // The kernel takes the name's length from the address length: no terminator.
        CHECK(sun_path_of(*abstract) == std::string("\0vigil/manager", 14));
    }

    TEST_CASE("NOTIFY_SOCKET that is no address vigild can use") {
        std::string error;
        CHECK_FALSE(parse_manager_address("run/notify", &error));
        CHECK(error == "NOTIFY_SOCKET=run/notify: not an absolute path or an @abstract name");
        CHECK_FALSE(parse_manager_address("@", &error));
        CHECK_FALSE(parse_manager_address("", &error));
        CHECK_FALSE(parse_manager_address("vsock:2:1234", &error));
        // sun_path is 108 bytes: 107 and a terminator, or a NUL and 107.
        CHECK(parse_manager_address("/" + std::string(106, 'p'), &error));
        CHECK_FALSE(parse_manager_address("/" + std::string(107, 'p'), &error));
        CHECK(error.find("longer than a socket address holds") != std::string::npos);
        CHECK(parse_manager_address("@" + std::string(107, 'n'), &error));
        CHECK_FALSE(parse_manager_address("@" + std::string(108, 'n'), &error));
        // The message quotes a bounded part of a hostile value.
        CHECK_FALSE(parse_manager_address(std::string(5000, 'x'), &error));
        CHECK(error.size() < 250);
    }

    TEST_CASE("the manager's variables: a socket and a watchdog meant for vigild") {
        auto e =
            read({{"NOTIFY_SOCKET", "@m"}, {"WATCHDOG_USEC", "30000000"}, {"WATCHDOG_PID", "1"}});
        CHECK(e.address);
        CHECK(e.socket == "@m");
        CHECK(e.watchdog_usec == std::optional<std::uint64_t>(30'000'000));
        CHECK(e.problems.empty());
        // No WATCHDOG_PID: the watchdog is the receiver's (sd_watchdog_enabled(3)).
        CHECK(read({{"NOTIFY_SOCKET", "@m"}, {"WATCHDOG_USEC", "5"}}).watchdog_usec == 5u);
        // No manager at all: nothing, and nothing to say.
        auto none = read({});
        CHECK_FALSE(none.address);
        CHECK_FALSE(none.watchdog_usec);
        CHECK(none.problems.empty());
    }

    TEST_CASE("a watchdog that is not vigild's, or not a number, is not pinged, and said") {
        auto other =
            read({{"NOTIFY_SOCKET", "@m"}, {"WATCHDOG_USEC", "1000"}, {"WATCHDOG_PID", "77"}}, 42);
        CHECK(other.address);
        CHECK_FALSE(other.watchdog_usec);
        REQUIRE(other.problems.size() == 1);
        CHECK(other.problems[0].find("WATCHDOG_PID=77 is not vigild's pid (42)") == 0);
        for (const char *bad : {"0", "-5", "1e6", "", "12345678901234567890", " 5"}) {
            auto e = read({{"NOTIFY_SOCKET", "@m"}, {"WATCHDOG_USEC", bad}});
            CHECK_MESSAGE(!e.watchdog_usec, bad);
            CHECK_MESSAGE(e.problems.size() == 1, bad);
        }
        CHECK_FALSE(read({{"NOTIFY_SOCKET", "@m"}, {"WATCHDOG_USEC", "5"}, {"WATCHDOG_PID", "x"}})
                        .watchdog_usec);
        // A year at most: no overflow in milliseconds.
        CHECK(read({{"NOTIFY_SOCKET", "@m"}, {"WATCHDOG_USEC", "9999999999999999999"}})
                  .watchdog_usec == max_watchdog_usec);
        // Nowhere to ping: no watchdog.
        CHECK_FALSE(read({{"WATCHDOG_USEC", "1000"}}).watchdog_usec);
        auto bad_socket = read({{"NOTIFY_SOCKET", "notify"}, {"WATCHDOG_USEC", "1000"}});
        CHECK_FALSE(bad_socket.address);
        CHECK_FALSE(bad_socket.watchdog_usec);
        REQUIRE(bad_socket.problems.size() == 1);
        CHECK(bad_socket.problems[0].find("NOTIFY_SOCKET=notify: not an absolute path") == 0);
    }

    TEST_CASE("the datagrams read back as systemd reads them") {
        auto ready = parse_message(ready_message("12 services running"));
        CHECK(ready.ready);
        CHECK(ready.status == std::optional<std::string>("12 services running"));
        CHECK(ready_message("") == "READY=1");
        CHECK(reloading_message(123456789) == "RELOADING=1\nMONOTONIC_USEC=123456789");
        auto reloading = parse_message(reloading_message(123456789));
        CHECK(reloading.reloading);
        CHECK(reloading.errors.empty());
        auto stopping = parse_message(stopping_message("shutting down"));
        CHECK(stopping.stopping);
        CHECK(stopping.status == std::optional<std::string>("shutting down"));
        CHECK_FALSE(stopping.ready);
        CHECK(watchdog_message() == "WATCHDOG=1");
        CHECK(parse_message(watchdog_message()).watchdog);
        CHECK(parse_message(main_pid_message(4242)).main_pid == 4242);
        auto status = parse_message(status_message("3 of 4 services running"));
        CHECK(status.status == std::optional<std::string>("3 of 4 services running"));
        CHECK_FALSE(status.ready);
    }

    TEST_CASE("STATUS= text cannot start another assignment, and is bounded") {
        auto m = parse_message(status_message("web\nREADY=1\rSTOPPING=1"));
        CHECK_FALSE(m.ready);
        CHECK_FALSE(m.stopping);
        CHECK(m.status == std::optional<std::string>("web READY=1 STOPPING=1"));
        CHECK(status_text(std::string(1000, 'x')).size() == max_status);
        // Cut at a character boundary: "é" is two bytes; 255 ASCII bytes, then one é.
        const std::string text = std::string(max_status - 1, 'a') + "\xc3\xa9";
        CHECK(status_text(text) == std::string(max_status - 1, 'a'));
        CHECK(status_text(std::string("\x7f\t", 2)) == "  ");
    }
}

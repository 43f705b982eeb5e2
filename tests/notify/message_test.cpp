// sd_notify message and /proc/<pid>/stat parsing (pure).
#include <doctest/doctest.h>

#include "vigil/notify/message.hpp"
#include "vigil/notify/notify_socket.hpp"

using vigil::notify::parse_message;
using vigil::notify::parse_proc_stat;

TEST_SUITE("notify") {
    TEST_CASE("the keys vigil acts on") {
        auto m = parse_message("READY=1\nSTATUS=Serving 3 clients\nMAINPID=4242\nWATCHDOG=1\n"
                               "WATCHDOG_USEC=30000000\nERRNO=2\nRELOADING=1\nSTOPPING=1\n");
        CHECK(m.ready);
        CHECK(m.status == "Serving 3 clients");
        CHECK(m.main_pid == 4242);
        CHECK(m.watchdog);
        CHECK_FALSE(m.watchdog_trigger);
        CHECK(m.watchdog_usec == 30000000u);
        CHECK(m.errno_value == 2);
        CHECK(m.reloading);
        CHECK(m.stopping);
        CHECK(m.errors.empty());
        CHECK(m.ignored.empty());
    }

    TEST_CASE("no trailing newline, empty lines, last assignment wins") {
        auto m = parse_message("\n\nSTATUS=a\n\nSTATUS=b=c");
        CHECK(m.status == "b=c");
        CHECK_FALSE(m.ready);
    }

    TEST_CASE("WATCHDOG=trigger and BARRIER=1") {
        auto m = parse_message("WATCHDOG=trigger\nBARRIER=1");
        CHECK(m.watchdog_trigger);
        CHECK_FALSE(m.watchdog);
        CHECK(m.barrier);
    }

    TEST_CASE("malformed values are reported; the rest of the message stands") {
        auto m = parse_message("READY=yes\nMAINPID=abc\nMAINPID=0\nWATCHDOG_USEC=-5\nERRNO=\n"
                               "garbage\n=1\nWATCHDOG=2\nSTATUS=ok");
        CHECK_FALSE(m.ready);
        CHECK_FALSE(m.main_pid);
        CHECK_FALSE(m.watchdog_usec);
        CHECK_FALSE(m.errno_value);
        CHECK(m.status == "ok");
        REQUIRE(m.errors.size() == 8);
        CHECK(m.errors[0] == "READY=yes: expected 1");
        CHECK(m.errors[1] == "MAINPID=abc: not a pid");
        CHECK(m.errors[5] == "garbage: expected KEY=VALUE");
        CHECK(m.errors[7] == "WATCHDOG=2: expected 1 or trigger");
    }

    TEST_CASE("unknown keys are ignored, not errors") {
        auto m = parse_message("FDSTORE=1\nEXTEND_TIMEOUT_USEC=100\nREADY=1");
        CHECK(m.ready);
        CHECK(m.errors.empty());
        CHECK(m.ignored == std::vector<std::string>{"FDSTORE", "EXTEND_TIMEOUT_USEC"});
    }

    TEST_CASE("a message acts unless it is a lone barrier or ignored keys") {
        CHECK(parse_message("READY=1").acts());
        CHECK(parse_message("STATUS=").acts());
        CHECK(parse_message("MAINPID=7").acts());
        CHECK(parse_message("WATCHDOG=trigger").acts());
        CHECK(parse_message("WATCHDOG_USEC=0").acts());
        CHECK_FALSE(parse_message("BARRIER=1").acts());
        CHECK_FALSE(parse_message("BARRIER=1\nFDSTORE=1\nFDNAME=x").acts());
        CHECK_FALSE(parse_message("").acts());
        CHECK_FALSE(parse_message("MAINPID=abc").acts()); // malformed: nothing to act on
    }

    TEST_CASE("/proc/<pid>/stat: state and a zombie's exit code (field 52)") {
        // A zombie killed by SIGKILL (status 9), as Linux 6.x prints it.
        auto ids = parse_proc_stat(
            "4242 (sleep) Z 4240 4240 4240 0 -1 4227084 104 0 0 0 0 0 0 0 20 0 1 0 1234 0 0 "
            "18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 9\n");
        REQUIRE(ids);
        CHECK(ids->state == 'Z');
        CHECK(ids->ppid == 4240);
        CHECK(ids->exit_code == 9);
        auto running = parse_proc_stat("7 (x) S 1 7 7 0 -1 0 0\n"); // cut short: no field 52
        REQUIRE(running);
        CHECK(running->state == 'S');
        CHECK_FALSE(running->exit_code);
    }

    TEST_CASE("/proc/<pid>/stat: a command name with spaces and parentheses") {
        auto ids = parse_proc_stat("4242 (my (odd) name) S 1 4240 4200 34816 4242 4194560 ...\n");
        REQUIRE(ids);
        CHECK(ids->pid == 4242);
        CHECK(ids->ppid == 1);
        CHECK(ids->pgrp == 4240);
        CHECK(ids->session == 4200);
        CHECK_FALSE(parse_proc_stat(""));
        CHECK_FALSE(parse_proc_stat("12 (x) S 1"));
        CHECK_FALSE(parse_proc_stat("x (y) S 1 2 3"));
    }

    TEST_CASE("environment helpers") {
        CHECK(vigil::notify::socket_path("/run/vigil/notify", "web") ==
              "/run/vigil/notify/web.sock");
        auto env = vigil::notify::watchdog_env(std::chrono::milliseconds(30000), 77);
        REQUIRE(env.size() == 2);
        CHECK(env[0] == std::pair<std::string, std::string>{"WATCHDOG_USEC", "30000000"});
        CHECK(env[1] == std::pair<std::string, std::string>{"WATCHDOG_PID", "77"});
        CHECK(vigil::notify::watchdog_env(std::chrono::milliseconds(5)).size() == 1);
    }
}

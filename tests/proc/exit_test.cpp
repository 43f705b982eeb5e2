// exit_test.cpp: wait statuses and signal names (suite unit).
#include "vigil/proc/exit.hpp"

#include <doctest/doctest.h>

#include <csignal>

using namespace vigil::proc;

namespace {
// Builds wait statuses the way the kernel encodes them (see <bits/waitstatus.h>).
constexpr int exited(int code) {
    return (code & 0xff) << 8;
}
constexpr int killed(int sig, bool core = false) {
    return sig | (core ? 0x80 : 0);
}
} // namespace

TEST_SUITE("proc") {

    TEST_CASE("decode_wait_status and the shell exit code") {
        CHECK(decode_wait_status(exited(0)) == ExitStatus{false, 0, false});
        CHECK(decode_wait_status(exited(42)) == ExitStatus{false, 42, false});
        CHECK(decode_wait_status(killed(SIGKILL)) == ExitStatus{true, SIGKILL, false});
        CHECK(decode_wait_status(killed(SIGSEGV, true)) == ExitStatus{true, SIGSEGV, true});
        CHECK(shell_exit_code(exited(0)) == 0);
        CHECK(shell_exit_code(exited(255)) == 255);
        CHECK(shell_exit_code(killed(SIGKILL)) == 137);
        CHECK(shell_exit_code(killed(SIGTERM)) == 143);
    }

    TEST_CASE("describe_wait_status") {
        CHECK(describe_wait_status(exited(1)) == "exited with status 1");
        CHECK(describe_wait_status(killed(SIGKILL)) == "killed by signal SIGKILL");
        CHECK(describe_wait_status(killed(SIGSEGV, true)) ==
              "killed by signal SIGSEGV (core dumped)");
    }

    TEST_CASE("signal_name") {
        CHECK(std::string(signal_name(SIGTERM)) == "SIGTERM");
        CHECK(std::string(signal_name(SIGHUP)) == "SIGHUP");
        CHECK(std::string(signal_name(SIGWINCH)) == "SIGWINCH");
        CHECK(std::string(signal_name(SIGSYS)) == "SIGSYS");
        CHECK(std::string(signal_name(SIGRTMIN)) == "SIGRTMIN");
        CHECK(std::string(signal_name(SIGRTMIN + 3)) == "SIGRTMIN+3");
        CHECK(signal_name(0) == nullptr);
        CHECK(signal_name(-1) == nullptr);
        CHECK(signal_name(SIGRTMAX + 1) == nullptr);
        // Every classic signal round-trips.
        for (int s = 1; s < 32; ++s) {
            REQUIRE(signal_name(s) != nullptr);
            CHECK(signal_by_name(signal_name(s)) == s);
        }
        for (int s = SIGRTMIN; s <= SIGRTMAX; ++s)
            CHECK(signal_by_name(signal_name(s)) == s);
    }

    TEST_CASE("signal_by_name accepts prefixes, case and numbers") {
        CHECK(signal_by_name("SIGTERM") == SIGTERM);
        CHECK(signal_by_name("TERM") == SIGTERM);
        CHECK(signal_by_name("term") == SIGTERM);
        CHECK(signal_by_name("sigterm") == SIGTERM);
        CHECK(signal_by_name("15") == SIGTERM);
        CHECK(signal_by_name("9") == SIGKILL);
        CHECK(signal_by_name("SIGIOT") == SIGABRT);
        CHECK(signal_by_name("CLD") == SIGCHLD);
        CHECK(signal_by_name("RTMIN+2") == SIGRTMIN + 2);
        CHECK(signal_by_name("SIGRTMAX-1") == SIGRTMAX - 1);
        CHECK(signal_by_name("RTMAX") == SIGRTMAX);
        CHECK_FALSE(signal_by_name(""));
        CHECK_FALSE(signal_by_name("0"));
        CHECK_FALSE(signal_by_name("65"));
        CHECK_FALSE(signal_by_name("SIG"));
        CHECK_FALSE(signal_by_name("TERMX"));
        CHECK_FALSE(signal_by_name("15x"));
        CHECK_FALSE(signal_by_name("RTMIN+40"));
        CHECK_FALSE(signal_by_name("RTMIN-1"));
    }

} // TEST_SUITE

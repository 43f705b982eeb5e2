// exit_test.cpp: wait statuses, and the core's signal table against the OS (suite unit).
#include "vigil/proc/exit.hpp"

#include <doctest/doctest.h>

#include <csignal>
#include <string>
#include <utility>

#include "vigil/core/names.hpp"

using namespace vigil::proc;
namespace core = vigil::core;

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
        using vigil::core::ExitStatus;
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
        CHECK(describe_wait_status(killed(SIGKILL)) == "killed by SIGKILL");
        CHECK(describe_wait_status(killed(SIGSEGV, true)) == "killed by SIGSEGV (core dumped)");
    }

    // The one signal table lives in the pure core (vigil/core/names.hpp), which includes no OS
    // header: this is where it is held to <csignal> and to the run-time SIGRTMIN.
    TEST_CASE("the core's signal table is Linux's") {
        CHECK(core::sig_rtmin == SIGRTMIN);
        CHECK(core::sig_rtmax == SIGRTMAX);
        const std::pair<int, const char *> classic[] = {
            {SIGHUP, "SIGHUP"},       {SIGINT, "SIGINT"},       {SIGQUIT, "SIGQUIT"},
            {SIGILL, "SIGILL"},       {SIGTRAP, "SIGTRAP"},     {SIGABRT, "SIGABRT"},
            {SIGBUS, "SIGBUS"},       {SIGFPE, "SIGFPE"},       {SIGKILL, "SIGKILL"},
            {SIGUSR1, "SIGUSR1"},     {SIGSEGV, "SIGSEGV"},     {SIGUSR2, "SIGUSR2"},
            {SIGPIPE, "SIGPIPE"},     {SIGALRM, "SIGALRM"},     {SIGTERM, "SIGTERM"},
            {SIGSTKFLT, "SIGSTKFLT"}, {SIGCHLD, "SIGCHLD"},     {SIGCONT, "SIGCONT"},
            {SIGSTOP, "SIGSTOP"},     {SIGTSTP, "SIGTSTP"},     {SIGTTIN, "SIGTTIN"},
            {SIGTTOU, "SIGTTOU"},     {SIGURG, "SIGURG"},       {SIGXCPU, "SIGXCPU"},
            {SIGXFSZ, "SIGXFSZ"},     {SIGVTALRM, "SIGVTALRM"}, {SIGPROF, "SIGPROF"},
            {SIGWINCH, "SIGWINCH"},   {SIGIO, "SIGIO"},         {SIGPWR, "SIGPWR"},
            {SIGSYS, "SIGSYS"}};
        for (const auto &entry : classic) {
            // Named, not a structured binding: clang 14 cannot capture one (CAPTURE's lambda).
            const auto number = entry.first;
            const auto name = entry.second;
            CAPTURE(name);
            CHECK(core::signal_name(number) == name);
            CHECK(core::parse_signal(name) == number);
        }
        CHECK(core::parse_signal("SIGIOT") == SIGABRT);
        CHECK(core::parse_signal("CLD") == SIGCHLD);
        CHECK(core::parse_signal("POLL") == SIGIO);
        CHECK(core::signal_name(SIGRTMIN) == "SIGRTMIN");
        CHECK(core::signal_name(SIGRTMIN + 3) == "SIGRTMIN+3");
        CHECK(core::parse_signal("RTMIN+2") == SIGRTMIN + 2);
        CHECK(core::parse_signal("SIGRTMAX-1") == SIGRTMAX - 1);
        CHECK(core::parse_signal("RTMAX") == SIGRTMAX);
        // Every valid number round-trips; glibc's own two (32, 33) are not signals to name.
        for (int s = 1; s <= SIGRTMAX; ++s) {
            CAPTURE(s);
            const bool valid = s < 32 || s >= SIGRTMIN;
            CHECK(core::valid_signal(s) == valid);
            CHECK(core::parse_signal(std::to_string(s)).has_value() == valid);
            if (valid) CHECK(core::parse_signal(core::signal_name(s)) == s);
        }
        CHECK(core::signal_name(32) == "signal 32");
    }

    TEST_CASE("parse_signal accepts prefixes, case and numbers, and bounds every number") {
        CHECK(core::parse_signal("TERM") == SIGTERM);
        CHECK(core::parse_signal("term") == SIGTERM);
        CHECK(core::parse_signal("sigterm") == SIGTERM);
        CHECK(core::parse_signal("15") == SIGTERM);
        for (const char *bad :
             {"", "SIG", "SIGFOO", "TERMX", "15x", "0", "32", "33", "65", "999", "-15", "RTMIN+40",
              "RTMIN-1", "SIGRTMIN+99", "TERM ", "RTMIN+2147483647", "RTMAX-2147483648",
              "99999999999999999999", "SIGRTMIN+0000000000003"}) {
            CAPTURE(bad);
            CHECK_FALSE(core::parse_signal(bad).has_value());
        }
    }

} // TEST_SUITE

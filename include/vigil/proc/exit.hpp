// vigil/proc/exit.hpp: decoding waitpid statuses and naming signals.
//
// Every module that reports on a process needs the same three things: what a waitpid status
// means ("exited with status 1", "killed by signal SIGKILL"), the shell convention for turning
// it into one exit code (128+N for signal N, as tini and sh do), and a two-way table between
// signal names and numbers for unit files, vigilctl and log lines.
//
// Names are the kernel's ("SIGTERM"); real-time signals are "SIGRTMIN+k" relative to the
// run-time SIGRTMIN (glibc reserves the first two kernel real-time signals, so SIGRTMIN is 34).
// All functions are pure and noexcept except the ones that build a std::string.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace vigil::proc {

// A decoded waitpid status. `code` is the exit code when !signaled, else the signal number.
struct ExitStatus {
    bool signaled = false;
    int code = 0;
    bool core_dumped = false; // only meaningful when signaled
    friend bool operator==(const ExitStatus &, const ExitStatus &) = default;
};

// Decodes a status from waitpid (WIFEXITED / WIFSIGNALED). A stopped or continued status
// (only seen with WUNTRACED / WCONTINUED, which vigil never passes) decodes as signaled with
// the stop signal.
ExitStatus decode_wait_status(int wstatus) noexcept;

// The shell convention: the exit code, or 128+N when killed by signal N.
int shell_exit_code(int wstatus) noexcept;

// "exited with status 1", "killed by signal SIGKILL", "killed by signal SIGSEGV (core dumped)".
std::string describe_wait_status(int wstatus);

// "SIGTERM", "SIGRTMIN+2"; nullptr when `sig` is not a signal number (1..SIGRTMAX).
const char *signal_name(int sig) noexcept;

// Accepts "SIGTERM", "TERM", "term", "sigterm", "15", "SIGRTMIN+2", "RTMAX-1". Returns the
// number, or nullopt when the text names no signal (0 is not a signal).
std::optional<int> signal_by_name(std::string_view name) noexcept;

} // namespace vigil::proc

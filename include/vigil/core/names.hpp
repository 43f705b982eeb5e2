// vigil/core/names.hpp: the one spelling of signals, durations and exit statuses.
//
// Every module that shows or reads these (the core's history, the unit loader, the control
// protocol, vigilctl, the PID-1 wrapper, proc) uses the functions here, so a signal, a duration
// or an exit reads the same in a unit file, `vigild --check`, `vigilctl events`, the JSON of the
// control protocol and vigild's log.
//
// Signals. The core includes no OS header, so the numbers are Linux's, written out: 1..31 are
// the classic signals (the same on x86-64 and arm64), 34..64 the real-time signals that
// programs may use. glibc keeps the kernel's first two real-time signals (32, 33) for itself
// and its SIGRTMIN is 34; those two are not signals a unit or a client may name.
// tests/proc/exit_test.cpp checks this table against <csignal> and the run-time SIGRTMIN.
//   - signal_name: "SIGTERM", "SIGRTMIN", "SIGRTMIN+3"; "signal N" for a number that is not a
//     valid signal (never thrown away: it shows what was asked).
//   - parse_signal: "SIGTERM", "TERM", "sigterm", "15", the aliases "SIGIOT", "SIGCLD",
//     "SIGPOLL", and "SIGRTMIN+N", "RTMIN+N", "SIGRTMAX-N". Every number is bounded before it
//     is computed with: no overflow, whatever the text.
// Durations: the shortest exact spelling that unit files read back ("1h30m", "250ms", "0s").
// Exits: "exited with status 1", "killed by SIGKILL", "killed by SIGSEGV (core dumped)".
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "vigil/core/event.hpp"
#include "vigil/time.hpp"

namespace vigil::core {

// The signal numbers the core reasons about (Linux's).
inline constexpr int sig_hup = 1;
inline constexpr int sig_int = 2;
inline constexpr int sig_kill = 9;
inline constexpr int sig_term = 15;
inline constexpr int sig_cont = 18;
// The real-time signals a program may use: glibc's SIGRTMIN and SIGRTMAX on Linux.
inline constexpr int sig_rtmin = 34;
inline constexpr int sig_rtmax = 64;

// 1..31 and sig_rtmin..sig_rtmax.
bool valid_signal(int signal) noexcept;
std::string signal_name(int signal);
std::optional<int> parse_signal(std::string_view text) noexcept;

std::string format_duration(Duration d);

std::string describe_exit(ExitStatus status);

} // namespace vigil::core

// vigil/proc/exit.hpp: decoding waitpid statuses.
//
// The one decoder of a waitpid status: every module that learns how a process ended (vigild's
// reaper, the PID-1 wrapper, exec probes) turns the status into a core::ExitStatus here, and
// describes it with core::describe_exit() ("exited with status 1", "killed by SIGKILL",
// "killed by SIGSEGV (core dumped)"). Signal names are core::signal_name / core::parse_signal
// (vigil/core/names.hpp).
#pragma once

#include <string>

#include "vigil/core/event.hpp"

namespace vigil::proc {

// Decodes a status from waitpid (WIFEXITED / WIFSIGNALED). A stopped or continued status
// (only seen with WUNTRACED / WCONTINUED, which vigil never passes) decodes as signaled with
// the stop signal.
core::ExitStatus decode_wait_status(int wstatus) noexcept;

// The shell convention: the exit code, or 128+N when killed by signal N.
int shell_exit_code(int wstatus) noexcept;

// core::describe_exit(decode_wait_status(wstatus)).
std::string describe_wait_status(int wstatus);

} // namespace vigil::proc

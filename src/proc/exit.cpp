// Exit statuses (see include/vigil/proc/exit.hpp).
#include "vigil/proc/exit.hpp"

#include <csignal>
#include <sys/wait.h>

#include "vigil/core/names.hpp"

namespace vigil::proc {

core::ExitStatus decode_wait_status(int wstatus) noexcept {
    if (WIFEXITED(wstatus)) return core::ExitStatus{false, WEXITSTATUS(wstatus), false};
    if (WIFSIGNALED(wstatus))
        return core::ExitStatus{true, WTERMSIG(wstatus), WCOREDUMP(wstatus) != 0};
    if (WIFSTOPPED(wstatus)) return core::ExitStatus{true, WSTOPSIG(wstatus), false};
    return core::ExitStatus{true, SIGCONT, false};
}

int shell_exit_code(int wstatus) noexcept {
    return decode_wait_status(wstatus).shell_code();
}

std::string describe_wait_status(int wstatus) {
    return core::describe_exit(decode_wait_status(wstatus));
}

} // namespace vigil::proc

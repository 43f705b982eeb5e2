// reap.cpp: reaping, signalling and the subreaper flag (see include/vigil/proc/spawn.hpp).
#include "vigil/proc/spawn.hpp"

#include <cerrno>
#include <csignal>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace vigil::proc {

std::vector<Reaped> reap_all() {
    // SIGCHLD is not queued: one signal may stand for many exits, so loop until the kernel
    // says there is nothing left (0: children remain but none has exited; ECHILD: no child).
    std::vector<Reaped> out;
    for (;;) {
        int st = 0;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid > 0) {
            out.push_back({pid, st});
            continue;
        }
        if (pid < 0 && errno == EINTR) continue;
        break;
    }
    return out;
}

int signal_group(int pgid, int sig) noexcept {
    // Refuse pgid <= 1: kill(-1) would signal every process we may signal, kill(0) our own group.
    if (pgid <= 1) return EINVAL;
    return kill(-pgid, sig) == 0 ? 0 : errno;
}

int signal_process(int pid, int sig) noexcept {
    if (pid <= 0) return EINVAL;
    return kill(pid, sig) == 0 ? 0 : errno;
}

int signal_pidfd(int pidfd, int sig) noexcept {
    if (pidfd < 0) return EBADF;
    return syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0U) == 0 ? 0 : errno;
}

bool group_alive(int pgid) noexcept {
    // EPERM means a process exists that we may not signal: still alive. Zombies count as
    // alive until reaped (kill() succeeds on them), which is what a stop must wait for.
    if (pgid <= 1) return false;
    return kill(-pgid, 0) == 0 || errno == EPERM;
}

int become_subreaper() noexcept {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 ? 0 : errno;
}

} // namespace vigil::proc

// daemon/wrapper.cpp: `vigild -- CMD`, a tini-style single-child wrapper. See wrapper.hpp.
#include "wrapper.hpp"

#include "vigil/core/names.hpp"
#include "vigil/proc/exit.hpp"
#include "vigil/proc/spawn.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <optional>
#include <pthread.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace vigil::daemon {
namespace {

// Signals the kernel raises for a fault of the thread itself; blocking them would turn a crash
// into a hang (and POSIX leaves blocked synchronous signals undefined), so they keep their
// default action and are never forwarded. tini keeps the same list.
constexpr int synchronous_signals[] = {SIGFPE, SIGILL, SIGSEGV, SIGBUS, SIGABRT, SIGTRAP, SIGSYS};

// Status codes for a command that never ran, after sh(1) and tini.
constexpr int status_not_found = 127;
constexpr int status_not_executable = 126;
constexpr int status_start_failed = 1;
constexpr int status_usage = 2;

// Every signal vigild takes with sigwaitinfo(): all but the synchronous ones. SIGCHLD is among
// them (it drives reaping) but is never forwarded. SIGKILL and SIGSTOP cannot be blocked and
// are ignored by pthread_sigmask. glibc's sigfillset leaves out its two internal real-time
// signals, so the remaining real-time signals are forwarded like the rest.
sigset_t waited_signals() noexcept {
    sigset_t set;
    sigfillset(&set);
    for (int sig : synchronous_signals)
        sigdelset(&set, sig);
    return set;
}

std::string signal_name(int sig) {
    return core::signal_name(sig);
}

// The child's wait status as a shell reports it: the exit code, or 128+N for death by signal N.
int exit_status_of(int wstatus) noexcept {
    // Stops and continues are not reported without WUNTRACED.
    if (!WIFEXITED(wstatus) && !WIFSIGNALED(wstatus)) return status_start_failed;
    return proc::shell_exit_code(wstatus);
}

// Prints why cmd could not be started and returns the status vigild exits with.
int report_start_failure(const proc::SpawnError &err, const std::string &command) {
    const bool about_command =
        err.stage == proc::ExecStage::Exec ||
        (err.stage == proc::ExecStage::Prepare && (err.object.empty() || err.object == command));
    if (!about_command) {
        std::fprintf(stderr, "vigild: %s\n", err.message().c_str());
        return status_start_failed;
    }
    // The user reads the path that was tried (PATH lookup may have resolved it) and the reason.
    const std::string &path = err.object.empty() ? command : err.object;
    const std::string reason = err.detail.empty() ? std::strerror(err.error) : err.detail;
    std::fprintf(stderr, "vigild: exec %s: %s\n", path.c_str(), reason.c_str());
    switch (err.error) {
    case ENOENT:
    case ENOTDIR:
        return status_not_found;
    default:
        return status_not_executable; // EACCES, EPERM, ENOEXEC, ETXTBSY, ELOOP...
    }
}

// The descriptors above stderr that vigild inherited without FD_CLOEXEC, such as sockets
// passed by systemd socket activation (LISTEN_FDS) or `docker run --preserve-fds`. tini hands
// them to its child untouched, so vigild does too: proc::spawn closes everything it is not
// told to keep, so each one is listed as a move to itself.
std::vector<std::pair<int, int>> inherited_fds() {
    std::vector<std::pair<int, int>> fds;
    DIR *dir = opendir("/proc/self/fd");
    if (dir == nullptr) // no /proc: nothing passed on, as documented in wrapper.hpp
        return fds;
    const int own = dirfd(dir);
    while (const dirent *entry = readdir(dir)) {
        char *end = nullptr;
        const long fd = std::strtol(entry->d_name, &end, 10);
        if (end == entry->d_name || *end != '\0' || fd <= STDERR_FILENO || fd == own) continue;
        const int flags = fcntl(static_cast<int>(fd), F_GETFD);
        if (flags >= 0 && (flags & FD_CLOEXEC) == 0)
            fds.emplace_back(static_cast<int>(fd), static_cast<int>(fd));
    }
    closedir(dir);
    return fds;
}

// True when stdin is a terminal whose foreground process group is vigild's own. Only then is
// the child's group made the foreground group: a vigild started in the background (`&`) must
// not steal the terminal from the shell. As PID 1 with `docker run -t` the condition holds.
bool owns_terminal() noexcept {
    return isatty(STDIN_FILENO) == 1 && tcgetpgrp(STDIN_FILENO) == getpgrp();
}

} // namespace

int run_wrapper(const WrapperOptions &opts, const std::vector<std::string> &cmd) {
    if (cmd.empty()) {
        std::fprintf(stderr, "vigild: no command after --\n");
        return status_usage;
    }

    // Block before spawning so that no signal, above all the child's SIGCHLD, can arrive
    // unhandled in between: a blocked signal stays pending until sigwaitinfo() takes it.
    const sigset_t waited = waited_signals();
    if (int err = pthread_sigmask(SIG_BLOCK, &waited, nullptr); err != 0) {
        std::fprintf(stderr, "vigild: pthread_sigmask: %s\n", std::strerror(err));
        return status_start_failed;
    }
    // An inherited SIG_IGN for SIGCHLD would make the kernel reap children by itself, and the
    // child's status would be lost (waitpid fails with ECHILD).
    std::signal(SIGCHLD, SIG_DFL);

    // PID 1 inherits every orphan of its namespace. Anywhere else the orphans of the child's
    // tree would go to some other reaper unless vigild registers as a subreaper (tini's -s).
    if (getpid() != 1) {
        if (int err = proc::become_subreaper(); err != 0)
            std::fprintf(stderr,
                         "vigild: warning: cannot become a child subreaper (%s): orphans of the "
                         "command will not be reaped by vigild\n",
                         std::strerror(err));
    }

    proc::SpawnSpec spec;
    spec.argv = cmd;
    proc::SpawnExtras extras;
    extras.stdio = proc::Stdio::Inherit;
    extras.new_session = false; // a new process group only: the terminal stays the child's
    extras.foreground_tty = owns_terminal();
    extras.fds = inherited_fds();
    const proc::SpawnResult spawned = proc::spawn(spec, extras);
    if (!spawned.ok) {
        proc::SpawnError err;
        if (spawned.error)
            err = *spawned.error;
        else
            err.object = cmd[0];
        return report_start_failure(err, cmd[0]);
    }
    const int child = spawned.ok->pid;
    if (opts.verbose) std::fprintf(stderr, "vigild: spawned %s as pid %d\n", cmd[0].c_str(), child);

    for (;;) {
        siginfo_t info{};
        // No timeout: nothing wakes vigild but a signal (tini polls every second).
        const int sig = sigwaitinfo(&waited, &info);
        if (sig < 0) {
            if (errno == EINTR) // e.g. after SIGSTOP/SIGCONT or a ptrace attach
                continue;
            std::fprintf(stderr, "vigild: sigwaitinfo: %s\n", std::strerror(errno));
            return status_start_failed;
        }
        if (sig == SIGCHLD) {
            // SIGCHLD coalesces, so one may stand for many exits: collect everything. Orphans
            // re-parented to vigild are reaped here too, and only the child's pid counts.
            std::optional<int> child_status;
            for (const proc::Reaped &r : proc::reap_all()) {
                if (r.pid == child)
                    child_status = r.wstatus;
                else if (opts.verbose)
                    std::fprintf(stderr, "vigild: reaped orphan pid %d\n", r.pid);
            }
            if (child_status) {
                const int status = exit_status_of(*child_status);
                if (opts.verbose)
                    std::fprintf(stderr, "vigild: pid %d ended; exiting with status %d\n", child,
                                 status);
                return status;
            }
            continue;
        }
        const int err =
            opts.group ? proc::signal_group(child, sig) : proc::signal_process(child, sig);
        if (opts.verbose)
            std::fprintf(stderr, "vigild: forwarded %s from pid %d to %s %d\n",
                         signal_name(sig).c_str(), static_cast<int>(info.si_pid),
                         opts.group ? "process group" : "pid", child);
        // ESRCH: the child (or, with -g, its whole group) is already gone; its SIGCHLD is next.
        if (err != 0 && err != ESRCH)
            std::fprintf(stderr, "vigild: forwarding %s to %d: %s\n", signal_name(sig).c_str(),
                         child, std::strerror(err));
    }
}

} // namespace vigil::daemon

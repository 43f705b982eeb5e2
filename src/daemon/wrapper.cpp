// daemon/wrapper.cpp: `vigild -- CMD`, a tini-style single-child wrapper. See wrapper.hpp.
#include "wrapper.hpp"

#include "vigil/core/names.hpp"
#include "vigil/proc/exit.hpp"
#include "vigil/proc/spawn.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <spawn.h>
#include <string_view>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

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
// are ignored by sigprocmask. glibc's sigfillset leaves out its two internal real-time
// signals, so the remaining real-time signals are forwarded like the rest.
sigset_t waited_signals() noexcept {
    sigset_t set;
    sigfillset(&set);
    for (int sig : synchronous_signals)
        sigdelset(&set, sig);
    return set;
}

// The child's wait status as a shell reports it: the exit code, or 128+N for death by signal N.
int exit_status_of(int wstatus) noexcept {
    // Stops and continues are not reported without WUNTRACED.
    if (!WIFEXITED(wstatus) && !WIFSIGNALED(wstatus)) return status_start_failed;
    return proc::shell_exit_code(wstatus);
}

// True when stdin is a terminal whose foreground process group is vigild's own. Only then is
// the child's group made the foreground group: a vigild started in the background (`&`) must
// not steal the terminal from the shell. As PID 1 with `docker run -t` the condition holds.
bool owns_terminal() noexcept {
    return isatty(STDIN_FILENO) == 1 && tcgetpgrp(STDIN_FILENO) == getpgrp();
}

// posix_spawnp's attributes and actions, destroyed with the object.
class SpawnSetup {
public:
    SpawnSetup() noexcept {
        have_attr_ = posix_spawnattr_init(&attr_) == 0;
        if (!have_attr_) return;
        // A process group of its own (pgid = its pid), default dispositions for every signal
        // (an inherited SIG_IGN would otherwise survive the exec), an empty mask.
        // "Every signal" includes glibc's two internal ones (32 and 33), which sigfillset()
        // leaves out: glibc's posix_spawn sets them to SIG_IGN in the child unless they are in
        // this set, and an ignored signal stays ignored across exec, so a musl or Go program
        // would start with 32 and 33 ignored. sigset_t is a plain bit mask on Linux: all bits
        // set is every signal.
        sigset_t all, none;
        std::memset(&all, 0xff, sizeof all);
        sigemptyset(&none);
        ok_ = posix_spawnattr_setflags(&attr_, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF |
                                                   POSIX_SPAWN_SETSIGMASK) == 0 &&
              posix_spawnattr_setpgroup(&attr_, 0) == 0 &&
              posix_spawnattr_setsigdefault(&attr_, &all) == 0 &&
              posix_spawnattr_setsigmask(&attr_, &none) == 0;
    }
    ~SpawnSetup() {
        if (have_actions_) posix_spawn_file_actions_destroy(&actions_);
        if (have_attr_) posix_spawnattr_destroy(&attr_);
    }
    SpawnSetup(const SpawnSetup &) = delete;
    SpawnSetup &operator=(const SpawnSetup &) = delete;

    bool ok() const noexcept { return ok_; }

    // The child makes its own group the terminal's foreground group before exec. It runs
    // with every signal blocked until then, so the SIGTTOU that tcsetpgrp() raises in a
    // background group is not sent.
    bool take_terminal() noexcept {
        if (posix_spawn_file_actions_init(&actions_) != 0) return false;
        have_actions_ = true;
        return posix_spawn_file_actions_addtcsetpgrp_np(&actions_, STDIN_FILENO) == 0;
    }

    // Returns 0 and the pid, or the errno of clone, setpgid, tcsetpgrp or execve.
    int spawn(char *const *cmd, pid_t &pid, bool with_terminal) const noexcept {
        return posix_spawnp(&pid, cmd[0], with_terminal ? &actions_ : nullptr, &attr_, cmd,
                            environ);
    }

private:
    posix_spawnattr_t attr_{};
    posix_spawn_file_actions_t actions_{};
    bool ok_ = false;
    bool have_attr_ = false;
    bool have_actions_ = false;
};

// Prints why cmd could not be started and returns the status vigild exits with.
int report_start_failure(const char *command, int err) noexcept {
    if (err == EAGAIN) { // clone(): the process limit, not the command, is at fault
        std::fprintf(stderr, "vigild: fork: %s\n", std::strerror(err));
        return status_start_failed;
    }
    std::fprintf(stderr, "vigild: exec %s: %s\n", command, std::strerror(err));
    return err == ENOENT || err == ENOTDIR ? status_not_found : status_not_executable;
}

// waitpid(-1, WNOHANG) until nothing is left to collect. Returns the child's status once it is
// among the reaped, else -1. Orphans re-parented to vigild are reaped and otherwise ignored.
int reap(pid_t child, bool verbose) noexcept {
    int child_status = -1;
    for (;;) {
        int wstatus = 0;
        const pid_t pid = waitpid(-1, &wstatus, WNOHANG);
        if (pid > 0) {
            if (pid == child)
                child_status = wstatus;
            else if (verbose)
                std::fprintf(stderr, "vigild: reaped orphan pid %d\n", static_cast<int>(pid));
            continue;
        }
        if (pid < 0 && errno == EINTR) continue;
        return child_status; // 0: children remain, none has ended; ECHILD: none left
    }
}

// signal_name allocates (std::string): only verbose output and errors call it.
void report_forward(const WrapperOptions &opts, int sig, const siginfo_t &info, pid_t child,
                    int err) noexcept {
    if (!opts.verbose && (err == 0 || err == ESRCH)) return;
    try {
        const std::string name = core::signal_name(sig);
        if (opts.verbose)
            std::fprintf(stderr, "vigild: forwarded %s from pid %d to %s %d\n", name.c_str(),
                         static_cast<int>(info.si_pid), opts.group ? "process group" : "pid",
                         static_cast<int>(child));
        // ESRCH: the child (or, with -g, its whole group) is already gone; its SIGCHLD is next.
        if (err != 0 && err != ESRCH)
            std::fprintf(stderr, "vigild: forwarding %s to %d: %s\n", name.c_str(),
                         static_cast<int>(child), std::strerror(err));
    } catch (...) { // out of memory for a signal's name: the line is not worth vigild's life
    }
}

} // namespace

std::optional<WrapperCall> parse_wrapper_fast(int argc, char **argv) noexcept {
    int split = -1;
    for (int i = 1; i < argc; ++i) {
        if (std::string_view(argv[i]) == "--") {
            split = i;
            break;
        }
    }
    if (split < 0 || split + 1 >= argc) return std::nullopt; // not wrapper mode, or no command
    WrapperCall call;
    call.command = argv + split + 1;
    bool have_level = false;
    const auto take_level = [&](std::string_view level) {
        if (have_level) return false; // CLI11 refuses a second --log-level
        if (level != "error" && level != "warn" && level != "info" && level != "debug")
            return false;
        have_level = true;
        call.options.verbose = level == "debug";
        return true;
    };
    constexpr std::string_view level_eq = "--log-level=";
    for (int i = 1; i < split; ++i) {
        const std::string_view arg(argv[i]);
        if (arg == "-g" || arg == "--group") {
            call.options.group = true; // repeating the flag is harmless, as with CLI11
        } else if (arg == "--log-level") {
            if (i + 1 >= split || !take_level(argv[i + 1])) return std::nullopt;
            ++i;
        } else if (arg.substr(0, level_eq.size()) == level_eq) {
            if (!take_level(arg.substr(level_eq.size()))) return std::nullopt;
        } else {
            return std::nullopt;
        }
    }
    return call;
}

namespace {

// Spawns the command in its own process group (with the terminal when vigild has one). Returns
// 0 with `child` set, or the exit status for a command that could not be started.
int start_command(const WrapperOptions &opts, char *const *cmd, pid_t &child) noexcept {
    SpawnSetup setup;
    if (!setup.ok()) {
        std::fprintf(stderr, "vigild: posix_spawnattr: %s\n", std::strerror(ENOMEM));
        return status_start_failed;
    }
    bool with_terminal = false;
    if (owns_terminal()) {
        if (!setup.take_terminal()) {
            std::fprintf(stderr, "vigild: posix_spawn_file_actions: %s\n", std::strerror(ENOMEM));
            return status_start_failed;
        }
        with_terminal = true;
    }
    int err = setup.spawn(cmd, child, with_terminal);
    // The terminal went away (hang-up) between owns_terminal() and the child's tcsetpgrp():
    // there is nothing left to hand over, so start the command without it.
    if (with_terminal && (err == ENOTTY || err == ENXIO)) err = setup.spawn(cmd, child, false);
    if (err != 0) return report_start_failure(cmd[0], err);
    if (opts.verbose)
        std::fprintf(stderr, "vigild: spawned %s as pid %d\n", cmd[0], static_cast<int>(child));
    return 0;
}

// Forwards signals to the child and reaps everything until the child ends; returns vigild's
// exit status (the child's).
int supervise(const WrapperOptions &opts, const sigset_t &waited, pid_t child) noexcept {
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
            // SIGCHLD coalesces, so one may stand for many exits: collect everything.
            const int wstatus = reap(child, opts.verbose);
            if (wstatus < 0) continue;
            const int status = exit_status_of(wstatus);
            if (opts.verbose)
                std::fprintf(stderr, "vigild: pid %d ended; exiting with status %d\n",
                             static_cast<int>(child), status);
            return status;
        }
        const int sent =
            opts.group ? proc::signal_group(child, sig) : proc::signal_process(child, sig);
        report_forward(opts, sig, info, child, sent);
    }
}

} // namespace

int run_wrapper(const WrapperOptions &opts, char *const *cmd) noexcept {
    if (cmd == nullptr || cmd[0] == nullptr) {
        std::fprintf(stderr, "vigild: no command after --\n");
        return status_usage;
    }

    // Block before spawning so that no signal, above all the child's SIGCHLD, can arrive
    // unhandled in between: a blocked signal stays pending until sigwaitinfo() takes it.
    const sigset_t waited = waited_signals();
    if (sigprocmask(SIG_BLOCK, &waited, nullptr) != 0) {
        std::fprintf(stderr, "vigild: sigprocmask: %s\n", std::strerror(errno));
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

    pid_t child = -1;
    if (int failed = start_command(opts, cmd, child); failed != 0) return failed;
    return supervise(opts, waited, child);
}

int run_wrapper(const WrapperOptions &opts, const std::vector<std::string> &cmd) {
    std::vector<char *> argv;
    argv.reserve(cmd.size() + 1);
    for (const std::string &arg : cmd)
        argv.push_back(const_cast<char *>(arg.c_str()));
    argv.push_back(nullptr);
    return run_wrapper(opts, argv.data());
}

} // namespace vigil::daemon

// child_side.cpp: the async-signal-safe code that runs between clone() and execve().
//
// Read child_side.hpp first. Everything here runs in a CLONE_VM child on a borrowed stack, with
// every signal blocked (spawn() blocks them before cloning so that no handler of vigild's can
// run on shared memory). Only raw syscalls and the thin, lock-free libc syscall wrappers are
// used; errno is the parent thread's (same TLS), which is harmless while the parent is
// suspended.
#include "child_side.hpp"

#include "asan.hpp"

#include "vigil/proc/spawn.hpp"

#include <cerrno>
#include <csignal>
#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

// The child's code is not instrumented by AddressSanitizer: its frames live on a stack the
// child abandons at execve()/_exit(), so redzones it poisoned would stay poisoned for the next
// child on the same stack (false reports), and ASan warns about the stack switch at _exit.
#if VIGIL_ASAN
#define VIGIL_CHILD_CODE __attribute__((no_sanitize("address")))
#else
#define VIGIL_CHILD_CODE
#endif

namespace vigil::proc::detail {

namespace {

[[noreturn]] VIGIL_CHILD_CODE void fail(const ChildPlan &p, ExecStage stage, int error,
                                        int aux) noexcept {
    ChildFailure msg{static_cast<std::uint32_t>(stage), error, aux};
    // 12 bytes is far below PIPE_BUF, so the write is atomic; no signal can interrupt it
    // because every signal is still blocked (or already default).
    [[maybe_unused]] ssize_t n = write(p.status_fd, &msg, sizeof msg);
    _exit(127);
}

// Marks every fd >= 3 close-on-exec, rather than closing it: the status pipe must survive
// until execve() and close exactly then. Targets of moves get their flag cleared afterwards.
VIGIL_CHILD_CODE void mark_fds_cloexec(const ChildPlan &p) noexcept {
    // Linux >= 5.11: one syscall.
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
    // Older kernels: walk /proc/self/fd with raw getdents64 (opendir would allocate).
    int dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        alignas(8) char buf[2048];
        for (;;) {
            long n = syscall(SYS_getdents64, dir, buf, sizeof buf);
            if (n <= 0) break;
            for (long off = 0; off < n;) {
                // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, char name[].
                unsigned short reclen;
                __builtin_memcpy(&reclen, buf + off + 16, sizeof reclen);
                const char *name = buf + off + 19;
                int fd = 0;
                bool digits = *name != '\0';
                for (const char *c = name; *c; ++c) {
                    if (*c < '0' || *c > '9') {
                        digits = false;
                        break;
                    }
                    fd = fd * 10 + (*c - '0');
                }
                if (digits && fd >= 3 && fd != dir) fcntl(fd, F_SETFD, FD_CLOEXEC);
                off += reclen;
            }
        }
        close(dir);
        return;
    }
    // No /proc: sweep up to the descriptor limit.
    for (long fd = 3; fd < p.fd_limit; ++fd)
        fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
}

} // namespace

void ReportMessage::build(std::uint64_t ticket) noexcept {
    data = ChildReport{child_report_magic, -1, ticket};
    iov = iovec{&data, sizeof data};
    msg = msghdr{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
}

VIGIL_CHILD_CODE int child_main(void *arg) noexcept {
    const ChildPlan &p = *static_cast<const ChildPlan *>(arg);

    // Named so that /proc tells this child from the program it becomes (child_side.hpp). A
    // failure only loses that distinction (the Spawner then assumes the program ran). Raw:
    // sanitizers intercept prctl(PR_SET_NAME) and take a lock.
    syscall(SYS_prctl, PR_SET_NAME, pre_exec_comm, 0UL, 0UL, 0UL);

    // LISTEN_PID: our own pid, in the room the parent left in the environment (CLONE_VM: the
    // parent's copy of the string, which only this child's execve() reads).
    if (p.listen_pid_slot) {
        char digits[16];
        int n = 0;
        for (auto v = static_cast<unsigned long>(syscall(SYS_getpid)); n == 0 || v > 0; v /= 10)
            digits[n++] = static_cast<char>('0' + v % 10);
        for (int i = 0; i < n; ++i)
            p.listen_pid_slot[i] = digits[n - 1 - i];
        p.listen_pid_slot[n] = '\0';
    }

    // Then the report (child_side.hpp): the pid, the read ends of the pipes and a pidfd of
    // this very process. The message was built by the parent; only the pid and the
    // descriptors are written here.
    if (p.report_fd >= 0) {
        ReportMessage &r = *p.report;
        int self = static_cast<int>(syscall(SYS_getpid));
        r.data.pid = self;
        int fds[3];
        std::size_t n = 0;
        for (int fd : r.pipes)
            if (fd >= 0) fds[n++] = fd;
        int pidfd = static_cast<int>(syscall(SYS_pidfd_open, self, 0));
        if (pidfd >= 0) fds[n++] = pidfd; // else Linux < 5.3: no pidfd
        if (n > 0) {
            cmsghdr *c = CMSG_FIRSTHDR(&r.msg);
            c->cmsg_len = CMSG_LEN(n * sizeof(int));
            __builtin_memcpy(CMSG_DATA(c), fds, n * sizeof(int));
            r.msg.msg_controllen = CMSG_SPACE(n * sizeof(int));
        } else {
            r.msg.msg_controllen = 0;
            r.msg.msg_control = nullptr;
        }
        // Every signal is blocked, so no EINTR; MSG_NOSIGNAL: a shut socket is EPIPE.
        ssize_t sent = sendmsg(p.report_fd, &r.msg, MSG_NOSIGNAL);
        int err = errno;
        if (pidfd >= 0) close(pidfd);
        if (sent < 0) fail(p, ExecStage::Fork, err, 1);
    }

    // Into the unit's cgroup before anything else runs as this process.
    if (p.cgroup_fd >= 0) {
        ssize_t n;
        do {
            n = write(p.cgroup_fd, "0", 1);
        } while (n < 0 && errno == EINTR);
        if (n != 1) fail(p, ExecStage::Cgroup, n < 0 ? errno : EIO, 0);
    }

    // A new session (or group) so that a stop signal sent to -pgid reaches the whole tree.
    if (p.new_session) {
        if (setsid() < 0) fail(p, ExecStage::Setsid, errno, 0);
    } else {
        if (setpgid(0, 0) < 0) fail(p, ExecStage::Setsid, errno, 1);
        // Wrapper mode: ^C at the terminal must reach the child's group. SIGTTOU, which a
        // background group gets from tcsetpgrp(), is blocked here, so the call cannot stop us.
        if (p.tty_fd >= 0 && tcsetpgrp(p.tty_fd, getpid()) < 0 && errno != ENOTTY && errno != ENXIO)
            fail(p, ExecStage::Setsid, errno, 2);
    }

    // Default dispositions for every signal. The handler table is the child's own copy (no
    // CLONE_SIGHAND), so this leaves vigild's handlers alone. execve() would reset caught
    // signals anyway, but not ignored ones. glibc refuses its two internal signals (32, 33)
    // with EINVAL; they are never ignored, so that is fine.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; ++sig) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        if (sigaction(sig, &dfl, nullptr) < 0 && errno != EINVAL)
            fail(p, ExecStage::Signals, errno, sig);
    }

    // Install fds. First copy every source above all targets, so that a source which is also
    // another move's target is not clobbered before it is used; dup2() then clears FD_CLOEXEC
    // on each target (the copies stay close-on-exec).
    for (std::size_t i = 0; i < p.n_moves; ++i) {
        p.scratch[i] = fcntl(p.moves[i].src, F_DUPFD_CLOEXEC, p.max_target + 1);
        if (p.scratch[i] < 0) fail(p, ExecStage::Stdio, errno, p.moves[i].target);
    }
    for (std::size_t i = 0; i < p.n_moves; ++i) {
        if (dup2(p.scratch[i], p.moves[i].target) < 0)
            fail(p, ExecStage::Stdio, errno, p.moves[i].target);
    }
    // No other inherited fd may reach the service.
    mark_fds_cloexec(p);
    for (std::size_t i = 0; i < p.n_moves; ++i) {
        int fd = p.moves[i].target;
        if (fd >= 3 && fcntl(fd, F_SETFD, 0) < 0) fail(p, ExecStage::Stdio, errno, fd);
    }

    // Limits before dropping privileges: raising a hard limit needs CAP_SYS_RESOURCE.
    for (std::size_t i = 0; i < p.n_limits; ++i) {
        if (setrlimit(p.limits[i].resource, &p.limits[i].value) < 0)
            fail(p, ExecStage::Rlimit, errno, static_cast<int>(i));
    }

    // Drop privileges: groups first, then gid, then uid (after setuid we could not change
    // groups any more). Raw syscalls: see child_side.hpp.
    if (p.set_groups && syscall(SYS_setgroups, p.n_groups, p.groups) < 0)
        fail(p, ExecStage::Setgroups, errno, 0);
    if (p.set_gid && syscall(SYS_setgid, p.gid) < 0) fail(p, ExecStage::Setgid, errno, 0);
    if (p.set_uid && syscall(SYS_setuid, p.uid) < 0) fail(p, ExecStage::Setuid, errno, 0);

    if (p.set_umask) umask(p.umask_value);
    // chdir after setuid, so that the service's own permissions apply (as systemd does).
    if (p.cwd && chdir(p.cwd) < 0) fail(p, ExecStage::Chdir, errno, 0);

    // Empty mask last: a signal already pending (say, a stop racing the start) is delivered
    // now with its default action, before exec, and the parent sees a plain early death.
    sigset_t empty;
    sigemptyset(&empty);
    if (sigprocmask(SIG_SETMASK, &empty, nullptr) < 0) fail(p, ExecStage::Signals, errno, 0);

    execve(p.path, p.argv, p.envp);
    fail(p, ExecStage::Exec, errno, 0);
}

} // namespace vigil::proc::detail

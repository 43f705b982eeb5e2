// child_side.hpp: what the child does between clone() and execve() (internal to src/proc).
//
// spawn() prepares a ChildPlan in the parent (every string, array, id and fd number), then
// clones with CLONE_VM | CLONE_VFORK and runs child_main() on a separate stack. The child shares
// the parent's memory while the parent is suspended, so child_main() must:
//   - allocate nothing, lock nothing, log nothing (no malloc, no stdio, no std::string);
//   - only read the plan, except `scratch` and `report`, which the parent provided for it;
//   - use raw syscalls for credentials: glibc's setuid()/setgid()/setgroups() broadcast the
//     change to every thread of the (shared-memory) process, which would change vigild's
//     other threads' credentials (glibc's posix_spawn avoids the wrappers for the same reason).
// On failure it writes one ChildFailure to the close-on-exec status pipe and _exit(127)s; on
// success execve() closes that pipe, so the parent reads EOF.
//
// Order in the child, and why:
//   0. Its name (comm) becomes pre_exec_comm, which no exec'd program can carry: until
//      execve() succeeds, /proc/<pid>/stat says the program has not run (the Spawner relies
//      on it when its helper dies mid-spawn, spawner.cpp).
//   1. The report (Spawner only): before anything else the child sends {ticket, pid}, the
//      read ends of its stdout and stderr pipes and a pidfd of itself on the helper's socket
//      (a pre-built message: the child cannot allocate). vigild thus knows every process
//      that exists, with a handle that cannot name another process, and holds its output,
//      even if the helper dies a moment later. If the report cannot be sent (vigild shut its
//      end: the helper is being given up), the child fails at once instead of running
//      unsupervised.
//   2. The cgroup move, so that nothing the child does afterwards is accounted elsewhere.
//   3. setsid, dispositions, fds, rlimits, credentials, umask, chdir, mask, execve.
#pragma once

#include <cstddef>
#include <cstdint>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>

namespace vigil::proc::detail {

// One fd to install in the child: dup2(src, target), close-on-exec cleared.
struct FdMove {
    int src;
    int target;
};

struct ChildLimit {
    int resource;
    struct rlimit value;
};

// The child's name from clone() until execve() succeeds. It holds a '/', and a successful
// execve() always renames the process after the last component of a path (or a dentry's
// name), which never does; a program can rename itself later (prctl, /proc/self/comm), but
// only to its own harm (spawner.cpp). 12 bytes: comm holds 15.
inline constexpr char pre_exec_comm[] = "vigild/spawn";

// The data of the child's report; the child fills in `pid`.
struct ChildReport {
    std::uint32_t magic;
    std::int32_t pid;
    std::uint64_t ticket;
};
constexpr std::uint32_t child_report_magic = 0x76726570; // "vrep"

// The report message, built by the parent: msg's iov points at `data`, its control buffer at
// `control` (room for three SCM_RIGHTS descriptors), which the child fills with `pipes` (those
// >= 0, in order) and then its pidfd (when pidfd_open works).
struct ReportMessage {
    ChildReport data{};
    msghdr msg{};
    iovec iov{};
    int pipes[2] = {-1, -1}; // read ends of stdout's and stderr's pipes (launch() sets them)
    alignas(cmsghdr) unsigned char control[CMSG_SPACE(3 * sizeof(int))]{};
    void build(std::uint64_t ticket) noexcept; // points msg at data and control
};

// Everything the child needs, prepared by the parent. Pointers refer to parent memory that
// outlives the clone (the parent is suspended until exec or _exit).
struct ChildPlan {
    const char *path = nullptr;    // resolved executable
    char *const *argv = nullptr;   // null-terminated
    char *const *envp = nullptr;   // null-terminated
    bool new_session = true;       // setsid(), else setpgid(0, 0)
    int tty_fd = -1;               // when >= 0 (and !new_session): tcsetpgrp(tty_fd, getpid())
    const FdMove *moves = nullptr; // stdio first, then extras (later moves win)
    std::size_t n_moves = 0;
    int *scratch = nullptr; // n_moves ints the child may write (temporary dups)
    int max_target = 2;     // the highest target fd in moves (at least 2)
    long fd_limit = 1024;   // RLIMIT_NOFILE soft limit: bound of the last-resort fd sweep
    const ChildLimit *limits = nullptr;
    std::size_t n_limits = 0;
    bool set_groups = false;
    const gid_t *groups = nullptr;
    std::size_t n_groups = 0;
    bool set_gid = false;
    gid_t gid = 0;
    bool set_uid = false;
    uid_t uid = 0;
    bool set_umask = false;
    mode_t umask_value = 0;
    const char *cwd = nullptr; // chdir target, or nullptr
    int status_fd = -1;        // write end of the status pipe; above max_target, CLOEXEC
    int report_fd = -1;        // when >= 0: send `report` on it first (the Spawner's socket)
    ReportMessage *report = nullptr;
    int cgroup_fd = -1; // when >= 0: write "0" to it right after the report
    // When set: the value of the envp entry "LISTEN_PID=", with room for 10 digits and a NUL
    // (prepared by the parent); the child writes its own pid there, first thing
    // (SpawnExtras::listen_pid).
    char *listen_pid_slot = nullptr;
};

// What a failed child reports. `aux` refines the stage: the target fd for Stdio, the index in
// `limits` for Rlimit, the signal for Signals, 0/1/2 = setsid/setpgid/tcsetpgrp for Setsid,
// 1 = the report for Fork.
struct ChildFailure {
    std::uint32_t stage;
    std::int32_t error;
    std::int32_t aux;
};

// The clone() entry point. Never returns: it execs or _exit(127)s.
int child_main(void *plan) noexcept;

} // namespace vigil::proc::detail

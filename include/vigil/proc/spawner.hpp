// vigil/proc/spawner.hpp: spawning through a small helper process ("zygote").
//
// Why: every clone() copies the caller's descriptor table into the child, and execve() then
// closes each close-on-exec descriptor one by one. vigild holds two or three descriptors per
// service, so with 10,000 services each spawn() from vigild costs O(20,000) in the kernel and
// starting the tree costs O(n^2) (117 s for 10,000 `sleep`s). The Spawner forks a helper early,
// while vigild holds almost nothing, and spawns from there: the child copies a table of a
// handful of descriptors.
//
// How: Spawner::spawn() does in vigild what proc::spawn does before the fork (user and group
// lookups, env_file, the final environment from vigild's `environ` at call time, the PATH
// search), sends the prepared request over a SOCK_SEQPACKET socket (the extras' fds travel as
// SCM_RIGHTS), and blocks on the reply. The helper creates the stdout/stderr pipes, clones the
// child with CLONE_VM | CLONE_VFORK | CLONE_PARENT, reads the exec status pipe and replies
// {pid or failure} plus the read ends (SCM_RIGHTS), closing its own copies.
//
// Invariants and semantics:
//  - Results are proc::spawn's: same SpawnResult, same error messages (stage, object, errno),
//    same child set-up (the child-side code is shared), a failed child is already reaped.
//  - CLONE_PARENT makes every service a child of vigild, not of the helper: vigild's
//    waitpid(-1) reaps it and vigild gets its SIGCHLD. (CLONE_PARENT is refused to a pid
//    namespace's init; the helper never is one.)
//  - The helper holds only its socket, vigild's stderr (for crash reports; 0 and 1 are
//    /dev/null) and the descriptors of the request in flight. It blocks every signal (it exits
//    when vigild closes the socket, or dies with vigild through PR_SET_PDEATHSIG); children
//    get default dispositions and an empty mask from the child-side code, as always.
//  - What a child inherits from the helper rather than from vigild at spawn time: the process
//    attributes that no SpawnSpec field sets (umask and cwd when not given, rlimits not in
//    spec.limits, nice value, cgroup, capabilities, CPU affinity). They are vigild's as of
//    start(); vigild does not change them later (its raised RLIMIT_NOFILE is set before start
//    and services get the original back through spec.limits).
//  - Not used for Stdio::Inherit or foreground_tty (wrapper mode): those go to proc::spawn,
//    since the helper does not keep vigild's stdin/stdout nor its terminal.
//  - A request that does not fit in one socket message (a huge environment, more than 64
//    extra fds) also goes to proc::spawn.
//  - If the helper dies, spawn() restarts it once (the new helper is forked from vigild as it
//    is then: it closes every descriptor it inherited); if that one dies too, or cannot be
//    started, spawn() falls back to proc::spawn for good. The Spawner logs nothing: take
//    take_warning() and log it. A helper that died while a request was in flight may have
//    started that child: it is vigild's child and is reaped as an unknown pid.
//  - Synchronous and single-threaded, like proc::spawn: call from one thread (vigild's loop).
#pragma once

#include "vigil/proc/spawn.hpp"

#include <string>

namespace vigil::proc {

class Spawner {
public:
    Spawner() = default;
    Spawner(const Spawner &) = delete;
    Spawner &operator=(const Spawner &) = delete;
    // Closes the socket (the helper exits) and reaps the helper, waiting at most a second.
    ~Spawner();

    // Forks the helper. Call early, before opening many descriptors. Returns 0 or an errno
    // (then spawn() uses proc::spawn). Calling it again while the helper runs is a no-op.
    int start();

    // proc::spawn's contract (spawn.hpp), run in the helper. Without a running helper (never
    // started, or given up on), it is proc::spawn.
    SpawnResult spawn(const SpawnSpec &spec, const SpawnExtras &extras);

    // The helper's pid, or -1 when there is none.
    int helper_pid() const noexcept { return pid_; }
    // False once the Spawner has given up on its helper and spawns from the caller.
    bool using_helper() const noexcept { return sock_ >= 0; }

    // What went wrong with the helper since the last call ("spawner helper died: ...;
    // restarted"), or "" when nothing did. For the caller's log.
    std::string take_warning();

private:
    void stop() noexcept; // close the socket, reap the helper (bounded)
    void give_up(const std::string &why);

    int sock_ = -1;
    int pid_ = -1;
    int pidfd_ = -1; // the helper's pidfd (waits without racing vigild's waitpid(-1))
    int restarts_left_ = 1;
    bool disabled_ = false;
    std::string warning_;
};

} // namespace vigil::proc

// vigil/proc/spawner.hpp: asynchronous spawning through a helper process ("zygote").
//
// Why a helper: every clone() copies the caller's descriptor table into the child, and
// execve() then closes each close-on-exec descriptor one by one. vigild holds two or three
// descriptors per service, so with 10,000 services each spawn from vigild costs O(20,000) in
// the kernel and starting the tree costs O(n^2). The Spawner forks a helper early, while
// vigild holds almost nothing, and spawns from there. And everything about a spawn that can
// block (user and group lookups when the spec has no resolved Identity, reading env_file, the
// PATH search, a child stuck in chdir on a hung file system) happens in the helper, never on
// vigild's event loop: submit() and pump() never block.
//
// Protocol, over one SOCK_SEQPACKET socket pair (vigild's end non-blocking):
//   - vigild -> helper, one message per submit(): the ticket, the SpawnSpec and SpawnExtras as
//     given (not a prepared plan), the extras' fds and cgroup_procs_fd as SCM_RIGHTS.
//     Requests the socket does not take yet (EAGAIN) wait in vigild, in order, and go out as
//     it accepts them.
//   - The helper runs proc::spawn's steps (launch.hpp): prepare() (env_file read as the unit's
//     identity, the final environment, PATH), then clones the child with CLONE_VM |
//     CLONE_VFORK | CLONE_PARENT.
//   - The child reports itself first (child_side.hpp): {ticket, pid}, its pipes' read ends
//     and a pidfd of itself (SCM_RIGHTS), sent on the helper's socket before it does
//     anything else. Until its execve() succeeds, its name (comm) is one no program can
//     have after an exec ("vigild/spawn").
//   - helper -> vigild, after the child exec'd or failed (the helper is suspended until then,
//     so the report always comes first): {ticket, ok pid | SpawnError}. For a child that
//     failed, the helper waits for it to have exited (its CLONE_PIDFD) before replying, so
//     vigild reaps it without waiting.
//
// Invariants and semantics:
//  - Results are proc::spawn's: the same SpawnResult, the same error messages ("exec
//    /usr/bin/pyhton3: No such file or directory", "env_file /x: line 3: expected
//    KEY=VALUE"), the same child set-up (the child-side code is shared). Completions come
//    back in submission order, each exactly once.
//  - The child's environment starts from the helper's `environ`, which is vigild's as of the
//    helper's fork (start(), or a restart). vigild never changes its own environment after
//    start(): the unit's env, env_file and SpawnExtras::env are how a service's environment
//    is set.
//  - What else a child inherits from the helper rather than from vigild at spawn time: the
//    process attributes that no SpawnSpec field sets (umask and cwd when not given, rlimits
//    not in spec.limits, nice value, cgroup unless cgroup_procs_fd is given, capabilities,
//    CPU affinity). They are vigild's as of the fork; vigild does not change them later.
//  - Every process spawned is vigild's child (CLONE_PARENT: vigild reaps it and gets its
//    SIGCHLD), and every completion with a process carries a pidfd of it (-1 only on kernels
//    without pidfd_open, < 5.3, or when vigild was out of descriptors as it arrived), so
//    vigild can signal it without the pid-reuse race.
//  - Reaping: the caller reaps with waitpid(-1) and must offer every pid it does not know to
//    on_reaped(). That claims (a) a process whose completion was not delivered yet (it exited
//    before the caller could learn its pid: the completion then carries its wait status),
//    (b) processes the Spawner made but does not hand over (a child killed because its
//    helper died, a failed child the caller reaped first) and (c) dead helpers.
//  - Helper death (EOF or an error on the socket, its pidfd readable, a malformed message, or
//    kill_helper()): vigild shuts its end for reading (from then on a child that has not
//    reported yet cannot, and _exits instead of running unsupervised), reads what was queued,
//    and settles every request the dead helper had. A request lost with the helper is not a
//    failure of the service: it is sent again to a new helper (forked from vigild as it is
//    then; it closes every descriptor it inherited), ahead of the requests that wait, and
//    its completion comes as if nothing had happened, unless its program may have run:
//      * no child (not forked yet, or a child that could not report and _exits): sent again.
//      * a child that reported and has not run its program (its name is still the pre-exec
//        one in /proc/<pid>/stat, read again after a SIGKILL through its pidfd, which leaves
//        it no instruction of the program to run): killed, sent again. Without a pidfd it is
//        killed by pid, only while waitid(WNOWAIT) shows it is our unreaped child (so the pid
//        is still its own).
//      * a child that ran its program (or, reaped already, might have): the caller gets the
//        process, with the read ends and pidfd from its report, as if the helper had replied;
//        if it ended, with its wait status (reaped_wstatus) or as the caller reaps it. A
//        program that renames itself to the pre-exec name in that instant is killed and
//        started again, harming only itself.
//      * what cannot be told (no /proc, a /proc of another pid namespace) is killed and fails,
//        "spawner helper died during the spawn; its process (pid N) was killed"; so does a
//        child that ran while vigild was out of descriptors for its read ends ("pipe: Too
//        many open files").
//    Bounds: only the request the helper was serving (the oldest it had) can have killed it,
//    so only that one counts the death; a request whose helper died with it in hand more than
//    max_resends times fails: "spawner helper died during this spawn 4 times (the last time:
//    died (killed by SIGKILL)); its process (pid N) was killed" (or without the process
//    part). kill_helper() is the caller's deadline for that request: it fails at once
//    ("spawner helper died before the spawn", or "... during the spawn; its process (pid N)
//    was killed"), unless its program ran (then it is delivered); the others are sent again.
//    A killed child is reaped by the caller's waitpid(-1) and claimed by on_reaped() (or
//    here, if it is gone at once). At most max_restarts restarts within restart_window; one
//    more death and the Spawner gives up for good: spawns, those sent again included, then run
//    in vigild through proc::spawn (blocking the caller for the preparation), and
//    take_warning() says so. Every request still completes exactly once, in order.
//  - In vigild directly (proc::spawn, at submit() or at the next pump()) are also: spawns
//    before start() or when the helper could not be started, Stdio::Inherit and
//    foreground_tty (wrapper mode: the helper keeps neither vigild's stdio nor its terminal),
//    more than max_extra_fds extra fds, and a request too large for one socket message.
//    Their completions are delivered by pump() like the others, in order.
//  - The helper holds only its socket, vigild's stderr (for crash reports; 0 and 1 are
//    /dev/null) and the descriptors of the request in hand. It blocks every signal, exits
//    when vigild closes its end, and dies with vigild (PR_SET_PDEATHSIG).
//  - Bounds: at most max_pending requests submitted and not yet delivered (more fail at once
//    with an error; each keeps its duplicated fds and its message until it completes, so that
//    it can be sent again), at most max_extra_fds extra fds per request, requests of at most
//    max_request bytes and a quarter of the socket's send buffer (a socket pair reports
//    itself writable only while at most a quarter of that buffer is in use; a message of
//    that size always fits then, so a writable socket never answers EAGAIN and pump() never
//    spins). The send buffer is raised towards 2 * max_request (net.core.wmem_max caps it).
//  - Single-threaded: call from one thread (vigild's loop). The Spawner logs nothing: take
//    take_warning() after pump() and log it.
//
// Use on a libuv loop: uv_poll fd() for UV_READABLE and call pump() when it fires (fd() is
// one epoll descriptor that stays the same across helper restarts and also becomes readable
// when queued requests can be sent or completions are ready); feed each SpawnCompletion to
// the caller's state machine; in the SIGCHLD handler, offer unknown pids to on_reaped(); if a
// request stays pending longer than the caller allows (say, a chdir on a hung NFS mount),
// kill_helper("...").
#pragma once

#include "vigil/proc/spawn.hpp"

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vigil::proc {

// The answer to one submit().
struct SpawnCompletion {
    std::uint64_t ticket = 0; // as returned by submit()
    SpawnResult result;       // as proc::spawn's: {pid, stdout_fd, stderr_fd} or an error
    // A pidfd of the spawned process (with result.ok), close-on-exec, owned by the receiver;
    // -1 on error or when the kernel has no pidfd_open.
    int pidfd = -1;
    // Set when the process already ended and the caller reaped it (on_reaped()) before this
    // completion was delivered: its wait status. The pipes still hold its output.
    std::optional<int> reaped_wstatus;
};

class Spawner {
public:
    static constexpr std::size_t max_pending = 65536;
    // A service's extra fds: up to 64 listen sockets (unit::bounds::max_listen) and its ready
    // fd, with room to spare; below SCM_RIGHTS's 253 per message.
    static constexpr std::size_t max_extra_fds = 96;
    static constexpr std::size_t max_request = 1 << 20;
    static constexpr int max_restarts = 3;
    static constexpr std::chrono::seconds restart_window{10};
    // Times a request is sent again after its helper died while serving it (see above).
    static constexpr int max_resends = 3;

    Spawner();
    Spawner(const Spawner &) = delete;
    Spawner &operator=(const Spawner &) = delete;
    // Kills the processes of requests not delivered (they were never handed over), closes
    // their descriptors, closes the socket (the helper exits) and reaps the helper, waiting
    // at most a second.
    ~Spawner();

    // Creates fd() and forks the helper. Call early, before opening many descriptors. Returns
    // 0 or an errno (then spawns run in vigild; fd() may still be valid). Calling it again
    // while the helper runs is a no-op.
    int start();

    // Queues one spawn and returns its ticket (never 0). Never blocks, except for the spawns
    // that run in vigild (see above). The caller keeps ownership of extras' fds and
    // cgroup_procs_fd and may close them at once: the Spawner duplicates them.
    std::uint64_t submit(SpawnSpec spec, SpawnExtras extras);

    // Poll for readability, then pump(). -1 before start() (or if start() could not create
    // it): then call pump() after submit(). Never changes once valid.
    int fd() const noexcept { return epfd_; }

    // Non-blocking: sends what the socket takes, reads replies, handles a dead helper, and
    // returns every completion ready, in submission order.
    std::vector<SpawnCompletion> pump();

    // For the caller's reaper: true when `pid` was claimed (see the header comment); its
    // status is then consumed here (or carried by the pid's completion). Never blocks.
    bool on_reaped(int pid, int wstatus);

    // Submitted and not yet delivered by pump().
    std::size_t pending() const noexcept { return requests_.size() + stash_.size(); }

    // The caller's deadline for a pending request passed: kill the helper (SIGKILL), settle
    // what was in flight as on a helper death, and restart it (counts as a restart). The
    // request the helper was serving fails (unless its program ran: then it is delivered);
    // the others are sent again. The completions come from the next pump(). No-op without a
    // helper.
    void kill_helper(const std::string &why);

    // The helper's pid, or -1 when there is none.
    int helper_pid() const noexcept { return pid_; }
    // False once the Spawner has given up on its helper (or never had one).
    bool using_helper() const noexcept { return sock_ >= 0; }

    // What went wrong with the helper since the last call ("spawner helper died (killed by
    // SIGKILL); restarted"), or "" when nothing did. For the caller's log.
    std::string take_warning();

    // Transitional, for callers without an event loop (benchmarks, a daemon not yet moved to
    // submit()): submit() and wait (poll on fd()) for this request's completion. Other
    // completions are kept for the next pump(); the pidfd is closed. Blocks like the old
    // synchronous Spawner did.
    SpawnResult spawn(const SpawnSpec &spec, const SpawnExtras &extras);

    struct Request; // one submitted request (spawner.cpp)

private:
    Request *find(std::uint64_t ticket);
    void complete(Request &r, SpawnResult result);
    void run_in_vigild(Request &r);
    void send_queued();
    void receive();
    void handle_message(const char *buf, std::size_t n, std::vector<int> &fds, bool truncated);
    void settle_death(const std::string &why, bool kill);
    bool settle_lost(Request &r, bool in_hand, const std::string &why, bool killed_by_us);
    void deliver(Request &r);
    void release(Request &r);
    void give_up(const std::string &why);
    void drain_in_vigild();
    int start_helper();
    void watch_write(bool on);
    void notify();
    void claim_later(int pid, int pidfd);
    std::vector<SpawnCompletion> collect();
    void kill_unreaped(int pid, int pidfd);

    int epfd_ = -1;               // epoll: the socket, the helper's pidfd, evfd_
    int evfd_ = -1;               // eventfd: completions (or a death) await pump()
    int sock_ = -1;               // vigild's end, non-blocking; -1 without a helper
    int pid_ = -1;                // the helper
    int pidfd_ = -1;              // the helper's pidfd
    std::size_t max_message_ = 0; // for the current socket
    bool writing_ = false;
    bool settling_ = false; // settle_death() reads what the dead helper left, past errors
    bool disabled_ = false;
    std::string dead_; // why the helper is to be settled as dead, found outside pump()
    std::uint64_t next_ticket_ = 1;
    std::deque<std::unique_ptr<Request>> requests_; // submitted, not delivered, ticket order
    std::deque<std::uint64_t> queued_;              // not sent yet, in order
    std::deque<std::uint64_t> sent_;     // sent to the current helper, not answered, in order
    std::vector<SpawnCompletion> stash_; // pumped by spawn() for others
    std::vector<int> unclaimed_;         // pids made here, not handed over, not reaped yet
    std::deque<std::chrono::steady_clock::time_point> restarts_;
    std::string warning_;
};

} // namespace vigil::proc

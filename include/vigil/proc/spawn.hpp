// vigil/proc/spawn.hpp: starting, signalling and reaping processes (the OS seam).
//
// vigil spawns and reaps by itself and never calls uv_spawn: libuv waits only for the pids it
// spawned, and PID 1 must reap every process re-parented to it (docs/house-style.md §4).
//
// spawn() is synchronous and cheap: it uses vfork semantics, so when it returns the child has
// either exec'd or failed. Failures before exec travel back over a close-on-exec pipe as
// {ExecStage, errno}, so users read "exec /usr/bin/pyhton3: No such file or directory", never
// a bare exit 127. Between fork and exec the child makes only async-signal-safe calls: all
// strings, arrays and ids are prepared before the fork.
//
// vigild spawns services through proc::Spawner (spawner.hpp), which runs this same code in a
// helper process, off vigild's event loop; spawn() itself serves wrapper mode and the
// Spawner's last-resort fallback, and blocks its caller for the preparation (env_file, PATH).
//
// env_file is read defensively wherever it is read (the helper or here), because a service's
// user may control it: opened O_NONBLOCK|O_NOCTTY, as the unit's identity when that differs
// from the caller's (fsuid/fsgid and supplementary groups switched with raw syscalls for the
// open only, on the calling thread), then it must be a regular file of at most 1 MiB holding
// at most 4096 variables. A symlink to /dev/zero, a FIFO or a root-only file is refused with a
// message naming the file, never read.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vigil::proc {

// Where a spawn failed. Keep in sync with exec_stage_names (static_assert in spawn.cpp).
enum class ExecStage : std::uint8_t {
    Prepare, // before fork: PATH lookup, user/group lookup, env_file, pipes
    Fork,    // clone(), or the child's report to the Spawner (object "report")
    Cgroup,  // writing "0" to SpawnExtras::cgroup_procs_fd
    Setsid,
    Signals, // resetting dispositions and the mask
    Stdio,   // dup2 of stdin/stdout/stderr and extra fds
    Rlimit,
    Setgroups,
    Setgid,
    Setuid,
    Umask,
    Chdir,
    Exec,
};
const char *to_string(ExecStage s) noexcept;

struct Limit {
    int resource;             // RLIMIT_*
    std::uint64_t soft, hard; // RLIM_INFINITY allowed
};

// Who a service runs as, resolved from its unit's `user` and `group` once, when the unit is
// loaded (resolve_identity below): NSS lookups may go to LDAP and block, so they never happen at
// spawn time, and a unit naming an unknown user is an error of the unit file, not a crash loop.
struct Identity {
    bool set_uid = false, set_gid = false, set_groups = false; // what the child must change
    std::uint32_t uid = 0;
    std::uint32_t gid = 0;
    std::vector<std::uint32_t> groups; // supplementary groups (getgrouplist), or just gid
    std::string user_name, home;       // for USER/LOGNAME/HOME, when a passwd entry exists
};

struct IdentityResult {
    std::optional<Identity> identity; // nullopt with an error
    std::string error;                // "user bogus: no such user"
};

// Resolves a unit's `user` and `group` (names or numeric ids) and the user's supplementary
// groups, with vigild's euid deciding what the child must change (nothing at all when it would
// run as vigild's own identity anyway). Neither given: an Identity that changes nothing.
// Blocks on NSS: call it off the event loop (the unit loader runs there).
IdentityResult resolve_identity(const std::optional<std::string> &user,
                                const std::optional<std::string> &group);

// Everything a unit declares about how its process runs (filled by src/unit).
struct SpawnSpec {
    std::vector<std::string> argv; // argv[0] without '/' is looked up in PATH
    std::optional<std::string> cwd;
    std::map<std::string, std::string> env; // unit's `env` (wins over env_file and inherited)
    std::optional<std::string> env_file;    // read at every spawn, as systemd's EnvironmentFile
    bool env_file_optional = false;         // "-/path": a missing file is not an error
    std::optional<std::string> user;        // name or numeric id, as the unit gave it
    std::optional<std::string> group;       // name or numeric id; default: the user's group
    // `user` and `group` resolved (the loader sets it). Without it, spawn() resolves them itself
    // (NSS lookups at spawn time: for callers that have no loader, such as tests).
    std::optional<Identity> identity;
    std::optional<unsigned> umask;
    std::vector<Limit> limits;
};

// How the child's standard streams are set up.
enum class Stdio : std::uint8_t {
    Pipes,   // stdin </dev/null, stdout and stderr to new pipes (normal services)
    Inherit, // keep vigild's own stdin/stdout/stderr (wrapper mode, `vigild -- CMD`)
};

// Per-spawn runtime additions made by the shell (readiness and watchdog plumbing).
struct SpawnExtras {
    Stdio stdio = Stdio::Pipes;
    bool new_session = true;     // setsid(); wrapper mode uses a new process group instead
    bool foreground_tty = false; // wrapper mode: make the child's group the tty's foreground
    std::vector<std::pair<std::string, std::string>> env; // e.g. NOTIFY_SOCKET, WATCHDOG_USEC
    std::vector<std::pair<int, int>> fds;                 // (fd in vigild, fd number in the child)
    // With Stdio::Pipes: stderr goes into the stdout pipe (one pipe, in order; Spawned's
    // stderr_fd is then -1). Exec probes use it.
    bool merge_stderr = false;
    // When >= 0: a cgroup v2 `cgroup.procs` file, opened for writing by the caller. The child's
    // first act (after its report to the Spawner) is to write "0" to it, moving itself into
    // that cgroup before it runs anything (as systemd does, cgroups(7)); a failure fails the
    // spawn at ExecStage::Cgroup ("cgroup: Permission denied"). Not installed in the child.
    int cgroup_procs_fd = -1;
    // Socket activation (sd_listen_fds(3)): LISTEN_PID=<the child's own pid>. The pid exists
    // only after the clone, and the environment is prepared before it (nothing may be allocated
    // in the child), so prepare() reserves the value's room in the environment and the child
    // writes its pid there before execve(). LISTEN_FDS and LISTEN_FDNAMES go in `env`. Whether
    // set or not, LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES inherited from vigild's own
    // environment never reach a child: they described vigild's sockets, not the child's.
    bool listen_pid = false;
};

struct SpawnError {
    ExecStage stage = ExecStage::Prepare;
    int error = 0;      // errno
    std::string object; // the path, user, group... the stage was working on
    std::string detail; // (added by proc) replaces strerror(error) when set: "no such user"
    // "exec /usr/bin/pyhton3: No such file or directory", "setuid nobody: Operation not
    // permitted". Prepare-stage errors name their object themselves: "user bogus: no such user",
    // "env_file /etc/web.env: line 3: expected KEY=VALUE".
    std::string message() const;
};

struct Spawned {
    int pid = -1;
    int stdout_fd = -1; // read ends, non-blocking, close-on-exec; -1 with Stdio::Inherit
    int stderr_fd = -1;
};

struct SpawnResult {
    std::optional<Spawned> ok;
    std::optional<SpawnError> error;
};

// Starts one process. Returns after the child exec'd (ok) or failed (error; the failed child
// is already reaped). Details (added by proc):
//  - Identity: spec.identity, or resolve_identity(spec.user, spec.group) when it is unset.
//  - Environment, later wins: vigild's own (without LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES);
//    HOME/USER/LOGNAME of `user` when it has a passwd
//    entry; env_file (a parse error fails the spawn, naming the line); spec.env; extras.env.
//  - PATH lookup uses the child's PATH (from that environment), else a default search path.
//  - Child order: setsid (or setpgid + tcsetpgrp), default dispositions, fds (stdio, extras;
//    everything else closed at exec), rlimits, setgroups/setgid/setuid, umask, chdir (as the
//    new user), empty signal mask, execve.
//  - Blocking: the caller waits until the child's execve() returns; a child stuck in chdir or
//    exec on a hung file system stalls the caller too (the price of vfork semantics).
//  - Not safe to call from two threads at once on the same thread-local child stack; vigild
//    spawns from its loop thread only.
SpawnResult spawn(const SpawnSpec &spec, const SpawnExtras &extras);
// The same, and `pidfd` receives a pidfd of the spawned process (clone's CLONE_PIDFD: no race
// with any reaper), close-on-exec and owned by the caller; -1 on failure or on kernels
// without CLONE_PIDFD (< 5.2).
SpawnResult spawn(const SpawnSpec &spec, const SpawnExtras &extras, int &pidfd);

// One process collected by waitpid.
struct Reaped {
    int pid;
    int wstatus; // as from waitpid: decode with WIFEXITED & co
};

// waitpid(-1, WNOHANG) until nothing is left to collect (0 or ECHILD). Reaps every child of
// vigild, re-parented orphans included.
std::vector<Reaped> reap_all();

// For each of `units`, the live processes (zombies left out) whose environment holds
// VIGIL_UNIT=<unit> (vigild sets it for every service, and the processes a service starts
// inherit it), at most `max` per unit, lowest pid first. Reads /proc (each environ at most
// 256 KiB), and may block on a process's memory lock: call it off the loop. A process whose
// environment cannot be read (another user's, for a vigild that is not root) is not seen; a
// process can rewrite its own environment, so this finds what a service left behind by
// accident, not what hides on purpose (cgroups hold those).
std::map<std::string, std::vector<int>> processes_of(const std::vector<std::string> &units,
                                                     std::size_t max);

// kill(-pgid, sig); returns 0 or errno (ESRCH when the group is gone).
int signal_group(int pgid, int sig) noexcept;
// kill(pid, sig); returns 0 or errno.
int signal_process(int pid, int sig) noexcept;
// pidfd_send_signal(pidfd, sig); returns 0 or errno (ESRCH once the process was reaped).
// Unlike a pid, a pidfd never names another process, whatever was reaped meanwhile.
int signal_pidfd(int pidfd, int sig) noexcept;
// True when some process is still in process group `pgid` (checked with kill(-pgid, 0)).
bool group_alive(int pgid) noexcept;

// Makes vigild a child subreaper (prctl PR_SET_CHILD_SUBREAPER); returns 0 or errno.
int become_subreaper() noexcept;

// Parses a systemd-style EnvironmentFile: KEY=VALUE lines, # and ; comments, single and
// double quotes, backslash escapes and line continuations. Errors name the line.
struct EnvFileResult {
    std::vector<std::pair<std::string, std::string>> vars;
    std::vector<std::string> errors; // "line 3: expected KEY=VALUE"
};
EnvFileResult parse_env_file(std::string_view text);

// Maps a limit name used in unit files ("nofile", "nproc", "core", ...) to RLIMIT_*.
std::optional<int> rlimit_by_name(std::string_view name) noexcept;
// All names rlimit_by_name accepts, for diagnostics and docs.
const std::vector<std::string_view> &rlimit_names();

} // namespace vigil::proc

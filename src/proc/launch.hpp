// launch.hpp: the steps of a spawn, shared by proc::spawn and the Spawner's helper (internal).
//
// spawn() = prepare() + launch() + finish():
//   - prepare() does everything that can fail without a child: argv checks, user/group
//     lookups (skipped when the spec carries a resolved Identity), env_file (read_env_file
//     below), the final environment (from the process's `environ`), the PATH lookup, rlimits.
//     It may block (NSS, file systems), so vigild runs it in the Spawner's helper process,
//     and only wrapper mode and the Spawner's last-resort fallback run it in vigild.
//   - launch() creates the pipes, clones the child (child_side.cpp) and reads its verdict. It
//     reads only a LaunchPlan (pointers and numbers).
//   - child_error() names a failed child's error exactly as proc::spawn always did; finish()
//     (in-process only) also reaps that child and builds the SpawnResult.
#pragma once

#include "child_side.hpp"
#include "vigil/proc/spawn.hpp"

#include <optional>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace vigil::proc::detail {

// Bounds of an env_file: its size, and the number of variables it may define.
constexpr std::size_t env_file_max_bytes = 1 << 20;
constexpr std::size_t env_file_max_vars = 4096;

// Everything resolved before any child exists.
struct Prepared {
    std::string path;             // the executable (PATH already searched)
    std::vector<std::string> env; // "KEY=VALUE", final
    Identity ids;
    std::vector<ChildLimit> limits;
    // With extras.listen_pid: the index in `env` of "LISTEN_PID=" and the room the child
    // writes its pid into (listen_pid_room digits and a NUL); -1 without.
    std::ptrdiff_t listen_pid_env = -1;
};

// Room for a pid in decimal: an int's 10 digits.
constexpr std::size_t listen_pid_room = 10;

// Resolves spec + extras; on error the SpawnError is exactly proc::spawn's.
std::optional<SpawnError> prepare(const SpawnSpec &spec, const SpawnExtras &extras, Prepared &out);

// Reads and parses spec.env_file (which must be set) for a child that will run as `ids`:
// opened O_RDONLY|O_NONBLOCK|O_NOCTTY|O_CLOEXEC as that identity when it differs from the
// caller's (raw setfsuid/setfsgid/setgroups around the open, on the calling thread only, each
// checked), then it must be a regular file of at most env_file_max_bytes (read up to one byte
// more: /proc files report a size of 0) defining at most env_file_max_vars variables.
std::optional<SpawnError> read_env_file(const SpawnSpec &spec, const Identity &ids,
                                        std::vector<std::pair<std::string, std::string>> &out);

// What launch() needs. Pointers must outlive the call.
struct LaunchPlan {
    const char *path = nullptr;
    std::vector<char *> argv; // null-terminated
    std::vector<char *> envp; // null-terminated
    bool pipes = true;        // Stdio::Pipes; else the child keeps the caller's 0, 1, 2
    bool merge_stderr = false;
    bool new_session = true;
    bool foreground_tty = false;
    std::vector<std::pair<int, int>> fds; // (src in the caller, target in the child)
    std::vector<ChildLimit> limits;
    bool set_groups = false, set_gid = false, set_uid = false;
    std::vector<gid_t> groups;
    gid_t gid = 0;
    uid_t uid = 0;
    bool set_umask = false;
    mode_t umask_value = 0;
    const char *cwd = nullptr;
    int cgroup_fd = -1;
    int report_fd = -1;              // the Spawner's socket, in its helper
    ReportMessage *report = nullptr; // built for this request; launch() adds the read ends
    bool want_pidfd = false;         // clone with CLONE_PIDFD
    char *listen_pid_slot = nullptr; // ChildPlan::listen_pid_slot
};

// A plan pointing into `spec`, `extras` and `prep` (which must outlive it).
LaunchPlan make_plan(const SpawnSpec &spec, const SpawnExtras &extras, const Prepared &prep);

// The outcome of launch(). Exactly one of: exec'd (pid > 0, no error, not failed), an error
// before any child existed (error set, pid -1), or a child that failed before exec (pid > 0,
// `status` tells how; that child is NOT reaped by launch(): with CLONE_PARENT it is not even
// the caller's child).
struct Launched {
    enum class Status : std::uint8_t {
        Execd,       // EOF on the status pipe
        ChildFailed, // `failure` is what the child reported
        BadStatus,   // a short or failed read of the status pipe; `status_errno`
        Error,       // `error`, no child
    };
    Status status = Status::Error;
    int pid = -1;
    int out_fd = -1, err_fd = -1; // read ends (Execd with pipes only), owned by the receiver
    int pidfd = -1;               // with plan.want_pidfd and a kernel that has CLONE_PIDFD
    ChildFailure failure{};
    int status_errno = 0;
    std::optional<SpawnError> error;
};

// Creates the pipes, clones (CLONE_VM | CLONE_VFORK, plus CLONE_PARENT when `clone_parent`)
// and reads the child's verdict. Never reaps.
Launched launch(const LaunchPlan &plan, bool clone_parent);

// The error of a launch that did not exec (status ChildFailed, BadStatus or Error), named as
// proc::spawn names it.
SpawnError child_error(const Launched &l, const SpawnSpec &spec, const Prepared &prep);

// In the caller of launch(plan, false): reaps a failed child (blocking; it has already exited
// or is about to) and builds the SpawnResult proc::spawn returns. Takes l.pidfd's ownership
// (closed unless `pidfd` is given, which then receives it for a child that exec'd).
SpawnResult finish(Launched l, const SpawnSpec &spec, const Prepared &prep, int *pidfd = nullptr);

} // namespace vigil::proc::detail

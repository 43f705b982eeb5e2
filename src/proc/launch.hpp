// launch.hpp: the two halves of spawn(), shared by proc::spawn and the Spawner (internal).
//
// spawn() = prepare() + launch() + finish():
//   - prepare() does everything that can fail without a child and needs vigild's view of the
//     world: argv checks, user/group lookups, env_file, the final environment (from vigild's
//     `environ` at call time), the PATH lookup, rlimits. It produces a Prepared.
//   - launch() creates the pipes, clones the child (child_side.cpp) and reads its verdict. It
//     reads only a LaunchPlan (pointers and numbers), so it runs either in vigild (proc::spawn)
//     or in the Spawner's helper process from a plan decoded off the socket.
//   - finish() turns a Launched into a SpawnResult in vigild: it reaps a child that failed
//     before exec and names the failing object exactly as proc::spawn always did.
#pragma once

#include "child_side.hpp"
#include "vigil/proc/spawn.hpp"

#include <optional>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace vigil::proc::detail {

// Everything resolved in vigild before any child exists.
struct Prepared {
    std::string path;             // the executable (PATH already searched)
    std::vector<std::string> env; // "KEY=VALUE", final
    Identity ids;
    std::vector<ChildLimit> limits;
};

// Resolves spec + extras; on error the SpawnError is exactly proc::spawn's.
std::optional<SpawnError> prepare(const SpawnSpec &spec, const SpawnExtras &extras, Prepared &out);

// What launch() needs. Pointers must outlive the call.
struct LaunchPlan {
    const char *path = nullptr;
    std::vector<char *> argv; // null-terminated
    std::vector<char *> envp; // null-terminated
    bool pipes = true;        // Stdio::Pipes; else the child keeps the caller's 0, 1, 2
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
};

// A plan pointing into `spec` and `prep` (which must outlive it).
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
    ChildFailure failure{};
    int status_errno = 0;
    std::optional<SpawnError> error;
};

// Creates the pipes, clones (CLONE_VM | CLONE_VFORK, plus CLONE_PARENT when `clone_parent`)
// and reads the child's verdict. Never reaps.
Launched launch(const LaunchPlan &plan, bool clone_parent);

// In vigild: reaps a failed child (blocking; it has already exited or is about to) and builds
// the SpawnResult proc::spawn returns.
SpawnResult finish(Launched l, const SpawnSpec &spec, const Prepared &prep);

} // namespace vigil::proc::detail

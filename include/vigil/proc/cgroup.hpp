// vigil/proc/cgroup.hpp: a cgroup (v2) for each service, where the kernel lets vigild make one.
//
// Why: a service's processes share its session and process group only until one of them calls
// setsid(); a process group cannot hold a double-forking daemon, and a stop signal to the group
// misses it. A cgroup holds every process the service ever starts, whatever they do, so a stop
// reaches them all (systemd's KillMode=control-group) and "the service is gone" is a fact the
// kernel states (cgroup.events: populated 0).
//
// Where: vigild finds the cgroup v2 hierarchy (/proc/self/mountinfo) and its own cgroup in it
// (/proc/self/cgroup, the "0::" line), and makes `<own cgroup>/vigil.<id>/<unit>` for each
// service that runs. <id> is vigild's pid and the start time of its PID namespace's init, so two
// vigilds (two containers sharing a cgroup, tests) never share folders: the folder is vigild's
// once it holds the folder's lock (below) and the locked folder is still the one at the path; a
// vigild started in the same clock tick as another, or whose new folder another's sweep removed
// before the lock was taken, tries `vigil.<id>-1`, `-2`, ... No controller is enabled:
// the cgroups only hold processes, vigild's own cgroup keeps vigild (the no-internal-process rule
// only applies to cgroups with controllers enabled below them). Nothing is delegated to services:
// the folders are root's, so a service cannot move itself out.
//
// When not: without a writable cgroup v2 (no cgroup2 mount, read-only, not allowed), find()
// fails and services run without cgroups: a process that leaves its session then escapes a stop,
// as vigild(8) documents.
//
// Leftovers: vigild holds an exclusive flock(2) on its folder for as long as it lives (the kernel
// drops it however vigild ends, SIGKILL included). When it makes its folder, it removes the
// empty folders of vigilds that are gone: a `vigil.*` sibling whose lock it can take. A gone
// vigild's folder that still holds processes is left alone, and said (they are its services,
// orphaned; whoever started that vigild decides).
//
// Cost: one descriptor for the lock; none is held per service. cgroup.procs is opened for each
// spawn (the child writes "0" to it, proc::SpawnExtras::cgroup_procs_fd) and closed after;
// cgroup.events is opened only while vigild waits for a cgroup to empty.
//
// Every call here is a quick file operation on the cgroup file system (in memory, never blocks).
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace vigil::proc {

class CgroupRoot {
public:
    // Finds the hierarchy and vigild's cgroup, makes vigild's folder in it, locks it and removes
    // the empty folders of vigilds that are gone. nullopt with `error` when cgroups cannot be
    // used ("no writable cgroup v2 hierarchy"). `stale`, when given, gets one line per gone
    // vigild's folder that still holds processes.
    static std::optional<CgroupRoot> make(std::string *error,
                                          std::vector<std::string> *stale = nullptr);
    // Continuity across an exec of vigild: the folder the old binary made and its locked
    // descriptor (lock_fd()), kept open across the exec so that the lock never lapses. Nothing
    // is swept: the folders in it are the running services'. nullopt when `path` is not a
    // folder of vigild's (the descriptor is then closed).
    static std::optional<CgroupRoot> adopt(std::string path, int lock_fd);
    int lock_fd() const noexcept { return lock_fd_; }
    CgroupRoot(CgroupRoot &&other) noexcept;
    CgroupRoot &operator=(CgroupRoot &&other) noexcept;
    CgroupRoot(const CgroupRoot &) = delete;
    CgroupRoot &operator=(const CgroupRoot &) = delete;
    ~CgroupRoot();

    // A new folder for a cgroup of `unit`: `<unit>`, or when that exists (a removed unit of the
    // same name still stopping, or a folder that kept processes) `<unit>+2`, `<unit>+3`, ...
    // (`+` is not allowed in unit names), so two runtimes never share a cgroup: "" with
    // `error` when none can be made.
    std::string service(const std::string &unit, std::string *error) const;
    // Removes vigild's folder and every empty service folder in it (at exit). Folders that still
    // hold processes stay.
    void remove_all() const;
    const std::string &path() const { return path_; }

private:
    CgroupRoot() = default;
    std::string path_; // vigild's folder
    int lock_fd_ = -1; // its descriptor, flock()ed
};

// Operations on one service's cgroup folder.
namespace cgroup {
// A descriptor of <dir>/cgroup.procs for writing (close-on-exec), or -1 with errno.
int open_procs(const std::string &dir);
// The pids in it (cgroup.procs).
std::vector<int> pids(const std::string &dir);
// "populated 0" in cgroup.events (true also when the folder is gone).
bool empty(const std::string &dir);
// SIGKILL through cgroup.kill (Linux 5.14), else each pid; any other signal to each pid, and
// with `then_cont` SIGCONT after it to the same pids (the folder is read once). 0, or the first
// errno other than ESRCH.
int signal(const std::string &dir, int sig, bool then_cont = false);
// A descriptor of cgroup.events to poll for POLLPRI (its "populated" changed), or -1.
int open_events(const std::string &dir);
// rmdir; true when it is gone.
bool remove(const std::string &dir);
} // namespace cgroup

} // namespace vigil::proc

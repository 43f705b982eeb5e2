// process_table.hpp: which process belongs to which incarnation.
//
// The shell reaps every process with waitpid(-1) (vigild is PID 1 or a child subreaper), so a
// reaped pid is only a number until this table says whose it was: the spawned process of an
// incarnation, or a main process that MAINPID= named. A pid is added when the shell learns it
// (the spawn's answer, WatchMain) and taken out when it is reaped, so a number the kernel later
// reuses can never be mistaken for it. Anything not in the table is someone else's: an exec
// probe's check, a process the Spawner made, or an orphan re-parented to vigild.
#pragma once

#include <cstddef>
#include <optional>
#include <unordered_map>

#include "vigil/ids.hpp"

namespace vigil::daemon {

struct ProcessOwner {
    ChildId child;
    Incarnation incarnation;
};

class ProcessTable {
public:
    void add(int pid, ProcessOwner owner) { by_pid_[pid] = owner; }
    void remove(int pid) { by_pid_.erase(pid); }
    std::optional<ProcessOwner> find(int pid) const {
        auto it = by_pid_.find(pid);
        if (it == by_pid_.end()) return std::nullopt;
        return it->second;
    }
    // The owner of a reaped pid, which leaves the table.
    std::optional<ProcessOwner> take(int pid) {
        auto it = by_pid_.find(pid);
        if (it == by_pid_.end()) return std::nullopt;
        ProcessOwner o = it->second;
        by_pid_.erase(it);
        return o;
    }
    std::size_t size() const noexcept { return by_pid_.size(); }
    template <class F> void for_each(F &&f) const {
        for (const auto &[pid, owner] : by_pid_)
            f(pid, owner);
    }

private:
    std::unordered_map<int, ProcessOwner> by_pid_;
};

} // namespace vigil::daemon

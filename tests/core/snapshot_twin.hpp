// tests/core/snapshot_twin.hpp: two cores fed the same inputs, one of them restored from a
// snapshot of the other (Core::snapshot, Core::restore), for the differential tests.
//
// `Twin` plays the shell for both: core `a` runs from the start; core `b` is restored from a's
// snapshot before every input (every_step) or before one chosen input (restore_at), and from
// then on gets exactly what `a` gets. After every input the two must have given the same
// actions and answers, and must hold the same state: byte-identical snapshots (the whole
// model) and the same answers to every query (what restore rebuilds: names, deadlines).
// The fake OS answers Spawn at once with Spawned (unless held), and a process dies of any
// signal but SIGCONT (unless it ignores the graceful one); deaths come as Exited + Drained after
// the current action list, as a reaper would. A lingering process leaves its output open: its
// Drained comes when a signal reaches what is left (SIGKILL; the stop signal unless ignored).
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "vigil/core/core.hpp"

namespace vigil::test {

std::string text(const core::Action &a);
std::string text(const core::Record &r);
std::string text(const core::ChildStatus &s);

class Twin {
public:
    // restore_at < 0 with every_step: b is restored before every input.
    Twin(core::TreeSpec spec, bool every_step, int restore_at);

    // Inputs (each is one step: both cores, compared).
    void start();
    void event(const core::Event &ev); // and the reactions it causes
    core::CommandResult command(core::CommandKind kind, const std::string &name, int sig = 0);
    void restart(const std::vector<std::string> &names);
    core::CommandResult roll(const std::string &unit, std::optional<std::uint32_t> max = {});
    core::ReconfigureResult reload(core::TreeSpec next);
    void forget(ChildId c);
    void note(const std::string &name, const std::string &message);
    void advance(Duration d); // deadline by deadline

    // The fake OS.
    void exit(const std::string &name, int status); // the main process ends by itself
    void ready(const std::string &name);
    std::set<std::string> ignore_term; // processes of these ignore the graceful stop signal
    std::set<std::string> hold_spawn;  // Spawns of these are kept unanswered
    std::set<std::string> fail_spawn;  // Spawns of these are answered with SpawnFailed
    std::set<std::string> linger;      // processes of these leave their output open
    void release_spawns();             // answers the held Spawns
    void finish() { compare(true); }   // every query, at the end of a scenario

    ChildId id(const std::string &name) const;
    core::ChildStatus st(const std::string &name) const;
    core::Core &a_core() { return *a_; }

    core::TreeSpec loaded; // what b is checked against at a restore (follows reloads)
    int steps = 0, restores = 0;
    TimePoint now = at_ms(0);

private:
    struct Proc {
        ChildId child;
        Incarnation inc;
        std::string name;
    };
    void maybe_restore();
    void compare(bool queries);
    void react(const std::vector<core::Action> &acts);
    void die(int pid, core::ExitStatus status);
    void drain_pending();
    template <class F> void input(F &&f);

    std::unique_ptr<core::Core> a_, b_;
    bool every_;
    int restore_at_;
    bool draining_ = false;
    int next_pid_ = 100;
    std::map<int, Proc> procs_;                      // live spawned processes
    std::map<std::uint32_t, int> moved_main_;        // child -> its MAINPID= process
    std::map<std::uint32_t, Incarnation> lingering_; // child -> an ended run holding its output
    std::map<std::uint32_t, Incarnation> ignoring_;  // lingering leftovers that ignore TERM
    std::deque<core::Event> pending_;
    std::vector<core::Spawn> held_;
};

} // namespace vigil::test

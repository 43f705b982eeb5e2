// tests/support/sim.hpp: a simulated shell for the supervision core (docs/house-style.md §7.4).
//
// `Sim` plays vigild's part with no process and no clock: it owns a fake clock (`now`) and a
// fake process table (pids from 100 up, the smallest free one first, so pids are reused on
// purpose), carries out Spawn and Signal actions, and talks to the core only through its public
// API (events, commands, reconfigure). It answers a Spawn at once with Spawned or SpawnFailed
// (the real shell answers later; tests of that inject events by hand). A process reacts to
// signals per its behaviour (die at once by default); deaths are delivered as Exited events after
// the current action list, as a reaper would, each followed by Drained (its output at EOF)
// unless linger() says that something it left holds the pipes.
// advance(d) moves the clock deadline by deadline (dinit's advance_time), and every loop is
// capped, so a livelock fails a test instead of hanging it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "vigil/core/core.hpp"

namespace vigil::test {

// ---- building specs ----------------------------------------------------------------------

// A node of a tree under construction. Test defaults differ from vigil's in one way: backoff
// is off (initial 0) so the OTP items read as in OTP; backoff tests switch it on.
struct NodeDef {
    core::ChildSpec spec;
    std::vector<NodeDef> children;
};

using Tweak = std::function<void(core::ChildSpec &)>;
// The child counts as started only once it reports ready (ChildSpec::wait_ready).
inline Tweak wait_ready() {
    return [](core::ChildSpec &s) { s.wait_ready = true; };
}

NodeDef service(std::string name, const Tweak &tweak = {});
NodeDef supervisor(std::string name, core::Strategy strategy, std::vector<NodeDef> children,
                   const Tweak &tweak = {});
// Flattens a tree into a TreeSpec; the root is renamed "root".
core::TreeSpec tree(NodeDef root);
// Shorthand: a root supervisor with these children.
core::TreeSpec root(core::Strategy strategy, std::vector<NodeDef> children,
                    const Tweak &tweak = {});

// Common tweaks.
Tweak transient();
Tweak temporary();
Tweak intensity(int max_restarts, Duration period);
Tweak stop_timeout(std::optional<Duration> t); // nullopt: infinity

// The id of the node `name` of `t` (throws when there is none).
ChildId id_of(const core::TreeSpec &t, const std::string &name);
// `name` is ordered after `deps` (siblings listed before it).
void set_after(core::TreeSpec &t, const std::string &name, const std::vector<std::string> &deps);

// ---- the simulator -------------------------------------------------------------------------

enum class OnSignal {
    Die,    // dies of any signal at once (the default)
    Ignore, // ignores every signal but SIGKILL
};

struct FakeProcess {
    ChildId child;
    Incarnation inc;
    std::string name;
    std::vector<int> signals;
    bool alive = true;
};

struct LogEntry {
    TimePoint at;
    std::string text; // "spawn a", "signal a SIGTERM", "exit a 1", "exit a SIGKILL", ...
};

class Sim {
public:
    explicit Sim(core::TreeSpec spec);

    core::Core core;
    TimePoint now = at_ms(0);

    // Driving.
    void start_all();
    void exit(const std::string &name, int status);
    void exit_by_signal(const std::string &name, int signal);
    void ready(const std::string &name);
    void health_fail(const std::string &name,
                     core::FailureCause cause = core::FailureCause::Liveness,
                     std::string detail = "probe failed");
    void inject(const core::Event &ev); // raw event, for staleness tests
    void advance(Duration d);
    void run_until_quiescent();
    core::CommandResult command(core::CommandKind kind, const std::string &name,
                                std::string who = "test", int signal = 0);
    core::ReconfigureResult reload(core::TreeSpec next);
    // Core::roll of a unit's instances.
    core::CommandResult roll(const std::string &unit,
                             std::optional<std::uint32_t> max_unavailable = std::nullopt,
                             std::string who = "test");
    // Core::restart of several children (by name; "" for an id that is no child).
    std::vector<core::CommandResult> restart(const std::vector<std::string> &names,
                                             std::string who = "test");

    // Process behaviour.
    void on_signal(const std::string &name, OnSignal behaviour);
    // A process of `name` that gets its stop signal exits with status 0 after `d`.
    void exit_after_signal(const std::string &name, Duration d);
    // The next `times` spawns of `name` fail.
    void fail_spawn(const std::string &name, int times = 1,
                    std::string reason = "exec /bin/x: No such file or directory");
    // The next process of `name` leaves something behind that holds its output when it ends:
    // its Drained comes only with drain(name), or when a signal to its group reaches what is
    // left (SIGKILL always; the stop signal unless `ignores_term`).
    void linger(const std::string &name, bool ignores_term = false);
    void drain(const std::string &name);

    // Queries.
    ChildId id(const std::string &name) const;
    core::ChildStatus status(const std::string &name) const;
    core::ChildState state(const std::string &name) const { return status(name).state; }
    Pid pid(const std::string &name) const;
    std::uint64_t incarnation(const std::string &name) const;
    bool alive(const std::string &name) const; // has a live process
    // Signals sent to the current (or last) process of `name`.
    std::vector<int> signals_to(const std::string &name) const;
    // Every signal ever sent to any process of `name`, in order.
    std::vector<int> all_signals_to(const std::string &name) const;
    int spawns(const std::string &name) const;
    // Log texts with a prefix ("spawn ", "signal ", "exit "), in order; e.g. starts() = names.
    std::vector<std::string> lines(const std::string &prefix) const;
    std::vector<std::string> starts() const;     // names, in spawn order
    std::vector<std::string> stop_order() const; // names, in order of their first stop signal
    std::optional<TimePoint> when(const std::string &text, int nth = 0) const;
    void clear_log() { log.clear(); }
    bool has_record(const std::string &name, core::RecordKind kind,
                    const std::string &fragment = "") const;

    std::vector<LogEntry> log;
    std::vector<core::Record> records;
    std::vector<core::Action> actions;
    std::optional<int> exit_status;
    int stray_signals = 0; // signals to a pid that is not that child's live process
    int conts = 0;         // SIGCONTs sent (they follow every graceful stop signal)

private:
    struct PendingExit {
        int pid;
        Incarnation inc;
        core::ExitStatus status;
    };
    struct Lingering {
        Incarnation inc;
        std::string name;
        bool ignores_term = false;
    };
    void release_drain(std::uint32_t child);
    void apply(std::vector<core::Action> acts);
    void feed(const core::Event &ev);
    void deliver_due();
    void die(int pid, core::ExitStatus status);
    int alloc_pid();
    std::optional<TimePoint> next_pending() const;

    std::map<int, FakeProcess> procs_; // live processes by pid
    std::vector<FakeProcess> dead_;
    std::map<std::pair<TimePoint, std::uint64_t>, PendingExit> pending_;
    std::uint64_t pending_seq_ = 0;
    std::map<std::string, OnSignal> behaviour_;
    std::map<std::string, Duration> exit_after_;
    std::map<std::string, std::pair<int, std::string>> fail_spawn_;
    std::map<std::string, bool> linger_;           // name -> ignores_term, for its next death
    std::map<std::uint32_t, Lingering> lingering_; // child -> an ended run holding its output
    std::map<std::string, int> spawns_;
    std::map<std::string, std::vector<int>> all_signals_;
    std::map<std::string, std::vector<int>> last_signals_;
};

std::string sig_name(int sig);

} // namespace vigil::test

// shell.hpp: vigild's shell: the pure supervision core, carried out on an operating system.
//
// The core (vigil/core/core.hpp) decides everything; the shell only turns what the OS reports
// into core events and carries out the actions the core returns. Every OS call goes through the
// seam (os.hpp), so the same Shell runs in vigild (uv_os.hpp) and in tests/daemon against a fake
// OS, deterministically.
//
// Parts, one job each (one file each):
//   shell.cpp        the loop's side: actions in order, the deadline, signals to vigild, teardown
//   spawning.cpp     Spawn and its answer, Signal, WatchMain, reaping: the process table
//   output.cpp       an incarnation's output: lines to the unit's log, ready.log, patterns,
//                    EOF (Drained), log-file back-pressure and failures
//   health.cpp       probes, the ready fd, the notify socket and what its datagrams mean
//   control_api.cpp  the control socket's requests (ControlApi)
//   status_view.cpp  status JSON, the HTTP snapshot
//   reload.cpp       reload: units loaded off the loop, applied to the core and the runtimes
//   manager.cpp      what vigild's own service manager hears (READY=1...), told by the parts
//   listening.cpp    the sockets held for services (`listen`): bound at start and on reload,
//                    passed to every spawn, closed once no unit lists them
//
// How an incarnation flows through the shell (state.hpp has the core's side):
//   Spawn -> os.spawn (asynchronous) -> the answer: the process table learns the pid, the output
//   is read, Spawned (or SpawnFailed) is fed. Its lines go to the unit's log; EOF of both pipes
//   (once the cgroup, or without one the process group, is empty) is Drained. The reaper's pid is
//   looked up in the process table, the pipes and the notify socket are read first, then Exited is
//   fed. The core reports the end when it has both; a Run whose pipes outlive it keeps feeding the
//   log from `past` until its EOF.
//
// Reentrancy: actions are queued and carried out by one loop (execute()); an action whose
// answer is immediate (a spawn refused before it started) feeds its event into the same queue,
// so nothing recurses.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "journal.hpp"
#include "manager.hpp"
#include "options.hpp"
#include "os.hpp"
#include "process_table.hpp"
#include "runtime.hpp"
#include "vigil/core/core.hpp"
#include "vigil/probe/prober.hpp"
#include "vigil/unit/unit.hpp"

namespace vigil::daemon {

class ControlApi;

// The core's part of what units declare beyond the tree: the readiness probe and the watchdog.
core::TreeSpec core_tree(core::TreeSpec tree, const std::vector<unit::Unit> &units);
// A service gets vigild's original descriptor limit (Options::service_nofile) unless its unit
// sets one: vigild raises its own, and programs that use select() break above 1024.
void give_default_limits(unit::Unit &u, const Options &opts);

// Who wants to hear about records and log lines (the control API's followers).
class ShellListener {
public:
    virtual ~ShellListener() = default;
    virtual void record(const core::Record &r) = 0;
    // New lines are in the unit's ring.
    virtual void lines(ChildId child) = 0;
    // The unit's runtime is gone (removed by reload, or a temporary child that ended).
    virtual void released(ChildId child) = 0;
};

class Shell {
public:
    Shell(Os &os, const Options &opts, unit::LoadResult loaded);
    // The new binary of a re-exec whose state it read: adopt() comes next and puts the restored
    // core in, so no core is built from `tree` here (with thousands of units that would be a
    // second one inside the pause); until then the core holds the root alone. Should adopt()
    // refuse the state, it builds the units' core before it returns.
    struct Adopting {};
    Shell(Os &os, const Options &opts, std::vector<unit::Unit> units, const core::TreeSpec &tree,
          Adopting);
    ~Shell();
    Shell(const Shell &) = delete;
    Shell &operator=(const Shell &) = delete;

    // Binds the sockets of every unit's `listen` (listening.cpp). Blocks (listen.hpp): call it
    // before the loop runs; run_shell() does, and start() does when nobody did. False, with
    // every failure in `error` (one a line) and nothing left open: vigild must not run.
    bool bind_listen(std::string &error);

    // Starts the tree (after bind_listen(); when that fails, logs why and exits with 1).
    void start();

    // ---- what the OS reports ------------------------------------------------------------
    void on_deadline();
    // A process vigild reaped (waitpid), with its wait status. True when it was the shell's (a
    // service's process or an exec probe's check); the Os then offers it elsewhere (the
    // Spawner), and counts it as an orphan (orphan_reaped()) when nobody claims it.
    bool on_reaped(int pid, int wstatus);
    void orphan_reaped();
    // A signal to vigild: TERM, INT, QUIT shut down; HUP reloads; USR2 reopens log files;
    // USR1 writes every unit's state to the journal.
    void on_signal(int sig);

    // ---- for the parts and the Os ---------------------------------------------------------
    core::Core &core() { return core_; }
    const core::Core &core() const { return core_; }
    const unit::Unit &unit(ChildId id) const { return units_[id.value]; }
    UnitRuntime &runtime(ChildId id);
    const UnitRuntime *runtime_if(ChildId id) const;
    // The sequence number of the last log line pushed into any unit's ring (0: none yet).
    std::uint64_t last_log_seq() const { return seq_.next - 1; }
    Os &os() { return os_; }
    Journal &journal() { return journal_; }
    const Options &options() const { return opts_; }
    ControlApi &control() { return *control_; }
    probe::ExecRegistry &exec_probes() { return exec_probes_; }

    core::CommandResult command(const core::Command &c);
    // A restart of several units as one command (core::Core::restart): results in `ids` order.
    std::vector<core::CommandResult> restart(std::span<const ChildId> ids, std::string_view who);
    // A rolling restart of a unit's instances (core::Core::roll).
    core::CommandResult roll(std::string_view unit, std::optional<std::uint32_t> max_unavailable,
                             std::string_view who);
    void feed(const core::Event &ev);
    void set_listener(ShellListener *l) { listener_ = l; }
    // vigild's own service manager (manager.hpp), when it gave NOTIFY_SOCKET: set before
    // start(). The shell tells it when the tree is up, reloads, and stops.
    void set_manager(std::unique_ptr<ManagerNotifier> m) { manager_ = std::move(m); }
    const ManagerNotifier *manager() const { return manager_.get(); }

    // Reload from the units directory. The load runs off the loop; `done` gets the core's
    // answer, or the diagnostics that kept the running configuration.
    struct ReloadOutcome {
        core::ReconfigureResult result;
        std::vector<std::string> diagnostics; // non-empty: nothing was changed
        std::size_t problems = 0;             // found (diagnostics shows at most 1000)
    };
    void reload(std::string who, std::function<void(const ReloadOutcome &)> done);

    // ---- re-exec (reexec.cpp) --------------------------------------------------------------
    // Where the new binary's answer goes: the asking client's connection (carried across the
    // exec; -1: nobody waits) and its request's id, as JSON text.
    struct ReexecClient {
        std::function<int()> fd; // asked at the exec (the client may have gone); -1: none
        std::string id_json = "null";
    };
    // Executes vigild's binary again with every service kept (reexec.cpp says how). `failed`
    // gets why when it did not happen (the old binary goes on as before); when it did, the new
    // binary answers the client.
    void reexec(std::string who, ReexecClient client,
                std::function<void(const std::string &why)> failed);
    // The new binary, before the Os attaches and before start(): takes the old one's state into
    // the shell made (Adopting) from the unit files (`loaded_tree`: their LoadResult's tree, as
    // read). False, with why, when it cannot; then nothing was taken and the shell holds the
    // units' core, as the other constructor makes it (the caller stops the old services and
    // starts afresh).
    bool adopt(Handover &h, const core::TreeSpec &loaded_tree, std::string &error);
    // After adopt() and the Os's attach(): probes, the output that ended meanwhile, the core's
    // deadline, the service manager; answers the client.
    void resume(const Handover &h);
    std::uint64_t generation() const { return generation_; } // re-execs so far

    // The sockets held for the unit's `listen` entries, in its order (fd -1: not held).
    struct HeldView {
        const unit::ListenSpec *spec;
        int fd;
    };
    std::vector<HeldView> held_sockets(ChildId id) const;
    int held_socket(const unit::ListenSpec &spec, const std::string &unit_name) const;

    // Reopens every unit's log file (SIGUSR2, `vigilctl logs --reopen` for all units).
    void reopen_logs();
    // The exit status once the core asked vigild to exit; then every handle is closed.
    std::optional<int> exit_status() const { return exit_status_; }
    // Runs once, when the core asked vigild to exit (the Os stops its loop).
    std::function<void(int status)> on_exit;
    std::uint64_t orphans_reaped() const { return orphans_reaped_; }

private:
    // shell.cpp
    void execute(std::vector<core::Action> &actions);
    void run_queue();
    void arm_deadline();
    void carry_out(const core::Action &a);
    void act(const core::Publish &a);
    void act(const core::Exit &a);
    void teardown();
    void release(ChildId id);
    void dump_status();
    void root_record(core::RecordKind kind);
    void going_down();

    // spawning.cpp
    void check_left_behind(ChildId id);
    void scan_left_behind();
    void left_behind(const std::string &name, const std::vector<int> &pids);
    void rescan_left_behind(const std::string &name);
    void act(const core::Spawn &a);
    bool prepare_extras(ChildId id, Run &run, proc::SpawnExtras &extras, std::string &error);
    void on_spawned(ChildId id, Incarnation inc, proc::SpawnCompletion done);
    void act(const core::Signal &a);
    void act(const core::WatchMain &a);
    void watch_main(ChildId child, Run &run);
    Run *find_run(ChildId id, Incarnation inc);
    void retire(ChildId id);
    void close_run(Run &run);

    // output.cpp
    void read_output(ChildId id, Run &run, const proc::Spawned &sp);
    log::Capture::Callbacks output_callbacks(ChildId id, Incarnation inc);
    void ensure_log(ChildId id);
    void after_batch(ChildId id, Incarnation inc);
    void output_ended(ChildId id, Incarnation inc);
    void recheck_groups();
    void report_log_failures(ChildId id);
    void file_pressure(ChildId id, bool congested);
    void congestion_notice(ChildId id, bool congested);
    static constexpr Duration log_stall_notice{10'000};

    // health.cpp
    void act(const core::StartProbes &a);
    void start_probes(ChildId id, Incarnation inc, const std::optional<probe::MonitorState> &from);
    void act(const core::StopProbes &a);
    bool open_notify(ChildId id, std::string &error);
    notify::NotifySocket::Callbacks notify_callbacks(ChildId id);
    bool owns(ChildId id, int pid);
    void on_notify(ChildId id, const notify::Message &m, int sender);
    void became_ready(ChildId id, Incarnation inc);
    void note_check_failure(UnitRuntime &r, CheckSlot slot, std::string_view message);
    void replay_early(ChildId id, Incarnation inc);

    // reload.cpp
    ReloadOutcome apply_reload(unit::LoadResult next);
    void align_units(const std::map<std::string, unit::Unit> &by_name,
                     const std::vector<std::uint64_t> &fingerprints);
    struct ReloadWaiter;
    void finish_reload(const std::vector<ReloadWaiter> &waiters, ReloadOutcome outcome);

    // reexec.cpp
    std::string reexec_blocker() const;
    std::string differs_from_running(const unit::LoadResult &next) const;
    std::string exec_now(const std::string &who, const ReexecClient &client,
                         unit::LoadResult loaded);
    std::string exec_exported(const std::string &who, Handover &h);
    std::string export_state(Handover &h);
    std::string export_unit(ChildId id, Handover &h);
    HandoverRun export_run(const Run &run, Handover &h);
    // Both public constructors: `tree` is the core's as it is when `deferred` (the root alone),
    // else the units' tree, which core_tree() completes from the units.
    Shell(Os &os, const Options &opts, std::vector<unit::Unit> units, core::TreeSpec tree,
          bool deferred);
    bool adopt_state(Handover &h, const core::TreeSpec &loaded_tree, std::string &error);
    void take_state(Handover &h, const core::TreeSpec &next, core::Core &restored,
                    std::vector<std::optional<log::Ring>> &rings);
    void adopt_unit(const HandoverUnit &hu, std::optional<log::Ring> &ring);
    std::unique_ptr<Run> adopt_run(ChildId id, const HandoverRun &x);
    bool reexec_running_ = false;
    bool core_deferred_ = false; // made Adopting: the core is the root alone until adopt()
    std::uint64_t generation_ = 0;
    struct AdoptedProbes {
        ChildId id;
        Incarnation inc;
        probe::MonitorState from;
    };
    std::vector<AdoptedProbes> adopted_probes_;
    std::vector<core::Action> adopted_actions_;

    // listening.cpp
    using ReloadContinuation =
        std::function<void(unit::LoadResult, std::vector<std::string> errors)>;
    std::map<std::string, unit::ListenSpec>
    wanted_sockets(const std::vector<unit::Unit> &units) const;
    bool add_listen_extras(const unit::Unit &u, proc::SpawnExtras &extras, std::string &error);
    void bind_for_reload(unit::LoadResult next, ReloadContinuation cont);
    void sync_sockets();
    void close_sockets();
    struct HeldSocket {
        int fd;
        unit::ListenSpec spec;
    };
    std::map<std::string, HeldSocket> held_; // by held_key(); at most bounds::max_held_sockets
    bool listen_bound_ = false;

    Os &os_;
    Options opts_;
    Journal journal_;
    std::vector<unit::Unit> units_; // by ChildId
    core::Core core_;
    std::size_t left_watch_count_ = 0; // before rt_: the runtimes' watches count down into it
    std::vector<UnitRuntime> rt_;      // by ChildId
    ProcessTable procs_;
    probe::ExecRegistry exec_probes_;
    log::SeqCounter seq_;
    std::unique_ptr<ControlApi> control_;
    ShellListener *listener_ = nullptr;
    std::deque<core::Action> queue_;
    std::deque<core::Signal> signals_; // run_queue() sends them once the queue is done
    bool executing_ = false;
    std::optional<int> exit_status_;
    std::uint64_t orphans_reaped_ = 0;
    struct ReloadWaiter {
        std::string who;
        std::function<void(const ReloadOutcome &)> done;
    };
    static constexpr std::size_t max_left_behind_scan = 64; // per unit
    static constexpr std::size_t max_left_watches = 256;    // in all (one descriptor each)
    std::vector<std::string> left_behind_todo_; // units to look for leftovers of (no cgroup)
    bool scanning_ = false;
    std::vector<ChildId> group_waits_; // output ended, process group not yet empty (no cgroup)
    bool reload_running_ = false;
    std::vector<ReloadWaiter> reload_waiters_; // asked for, not yet under way
    std::unique_ptr<ManagerNotifier> manager_; // null: no service manager to notify
    bool going_down_ = false; // a shutdown, or the root gave up: no service starts again
};

// A re-exec's answer (a protocol line; its id is replaced by `id_json`) written to the asking
// client's connection, which is then closed (reexec.cpp).
void answer_client(int fd, const std::string &id_json, std::string line);
// What a binary that cannot read the old one's state does with it (reexec.cpp): closes every
// descriptor carried but the client's, stops every service the old binary ran (SIGTERM, then
// SIGKILL after `grace`) and reaps them. Blocks: before the loop runs only.
void abandon_handover(const Handover &h, Duration grace);

} // namespace vigil::daemon

// tests/daemon/fake_os.hpp: a fake operating system for vigild's shell (src/daemon/os.hpp).
//
// FakeOs lets tests drive the real Shell deterministically: no process, no socket, no thread,
// no sleep. It has
//  - a fake clock: advance(d) moves it deadline by deadline, as the loop's timer would, and
//    settles after each (pipes read, zombies reaped);
//  - a fake process table: a spawn is answered by the test (answer(), or auto_answer, which
//    answers every spawn at once with the next free pid), processes have a session and a group,
//    get signals (recorded; a process dies of a signal unless it ignores it), and their death is
//    reported by reap() as vigild's waitpid would, followed by nothing else: the output's EOF
//    is the test's to give (close_output), so every order of the two can be tested;
//  - fake pipes: write() queues lines the process wrote; they are delivered when the shell
//    reads (deliver(), or read_now() when the shell reaps the main process), unless paused;
//  - fake notify sockets, ready fds, probes and main-process watches that the test fires;
//  - when `cgroups` is set, a cgroup per unit: a spawned process joins its unit's through the
//    descriptor the shell hands the spawn, its forks stay in it, a process leaves it when it
//    ends (before it is reaped, as in the kernel); reads of cgroup.events are counted, and a
//    wait for it to empty is answered by settle();
//  - MemoryFileSink log files (congestion by hand) and, when asked, a real Forwarder on a libuv
//    loop that is never run, writing into a pipe nobody reads: vigild's stdout, blocked;
//  - unit loads answered by the test (finish_load()), so a reload can land in the middle of
//    anything.
// Callbacks are copied before they are called and FakeOs touches nothing of a handle after
// calling back, so the shell may destroy the handle from inside its own callback, as it may
// with the real ones.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "os.hpp"
#include "shell.hpp"

struct uv_loop_s;

namespace vigil::test {

struct FakeProc {
    int pid = 0;
    int ppid = 1;
    int pgrp = 0;
    int session = 0;
    bool alive = true;
    bool zombie = false; // ended, not reaped
    bool ignores_term = false;
    std::string unit;   // VIGIL_UNIT in its environment (inherited by fork())
    std::string cgroup; // the unit whose cgroup it is in (inherited by fork()); "" for none
    std::vector<int> signals;
    std::optional<int> wstatus;
    int output = -1; // index into outputs, for the process's own lines
};

struct FakeOutput {
    vigil::log::Capture::Callbacks cb;
    std::deque<std::pair<vigil::log::Stream, std::string>> pending; // written, not yet read
    bool paused = false;
    bool eof = false;
    bool closing = false; // every writer gone: EOF after the pending lines
    std::string partial;  // a partial stdout line read and held back (for a re-exec)
    bool alive = true;    // the channel exists
    int pauses = 0;
};

struct FakeNotify {
    vigil::notify::NotifySocket::Callbacks cb;
    std::string path;
    bool alive = true;
};

struct FakeProbes {
    vigil::probe::MonitorSpecs specs;
    vigil::probe::Monitor::Callbacks cb;
    vigil::probe::ExecSpawn exec;
    bool alive = true;
};

struct PendingSpawn {
    vigil::proc::SpawnSpec spec;
    vigil::proc::SpawnExtras extras;
    vigil::daemon::SpawnDone done;
    bool answered = false;
    std::string cgroup; // the cgroup its process joins (the unit's), from the descriptor given
};

struct FakeCgroupState {
    bool exists = true;
    int events_reads = 0;             // empty() calls: reads of cgroup.events
    int waits = 0;                    // on_empty() calls
    std::function<void()> when_empty; // the pending wait; settle() answers it
};

class FakeOs : public vigil::daemon::Os {
public:
    FakeOs();
    ~FakeOs() override;

    // ---- driving --------------------------------------------------------------------------
    vigil::TimePoint clock = vigil::at_ms(1'000'000);
    void advance(vigil::Duration d);
    bool auto_answer = true; // answer every spawn at once (a new pid, in its own session)
    // Answers pending spawn `i` (in order of request): a process, or an error.
    int answer(std::size_t i);
    void fail(std::size_t i, const std::string &error);
    std::vector<PendingSpawn> spawns;
    // The process's lines: queued in its pipe, delivered when the shell reads.
    void write(int pid, vigil::log::Stream stream, const std::string &line);
    void deliver(); // reads every unpaused pipe, as the loop would
    // Every writer of the pipe is gone: EOF once its lines are read.
    void close_output(int pid);
    // The process ends (exit status or signal) and is reaped at once (reap()).
    void exit(int pid, int status);
    void kill(int pid, int signal);
    // The process ends but nobody reaps it yet (then reap(pid)).
    void end(int pid, int wstatus);
    void reap(int pid);
    // What the OS does next on its own: every pipe with something to read is read, every zombie
    // is reaped (lowest pid first), until nothing changes. advance() settles after each deadline.
    void settle();
    // A process the service started (same session and group unless setsid).
    int fork(int parent, bool setsid = false);
    void notify(const std::string &unit, const std::string &datagram, int sender);
    void probe_ready(const std::string &unit, bool ok);
    void probe_failed(const std::string &unit, vigil::core::FailureCause cause,
                      const std::string &detail);
    // Load answers: the next load_units() gives `next_load`, when finish_load() is called.
    std::optional<vigil::unit::LoadResult> next_load;
    bool loading() const { return load_done_ != nullptr; }
    void finish_load();
    // The other fake's processes, clock and next pid: a re-exec's new binary on the same kernel.
    void share_kernel(const FakeOs &old) {
        procs = old.procs;
        clock = old.clock;
        next_pid_ = old.next_pid_;
    }
    // vigild's stdout: a real Forwarder into a pipe nobody reads (blocked).
    void block_stdout();

    // ---- looking ------------------------------------------------------------------------
    std::map<int, FakeProc> procs;
    std::vector<FakeOutput> outputs;
    std::map<std::string, FakeNotify> notifies;
    std::map<std::string, FakeProbes> probes;
    vigil::probe::ExecRegistry probe_registry; // the fake Monitors' (they never run a check)
    std::vector<std::string> journal;
    std::vector<vigil::log::MemoryFileSink *> files;
    std::optional<vigil::TimePoint> armed;
    int closed_fds = 0;
    vigil::daemon::Shell *shell = nullptr;
    bool has_journal(const std::string &fragment) const;
    int pid_of(const std::string &unit) const; // the unit's spawned process (last one)
    std::map<std::string, int> spawned_pid;

    // ---- Os -------------------------------------------------------------------------------
    vigil::TimePoint now() override { return clock; }
    vigil::TimePoint loop_time() override { return clock; }
    std::int64_t wall_ms() override { return 1'700'000'000'000 + clock.time_since_epoch().count(); }
    void arm_deadline(std::optional<vigil::TimePoint> when) override { armed = when; }
    std::unique_ptr<vigil::daemon::Running> after(vigil::Duration d,
                                                  std::function<void()> f) override;
    struct FakeTimer {
        vigil::TimePoint when;
        std::function<void()> f;
    };
    std::map<int, FakeTimer> timers; // by creation order; advance() fires them in time order
    void spawn(vigil::proc::SpawnSpec spec, vigil::proc::SpawnExtras extras,
               vigil::daemon::SpawnDone done) override;
    int self_pid() override { return 1; }
    int pidfd_open(int pid, std::string *error) override;
    int signal_group(int pgid, int sig) override;
    bool group_alive(int pgid) override;
    int signal_pidfd(int pidfd, int sig) override;
    void close_fd(int fd) override;
    std::optional<vigil::notify::ProcIds> proc_ids(int pid) override;
    std::unique_ptr<vigil::daemon::Running>
    watch_exit(int pid, std::function<void(std::optional<int>)> ended, std::string *error) override;
    std::unique_ptr<vigil::daemon::Cgroup> make_cgroup(const std::string &unit,
                                                       std::string *) override;
    bool cgroups = false;
    std::map<std::string, FakeCgroupState> cgroup_states; // by unit
    bool cgroup_populated(const std::string &unit) const;
    int open_cgroup_procs(const std::string &unit);
    int signal_cgroup(const std::string &unit, int sig, bool then_cont);
    std::unique_ptr<vigil::daemon::OutputChannel>
    read_output(int stdout_fd, int stderr_fd, vigil::log::CaptureOptions options,
                vigil::log::Capture::Callbacks callbacks) override;
    std::unique_ptr<vigil::daemon::NotifyChannel>
    open_notify(const std::string &unit, vigil::notify::NotifySocket::Callbacks callbacks,
                std::string *error) override;
    std::unique_ptr<vigil::daemon::ReadyChannel> open_ready_fd(std::function<void()> on_ready,
                                                               std::string *error) override;
    // Re-exec: when_spawns_idle() waits in `idle_waits` (the test answers); exec_self() keeps
    // the state in `exec_handover` and fails with `exec_failure`. The adopt_*() calls record
    // the descriptors they were given in `adopted_fds`. `exec_steps` records "stand-in",
    // "exec" and "taken back" as begin_stand_in(), exec_self() and end_stand_in() come.
    void when_spawns_idle(vigil::Duration limit, std::function<void(bool)> done) override;
    std::string exec_self(vigil::daemon::Handover &h) override;
    void begin_stand_in() override { exec_steps.push_back("stand-in"); }
    void end_stand_in() override { exec_steps.push_back("taken back"); }
    std::vector<std::string> exec_steps;
    std::unique_ptr<vigil::daemon::OutputChannel>
    adopt_output(int stdout_fd, int stderr_fd, std::string_view stdout_pending,
                 std::string_view stderr_pending, vigil::log::CaptureOptions options,
                 vigil::log::Capture::Callbacks callbacks) override;
    std::unique_ptr<vigil::daemon::NotifyChannel>
    adopt_notify(std::string path, int fd, vigil::notify::NotifySocket::Callbacks cb) override;
    std::unique_ptr<vigil::daemon::ReadyChannel>
    adopt_ready_fd(int fd, std::function<void()> on_ready) override;
    std::unique_ptr<vigil::daemon::Cgroup> adopt_cgroup(std::string dir) override;
    std::vector<std::function<void(bool)>> idle_waits;
    std::optional<vigil::daemon::Handover> exec_handover;
    std::string exec_failure = "execve /fake/vigild: Exec format error";
    std::vector<int> adopted_fds;
    // A real Monitor that is never started (no loop): its probers say "pending".
    std::unique_ptr<vigil::daemon::ProbesChannel>
    start_probes(const std::string &unit, vigil::probe::MonitorSpecs specs,
                 vigil::probe::Monitor::Callbacks cb, vigil::probe::ExecSpawn exec,
                 const std::optional<vigil::probe::MonitorState> &from) override;
    vigil::log::Forwarder *forwarder() override { return forwarder_.get(); }
    vigil::log::FileSinkFactory file_sinks() override;
    void say(std::string_view line) override { journal.emplace_back(line); }
    void load_units(const std::string &dir,
                    std::function<void(vigil::unit::LoadResult)> done) override;
    void find_processes(std::vector<std::string> units, std::size_t max,
                        std::function<void(ProcessesFound)> done) override;
    // Held sockets: fake descriptors from 5000, one per bind; an address in `refuse_bind`
    // (ListenSpec::describe()) fails as EADDRINUSE would. bind_sockets() waits for
    // finish_bind().
    std::vector<vigil::daemon::BoundSocket>
    bind_sockets_now(const std::vector<vigil::unit::ListenSpec> &specs) override;
    void bind_sockets(std::vector<vigil::unit::ListenSpec> specs,
                      std::function<void(std::vector<vigil::daemon::BoundSocket>)> done) override;
    int relisten(int fd, int backlog) override {
        relistened[fd] = backlog;
        return 0;
    }
    void finish_bind();
    bool binding() const { return bind_done_ != nullptr; }
    std::set<std::string> refuse_bind;
    std::map<int, std::string> sockets; // open fake sockets: fd -> describe()
    std::map<int, int> relistened;      // fd -> backlog
    int binds = 0;                      // sockets bound, ever
    // Scans of /proc asked for, answered by settle() from `procs` as they are then.
    struct PendingFind {
        std::vector<std::string> units;
        std::size_t max = 0;
        std::function<void(ProcessesFound)> done;
    };
    std::vector<PendingFind> finds;
    int scans = 0; // answered

    std::map<int, std::function<void(std::optional<int>)>> watches; // pid -> ended
    std::vector<std::function<void()>> ready_fds;                   // by fd - 1000
    std::map<std::string, int> unit_of_spawn;                       // unit -> output index

private:
    void die(int pid, int wstatus);
    int next_pid_ = 100;
    int next_timer_ = 1;
    int next_fd_ = 1000;
    std::map<int, int> pidfds_;            // fd -> pid
    std::map<int, std::string> procs_fds_; // open cgroup.procs descriptors: fd -> unit
    bool answer_cgroup_waits();
    std::function<void(vigil::unit::LoadResult)> load_done_;
    std::set<int> remapped_; // processes whose output adopt_output() moved
    std::vector<vigil::unit::ListenSpec> bind_specs_;
    std::function<void(std::vector<vigil::daemon::BoundSocket>)> bind_done_;
    int next_socket_ = 5000;
    uv_loop_s *loop_ = nullptr;
    int stdout_pipe_[2] = {-1, -1};
    std::unique_ptr<vigil::log::Forwarder> forwarder_;
};

// A service that restarts without backoff, so a test sees the next incarnation at once (backoff
// has its own tests in tests/core); svc_with adds `fields` (JSON members) to it.
inline const std::string svc = R"({"command": ["/bin/true"], "backoff": {"initial": "0s"}})";
inline std::string svc_with(const std::string &fields) {
    return R"({"command": ["/bin/true"], "backoff": {"initial": "0s"}, )" + fields + "}";
}

// A unit directory in a fresh temporary folder, loaded by the real loader. `units` maps a unit's
// name to its JSON text.
vigil::unit::LoadResult load_units(const std::map<std::string, std::string> &units);

// A Shell on a FakeOs with default options (log level debug: every record is in the journal).
struct Harness {
    // `setup` runs on the FakeOs before the shell exists (say, block_stdout()); `before_start`
    // on the shell, before start() (say, set_manager()).
    explicit Harness(const std::map<std::string, std::string> &units, bool auto_answer = true,
                     const std::function<void(FakeOs &)> &setup = {},
                     const std::function<void(vigil::daemon::Shell &)> &before_start = {});
    ~Harness();
    FakeOs os;
    vigil::daemon::Options opts;
    std::unique_ptr<vigil::daemon::Shell> shell;
    vigil::core::ChildStatus status(const std::string &unit) const;
    vigil::ChildId id(const std::string &unit) const;
    int pid(const std::string &unit) const; // the main pid the core knows
};

} // namespace vigil::test

// vigil/probe/prober.hpp: one health probe (exec, tcp or http) run on the daemon's libuv loop.
//
// A Prober runs one unit::ProbeSpec for one incarnation: after `initial_delay` it starts a
// check, every `period` (measured between the starts of checks, as the kubelet does), each check
// bounded by `timeout`. Outcomes go through Thresholds; the callbacks fire on verdict changes:
// `failed(detail)` when `failure_threshold` consecutive checks failed, `succeeded()` when
// `success_threshold` consecutive checks passed. `checked` (optional) sees every check.
//
// Loop discipline: nothing blocks and there are no threads. Each Prober owns one uv_timer_t,
// armed only while the prober runs (a stopped prober never wakes the loop). Callbacks never fire
// from inside start() or stop(); they may call stop() or destroy the Prober.
//
// Exec checks: the Prober does not spawn by itself. The daemon gives it an ExecSpawn: an
// asynchronous spawn function (in vigild, its proc::Spawner) and the unit's SpawnSpec, so the
// command runs as the unit's service would: its user, group, env, env_file, cwd and limits,
// through the service's spawn path, with the probe's command as argv. stdout and stderr share
// one pipe (SpawnExtras::merge_stderr) whose beginning is quoted in failure messages ("exited
// with status 2: no response"); the exit is described by proc::describe_wait_status, the one
// decoder. The check is never waited for here: vigild reaps every child with waitpid(-1) in
// one place (docs/DESIGN.md §3), so it hands every pid it does not own to
// ExecRegistry::on_reaped(). A check that outlives its timeout, or is cancelled by stop(), gets
// SIGKILL through its pidfd (which cannot name another process) and on its whole process group (the
// command leads its own session; the group id cannot have been reused while the leader is unreaped,
// which its pid's claim in the registry guarantees), so what it started dies with it; its pid stays
// in the registry until reaped, so on_reaped() still claims it. A spawn that completes after its
// check was abandoned (timeout, stop(), or the Prober destroyed) is killed and its
// descriptors closed; its pid is claimed in the registry, which must outlive every spawn in
// flight (the daemon's lives as long as the daemon).
//
// On demand (`vigilctl check --run`): run_now() starts a check at once, out of schedule, from
// the loop (never inside the call); its result counts in the thresholds and the tally like any
// check, and the next scheduled check comes `period` after its start. A request while a check is
// in flight (scheduled or on demand) waits for that check's result instead of starting another:
// at most one check per probe runs at any time, and at most max_run_waiters requests wait. The
// waiters are answered before the verdict callbacks; stop() (or the Prober's destruction)
// answers the ones still waiting with a failed "cancelled" result, from inside stop(): a waiter
// must not call back into the Prober.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vigil/probe/thresholds.hpp"
#include "vigil/proc/spawner.hpp"
#include "vigil/unit/unit.hpp"

struct uv_loop_s;
struct uv_timer_s;
struct uv_poll_s;

namespace vigil::probe {

// Starts a process asynchronously. `done` is called exactly once, from inside the call or
// later from the loop, with the completion (its descriptors and pidfd are then `done`'s). When
// the completion's reaped_wstatus is set, the process already ended and was reaped.
using SpawnFn = std::function<void(proc::SpawnSpec spec, proc::SpawnExtras extras,
                                   std::function<void(proc::SpawnCompletion)> done)>;

// How exec checks run: through `spawn`, with `base` (the unit's SpawnSpec) whose argv is
// replaced by the probe's command. Without `spawn`, exec checks fail ("exec: no spawn
// function"): tcp and http probes need none.
struct ExecSpawn {
    SpawnFn spawn;
    proc::SpawnSpec base;
};

// The outcome of one check. `detail` is short and human: "status 503", "exited with status 1",
// "connect: connection refused", "timed out after 1000ms".
struct CheckResult {
    bool ok = false;
    std::string detail;
};

// The pids of running (or killed, not yet reaped) exec checks, shared by every Prober of a
// daemon. One per daemon; it must outlive the Probers that use it.
class ExecRegistry {
public:
    // Call for every reaped pid that vigild does not own. Returns true when the pid was an exec
    // check's (then the status is consumed here); false means it is someone else's orphan.
    bool on_reaped(int pid, int wstatus);

    // Number of exec-check pids not reaped yet (for tests and leak checks).
    std::size_t pending() const noexcept { return pids_.size(); }

    // For Prober: `done` runs when the pid is reaped; forget() keeps the pid claimed but drops
    // the callback (a check that was abandoned after SIGKILL).
    void add(int pid, std::function<void(int wstatus)> done);
    void forget(int pid) noexcept;

private:
    std::map<int, std::function<void(int)>> pids_;
};

// What a running Prober carries across an exec of vigild (Prober::state, Prober::resume).
struct ProberState {
    unsigned failures = 0, successes = 0; // the thresholds' counters
    Verdict verdict = Verdict::Unknown;
    std::uint32_t run = 0; // the tally
    bool run_ok = false;
    std::uint64_t tally_successes = 0, tally_failures = 0;
    std::uint64_t checks_total = 0, failures_total = 0;
    std::uint64_t next_due_ms = 0; // libuv's clock (CLOCK_MONOTONIC ms); in a check: that moment
};

class Prober {
public:
    struct Callbacks {
        std::function<void(const std::string &detail)> failed; // verdict became Failure
        std::function<void()> succeeded;                       // verdict became Success
        std::function<void(const CheckResult &)> checked;      // optional: every check
    };

    // `role` names the probe in messages: "liveness", "readiness", "startup", "ready".
    Prober(uv_loop_s *loop, ExecRegistry &registry, std::string role, unit::ProbeSpec spec,
           Callbacks callbacks, ExecSpawn exec = {});
    ~Prober();
    Prober(const Prober &) = delete;
    Prober &operator=(const Prober &) = delete;

    // Starts checking (first check after initial_delay). Resets the thresholds. No-op if running.
    void start();
    // Stops checking and cancels a check in flight (exec: SIGKILL to it and its group).
    void stop();
    // Continuity across an exec of vigild: the counters and the next check's time, and a
    // start() that takes them back (a check that was in flight is run again at once).
    ProberState state() const noexcept;
    void resume(const ProberState &s);
    bool running() const noexcept { return running_; }

    // "http 127.0.0.1:8080/healthz", "tcp 127.0.0.1:5432", "exec pg_isready -q".
    std::string target() const;
    const std::string &role() const noexcept { return role_; }
    const Thresholds &thresholds() const noexcept { return thresholds_; }
    std::uint64_t checks_total() const noexcept { return checks_total_; }
    std::uint64_t failures_total() const noexcept { return failures_total_; }

    // The failure message: "liveness http 127.0.0.1:8080/healthz: status 503, 3 times".
    static std::string failure_message(const std::string &role, const std::string &target,
                                       const std::string &last_detail, unsigned times);

    // What an exec check printed, as one line for messages: whitespace and control characters
    // collapsed to single spaces, at most 200 characters (then "...").
    static std::string summarize_output(const std::string &raw);

    // ---- on demand and for `vigilctl checks` ----------------------------------------------
    static constexpr std::size_t max_run_waiters = 8;
    // `done` gets the result of the check and how long it took (milliseconds, loop time).
    using RunDone = std::function<void(const CheckResult &, std::uint64_t duration_ms)>;
    // Runs a check now (see the header comment). False, and `done` dropped, when the prober is
    // not running or max_run_waiters requests already wait.
    bool run_now(RunDone done);
    const CheckTally &tally() const noexcept { return tally_; }
    // Milliseconds until the next check starts: 0 while one is in flight, nullopt when the
    // prober does not run.
    std::optional<std::uint64_t> next_ms() const noexcept;
    const unit::ProbeSpec &spec() const noexcept { return spec_; }

    struct NetCheck; // in flight tcp/http check (prober.cpp)

private:
    void on_timer();
    void begin_check();
    void begin_exec();
    void exec_spawned(proc::SpawnCompletion c);
    void exec_exited(int wstatus);
    bool read_exec_output(); // false at EOF or on error
    void close_exec_output();
    void abandon_check();
    void complete(CheckResult r);
    void arm(std::uint64_t ms);

    uv_loop_s *loop_;
    ExecRegistry &registry_;
    std::string role_;
    unit::ProbeSpec spec_;
    Callbacks cb_;
    ExecSpawn exec_;
    Thresholds thresholds_;
    uv_timer_s *timer_ = nullptr; // allocated at first start(); freed by its close callback
    bool running_ = false;
    bool in_check_ = false;
    std::uint64_t check_started_ = 0; // uv_now at the start of the current/last check
    bool exec_spawning_ = false;      // a spawn submitted, its completion not in yet
    std::uint64_t exec_check_ = 0;    // which check a completion belongs to
    int exec_pid_ = -1;
    int exec_pidfd_ = -1;
    int exec_out_fd_ = -1; // read end of the exec check's stdout+stderr
    uv_poll_s *exec_poll_ = nullptr;
    std::string exec_output_; // its first exec_output_limit bytes
    static constexpr std::size_t exec_output_limit = 1024;
    NetCheck *net_ = nullptr;
    std::uint64_t checks_total_ = 0, failures_total_ = 0;
    CheckTally tally_;
    std::uint64_t next_due_ = 0;   // uv_now when the next check starts (while none is in flight)
    std::vector<RunDone> waiters_; // run_now() requests waiting for the check in flight
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true); // callbacks may destroy us
};

} // namespace vigil::probe

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
// Exec checks: the command is spawned (posix_spawnp, its own process group, stdin on
// /dev/null, stdout and stderr on a pipe whose beginning is quoted in failure messages, e.g.
// "exit status 2: no response") but never waited for here: vigild reaps every child with
// waitpid(-1) in one place (DESIGN §3), so it hands every pid it does not own to
// ExecRegistry::on_reaped(). A check that outlives its timeout, or is cancelled by stop(), gets
// SIGKILL on its whole process group; its pid stays in the registry until reaped, so on_reaped()
// still claims it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "vigil/probe/thresholds.hpp"
#include "vigil/unit/unit.hpp"

struct uv_loop_s;
struct uv_timer_s;
struct uv_poll_s;

namespace vigil::probe {

// The outcome of one check. `detail` is short and human: "status 503", "exit status 1",
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

class Prober {
public:
    struct Callbacks {
        std::function<void(const std::string &detail)> failed; // verdict became Failure
        std::function<void()> succeeded;                       // verdict became Success
        std::function<void(const CheckResult &)> checked;      // optional: every check
    };

    // `role` names the probe in messages: "liveness", "readiness", "startup", "ready".
    Prober(uv_loop_s *loop, ExecRegistry &registry, std::string role, unit::ProbeSpec spec,
           Callbacks callbacks);
    ~Prober();
    Prober(const Prober &) = delete;
    Prober &operator=(const Prober &) = delete;

    // Starts checking (first check after initial_delay). Resets the thresholds. No-op if running.
    void start();
    // Stops checking and cancels a check in flight (exec: SIGKILL to its process group).
    void stop();
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

    struct NetCheck; // in flight tcp/http check (prober.cpp)

private:
    void on_timer();
    void begin_check();
    void begin_exec();
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
    Thresholds thresholds_;
    uv_timer_s *timer_ = nullptr; // allocated at first start(); freed by its close callback
    bool running_ = false;
    bool in_check_ = false;
    std::uint64_t check_started_ = 0; // uv_now at the start of the current/last check
    int exec_pid_ = -1;
    int exec_out_fd_ = -1; // read end of the exec check's stdout+stderr
    uv_poll_s *exec_poll_ = nullptr;
    std::string exec_output_; // its first exec_output_limit bytes
    static constexpr std::size_t exec_output_limit = 1024;
    NetCheck *net_ = nullptr;
    std::uint64_t checks_total_ = 0, failures_total_ = 0;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true); // callbacks may destroy us
};

} // namespace vigil::probe

#include "shell.hpp"

#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "journal.hpp"
#include "vigil/core/core.hpp"
#include "vigil/proc/exit.hpp"
#include "vigil/proc/spawn.hpp"

namespace vigil::daemon {
namespace {

// How long a service's exit may wait for its output pipes to reach EOF. Normally EOF comes at
// once (the group is killed when the main process ends); only a process that escaped the
// group (a double-forking daemon) can hold the pipes open, and then the exit goes on without it.
constexpr std::uint64_t drain_limit_ms = 2000;

core::ExitStatus decode(int wstatus) {
    if (WIFSIGNALED(wstatus)) return core::ExitStatus::killed(WTERMSIG(wstatus));
    return core::ExitStatus::exited(WEXITSTATUS(wstatus));
}

// Signals vigild handles itself. The kernel drops default-action signals sent to PID 1, so every
// signal that must mean something is caught explicitly (house-style §7.5).
constexpr int handled_signals[] = {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2};
// Signals that must never stop or kill vigild: job control from a terminal, and writes to a
// closed pipe (a vanished log reader must not kill the supervisor). Children get default
// dispositions back (proc::spawn resets them).
constexpr int ignored_signals[] = {SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU, SIGWINCH};

class Shell;

// Runtime state of one child (indexed by ChildId); policy lives in the core.
struct Runtime {
    Incarnation inc;
    int pid = -1; // main process while alive (or reaped but exit not yet reported)
    int last_pid = -1;
    std::optional<int> pending_wstatus; // reaped, waiting for the pipes to drain
    uv_timer_t *drain_timer = nullptr;
};

class Shell {
public:
    Shell(const Options &opts, unit::LoadResult loaded)
        : opts_(opts), journal_(opts.log_level), units_(std::move(loaded.units)),
          core_(std::move(loaded.tree)) {
        uv_loop_init(&loop_);
        loop_.data = this;
        rt_.resize(core_.size());
    }

    ~Shell() { uv_loop_close(&loop_); }

    int run() {
        setup_signals();
        uv_timer_init(&loop_, &timer_);
        timer_.data = this;
        if (::getpid() != 1) {
            if (int err = proc::become_subreaper())
                journal_.say(LogLevel::Warn,
                             std::string("cannot become a child subreaper: ") + std::strerror(err) +
                                 "; double-forking services will not be reaped by vigild");
        }
        journal_.say(LogLevel::Info,
                     "starting " + std::to_string(core_.size() - 1) + " units from " + opts_.units);
        std::vector<core::Action> out;
        core_.start(now(), out);
        execute(out);

        uv_run(&loop_, UV_RUN_DEFAULT);
        return exit_status_.value_or(1);
    }

private:
    TimePoint now() {
        uv_update_time(&loop_);
        return at_ms(static_cast<std::int64_t>(uv_now(&loop_)));
    }

    // ---- events in ---------------------------------------------------------------------

    void feed(const core::Event &ev) {
        std::vector<core::Action> out;
        core_.handle(ev, now(), out);
        execute(out);
    }

    // Carries out actions in order. Answers to Spawn (Spawned/SpawnFailed) produce more actions;
    // they are appended to the same queue, so nothing recurses.
    void execute(std::vector<core::Action> &first) {
        for (auto &a : first)
            queue_.push_back(std::move(a));
        if (executing_) return;
        executing_ = true;
        while (!queue_.empty()) {
            core::Action a = std::move(queue_.front());
            queue_.pop_front();
            std::visit([this](auto &act) { this->act(act); }, a);
        }
        executing_ = false;
        arm_timer();
    }

    void enqueue_event(const core::Event &ev) {
        std::vector<core::Action> out;
        core_.handle(ev, now(), out);
        for (auto &a : out)
            queue_.push_back(std::move(a));
    }

    // ---- actions out -------------------------------------------------------------------

    void act(const core::Spawn &s) {
        Runtime &r = runtime(s.child);
        const unit::Unit &u = units_[s.child.value];
        proc::SpawnExtras extras;
        extras.env.emplace_back("VIGIL_UNIT", u.name);
        proc::SpawnResult res = proc::spawn(u.spawn, extras);
        if (!res.ok) {
            std::string reason = res.error ? res.error->message() : "spawn failed";
            enqueue_event(core::SpawnFailed{s.child, s.inc, reason});
            return;
        }
        r.inc = s.inc;
        r.pid = res.ok->pid;
        r.last_pid = r.pid;
        r.pending_wstatus.reset();
        by_pid_[r.pid] = s.child;
        open_output(s.child, *res.ok);
        enqueue_event(core::Spawned{s.child, s.inc, Pid{r.pid}});
    }

    void act(const core::Signal &s) {
        // Services lead their own session, so the group id is the main pid.
        int err = proc::signal_group(s.pid.value, s.signal);
        if (err == ESRCH) err = proc::signal_process(s.pid.value, s.signal);
        if (err != 0 && err != ESRCH)
            journal_.say(LogLevel::Warn, units_[s.child.value].name + ": cannot send " +
                                             proc::signal_name(s.signal) + ": " +
                                             std::strerror(err));
    }

    void act(const core::StartProbes &) {}
    void act(const core::StopProbes &) {}

    void act(const core::Publish &p) {
        int pid = -1;
        if (p.record.child.value < rt_.size()) pid = rt_[p.record.child.value].last_pid;
        journal_.record(p.record, pid);
    }

    void act(const core::Exit &e) {
        if (exit_status_) return;
        exit_status_ = e.status;
        journal_.say(LogLevel::Info, "exiting with status " + std::to_string(e.status));
        teardown();
    }

    // ---- processes ---------------------------------------------------------------------

    void open_output(ChildId, const proc::Spawned &sp) {
        // Until log capture is wired, close the read ends (children write to /dev/null-like pipes).
        if (sp.stdout_fd >= 0) ::close(sp.stdout_fd);
        if (sp.stderr_fd >= 0) ::close(sp.stderr_fd);
    }

    void on_sigchld() {
        for (const proc::Reaped &r : proc::reap_all()) {
            auto it = by_pid_.find(r.pid);
            if (it == by_pid_.end()) {
                ++orphans_reaped_;
                continue;
            }
            ChildId id = it->second;
            by_pid_.erase(it);
            Runtime &rt = runtime(id);
            // Whatever the service left in its process group goes with it, so no stray process
            // of an old incarnation outlives it (and its pipes reach EOF).
            proc::signal_group(r.pid, SIGKILL);
            report_exit(id, rt, r.wstatus);
        }
    }

    void report_exit(ChildId id, Runtime &rt, int wstatus) {
        int pid = rt.pid;
        rt.pid = -1;
        enqueue_event(core::Exited{id, rt.inc, Pid{pid}, decode(wstatus)});
        std::vector<core::Action> none;
        execute(none);
    }

    // ---- signals and the timer ----------------------------------------------------------

    void setup_signals() {
        for (int sig : ignored_signals) {
            struct sigaction sa {};
            sa.sa_handler = SIG_IGN;
            ::sigaction(sig, &sa, nullptr);
        }
        for (int sig : handled_signals) {
            auto *h = new uv_signal_t;
            uv_signal_init(&loop_, h);
            h->data = this;
            uv_signal_start(
                h,
                [](uv_signal_t *hh, int signum) {
                    static_cast<Shell *>(hh->data)->on_signal(signum);
                },
                sig);
            signals_.push_back(h);
        }
    }

    void on_signal(int sig) {
        switch (sig) {
        case SIGCHLD:
            on_sigchld();
            break;
        case SIGTERM:
        case SIGINT:
        case SIGQUIT:
            command(core::Command{core::CommandKind::Shutdown, root_id, 0, proc::signal_name(sig)});
            break;
        case SIGHUP:
            reload("SIGHUP");
            break;
        case SIGUSR2:
            reopen_logs();
            break;
        case SIGUSR1:
            dump_status();
            break;
        default:
            break;
        }
    }

    core::CommandResult command(const core::Command &c) {
        std::vector<core::Action> out;
        core::CommandResult res = core_.command(c, now(), out);
        execute(out);
        return res;
    }

    void reload(const std::string &who) {
        unit::LoadResult next = unit::load_dir(opts_.units);
        if (!next.ok()) {
            for (const auto &d : next.diagnostics)
                journal_.say(LogLevel::Error, unit::format(d));
            journal_.say(LogLevel::Error, "reload (" + who + ") refused: " +
                                              std::to_string(next.diagnostics.size()) +
                                              " problems; the running configuration is kept");
            return;
        }
        apply_reload(std::move(next));
    }

    core::ReconfigureResult apply_reload(unit::LoadResult next) {
        std::map<std::string, unit::Unit> by_name;
        for (auto &u : next.units)
            by_name.emplace(u.name, std::move(u));
        std::vector<core::Action> out;
        core::ReconfigureResult res = core_.reconfigure(std::move(next.tree), now(), out);
        // ChildIds of kept children stay valid and new ones are appended: realign the shell's
        // per-child tables by name. A removed unit keeps its old Unit until it has stopped.
        units_.resize(core_.size());
        rt_.resize(core_.size());
        for (std::uint32_t i = 0; i < core_.size(); ++i) {
            auto it = by_name.find(std::string(core_.spec(ChildId{i}).name));
            if (it != by_name.end()) units_[i] = it->second;
        }
        execute(out);
        return res;
    }

    void reopen_logs() {}

    void dump_status() {
        TimePoint t = now();
        for (std::uint32_t i = 1; i < core_.size(); ++i) {
            core::ChildStatus s = core_.status(ChildId{i});
            if (s.removed) continue;
            std::string line = std::string(s.name) + ": " + core::to_string(s.state);
            if (s.pid) line += " pid " + std::to_string(s.pid->value);
            line += " for " + std::to_string((t - s.since).count() / 1000) + "s, restarts " +
                    std::to_string(s.restarts);
            journal_.say(LogLevel::Error, line);
        }
    }

    void arm_timer() {
        if (exit_status_) return;
        std::optional<TimePoint> d = core_.next_deadline();
        if (!d) {
            uv_timer_stop(&timer_);
            return;
        }
        auto wait = std::max<std::int64_t>(0, (*d - now()).count());
        uv_timer_start(
            &timer_,
            [](uv_timer_t *t) { static_cast<Shell *>(t->data)->feed(core::DeadlineReached{}); },
            static_cast<std::uint64_t>(wait), 0);
    }

    void teardown() {
        uv_timer_stop(&timer_);
        uv_close(reinterpret_cast<uv_handle_t *>(&timer_), nullptr);
        for (uv_signal_t *h : signals_)
            uv_close(reinterpret_cast<uv_handle_t *>(h),
                     [](uv_handle_t *hh) { delete reinterpret_cast<uv_signal_t *>(hh); });
        signals_.clear();
    }

    Runtime &runtime(ChildId id) {
        if (id.value >= rt_.size()) rt_.resize(id.value + 1);
        return rt_[id.value];
    }

    Options opts_;
    Journal journal_;
    std::vector<unit::Unit> units_; // by ChildId
    core::Core core_;
    std::vector<Runtime> rt_; // by ChildId
    std::map<int, ChildId> by_pid_;
    uv_loop_t loop_{};
    uv_timer_t timer_{};
    std::vector<uv_signal_t *> signals_;
    std::deque<core::Action> queue_;
    bool executing_ = false;
    std::optional<int> exit_status_;
    std::uint64_t orphans_reaped_ = 0;
};

} // namespace

int run_shell(const Options &opts, unit::LoadResult loaded) {
    Shell shell(opts, std::move(loaded));
    return shell.run();
}

} // namespace vigil::daemon

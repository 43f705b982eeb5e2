// uv_os.hpp: the real operating system under vigild's shell (os.hpp), on one libuv loop.
//
// What it holds: the loop's timer for the core's deadline; the signal handlers (SIGCHLD drives
// reaping; TERM, INT, QUIT, HUP, USR1, USR2 go to the shell; PIPE, TSTP, TTIN, TTOU, WINCH are
// ignored so that a vanished reader or a terminal cannot stop PID 1); the Spawner and its poll
// (spawns are asynchronous; a helper that answers none for spawn_limit is killed and the spawn
// in its hands fails, so a spawn stuck on a hung file system affects its own unit only); the log
// writer thread (units' log files) and vigild's standard streams (non-blocking queues); the notify
// sockets' folder; cgroups; the control socket and the HTTP endpoint.
//
// Reaping: on SIGCHLD every zombie is collected (waitpid(-1) until none is left) and offered to
// the shell (a service's process, an exec probe's check), then to the Spawner (a process whose
// answer was not read yet, one it killed), and counted as an orphan otherwise.
//
// Exceptions: every callback from libuv into the shell (and into code that calls the shell) is
// guarded: an exception, bad_alloc included, is logged and the loop goes on. PID 1 does not die
// of one.
#pragma once

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "heap_trim.hpp"
#include "journal.hpp"
#include "options.hpp"
#include "os.hpp"
#include "vigil/ctl/server.hpp"
#include "vigil/http/server.hpp"
#include "vigil/log/file_sink.hpp"
#include "vigil/log/forwarder.hpp"
#include "vigil/proc/cgroup.hpp"
#include "vigil/proc/spawner.hpp"

namespace vigil::daemon {

class Shell;

// A re-exec's stand-in (uv_standin.cpp), as the new binary finds it in its environment
// (stand_in_env = "FD:PID"): the socket pair's descriptor and the stand-in's pid.
inline constexpr const char *stand_in_env = "VIGIL_REEXEC_STAND_IN";
struct StandInEnv {
    int fd = -1;
    int pid = -1;
};
// Takes stand_in_env out of the environment (before the spawner helper forks); nullopt when it
// is not there or does not parse.
std::optional<StandInEnv> take_stand_in_env();
// The old binary's own children that end after a re-exec (its spawner helper), as
// "PID[,PID...]": the new binary reaps them without counting them as orphans.
inline constexpr const char *leftovers_env = "VIGIL_REEXEC_LEFTOVERS";
// Takes leftovers_env out of the environment: its pids (at most a few; none if it does not
// parse).
std::vector<int> take_leftovers_env();

class UvOs final : public Os {
public:
    // A helper that answers no spawn for this long while some are pending is killed; the
    // spawn it had in hand fails.
    static constexpr Duration spawn_limit{30'000};

    explicit UvOs(const Options &opts);
    ~UvOs() override;
    UvOs(const UvOs &) = delete;
    UvOs &operator=(const UvOs &) = delete;

    // The spawner's helper, forked by the constructor while vigild holds almost no
    // descriptor and runs no other thread: says if it could not start, and watches it.
    void start_spawner();
    // Signals, the control socket and the HTTP endpoint, for `shell`. False (with the reason in
    // the journal) when vigild must not run: the socket or the port cannot be used.
    bool attach(Shell &shell);
    // Runs the loop until the shell has exited and every handle is closed.
    void run();
    // Closes every handle of its own (the shell does this through on_exit): the loop can end.
    void close_handles();
    uv_loop_t *loop() { return &loop_; }
    // Reaps what ended (SIGCHLD does it otherwise): after a re-exec, for what ended during it.
    void reap_now() { reap(); }
    // Removes a service's cgroup folder (if empty) off the loop: rmdir tears the group down in
    // the kernel, and a stop of many services removes one each. Batches of cgroup_batch go to
    // the thread pool as they fill, the rest at the start of the next turn or at close_handles(),
    // one batch at a time (what comes meanwhile goes when it ends).
    void remove_cgroup(std::string dir) noexcept;
    static constexpr std::size_t cgroup_batch = 64;

    // Os
    TimePoint now() override;
    TimePoint loop_time() override;
    std::int64_t wall_ms() override;
    void arm_deadline(std::optional<TimePoint> when) override;
    std::unique_ptr<Running> after(Duration d, std::function<void()> f) override;
    void spawn(proc::SpawnSpec spec, proc::SpawnExtras extras, SpawnDone done) override;
    int self_pid() override;
    int pidfd_open(int pid, std::string *error) override;
    int signal_group(int pgid, int sig) override;
    bool group_alive(int pgid) override;
    int signal_pidfd(int pidfd, int sig) override;
    void close_fd(int fd) override;
    std::optional<notify::ProcIds> proc_ids(int pid) override;
    std::unique_ptr<Running> watch_exit(int pid, std::function<void(std::optional<int>)> ended,
                                        std::string *error) override;
    std::unique_ptr<Cgroup> make_cgroup(const std::string &unit, std::string *error) override;
    void find_processes(std::vector<std::string> units, std::size_t max,
                        std::function<void(ProcessesFound)> done) override;
    std::unique_ptr<OutputChannel> read_output(int stdout_fd, int stderr_fd,
                                               log::CaptureOptions options,
                                               log::Capture::Callbacks callbacks) override;
    std::unique_ptr<NotifyChannel> open_notify(const std::string &unit,
                                               notify::NotifySocket::Callbacks callbacks,
                                               std::string *error) override;
    std::unique_ptr<ReadyChannel> open_ready_fd(std::function<void()> on_ready,
                                                std::string *error) override;
    std::unique_ptr<ProbesChannel>
    start_probes(const std::string &unit, probe::MonitorSpecs specs,
                 probe::Monitor::Callbacks callbacks, probe::ExecSpawn exec,
                 const std::optional<probe::MonitorState> &from) override;
    log::Forwarder *forwarder() override { return streams_.out; }
    log::FileSinkFactory file_sinks() override;
    void say(std::string_view line) override;
    std::int64_t loop_stall_max_us() override { return stall_max_ns_ / 1000; }
    void load_units(const std::string &dir, std::function<void(unit::LoadResult)> done) override;
    std::vector<BoundSocket> bind_sockets_now(const std::vector<unit::ListenSpec> &specs) override;
    void bind_sockets(std::vector<unit::ListenSpec> specs,
                      std::function<void(std::vector<BoundSocket>)> done) override;
    int relisten(int fd, int backlog) override;
    // A re-exec (uv_reexec.cpp).
    void when_spawns_idle(Duration limit, std::function<void(bool idle)> done) override;
    std::string exec_self(Handover &h) override;
    std::unique_ptr<OutputChannel> adopt_output(int stdout_fd, int stderr_fd,
                                                std::string_view stdout_pending,
                                                std::string_view stderr_pending,
                                                log::CaptureOptions options,
                                                log::Capture::Callbacks callbacks) override;
    std::unique_ptr<NotifyChannel> adopt_notify(std::string path, int fd,
                                                notify::NotifySocket::Callbacks cb) override;
    std::unique_ptr<ReadyChannel> adopt_ready_fd(int fd, std::function<void()> on_ready) override;
    std::unique_ptr<Cgroup> adopt_cgroup(std::string dir) override;
    // The new binary's side, before attach(): the cgroup folder the old one made, and the
    // listeners it kept (attach() then takes them instead of making new ones).
    void adopt_listeners(const Handover &h);
    // The stand-in the old binary left (uv_standin.cpp): attach() stops it and takes its
    // connections before the control socket is listened on.
    void expect_stand_in(StandInEnv s);
    // The old binary's children that end after the exec (take_leftovers_env()).
    void expect_leftovers(std::vector<int> pids) { leftovers_ = std::move(pids); }
    void begin_stand_in() override;
    void end_stand_in() override;
    bool standing_in() const override { return standing_in_for_ > 0; }

    // Runs `f`, logging any exception instead of letting it into libuv. Returns false when one
    // was caught.
    template <class F> bool guard(const char *where, F &&f) noexcept;

private:
    struct PendingSpawn {
        SpawnDone done;
    };
    template <class R>
    void off_loop(const char *where, std::function<R()> work, std::function<void(R)> done);
    void setup_signals();
    void on_signal(int sig);
    void reap();
    void pump_spawner();
    void arm_spawn_limit();
    bool start_control();
    bool start_http();
    std::unique_ptr<OutputChannel> capture(int stdout_fd, int stderr_fd,
                                           std::string_view stdout_pending,
                                           std::string_view stderr_pending,
                                           log::CaptureOptions options, log::Capture::Callbacks cb);
    notify::NotifySocket::Callbacks guard_notify(notify::NotifySocket::Callbacks cb);
    void check_spawns_idle();
    void spawns_idle_verdict();
    std::vector<HandoverSession> take_from_stand_in();
    void take_over_later();
    void adopt_sessions(std::vector<HandoverSession> from_stand_in);
    void take_over_control();
    [[noreturn]] void stand_in_main(int chan, pid_t vigild,
                                    std::vector<ctl::Server::CarriedSession> sessions);

    Options opts_;
    // vigild's own lines from here (timestamped like the shell's; internal errors rate-limited).
    Journal own_;
    uv_loop_t loop_{};
    Shell *shell_ = nullptr;
    uv_timer_t deadline_{};
    // Loop stalls: at each turn's prepare, the time since the last one minus the time spent
    // waiting in epoll (uv_metrics_idle_time) is what the turn's callbacks took.
    uv_prepare_t turn_{};
    // SIGCHLD's reap, after the poll that brought it (on_signal()).
    uv_check_t reap_check_{};
    std::uint64_t turn_last_ns_ = 0, idle_last_ns_ = 0;
    std::int64_t stall_max_ns_ = 0;
    // Freed heap given back to the kernel (heap_trim.hpp): a check armed by a turn that did
    // work while enough heap was free, or a probe of the free heap armed by one that came too
    // soon after the last probe (one timer, either); the turn a probe or the check caused
    // arms nothing.
    uv_timer_t trim_timer_{};
    bool trim_turn_ = false;
    HeapTrim trim_;
    void arm_heap_probe(std::uint64_t ms) noexcept;
    void arm_heap_check_if_worth() noexcept;
    void check_heap() noexcept;
    uv_timer_t spawn_timer_{};
    uv_poll_t spawner_poll_{};
    bool spawner_polling_ = false;
    std::vector<uv_signal_t *> signals_;
    proc::Spawner spawner_;
    int spawner_error_ = 0;                        // of spawner_.start(), in the constructor
    std::map<std::uint64_t, PendingSpawn> spawns_; // ticket -> answer
    TimePoint spawn_progress_{}; // the last answer, or the first submission since none was pending
    log::StandardStreams streams_;
    std::unique_ptr<log::LogWriter> files_;
    std::string notify_dir_;
    bool notify_dir_ready_ = false;
    std::optional<proc::CgroupRoot> cgroups_;
    std::vector<std::string> cgroup_removals_; // not handed to the thread pool yet
    bool cgroup_removing_ = false;             // a batch is on the thread pool
    void submit_cgroup_removals() noexcept;
    bool cgroups_tried_ = false;
    std::string cgroups_error_;
    std::unique_ptr<ctl::Server> ctl_;
    std::unique_ptr<http::Server> http_;
    bool closed_ = false;
    // A re-exec: listeners kept from the old binary (-1: make new ones), and who waits for the
    // spawner to have nothing pending.
    int adopted_control_fd_ = -1, adopted_http_fd_ = -1;
    std::vector<HandoverSession> adopted_sessions_;
    std::function<void(bool)> idle_wait_;
    std::unique_ptr<Running> idle_limit_;
    TimePoint idle_deadline_{};
    // The re-exec's stand-in: the socket pair to it (-1: none) and its pid until it is reaped
    // (-1: none); in the stand-in itself, the pid of the vigild it stands in for (0: not one).
    int stand_in_fd_ = -1;
    int stand_in_pid_ = -1;
    std::vector<int> leftovers_; // the old binary's children that end after the exec
    // The new binary takes the control socket over from the stand-in after its loop's first
    // turn (an idle handle keeps that turn from waiting; the check handle comes after it).
    int later_control_fd_ = -1;
    uv_idle_t stand_in_idle_{};
    uv_check_t stand_in_check_{};
    bool stand_in_handles_ = false;
    pid_t standing_in_for_ = 0;
};

template <class F> bool UvOs::guard(const char *where, F &&f) noexcept {
    try {
        f();
        return true;
    } catch (const std::bad_alloc &) {
        try {
            own_.limited("internal", LogLevel::Error,
                         std::string("out of memory in ") + where + "; going on", loop_time());
        } catch (...) {
        }
    } catch (const std::exception &e) {
        try {
            own_.limited("internal", LogLevel::Error,
                         std::string("internal error in ") + where + ": " + e.what() + "; going on",
                         loop_time());
        } catch (...) {
        }
    } catch (...) {
    }
    return false;
}

} // namespace vigil::daemon

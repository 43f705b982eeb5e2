// uv_os.cpp: see uv_os.hpp.
#include "uv_os.hpp"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <malloc.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <utility>

#include "control_api.hpp"
#include "shell.hpp"
#include "status_view.hpp"
#include "vigil/notify/process_watch.hpp"
#include "vigil/proc/exit.hpp"

namespace vigil::daemon {

namespace {

// Signals vigild handles itself. The kernel drops default-action signals sent to PID 1, so every
// signal that must mean something is caught explicitly.
constexpr int handled_signals[] = {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2};
// Signals that must never stop or kill vigild: job control from a terminal, and writes to a
// closed pipe. Children get default dispositions back (the spawn resets them).
constexpr int ignored_signals[] = {SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU, SIGWINCH};

template <class H> void close_handle(H *h) {
    if (!uv_is_closing(reinterpret_cast<uv_handle_t *>(h)))
        uv_close(reinterpret_cast<uv_handle_t *>(h), nullptr);
}

// The notify sockets' folder: a sibling of the control socket's (/run/vigil/control.sock:
// /run/vigil-notify), not a folder inside it: that one is 0700, so a service running as another
// user could not reach its socket there.
std::string notify_dir_for(const std::string &control_socket) {
    std::error_code ec;
    std::filesystem::path sock = std::filesystem::absolute(control_socket, ec);
    if (ec) sock = control_socket;
    std::string dir = sock.lexically_normal().parent_path().string();
    if (dir.empty() || dir == "/") return "/vigil-notify";
    return dir + "-notify";
}

class UvOutput final : public OutputChannel {
public:
    explicit UvOutput(std::unique_ptr<log::Capture> c) : c_(std::move(c)) {}
    void pause() override { c_->pause(); }
    void resume() override { c_->resume(); }
    bool paused() const override { return c_->paused(); }
    bool eof() const override { return c_->eof(); }
    void read_now() override { c_->read_now(); }
    int carried_fd(log::Stream s) const override { return c_->carried_fd(s); }
    std::string_view pending(log::Stream s) const override { return c_->pending(s); }

private:
    std::unique_ptr<log::Capture> c_;
};

class UvNotify final : public NotifyChannel {
public:
    explicit UvNotify(std::unique_ptr<notify::NotifySocket> s) : s_(std::move(s)) {}
    const std::string &path() const override { return s_->path(); }
    void receive_now() override { s_->receive_now(); }
    int fd() const override { return s_->fd(); }

private:
    std::unique_ptr<notify::NotifySocket> s_;
};

class UvReady final : public ReadyChannel {
public:
    explicit UvReady(std::unique_ptr<notify::ReadyFd> r) : r_(std::move(r)) {}
    int child_end() const override { return r_->child_end(); }
    void close_child_end() override { r_->close_child_end(); }
    int read_fd() const override { return r_->read_fd(); }

private:
    std::unique_ptr<notify::ReadyFd> r_;
};

template <class T> class Holder final : public Running {
public:
    explicit Holder(std::unique_ptr<T> t) : t_(std::move(t)) {}

private:
    std::unique_ptr<T> t_;
};

class UvProbes final : public ProbesChannel {
public:
    explicit UvProbes(std::unique_ptr<probe::Monitor> m) : m_(std::move(m)) {}
    probe::Monitor &monitor() override { return *m_; }

private:
    std::unique_ptr<probe::Monitor> m_;
};

// A service's cgroup folder; cgroup.events is polled only while somebody waits for it to empty.
class UvCgroup final : public Cgroup {
public:
    UvCgroup(UvOs &os, std::string dir) : os_(os), dir_(std::move(dir)) {}
    ~UvCgroup() override {
        stop_waiting();
        os_.remove_cgroup(std::move(dir_)); // only if empty: a folder with processes stays
    }
    int open_procs() override { return proc::cgroup::open_procs(dir_); }
    int signal(int sig, bool then_cont) override {
        return proc::cgroup::signal(dir_, sig, then_cont);
    }
    bool empty() const override { return proc::cgroup::empty(dir_); }
    void on_empty(std::function<void()> cb) override;
    const std::string &dir() const override { return dir_; }

private:
    void stop_waiting();
    static void on_poll(uv_poll_t *h, int, int);
    UvOs &os_;
    std::string dir_;
    std::function<void()> cb_;
    uv_poll_t *poll_ = nullptr;
    uv_timer_t *later_ = nullptr;
    int fd_ = -1;
};

void UvCgroup::stop_waiting() {
    if (later_) {
        uv_close(reinterpret_cast<uv_handle_t *>(later_),
                 [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
        later_ = nullptr;
    }
    if (poll_) {
        uv_close(reinterpret_cast<uv_handle_t *>(poll_),
                 [](uv_handle_t *h) { delete reinterpret_cast<uv_poll_t *>(h); });
        poll_ = nullptr;
    }
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

void UvCgroup::on_poll(uv_poll_t *h, int, int) {
    if (!h) return;
    auto *self = static_cast<UvCgroup *>(h->data);
    if (!proc::cgroup::empty(self->dir_)) return;
    auto cb = std::move(self->cb_);
    self->cb_ = nullptr;
    self->stop_waiting();
    self->os_.guard("cgroup empty", [&] {
        if (cb) cb();
    });
}

void UvCgroup::on_empty(std::function<void()> cb) {
    cb_ = std::move(cb);
    if (!poll_) {
        fd_ = proc::cgroup::open_events(dir_);
        if (fd_ < 0) return;
        poll_ = new uv_poll_t;
        uv_poll_init(os_.loop(), poll_, fd_);
        poll_->data = this;
        // cgroup.events signals a change of "populated" with POLLPRI.
        uv_poll_start(poll_, UV_PRIORITIZED, &UvCgroup::on_poll);
    }
    // Emptied before the poll started: its change is past. Answer from the loop, not from
    // inside this call (os.hpp's rule).
    if (proc::cgroup::empty(dir_)) {
        auto *t = new uv_timer_t;
        uv_timer_init(os_.loop(), t);
        t->data = this;
        later_ = t;
        uv_timer_start(
            t,
            [](uv_timer_t *h) {
                auto *self = static_cast<UvCgroup *>(h->data);
                self->later_ = nullptr;
                uv_close(reinterpret_cast<uv_handle_t *>(h),
                         [](uv_handle_t *hh) { delete reinterpret_cast<uv_timer_t *>(hh); });
                on_poll(self->poll_, 0, 0);
            },
            0, 0);
    }
}

} // namespace

// Runs `work` on libuv's thread pool (it must catch what it can throw) and `done` with its
// result back on the loop, guarded as `where`.
template <class R>
void UvOs::off_loop(const char *where, std::function<R()> work, std::function<void(R)> done) {
    struct Work {
        uv_work_t req{};
        std::function<R()> work;
        std::function<void(R)> done;
        R result{};
        UvOs *os = nullptr;
        const char *where = "";
    };
    auto *w = new Work;
    w->work = std::move(work);
    w->done = std::move(done);
    w->os = this;
    w->where = where;
    w->req.data = w;
    uv_queue_work(
        &loop_, &w->req,
        [](uv_work_t *r) {
            auto *job = static_cast<Work *>(r->data);
            job->result = job->work();
        },
        [](uv_work_t *r, int) {
            std::unique_ptr<Work> job(static_cast<Work *>(r->data));
            job->os->guard(job->where, [&] { job->done(std::move(job->result)); });
        });
}

UvOs::UvOs(const Options &opts)
    : opts_(opts), own_(opts.log_level, [this](std::string_view line) { say(line); }) {
    uv_loop_init(&loop_);
    loop_.data = this;
    uv_loop_configure(&loop_, UV_METRICS_IDLE_TIME);
    uv_prepare_init(&loop_, &turn_);
    turn_.data = this;
    uv_prepare_start(&turn_, [](uv_prepare_t *h) {
        auto *self = static_cast<UvOs *>(h->data);
        const std::uint64_t now = uv_hrtime(), idle = uv_metrics_idle_time(h->loop);
        if (self->turn_last_ns_ != 0) {
            const auto busy = static_cast<std::int64_t>((now - self->turn_last_ns_) -
                                                        (idle - self->idle_last_ns_));
            self->stall_max_ns_ = std::max(self->stall_max_ns_, busy);
        }
        self->turn_last_ns_ = now;
        self->idle_last_ns_ = idle;
        self->submit_cgroup_removals();
        if (self->trim_turn_) {
            self->trim_turn_ = false; // this turn ran a probe or the check: it arms nothing
        } else if (!self->closed_ &&
                   !uv_is_active(reinterpret_cast<uv_handle_t *>(&self->trim_timer_))) {
            if (std::uint64_t wait = self->trim_.probe_wait(uv_now(h->loop)); wait > 0)
                self->arm_heap_probe(wait);
            else
                self->arm_heap_check_if_worth();
        }
    });
    uv_unref(reinterpret_cast<uv_handle_t *>(&turn_)); // it must not keep the loop alive
    uv_check_init(&loop_, &reap_check_);
    reap_check_.data = this;
    uv_timer_init(&loop_, &trim_timer_);
    trim_timer_.data = this;
    uv_unref(reinterpret_cast<uv_handle_t *>(&trim_timer_));
    uv_timer_init(&loop_, &deadline_);
    deadline_.data = this;
    uv_timer_init(&loop_, &spawn_timer_);
    spawn_timer_.data = this;
    // The spawner helper is forked before the log threads below exist: a fork copies only the
    // calling thread, and a lock another thread held at that instant (an allocator's, say)
    // would stay locked in the helper for good. start_spawner() reports the outcome.
    spawner_error_ = spawner_.start();
    streams_ = log::open_standard_streams(&loop_);
    files_ = std::make_unique<log::LogWriter>(&loop_);
    notify_dir_ = notify_dir_for(opts_.socket);
}

UvOs::~UvOs() {
    close_handles();
    uv_run(&loop_, UV_RUN_DEFAULT); // the close callbacks, and the cgroup removals
    if (cgroups_) cgroups_->remove_all();
    uv_loop_close(&loop_);
}

void UvOs::start_spawner() {
    if (int err = spawner_error_)
        own_.say(LogLevel::Warn, std::string("cannot start the spawner helper: ") +
                                     std::strerror(err) + "; spawning from vigild");
    if (spawner_.fd() >= 0) {
        uv_poll_init(&loop_, &spawner_poll_, spawner_.fd());
        spawner_poll_.data = this;
        uv_poll_start(&spawner_poll_, UV_READABLE, [](uv_poll_t *h, int, int) {
            auto *self = static_cast<UvOs *>(h->data);
            self->guard("spawner", [self] { self->pump_spawner(); });
        });
        spawner_polling_ = true;
    }
}

bool UvOs::attach(Shell &shell) {
    shell_ = &shell;
    shell.on_exit = [this](int) { close_handles(); };
    setup_signals();
    // A re-exec blocked every signal before execve (uv_reexec.cpp) and the mask survives it:
    // what came meanwhile is pending and is delivered now that the handlers are in place.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::getpid() != 1)
        if (int err = proc::become_subreaper())
            shell.journal().say(LogLevel::Warn,
                                std::string("cannot become a child subreaper: ") +
                                    std::strerror(err) +
                                    "; double-forking services will not be reaped by vigild");
    return start_control() && start_http();
}

void UvOs::run() {
    uv_run(&loop_, UV_RUN_DEFAULT);
}

// ---- time --------------------------------------------------------------------------------

TimePoint UvOs::now() {
    uv_update_time(&loop_);
    return at_ms(static_cast<std::int64_t>(uv_now(&loop_)));
}

TimePoint UvOs::loop_time() {
    return at_ms(static_cast<std::int64_t>(uv_now(&loop_)));
}

std::int64_t UvOs::wall_ms() {
    return log::wall_now();
}

namespace {
// A one-shot timer; destroying it cancels it. The uv_timer_t is freed by its close callback.
class UvAfter final : public Running {
public:
    UvAfter(UvOs &os, uv_loop_t *loop, Duration d, std::function<void()> f)
        : os_(os), f_(std::move(f)), t_(new uv_timer_t) {
        uv_timer_init(loop, t_);
        t_->data = this;
        uv_timer_start(
            t_,
            [](uv_timer_t *h) {
                auto *self = static_cast<UvAfter *>(h->data);
                auto run = self->f_; // the callback may destroy this object
                self->os_.guard("timer", [&] { run(); });
            },
            static_cast<std::uint64_t>(std::max<std::int64_t>(0, d.count())), 0);
    }
    ~UvAfter() override {
        uv_close(reinterpret_cast<uv_handle_t *>(t_),
                 [](uv_handle_t *h) { delete reinterpret_cast<uv_timer_t *>(h); });
    }
    UvAfter(const UvAfter &) = delete;
    UvAfter &operator=(const UvAfter &) = delete;

private:
    UvOs &os_;
    std::function<void()> f_;
    uv_timer_t *t_;
};
} // namespace

std::unique_ptr<Running> UvOs::after(Duration d, std::function<void()> f) {
    return std::make_unique<UvAfter>(*this, &loop_, d, std::move(f));
}

void UvOs::arm_deadline(std::optional<TimePoint> when) {
    if (closed_ || !when) {
        uv_timer_stop(&deadline_);
        return;
    }
    const auto wait = std::max<std::int64_t>(0, (*when - now()).count());
    uv_timer_start(
        &deadline_,
        [](uv_timer_t *t) {
            auto *self = static_cast<UvOs *>(t->data);
            self->guard("deadline", [self] {
                if (self->shell_) self->shell_->on_deadline();
            });
        },
        static_cast<std::uint64_t>(wait), 0);
}

// ---- processes ---------------------------------------------------------------------------

void UvOs::spawn(proc::SpawnSpec spec, proc::SpawnExtras extras, SpawnDone done) {
    const std::uint64_t ticket = spawner_.submit(std::move(spec), std::move(extras));
    if (spawns_.empty()) spawn_progress_ = now();
    spawns_[ticket] = PendingSpawn{std::move(done)};
    if (spawner_.fd() < 0) pump_spawner(); // spawns run in vigild: answered at once
    arm_spawn_limit();
}

void UvOs::pump_spawner() {
    std::vector<proc::SpawnCompletion> done = spawner_.pump();
    if (!done.empty()) spawn_progress_ = now();
    if (std::string w = spawner_.take_warning(); !w.empty()) own_.say(LogLevel::Warn, w);
    for (proc::SpawnCompletion &c : done) {
        auto it = spawns_.find(c.ticket);
        if (it == spawns_.end()) continue;
        SpawnDone cb = std::move(it->second.done);
        spawns_.erase(it);
        guard("spawn answer", [&] { cb(std::move(c)); });
    }
    arm_spawn_limit();
    check_spawns_idle();
}

// A helper that answers nothing for spawn_limit while spawns are pending (a chdir on a hung
// file system, say) is killed: the request it had in hand fails, the others are sent again to
// a new helper. The limit counts from the last answer, not from each request's submission:
// answers come in submission order, so with 10,000 spawns queued at once the last one may
// wait longer than the limit behind a helper that never stalled. O(1) a call: it runs at
// every submission and every answer.
void UvOs::arm_spawn_limit() {
    if (spawns_.empty() || closed_) {
        uv_timer_stop(&spawn_timer_);
        return;
    }
    const auto wait = std::max<std::int64_t>(0, (spawn_progress_ + spawn_limit - now()).count());
    uv_timer_start(
        &spawn_timer_,
        [](uv_timer_t *t) {
            auto *self = static_cast<UvOs *>(t->data);
            self->guard("spawn limit", [self] {
                self->spawner_.kill_helper("no spawn was answered for " +
                                           core::format_duration(spawn_limit));
                self->pump_spawner();
            });
        },
        static_cast<std::uint64_t>(wait), 0);
}

int UvOs::self_pid() {
    return standing_in_for_ > 0 ? standing_in_for_ : ::getpid();
}

int UvOs::pidfd_open(int pid, std::string *error) {
    const long fd = ::syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0 && error) *error = "pidfd_open " + std::to_string(pid) + ": " + std::strerror(errno);
    return static_cast<int>(fd);
}

int UvOs::signal_group(int pgid, int sig) {
    return proc::signal_group(pgid, sig);
}

bool UvOs::group_alive(int pgid) {
    const int err = proc::signal_group(pgid, 0);
    return err == 0 || err == EPERM;
}

int UvOs::signal_pidfd(int pidfd, int sig) {
    return proc::signal_pidfd(pidfd, sig);
}

void UvOs::close_fd(int fd) {
    if (fd >= 0) ::close(fd);
}

std::optional<notify::ProcIds> UvOs::proc_ids(int pid) {
    return notify::proc_ids(pid);
}

std::unique_ptr<Running> UvOs::watch_exit(int pid, std::function<void(std::optional<int>)> ended,
                                          std::string *error) {
    auto opened = notify::ProcessWatch::open(&loop_, pid, [this, pid, ended] {
        guard("main process watch", [&] { ended(notify::ended_status(pid)); });
    });
    if (!opened.watch) {
        if (error) *error = opened.error;
        return nullptr;
    }
    return std::make_unique<Holder<notify::ProcessWatch>>(std::move(opened.watch));
}

std::unique_ptr<Cgroup> UvOs::make_cgroup(const std::string &unit, std::string *error) {
    if (!opts_.cgroups) {
        if (!cgroups_tried_) {
            cgroups_tried_ = true;
            own_.say(LogLevel::Info,
                     "services run without cgroups (--no-cgroups): a process that leaves its "
                     "service's session escapes a stop; vigilctl status lists such processes");
        }
        return nullptr;
    }
    if (!cgroups_tried_) {
        cgroups_tried_ = true;
        std::vector<std::string> stale;
        cgroups_ = proc::CgroupRoot::make(&cgroups_error_, &stale);
        for (const std::string &s : stale)
            own_.say(LogLevel::Warn, s);
        if (!cgroups_)
            own_.say(LogLevel::Warn,
                     "services run without cgroups (" + cgroups_error_ +
                         "): a process that leaves its service's session escapes a stop; vigilctl "
                         "status lists such processes");
    }
    if (!cgroups_) return nullptr; // said once above
    std::string why;
    std::string dir = cgroups_->service(unit, &why);
    if (dir.empty()) {
        if (error) *error = why;
        return nullptr;
    }
    return std::make_unique<UvCgroup>(*this, std::move(dir));
}

std::unique_ptr<Cgroup> UvOs::adopt_cgroup(std::string dir) {
    return std::make_unique<UvCgroup>(*this, std::move(dir));
}

// Out of memory, a folder is removed here and now, as before the thread pool did it; one that
// is missed even so goes with the root folder at the exit (CgroupRoot::remove_all()).
void UvOs::remove_cgroup(std::string dir) noexcept {
    try {
        cgroup_removals_.push_back(dir);
        if (cgroup_removals_.size() >= cgroup_batch) submit_cgroup_removals();
    } catch (...) {
        proc::cgroup::remove(dir);
    }
}

// One batch at a time: removals run on one thread, since two at once contend for the kernel's
// cgroup lock (bench/README.md has the figures); what comes meanwhile waits for its end.
void UvOs::submit_cgroup_removals() noexcept {
    if (cgroup_removals_.empty() || cgroup_removing_) return;
    try {
        off_loop<int>(
            "cgroup removal",
            [dirs = cgroup_removals_] {
                for (const std::string &d : dirs)
                    proc::cgroup::remove(d);
                return 0;
            },
            [this](int) {
                cgroup_removing_ = false;
                submit_cgroup_removals();
            });
        cgroup_removing_ = true;
    } catch (...) {
        for (const std::string &d : cgroup_removals_)
            proc::cgroup::remove(d);
    }
    cgroup_removals_.clear();
}

void UvOs::find_processes(std::vector<std::string> units, std::size_t max,
                          std::function<void(ProcessesFound)> done) {
    off_loop<ProcessesFound>(
        "processes",
        [units = std::move(units), max]() -> ProcessesFound {
            try {
                return proc::processes_of(units, max);
            } catch (const std::exception &) {
                return {}; // out of memory: nothing found this time
            }
        },
        std::move(done));
}

// ---- signals and reaping -----------------------------------------------------------------

void UvOs::setup_signals() {
    for (int sig : ignored_signals) {
        struct sigaction sa {};
        sa.sa_handler = SIG_IGN;
        ::sigaction(sig, &sa, nullptr);
    }
    std::vector<int> handled(std::begin(handled_signals), std::end(handled_signals));
    handled.push_back(SIGRTMIN + 1); // re-exec (not a constant in glibc)
    for (int sig : handled) {
        auto *h = new uv_signal_t;
        uv_signal_init(&loop_, h);
        h->data = this;
        uv_signal_start(
            h,
            [](uv_signal_t *hh, int signum) {
                auto *self = static_cast<UvOs *>(hh->data);
                self->guard("signal", [self, signum] { self->on_signal(signum); });
            },
            sig);
        signals_.push_back(h);
    }
}

// libuv calls back once for each time a signal was delivered, and a burst of exits (a stop of
// many services) leaves thousands of SIGCHLDs for one poll. Each reap ends with a waitpid()
// that finds nothing, and that one walks every child vigild still has: so the reap runs once,
// after the poll that brought them (the check phase of the same loop turn).
void UvOs::on_signal(int sig) {
    if (sig == SIGCHLD) {
        if (!closed_ && !uv_is_active(reinterpret_cast<uv_handle_t *>(&reap_check_)))
            uv_check_start(&reap_check_, [](uv_check_t *h) {
                uv_check_stop(h);
                auto *self = static_cast<UvOs *>(h->data);
                self->guard("reap", [self] { self->reap(); });
            });
        return;
    }
    if (shell_) shell_->on_signal(sig);
}

void UvOs::reap() {
    for (const proc::Reaped &r : proc::reap_all()) {
        if (r.pid == stand_in_pid_) { // a re-exec's stand-in (uv_standin.cpp), not an orphan
            stand_in_pid_ = -1;
            continue;
        }
        if (std::erase(leftovers_, r.pid) > 0) continue; // the old binary's spawner helper
        if (shell_ && shell_->on_reaped(r.pid, r.wstatus)) continue;
        if (spawner_.on_reaped(r.pid, r.wstatus)) continue;
        if (shell_) shell_->orphan_reaped();
    }
    if (spawner_.pending() > 0) pump_spawner(); // an answer may carry a reaped status now
}

// ---- output, notification, readiness, probes --------------------------------------------

template <class... A, class F> static auto guarded(UvOs &os, const char *where, F f) {
    return [&os, where, f = std::move(f)](A... a) { os.guard(where, [&] { f(a...); }); };
}

std::unique_ptr<OutputChannel> UvOs::read_output(int stdout_fd, int stderr_fd,
                                                 log::CaptureOptions options,
                                                 log::Capture::Callbacks cb) {
    return capture(stdout_fd, stderr_fd, {}, {}, options, std::move(cb));
}

std::unique_ptr<OutputChannel> UvOs::adopt_output(int stdout_fd, int stderr_fd,
                                                  std::string_view stdout_pending,
                                                  std::string_view stderr_pending,
                                                  log::CaptureOptions options,
                                                  log::Capture::Callbacks cb) {
    return capture(stdout_fd, stderr_fd, stdout_pending, stderr_pending, options, std::move(cb));
}

// A Capture of the pipes, its callbacks guarded; a partial line carried across an exec is
// given back to its framer before the first read.
std::unique_ptr<OutputChannel> UvOs::capture(int stdout_fd, int stderr_fd,
                                             std::string_view stdout_pending,
                                             std::string_view stderr_pending,
                                             log::CaptureOptions options,
                                             log::Capture::Callbacks cb) {
    log::Capture::Callbacks g;
    if (cb.on_line)
        g.on_line = guarded<log::Stream, std::string_view, bool>(*this, "output", cb.on_line);
    if (cb.on_lines)
        g.on_lines =
            guarded<log::Stream, std::string_view, std::size_t>(*this, "output", cb.on_lines);
    if (cb.on_batch) g.on_batch = guarded<>(*this, "output batch", cb.on_batch);
    if (cb.on_eof) g.on_eof = guarded<>(*this, "output end", cb.on_eof);
    auto capture =
        std::make_unique<log::Capture>(&loop_, stdout_fd, stderr_fd, options, std::move(g));
    if (!stdout_pending.empty()) capture->preload(log::Stream::Stdout, stdout_pending);
    if (!stderr_pending.empty()) capture->preload(log::Stream::Stderr, stderr_pending);
    if (int err = capture->start(); err != 0)
        own_.say(LogLevel::Error,
                 std::string("cannot read a service's output: ") + uv_strerror(err));
    return std::make_unique<UvOutput>(std::move(capture));
}

std::unique_ptr<NotifyChannel>
UvOs::open_notify(const std::string &unit, notify::NotifySocket::Callbacks cb, std::string *error) {
    if (!notify_dir_ready_) {
        if (std::string err = notify::prepare_socket_dir(notify_dir_); !err.empty()) {
            if (error) *error = err;
            return nullptr;
        }
        notify_dir_ready_ = true;
    }
    auto opened = notify::NotifySocket::open(&loop_, notify::socket_path(notify_dir_, unit),
                                             guard_notify(std::move(cb)));
    if (!opened.socket) {
        if (error) *error = opened.error;
        return nullptr;
    }
    return std::make_unique<UvNotify>(std::move(opened.socket));
}

std::unique_ptr<NotifyChannel> UvOs::adopt_notify(std::string path, int fd,
                                                  notify::NotifySocket::Callbacks cb) {
    notify_dir_ready_ = true; // the old binary made it
    return std::make_unique<UvNotify>(
        notify::NotifySocket::adopt(&loop_, std::move(path), fd, guard_notify(std::move(cb))));
}

notify::NotifySocket::Callbacks UvOs::guard_notify(notify::NotifySocket::Callbacks cb) {
    notify::NotifySocket::Callbacks g;
    g.owns = cb.owns; // a question, answered from /proc: nothing to guard against
    if (cb.message) g.message = guarded<const notify::Message &, int>(*this, "notify", cb.message);
    if (cb.refused)
        g.refused = guarded<int, const std::string &>(*this, "notify refusal", cb.refused);
    return g;
}

std::unique_ptr<ReadyChannel> UvOs::open_ready_fd(std::function<void()> on_ready,
                                                  std::string *error) {
    auto opened = notify::ReadyFd::open(&loop_, guarded<>(*this, "ready fd", std::move(on_ready)));
    if (!opened.ready_fd) {
        if (error) *error = opened.error;
        return nullptr;
    }
    return std::make_unique<UvReady>(std::move(opened.ready_fd));
}

std::unique_ptr<ReadyChannel> UvOs::adopt_ready_fd(int fd, std::function<void()> on_ready) {
    return std::make_unique<UvReady>(
        notify::ReadyFd::adopt(&loop_, fd, guarded<>(*this, "ready fd", std::move(on_ready))));
}

std::unique_ptr<ProbesChannel> UvOs::start_probes(const std::string &, probe::MonitorSpecs specs,
                                                  probe::Monitor::Callbacks cb,
                                                  probe::ExecSpawn exec,
                                                  const std::optional<probe::MonitorState> &from) {
    probe::Monitor::Callbacks g;
    if (cb.on_ready) g.on_ready = guarded<bool>(*this, "probe", cb.on_ready);
    if (cb.on_failed)
        g.on_failed =
            guarded<core::FailureCause, const std::string &>(*this, "probe", cb.on_failed);
    if (cb.on_checked)
        g.on_checked =
            guarded<const std::string &, const probe::CheckResult &>(*this, "probe", cb.on_checked);
    auto m = std::make_unique<probe::Monitor>(&loop_, shell_->exec_probes(), std::move(specs),
                                              std::move(g), std::move(exec));
    if (from)
        m->resume(*from);
    else
        m->start();
    return std::make_unique<UvProbes>(std::move(m));
}

// ---- logs and units ----------------------------------------------------------------------

log::FileSinkFactory UvOs::file_sinks() {
    return files_->factory();
}

void UvOs::say(std::string_view line) {
    if (streams_.err) streams_.err->raw(line);
}

std::vector<BoundSocket> UvOs::bind_sockets_now(const std::vector<unit::ListenSpec> &specs) {
    std::vector<BoundSocket> out;
    for (const unit::ListenSpec &s : specs)
        out.push_back(bind_socket(s));
    return out;
}

// The answer of a bind off the loop: the sockets it bound are closed if vigild dropped the
// answer (an exception in `done`): the work item owns them until `done` took them.
void UvOs::bind_sockets(std::vector<unit::ListenSpec> specs,
                        std::function<void(std::vector<BoundSocket>)> done) {
    off_loop<std::vector<BoundSocket>>(
        "listen",
        [specs = std::move(specs)]() -> std::vector<BoundSocket> {
            std::vector<BoundSocket> out;
            for (const unit::ListenSpec &s : specs) {
                try {
                    out.push_back(bind_socket(s));
                } catch (const std::exception &e) {
                    out.push_back({-1, "listen " + s.describe() + ": " + e.what()});
                }
            }
            return out;
        },
        std::move(done));
}

int UvOs::relisten(int fd, int backlog) {
    return ::listen(fd, backlog) == 0 ? 0 : errno;
}

void UvOs::load_units(const std::string &dir, std::function<void(unit::LoadResult)> done) {
    off_loop<unit::LoadResult>(
        "reload",
        [dir]() -> unit::LoadResult {
            unit::LoadResult result;
            try {
                result = unit::load_dir(dir);
            } catch (const std::exception &e) {
                result.diagnostics.push_back(
                    unit::Diagnostic{dir, 0, 0, "", std::string("cannot load: ") + e.what()});
            }
            return result;
        },
        std::move(done));
}

// ---- control and HTTP --------------------------------------------------------------------

bool UvOs::start_control() {
    ctl::ServerOptions so;
    so.path = opts_.socket;
    if (opts_.socket_group) {
        std::string err;
        so.socket_group = ctl::lookup_group(*opts_.socket_group, &err);
        if (!so.socket_group) {
            own_.say(LogLevel::Error, "--socket-group: " + err);
            return false;
        }
    }
    so.log = [this](std::string_view line) {
        if (shell_) shell_->journal().limited("control", LogLevel::Warn, line, loop_time());
    };
    ctl_ = std::make_unique<ctl::Server>(
        &loop_, std::move(so), [this](const ctl::ResponderPtr &s, const ctl::Request &q) {
            guard("control request", [&] { shell_->control().handle(s, q); });
        });
    const int adopted = std::exchange(adopted_control_fd_, -1);
    // A re-exec's stand-in answers on the socket until this binary's loop has turned once
    // (uv_standin.cpp): the first turn registers every carried descriptor with epoll, and
    // nobody who only reads waits for that.
    if (adopted >= 0 && stand_in_fd_ >= 0) {
        later_control_fd_ = adopted;
        take_over_later();
        return true;
    }
    // Else it stops and hands its connections over before this binary listens: a new socket
    // is made only where nobody answers any more.
    std::vector<HandoverSession> from_stand_in = take_from_stand_in();
    std::string message;
    if (int err = adopted >= 0 ? ctl_->adopt(adopted, &message) : ctl_->listen(&message);
        err != 0) {
        own_.say(LogLevel::Error, message + "; not starting (use --socket to choose another path)");
        ctl_->close();
        for (const HandoverSession &s : from_stand_in)
            ::close(s.fd);
        return false;
    }
    adopt_sessions(std::move(from_stand_in));
    return true;
}

// The control connections carried across the exec, the old binary's and the stand-in's.
void UvOs::adopt_sessions(std::vector<HandoverSession> from_stand_in) {
    for (HandoverSession &s : std::exchange(adopted_sessions_, {}))
        ctl_->adopt_session(s.fd, std::move(s.pending));
    for (HandoverSession &s : from_stand_in)
        ctl_->adopt_session(s.fd, std::move(s.pending));
}

bool UvOs::start_http() {
    if (!opts_.http) return true;
    auto addr = http::parse_listen_address(*opts_.http);
    if (!addr) {
        own_.say(LogLevel::Error,
                 "--http " + *opts_.http + ": expected HOST:PORT, e.g. 127.0.0.1:9100");
        return false;
    }
    http::Handlers h;
    h.snapshot = [this] { return snapshot(*shell_); };
    h.status_json = [this] { return status_encoded(*shell_, live_units(*shell_)); };
    const int adopted = std::exchange(adopted_http_fd_, -1);
    auto opened = adopted >= 0
                      ? http::Server::adopt(&loop_, adopted, {}, std::move(h))
                      : http::Server::listen(&loop_, addr->first, addr->second, {}, std::move(h));
    if (!opened.server) {
        own_.say(LogLevel::Error, opened.error);
        return false;
    }
    http_ = std::move(opened.server);
    return true;
}

namespace {

// vigild's resident size in bytes from /proc/self/statm (its own proc file: no blocking), or 0.
std::uint64_t resident_bytes() noexcept {
    int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[128];
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    unsigned long long size = 0, resident = 0;
    if (std::sscanf(buf, "%llu %llu", &size, &resident) != 2) return 0;
    return static_cast<std::uint64_t>(resident) * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
}

// The heap in use: allocated from the arenas, and blocks of their own (mmapped).
std::uint64_t heap_in_use(const struct mallinfo2 &mi) noexcept {
    return static_cast<std::uint64_t>(mi.uordblks) + static_cast<std::uint64_t>(mi.hblkhd);
}

} // namespace

// heap_trim.hpp: a probe of the free heap after `ms`, from a busy turn that came too soon.
void UvOs::arm_heap_probe(std::uint64_t ms) noexcept {
    uv_timer_start(
        &trim_timer_,
        [](uv_timer_t *t) {
            auto *os = static_cast<UvOs *>(t->data);
            os->trim_turn_ = true;
            if (os->trim_.probe_wait(uv_now(t->loop)) == 0) os->arm_heap_check_if_worth();
        },
        ms, 0);
}

// The check in 5 s, when enough of the heap is free already for it to find something.
void UvOs::arm_heap_check_if_worth() noexcept {
    if (!HeapTrim::worth_arming(mallinfo2().fordblks)) return;
    uv_timer_start(
        &trim_timer_,
        [](uv_timer_t *t) {
            auto *os = static_cast<UvOs *>(t->data);
            os->trim_turn_ = true;
            os->check_heap();
        },
        5000, 0);
}

void UvOs::check_heap() noexcept {
    const struct mallinfo2 mi = mallinfo2();
    const std::uint64_t resident = resident_bytes();
    if (resident == 0) return;
    if (!trim_.due(mi.fordblks, heap_in_use(mi), resident)) {
        trim_.observed(resident, heap_in_use(mi));
        return;
    }
    malloc_trim(0);
    trim_.trimmed(resident_bytes(), heap_in_use(mallinfo2()));
}

// Closes every handle so the loop can end; the log writer and the standard streams are flushed
// (bounded) first.
void UvOs::close_handles() {
    if (closed_) return;
    closed_ = true;
    if (ctl_) ctl_->close();
    http_.reset();
    uv_timer_stop(&deadline_);
    close_handle(&deadline_);
    uv_prepare_stop(&turn_);
    close_handle(&turn_);
    uv_check_stop(&reap_check_);
    close_handle(&reap_check_);
    uv_timer_stop(&trim_timer_);
    close_handle(&trim_timer_);
    uv_timer_stop(&spawn_timer_);
    close_handle(&spawn_timer_);
    if (stand_in_handles_) {
        close_handle(&stand_in_idle_);
        close_handle(&stand_in_check_);
        stand_in_handles_ = false;
    }
    if (spawner_polling_) close_handle(&spawner_poll_);
    spawner_polling_ = false;
    for (uv_signal_t *h : signals_)
        uv_close(reinterpret_cast<uv_handle_t *>(h),
                 [](uv_handle_t *hh) { delete reinterpret_cast<uv_signal_t *>(hh); });
    signals_.clear();
    if (files_) {
        files_->flush_blocking(Duration{5000});
        files_->close(nullptr);
    }
    if (streams_.out) streams_.out->flush_blocking(Duration{5000});
    if (streams_.err && !streams_.shared()) streams_.err->flush_blocking(Duration{5000});
    if (streams_.out) streams_.out->close(nullptr);
    if (streams_.err && !streams_.shared()) streams_.err->close(nullptr);
    submit_cgroup_removals();
}

} // namespace vigil::daemon

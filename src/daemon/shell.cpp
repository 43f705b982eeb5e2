#include "shell.hpp"

#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "journal.hpp"
#include "vigil/core/core.hpp"
#include "vigil/core/names.hpp"
#include "vigil/ctl/server.hpp"
#include "vigil/ctl/shapes.hpp"
#include "vigil/http/metrics.hpp"
#include "vigil/http/server.hpp"
#include "vigil/log/capture.hpp"
#include "vigil/log/forwarder.hpp"
#include "vigil/log/pattern.hpp"
#include "vigil/log/unit_log.hpp"
#include "vigil/notify/notify_socket.hpp"
#include "vigil/notify/process_watch.hpp"
#include "vigil/probe/monitor.hpp"
#include "vigil/proc/exit.hpp"
#include "vigil/proc/spawn.hpp"
#include "vigil/proc/spawner.hpp"

namespace vigil::daemon {
namespace {

// Signals vigild handles itself. The kernel drops default-action signals sent to PID 1, so every
// signal that must mean something is caught explicitly (house-style §7.5).
constexpr int handled_signals[] = {SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2};
// Signals that must never stop or kill vigild: job control from a terminal, and writes to a
// closed pipe (a vanished log reader must not kill the supervisor). Children get default
// dispositions back (proc::spawn resets them).
constexpr int ignored_signals[] = {SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU, SIGWINCH};

std::string sig_name(int sig) {
    return core::signal_name(sig);
}

class Shell;

// The core's part of the units' readiness probe and watchdog.
core::TreeSpec core_tree(core::TreeSpec tree, const std::vector<unit::Unit> &units) {
    for (std::size_t i = 0; i < tree.nodes.size() && i < units.size(); ++i) {
        tree.nodes[i].watchdog = units[i].watchdog;
        tree.nodes[i].readiness_probe = units[i].readiness || units[i].ready.probe;
    }
    return tree;
}

// Runtime state of one child (indexed by ChildId); policy lives in the core. Callbacks from
// libuv never hold a Runtime pointer (the vector may grow on reload): they carry the ChildId and
// the Incarnation and look the child up again.
struct Runtime {
    Incarnation inc;
    int pid = -1;     // main process while alive (or reaped but exit not yet reported)
    int session = -1; // the spawned process: session and group id; the core's Pid for `inc`
    int last_pid = -1;
    // MAINPID= may hand the main role to another process of the service (pid != session): its
    // end, not the spawned process's, is then the incarnation's exit, reported to the core
    // under the spawned pid. main_watch sees that end while the process is not vigild's child.
    std::unique_ptr<notify::ProcessWatch> main_watch;
    std::unique_ptr<log::UnitLog> log; // outlives incarnations (ring, file)
    bool log_stale = false;            // reload changed the unit: rebuild `log` at the next spawn
    std::unique_ptr<log::Capture> capture;
    std::vector<std::pair<Incarnation, std::unique_ptr<log::Capture>>>
        draining;                                 // this incarnation's stdout/stderr
    std::optional<log::Regex> ready_log;          // ready: {"log": regex}
    bool ready_sent = false;                      // BecameReady fed for this incarnation
    std::unique_ptr<probe::Monitor> monitor;      // this incarnation's probes
    std::unique_ptr<notify::NotifySocket> notify; // per unit, kept across incarnations
    std::unique_ptr<notify::ReadyFd> ready_fd;    // this incarnation's ready fd
    std::unique_ptr<notify::Watchdog> watchdog;
    std::string status_text; // sd_notify STATUS=
    std::uint64_t probe_failures = 0;
    std::uint64_t log_failed_reported = 0; // lines_failed last put in the history
};

class Shell {
public:
    Shell(const Options &opts, unit::LoadResult loaded)
        : opts_(opts), journal_(opts.log_level), units_(std::move(loaded.units)),
          core_(core_tree(std::move(loaded.tree), units_)) {
        uv_loop_init(&loop_);
        loop_.data = this;
        rt_.resize(core_.size());
        raise_fd_limit();
        for (unit::Unit &u : units_)
            give_default_limits(u);
    }

    ~Shell() { uv_loop_close(&loop_); }

    int run() {
        // First, while vigild holds almost no descriptors: services are spawned from this
        // small helper, so that no spawn copies vigild's thousands of fds (proc/spawner.hpp).
        if (int err = spawner_.start())
            journal_.say(LogLevel::Warn, std::string("cannot start the spawner helper: ") +
                                             std::strerror(err) + "; spawning from vigild");
        setup_signals();
        uv_timer_init(&loop_, &timer_);
        timer_.data = this;
        uv_idle_init(&loop_, &resume_);
        resume_.data = this;
        if (::getpid() != 1) {
            if (int err = proc::become_subreaper())
                journal_.say(LogLevel::Warn,
                             std::string("cannot become a child subreaper: ") + std::strerror(err) +
                                 "; double-forking services will not be reaped by vigild");
        }
        mono0_ = now();
        wall0_ = wall_ms();
        notify_dir_ = notify_dir_for(opts_.socket);
        forwarder_ = std::make_unique<log::Forwarder>(&loop_, log::ForwarderOptions{});
        forwarder_->on_pressure([this](bool congested) { set_congested(congested); });
        if (!start_control() || !start_http()) {
            exit_status_ = 1;
            teardown();
            uv_run(&loop_, UV_RUN_DEFAULT);
            return 1;
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
    // The loop's cached time (updated once per loop iteration): for per-line hot paths, where
    // a clock read per line was 17% of vigild's CPU when logging (bench/README.md).
    TimePoint loop_now() const {
        return at_ms(static_cast<std::int64_t>(uv_now(const_cast<uv_loop_t *>(&loop_))));
    }

    TimePoint now() {
        uv_update_time(&loop_);
        return at_ms(static_cast<std::int64_t>(uv_now(&loop_)));
    }

    // ---- file descriptor limit -------------------------------------------------------------

    // Each service costs vigild about 3 descriptors (its stdout and stderr pipes, plus a notify
    // socket or ready pipe when declared) and a few kilobytes. 10,000 services need more than
    // the usual soft limit of 1024, so vigild raises its own soft limit up to the hard one (and
    // the hard one too when it may), and says what to do when that is still too low. Services get
    // the original limit back (give_default_limits): programs that use select() break above 1024
    // descriptors.
    void raise_fd_limit() {
        ::getrlimit(RLIMIT_NOFILE, &original_nofile_);
        rlim_t needed = 3 * static_cast<rlim_t>(units_.size()) + 256;
        rlimit want = original_nofile_;
        if (want.rlim_cur >= needed) return;
        const rlim_t target = std::max(needed, rlim_t{65536});
        want.rlim_cur = std::min(original_nofile_.rlim_max, target);
        if (::setrlimit(RLIMIT_NOFILE, &want) != 0) want = original_nofile_;
        if (want.rlim_cur < needed) {
            // Root (CAP_SYS_RESOURCE) may raise the hard limit too, up to fs.nr_open; anyone
            // else gets EPERM and the warning below.
            rlim_t nr_open = 1024 * 1024;
            if (std::FILE *f = std::fopen("/proc/sys/fs/nr_open", "r")) {
                unsigned long long v = 0;
                if (std::fscanf(f, "%llu", &v) == 1) nr_open = static_cast<rlim_t>(v);
                std::fclose(f);
            }
            const rlim_t both = std::min(target, nr_open);
            rlimit higher{both, std::max(both, original_nofile_.rlim_max)};
            if (both > want.rlim_cur && ::setrlimit(RLIMIT_NOFILE, &higher) == 0) want = higher;
        }
        if (want.rlim_cur < needed)
            journal_.say(LogLevel::Warn,
                         "file descriptor limit " + std::to_string(want.rlim_cur) +
                             " is below the " + std::to_string(needed) + " that " +
                             std::to_string(units_.size()) +
                             " units may need; raise it (ulimit -Hn, or LimitNOFILE= for systemd, "
                             "or --ulimit nofile= for docker)");
    }

    void give_default_limits(unit::Unit &u) const {
        for (const proc::Limit &l : u.spawn.limits)
            if (l.resource == RLIMIT_NOFILE) return;
        u.spawn.limits.push_back(
            proc::Limit{RLIMIT_NOFILE, original_nofile_.rlim_cur, original_nofile_.rlim_max});
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
        // A long sweep (starting 1,000 services) must not starve the loop: after a batch of
        // spawns the rest waits for the next loop iteration (an idle handle, active only while
        // work is queued), so signals, exits, output and vigilctl are served in between.
        int spawns = 0;
        while (!queue_.empty()) {
            if (spawns >= spawns_per_turn && !exit_status_) {
                if (!uv_is_active(reinterpret_cast<uv_handle_t *>(&resume_)))
                    uv_idle_start(&resume_, [](uv_idle_t *h) {
                        auto *self = static_cast<Shell *>(h->data);
                        uv_idle_stop(h);
                        std::vector<core::Action> none;
                        self->execute(none);
                    });
                break;
            }
            core::Action a = std::move(queue_.front());
            queue_.pop_front();
            if (std::holds_alternative<core::Spawn>(a)) ++spawns;
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
        const unit::Unit &u = units_[s.child.value];
        Runtime &r = runtime(s.child);
        proc::SpawnExtras extras;
        extras.env.emplace_back("VIGIL_UNIT", u.name);
        if (u.ready.notify || u.watchdog) {
            if (!open_notify(s.child)) {
                enqueue_event(
                    core::SpawnFailed{s.child, s.incarnation, "cannot open NOTIFY_SOCKET"});
                return;
            }
            extras.env.push_back(runtime(s.child).notify->env());
        }
        if (u.watchdog)
            for (auto &kv : notify::watchdog_env(*u.watchdog))
                extras.env.push_back(kv);
        r.ready_fd.reset();
        if (u.ready.fd) {
            auto opened = notify::ReadyFd::open(
                &loop_, [this, id = s.child, inc = s.incarnation] { ready(id, inc); });
            if (!opened.ready_fd) {
                enqueue_event(core::SpawnFailed{s.child, s.incarnation, opened.error});
                return;
            }
            r.ready_fd = std::move(opened.ready_fd);
            extras.fds.emplace_back(r.ready_fd->child_end(), *u.ready.fd);
        }
        proc::SpawnResult res = spawner_.spawn(u.spawn, extras);
        if (std::string w = spawner_.take_warning(); !w.empty()) journal_.say(LogLevel::Warn, w);
        if (r.ready_fd) r.ready_fd->close_child_end();
        if (!res.ok) {
            r.ready_fd.reset();
            std::string reason = res.error ? res.error->message() : "spawn failed";
            enqueue_event(core::SpawnFailed{s.child, s.incarnation, reason});
            return;
        }
        r.inc = s.incarnation;
        r.pid = res.ok->pid;
        r.session = r.pid;
        r.main_watch.reset();
        r.last_pid = r.pid;
        r.ready_sent = false;
        r.status_text.clear();
        by_pid_[r.pid] = s.child;
        open_output(s.child, s.incarnation, *res.ok);
        enqueue_event(core::Spawned{s.child, s.incarnation, Pid{r.pid}});
    }

    void act(const core::Signal &s) {
        // Services lead their own session, so the group id is the spawned pid.
        // Never by pid once the group is gone: that pid may be reaped and reused.
        int err = proc::signal_group(s.pid.value, s.signal);
        // A main process handed over by MAINPID= may have left that group: it is signalled
        // too (only then, so that no process gets the signal twice).
        if (const Runtime &r = runtime(s.child);
            r.inc == s.incarnation && r.session == s.pid.value && r.pid > 0 && r.pid != r.session) {
            auto ids = notify::proc_ids(r.pid);
            if (ids && ids->pgrp != r.session) {
                int main_err = proc::signal_process(r.pid, s.signal);
                if (err == ESRCH) err = main_err;
            }
        }
        if (err != 0 && err != ESRCH)
            journal_.say(LogLevel::Warn, units_[s.child.value].name + ": cannot send " +
                                             sig_name(s.signal) + ": " + std::strerror(err));
    }

    void act(const core::StartProbes &a) {
        const unit::Unit &u = units_[a.child.value];
        Runtime &r = runtime(a.child);
        probe::MonitorSpecs specs{u.startup, u.liveness, u.readiness ? u.readiness : u.ready.probe};
        if (!specs.empty()) {
            probe::Monitor::Callbacks cb;
            cb.on_ready = [this, id = a.child, inc = a.incarnation](bool ok) {
                Runtime &rr = runtime(id);
                if (rr.inc != inc) return;
                feed(core::ProbeReadiness{id, inc, ok, "readiness probe failed"});
                if (ok) ready(id, inc);
            };
            cb.on_failed = [this, id = a.child, inc = a.incarnation](core::FailureCause cause,
                                                                     const std::string &detail) {
                if (runtime(id).inc != inc) return;
                feed(core::HealthFailed{id, inc, cause, "", detail});
            };
            cb.on_checked = [this, id = a.child](const std::string &, const probe::CheckResult &c) {
                if (!c.ok) ++runtime(id).probe_failures;
            };
            r.monitor = std::make_unique<probe::Monitor>(&loop_, exec_probes_, std::move(specs),
                                                         std::move(cb));
            r.monitor->start();
        }
    }
    void act(const core::StopProbes &a) { runtime(a.child).monitor.reset(); }

    void act(const core::WatchMain &a) {
        Runtime &r = runtime(a.child);
        if (r.inc != a.incarnation) return;
        move_main(a.child, a.pid.value);
    }

    void act(const core::Publish &p) {
        int pid = -1;
        if (p.record.child.value < rt_.size()) pid = rt_[p.record.child.value].last_pid;
        journal_.record(p.record, pid);
        publish_to_followers(p.record);
        if (p.record.kind == core::RecordKind::Removed && p.record.child.value < rt_.size())
            release(p.record.child);
    }

    void act(const core::Exit &e) {
        if (exit_status_) return;
        exit_status_ = e.status;
        journal_.say(LogLevel::Info, "exiting with status " + std::to_string(e.status));
        teardown();
    }

    // ---- processes ---------------------------------------------------------------------

    // ---- output, readiness, notify --------------------------------------------------------

    void open_output(ChildId id, Incarnation inc, const proc::Spawned &sp) {
        const unit::Unit &u = units_[id.value];
        Runtime &r = runtime(id);
        if (!r.log || r.log_stale) {
            r.log_stale = false;
            r.log_failed_reported = 0;
            log::PatternSet patterns;
            if (auto compiled = log::PatternSet::compile(u.patterns))
                patterns = std::move(*compiled);
            r.log =
                std::make_unique<log::UnitLog>(u.name, u.logs, std::move(patterns),
                                               u.logs.forward ? forwarder_.get() : nullptr, seq_);
        }
        r.ready_log.reset();
        if (u.ready.log) r.ready_log = log::Regex::compile(*u.ready.log);
        // A previous incarnation whose exit went on without its EOF (stop timeout) keeps
        // draining into the same sinks until its own EOF, so no line it wrote is lost.
        if (r.capture && !r.capture->eof()) r.draining.emplace_back(r.inc, std::move(r.capture));
        r.capture.reset();
        log::CaptureOptions co = log::capture_options(u.logs);
        log::Capture::Callbacks cb;
        cb.on_line = [this, id, inc](log::Stream st, std::string_view line, bool continued) {
            Runtime &rr = runtime(id);
            rr.log->line(st, line, continued, loop_now());
            if (rr.ready_log && !rr.ready_sent && rr.inc == inc && rr.ready_log->match(line))
                ready(id, inc);
        };
        cb.on_lines = [this, id, inc](log::Stream st, std::string_view run, std::size_t n) {
            Runtime &rr = runtime(id);
            rr.log->lines(st, run, n, loop_now());
            if (!rr.ready_log || rr.ready_sent || rr.inc != inc) return;
            bool hit = false;
            log::for_each_line(run,
                               [&](std::string_view l) { hit = hit || rr.ready_log->match(l); });
            if (hit) ready(id, inc);
        };
        cb.on_batch = [this, id, inc] { after_batch(id, inc); };
        cb.on_eof = [this, id, inc] {
            Runtime &rr = runtime(id);
            after_batch(id, inc);
            if (rr.inc == inc) {
                feed(core::Drained{id, inc});
                return;
            }
            // An old incarnation finished draining: drop its Capture (allowed from its own
            // callback).
            std::erase_if(rr.draining, [inc](const auto &d) { return d.first == inc; });
        };
        r.capture =
            std::make_unique<log::Capture>(&loop_, sp.stdout_fd, sp.stderr_fd, co, std::move(cb));
        if (int err = r.capture->start(); err != 0)
            journal_.say(LogLevel::Error, u.name + ": cannot read its output: " + uv_strerror(err));
        if (forwarder_ && forwarder_->congested() && u.logs.forward) r.capture->pause();
    }

    void after_batch(ChildId id, Incarnation inc) {
        Runtime &r = runtime(id);
        if (!r.log) return;
        TimePoint t = now();
        std::vector<log::PatternHit> hits;
        for (const log::PatternHit &h : r.log->flush(t))
            hits.push_back(h);
        push_log_followers(id);
        report_log_failures(id);
        const unit::Unit &u = units_[id.value];
        for (const log::PatternHit &h : hits) {
            if (r.inc != inc || h.index >= u.patterns.size()) continue;
            static constexpr core::PatternAction actions[] = {
                core::PatternAction::Restart, core::PatternAction::Stop,
                core::PatternAction::Unhealthy, core::PatternAction::Event};
            feed(core::PatternFired{id, inc, actions[static_cast<std::size_t>(h.action)],
                                    u.patterns[h.index].match, h.line});
        }
    }

    // Lines a sink could not write (disk full, a vanished stdout) are counted by the UnitLog;
    // the count goes into the history when it first grows and then each time it doubles, so a
    // full disk is reported without a record per line.
    void report_log_failures(ChildId id) {
        Runtime &r = runtime(id);
        log::UnitLogCounters c = r.log->counters();
        std::uint64_t failed = c.lines_failed + c.forward_failed;
        if (failed <= r.log_failed_reported ||
            (r.log_failed_reported != 0 && failed < 2 * r.log_failed_reported))
            return;
        r.log_failed_reported = failed;
        std::string msg = std::to_string(failed) + " output lines could not be written";
        if (const log::RotatingFile *f = r.log->file(); f && f->last_error() != 0)
            msg += std::string(" to ") + units_[id.value].logs.file.value_or("its log file") +
                   ": " + std::strerror(f->last_error());
        note(id, msg);
    }

    // A fact worth recording that is not a decision of the core (a pattern with action
    // "event"): it goes into the core's history, so `vigilctl events` shows it.
    void note(ChildId id, const std::string &message) {
        std::vector<core::Action> out;
        core_.note(id, core::Cause::None, message, now(), out);
        execute(out);
    }

    void ready(ChildId id, Incarnation inc) {
        Runtime &r = runtime(id);
        if (r.inc != inc || r.ready_sent) return;
        r.ready_sent = true;
        feed(core::BecameReady{id, inc});
    }

    // The notify sockets' folder: a sibling of the control socket's (/run/vigil/control.sock:
    // /run/vigil-notify), not a folder inside it: that one is 0700, so a service running as
    // another user could not reach its socket there.
    static std::string notify_dir_for(const std::string &control_socket) {
        std::error_code ec;
        std::filesystem::path sock = std::filesystem::absolute(control_socket, ec);
        if (ec) sock = control_socket;
        std::string dir = sock.lexically_normal().parent_path().string();
        if (dir.empty() || dir == "/") return "/vigil-notify";
        return dir + "-notify";
    }

    bool open_notify(ChildId id) {
        Runtime &r = runtime(id);
        if (r.notify) return true;
        if (!notify_dir_ready_) {
            if (std::string err = notify::prepare_socket_dir(notify_dir_); !err.empty()) {
                journal_.say(LogLevel::Error, units_[id.value].name + ": " + err);
                return false;
            }
            notify_dir_ready_ = true;
        }
        notify::NotifySocket::Callbacks cb;
        cb.owns = [this, id](int pid) {
            const Runtime &rr = runtime(id);
            return rr.pid > 0 && (pid == rr.pid || notify::in_service(pid, rr.session));
        };
        cb.message = [this, id](const notify::Message &m, int) { on_notify(id, m); };
        cb.refused = [this, id](int pid, const std::string &why) {
            journal_.say(LogLevel::Warn, units_[id.value].name +
                                             ": refused a notification from pid " +
                                             std::to_string(pid) + ": " + why);
        };
        auto opened = notify::NotifySocket::open(
            &loop_, notify::socket_path(notify_dir_, units_[id.value].name), std::move(cb));
        if (!opened.socket) {
            journal_.say(LogLevel::Error, units_[id.value].name + ": " + opened.error);
            return false;
        }
        r.notify = std::move(opened.socket);
        return true;
    }

    void on_notify(ChildId id, const notify::Message &m) {
        Runtime &r = runtime(id);
        if (r.pid <= 0) return;
        const Incarnation inc = r.inc;
        // Before READY=1, as systemd does: "READY=1\nMAINPID=N" makes N the main process of
        // a service that is then ready.
        if (m.main_pid)
            feed(core::MainPidReported{id, inc, Pid{*m.main_pid},
                                       notify::main_pid_refusal(*m.main_pid, r.session)});
        if (m.status) feed(core::StatusText{id, inc, m.status->substr(0, 512)});
        if (m.watchdog) feed(core::WatchdogPing{id, inc});
        if (m.watchdog_usec)
            feed(core::WatchdogInterval{
                id, inc,
                Duration{static_cast<std::int64_t>(
                    std::min<std::uint64_t>(*m.watchdog_usec, 1ULL << 50) / 1000)}});
        if (m.ready) ready(id, inc);
        if (m.stopping) feed(core::StoppingReported{id, inc});
        if (m.watchdog_trigger)
            feed(core::HealthFailed{id, inc, core::FailureCause::Watchdog, "",
                                    "the service sent WATCHDOG=trigger"});
    }

    // MAINPID=: `pid` becomes the main process if it belongs to the service (the sender, a
    // process of the service, was checked already). The spawned process's end is then no
    // longer the service's end (on_sigchld); `pid`'s is, seen through SIGCHLD once it is
    // vigild's child (when its parent exits, vigild being PID 1 or a subreaper), and through a
    // pidfd until then.
    void move_main(ChildId id, int pid) {
        Runtime &r = runtime(id);
        const std::string &name = units_[id.value].name;
        // A main process handed over earlier is no longer tracked (the spawned process stays
        // in by_pid_ until it is reaped, so that its exit is recognised).
        if (r.pid != r.session) by_pid_.erase(r.pid);
        r.main_watch.reset();
        by_pid_[pid] = id;
        r.pid = pid;
        r.last_pid = pid;
        auto ids = notify::proc_ids(pid);
        if (ids && ids->ppid == ::getpid()) return; // SIGCHLD will tell its end
        auto opened = notify::ProcessWatch::open(
            &loop_, pid, [this, id, inc = r.inc, pid] { main_watch_fired(id, inc, pid); });
        if (opened.watch)
            r.main_watch = std::move(opened.watch);
        else
            journal_.say(LogLevel::Warn, name + ": " + opened.error + "; the end of pid " +
                                             std::to_string(pid) +
                                             " is seen only once it is vigild's child");
    }

    // The pidfd of a main process handed over by MAINPID= says it has ended.
    void main_watch_fired(ChildId id, Incarnation inc, int pid) {
        Runtime &r = runtime(id);
        if (r.inc != inc || r.pid != pid) return;
        r.main_watch.reset(); // allowed from its own callback
        // vigild's child after all (its parent exited first): SIGCHLD brings its status.
        if (auto ids = notify::proc_ids(pid); ids && ids->ppid == ::getpid()) return;
        std::optional<int> wstatus = notify::ended_status(pid);
        if (!wstatus)
            journal_.say(LogLevel::Warn, units_[id.value].name + ": main process " +
                                             std::to_string(pid) +
                                             " ended, reaped by its parent: its exit status is "
                                             "unknown and taken as 0");
        by_pid_.erase(pid);
        feed(core::Exited{id, inc, Pid{pid}, proc::decode_wait_status(wstatus.value_or(0))});
    }

    void set_congested(bool congested) {
        for (std::size_t i = 0; i < rt_.size(); ++i) {
            Runtime &r = rt_[i];
            if (!units_[i].logs.forward) continue;
            auto apply = [congested](log::Capture &c) {
                if (congested)
                    c.pause();
                else
                    c.resume();
            };
            if (r.capture) apply(*r.capture);
            for (auto &d : r.draining)
                apply(*d.second);
        }
    }

    void on_sigchld() {
        for (const proc::Reaped &r : proc::reap_all()) {
            auto it = by_pid_.find(r.pid);
            if (it == by_pid_.end()) {
                if (!exec_probes_.on_reaped(r.pid, r.wstatus)) ++orphans_reaped_;
                continue;
            }
            ChildId id = it->second;
            by_pid_.erase(it);
            Runtime &rt = runtime(id);
            // A MAINPID= sent just before this exit may still wait in the socket: read it now.
            if (rt.notify) rt.notify->receive_now();
            const Incarnation inc = rt.inc;
            if (r.pid == rt.pid) {
                rt.main_watch.reset();
                rt.pid = -1;
            }
            feed(core::Exited{id, inc, Pid{r.pid}, proc::decode_wait_status(r.wstatus)});
            if (core_.status(id).removed && !core_.status(id).pid) release(id);
        }
    }

    // Flushes a service's log and closes its probes, readiness and notify ends, main-process
    // watch and pipes. Its drain timer is left to the caller (release() and teardown() close
    // it differently).
    void close_runtime(Runtime &r) {
        if (r.log) r.log->flush(now());
        r.monitor.reset();
        r.ready_fd.reset();
        r.notify.reset();
        r.main_watch.reset();
        if (r.capture) r.capture->close(nullptr);
        r.capture.reset();
        for (auto &d : r.draining)
            d.second->close(nullptr);
        r.draining.clear();
    }

    // A child whose spec is gone (a temporary child that ended, a unit removed by reload) keeps
    // no descriptor or buffer: its ChildId is never reused, so whatever its Runtime held would
    // leak. A temporary child keeps its Unit, which a restart of its supervisor needs.
    void release(ChildId id) {
        Runtime &r = runtime(id);
        if (core_.status(id).pid) return; // the end of its run comes back here
        close_runtime(r);
        r.log.reset();
        core_.forget(id);
        // A temporary child that ended comes back when its supervisor restarts: its unit stays.
        // A unit removed by reload needs nothing any more but its name (for late log lines).
        if (!core_.status(id).revivable) {
            unit::Unit husk;
            husk.name = std::move(units_[id.value].name);
            units_[id.value] = std::move(husk);
        }
        std::erase_if(log_followers_, [id](const LogFollower &f) {
            if (f.child != id) return false;
            if (auto s = f.session.lock()) s->end(f.id); // the unit is gone: end the stream
            return true;
        });
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
            command(core::Command{core::CommandKind::Shutdown, root_id, 0, sig_name(sig)});
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
        core::ReconfigureResult r = apply_reload(std::move(next));
        for (const std::string &e : r.errors)
            journal_.say(LogLevel::Error, e);
        if (!r.errors.empty())
            journal_.say(LogLevel::Error,
                         "reload (" + who + ") refused; the running configuration is kept");
    }

    core::ReconfigureResult apply_reload(unit::LoadResult next) {
        core::TreeSpec tree = core_tree(std::move(next.tree), next.units);
        std::map<std::string, unit::Unit> by_name;
        for (auto &u : next.units)
            by_name.emplace(u.name, std::move(u));
        std::vector<std::uint64_t> fingerprints;
        for (std::uint32_t i = 0; i < core_.size(); ++i)
            fingerprints.push_back(core_.spec(ChildId{i}).fingerprint);
        std::vector<core::Action> out;
        core::ReconfigureResult res = core_.reconfigure(std::move(tree), now(), out);
        if (!res.errors.empty()) return res; // nothing changed
        // ChildIds of kept children stay valid and new ones are appended: realign the shell's
        // per-child tables by name. A removed unit keeps its old Unit until it has stopped.
        units_.resize(core_.size());
        rt_.resize(core_.size());
        for (std::uint32_t i = 0; i < core_.size(); ++i) {
            auto it = by_name.find(std::string(core_.spec(ChildId{i}).name));
            if (it == by_name.end()) continue;
            // The old incarnation's output still goes to the old sinks; the next spawn gets
            // sinks and patterns built from the new unit.
            if (rt_[i].log &&
                (i >= fingerprints.size() || fingerprints[i] != core_.spec(ChildId{i}).fingerprint))
                rt_[i].log_stale = true;
            units_[i] = it->second;
            give_default_limits(units_[i]);
        }
        execute(out);
        return res;
    }

    void reopen_logs() {
        for (std::size_t i = 0; i < rt_.size(); ++i)
            if (rt_[i].log)
                if (int err = rt_[i].log->reopen())
                    journal_.say(LogLevel::Error,
                                 units_[i].name +
                                     ": cannot reopen its log file: " + std::strerror(err));
    }

    void dump_status() {
        TimePoint t = now();
        for (std::uint32_t i = 1; i < core_.size(); ++i) {
            core::ChildStatus s = core_.status(ChildId{i});
            if (s.removed) continue;
            std::string line = std::string(s.name) + ": " + core::to_string(s.state);
            if (s.main_pid) line += " pid " + std::to_string(s.main_pid->value);
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

    // Closes every handle so uv_run returns; objects that own handles are destroyed here, while
    // the loop still runs their close callbacks.
    void teardown() {
        event_followers_.clear();
        log_followers_.clear();
        if (ctl_) ctl_->close();
        http_.reset();
        for (Runtime &r : rt_) {
            close_runtime(r);
        }
        if (forwarder_) {
            forwarder_->flush_blocking(Duration{5000});
            forwarder_->close(nullptr);
        }
        uv_timer_stop(&timer_);
        uv_close(reinterpret_cast<uv_handle_t *>(&timer_), nullptr);
        uv_idle_stop(&resume_);
        uv_close(reinterpret_cast<uv_handle_t *>(&resume_), nullptr);
        for (uv_signal_t *h : signals_)
            uv_close(reinterpret_cast<uv_handle_t *>(h),
                     [](uv_handle_t *hh) { delete reinterpret_cast<uv_signal_t *>(hh); });
        signals_.clear();
    }

    // ---- HTTP endpoint -------------------------------------------------------------------

    bool start_http() {
        if (!opts_.http) return true;
        auto addr = http::parse_listen_address(*opts_.http);
        if (!addr) {
            journal_.say(LogLevel::Error, "--http " + *opts_.http +
                                              ": expected HOST:PORT, e.g. "
                                              "127.0.0.1:9100");
            return false;
        }
        http::Handlers h;
        h.snapshot = [this] { return snapshot(); };
        h.status_json = [this] {
            std::vector<ChildId> ids;
            for (std::uint32_t i = 1; i < core_.size(); ++i)
                if (!core_.status(ChildId{i}).removed) ids.push_back(ChildId{i});
            return status_json(ids).dump();
        };
        auto opened = http::Server::listen(&loop_, addr->first, addr->second, {}, std::move(h));
        if (!opened.server) {
            journal_.say(LogLevel::Error, opened.error);
            return false;
        }
        http_ = std::move(opened.server);
        return true;
    }

    // The status answer of `vigilctl status` and of GET /status: the core's view plus what only
    // the shell knows, the output lines its sinks could not write (issue 6 §4: counted and
    // reported, never silently lost).
    ctl::Json status_json(const std::vector<ChildId> &ids) {
        ctl::Json result = ctl::status_result_json(core_, ids, now());
        for (std::size_t i = 0; i < ids.size() && i < result["units"].size(); ++i) {
            const Runtime &r = runtime(ids[i]);
            log::UnitLogCounters c = r.log ? r.log->counters() : log::UnitLogCounters{};
            result["units"][i]["log_lines_failed"] = c.lines_failed + c.forward_failed;
        }
        return result;
    }

    http::Snapshot snapshot() {
        http::Snapshot snap;
        snap.daemon.version = VIGIL_VERSION;
        snap.daemon.rss_bytes = http::self_rss_bytes();
        snap.daemon.open_fds = http::self_open_fds();
        TimePoint t = now();
        for (std::uint32_t i = 1; i < core_.size(); ++i) {
            core::ChildStatus st = core_.status(ChildId{i});
            if (st.removed) continue;
            const Runtime &r = rt_[i];
            http::UnitFigures f;
            f.name = std::string(st.name);
            f.state = core::to_string(st.state);
            f.want_up = st.goal == core::Goal::Up;
            f.up = st.state == core::ChildState::Running;
            f.ready = st.ready;
            f.restarts_total = st.restarts;
            if (st.last_exit) f.last_exit_code = st.last_exit->shell_code();
            f.probe_failures_total = r.probe_failures;
            if (f.up) f.uptime_seconds = static_cast<double>((t - st.since).count()) / 1000.0;
            snap.units.push_back(std::move(f));
        }
        return snap;
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
    uv_idle_t resume_{}; // continues a long action queue on the next loop iteration
    static constexpr int spawns_per_turn = 64;
    std::vector<uv_signal_t *> signals_;
    std::deque<core::Action> queue_;
    bool executing_ = false;
    std::optional<int> exit_status_;
    std::uint64_t orphans_reaped_ = 0;
    std::string notify_dir_;
    bool notify_dir_ready_ = false; // prepared at the first notify socket
    rlimit original_nofile_{};
    proc::Spawner spawner_;
    log::SeqCounter seq_;
    std::unique_ptr<log::Forwarder> forwarder_;
    probe::ExecRegistry exec_probes_;
    std::unique_ptr<http::Server> http_;

    // ---- control socket ----------------------------------------------------------------

    struct Follower {
        std::weak_ptr<ctl::Responder> session;
        ctl::Json id;
        std::optional<ChildId> child; // events of one unit only
    };
    struct LogFollower {
        std::weak_ptr<ctl::Responder> session;
        ctl::Json id;
        ChildId child;
        std::uint64_t last_seq = 0;
    };
    std::unique_ptr<ctl::Server> ctl_;
    std::vector<Follower> event_followers_;
    std::vector<LogFollower> log_followers_;

    bool start_control() {
        ctl::ServerOptions so;
        so.path = opts_.socket;
        if (opts_.socket_group) {
            std::string err;
            so.socket_group = ctl::lookup_group(*opts_.socket_group, &err);
            if (!so.socket_group) {
                journal_.say(LogLevel::Error, "--socket-group: " + err);
                return false;
            }
        }
        so.log = [this](std::string_view line) { journal_.say(LogLevel::Warn, line); };
        ctl_ = std::make_unique<ctl::Server>(
            &loop_, std::move(so),
            [this](const ctl::ResponderPtr &s, const ctl::Request &q) { on_request(s, q); });
        std::string message;
        if (int err = ctl_->listen(&message); err != 0) {
            journal_.say(LogLevel::Error, message + "; not starting (use --socket to choose "
                                                    "another path)");
            ctl_.reset();
            return false;
        }
        return true;
    }

    // One (monotonic, wall) pair taken at start-up converts every record's time, so a record
    // shows the same wall time in every answer (two clock reads per answer drifted by a
    // millisecond from one `vigilctl events` to the next).
    TimePoint mono0_{};
    std::int64_t wall0_ = 0;

    std::int64_t wall_ms() const {
        timespec ts{};
        ::clock_gettime(CLOCK_REALTIME, &ts);
        return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
    }

    void publish_to_followers(const core::Record &r) {
        if (event_followers_.empty()) return;
        ctl::Json item = ctl::record_json(r, mono0_, wall0_);
        std::erase_if(event_followers_, [&](const Follower &f) {
            auto s = f.session.lock();
            if (!s || !s->open()) return true;
            if (f.child && *f.child != r.child) return false;
            return !s->stream(f.id, item);
        });
    }

    std::vector<ChildId> targets(const ctl::ResponderPtr &s, const ctl::Request &q, ctl::Expand e,
                                 bool *failed) {
        std::string err;
        std::vector<ChildId> ids = ctl::resolve_targets(core_, q.units, &err, e);
        *failed = !err.empty();
        if (*failed) s->error(q.id, ctl::ErrorCode::NotFound, err);
        return ids;
    }

    void on_request(const ctl::ResponderPtr &s, const ctl::Request &q) {
        using ctl::Cmd;
        bool failed = false;
        switch (q.cmd) {
        case Cmd::Version:
            s->reply(q.id, {{"server", VIGIL_VERSION},
                            {"protocol", ctl::protocol_version},
                            {"version", VIGIL_VERSION},
                            {"pid", ::getpid()},
                            {"units", core_.size() - 1},
                            {"orphans_reaped", orphans_reaped_}});
            return;
        case Cmd::Status: {
            auto ids = targets(s, q, ctl::Expand::Subtree, &failed);
            if (!failed) s->reply(q.id, status_json(ids));
            return;
        }
        case Cmd::Tree:
            s->reply(q.id, ctl::tree_json(core_, now()));
            return;
        case Cmd::Start:
        case Cmd::Stop:
        case Cmd::Restart:
        case Cmd::Signal: {
            if (exit_status_) {
                s->error(q.id, ctl::ErrorCode::ShuttingDown, "vigild is exiting");
                return;
            }
            // start covers a supervisor's subtree, so `start app` also starts the children
            // that were stopped one by one (running ones answer "already running").
            ctl::Expand expand = q.cmd == Cmd::Signal  ? ctl::Expand::Services
                                 : q.cmd == Cmd::Start ? ctl::Expand::Subtree
                                                       : ctl::Expand::Named;
            auto ids = targets(s, q, expand, &failed);
            if (failed) return;
            core::CommandKind kind = q.cmd == Cmd::Start     ? core::CommandKind::Start
                                     : q.cmd == Cmd::Stop    ? core::CommandKind::Stop
                                     : q.cmd == Cmd::Restart ? core::CommandKind::Restart
                                                             : core::CommandKind::Signal;
            ctl::Json results = ctl::Json::array();
            for (ChildId id : ids) {
                core::CommandResult r =
                    command(core::Command{kind, id, q.signal, "vigilctl (" + s->who() + ")"});
                results.push_back(ctl::command_result_json(core_.spec(id).name, r));
            }
            s->reply(q.id, {{"results", std::move(results)}});
            return;
        }
        case Cmd::Reload: {
            unit::LoadResult next = unit::load_dir(opts_.units);
            if (!next.ok()) {
                std::vector<std::string> diags;
                for (const auto &d : next.diagnostics)
                    diags.push_back(unit::format(d));
                s->error(q.id, ctl::ErrorCode::Invalid,
                         std::to_string(diags.size()) +
                             " problems in the unit files; the running configuration is kept",
                         ctl::reload_json({}, diags));
                return;
            }
            core::ReconfigureResult r = apply_reload(std::move(next));
            if (!r.errors.empty()) {
                s->error(q.id, ctl::ErrorCode::Invalid,
                         std::to_string(r.errors.size()) +
                             " problems in the new tree; the running configuration is kept",
                         ctl::reload_json({}, r.errors));
                return;
            }
            s->reply(q.id, ctl::reload_json(r, {}));
            return;
        }
        case Cmd::Events: {
            std::optional<ChildId> child;
            if (!q.unit.empty()) {
                child = core_.find(q.unit);
                if (!child) {
                    s->error(q.id, ctl::ErrorCode::NotFound, "no unit named '" + q.unit + "'");
                    return;
                }
            }
            for (const core::Record &r : core_.history(child, q.lines.value_or(50)))
                s->stream(q.id, ctl::record_json(r, mono0_, wall0_));
            if (q.follow) {
                event_followers_.push_back({s, q.id, child});
                drop_followers_on_close(s);
            } else
                s->end(q.id);
            return;
        }
        case Cmd::Logs:
            on_logs(s, q);
            return;
        case Cmd::Shutdown:
            s->reply(q.id, {{"shutting_down", true}});
            command(core::Command{core::CommandKind::Shutdown, root_id, 0,
                                  "vigilctl (" + s->who() + ")"});
            return;
        }
        s->error(q.id, ctl::ErrorCode::UnknownCommand, "unknown command");
    }

    static ctl::Json log_json(const log::RingLine &l) {
        return {{"seq", l.seq},
                {"time", l.wall},
                {"stream", l.stream == log::Stream::Stderr ? "stderr" : "stdout"},
                {"line", std::string(l.text)},
                {"continued", l.continued}};
    }

    void on_logs(const ctl::ResponderPtr &s, const ctl::Request &q) {
        std::optional<ChildId> id = core_.find(q.unit);
        if (!id || core_.status(*id).removed) {
            s->error(q.id, ctl::ErrorCode::NotFound, "no unit named '" + q.unit + "'");
            return;
        }
        Runtime &r = runtime(*id);
        if (q.reopen) {
            int err = r.log ? r.log->reopen() : 0;
            if (err != 0)
                s->error(q.id, ctl::ErrorCode::Internal,
                         "cannot reopen the log file of " + q.unit + ": " + std::strerror(err));
            else
                s->reply(q.id, {{"reopened", q.unit}});
            return;
        }
        std::uint64_t last = 0;
        if (r.log) {
            for (const log::RingLine &l : r.log->ring().last(q.lines.value_or(100))) {
                s->stream(q.id, log_json(l));
                last = l.seq;
            }
            if (last == 0) last = r.log->ring().last_seq();
        }
        if (q.follow) {
            log_followers_.push_back({s, q.id, *id, last});
            drop_followers_on_close(s);
        } else
            s->end(q.id);
    }

    // Followers are dropped as soon as their connection closes, not at the next item.
    void drop_followers_on_close(const ctl::ResponderPtr &s) {
        s->on_close([this, raw = s.get()] {
            auto gone = [raw](const auto &f) {
                auto p = f.session.lock();
                return !p || p.get() == raw;
            };
            std::erase_if(event_followers_, gone);
            std::erase_if(log_followers_, gone);
        });
    }

    void push_log_followers(ChildId id) {
        if (log_followers_.empty()) return;
        const Runtime &r = runtime(id);
        std::erase_if(log_followers_, [&](LogFollower &f) {
            auto s = f.session.lock();
            if (!s || !s->open()) return true;
            if (f.child != id || !r.log) return false;
            for (const log::RingLine &l : r.log->ring().after(f.last_seq)) {
                if (!s->stream(f.id, log_json(l))) return true;
                f.last_seq = l.seq;
            }
            return false;
        });
    }
};

} // namespace

int run_shell(const Options &opts, unit::LoadResult loaded) {
    Shell shell(opts, std::move(loaded));
    return shell.run();
}

} // namespace vigil::daemon

// spawning.cpp: the shell's processes. A Spawn goes to the OS asynchronously and its answer
// becomes Spawned or SpawnFailed; a Signal reaches everything the incarnation consists of
// (its cgroup, else its process group, whose id is the pid of vigild's unreaped child or of a
// group that still has members; a main process that left it through a pidfd), never through a
// pid that may have been reaped and reused; MAINPID= names a process to watch; reaped pids are
// looked up in the process table and become Exited.
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>

#include "shell.hpp"
#include "vigil/core/names.hpp"
#include "vigil/notify/notify_socket.hpp"
#include "vigil/proc/exit.hpp"

namespace vigil::daemon {

Run *Shell::find_run(ChildId id, Incarnation inc) {
    if (id.value >= rt_.size()) return nullptr;
    UnitRuntime &r = rt_[id.value];
    if (r.run && r.run->incarnation == inc) return r.run.get();
    for (auto &p : r.past)
        if (p->incarnation == inc) return p.get();
    return nullptr;
}

void Shell::close_run(Run &run) {
    if (run.main_pidfd >= 0) os_.close_fd(run.main_pidfd);
    run.main_pidfd = -1;
    run.output.reset();
    run.ready_fd.reset();
    run.probes.reset();
    run.main_watch.reset();
}

// The current run makes room for a new incarnation: kept in `past` while its pipes are open
// (its output still comes), closed otherwise.
void Shell::retire(ChildId id) {
    UnitRuntime &r = runtime(id);
    if (!r.run) return;
    std::unique_ptr<Run> old = std::move(r.run);
    old->probes.reset();
    old->ready_fd.reset();
    if (old->output && !old->output->eof()) {
        r.past.push_back(std::move(old));
        return;
    }
    close_run(*old);
}

void Shell::act(const core::Spawn &a) {
    const ChildId id = a.child;
    retire(id);
    UnitRuntime &r = runtime(id);
    r.run = std::make_unique<Run>();
    r.run->incarnation = a.incarnation;
    const unit::Unit &u = units_[id.value];
    if (u.ready.log) r.run->ready_log = log::Regex::compile(*u.ready.log);
    ensure_log(id);
    proc::SpawnExtras extras;
    std::string error;
    if (!prepare_extras(id, *r.run, extras, error)) {
        r.run.reset();
        feed(core::SpawnFailed{id, a.incarnation, error});
        return;
    }
    const int procs_fd = extras.cgroup_procs_fd;
    os_.spawn(u.spawn, std::move(extras), [this, id, inc = a.incarnation](proc::SpawnCompletion c) {
        on_spawned(id, inc, std::move(c));
    });
    if (procs_fd >= 0) os_.close_fd(procs_fd);
    if (r.run && r.run->ready_fd) r.run->ready_fd->close_child_end();
}

// The per-spawn plumbing: the service's name, its notify socket and watchdog interval, its
// ready fd, its cgroup.
bool Shell::prepare_extras(ChildId id, Run &run, proc::SpawnExtras &extras, std::string &error) {
    const unit::Unit &u = units_[id.value];
    UnitRuntime &r = runtime(id);
    extras.env.emplace_back("VIGIL_UNIT", u.name);
    if (!add_listen_extras(u, extras, error)) return false;
    extras.merge_stderr = u.logs.merge_stderr; // one pipe: stderr_fd is then -1
    if (u.ready.notify || u.watchdog) {
        if (!open_notify(id, error)) return false;
        extras.env.emplace_back("NOTIFY_SOCKET", r.notify->path());
    }
    if (u.watchdog)
        for (auto &kv : notify::watchdog_env(*u.watchdog))
            extras.env.push_back(kv);
    if (u.ready.fd) {
        const Incarnation inc = run.incarnation;
        run.ready_fd = os_.open_ready_fd([this, id, inc] { became_ready(id, inc); }, &error);
        if (!run.ready_fd) return false;
        extras.fds.emplace_back(run.ready_fd->child_end(), *u.ready.fd);
    }
    if (!r.cgroup) {
        std::string why;
        r.cgroup_released = false;
        r.cgroup = os_.make_cgroup(u.name, &why);
        if (!why.empty())
            journal_.limited("cgroup", LogLevel::Warn,
                             u.name + ": no cgroup (" + why +
                                 "); a process that leaves its session escapes a stop",
                             os_.loop_time());
    }
    if (r.cgroup) extras.cgroup_procs_fd = r.cgroup->open_procs();
    return true;
}

void Shell::on_spawned(ChildId id, Incarnation inc, proc::SpawnCompletion c) {
    Run *run = exit_status_ ? nullptr : find_run(id, inc);
    if (!run || !c.result.ok) {
        if (c.pidfd >= 0) os_.close_fd(c.pidfd);
        if (c.result.ok) { // nobody wants it any more (vigild is exiting)
            os_.close_fd(c.result.ok->stdout_fd);
            os_.close_fd(c.result.ok->stderr_fd);
        }
        if (run) runtime(id).run.reset();
        if (!exit_status_)
            feed(core::SpawnFailed{id, inc,
                                   c.result.error ? c.result.error->message() : "spawn failed"});
        return;
    }
    // The process is vigild's child (the spawner clones it with CLONE_PARENT): its pid, and its
    // process group's id, stay its own until vigild reaps it, so it needs no pidfd; closing this
    // one leaves a service only its output pipes in vigild.
    if (c.pidfd >= 0) os_.close_fd(c.pidfd);
    const proc::Spawned sp = *c.result.ok;
    run->pid = run->main_pid = sp.pid;
    procs_.add(sp.pid, ProcessOwner{id, inc});
    auto &groups = runtime(id).recent_groups;
    if (groups.size() == UnitRuntime::max_recent_groups) groups.erase(groups.begin());
    groups.push_back(sp.pid);
    read_output(id, *run, sp);
    feed(core::Spawned{id, inc, Pid{sp.pid}});
    replay_early(id, inc);
    // It ended before its answer came: read what it wrote, then report its end.
    if (c.reaped_wstatus) on_reaped(sp.pid, *c.reaped_wstatus);
}

// Everything the incarnation consists of: its cgroup where it has one (every process it made,
// setsid() or not), else its process group; and a main process that MAINPID= named outside that
// group, through its pidfd.
void Shell::act(const core::Signal &a) {
    Run *run = find_run(a.child, a.incarnation);
    if (!run || run->pid != a.pid.value) return;
    UnitRuntime &r = runtime(a.child);
    int err = 0;
    if (r.cgroup) {
        err = r.cgroup->signal(a.signal, a.then_cont);
    } else {
        err = os_.signal_group(run->pid, a.signal);
        if (a.then_cont) (void)os_.signal_group(run->pid, SIGCONT);
    }
    if (run->main_pid != run->pid && run->main_pidfd >= 0) {
        auto ids = os_.proc_ids(run->main_pid);
        if (!r.cgroup && (!ids || ids->pgrp != run->pid)) {
            const int main_err = os_.signal_pidfd(run->main_pidfd, a.signal);
            if (a.then_cont) (void)os_.signal_pidfd(run->main_pidfd, SIGCONT);
            if (err == ESRCH) err = main_err;
        }
    }
    if (err != 0 && err != ESRCH)
        journal_.say(LogLevel::Warn, units_[a.child.value].name + ": cannot send " +
                                         core::signal_name(a.signal) + ": " + std::strerror(err));
}

// MAINPID= made `pid` the main process: the process table learns it, and its end is watched
// through a pidfd while it is not vigild's child (SIGCHLD tells it once its parent has gone and
// it was re-parented to vigild).
void Shell::act(const core::WatchMain &a) {
    Run *run = find_run(a.child, a.incarnation);
    if (!run) return;
    if (run->main_pid != run->pid) procs_.remove(run->main_pid);
    if (run->main_pidfd >= 0) os_.close_fd(run->main_pidfd);
    run->main_watch.reset();
    const int pid = a.pid.value;
    run->main_pid = pid;
    std::string error;
    run->main_pidfd = os_.pidfd_open(pid, &error);
    procs_.add(pid, ProcessOwner{a.child, a.incarnation});
    watch_main(a.child, *run);
}

// The end of a main process that is not vigild's child is watched through a pidfd; once it is
// vigild's child (re-parented when its parent went), SIGCHLD tells it.
void Shell::watch_main(ChildId child, Run &run) {
    const int pid = run.main_pid;
    auto ids = os_.proc_ids(pid);
    if (ids && ids->ppid == os_.self_pid()) return; // SIGCHLD will tell its end
    auto ended = [this, id = child, inc = run.incarnation, pid](std::optional<int> wstatus) {
        if (!procs_.take(pid)) return; // reaped by vigild after all
        if (!wstatus)
            journal_.say(LogLevel::Warn, units_[id.value].name + ": main process " +
                                             std::to_string(pid) +
                                             " ended, reaped by its parent: its exit status is "
                                             "unknown and taken as 0");
        feed(core::Exited{id, inc, Pid{pid}, proc::decode_wait_status(wstatus.value_or(0))});
    };
    std::string error;
    run.main_watch = os_.watch_exit(pid, ended, &error);
    if (!run.main_watch)
        journal_.say(LogLevel::Warn, units_[child.value].name + ": " + error + "; the end of pid " +
                                         std::to_string(pid) +
                                         " is seen only once it is vigild's child");
}

// A reaped process that is a service's: its last output and its notifications are read first
// (a MAINPID= sent just before the exit must count), then the core hears of its end.
bool Shell::on_reaped(int pid, int wstatus) {
    const std::optional<ProcessOwner> owner = procs_.take(pid);
    if (!owner) {
        if (exec_probes_.on_reaped(pid, wstatus)) return true;
        return false;
    }
    const ChildId id = owner->child;
    Run *run = find_run(id, owner->incarnation);
    if (run) {
        const bool spawned = pid == run->pid;
        // An EOF that came before this reap waited for it to look at the cgroup
        // (output_ended()); one that the read below finds looks at once.
        const bool eof_waited = spawned && run->output && run->output->eof() && !run->drained;
        if (spawned) run->reaped = true;
        if (pid == run->main_pid) {
            run->main_watch.reset();
            UnitRuntime &r = runtime(id);
            if (r.notify && r.run.get() == run) r.notify->receive_now();
            if (run->output) run->output->read_now();
        }
        if (eof_waited) output_ended(id, owner->incarnation);
    }
    feed(core::Exited{id, owner->incarnation, Pid{pid}, proc::decode_wait_status(wstatus)});
    check_left_behind(id);
    recheck_groups();
    return true;
}

// Without a cgroup, a stop signals the incarnation's process group: a process that left it
// (setsid(), setpgid()) survives the stop unseen. So once an incarnation has ended, vigild
// looks for processes still marked as the unit's (VIGIL_UNIT) outside the groups of its recent
// incarnations, and the core keeps the list (`vigilctl status`). One scan of
// /proc runs at a time, off the loop; the units asked for meanwhile wait for the next one.
void Shell::check_left_behind(ChildId id) {
    const UnitRuntime &r = runtime(id);
    if (!r.cgroup && !r.cgroup_released) rescan_left_behind(units_[id.value].name);
}

void Shell::scan_left_behind() {
    std::vector<std::string> todo = std::move(left_behind_todo_);
    left_behind_todo_.clear();
    std::sort(todo.begin(), todo.end());
    todo.erase(std::unique(todo.begin(), todo.end()), todo.end());
    scanning_ = true;
    os_.find_processes(todo, max_left_behind_scan, [this](Os::ProcessesFound found) {
        scanning_ = false;
        if (exit_status_) return;
        for (const auto &[name, pids] : found)
            left_behind(name, pids);
        if (!left_behind_todo_.empty()) scan_left_behind();
    });
}

namespace {
// A watch that keeps the shell's count of them.
class CountedWatch final : public Running {
public:
    CountedWatch(std::unique_ptr<Running> w, std::size_t &count) : w_(std::move(w)), n_(count) {
        ++n_;
    }
    ~CountedWatch() override { --n_; }
    CountedWatch(const CountedWatch &) = delete;
    CountedWatch &operator=(const CountedWatch &) = delete;

private:
    std::unique_ptr<Running> w_;
    std::size_t &n_;
};
} // namespace

// The unit may have been removed or started again (by reload, or a restart) while /proc was
// read: processes of the run it has now are not left behind. Each one listed is watched (up to
// max_left_watches in all), so that the list loses it when it ends.
void Shell::left_behind(const std::string &name, const std::vector<int> &pids) {
    const auto id = core_.find(name);
    if (!id || id->value >= units_.size() || units_[id->value].name != name) return;
    UnitRuntime &r = runtime(*id);
    if (r.cgroup) return;
    const int main_pid = r.run ? r.run->main_pid : -1;
    core::LeftBehind ev{*id, {}};
    for (int pid : pids) {
        const auto ids = os_.proc_ids(pid);
        if (!ids || ids->state == 'Z' || procs_.find(pid) || pid == main_pid ||
            std::count(r.recent_groups.begin(), r.recent_groups.end(), ids->pgrp))
            continue;
        ev.pids.push_back(Pid{pid});
    }
    feed(ev);
    r.left_watches.clear();
    for (Pid p : core_.status(*id).left_behind) {
        if (left_watch_count_ >= max_left_watches) break;
        auto w = os_.watch_exit(
            p.value, [this, name](std::optional<int>) { rescan_left_behind(name); }, nullptr);
        if (w)
            r.left_watches.push_back(
                std::make_unique<CountedWatch>(std::move(w), left_watch_count_));
    }
}

void Shell::rescan_left_behind(const std::string &name) {
    if (exit_status_) return;
    left_behind_todo_.push_back(name);
    if (!scanning_) scan_left_behind();
}

void Shell::orphan_reaped() {
    ++orphans_reaped_;
    recheck_groups();
}

} // namespace vigil::daemon

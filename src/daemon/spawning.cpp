// spawning.cpp: the shell's processes. A Spawn goes to the OS asynchronously and its answer
// becomes Spawned or SpawnFailed; a Signal reaches everything the incarnation consists of
// (cgroup, process group, a main process that left it) through pidfds, never through a pid that
// may have been reaped and reused; MAINPID= names a process to watch; reaped pids are looked up
// in the process table and become Exited.
#include <cerrno>
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
    if (run.pidfd >= 0) os_.close_fd(run.pidfd);
    if (run.main_pidfd >= 0) os_.close_fd(run.main_pidfd);
    run.pidfd = run.main_pidfd = -1;
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
    const proc::Spawned sp = *c.result.ok;
    run->pid = run->main_pid = sp.pid;
    run->pidfd = c.pidfd;
    procs_.add(sp.pid, ProcessOwner{id, inc});
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
    if (r.cgroup)
        err = r.cgroup->signal(a.signal);
    else
        err = os_.signal_group(run->pid, a.signal);
    if (run->main_pid != run->pid && run->main_pidfd >= 0) {
        auto ids = os_.proc_ids(run->main_pid);
        if (!r.cgroup && (!ids || ids->pgrp != run->pid)) {
            const int main_err = os_.signal_pidfd(run->main_pidfd, a.signal);
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
    auto ids = os_.proc_ids(pid);
    if (ids && ids->ppid == os_.self_pid()) return; // SIGCHLD will tell its end
    auto ended = [this, id = a.child, inc = a.incarnation, pid](std::optional<int> wstatus) {
        if (!procs_.take(pid)) return; // reaped by vigild after all
        if (!wstatus)
            journal_.say(LogLevel::Warn, units_[id.value].name + ": main process " +
                                             std::to_string(pid) +
                                             " ended, reaped by its parent: its exit status is "
                                             "unknown and taken as 0");
        feed(core::Exited{id, inc, Pid{pid}, proc::decode_wait_status(wstatus.value_or(0))});
    };
    run->main_watch = os_.watch_exit(pid, ended, &error);
    if (!run->main_watch)
        journal_.say(LogLevel::Warn, units_[a.child.value].name + ": " + error +
                                         "; the end of pid " + std::to_string(pid) +
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
        if (pid == run->pid) {
            run->reaped = true;
            if (run->pidfd >= 0) os_.close_fd(run->pidfd);
            run->pidfd = -1;
        }
        if (pid == run->main_pid) {
            run->main_watch.reset();
            UnitRuntime &r = runtime(id);
            if (r.notify && r.run.get() == run) r.notify->receive_now();
            if (run->output) run->output->read_now();
        }
    }
    feed(core::Exited{id, owner->incarnation, Pid{pid}, proc::decode_wait_status(wstatus)});
    return true;
}

void Shell::orphan_reaped() {
    ++orphans_reaped_;
}

} // namespace vigil::daemon

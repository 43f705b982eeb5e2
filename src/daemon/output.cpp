// output.cpp: an incarnation's output. Its lines go to the unit's log (ring, file, forwarding,
// patterns) at the loop's time; a ready.log regex is tried until it first matches; after each
// batch the fired patterns become PatternFired events; EOF of both pipes, once the cgroup (or
// without one, the process group) is empty, is Drained. A log file whose writer pushes back pauses
// this unit's reading only: its service blocks on its full pipe, nothing is lost and nothing else
// waits.
#include <algorithm>

#include "shell.hpp"
#include "vigil/core/names.hpp"

namespace vigil::daemon {

namespace {

log::FileIdentity file_identity(const unit::Unit &u) {
    const auto &id = u.spawn.identity;
    if (!id || !id->set_uid) return log::FileIdentity{};
    return log::FileIdentity::user(id->uid, id->gid, id->groups, id->user_name);
}

log::PatternSet compile_patterns(const unit::Unit &u) {
    // The loader compiled every pattern already: a failure here is impossible in practice.
    auto compiled = log::PatternSet::compile(u.patterns);
    return compiled ? std::move(*compiled) : log::PatternSet{};
}

} // namespace

// The unit's log is made at its first spawn and kept across incarnations; after a reload that
// changed the unit it is reconfigured (the ring keeps its lines; the file is reopened only if
// its settings changed).
void Shell::ensure_log(ChildId id) {
    UnitRuntime &r = runtime(id);
    const unit::Unit &u = units_[id.value];
    if (r.log && !r.log_stale) return;
    if (r.log) {
        r.log->reconfigure(u.logs, file_identity(u), compile_patterns(u), os_.loop_time());
    } else {
        log::UnitLogSinks sinks{u.logs.forward ? os_.forwarder() : nullptr, os_.file_sinks()};
        r.log = std::make_unique<log::UnitLog>(u.name, u.logs, file_identity(u),
                                               compile_patterns(u), std::move(sinks), seq_);
    }
    r.log_stale = false;
    log::FileSinkEvents events;
    events.on_pressure = [this, id](bool congested) { file_pressure(id, congested); };
    events.on_failure = [this, id] { report_log_failures(id); };
    r.log->set_file_events(std::move(events));
}

void Shell::read_output(ChildId id, Run &run, const proc::Spawned &sp) {
    const unit::Unit &u = units_[id.value];
    run.output = os_.read_output(sp.stdout_fd, sp.stderr_fd, log::capture_options(u.logs),
                                 output_callbacks(id, run.incarnation));
    if (runtime(id).file_congested) run.output->pause();
}

log::Capture::Callbacks Shell::output_callbacks(ChildId id, Incarnation inc) {
    log::Capture::Callbacks cb;
    cb.on_line = [this, id, inc](log::Stream st, std::string_view line, bool continued) {
        UnitRuntime &r = runtime(id);
        if (r.log) r.log->line(st, line, continued, os_.loop_time());
        Run *cur = r.run && r.run->incarnation == inc ? r.run.get() : nullptr;
        if (cur && cur->ready_log && !cur->ready_sent && cur->ready_log->match(line))
            became_ready(id, inc);
    };
    cb.on_lines = [this, id, inc](log::Stream st, std::string_view lines, std::size_t n) {
        UnitRuntime &r = runtime(id);
        if (r.log) r.log->lines(st, lines, n, os_.loop_time());
        Run *cur = r.run && r.run->incarnation == inc ? r.run.get() : nullptr;
        if (cur && cur->ready_log && !cur->ready_sent && cur->ready_log->first_line(lines))
            became_ready(id, inc);
    };
    cb.on_batch = [this, id, inc] { after_batch(id, inc); };
    cb.on_eof = [this, id, inc] {
        after_batch(id, inc);
        output_ended(id, inc);
    };
    return cb;
}

// After each read: the file's records go to its writer, the patterns run, followers get the new
// lines, a growing count of lost lines is reported. A fired pattern counts only for the
// incarnation that wrote the line; an old one's hits are dropped.
void Shell::after_batch(ChildId id, Incarnation inc) {
    UnitRuntime &r = runtime(id);
    if (!r.log) return;
    const auto hits = r.log->flush(os_.loop_time());
    std::vector<core::PatternFired> fired;
    if (r.run && r.run->incarnation == inc)
        for (const log::PatternHit &h : hits)
            fired.push_back(core::PatternFired{id, inc, h.action, h.pattern, h.line});
    if (listener_) listener_->lines(id);
    report_log_failures(id);
    for (const core::PatternFired &f : fired)
        feed(f);
}

// Both pipes are at EOF: nothing of the incarnation can write any more, once its cgroup (if it
// has one), or else its process group, is empty too. A past incarnation's Run goes away with
// its output.
void Shell::output_ended(ChildId id, Incarnation inc) {
    UnitRuntime &r = runtime(id);
    Run *run = find_run(id, inc);
    if (!run || run->drained) return;
    if (r.run.get() != run) {
        std::erase_if(r.past, [&](const std::unique_ptr<Run> &p) {
            if (p.get() != run) return false;
            close_run(*p);
            return true;
        });
        return;
    }
    // Until vigild has reaped the spawned process, its cgroup holds it: on_reaped() comes back
    // here. By then a service of one process has left its cgroup (the kernel moves a process out
    // before it tells the parent), so one read of cgroup.events settles it, where a check made
    // at EOF would have found it populated and polled for the change.
    if (r.cgroup && !run->reaped) return;
    if (r.cgroup && !r.cgroup->empty()) {
        // Drained once the cgroup has emptied too (the callback re-checks which run is
        // current: a new incarnation may have started meanwhile).
        r.cgroup->on_empty([this, id] {
            UnitRuntime &rr = runtime(id);
            if (rr.run && !rr.run->drained && rr.run->output && rr.run->output->eof())
                output_ended(id, rr.run->incarnation);
        });
        return;
    }
    if (!r.cgroup && os_.group_alive(run->pid)) {
        // Rechecked whenever vigild reaps a process (recheck_groups()): what is left in the
        // group is reparented to vigild when its parent goes. The core's timer bounds the wait.
        if (std::find(group_waits_.begin(), group_waits_.end(), id) == group_waits_.end())
            group_waits_.push_back(id);
        return;
    }
    run->drained = true;
    // Its pipes have nothing more to give: closed now, so a service that stays down holds no
    // descriptor, and a stop of many services closes each as it ends, not all at the exit.
    run->output.reset();
    // Its cgroup, empty, is not needed again once vigild is going down: removed now (off the
    // loop), beside the other services' stops. A start after all would make a new one.
    if (going_down_ && r.cgroup) {
        r.cgroup.reset();
        r.cgroup_released = true;
    }
    feed(core::Drained{id, inc});
    check_left_behind(id);
}

// The groups of incarnations whose output ended while processes were left in them: the first
// that is now empty is drained.
void Shell::recheck_groups() {
    if (group_waits_.empty() || exit_status_) return;
    std::vector<ChildId> todo = std::move(group_waits_);
    group_waits_.clear();
    for (ChildId id : todo) {
        if (id.value >= rt_.size()) continue;
        UnitRuntime &r = runtime(id);
        if (r.run && !r.run->drained && r.run->output && r.run->output->eof())
            output_ended(id, r.run->incarnation);
    }
}

// Lines a sink could not write (disk full, a vanished file) are counted by the UnitLog; the
// count goes into the history when it first grows and then each time it doubles, so a full disk
// is reported without a record per line.
void Shell::report_log_failures(ChildId id) {
    UnitRuntime &r = runtime(id);
    if (!r.log) return;
    const log::UnitLogCounters c = r.log->counters();
    const std::uint64_t failed = c.lines_failed;
    const std::uint64_t before = r.log_failures_reported;
    if (failed <= before || (before != 0 && failed < 2 * before)) return;
    r.log_failures_reported = failed;
    std::string msg = std::to_string(failed) + " output lines could not be written";
    if (const log::FileSink *f = r.log->file()) {
        const log::FileSinkCounters fc = f->counters();
        if (!fc.last_error_text.empty()) msg += ": " + fc.last_error_text;
    }
    std::vector<core::Action> out;
    core_.note(id, core::Cause::None, msg, os_.now(), out);
    execute(out);
}

// The unit's log file pushes back (its writer is behind): stop reading this unit's pipes until
// it catches up. Its service blocks on a full pipe; no other unit waits.
void Shell::file_pressure(ChildId id, bool congested) {
    UnitRuntime &r = runtime(id);
    if (congested != r.file_congested) congestion_notice(id, congested);
    r.file_congested = congested;
    auto apply = [congested](Run &run) {
        if (!run.output) return;
        if (congested)
            run.output->pause();
        else
            run.output->resume();
    };
    if (r.run) apply(*r.run);
    for (auto &p : r.past)
        apply(*p);
}

// A log file that takes nothing for log_stall_notice (a FIFO nobody reads, a hung network file
// system) holds its service up without a word: say so then, and again when it takes output.
void Shell::congestion_notice(ChildId id, bool congested) {
    UnitRuntime &r = runtime(id);
    auto say = [this, id](std::string msg) {
        std::vector<core::Action> out;
        core_.note(id, core::Cause::None, std::move(msg), os_.now(), out);
        execute(out);
    };
    if (congested) {
        r.congested_since = os_.now();
        r.congestion_timer = os_.after(log_stall_notice, [this, id, say] {
            UnitRuntime &rr = runtime(id);
            rr.congestion_said = true;
            const log::FileSink *f = rr.log ? rr.log->file() : nullptr;
            say((f ? "its log file " + f->options().path : std::string("its log file")) +
                " has taken no output for " + core::format_duration(log_stall_notice) +
                "; the service is held up on its output until it does (a FIFO nobody reads? a "
                "file system that does not answer?)");
        });
        return;
    }
    r.congestion_timer.reset();
    if (!r.congestion_said) return;
    r.congestion_said = false;
    say("its log file takes output again, after " +
        core::format_duration(os_.now() - r.congested_since));
}

void Shell::reopen_logs() {
    for (std::size_t i = 0; i < rt_.size(); ++i) {
        if (!rt_[i].log) continue;
        const std::string name = units_[i].name;
        rt_[i].log->reopen([this, name](int err, const std::string &message) {
            if (err != 0)
                journal_.say(LogLevel::Error, name + ": cannot reopen its log file: " + message);
        });
    }
}

} // namespace vigil::daemon

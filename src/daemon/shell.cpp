// shell.cpp: the loop's side of the shell: actions in order, the one deadline, signals to
// vigild, the journal, and teardown. See shell.hpp for the parts.
#include "shell.hpp"

#include <csignal>

#include "control_api.hpp"
#include "vigil/core/names.hpp"

namespace vigil::daemon {

namespace {

// The root of `tree` without its children: the core of a shell made to adopt a state.
core::TreeSpec root_alone(const core::TreeSpec &tree) {
    core::TreeSpec t;
    t.seed = tree.seed;
    if (!tree.nodes.empty()) {
        t.nodes.push_back(tree.nodes.front());
        t.nodes.front().children.clear();
    }
    return t;
}

} // namespace

Shell::Shell(Os &os, const Options &opts, unit::LoadResult loaded)
    : Shell(os, opts, std::move(loaded.units), std::move(loaded.tree), false) {}

Shell::Shell(Os &os, const Options &opts, std::vector<unit::Unit> units, const core::TreeSpec &tree,
             Adopting)
    : Shell(os, opts, std::move(units), root_alone(tree), true) {}

Shell::Shell(Os &os, const Options &opts, std::vector<unit::Unit> units, core::TreeSpec tree,
             bool deferred)
    : os_(os), opts_(opts), journal_(opts.log_level, [&os](std::string_view l) { os.say(l); }),
      units_(std::move(units)),
      core_(deferred ? std::move(tree) : core_tree(std::move(tree), units_)) {
    core_deferred_ = deferred;
    rt_.resize(core_.size());
    for (unit::Unit &u : units_)
        give_default_limits(u, opts_);
    control_ = std::make_unique<ControlApi>(*this);
}

Shell::~Shell() {
    teardown();
}

void Shell::start() {
    if (std::string error; !bind_listen(error)) {
        journal_.say(LogLevel::Error, error);
        act(core::Exit{1});
        return;
    }
    journal_.say(LogLevel::Info,
                 "starting " + std::to_string(core_.size() - 1) + " units from " + opts_.units);
    if (manager_) manager_->start();
    std::vector<core::Action> out;
    core_.start(os_.now(), out);
    execute(out);
}

UnitRuntime &Shell::runtime(ChildId id) {
    if (id.value >= rt_.size()) rt_.resize(id.value + 1);
    return rt_[id.value];
}

const UnitRuntime *Shell::runtime_if(ChildId id) const {
    return id.value < rt_.size() ? &rt_[id.value] : nullptr;
}

// ---- actions ---------------------------------------------------------------------------

void Shell::feed(const core::Event &ev) {
    std::vector<core::Action> out;
    core_.handle(ev, os_.now(), out);
    execute(out);
}

core::CommandResult Shell::command(const core::Command &c) {
    if (c.kind == core::CommandKind::Shutdown) going_down();
    std::vector<core::Action> out;
    core::CommandResult r = core_.command(c, os_.now(), out);
    execute(out);
    return r;
}

std::vector<core::CommandResult> Shell::restart(std::span<const ChildId> ids,
                                                std::string_view who) {
    std::vector<core::Action> out;
    std::vector<core::CommandResult> r = core_.restart(ids, who, os_.now(), out);
    execute(out);
    return r;
}

core::CommandResult Shell::roll(std::string_view unit, std::optional<std::uint32_t> max_unavailable,
                                std::string_view who) {
    std::vector<core::Action> out;
    core::CommandResult r = core_.roll(unit, max_unavailable, who, os_.now(), out);
    execute(out);
    return r;
}

// Carries out actions in order. An action whose answer comes at once feeds its event, whose
// actions join the same queue: nothing recurses, and the order is the core's, but for signals:
// they wait until the queue is done or an action comes that changes which processes a run
// has (Spawn retires the run before, WatchMain moves its main process, Exit ends them all).
// What they pass is bookkeeping (records, probes), and a signal has no answer that could feed
// the core. A stop of many services then signals them all in a row: each process woken by its
// signal competes with vigild for the CPU while it exits, so the bookkeeping comes first.
void Shell::execute(std::vector<core::Action> &actions) {
    for (auto &a : actions)
        queue_.push_back(std::move(a));
    run_queue();
}

namespace {
bool changes_processes(const core::Action &a) {
    return std::holds_alternative<core::Spawn>(a) || std::holds_alternative<core::WatchMain>(a) ||
           std::holds_alternative<core::Exit>(a);
}
} // namespace

// An exception thrown by an action (the loop's guard catches it) leaves what was not done yet
// queued for the next run, and the queue running.
void Shell::run_queue() {
    if (executing_) return;
    executing_ = true;
    struct Done {
        bool &flag;
        ~Done() { flag = false; }
    } done{executing_};
    while (!queue_.empty() || !signals_.empty()) {
        if (queue_.empty() || (!signals_.empty() && changes_processes(queue_.front()))) {
            const core::Signal s = signals_.front();
            signals_.pop_front();
            act(s);
            continue;
        }
        core::Action a = std::move(queue_.front());
        queue_.pop_front();
        if (auto *s = std::get_if<core::Signal>(&a))
            signals_.push_back(*s);
        else
            carry_out(a);
    }
    executing_ = false;
    arm_deadline();
}

void Shell::carry_out(const core::Action &a) {
    std::visit([this](const auto &act) { this->act(act); }, a);
}

void Shell::arm_deadline() {
    if (exit_status_) {
        os_.arm_deadline(std::nullopt);
        return;
    }
    os_.arm_deadline(core_.next_deadline());
}

void Shell::on_deadline() {
    feed(core::DeadlineReached{});
}

void Shell::act(const core::Publish &p) {
    const core::Record &r = p.record;
    int pid = r.pid ? r.pid->value : -1;
    if (pid < 0 && r.child.value < core_.size()) {
        const core::ChildStatus s = core_.status(r.child);
        if (s.main_pid) pid = s.main_pid->value;
    }
    journal_.record(r, pid);
    if (r.kind == core::RecordKind::Unhealthy && r.cause == core::Cause::Watchdog &&
        r.child.value < rt_.size()) {
        UnitRuntime &rt = rt_[r.child.value];
        if (rt.run && r.incarnation == rt.run->incarnation) ++rt.run->watchdog_failures;
        std::string_view what = r.message;
        if (what.ends_with("; stopping")) what.remove_suffix(10);
        note_check_failure(rt, CheckSlot::Watchdog, what);
    }
    if (listener_) listener_->record(r);
    if (r.kind == core::RecordKind::Removed) release(r.child);
    if (r.child == root_id) root_record(r.kind);
}

// The root's records that tell the tree is up (the service manager hears of it), or going down
// for good (giving up, failing to start, shutting itself down all end in Exit).
void Shell::root_record(core::RecordKind kind) {
    using K = core::RecordKind;
    if (kind == K::Started) {
        if (manager_) manager_->tree_started(tree_summary(core_));
    } else if (kind == K::GaveUp || kind == K::StartFailed || kind == K::AutoShutdown) {
        going_down();
    }
}

// vigild exits once the tree has stopped: the service manager hears it, and each service's
// cgroup folder goes as the service drains (output_ended()) rather than all of them at the
// exit, where thousands of removals would wait for each other.
void Shell::going_down() {
    going_down_ = true;
    if (manager_) manager_->stopping();
}

void Shell::act(const core::Exit &e) {
    if (exit_status_) return;
    exit_status_ = e.status;
    going_down();
    journal_.say(LogLevel::Info, "exiting with status " + std::to_string(e.status));
    teardown();
    if (on_exit) on_exit(e.status);
}

// ---- signals to vigild -----------------------------------------------------------------

void Shell::on_signal(int sig) {
    switch (sig) {
    case SIGTERM:
    case SIGINT:
    case SIGQUIT:
        command(core::Command{core::CommandKind::Shutdown, root_id, 0, core::signal_name(sig)});
        return;
    case SIGHUP:
        reload("SIGHUP", [](const ReloadOutcome &) {});
        return;
    case SIGUSR2:
        reopen_logs();
        return;
    case SIGUSR1:
        dump_status();
        return;
    default:
        // SIGRTMIN+1 (not a constant): a re-exec nobody waits for; a refusal goes to the
        // journal (Shell::reexec says it).
        if (sig == SIGRTMIN + 1) reexec(core::signal_name(sig), {}, nullptr);
        return;
    }
}

void Shell::dump_status() {
    const TimePoint t = os_.now();
    for (std::uint32_t i = 1; i < core_.size(); ++i) {
        const core::ChildStatus s = core_.status(ChildId{i});
        if (s.removed) continue;
        std::string line = s.name + ": " + core::to_string(s.state);
        if (s.main_pid) line += " pid " + std::to_string(s.main_pid->value);
        line += " for " + core::format_duration(Duration{(t - s.since).count() / 1000 * 1000}) +
                ", restarts " + std::to_string(s.restarts);
        journal_.say(LogLevel::Error, line);
    }
}

// ---- the end ----------------------------------------------------------------------------

// A child whose spec is gone (a temporary child that ended, a unit removed by reload) keeps no
// descriptor or buffer once its last process is gone: whatever its runtime held would leak, and
// a unit removed by reload lends its ChildId to a child that a later reload adds (Core::forget),
// which must find nothing of it. A temporary child keeps its Unit, which a restart of its
// supervisor needs; a unit removed by reload keeps only its name (for late log lines).
void Shell::release(ChildId id) {
    if (id.value >= rt_.size() || core_.status(id).pid) return; // its end comes back here
    UnitRuntime &r = rt_[id.value];
    if (r.run) close_run(*r.run);
    r.run.reset();
    for (auto &p : r.past)
        close_run(*p);
    r.past.clear();
    r.notify.reset();
    r.cgroup.reset();
    if (r.log) r.log->flush(os_.loop_time());
    r.log.reset();
    r = UnitRuntime{}; // counters, watches: nothing of it is left for a later holder of the id
    core_.forget(id);
    if (!core_.status(id).revivable) {
        unit::Unit husk;
        husk.name = std::move(units_[id.value].name);
        units_[id.value] = std::move(husk);
    }
    if (listener_) listener_->released(id);
    sync_sockets(); // the sockets only a removed unit listed
}

// Closes every handle: the loop can end once their close callbacks have run.
void Shell::teardown() {
    if (control_) control_->close();
    for (UnitRuntime &r : rt_) {
        if (r.run) close_run(*r.run);
        r.run.reset();
        for (auto &p : r.past)
            close_run(*p);
        r.past.clear();
        if (r.log) r.log->flush(os_.loop_time());
        r.notify.reset();
        r.cgroup.reset();
        r.left_watches.clear();
    }
    if (manager_) manager_->close();
    close_sockets();
    os_.arm_deadline(std::nullopt);
}

} // namespace vigil::daemon

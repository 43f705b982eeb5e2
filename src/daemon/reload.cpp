// reload.cpp: reload. The units directory is read and parsed off the loop (NSS lookups for users
// may go to LDAP, a file system may hang); the result comes back on the loop and is applied to
// the core (which decides what to stop, start and restart) and to the shell's tables. A broken
// unit directory changes nothing: the diagnostics go to the journal and to whoever asked.
// Reloads do not overlap: one asked for while one runs is carried out after it (the files may
// have changed again), and answers everyone who asked meanwhile.
#include <map>
#include <sys/resource.h>

#include "shell.hpp"

namespace vigil::daemon {

core::TreeSpec core_tree(core::TreeSpec tree, const std::vector<unit::Unit> &units) {
    for (std::size_t i = 0; i < tree.nodes.size() && i < units.size(); ++i) {
        tree.nodes[i].watchdog = units[i].watchdog;
        tree.nodes[i].readiness_probe = units[i].readiness || units[i].ready.probe;
    }
    return tree;
}

void give_default_limits(unit::Unit &u, const Options &opts) {
    if (!opts.service_nofile) return;
    for (const proc::Limit &l : u.spawn.limits)
        if (l.resource == RLIMIT_NOFILE) return;
    u.spawn.limits.push_back(
        proc::Limit{RLIMIT_NOFILE, opts.service_nofile->first, opts.service_nofile->second});
}

void Shell::reload(std::string who, std::function<void(const ReloadOutcome &)> done) {
    reload_waiters_.push_back({std::move(who), std::move(done)});
    if (reload_running_) return;
    reload_running_ = true;
    if (manager_) manager_->reload_begun();
    std::vector<ReloadWaiter> waiters = std::move(reload_waiters_);
    reload_waiters_.clear();
    os_.load_units(opts_.units, [this, waiters = std::move(waiters)](unit::LoadResult next) {
        if (exit_status_) { // vigild is exiting: nothing to apply
            reload_running_ = false;
            return;
        }
        if (!next.ok()) {
            ReloadOutcome outcome;
            for (const auto &d : next.diagnostics)
                outcome.diagnostics.push_back(unit::format(d));
            outcome.problems = next.problems;
            finish_reload(waiters, std::move(outcome));
            return;
        }
        // The sockets the new units add are bound first (off the loop): a bind that fails
        // refuses the reload before anything changed.
        bind_for_reload(std::move(next),
                        [this, waiters](unit::LoadResult loaded, std::vector<std::string> errors) {
                            if (exit_status_) {
                                reload_running_ = false;
                                return;
                            }
                            ReloadOutcome outcome;
                            if (!errors.empty()) {
                                outcome.problems = errors.size();
                                outcome.diagnostics = std::move(errors);
                            } else {
                                outcome = apply_reload(std::move(loaded));
                            }
                            sync_sockets();
                            finish_reload(waiters, std::move(outcome));
                        });
    });
}

void Shell::finish_reload(const std::vector<ReloadWaiter> &waiters, ReloadOutcome outcome) {
    reload_running_ = false;
    std::string asked_by;
    for (const ReloadWaiter &w : waiters)
        asked_by += (asked_by.empty() ? "" : ", ") + w.who;
    for (const std::string &d : outcome.diagnostics)
        journal_.say(LogLevel::Error, d);
    if (!outcome.diagnostics.empty())
        journal_.say(LogLevel::Error, "reload (" + asked_by +
                                          ") refused: " + unit::count_problems(outcome.problems) +
                                          "; the running configuration is kept");
    for (const ReloadWaiter &w : waiters)
        if (w.done) w.done(outcome);
    if (!reload_waiters_.empty()) { // asked for while this one ran
        std::vector<ReloadWaiter> again = std::move(reload_waiters_);
        reload_waiters_.clear();
        for (ReloadWaiter &w : again)
            reload(std::move(w.who), std::move(w.done));
    } else if (manager_) {
        manager_->reload_done(tree_summary(core_));
    }
}

// ChildIds of kept children stay valid; a new child gets a new id or the id of a child removed
// earlier that the shell released (Core::forget): the shell's tables are realigned by name, and
// a child removed by reload keeps the unit it was started with until it is down. A unit whose
// fingerprint changed gets its log rebuilt at its next spawn; the old incarnation's output still
// goes to the log it had.
Shell::ReloadOutcome Shell::apply_reload(unit::LoadResult next) {
    ReloadOutcome outcome;
    core::TreeSpec tree = core_tree(std::move(next.tree), next.units);
    std::map<std::string, unit::Unit> by_name;
    for (auto &u : next.units)
        by_name.emplace(u.name, std::move(u));
    std::vector<std::uint64_t> fingerprints;
    for (std::uint32_t i = 0; i < core_.size(); ++i)
        fingerprints.push_back(core_.spec(ChildId{i}).fingerprint);
    std::vector<core::Action> out;
    outcome.result = core_.reconfigure(std::move(tree), os_.now(), out);
    if (!outcome.result.errors.empty()) {
        outcome.diagnostics = outcome.result.errors;
        outcome.problems = outcome.diagnostics.size();
        return outcome;
    }
    align_units(by_name, fingerprints);
    execute(out);
    return outcome;
}

// Each child's unit from `by_name`, by the core's ChildIds (a child removed by reload keeps
// the unit it had). A unit whose fingerprint differs from `fingerprints` (the core's before)
// gets its log rebuilt at its next spawn.
void Shell::align_units(const std::map<std::string, unit::Unit> &by_name,
                        const std::vector<std::uint64_t> &fingerprints) {
    units_.resize(core_.size());
    rt_.resize(core_.size());
    for (std::uint32_t i = 0; i < core_.size(); ++i) {
        const core::ChildStatus st = core_.status(ChildId{i});
        if (st.removed && !st.revivable) continue; // removed by reload
        auto it = by_name.find(core_.spec(ChildId{i}).name);
        if (it == by_name.end()) continue;
        if (rt_[i].log &&
            (i >= fingerprints.size() || fingerprints[i] != core_.spec(ChildId{i}).fingerprint))
            rt_[i].log_stale = true;
        units_[i] = it->second;
        give_default_limits(units_[i], opts_);
    }
}

} // namespace vigil::daemon

// reexec.cpp: vigild executes itself again (`vigilctl reexec`, SIGRTMIN+1), or a newer binary
// at the same path, and no service notices: the shell's side (uv_reexec.cpp has the OS's,
// handover.hpp the state's format).
//
// The old binary, on the loop:
//   1. refuses at once what cannot be carried: vigild exiting or shutting down, a reload or a
//      re-exec under way, units removed by a reload that are still stopping;
//   2. reads the unit files off the loop and refuses when they differ from what runs (a unit
//      added, removed or changed since the last reload): the new binary adopts the running
//      services under the units it reads, and must find the same ones (`vigilctl reload`
//      first, or put the files back);
//   3. waits until no spawn is pending (bounded), then writes the core's snapshot and the
//      shell's tables (every unit's log ring, notify socket, cgroup, incarnations with their
//      pipes and partial lines, ready fds, MAINPID= pidfds, the process table, held sockets),
//      with the units as read in step 2 and its build ID (a new binary of the same build takes
//      those units instead of reading the files: units_codec.hpp), and has the Os exec. Nothing is
//      changed on the way: if the exec fails, everything goes on as before and whoever asked hears
//      why.
// The new binary (run.cpp): adopt() checks the whole state first (the core's restore, every
// unit's name against its ChildId, every ring), then takes it; resume() restarts the probes'
// schedules (their counters start again; the core's deadlines, the watchdog's included, are
// carried as they were), tells the service manager READY=1 and answers the client.
// A binary that cannot read the state (abandon_handover) stops the services the old one ran and
// starts the tree afresh, and says so to the client and in the journal.
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "build_id.hpp"
#include "shell.hpp"
#include "vigil/ctl/protocol.hpp"
#include "vigil/proc/cgroup.hpp"

namespace vigil::daemon {

namespace {

// How long the old binary waits for spawns in flight before it refuses.
constexpr Duration spawn_wait{5000};
// A unit count in messages: at most this many names.
constexpr std::size_t max_named = 5;

std::string list_names(const std::vector<std::string> &names) {
    std::string out;
    for (std::size_t i = 0; i < names.size() && i < max_named; ++i)
        out += (i ? ", " : "") + names[i];
    if (names.size() > max_named)
        out += " and " + std::to_string(names.size() - max_named) + " more";
    return out;
}

std::int64_t monotonic_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

} // namespace

// ---- the old binary ----------------------------------------------------------------------

std::string Shell::reexec_blocker() const {
    if (exit_status_) return "vigild is exiting";
    if (core_.status(root_id).goal == core::Goal::Down) return "vigild is shutting down";
    if (reexec_running_) return "a re-exec is already under way";
    if (reload_running_) return "a reload is under way; run reexec again once it is done";
    std::vector<std::string> stopping;
    for (std::uint32_t i = 1; i < core_.size(); ++i) {
        const core::ChildStatus st = core_.status(ChildId{i});
        if (st.removed && st.state != core::ChildState::Stopped) stopping.push_back(st.name);
    }
    if (!stopping.empty())
        return "units removed by a reload are still stopping (" + list_names(stopping) +
               "); run reexec again once they are down";
    return {};
}

// What differs between the unit files now and the units that run, "" when nothing does.
std::string Shell::differs_from_running(const unit::LoadResult &next) const {
    if (!next.ok())
        return "the unit files have errors (" + unit::count_problems(next.problems) +
               "); fix them (vigild --check) and run reexec again";
    std::map<std::string, std::uint64_t> running;
    for (std::uint32_t i = 0; i < core_.size(); ++i) {
        const core::ChildStatus st = core_.status(ChildId{i});
        if (!st.removed) running.emplace(st.name, core_.spec(ChildId{i}).fingerprint);
    }
    const core::TreeSpec tree = core_tree(next.tree, next.units);
    std::vector<std::string> changed;
    for (const core::ChildSpec &n : tree.nodes) {
        auto it = running.find(n.name);
        if (it == running.end())
            changed.push_back(n.name + " (added)");
        else if (it->second != n.fingerprint)
            changed.push_back(n.name + " (changed)");
        if (it != running.end()) running.erase(it);
    }
    for (const auto &[name, fp] : running)
        changed.push_back(name + " (removed)");
    if (changed.empty()) return {};
    return "the unit files differ from the running units: " + list_names(changed) +
           "; run `vigilctl reload` first (or put the files back), then reexec";
}

void Shell::reexec(std::string who, ReexecClient client,
                   std::function<void(const std::string &)> failed) {
    if (std::string why = reexec_blocker(); !why.empty()) {
        if (failed) failed(why);
        return;
    }
    reexec_running_ = true;
    if (manager_) manager_->reload_begun();
    auto fail = [this, failed](const std::string &why) {
        reexec_running_ = false;
        journal_.say(LogLevel::Error,
                     "reexec did not happen: " + why + "; vigild goes on as before");
        if (manager_ && !exit_status_) manager_->reload_done(tree_summary(core_));
        if (failed) failed(why);
    };
    os_.load_units(opts_.units, [this, who, client, fail](unit::LoadResult next) {
        if (std::string why = differs_from_running(next); !why.empty()) return fail(why);
        auto loaded = std::make_shared<unit::LoadResult>(std::move(next));
        os_.when_spawns_idle(spawn_wait, [this, who, client, fail, loaded](bool idle) {
            if (!idle)
                return fail("spawns were still in progress after " +
                            core::format_duration(spawn_wait) + "; try again");
            reexec_running_ = false; // the blockers are checked again, this one aside
            std::string why = reexec_blocker();
            reexec_running_ = true;
            if (why.empty()) why = exec_now(who, client, std::move(*loaded));
            fail(why); // exec_now returns only when the exec did not happen
        });
    });
}

std::string Shell::exec_now(const std::string &who, const ReexecClient &client,
                            unit::LoadResult loaded) {
    Handover h;
    h.payload_version = opts_.handover_version;
    // The units as just read (the files are what runs): a new binary of this build takes them
    // as they are instead of reading and checking every file again inside the pause.
    h.build_id = own_build_id();
    h.has_loaded = !h.build_id.empty();
    if (h.has_loaded) h.loaded = std::move(loaded);
    h.requester_fd = client.fd ? client.fd() : -1;
    if (h.requester_fd >= 0) h.fds.push_back(h.requester_fd);
    h.requester_id = client.id_json;
    h.generation = generation_ + 1;
    // From here until the new binary runs, a stand-in answers what only reads (uv_standin.cpp).
    os_.begin_stand_in();
    std::string error = export_state(h);
    if (error.empty()) error = exec_exported(who, h);
    os_.end_stand_in(); // the exec did not happen: its connections come back here
    return error;
}

std::string Shell::exec_exported(const std::string &who, Handover &h) {
    journal_.say(LogLevel::Info, "re-executing " + opts_.exe + " (asked by " + who + "), " +
                                     std::to_string(h.services.size()) + " processes kept");
    // The probes stop first: an exec check in flight is killed with its process group (the
    // new binary runs it again), not left to run with nobody to time it out. Should the exec
    // fail, they go on from where they were.
    std::vector<AdoptedProbes> probes;
    for (const HandoverUnit &u : h.units)
        for (const HandoverRun &r : u.runs)
            if (r.probes)
                probes.push_back(
                    AdoptedProbes{ChildId{u.id}, Incarnation{r.incarnation}, r.probe_state});
    for (const AdoptedProbes &p : probes)
        if (Run *run = find_run(p.id, p.inc)) run->probes.reset();
    std::string error = os_.exec_self(h);
    for (const AdoptedProbes &p : probes)
        start_probes(p.id, p.inc, p.from);
    return error;
}

std::string Shell::export_state(Handover &h) {
    core::SnapshotResult snap = core_.snapshot();
    if (snap.bytes.empty()) return snap.error;
    h.core = std::move(snap.bytes);
    h.log_seq_next = seq_.next;
    h.orphans_reaped = orphans_reaped_;
    if (opts_.service_nofile) {
        h.has_service_nofile = true;
        h.service_nofile_cur = opts_.service_nofile->first;
        h.service_nofile_max = opts_.service_nofile->second;
    }
    for (std::uint32_t i = 0; i < rt_.size() && i < core_.size(); ++i)
        if (std::string err = export_unit(ChildId{i}, h); !err.empty()) return err;
    procs_.for_each([&](int pid, ProcessOwner o) {
        h.processes.push_back(HandoverProcess{pid, o.child.value, o.incarnation.value});
    });
    for (ChildId id : group_waits_)
        h.group_waits.push_back(id.value);
    for (const auto &[key, held] : held_) {
        h.held.push_back(HandoverSocket{key, held.fd});
        h.fds.push_back(held.fd);
    }
    return {};
}

HandoverRun Shell::export_run(const Run &run, Handover &h) {
    HandoverRun x;
    auto carry = [&](int fd) {
        if (fd >= 0) h.fds.push_back(fd);
        return fd;
    };
    x.incarnation = run.incarnation.value;
    x.pid = run.pid;
    x.main_pid = run.main_pid;
    x.main_pidfd = carry(run.main_pidfd);
    x.reaped = run.reaped;
    x.drained = run.drained;
    x.ready_sent = run.ready_sent;
    x.probes = run.probes != nullptr;
    if (run.probes) x.probe_state = run.probes->monitor().state();
    if (run.output) {
        x.out_fd = carry(run.output->carried_fd(log::Stream::Stdout));
        x.err_fd = carry(run.output->carried_fd(log::Stream::Stderr));
        x.out_pending = std::string(run.output->pending(log::Stream::Stdout));
        x.err_pending = std::string(run.output->pending(log::Stream::Stderr));
    }
    x.ready_fd = carry(run.ready_fd ? run.ready_fd->read_fd() : -1);
    x.watchdog_pings = run.watchdog_pings;
    x.watchdog_failures = run.watchdog_failures;
    x.watchdog_kick_ms = run.watchdog_kick.time_since_epoch().count();
    return x;
}

std::string Shell::export_unit(ChildId id, Handover &h) {
    const UnitRuntime &r = rt_[id.value];
    const core::ChildStatus st = core_.status(id);
    if (st.removed) return {}; // stopped (reexec_blocker): nothing of it is shown any more
    HandoverUnit u;
    u.id = id.value;
    u.name = st.name;
    if (r.log) {
        u.has_log = true;
        r.log->ring().snapshot(u.ring);
    }
    if (r.notify) {
        u.notify_fd = r.notify->fd();
        u.notify_path = r.notify->path();
        h.fds.push_back(u.notify_fd);
    }
    if (r.cgroup) u.cgroup = r.cgroup->dir();
    u.probe_failures = r.probe_failures;
    u.log_failures_reported = r.log_failures_reported;
    for (std::size_t s = 0; s < check_slots; ++s)
        if (const auto &f = r.last_failures[s])
            u.failures.push_back(
                HandoverFailure{static_cast<std::uint8_t>(s), f->wall_ms, f->message});
    u.recent_groups.assign(r.recent_groups.begin(), r.recent_groups.end());
    auto add = [&](const Run &run) -> std::string {
        if (run.pid <= 0) return u.name + ": a spawn is still in progress; try again";
        u.runs.push_back(export_run(run, h));
        if (!run.reaped) h.services.push_back(HandoverService{run.pid, u.cgroup});
        return {};
    };
    if (r.run) {
        u.has_run = true;
        if (std::string err = add(*r.run); !err.empty()) return err;
    }
    for (const auto &p : r.past)
        if (std::string err = add(*p); !err.empty()) return err;
    if (u.has_log || u.notify_fd >= 0 || !u.cgroup.empty() || !u.runs.empty() ||
        !u.failures.empty() || u.probe_failures > 0)
        h.units.push_back(std::move(u));
    return {};
}

// ---- the new binary ----------------------------------------------------------------------

bool Shell::adopt(Handover &h, const core::TreeSpec &loaded_tree, std::string &error) {
    const bool taken = adopt_state(h, loaded_tree, error);
    if (!taken && core_deferred_) { // the core the other constructor builds, for start()
        core::Core full(core_tree(loaded_tree, units_));
        core_.swap(full);
        rt_.resize(core_.size());
    }
    core_deferred_ = false;
    return taken;
}

bool Shell::adopt_state(Handover &h, const core::TreeSpec &loaded_tree, std::string &error) {
    // units_ are still the files' units, in the order of loaded_tree (the constructor's).
    const core::TreeSpec next = core_tree(loaded_tree, units_);
    core::RestoreResult rr = core::Core::restore(next, h.core);
    if (!rr.core) {
        error = "reexec state: " + rr.error;
        return false;
    }
    const core::Core &c = *rr.core;
    std::map<std::string_view, const unit::Unit *> by_name;
    for (const unit::Unit &u : units_)
        by_name.emplace(u.name, &u);
    std::vector<std::optional<log::Ring>> rings(h.units.size());
    for (std::size_t i = 0; i < h.units.size(); ++i) {
        const HandoverUnit &hu = h.units[i];
        auto it = by_name.find(hu.name);
        if (hu.id >= c.size() || c.spec(ChildId{hu.id}).name != hu.name || it == by_name.end()) {
            error = "reexec state: unit " + hu.name + " is not the core's child " +
                    std::to_string(hu.id);
            return false;
        }
        for (const HandoverRun &run : hu.runs)
            if (run.pid <= 0 || run.incarnation == 0) {
                error = "reexec state: " + hu.name + ": an incarnation without a process";
                return false;
            }
        if (!hu.has_log) continue;
        log::RingRestore ring = log::Ring::restore(it->second->logs.ring, hu.ring);
        if (!ring.ring) {
            error = "reexec state: " + hu.name + ": " + ring.error;
            return false;
        }
        rings[i] = std::move(ring.ring);
    }
    for (const HandoverProcess &p : h.processes)
        if (p.child >= c.size() || p.pid <= 0) {
            error = "reexec state: process " + std::to_string(p.pid) + " of no child";
            return false;
        }
    take_state(h, next, *rr.core, rings);
    return true;
}

// adopt(), once everything was checked: nothing here can refuse.
void Shell::take_state(Handover &h, const core::TreeSpec &next, core::Core &restored,
                       std::vector<std::optional<log::Ring>> &rings) {
    core_.swap(restored);
    // The units by the restored core's ids: as they are when its children are the files' in
    // the same order (no child removed by a reload in between), by name otherwise.
    rt_.clear();
    bool aligned = units_.size() == core_.size();
    for (std::uint32_t i = 0; aligned && i < core_.size(); ++i)
        aligned = units_[i].name == core_.spec(ChildId{i}).name;
    if (aligned) {
        rt_.resize(core_.size());
    } else {
        std::map<std::string, unit::Unit> by_name;
        for (unit::Unit &u : units_) {
            std::string name = u.name;
            by_name.emplace(std::move(name), std::move(u));
        }
        units_.clear();
        align_units(by_name, {});
    }
    seq_.next = h.log_seq_next;
    orphans_reaped_ = h.orphans_reaped;
    generation_ = h.generation;
    const auto wanted = wanted_sockets(units_);
    for (const HandoverSocket &s : h.held) {
        auto it = wanted.find(s.key);
        if (it == wanted.end())
            os_.close_fd(s.fd);
        else
            held_.emplace(s.key, HeldSocket{s.fd, it->second});
    }
    listen_bound_ = true;
    for (std::size_t i = 0; i < h.units.size(); ++i)
        adopt_unit(h.units[i], rings[i]);
    for (const HandoverProcess &p : h.processes)
        procs_.add(p.pid, ProcessOwner{ChildId{p.child}, Incarnation{p.incarnation}});
    for (std::uint32_t g : h.group_waits)
        if (g < core_.size()) group_waits_.push_back(ChildId{g});
    // The units as this binary read them, applied as a reload would (nothing changes when
    // they are the ones that ran): the actions are carried out by resume().
    std::vector<core::Action> out;
    core_.reconfigure(next, os_.now(), out);
    for (core::Action &a : out)
        adopted_actions_.push_back(std::move(a));
}

void Shell::adopt_unit(const HandoverUnit &hu, std::optional<log::Ring> &ring) {
    const ChildId id{hu.id};
    UnitRuntime &r = runtime(id);
    if (hu.has_log && ring) {
        ensure_log(id);
        r.log->adopt_ring(std::move(*ring));
    }
    if (hu.notify_fd >= 0)
        r.notify = os_.adopt_notify(hu.notify_path, hu.notify_fd, notify_callbacks(id));
    if (!hu.cgroup.empty()) r.cgroup = os_.adopt_cgroup(hu.cgroup);
    r.probe_failures = hu.probe_failures;
    r.log_failures_reported = hu.log_failures_reported;
    for (const HandoverFailure &f : hu.failures)
        if (f.slot < check_slots)
            r.last_failures[f.slot] =
                CheckFailure{f.wall_ms, f.message.substr(0, CheckFailure::max_message)};
    for (std::int32_t g : hu.recent_groups)
        if (r.recent_groups.size() < UnitRuntime::max_recent_groups) r.recent_groups.push_back(g);
    for (std::size_t k = 0; k < hu.runs.size(); ++k) {
        std::unique_ptr<Run> run = adopt_run(id, hu.runs[k]);
        if (k == 0 && hu.has_run)
            r.run = std::move(run);
        else
            r.past.push_back(std::move(run));
    }
}

std::unique_ptr<Run> Shell::adopt_run(ChildId id, const HandoverRun &x) {
    auto run = std::make_unique<Run>();
    const Incarnation inc{x.incarnation};
    run->incarnation = inc;
    run->pid = x.pid;
    run->main_pid = x.main_pid;
    run->main_pidfd = x.main_pidfd;
    run->reaped = x.reaped;
    run->drained = x.drained;
    run->ready_sent = x.ready_sent;
    run->watchdog_pings = x.watchdog_pings;
    run->watchdog_failures = x.watchdog_failures;
    run->watchdog_kick = TimePoint{Duration{x.watchdog_kick_ms}};
    const unit::Unit &u = units_[id.value];
    if (!x.ready_sent && u.ready.log) run->ready_log = log::Regex::compile(*u.ready.log);
    run->output = os_.adopt_output(x.out_fd, x.err_fd, x.out_pending, x.err_pending,
                                   log::capture_options(u.logs), output_callbacks(id, inc));
    if (x.ready_fd >= 0)
        run->ready_fd = os_.adopt_ready_fd(x.ready_fd, [this, id, inc] { became_ready(id, inc); });
    if (x.probes) adopted_probes_.push_back(AdoptedProbes{id, inc, x.probe_state});
    return run;
}

void Shell::resume(const Handover &h) {
    for (const AdoptedProbes &p : std::exchange(adopted_probes_, {}))
        start_probes(p.id, p.inc, p.from);
    std::size_t kept = 0;
    for (std::uint32_t i = 0; i < rt_.size(); ++i) {
        UnitRuntime &r = rt_[i];
        if (!r.run) continue;
        Run &run = *r.run;
        if (!run.reaped) ++kept;
        if (run.main_pid != run.pid && procs_.find(run.main_pid)) watch_main(ChildId{i}, run);
        if (run.output && run.output->eof() && !run.drained)
            output_ended(ChildId{i}, run.incarnation); // its EOF came before the exec
    }
    if (manager_) {
        manager_->start();
        manager_->tree_started(tree_summary(core_));
    }
    const double pause_ms = static_cast<double>(monotonic_ns() - h.exec_started_ns) / 1e6;
    char pause[32];
    std::snprintf(pause, sizeof pause, "%.1f", pause_ms);
    const char *units = h.has_loaded ? "carried" : "read";
    journal_.say(LogLevel::Info, "re-executed " + opts_.exe + " (re-exec " +
                                     std::to_string(generation_) + "): " + std::to_string(kept) +
                                     " services kept, units " +
                                     (h.has_loaded ? "carried (the same build)"
                                                   : "read from the unit files (another build)") +
                                     ", vigild paused " + pause + " ms");
    std::vector<core::Action> out = std::exchange(adopted_actions_, {});
    execute(out);
    arm_deadline();
    if (h.requester_fd >= 0) {
        const ctl::Json result{{"pid", os_.self_pid()}, {"generation", generation_},
                               {"services", kept},      {"pause_ms", pause_ms},
                               {"units", units},        {"binary", opts_.exe}};
        answer_client(h.requester_fd, h.requester_id, ctl::make_reply(nullptr, result));
    }
}

// The client that asked for the re-exec gets its answer from the new binary on the connection
// the old one kept (one short line: the socket's buffer is empty), and the connection closes.
void answer_client(int fd, const std::string &id_json, std::string line) {
    const ctl::Json id = ctl::Json::parse(id_json, nullptr, false);
    ctl::Json msg = ctl::Json::parse(line, nullptr, false);
    if (!msg.is_discarded()) {
        msg["id"] = id.is_discarded() ? ctl::Json(nullptr) : id;
        line = msg.dump(-1, ' ', false, ctl::Json::error_handler_t::replace) + "\n";
    }
    std::size_t done = 0;
    for (int tries = 0; done < line.size() && tries < 100; ++tries) {
        const ssize_t n =
            ::send(fd, line.data() + done, line.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            done += static_cast<std::size_t>(n);
        } else if (n < 0 && errno != EINTR && errno != EAGAIN) {
            break;
        } else if (n < 0 && errno == EAGAIN) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }
    ::close(fd);
}

// ---- a binary that cannot read the state -------------------------------------------------

namespace {

bool service_gone(const HandoverService &s) {
    if (!s.cgroup.empty()) return proc::cgroup::empty(s.cgroup);
    return ::kill(-s.pgid, 0) != 0 && errno == ESRCH;
}

void signal_service(const HandoverService &s, int sig) {
    if (!s.cgroup.empty() && !proc::cgroup::empty(s.cgroup))
        (void)proc::cgroup::signal(s.cgroup, sig);
    else
        (void)::kill(-s.pgid, sig);
}

// Reaps whatever ended and waits until every service is gone or `limit` passed.
bool wait_gone(const std::vector<HandoverService> &services, Duration limit) {
    const std::int64_t until = monotonic_ns() + limit.count() * 1'000'000;
    for (;;) {
        while (::waitpid(-1, nullptr, WNOHANG) > 0) {
        }
        if (std::all_of(services.begin(), services.end(), service_gone)) return true;
        if (monotonic_ns() >= until) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

} // namespace

void abandon_handover(const Handover &h, Duration grace) {
    for (std::int32_t fd : h.fds)
        if (fd != h.requester_fd) ::close(fd);
    for (const HandoverService &s : h.services)
        signal_service(s, SIGTERM);
    if (!wait_gone(h.services, grace)) {
        for (const HandoverService &s : h.services)
            signal_service(s, SIGKILL);
        (void)wait_gone(h.services, Duration{5000});
    }
    for (const HandoverService &s : h.services)
        if (!s.cgroup.empty()) proc::cgroup::remove(s.cgroup);
}

} // namespace vigil::daemon

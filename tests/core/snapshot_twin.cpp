#include "snapshot_twin.hpp"

#include <doctest/doctest.h>

#include <stdexcept>
#include <variant>

#include "vigil/core/names.hpp"

namespace vigil::test {

using namespace vigil::core;

namespace {

template <class... F> struct Overload : F... { using F::operator()...; };
template <class... F> Overload(F...) -> Overload<F...>;

std::string exit_text(const std::optional<ExitStatus> &e) {
    return e ? describe_exit(*e) + (e->core_dumped ? "+core" : "") : "-";
}
template <class T, class F> std::string opt_text(const std::optional<T> &v, F &&f) {
    return v ? f(*v) : std::string("-");
}
std::string pid_text(const std::optional<Pid> &p) {
    return opt_text(p, [](Pid x) { return std::to_string(x.value); });
}
std::string result_text(const CommandResult &r) {
    return std::to_string(static_cast<int>(r.outcome)) + " " + r.message;
}

constexpr int loop_cap = 100'000;

} // namespace

std::string text(const Record &r) {
    return std::to_string(r.at.time_since_epoch().count()) + " " + std::to_string(r.child.value) +
           " " + r.unit + " " + to_string(r.kind) + " [" + r.message + "] " + to_string(r.cause) +
           " pid=" + pid_text(r.pid) + " exit=" + exit_text(r.exit) +
           " sig=" + opt_text(r.signal, [](int s) { return std::to_string(s); }) +
           " delay=" + opt_text(r.delay, [](Duration d) { return std::to_string(d.count()); }) +
           " inc=" +
           opt_text(r.incarnation, [](Incarnation i) { return std::to_string(i.value); }) +
           " subject=" + r.subject;
}

std::string text(const Action &a) {
    return std::visit(
        Overload{
            [](const Spawn &x) {
                return "spawn " + std::to_string(x.child.value) + "/" +
                       std::to_string(x.incarnation.value);
            },
            [](const Signal &x) {
                return "signal " + std::to_string(x.child.value) + "/" +
                       std::to_string(x.incarnation.value) + " pid " + std::to_string(x.pid.value) +
                       " " + std::to_string(x.signal);
            },
            [](const StartProbes &x) {
                return "probes-on " + std::to_string(x.child.value) + "/" +
                       std::to_string(x.incarnation.value);
            },
            [](const StopProbes &x) { return "probes-off " + std::to_string(x.child.value); },
            [](const WatchMain &x) {
                return "watch " + std::to_string(x.child.value) + "/" +
                       std::to_string(x.incarnation.value) + " " + std::to_string(x.pid.value);
            },
            [](const Publish &x) { return "publish " + text(x.record); },
            [](const Exit &x) { return "exit " + std::to_string(x.status); },
        },
        a);
}

std::string text(const ChildStatus &s) {
    std::string lb;
    for (Pid p : s.left_behind)
        lb += std::to_string(p.value) + ",";
    return std::to_string(s.id.value) + " " + s.name + " " + to_string(s.kind) +
           " parent=" + opt_text(s.parent, [](ChildId c) { return std::to_string(c.value); }) +
           " " + to_string(s.state) + " goal=" + std::to_string(static_cast<int>(s.goal)) +
           " ready=" + std::to_string(s.ready) + " pid=" + pid_text(s.pid) +
           " main=" + pid_text(s.main_pid) + " inc=" + std::to_string(s.incarnation.value) +
           " since=" + std::to_string(s.since.time_since_epoch().count()) +
           " restarts=" + std::to_string(s.restarts) + " exit=" + exit_text(s.last_exit) +
           " cause=" + to_string(s.last_cause) + " [" + s.last_reason + "] backoff=" +
           opt_text(s.backoff_until,
                    [](TimePoint t) { return std::to_string(t.time_since_epoch().count()); }) +
           " exiting=" + std::to_string(s.exiting) + " status=[" + s.status_text + "] left=" + lb +
           " wd=" + opt_text(s.watchdog, [](Duration d) { return std::to_string(d.count()); }) +
           " removed=" + std::to_string(s.removed) + " exited=" + std::to_string(s.exited) +
           " revivable=" + std::to_string(s.revivable);
}

Twin::Twin(TreeSpec spec, bool every_step, int restore_at)
    : loaded(spec), a_(std::make_unique<Core>(std::move(spec))), every_(every_step),
      restore_at_(restore_at) {
    // b starts as a restored copy of the core that has not started yet.
    const SnapshotResult snap = a_->snapshot();
    REQUIRE(snap.error.empty());
    RestoreResult r = Core::restore(loaded, snap.bytes);
    REQUIRE_MESSAGE(r.core, r.error);
    b_ = std::move(r.core);
}

void Twin::maybe_restore() {
    if (!every_ && steps != restore_at_) return;
    const SnapshotResult snap = a_->snapshot();
    REQUIRE_MESSAGE(snap.error.empty(), snap.error);
    RestoreResult r = Core::restore(loaded, snap.bytes);
    REQUIRE_MESSAGE(r.core, r.error);
    b_ = std::move(r.core);
    ++restores;
}

// Compared without an assertion per item (there are millions): a difference is reported.
#define SAME(x, y)                                                                                 \
    do {                                                                                           \
        if (!((x) == (y))) CHECK((x) == (y));                                                      \
    } while (false)

// The whole model (snapshot bytes) and every query.
void Twin::compare(bool queries) {
    const SnapshotResult sa = a_->snapshot(), sb = b_->snapshot();
    REQUIRE(sa.error.empty());
    SAME(sa.bytes, sb.bytes);
    if (!queries) return;
    REQUIRE(a_->size() == b_->size());
    SAME(a_->finished(), b_->finished());
    SAME(a_->next_deadline(), b_->next_deadline());
    SAME(a_->dropped_events(), b_->dropped_events());
    SAME(a_->internal_errors(), b_->internal_errors());
    for (std::uint32_t i = 0; i < a_->size(); ++i) {
        const ChildId c{i};
        const ChildStatus s = a_->status(c);
        SAME(text(s), text(b_->status(c)));
        if (!s.removed) SAME(b_->find(s.name), std::optional<ChildId>(c));
        SAME(a_->waiting_for(c), b_->waiting_for(c));
        SAME(a_->restarts_in_window(c, now), b_->restarts_in_window(c, now));
        const auto ha = a_->history(c, 64), hb = b_->history(c, 64);
        REQUIRE(ha.size() == hb.size());
        for (std::size_t k = 0; k < ha.size(); ++k)
            SAME(text(ha[k]), text(hb[k]));
    }
    const auto ga = a_->history(std::nullopt, 100'000), gb = b_->history(std::nullopt, 100'000);
    REQUIRE(ga.size() == gb.size());
    for (std::size_t k = 0; k < ga.size(); ++k)
        SAME(text(ga[k]), text(gb[k]));
}

// One input to both cores: the same actions and answer from each, then the same state.
template <class F> void Twin::input(F &&f) {
    maybe_restore();
    std::vector<Action> oa, ob;
    const std::string ra = f(*a_, oa), rb = f(*b_, ob);
    ++steps;
    CAPTURE(steps);
    SAME(ra, rb);
    REQUIRE(oa.size() == ob.size());
    for (std::size_t i = 0; i < oa.size(); ++i)
        SAME(text(oa[i]), text(ob[i]));
    // Before a single restore, b is the copy restored before the start. After it, the model
    // each step and the queries at the end (finish()).
    if (every_ || steps > restore_at_) compare(every_);
    react(oa);
}

void Twin::react(const std::vector<Action> &acts) {
    for (const Action &act : acts) {
        if (const auto *sp = std::get_if<Spawn>(&act)) {
            const std::string name(a_->spec(sp->child).name);
            if (hold_spawn.count(name)) {
                held_.push_back(*sp);
                continue;
            }
            if (fail_spawn.count(name)) {
                pending_.push_back(SpawnFailed{sp->child, sp->incarnation, "exec x: ENOENT"});
                continue;
            }
            const int pid = next_pid_++;
            procs_[pid] = Proc{sp->child, sp->incarnation, name};
            moved_main_.erase(sp->child.value);
            pending_.push_back(Spawned{sp->child, sp->incarnation, Pid{pid}});
        } else if (const auto *sg = std::get_if<Signal>(&act)) {
            if (sg->signal == sig_cont) continue;
            const bool kill = sg->signal == sig_kill;
            auto it = procs_.find(sg->pid.value);
            if (it == procs_.end() || it->second.inc != sg->incarnation) {
                auto l = lingering_.find(sg->child.value);
                if (l != lingering_.end() && l->second == sg->incarnation &&
                    (kill || !ignoring_.count(sg->child.value))) {
                    pending_.push_back(Drained{sg->child, sg->incarnation});
                    lingering_.erase(l);
                }
                continue;
            }
            if (kill || !ignore_term.count(it->second.name))
                die(sg->pid.value, ExitStatus::killed(sg->signal));
        } else if (const auto *wm = std::get_if<WatchMain>(&act)) {
            moved_main_[wm->child.value] = wm->pid.value;
        }
    }
}

// The process (and a main process MAINPID= named) ends; its output drains unless it lingers.
void Twin::die(int pid, ExitStatus status) {
    auto it = procs_.find(pid);
    if (it == procs_.end()) return;
    const Proc p = it->second;
    procs_.erase(it);
    if (linger.count(p.name)) {
        lingering_[p.child.value] = p.inc;
        if (ignore_term.count(p.name)) ignoring_[p.child.value] = p.inc;
    } else {
        pending_.push_back(Drained{p.child, p.inc});
    }
    pending_.push_back(Exited{p.child, p.inc, Pid{pid}, status});
    if (auto m = moved_main_.find(p.child.value); m != moved_main_.end()) {
        pending_.push_back(Exited{p.child, p.inc, Pid{m->second}, status});
        moved_main_.erase(m);
    }
}

void Twin::drain_pending() {
    if (draining_) return;
    draining_ = true;
    for (int guard = 0; !pending_.empty(); ++guard) {
        if (guard > loop_cap) throw std::runtime_error("Twin: event livelock");
        const Event ev = pending_.front();
        pending_.pop_front();
        input([&](Core &c, std::vector<Action> &out) {
            c.handle(ev, now, out);
            return std::string();
        });
    }
    draining_ = false;
}

void Twin::start() {
    input([&](Core &c, std::vector<Action> &out) {
        c.start(now, out);
        return std::string();
    });
    drain_pending();
}

void Twin::event(const Event &ev) {
    pending_.push_back(ev);
    drain_pending();
}

CommandResult Twin::command(CommandKind kind, const std::string &name, int sig) {
    CommandResult res;
    const Command cmd{kind, id(name), sig, "test"};
    input([&](Core &c, std::vector<Action> &out) {
        res = c.command(cmd, now, out);
        return result_text(res);
    });
    drain_pending();
    return res;
}

void Twin::restart(const std::vector<std::string> &names) {
    std::vector<ChildId> ids;
    for (const auto &n : names)
        ids.push_back(id(n));
    input([&](Core &c, std::vector<Action> &out) {
        std::string all;
        for (const CommandResult &r : c.restart(ids, "test", now, out))
            all += result_text(r) + ";";
        return all;
    });
    drain_pending();
}

CommandResult Twin::roll(const std::string &unit, std::optional<std::uint32_t> max) {
    CommandResult res;
    input([&](Core &c, std::vector<Action> &out) {
        res = c.roll(unit, max, "test", now, out);
        return result_text(res);
    });
    drain_pending();
    return res;
}

ReconfigureResult Twin::reload(TreeSpec next) {
    ReconfigureResult res;
    const TreeSpec copy = next;
    input([&](Core &c, std::vector<Action> &out) {
        res = c.reconfigure(copy, now, out);
        std::string all;
        for (const auto *v : {&res.added, &res.removed, &res.restarted, &res.updated, &res.errors})
            for (const auto &s : *v)
                all += s + ",";
        return all;
    });
    if (res.errors.empty()) loaded = std::move(next);
    drain_pending();
    return res;
}

void Twin::forget(ChildId c) {
    input([&](Core &core, std::vector<Action> &) {
        core.forget(c);
        return std::string();
    });
}

void Twin::note(const std::string &name, const std::string &message) {
    const ChildId c = id(name);
    input([&](Core &core, std::vector<Action> &out) {
        core.note(c, Cause::Leftover, message, now, out);
        return std::string();
    });
}

void Twin::advance(Duration d) {
    const TimePoint target = now + d;
    for (int guard = 0;; ++guard) {
        if (guard > loop_cap) throw std::runtime_error("Twin::advance: livelock");
        const auto next = a_->next_deadline();
        if (!next || *next > target || a_->finished()) break;
        if (*next > now) now = *next;
        event(DeadlineReached{});
    }
    now = target;
}

void Twin::exit(const std::string &name, int status) {
    const ChildStatus s = st(name);
    REQUIRE(s.pid);
    if (s.main_pid && *s.main_pid != *s.pid) {
        // The spawned process had handed over and ended; now the MAINPID= process ends.
        procs_.erase(s.pid->value);
        pending_.push_back(Exited{s.id, s.incarnation, *s.pid, ExitStatus::exited(0)});
        pending_.push_back(Drained{s.id, s.incarnation});
        pending_.push_back(Exited{s.id, s.incarnation, *s.main_pid, ExitStatus::exited(status)});
        moved_main_.erase(s.id.value);
        drain_pending();
        return;
    }
    die(s.pid->value, ExitStatus::exited(status));
    drain_pending();
}

void Twin::ready(const std::string &name) {
    const ChildStatus s = st(name);
    event(BecameReady{s.id, s.incarnation});
}

void Twin::release_spawns() {
    const std::vector<Spawn> held = std::move(held_);
    held_.clear();
    for (const Spawn &sp : held) {
        const int pid = next_pid_++;
        procs_[pid] = Proc{sp.child, sp.incarnation, std::string(a_->spec(sp.child).name)};
        pending_.push_back(Spawned{sp.child, sp.incarnation, Pid{pid}});
    }
    drain_pending();
}

ChildId Twin::id(const std::string &name) const {
    const auto c = a_->find(name);
    if (!c) throw std::runtime_error("Twin: no child " + name);
    return *c;
}

ChildStatus Twin::st(const std::string &name) const {
    return a_->status(id(name));
}

} // namespace vigil::test

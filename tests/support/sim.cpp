#include "sim.hpp"

#include <deque>
#include <stdexcept>

namespace vigil::test {

using namespace vigil::core;

namespace {
constexpr int sim_loop_cap = 200'000;

void flatten(NodeDef def, std::optional<ChildId> parent, TreeSpec &out) {
    const ChildId me{static_cast<std::uint32_t>(out.nodes.size())};
    def.spec.parent = parent;
    def.spec.children.clear();
    out.nodes.push_back(def.spec);
    if (parent) out.nodes[parent->value].children.push_back(me);
    for (auto &k : def.children)
        flatten(std::move(k), me, out);
}
} // namespace

std::string sig_name(int sig) {
    switch (sig) {
    case 1:
        return "SIGHUP";
    case 2:
        return "SIGINT";
    case 9:
        return "SIGKILL";
    case 10:
        return "SIGUSR1";
    case 11:
        return "SIGSEGV";
    case 15:
        return "SIGTERM";
    default:
        return "SIG" + std::to_string(sig);
    }
}

NodeDef service(std::string name, const Tweak &tweak) {
    NodeDef d;
    d.spec.name = std::move(name);
    d.spec.kind = Kind::Service;
    d.spec.backoff.initial = Duration{0};
    d.spec.backoff.jitter = 0.0;
    if (tweak) tweak(d.spec);
    return d;
}

NodeDef supervisor(std::string name, Strategy strategy, std::vector<NodeDef> children,
                   const Tweak &tweak) {
    NodeDef d;
    d.spec.name = std::move(name);
    d.spec.kind = Kind::Supervisor;
    d.spec.strategy = strategy;
    d.spec.stop.timeout.reset(); // supervisors: infinity (item 12; the loader does the same)
    d.children = std::move(children);
    if (tweak) tweak(d.spec);
    return d;
}

TreeSpec tree(NodeDef r) {
    TreeSpec t;
    r.spec.name = "root";
    flatten(std::move(r), std::nullopt, t);
    return t;
}

TreeSpec root(Strategy strategy, std::vector<NodeDef> children, const Tweak &tweak) {
    return tree(supervisor("root", strategy, std::move(children), tweak));
}

Tweak transient() {
    return [](ChildSpec &s) { s.restart = Restart::Transient; };
}
Tweak temporary() {
    return [](ChildSpec &s) { s.restart = Restart::Temporary; };
}
Tweak intensity(int max_restarts, Duration period) {
    return [=](ChildSpec &s) {
        s.intensity = max_restarts;
        s.period = period;
    };
}

Tweak stop_timeout(std::optional<Duration> t) {
    return [=](ChildSpec &s) { s.stop.timeout = t; };
}

ChildId id_of(const TreeSpec &t, const std::string &name) {
    for (std::size_t i = 0; i < t.nodes.size(); ++i)
        if (t.nodes[i].name == name) return ChildId{static_cast<std::uint32_t>(i)};
    throw std::runtime_error("no node " + name);
}

void set_after(TreeSpec &t, const std::string &name, const std::vector<std::string> &deps) {
    auto &after = t.nodes[id_of(t, name).value].after;
    for (const auto &d : deps)
        after.push_back(id_of(t, d));
}

Sim::Sim(TreeSpec spec) : core(std::move(spec)) {}

void Sim::start_all() {
    std::vector<Action> out;
    core.start(now, out);
    apply(std::move(out));
    run_until_quiescent();
}

int Sim::alloc_pid() {
    int p = 100; // the smallest free pid: a restarted child often gets its old pid back
    while (procs_.count(p))
        ++p;
    return p;
}

void Sim::feed(const Event &ev) {
    std::vector<Action> out;
    core.handle(ev, now, out);
    apply(std::move(out));
}

void Sim::apply(std::vector<Action> acts) {
    // Depth first, as the shell does: the answer to a Spawn is handled before the next action.
    std::deque<Action> q(acts.begin(), acts.end());
    int guard = 0;
    while (!q.empty()) {
        if (++guard > sim_loop_cap) throw std::runtime_error("Sim::apply: action livelock");
        Action a = std::move(q.front());
        q.pop_front();
        actions.push_back(a);
        std::vector<Action> more;
        if (auto *sp = std::get_if<Spawn>(&a)) {
            const std::string name(core.spec(sp->child).name);
            auto fs = fail_spawn_.find(name);
            if (fs != fail_spawn_.end() && fs->second.first > 0) {
                fs->second.first--;
                log.push_back({now, "spawn-failed " + name});
                core.handle(SpawnFailed{sp->child, sp->incarnation, fs->second.second}, now, more);
            } else {
                const int p = alloc_pid();
                procs_[p] = FakeProcess{sp->child, sp->incarnation, name, {}, true};
                spawns_[name]++;
                last_signals_[name].clear();
                log.push_back({now, "spawn " + name});
                core.handle(Spawned{sp->child, sp->incarnation, Pid{p}}, now, more);
            }
        } else if (auto *sg = std::get_if<Signal>(&a)) {
            // SIGCONT follows every graceful stop signal (as systemd sends it: then_cont); it
            // changes nothing for these processes, so it is counted, not logged as a signal.
            if (sg->then_cont || sg->signal == sig_cont) ++conts;
            if (sg->signal == sig_cont) continue;
            auto it = procs_.find(sg->pid.value);
            if (it == procs_.end() || it->second.child != sg->child ||
                it->second.inc != sg->incarnation) {
                // The group of an incarnation whose main process ended but which still holds
                // its output (linger): the signal reaches what is left of it.
                if (auto l = lingering_.find(sg->child.value);
                    l != lingering_.end() && l->second.inc == sg->incarnation) {
                    log.push_back(
                        {now, "signal-leftover " + l->second.name + " " + sig_name(sg->signal)});
                    if (sg->signal == sig_kill || !l->second.ignores_term) release_drain(l->first);
                    continue;
                }
                ++stray_signals;
                continue;
            }
            FakeProcess &pr = it->second;
            pr.signals.push_back(sg->signal);
            all_signals_[pr.name].push_back(sg->signal);
            last_signals_[pr.name].push_back(sg->signal);
            log.push_back({now, "signal " + pr.name + " " + sig_name(sg->signal)});
            const OnSignal b = behaviour_.count(pr.name) ? behaviour_[pr.name] : OnSignal::Die;
            const bool stop_sig = sg->signal == core.spec(sg->child).stop.signal;
            if (sg->signal == sig_kill || b == OnSignal::Die) {
                if (!exit_after_.count(pr.name) || sg->signal == sig_kill)
                    pending_[{now, ++pending_seq_}] =
                        PendingExit{sg->pid.value, pr.inc, ExitStatus::killed(sg->signal)};
                else if (stop_sig)
                    pending_[{now + exit_after_[pr.name], ++pending_seq_}] =
                        PendingExit{sg->pid.value, pr.inc, ExitStatus::exited(0)};
            }
        } else if (auto *pub = std::get_if<Publish>(&a)) {
            records.push_back(pub->record);
        } else if (auto *ex = std::get_if<Exit>(&a)) {
            exit_status = ex->status;
            log.push_back({now, "exit-vigild " + std::to_string(ex->status)});
        } else if (auto *st = std::get_if<StartProbes>(&a)) {
            log.push_back({now, "probes-on " + std::string(core.spec(st->child).name)});
        } else if (auto *sp2 = std::get_if<StopProbes>(&a)) {
            log.push_back({now, "probes-off " + std::string(core.spec(sp2->child).name)});
        }
        q.insert(q.begin(), more.begin(), more.end());
    }
}

void Sim::die(int pid, ExitStatus status) {
    auto it = procs_.find(pid);
    if (it == procs_.end()) return;
    FakeProcess pr = it->second;
    procs_.erase(it);
    pr.alive = false;
    dead_.push_back(pr);
    log.push_back(
        {now, "exit " + pr.name + " " +
                  (status.signaled ? sig_name(status.code) : std::to_string(status.code))});
    // Its output reaches EOF with it (the shell reads a dead service's pipes before it reports
    // the death), unless something it left holds the pipes (linger).
    if (auto l = linger_.find(pr.name); l != linger_.end()) {
        lingering_[pr.child.value] = Lingering{pr.inc, pr.name, l->second};
        linger_.erase(l);
    } else {
        feed(Drained{pr.child, pr.inc});
    }
    feed(Exited{pr.child, pr.inc, Pid{pid}, status});
}

void Sim::release_drain(std::uint32_t child) {
    auto l = lingering_.find(child);
    if (l == lingering_.end()) return;
    const Lingering lg = l->second;
    lingering_.erase(l);
    log.push_back({now, "drained " + lg.name});
    feed(Drained{ChildId{child}, lg.inc});
}

void Sim::linger(const std::string &name, bool ignores_term) {
    linger_[name] = ignores_term;
}

void Sim::drain(const std::string &name) {
    release_drain(id(name).value);
    run_until_quiescent();
}

void Sim::deliver_due() {
    int guard = 0;
    while (!pending_.empty() && pending_.begin()->first.first <= now) {
        if (++guard > sim_loop_cap) throw std::runtime_error("Sim: exit livelock");
        const PendingExit pe = pending_.begin()->second;
        pending_.erase(pending_.begin());
        auto it = procs_.find(pe.pid);
        if (it == procs_.end() || it->second.inc != pe.inc) continue; // already dead
        die(pe.pid, pe.status);
    }
}

std::optional<TimePoint> Sim::next_pending() const {
    if (pending_.empty()) return std::nullopt;
    return pending_.begin()->first.first;
}

void Sim::advance(Duration d) {
    const TimePoint target = now + d;
    for (int i = 0;; ++i) {
        if (i > sim_loop_cap) throw std::runtime_error("Sim::advance: livelock");
        deliver_due();
        std::optional<TimePoint> next = core.next_deadline();
        const auto np = next_pending();
        if (np && (!next || *np < *next)) next = np;
        if (!next || *next > target || core.finished()) break;
        if (*next > now) now = *next;
        deliver_due();
        const auto dl = core.next_deadline();
        if (dl && *dl <= now) feed(DeadlineReached{});
    }
    now = target;
    deliver_due();
}

void Sim::run_until_quiescent() {
    advance(Duration{0});
}

void Sim::exit(const std::string &name, int status) {
    const Pid p = pid(name);
    if (!procs_.count(p.value)) throw std::runtime_error("Sim::exit: " + name + " is not running");
    die(p.value, ExitStatus::exited(status));
    run_until_quiescent();
}

void Sim::exit_by_signal(const std::string &name, int signal) {
    const Pid p = pid(name);
    if (!procs_.count(p.value)) throw std::runtime_error("Sim::exit: " + name + " is not running");
    die(p.value, ExitStatus::killed(signal));
    run_until_quiescent();
}

void Sim::ready(const std::string &name) {
    const ChildStatus s = status(name);
    feed(BecameReady{s.id, s.incarnation});
    run_until_quiescent();
}

void Sim::health_fail(const std::string &name, FailureCause cause, std::string detail) {
    const ChildStatus s = status(name);
    feed(HealthFailed{s.id, s.incarnation, cause, "", std::move(detail)});
    run_until_quiescent();
}

void Sim::inject(const Event &ev) {
    feed(ev);
    run_until_quiescent();
}

CommandResult Sim::command(CommandKind kind, const std::string &name, std::string who, int signal) {
    std::vector<Action> out;
    Command cmd{kind, name.empty() ? root_id : id(name), signal, std::move(who)};
    CommandResult r = core.command(cmd, now, out);
    apply(std::move(out));
    run_until_quiescent();
    return r;
}

std::vector<CommandResult> Sim::restart(const std::vector<std::string> &names, std::string who) {
    std::vector<ChildId> ids;
    for (const auto &n : names)
        ids.push_back(n.empty() ? ChildId{0xffff} : id(n));
    std::vector<Action> out;
    std::vector<CommandResult> r = core.restart(ids, who, now, out);
    apply(std::move(out));
    run_until_quiescent();
    return r;
}

CommandResult Sim::roll(const std::string &unit, std::optional<std::uint32_t> max_unavailable,
                        std::string who) {
    std::vector<Action> out;
    CommandResult r = core.roll(unit, max_unavailable, who, now, out);
    apply(std::move(out));
    run_until_quiescent();
    return r;
}

ReconfigureResult Sim::reload(TreeSpec next) {
    std::vector<Action> out;
    ReconfigureResult r = core.reconfigure(std::move(next), now, out);
    apply(std::move(out));
    run_until_quiescent();
    return r;
}

void Sim::on_signal(const std::string &name, OnSignal behaviour) {
    behaviour_[name] = behaviour;
}
void Sim::exit_after_signal(const std::string &name, Duration d) {
    exit_after_[name] = d;
}
void Sim::fail_spawn(const std::string &name, int times, std::string reason) {
    fail_spawn_[name] = {times, std::move(reason)};
}

ChildId Sim::id(const std::string &name) const {
    auto c = core.find(name);
    if (!c) throw std::runtime_error("Sim: no child named " + name);
    return *c;
}

ChildStatus Sim::status(const std::string &name) const {
    return core.status(id(name));
}

Pid Sim::pid(const std::string &name) const {
    auto p = status(name).pid;
    return p ? *p : Pid{0};
}

std::uint64_t Sim::incarnation(const std::string &name) const {
    return status(name).incarnation.value;
}

bool Sim::alive(const std::string &name) const {
    for (const auto &[p, pr] : procs_)
        if (pr.name == name) return true;
    return false;
}

std::vector<int> Sim::signals_to(const std::string &name) const {
    auto it = last_signals_.find(name);
    return it == last_signals_.end() ? std::vector<int>{} : it->second;
}

std::vector<int> Sim::all_signals_to(const std::string &name) const {
    auto it = all_signals_.find(name);
    return it == all_signals_.end() ? std::vector<int>{} : it->second;
}

int Sim::spawns(const std::string &name) const {
    auto it = spawns_.find(name);
    return it == spawns_.end() ? 0 : it->second;
}

std::vector<std::string> Sim::lines(const std::string &prefix) const {
    std::vector<std::string> out;
    for (const auto &e : log)
        if (e.text.rfind(prefix, 0) == 0) out.push_back(e.text.substr(prefix.size()));
    return out;
}

std::vector<std::string> Sim::starts() const {
    return lines("spawn ");
}

std::vector<std::string> Sim::stop_order() const {
    std::vector<std::string> out;
    for (const auto &s : lines("signal ")) {
        const std::string name = s.substr(0, s.find(' '));
        if (out.empty() || out.back() != name) out.push_back(name);
    }
    return out;
}

std::optional<TimePoint> Sim::when(const std::string &text, int nth) const {
    for (const auto &e : log)
        if (e.text == text && nth-- == 0) return e.at;
    return std::nullopt;
}

bool Sim::has_record(const std::string &name, RecordKind kind, const std::string &fragment) const {
    for (const auto &r : records)
        if (r.unit == name && r.kind == kind && r.message.find(fragment) != std::string::npos)
            return true;
    return false;
}

} // namespace vigil::test

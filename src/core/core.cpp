// core.cpp: the public face of the supervision core (vigil/core/core.hpp): entry points that
// set the time and the action list, hand the input to its part, and drain the work queue; and
// the queries. The model is documented in include/vigil/core/state.hpp; the parts in impl.hpp.
#include "vigil/core/core.hpp"

#include <type_traits>

#include "impl.hpp"

namespace vigil::core {

Core::Impl::Impl(TreeSpec spec) : rng(spec.seed) {
    if (spec.nodes.empty()) {
        ChildSpec root;
        root.name = "root";
        root.kind = Kind::Supervisor;
        spec.nodes.push_back(root);
    }
    nodes.resize(spec.nodes.size());
    for (std::size_t i = 0; i < spec.nodes.size(); ++i) {
        nodes[i].spec = std::move(spec.nodes[i]);
        by_name.emplace(nodes[i].spec.name, ChildId{static_cast<std::uint32_t>(i)});
    }
    nodes[0].spec.kind = Kind::Supervisor;
    nodes[0].spec.parent.reset();
    // Parent links and positions come from the children lists, the one source of truth.
    for (std::size_t p = 0; p < nodes.size(); ++p) {
        auto &kids = nodes[p].spec.children;
        std::erase_if(kids, [&](ChildId c) { return c.value == 0 || c.value >= nodes.size(); });
        for (std::size_t i = 0; i < kids.size(); ++i) {
            nodes[kids[i].value].index = i;
            nodes[kids[i].value].spec.parent = ChildId{static_cast<std::uint32_t>(p)};
        }
    }
}

void Core::Impl::set_state(ChildId c, ChildState s) {
    Node &n = node(c);
    n.state = s;
    n.since = now;
    n.drain_until.reset();
    n.timer_seq = 0; // each timer belongs to a state: leaving it cancels the timer
}

// Rolls advance once the sequences have: a step begins only when nothing else is pending, and
// each step takes instances that were not reached, so the loop ends.
void Core::Impl::drain() {
    do {
        while (!work.empty()) {
            const ChildId s = work.front();
            work.pop_front();
            pump(s);
        }
    } while (!rolls.empty() && advance_rolls());
}

// Drops cancelled entries from the top so next_deadline() is exact.
void Core::Impl::tidy_deadlines() {
    while (!deadlines.empty()) {
        const auto &e = deadlines.top();
        if (valid(e.child) && node(e.child).timer_seq == e.seq) break;
        deadlines.pop();
    }
}

ChildStatus Core::Impl::status(ChildId id) const {
    ChildStatus s;
    if (!valid(id)) return s;
    const Node &n = node(id);
    s.id = id;
    s.name = n.spec.name;
    s.kind = n.spec.kind;
    s.parent = n.spec.parent;
    s.state = n.state;
    s.goal = n.goal;
    s.ready = n.state == ChildState::Running && n.ready && n.probe_ready && !n.main_exit;
    s.pid = n.pid;
    s.main_pid = n.main_pid;
    s.incarnation = n.inc;
    s.since = n.since;
    s.restarts = n.restarts;
    s.last_exit = n.last_exit;
    s.last_cause = n.last_cause;
    s.last_reason = n.last_reason;
    if (n.state == ChildState::Backoff) s.backoff_until = n.backoff_until;
    s.exiting = n.main_exit.has_value();
    s.status_text = n.status_text;
    s.left_behind = n.left_behind;
    if (n.state == ChildState::Running && n.timer_seq != 0 && !n.main_exit) s.watchdog = n.watchdog;
    s.removed = n.gone;
    s.exited = n.exited && n.state == ChildState::Stopped && !n.gone;
    s.revivable = n.dropped && !n.gone;
    if (n.state == ChildState::Stopping) s.drain_until = n.drain_until;
    if (n.spec.kind == Kind::Service && !rolls.empty()) s.roll = roll_status(id);
    return s;
}

// ---- Core ---------------------------------------------------------------------------------

Core::Core(TreeSpec spec) {
    std::vector<std::string> errors = validate(spec);
    impl_ = std::make_unique<Impl>(std::move(spec));
    impl_->spec_errors = std::move(errors);
}
Core::~Core() = default;

// The entry points are noexcept and must never end vigild: the core allocates (records,
// actions), and an allocation that fails is caught here, counted (internal_errors()) and the
// input dropped. The model stays as it was when the failure happened; the next event goes on
// from there.
template <class F> void Core::Impl::guarded(F &&f) noexcept {
    try {
        f();
        drain();
        tidy_deadlines();
    } catch (...) {
        ++internal_errors;
        work.clear();
    }
}

void Core::start(TimePoint now, std::vector<Action> &out) noexcept {
    Impl &m = *impl_;
    if (m.finished || m.node(root_id).state != ChildState::Stopped) return;
    m.now = now;
    m.out = &out;
    m.guarded([&] { m.start_tree(); });
}

void Core::Impl::start_tree() {
    // Every child has been in its first state since the tree was started (status shows
    // since_ms from here, not from the clock's epoch).
    for (auto &n : nodes)
        n.since = now;
    if (!spec_errors.empty()) {
        // Item 13: an invalid specification starts nothing.
        for (const std::string &e : spec_errors)
            publish(root_id, RecordKind::StartFailed, "invalid specification: " + e,
                    Facts{Cause::StartFailed});
        finish_root(StopCause::StartFailed);
        return;
    }
    start_child(root_id);
}

void Core::handle(const Event &ev, TimePoint now, std::vector<Action> &out) noexcept {
    Impl &m = *impl_;
    m.now = now;
    m.out = &out;
    if (m.finished) {
        ++m.dropped_events;
        return;
    }
    m.guarded([&] { std::visit([&](const auto &e) { m.on_event(e); }, ev); });
}

CommandResult Core::command(const Command &cmd, TimePoint now, std::vector<Action> &out) noexcept {
    Impl &m = *impl_;
    m.now = now;
    m.out = &out;
    if (m.finished) return {CommandOutcome::ShuttingDown, "vigild is exiting"};
    CommandResult r{CommandOutcome::ShuttingDown, "internal error: the command was dropped"};
    m.guarded([&] { r = m.command(cmd); });
    return r;
}

CommandResult Core::roll(std::string_view unit, std::optional<std::uint32_t> max_unavailable,
                         std::string_view who, TimePoint now, std::vector<Action> &out) noexcept {
    Impl &m = *impl_;
    m.now = now;
    m.out = &out;
    if (m.finished) return {CommandOutcome::ShuttingDown, "vigild is exiting"};
    CommandResult r{CommandOutcome::ShuttingDown, "internal error: the command was dropped"};
    m.guarded([&] {
        r = m.roll_command(unit, max_unavailable, who.empty() ? "unknown" : std::string(who));
    });
    return r;
}

std::optional<RollStatus> Core::roll_status(std::string_view unit) const {
    auto it = impl_->rolls.find(unit);
    if (it == impl_->rolls.end()) return std::nullopt;
    for (ChildId c : it->second.order)
        if (impl_->valid(c) && impl_->unit_of(c) == unit)
            if (auto s = impl_->roll_status(c)) {
                s->in_step = false;
                return s;
            }
    return std::nullopt;
}

std::vector<CommandResult> Core::restart(std::span<const ChildId> children, std::string_view who,
                                         TimePoint now, std::vector<Action> &out) noexcept {
    Impl &m = *impl_;
    m.now = now;
    m.out = &out;
    std::vector<CommandResult> r;
    try {
        r.assign(children.size(),
                 {CommandOutcome::ShuttingDown,
                  m.finished ? "vigild is exiting" : "internal error: the command was dropped"});
    } catch (...) {
        ++m.internal_errors;
        return {};
    }
    if (m.finished) return r;
    m.guarded([&] { r = m.restart_set(children, std::string(who)); });
    return r;
}

void Core::forget(ChildId child) noexcept {
    Impl &m = *impl_;
    if (!m.valid(child)) return;
    auto &n = m.node(child);
    if (n.gone) n.history.reset(); // its records stay in the global history
    if (n.gone) n.forgotten = true;
}

void Core::note(ChildId child, Cause cause, std::string message, TimePoint now,
                std::vector<Action> &out) {
    Impl &m = *impl_;
    if (!m.valid(child)) return;
    m.now = now;
    m.out = &out;
    m.publish(child, RecordKind::Notice, std::move(message), Facts{cause});
}

ReconfigureResult Core::reconfigure(TreeSpec next, TimePoint now,
                                    std::vector<Action> &out) noexcept {
    Impl &m = *impl_;
    m.now = now;
    m.out = &out;
    ReconfigureResult r;
    if (m.finished) return r;
    m.guarded([&] { r = m.reconfigure(std::move(next)); });
    return r;
}

std::optional<TimePoint> Core::next_deadline() const noexcept {
    if (impl_->deadlines.empty() || impl_->finished) return std::nullopt;
    return impl_->deadlines.top().when;
}

std::vector<ChildId> Core::waiting_for(ChildId id) const {
    return impl_->waiting_for(id);
}

std::size_t Core::size() const noexcept {
    return impl_->nodes.size();
}

ChildStatus Core::status(ChildId id) const noexcept {
    return impl_->status(id);
}

std::optional<ChildId> Core::find(std::string_view name) const noexcept {
    auto it = impl_->by_name.find(name);
    if (it == impl_->by_name.end()) return std::nullopt;
    return it->second;
}

const ChildSpec &Core::spec(ChildId id) const noexcept {
    static const ChildSpec none{};
    if (!impl_->valid(id)) return none;
    return impl_->nodes[id.value].spec;
}

std::vector<Record> Core::history(std::optional<ChildId> child, std::size_t max) const {
    if (!child) return impl_->global.last(max);
    if (!impl_->valid(*child) || !impl_->nodes[child->value].history) return {};
    return impl_->nodes[child->value].history->last(max);
}

bool Core::finished() const noexcept {
    return impl_->finished;
}

std::size_t Core::restarts_in_window(ChildId supervisor, TimePoint now) const noexcept {
    if (!impl_->valid(supervisor)) return 0;
    const Node &n = impl_->node(supervisor);
    return n.intensity.in_window(now, n.spec.period);
}

std::uint64_t Core::dropped_events() const noexcept {
    return impl_->dropped_events;
}

std::uint64_t Core::internal_errors() const noexcept {
    return impl_->internal_errors;
}

} // namespace vigil::core

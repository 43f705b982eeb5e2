// control_api.cpp: see control_api.hpp.
#include "control_api.hpp"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <memory>
#include <unordered_map>

#include "checks_view.hpp"
#include "status_view.hpp"
#include "vigil/unit/values.hpp"

namespace vigil::daemon {

namespace {

ctl::Json log_json(const log::RingLine &l, std::string_view unit) {
    return {{"unit", std::string(unit)},
            {"seq", l.seq},
            {"time", l.wall},
            {"stream", l.stream == log::Stream::Stderr ? "stderr" : "stdout"},
            {"line", std::string(l.text)},
            {"continued", l.continued}};
}

core::CommandKind command_kind(ctl::Cmd c) {
    if (c == ctl::Cmd::Start) return core::CommandKind::Start;
    if (c == ctl::Cmd::Stop) return core::CommandKind::Stop;
    if (c == ctl::Cmd::Restart) return core::CommandKind::Restart;
    return core::CommandKind::Signal;
}

} // namespace

ControlApi::ControlApi(Shell &shell)
    : shell_(shell), mono0_(shell.os().now()), wall0_(shell.os().wall_ms()) {
    shell_.set_listener(this);
}

ControlApi::~ControlApi() {
    shell_.set_listener(nullptr);
}

ctl::Json ControlApi::record_json(const core::Record &r) {
    return ctl::record_json(r, mono0_, wall0_);
}

void ControlApi::handle(const ctl::ResponderPtr &peer, const ctl::Request &q) {
    using ctl::Cmd;
    bool failed = false;
    switch (q.cmd) {
    case Cmd::Version:
        version(peer, q);
        return;
    case Cmd::Status: {
        auto ids = targets(peer, q, ctl::Expand::Subtree, &failed);
        // The detail (a history scan per unit) only for one unit, what `status NAME` shows:
        // `status root` with detail must not cost the loop a scan of every unit.
        if (failed) return;
        if (q.detail && ids.size() == 1)
            peer->reply(q.id, status_json(shell_, ids, true));
        else
            peer->reply_encoded(q.id, status_encoded(shell_, ids, q.brief)); // no JSON tree
        return;
    }
    case Cmd::Tree:
        peer->reply(q.id, ctl::tree_json(shell_.core(), shell_.os().now()));
        return;
    case Cmd::Checks: {
        auto ids = targets(peer, q, ctl::Expand::Subtree, &failed);
        if (!failed) peer->reply(q.id, checks_json(shell_, ids));
        return;
    }
    case Cmd::Check:
        check(peer, q);
        return;
    case Cmd::Start:
    case Cmd::Stop:
    case Cmd::Restart:
    case Cmd::Signal:
        commands(peer, q);
        return;
    case Cmd::Reload:
        reload(peer, q);
        return;
    case Cmd::Events:
        events(peer, q);
        return;
    case Cmd::Logs:
        logs(peer, q);
        return;
    case Cmd::Reexec: {
        Shell::ReexecClient client{[peer] { return peer->fd(); }, q.id.dump()};
        shell_.reexec("vigilctl (" + peer->who() + ")", std::move(client),
                      [peer, id = q.id](const std::string &why) {
                          peer->error(id, ctl::ErrorCode::Invalid,
                                      "reexec: " + why + "; vigild goes on as before");
                      });
        return;
    }
    case Cmd::Shutdown:
        peer->reply(q.id, {{"shutting_down", true}});
        shell_.command(core::Command{core::CommandKind::Shutdown, root_id, 0,
                                     "vigilctl (" + peer->who() + ")"});
        return;
    }
    peer->error(q.id, ctl::ErrorCode::UnknownCommand, "unknown command");
}

void ControlApi::version(const ctl::ResponderPtr &peer, const ctl::Request &q) {
    std::size_t units = 0; // the root is not a unit; removed ones are not counted
    for (std::uint32_t i = 1; i < shell_.core().size(); ++i)
        units += !shell_.core().status(ChildId{i}).removed;
    ctl::Json v{{"server", VIGIL_VERSION},
                {"protocol", ctl::protocol_version},
                {"version", VIGIL_VERSION},
                {"pid", shell_.os().self_pid()},
                {"units", units},
                {"orphans_reaped", shell_.orphans_reaped()},
                {"loop_stall_max_ms", double(shell_.os().loop_stall_max_us()) / 1000}};
    // Answered by a re-exec's stand-in: the state as it was when the re-exec began.
    if (shell_.os().standing_in()) v["stand_in"] = true;
    peer->reply(q.id, v);
}

std::vector<ChildId> ControlApi::targets(const ctl::ResponderPtr &peer, const ctl::Request &q,
                                         ctl::Expand expand, bool *failed) {
    return targets(peer, q.id, q.units, expand, failed);
}

std::vector<ChildId> ControlApi::targets(const ctl::ResponderPtr &peer, const ctl::Json &qid,
                                         const std::vector<std::string> &patterns,
                                         ctl::Expand expand, bool *failed) {
    std::string err, unmatched;
    std::vector<ChildId> ids = ctl::resolve_targets(
        shell_.core(), patterns, &err, expand, [this](ChildId id) { return unit_of(id); },
        &unmatched);
    *failed = !err.empty();
    if (*failed) {
        if (std::string near = suggestion(unmatched); !near.empty())
            err += "; did you mean '" + near + "'?";
        peer->error(qid, ctl::ErrorCode::NotFound, err);
    }
    return ids;
}

// The stem of the child's unit file when it differs from the child's name: web@1 and web@2
// come from web.json. A unit file named web@3.json is a unit of its own (its stem is its name).
std::string_view ControlApi::unit_of(ChildId id) const {
    const unit::Unit &u = shell_.unit(id);
    std::string_view f = u.file;
    if (auto slash = f.rfind('/'); slash != std::string_view::npos) f.remove_prefix(slash + 1);
    if (!f.ends_with(".json")) return {};
    f.remove_suffix(5);
    return f == u.name ? std::string_view{} : f;
}

// The existing name (a child's or an instanced unit's) a mistyped name most likely meant.
// Globs get none: a glob that matches nothing is not a typo of one name.
std::string ControlApi::suggestion(const std::string &pattern) const {
    if (pattern.empty() || ctl::is_glob(pattern)) return "";
    std::vector<std::string_view> names;
    for (std::uint32_t i = 1; i < shell_.core().size(); ++i) {
        if (shell_.core().status(ChildId{i}).removed) continue;
        names.push_back(shell_.core().spec(ChildId{i}).name);
        if (std::string_view u = unit_of(ChildId{i}); !u.empty()) names.push_back(u);
    }
    return unit::closest(pattern, names);
}

std::vector<ChildId> ControlApi::stream_targets(const ctl::ResponderPtr &peer,
                                                const ctl::Request &q, bool *every, bool *failed) {
    *every = q.units.empty();
    *failed = false;
    if (*every) return {};
    std::vector<ChildId> ids = targets(peer, q.id, q.units, ctl::Expand::Subtree, failed);
    if (*failed) return {};
    if (ids.size() > max_stream_units) {
        *failed = true;
        peer->error(q.id, ctl::ErrorCode::Invalid,
                    "the units named match " + std::to_string(ids.size()) + " units; " +
                        ctl::to_string(q.cmd) + " reads at most " +
                        std::to_string(max_stream_units) +
                        " named at once: name fewer, or none for every unit");
        return {};
    }
    std::sort(ids.begin(), ids.end());
    return ids;
}

// start covers a supervisor's subtree, so `start app` also starts the children that were
// stopped one by one (running ones answer "already running"); signal reaches the services.
void ControlApi::commands(const ctl::ResponderPtr &peer, const ctl::Request &q) {
    if (shell_.exit_status()) {
        peer->error(q.id, ctl::ErrorCode::ShuttingDown, "vigild is exiting");
        return;
    }
    if (q.rolling) {
        roll(peer, q);
        return;
    }
    const ctl::Expand expand = q.cmd == ctl::Cmd::Signal  ? ctl::Expand::Services
                               : q.cmd == ctl::Cmd::Start ? ctl::Expand::Subtree
                                                          : ctl::Expand::Named;
    bool failed = false;
    auto ids = targets(peer, q, expand, &failed);
    if (failed) return;
    const std::string who = "vigilctl (" + peer->who() + ")";
    ctl::Json results = ctl::Json::array();
    if (q.cmd == ctl::Cmd::Restart && ids.size() > 1) {
        // One command, so the core stops them in reverse start order and starts them in order.
        const std::vector<core::CommandResult> rs = shell_.restart(ids, who);
        for (std::size_t i = 0; i < ids.size() && i < rs.size(); ++i)
            results.push_back(ctl::command_result_json(shell_.core().spec(ids[i]).name, rs[i]));
        peer->reply(q.id, {{"results", std::move(results)}});
        return;
    }
    for (ChildId id : ids) {
        core::CommandResult r =
            shell_.command(core::Command{command_kind(q.cmd), id, q.signal, who});
        results.push_back(ctl::command_result_json(shell_.core().spec(id).name, r));
    }
    peer->reply(q.id, {{"results", std::move(results)}});
}

// restart --rolling: one unit's name (its instances, or itself without instances). The answer
// comes at once, with the roll's status (its id) for the client to follow through status.
void ControlApi::roll(const ctl::ResponderPtr &peer, const ctl::Request &q) {
    const std::string &unit = q.units.front();
    const core::Core &core = shell_.core();
    std::uint32_t instances = 0;
    for (std::uint32_t i = 1; i < core.size(); ++i) {
        const core::ChildSpec &s = core.spec(ChildId{i});
        const std::string &u = s.unit.empty() ? s.name : s.unit;
        if (s.kind == core::Kind::Service && u == unit && !core.status(ChildId{i}).removed)
            ++instances;
    }
    if (instances == 0) {
        std::string msg = "no unit named '" + unit + "' to roll";
        if (std::string near = suggestion(unit); !near.empty())
            msg += "; did you mean '" + near + "'?";
        peer->error(q.id, ctl::ErrorCode::NotFound, msg + " (see: vigilctl status)");
        return;
    }
    if (q.max_unavailable && *q.max_unavailable > instances) {
        peer->error(q.id, ctl::ErrorCode::Invalid,
                    unit + " has " + std::to_string(instances) + " instance" +
                        (instances == 1 ? "" : "s") + "; --max-unavailable may be 1 to " +
                        std::to_string(instances));
        return;
    }
    const core::CommandResult r =
        shell_.roll(unit, q.max_unavailable, "vigilctl (" + peer->who() + ")");
    ctl::Json roll = nullptr;
    const bool under_way =
        r.outcome == core::CommandOutcome::Ok || r.outcome == core::CommandOutcome::AlreadyRunning;
    if (auto st = shell_.core().roll_status(unit); st && under_way) roll = ctl::roll_json(*st);
    ctl::Json results = ctl::Json::array();
    results.push_back(ctl::command_result_json(unit, r));
    peer->reply(q.id, {{"results", std::move(results)}, {"roll", std::move(roll)}});
}

// One probe of one unit, now; answered when its check completes (or is cancelled because the
// incarnation ended). The peer may be gone by then: the answer is then dropped.
void ControlApi::check(const ctl::ResponderPtr &peer, const ctl::Request &q) {
    bool failed = false;
    auto ids = targets(peer, q.id, {q.unit}, ctl::Expand::Services, &failed);
    if (failed) return;
    if (ids.size() != 1) {
        peer->error(q.id, ctl::ErrorCode::Invalid,
                    "'" + q.unit + "' matches " + std::to_string(ids.size()) +
                        " units; check runs a probe of one unit: name it");
        return;
    }
    const ChildId id = ids[0];
    const std::string &name = shell_.core().spec(id).name;
    const auto probes = probes_of(shell_.unit(id));
    auto it = std::find_if(probes.begin(), probes.end(),
                           [&](const NamedProbe &p) { return p.name == q.probe; });
    if (it == probes.end()) {
        std::vector<std::string_view> names;
        std::string list;
        for (const NamedProbe &p : probes) {
            names.push_back(p.name);
            list += (list.empty() ? "" : ", ") + std::string(p.name);
        }
        std::string msg = name + " has no probe '" + q.probe + "'";
        msg += probes.empty() ? "; it has no probes" : "; its probes: " + list;
        if (std::string near = unit::closest(q.probe, names); !near.empty())
            msg += "; did you mean '" + near + "'?";
        peer->error(q.id, ctl::ErrorCode::NotFound, msg);
        return;
    }
    check_run(peer, q, id, *it);
}

void ControlApi::check_run(const ctl::ResponderPtr &peer, const ctl::Request &q, ChildId id,
                           const NamedProbe &np) {
    const std::string &name = shell_.core().spec(id).name;
    probe::Prober *p = running_prober(shell_, id, np.role);
    if (!p) {
        peer->error(q.id, ctl::ErrorCode::Invalid, name + " is not running: its probes do not run");
        return;
    }
    std::weak_ptr<ctl::Responder> weak = peer;
    auto done = [weak, qid = q.id, unit = name,
                 probe = std::string(np.name)](const probe::CheckResult &r, std::uint64_t took) {
        if (auto to = weak.lock())
            to->reply(qid, {{"unit", unit},
                            {"probe", probe},
                            {"ok", r.ok},
                            {"message", r.detail},
                            {"duration_ms", took}});
    };
    if (p->run_now(done)) return;
    if (!p->running()) {
        const bool gated = np.role != "startup" && shell_.unit(id).startup;
        peer->error(q.id, ctl::ErrorCode::Invalid,
                    name + "'s " + std::string(np.name) + " probe does not run now" +
                        (gated                  ? ": it starts once the startup probe passes"
                         : np.role == "startup" ? ": the startup probe has passed"
                                                : ""));
        return;
    }
    peer->error(q.id, ctl::ErrorCode::Invalid,
                name + "'s " + std::string(np.name) + " probe already has " +
                    std::to_string(probe::Prober::max_run_waiters) +
                    " requests waiting for its check; try again when they are answered");
}

// Answered once the units directory has been loaded off the loop and applied.
void ControlApi::reload(const ctl::ResponderPtr &peer, const ctl::Request &q) {
    std::weak_ptr<ctl::Responder> weak = peer;
    shell_.reload("vigilctl (" + peer->who() + ")",
                  [weak, id = q.id](const Shell::ReloadOutcome &o) {
                      auto p = weak.lock();
                      if (!p) return;
                      if (!o.diagnostics.empty()) {
                          p->error(id, ctl::ErrorCode::Invalid,
                                   unit::count_problems(o.problems) +
                                       " in the unit files; the running configuration is kept",
                                   ctl::reload_json({}, o.diagnostics));
                          return;
                      }
                      p->reply(id, ctl::reload_json(o.result, {}));
                  });
}

void ControlApi::events(const ctl::ResponderPtr &peer, const ctl::Request &q) {
    bool every = false, failed = false;
    std::vector<ChildId> children = stream_targets(peer, q, &every, &failed); // empty: every
    if (failed) return;
    const std::size_t n = q.lines.value_or(50);
    std::vector<core::Record> shown;
    if (children.size() <= 1) {
        std::optional<ChildId> child;
        if (!children.empty()) child = children[0];
        shown = shell_.core().history(child, n);
    } else {
        // Each unit's last n, merged by time: the last n of the merge are the units' last n.
        for (ChildId c : children) {
            std::vector<core::Record> h = shell_.core().history(c, n);
            std::move(h.begin(), h.end(), std::back_inserter(shown));
        }
        std::stable_sort(shown.begin(), shown.end(),
                         [](const core::Record &x, const core::Record &y) { return x.at < y.at; });
        if (shown.size() > n) shown.erase(shown.begin(), shown.end() - static_cast<long>(n));
    }
    if (q.since) // records carry the monotonic time; vigild's wall clock maps it
        std::erase_if(shown, [&](const core::Record &r) {
            return wall0_ + (r.at - mono0_).count() < *q.since;
        });
    for (const core::Record &r : shown)
        if (!peer->stream(q.id, record_json(r))) return; // the connection is closing
    if (!q.follow) {
        peer->end(q.id);
        return;
    }
    make_room();
    events_.push_back({peer, q.id, std::move(children)});
    drop_on_close(peer);
}

void ControlApi::logs(const ctl::ResponderPtr &peer, const ctl::Request &q) {
    bool every = false, failed = false;
    std::vector<ChildId> ids = stream_targets(peer, q, &every, &failed);
    if (failed) return;
    if (every)
        for (std::uint32_t i = 1; i < shell_.core().size(); ++i)
            if (!shell_.core().status(ChildId{i}).removed) ids.push_back(ChildId{i});
    if (q.reopen) {
        reopen(peer, q, ids);
        return;
    }
    std::vector<ChildId> services;
    for (ChildId id : ids)
        if (shell_.core().spec(id).kind == core::Kind::Service) services.push_back(id);
    const std::uint64_t seen = shell_.last_log_seq(); // before anything is sent
    bool open = true;
    stored_lines(peer, q, services, &open);
    if (!open) return; // the connection is closing
    if (!q.follow || (!every && services.empty())) {
        peer->end(q.id);
        return;
    }
    make_room();
    logs_.push_back(
        {peer, q.id, every ? std::vector<ChildId>{} : std::move(services), every, seen});
    drop_on_close(peer);
}

// The last n lines of the units together: a merge that walks the rings back from their newest
// lines, taking the highest sequence number each time, so it costs O(n log units), not
// units x n. A ring's lines older than `since` end its walk (vigild stamps lines with its wall
// clock as they come, so they are in time order unless the clock was set back).
void ControlApi::stored_lines(const ctl::ResponderPtr &peer, const ctl::Request &q,
                              const std::vector<ChildId> &services, bool *open) {
    struct Cursor {
        const log::Ring *ring;
        std::size_t next; // lines taken from the back so far
        ChildId child;
        std::uint64_t seq() const { return ring->from_back(next).seq; }
    };
    const std::size_t n = q.lines.value_or(100);
    auto fresh = [&](const Cursor &c) {
        return c.next < c.ring->size() && (!q.since || c.ring->from_back(c.next).wall >= *q.since);
    };
    auto lower = [](const Cursor &a, const Cursor &b) { return a.seq() < b.seq(); };
    std::vector<Cursor> heap;
    for (ChildId id : services)
        if (const UnitRuntime *r = shell_.runtime_if(id); r && r->log)
            if (Cursor c{&r->log->ring(), 0, id}; fresh(c)) heap.push_back(c);
    std::make_heap(heap.begin(), heap.end(), lower);
    std::vector<std::pair<log::RingLine, ChildId>> shown; // newest first
    while (shown.size() < n && !heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), lower);
        Cursor &c = heap.back();
        shown.emplace_back(c.ring->from_back(c.next++), c.child);
        if (fresh(c))
            std::push_heap(heap.begin(), heap.end(), lower);
        else
            heap.pop_back();
    }
    for (auto it = shown.rbegin(); it != shown.rend(); ++it)
        if (!peer->stream(q.id, log_json(it->first, shell_.core().spec(it->second).name))) {
            *open = false;
            return;
        }
}

// Every matched service's log file is reopened; the answer comes when all are done, with the
// first failure if any.
void ControlApi::reopen(const ctl::ResponderPtr &peer, const ctl::Request &q,
                        const std::vector<ChildId> &ids) {
    struct Pending {
        std::size_t left = 0;
        std::string error;
    };
    auto pending = std::make_shared<Pending>();
    std::weak_ptr<ctl::Responder> weak = peer;
    std::string names;
    for (const std::string &u : q.units)
        names += (names.empty() ? "" : " ") + u;
    auto done = [weak, pending, qid = q.id, unit = q.units.empty() ? "*" : names] {
        auto p = weak.lock();
        if (!p) return;
        if (!pending->error.empty())
            p->error(qid, ctl::ErrorCode::Internal, pending->error);
        else
            p->reply(qid, {{"reopened", unit}});
    };
    std::vector<ChildId> with_log;
    for (ChildId id : ids)
        if (const UnitRuntime *r = shell_.runtime_if(id); r && r->log) with_log.push_back(id);
    pending->left = with_log.size();
    if (with_log.empty()) {
        done();
        return;
    }
    for (ChildId id : with_log) {
        shell_.runtime(id).log->reopen([pending, done, name = shell_.core().spec(id).name](
                                           int err, const std::string &message) {
            if (err != 0 && pending->error.empty())
                pending->error = "cannot reopen the log file of " + name + ": " + message;
            if (--pending->left == 0) done();
        });
    }
}

// At most max_followers: the oldest is ended (its client sees the end of its stream).
void ControlApi::make_room() {
    while (events_.size() + logs_.size() >= max_followers) {
        std::weak_ptr<ctl::Responder> oldest;
        ctl::Json id;
        if (!events_.empty()) {
            oldest = events_.front().peer;
            id = events_.front().id;
            events_.pop_front();
        } else {
            oldest = logs_.front().peer;
            id = logs_.front().id;
            logs_.pop_front();
        }
        if (auto p = oldest.lock()) p->end(id);
    }
}

// Followers go as soon as their connection closes, not at the next item.
void ControlApi::drop_on_close(const ctl::ResponderPtr &peer) {
    peer->on_close([this, raw = peer.get()] {
        auto gone = [raw](const auto &f) {
            auto p = f.peer.lock();
            return !p || p.get() == raw;
        };
        std::erase_if(events_, gone);
        std::erase_if(logs_, gone);
    });
}

void ControlApi::record(const core::Record &r) {
    if (events_.empty()) return;
    const std::string item = ctl::encode_item(record_json(r)); // once for every follower
    std::erase_if(events_, [&](const EventFollower &f) {
        auto p = f.peer.lock();
        if (!p || !p->open()) return true;
        if (!f.children.empty() &&
            !std::binary_search(f.children.begin(), f.children.end(), r.child))
            return false;
        return !p->stream_encoded(f.id, item);
    });
}

void ControlApi::lines(ChildId child) {
    if (logs_.empty()) return;
    const UnitRuntime *r = shell_.runtime_if(child);
    if (!r || !r->log) return;
    const std::string &name = shell_.core().spec(child).name;
    // Followers usually stand at the same line: each line is encoded once.
    std::unordered_map<std::uint64_t, std::string> encoded;
    auto encode = [&](const log::RingLine &l) -> const std::string & {
        auto [it, added] = encoded.try_emplace(l.seq);
        if (added) it->second = ctl::encode_item(log_json(l, name));
        return it->second;
    };
    std::erase_if(logs_, [&](LogFollower &f) {
        auto p = f.peer.lock();
        if (!p || !p->open()) return true;
        if (!f.every && !std::binary_search(f.children.begin(), f.children.end(), child))
            return false;
        for (const log::RingLine &l : r->log->ring().after(f.seen)) {
            if (!p->stream_encoded(f.id, encode(l))) return true;
            f.seen = l.seq;
        }
        return false;
    });
}

void ControlApi::released(ChildId child) {
    std::erase_if(logs_, [child](LogFollower &f) {
        auto it = std::lower_bound(f.children.begin(), f.children.end(), child);
        if (f.every || it == f.children.end() || *it != child) return false;
        f.children.erase(it);
        if (!f.children.empty()) return false;
        if (auto p = f.peer.lock()) p->end(f.id); // its units are gone: end the stream
        return true;
    });
}

void ControlApi::close() {
    events_.clear();
    logs_.clear();
}

} // namespace vigil::daemon

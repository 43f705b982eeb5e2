// control_api.cpp: see control_api.hpp.
#include "control_api.hpp"

#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "status_view.hpp"

namespace vigil::daemon {

namespace {

ctl::Json log_json(const log::RingLine &l) {
    return {{"seq", l.seq},
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
        if (!failed) peer->reply(q.id, status_json(shell_, ids));
        return;
    }
    case Cmd::Tree:
        peer->reply(q.id, ctl::tree_json(shell_.core(), shell_.os().now()));
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
    peer->reply(q.id, {{"server", VIGIL_VERSION},
                       {"protocol", ctl::protocol_version},
                       {"version", VIGIL_VERSION},
                       {"pid", shell_.os().self_pid()},
                       {"units", units},
                       {"orphans_reaped", shell_.orphans_reaped()},
                       {"loop_stall_max_ms", double(shell_.os().loop_stall_max_us()) / 1000}});
}

std::vector<ChildId> ControlApi::targets(const ctl::ResponderPtr &peer, const ctl::Request &q,
                                         ctl::Expand expand, bool *failed) {
    std::string err;
    std::vector<ChildId> ids = ctl::resolve_targets(shell_.core(), q.units, &err, expand);
    *failed = !err.empty();
    if (*failed) peer->error(q.id, ctl::ErrorCode::NotFound, err);
    return ids;
}

// start covers a supervisor's subtree, so `start app` also starts the children that were
// stopped one by one (running ones answer "already running"); signal reaches the services.
void ControlApi::commands(const ctl::ResponderPtr &peer, const ctl::Request &q) {
    if (shell_.exit_status()) {
        peer->error(q.id, ctl::ErrorCode::ShuttingDown, "vigild is exiting");
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
    for (ChildId id : ids) {
        core::CommandResult r =
            shell_.command(core::Command{command_kind(q.cmd), id, q.signal, who});
        results.push_back(ctl::command_result_json(shell_.core().spec(id).name, r));
    }
    peer->reply(q.id, {{"results", std::move(results)}});
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
    std::optional<ChildId> child;
    if (!q.unit.empty()) {
        child = shell_.core().find(q.unit);
        if (!child) {
            peer->error(q.id, ctl::ErrorCode::NotFound, "no unit named '" + q.unit + "'");
            return;
        }
    }
    for (const core::Record &r : shell_.core().history(child, q.lines.value_or(50)))
        peer->stream(q.id, record_json(r));
    if (!q.follow) {
        peer->end(q.id);
        return;
    }
    make_room();
    events_.push_back({peer, q.id, child});
    drop_on_close(peer);
}

void ControlApi::logs(const ctl::ResponderPtr &peer, const ctl::Request &q) {
    std::optional<ChildId> id = shell_.core().find(q.unit);
    if (!id || shell_.core().status(*id).removed) {
        peer->error(q.id, ctl::ErrorCode::NotFound, "no unit named '" + q.unit + "'");
        return;
    }
    const UnitRuntime *r = shell_.runtime_if(*id);
    if (q.reopen) {
        if (!r || !r->log) {
            peer->reply(q.id, {{"reopened", q.unit}});
            return;
        }
        std::weak_ptr<ctl::Responder> weak = peer;
        shell_.runtime(*id).log->reopen(
            [weak, qid = q.id, unit = q.unit](int err, const std::string &message) {
                auto p = weak.lock();
                if (!p) return;
                if (err != 0)
                    p->error(qid, ctl::ErrorCode::Internal,
                             "cannot reopen the log file of " + unit + ": " + message);
                else
                    p->reply(qid, {{"reopened", unit}});
            });
        return;
    }
    std::uint64_t last = 0;
    if (r && r->log) {
        for (const log::RingLine &l : r->log->ring().last(q.lines.value_or(100))) {
            peer->stream(q.id, log_json(l));
            last = l.seq;
        }
        if (last == 0) last = r->log->ring().last_seq();
    }
    if (!q.follow) {
        peer->end(q.id);
        return;
    }
    make_room();
    logs_.push_back({peer, q.id, *id, last});
    drop_on_close(peer);
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
        if (f.child && *f.child != r.child) return false;
        return !p->stream_encoded(f.id, item);
    });
}

void ControlApi::lines(ChildId child) {
    if (logs_.empty()) return;
    const UnitRuntime *r = shell_.runtime_if(child);
    if (!r || !r->log) return;
    // Followers of one unit usually stand at the same line: each line is encoded once.
    std::unordered_map<std::uint64_t, std::string> encoded;
    auto encode = [&](const log::RingLine &l) -> const std::string & {
        auto [it, added] = encoded.try_emplace(l.seq);
        if (added) it->second = ctl::encode_item(log_json(l));
        return it->second;
    };
    std::erase_if(logs_, [&](LogFollower &f) {
        auto p = f.peer.lock();
        if (!p || !p->open()) return true;
        if (f.child != child) return false;
        for (const log::RingLine &l : r->log->ring().after(f.last_seq)) {
            if (!p->stream_encoded(f.id, encode(l))) return true;
            f.last_seq = l.seq;
        }
        return false;
    });
}

void ControlApi::released(ChildId child) {
    std::erase_if(logs_, [child](const LogFollower &f) {
        if (f.child != child) return false;
        if (auto p = f.peer.lock()) p->end(f.id); // the unit is gone: end the stream
        return true;
    });
}

void ControlApi::close() {
    events_.clear();
    logs_.clear();
}

} // namespace vigil::daemon

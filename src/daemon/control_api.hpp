// control_api.hpp: what vigild answers on its control socket (vigil/ctl/protocol.hpp has the
// protocol, vigil/ctl/server.hpp the connections and their limits).
//
// Each request is answered from the core (status, tree, events: the one source of truth) or
// turned into core commands (start, stop, restart, signal, shutdown) or a reload (answered when
// the off-loop load is done). `logs` reads the units' rings. `events -f` and `logs -f` make
// followers: they get every new record or line until their connection closes; a follower that
// stops reading is disconnected by the server's output caps, and there are at most
// max_followers of them (the oldest is ended to make room).
//
// Unit arguments are patterns (vigil/ctl/shapes.hpp, resolve_targets) in every command, the
// units of logs and events included: a glob, a supervisor (its subtree) or an instanced unit's
// name may stand for several units, and no pattern means every unit. Stored lines are merged
// in the order they came (their sequence numbers are global), stored records by time. Named
// patterns reach at most max_stream_units units, which bounds a follower's list (4 bytes a
// unit); a follower of every unit keeps no list.
//
// A log follower keeps one watermark, the highest sequence number it has been sent, not one
// per unit: every line pushed into a ring is announced (lines(child), from Shell::after_batch)
// in the same loop callback, before any other unit's line is pushed, so the lines a follower
// has not had are exactly those above its watermark.
// The unit an instance was made from is the stem of its unit file ("web" for web@1 of
// web.json), which the shell keeps and the core does not. A name that matches nothing is
// answered with the closest existing name (unit::closest, as the loader suggests fields).
//
// `checks` shows every probe's state (checks_view.hpp); `check` runs one probe now and answers
// when that check completes (Prober::run_now): the answer goes to the peer if it is still
// connected, and nothing is kept for a peer that left.
//
// The requests come through ctl::Responder, the daemon-facing side of a connection, so tests
// drive ControlApi with fake connections (tests/daemon).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "checks_view.hpp"
#include "shell.hpp"
#include "vigil/ctl/responder.hpp"
#include "vigil/ctl/shapes.hpp"

namespace vigil::daemon {

class ControlApi : public ShellListener {
public:
    static constexpr std::size_t max_followers = 1024;
    static constexpr std::size_t max_stream_units = 4096; // units named patterns may reach

    explicit ControlApi(Shell &shell);
    ~ControlApi() override;

    void handle(const ctl::ResponderPtr &peer, const ctl::Request &q);
    // Ends every follower (vigild is exiting).
    void close();
    std::size_t followers() const { return events_.size() + logs_.size(); }

    // ShellListener
    void record(const core::Record &r) override;
    void lines(ChildId child) override;
    void released(ChildId child) override;

private:
    struct EventFollower {
        std::weak_ptr<ctl::Responder> peer;
        ctl::Json id;
        std::vector<ChildId> children; // sorted; empty: every unit's events
    };
    struct LogFollower {
        std::weak_ptr<ctl::Responder> peer;
        ctl::Json id;
        std::vector<ChildId> children; // sorted; empty: every unit. A named set's stream ends
        bool every = false;            // when the last of its units is removed
        std::uint64_t seen = 0;        // the watermark: lines up to it were sent or predate it
    };

    std::vector<ChildId> targets(const ctl::ResponderPtr &peer, const ctl::Request &q,
                                 ctl::Expand expand, bool *failed);
    std::vector<ChildId> targets(const ctl::ResponderPtr &peer, const ctl::Json &qid,
                                 const std::vector<std::string> &patterns, ctl::Expand expand,
                                 bool *failed);
    // The units of logs' and events' patterns (at most max_stream_units), sorted; empty and
    // *every set when the request names none.
    std::vector<ChildId> stream_targets(const ctl::ResponderPtr &peer, const ctl::Request &q,
                                        bool *every, bool *failed);
    // logs' stored lines: the last `n` of the units' rings (from `since` on), in order.
    void stored_lines(const ctl::ResponderPtr &peer, const ctl::Request &q,
                      const std::vector<ChildId> &services, bool *open);
    void reopen(const ctl::ResponderPtr &peer, const ctl::Request &q,
                const std::vector<ChildId> &ids);
    std::string_view unit_of(ChildId id) const;
    std::string suggestion(const std::string &pattern) const;
    void commands(const ctl::ResponderPtr &peer, const ctl::Request &q);
    void roll(const ctl::ResponderPtr &peer, const ctl::Request &q);
    void reload(const ctl::ResponderPtr &peer, const ctl::Request &q);
    void events(const ctl::ResponderPtr &peer, const ctl::Request &q);
    void logs(const ctl::ResponderPtr &peer, const ctl::Request &q);
    void version(const ctl::ResponderPtr &peer, const ctl::Request &q);
    void check(const ctl::ResponderPtr &peer, const ctl::Request &q);
    void check_run(const ctl::ResponderPtr &peer, const ctl::Request &q, ChildId id,
                   const NamedProbe &np);
    void make_room();
    void drop_on_close(const ctl::ResponderPtr &peer);
    ctl::Json record_json(const core::Record &r);

    Shell &shell_;
    std::deque<EventFollower> events_;
    std::deque<LogFollower> logs_;
    // One (monotonic, wall) pair taken at start-up converts every record's time, so a record
    // shows the same wall time in every answer.
    TimePoint mono0_;
    std::int64_t wall0_;
};

} // namespace vigil::daemon

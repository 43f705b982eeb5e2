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
// `unit` of logs and events included: a glob or an instanced unit's name may stand for several
// units, whose stored lines or records are merged by time (logs and events follow at most
// max_stream_units at once, so that one line or record costs a bounded lookup per follower).
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
    static constexpr std::size_t max_stream_units = 256; // units one logs/events request reads

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
    struct Followed {
        ChildId child;
        std::uint64_t last_seq = 0; // the last line of its ring this follower has had
    };
    struct LogFollower {
        std::weak_ptr<ctl::Responder> peer;
        ctl::Json id;
        std::vector<Followed> units; // sorted by child; the stream ends when none is left
    };

    std::vector<ChildId> targets(const ctl::ResponderPtr &peer, const ctl::Request &q,
                                 ctl::Expand expand, bool *failed);
    std::vector<ChildId> targets(const ctl::ResponderPtr &peer, const ctl::Json &qid,
                                 const std::vector<std::string> &patterns, ctl::Expand expand,
                                 bool *failed);
    // The units of logs' and events' `unit` pattern (at most max_stream_units), sorted.
    std::vector<ChildId> stream_targets(const ctl::ResponderPtr &peer, const ctl::Request &q,
                                        bool *failed);
    void reopen(const ctl::ResponderPtr &peer, const ctl::Request &q,
                const std::vector<ChildId> &ids);
    std::string_view unit_of(ChildId id) const;
    std::string suggestion(const std::string &pattern) const;
    void commands(const ctl::ResponderPtr &peer, const ctl::Request &q);
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

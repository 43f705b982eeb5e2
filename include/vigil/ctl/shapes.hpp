// vigil/ctl/shapes.hpp: the JSON objects the control protocol carries, built from the core.
//
// vigild builds answers with these functions and vigilctl renders the same fields, so the
// shapes are defined once. The strings are the protocol's, not the core's: they are part of the
// stable interface scripts rely on (documented in vigilctl(1)).
//
// status object (status_json), everything from core::ChildStatus (the one source of truth):
//   {"name":"web","kind":"service"|"supervisor","parent":"app"|null,
//    "state":"stopped"|"exited"|"starting"|"running"|"stopping"|"backoff","goal":"up"|"down",
//    "pid":1234|null,"spawned_pid":1230|null,"incarnation":3,"since_ms":5000,"restarts":2,
//    "last_exit":null|{"code":1}|{"signal":"SIGTERM","signo":15},
//    "last_cause":"exited"|"spawn_failed"|"liveness"|...,"last_reason":"exec ...: ...",
//    "backoff_ms":800|null,"ready":true,"exiting":false,"status_text":"...",
//    "watchdog_ms":30000|null,"removed":false,"effective_goal":"up"|"down",
//    "held_down_by":"app"|null,"left_behind":[4321,...],"drain_ms":3000|null,
//    "roll":null|{roll}}
//   pid: the main process (MAINPID= may have moved it); spawned_pid: the process vigild spawned
//     (leader of the service's process group);
//   state "exited": stopped after its last incarnation ended by itself and was not restarted
//     (a temporary service that ended, whatever its exit; a transient one that ended
//     normally). It stays in view (status, logs, events, commands by name) with its last_exit
//     until it is started again (`vigilctl start` starts a new incarnation; its supervisor never
//     restarts it by itself) or reload removes its unit;
//   since_ms: milliseconds in the current state (the uptime when running);
//   last_cause, last_reason: why the last incarnation ended or failed to start (core::Cause's
//     spelling, and in words);
//   backoff_ms: time left before the next spawn (state "backoff" only);
//   ready: running, started (ready when it declares readiness) and its readiness probe passing;
//   exiting: the main process ended and vigild waits for its output and leftovers;
//   status_text: the service's last sd_notify STATUS=; watchdog_ms: the armed interval;
//   goal: the child's own goal. A child keeps goal "up" while its supervisor is stopped, so
//     that it comes back with it;
//   effective_goal: where the child is heading: "up" only when its own goal and every
//     ancestor's goal are up. This is what vigilctl shows as "goal up"/"goal down";
//   held_down_by: the top-most ancestor whose goal is down (starting it starts this child
//     again), or null;
//   left_behind: without a cgroup (vigild --no-cgroups, or none to be had), the live processes
//     marked as the service's (VIGIL_UNIT) that a stop cannot reach: they left the process
//     group of its incarnations (setsid(), setpgid()). At most 16, lowest pids first; empty
//     with a cgroup, which holds every process.
//   drain_ms: stopping, and the stop signal waits for the drain (stop.drain): the time left
//     (the service is not ready meanwhile);
//   roll: the current or last rolling restart of the unit, when it went over this instance:
//     {"id":7,"unit":"web","state":"running"|"done"|"stopped","done":2,"total":4,
//      "max_unavailable":1,"in_step":true,"at":"web@3"|null,"reason":"..."}
//     id: 1, 2, ... over vigild's life (a restart --rolling answers with its id); done: the
//     instances replaced (their new incarnation started and ready) or passed over (stopped by
//     command); in_step: this instance is being replaced now; at, reason: where and why a
//     stopped roll stopped (roll_json);
//   vigild adds the shell's counters and "waiting_for" to every object, and with a status
//   request's "detail":true the unit's description, unit_file, command, intensity,
//   last_exit_by, pid_namespace and listen (src/daemon/status_view.hpp says what each holds).
// tree (tree_json): {"root": status + {"children":[status + {"children":[...]}, ...]}},
//   children in start order, units removed by reload left out (exited ones are shown).
// record (record_json), one entry of the core's history, as `events` streams it:
//   {"at_ms":123456,"time":1764150000123?,"unit":"web","child":3,"kind":"exited",
//    "message":"exited with status 1; restart in 100ms (backoff)","cause":"exited",
//    "pid"?:1234,"incarnation"?:2,"exit"?:{"code":1},"signal"?:"SIGTERM","delay_ms"?:100,
//    "subject"?:"liveness http 127.0.0.1:8080/healthz"}
//   at_ms: vigild's monotonic clock; time (present when vigild supplies the wall clock):
//   milliseconds since the Unix epoch. The fields marked ? are present when the record has
//   them: a script reads the cause, the exit, the signal sent, the backoff delay and the probe,
//   pattern or requester (subject) without parsing the message.
// command result (command_result_json): {"unit":"web","outcome":"ok","message":"..."},
//   outcome one of ok, already_running, already_stopped, not_found, not_running, shutting_down.
// reload (reload_json): {"added":[..],"removed":[..],"restarted":[..],"updated":[..],
//   "rolling":[..] (units whose restarted instances are rolled: "update": "rolling"),
//   "diagnostics":["units/web.json:7:14: /restart: expected ..."]}
//
// Unit patterns (resolve_targets): an exact name, an fnmatch(3) glob ("web-*", "db-[12]"), or
// a supervisor's name meaning its subtree. A pattern also matches the name of the unit an
// instance was made from: the instanced unit "web" ("instances": 2) is its children web@1 and
// web@2, by its name or by a glob that matches it ("w*"). Globs never match the root supervisor
// ("root" by its exact name does). Units removed by reload are never matched; ended ones
// (state "exited") are.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vigil/core/core.hpp"
#include "vigil/ctl/protocol.hpp"
#include "vigil/ids.hpp"
#include "vigil/time.hpp"

namespace vigil::ctl {

const char *state_name(core::ChildState s) noexcept;
const char *kind_name(core::Kind k) noexcept;
const char *record_kind_name(core::RecordKind k) noexcept;
const char *outcome_name(core::CommandOutcome o) noexcept;

// {"code":N} or {"signal":"TERM","signo":15}.
Json exit_json(const core::ExitStatus &e);

// `parent` is the parent's name (the ChildStatus only has its id); empty gives null.
// `held_down_by` is the name of the top-most ancestor whose goal is down (empty: none), which
// sets "effective_goal" and "held_down_by".
Json status_json(const core::ChildStatus &s, TimePoint now, std::string_view parent = {},
                 std::string_view held_down_by = {});
Json status_json(const core::Core &core, ChildId id, TimePoint now);
// {"units":[status...]} for the given children, in the order given.
Json status_result_json(const core::Core &core, std::span<const ChildId> ids, TimePoint now);

// The status object written straight to text, for a table of thousands of units (a tree of
// nlohmann objects costs ~25 µs a unit to build, copy and dump). Byte for byte the dump
// (encode_item) of status_json(core, id, now) with these keys added (vigild's counters,
// src/daemon/status_view.hpp): the keys in the sorted order nlohmann writes them, strings
// escaped and invalid UTF-8 replaced as it does (encode_string).
struct StatusExtras {
    std::uint64_t log_lines_failed = 0;
    std::uint64_t forward_dropped = 0;
    std::uint64_t probe_failures = 0;
    std::vector<std::string> waiting_for;
};
// With `brief` (status's "brief" argument, vigil/ctl/protocol.hpp) only the keys a table reads,
// each only when it is not at its default.
void append_status(std::string &out, const core::Core &core, ChildId id, TimePoint now,
                   const StatusExtras &extras, bool brief = false);
// A JSON string as encode_item writes one (quotes included).
void append_json_string(std::string &out, std::string_view s);
Json tree_json(const core::Core &core, TimePoint now);

Json record_json(const core::Record &r);
// Adds "time": the record's wall-clock time, from vigild's wall clock `wall_now_ms` (ms since
// the epoch) at monotonic time `now`.
Json record_json(const core::Record &r, TimePoint now, std::int64_t wall_now_ms);

Json command_result_json(std::string_view unit, const core::CommandResult &r);
// The "roll" object of a status object (above), and of a rolling restart's answer.
Json roll_json(const core::RollStatus &r);
Json reload_json(const core::ReconfigureResult &r, const std::vector<std::string> &diagnostics);

// fnmatch(3) without flags. is_glob: does the pattern contain *, ? or [ ?
bool is_glob(std::string_view pattern) noexcept;
bool glob_match(std::string_view pattern, std::string_view name);

// What a matched supervisor stands for.
enum class Expand : std::uint8_t {
    Named,    // the matched children themselves; a child under a matched supervisor is left
              // out (the supervisor's command covers it): start/stop/restart
    Subtree,  // the matched children and everything under them: status
    Services, // the services at or under the matched children: signal
};

// The tree as resolve_targets sees it; nodes[i] is ChildId{i}, nodes[0] the root.
struct TargetNode {
    std::string_view name;
    core::Kind kind = core::Kind::Service;
    std::span<const ChildId> children; // start order (a view: no copy per request)
    bool removed = false;
    // The unit this child is an instance of ("web" for web@1); empty when it is no instance.
    std::string_view unit = {};
};

// The unit child `id` is an instance of, or empty: vigild knows it from the unit files (the
// core does not). The view must stay valid for the call that uses it.
using UnitOf = std::function<std::string_view(ChildId)>;

// Resolves patterns to children in tree order (depth first, start order), without
// duplicates. An empty pattern list means every child but the root. A pattern that matches
// nothing is an error: returns {} and sets *error ("no unit named 'x'", "no unit matches 'w*'")
// and, when given, *unmatched to that pattern (vigild adds a "did you mean" to the error).
std::vector<ChildId> resolve_targets(std::span<const TargetNode> nodes,
                                     const std::vector<std::string> &patterns, Expand expand,
                                     std::string *error, std::string *unmatched = nullptr);
// The same against a core; `unit_of` (may be empty: no instances) names each child's unit.
std::vector<ChildId> resolve_targets(const core::Core &core,
                                     const std::vector<std::string> &patterns, std::string *error,
                                     Expand expand = Expand::Named, const UnitOf &unit_of = {},
                                     std::string *unmatched = nullptr);

} // namespace vigil::ctl

// src/cli/wait.hpp: when a command that changes units is done (vigilctl waits, like systemctl).
//
// start, stop, restart and reload return once vigild has carried the change out, not when it
// has accepted it. What "carried out" means is decided here, as pure functions of status
// objects (vigil/ctl/shapes.hpp), so that the rules are tested without a vigild:
//  - wait_targets() turns a command's answer (and the status of the units read before the
//    command was sent) into one WaitTarget per unit that the command changed;
//  - judge() compares one target with the unit's status now: done, failed or still waiting,
//    with the words for it;
//  - wait_line() spells a judgement for people ("web: running, ready (2s100ms)").
// vigilctl polls `status` of the targets and asks judge() until every target is done or
// failed, or its --timeout passes (src/cli/main.cpp).
//
// The rules, per unit (incarnation: the unit's run counter, status "incarnation"):
//  - Up (start; reload's added units): done when running and ready (a supervisor: running).
//  - NewUp (restart; reload's restarted units): the same, in an incarnation newer than the
//    one before the command: the old run must have ended and a new one be up.
//  - Down (stop): done when stopped and no longer exiting (vigild has its output and
//    leftovers), or gone (removed).
//  - Roll (restart --rolling): judged on the "roll" objects of the unit's instances (the
//    status of the unit's name), the one with the answer's roll id: done when its state is
//    "done"; failed when it is "stopped" (its reason, and what to run next), when a newer roll
//    of the unit replaced it (a reload), or when no instance is left; else waiting ("rolling
//    restart 2/4").
// Failure is judged only on what happened after the command: a target fails when its unit is
// in backoff or stopped in a newer incarnation than before, or went there from a state it was
// not in before (a start that ended, a spawn that failed, a start timeout: the restart or the
// stop that follows shows it), or when two incarnations passed (one ran and ended between two
// polls), or when its unit is gone. An Up unit held down by a stopped supervisor fails (it
// will not start until that supervisor does), unless the target allows a down goal (reload:
// a unit stopped on purpose stays stopped, which is what reload promises). A unit that ran and
// ended with status 0 on its own (a one-shot task) is done. A Down unit fails when a newer
// incarnation starts (someone started it again). Status objects are untrusted input: missing
// or mistyped fields count as absent, and every text taken from them is put on one line.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "vigil/ctl/protocol.hpp"

namespace vigil::cli {

using Json = nlohmann::json;

enum class Want : std::uint8_t { Up, NewUp, Down, Roll };

struct WaitTarget {
    std::string unit;
    Want want = Want::Up;
    Json before;               // the unit's status object before the command; null: unknown
    bool allow_down = false;   // an effective goal "down" is done, not a failure (reload)
    std::uint64_t roll_id = 0; // Roll: the id of the roll (the answer's "roll")
};

enum class Verdict : std::uint8_t { Waiting, Done, Failed };

struct Judgement {
    Verdict verdict = Verdict::Waiting;
    // Done: "running, ready", "stopped", ...; Failed: "failed to start", ...; Waiting: the
    // change under way: "starting", "restarting", "stopping".
    std::string what;
    // Failed: the reason (vigild's last_reason); Waiting: where it is ("state starting,
    // waiting for readiness"); Done: empty.
    std::string detail;
};

// `now`: the unit's status object now, or null when status no longer lists it. For Roll: an
// array of the status objects of the unit's instances (null or empty: none left).
Judgement judge(const WaitTarget &t, const Json &now);

// The targets of a command's answer (`result` of the reply). `before` is the status result
// read before the command ({"units":[...]}; null or without the unit: unknown).
//  start: results with outcome ok or already_running, Up;
//  restart: results with outcome ok, NewUp; with a "roll" object in the answer (restart
//    --rolling, outcome ok or already_running), one Roll target for its unit and id instead;
//  stop: results with outcome ok or already_stopped, Down;
//  reload: "added" Up and "restarted" NewUp, both allow_down ("updated" changed parameters in
//    place: nothing restarts);
// other commands: none. At most max_wait_targets: the units after those are not waited for.
std::vector<WaitTarget> wait_targets(ctl::Cmd cmd, const Json &result, const Json &before);
inline constexpr std::size_t max_wait_targets = 100'000;

// "web: running, ready (2s100ms)" (Done), "web: still starting after 30s (state starting,
// waiting for readiness)" (Waiting: said when the time is up), "web: failed to start: exec
// pyhton3: No such file or directory; see: vigilctl status web; vigilctl logs web" (Failed).
// No newline. The unit name is put on one line too.
std::string wait_line(const std::string &unit, const Judgement &j, std::int64_t elapsed_ms);

} // namespace vigil::cli

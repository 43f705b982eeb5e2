// vigil/core/event.hpp: the facts the shell reports to the core.
//
// Events are past-tense facts about the OS. The shell turns what it sees (a reaped process, a
// pipe at EOF, a notify datagram, a probe verdict, a log line matching a pattern) into one of
// these and the core decides what follows. Process events carry (ChildId, Incarnation); the core
// drops any whose incarnation is not the child's current one, so a late exit, a reused pid or a
// datagram from a previous run can never touch the wrong run. Commands from people (vigilctl,
// signals to vigild) are not events: they go through Core::command(), which also answers.
#pragma once

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "vigil/ids.hpp"
#include "vigil/time.hpp"

namespace vigil::core {

// How a process ended, as waitpid reported it (proc::decode_wait_status decodes it).
struct ExitStatus {
    bool signaled = false; // true: killed by signal `code`; false: exited with status `code`.
    int code = 0;
    bool core_dumped = false; // signaled only: the kernel wrote a core dump

    static constexpr ExitStatus exited(int status) { return {false, status, false}; }
    static constexpr ExitStatus killed(int signal) { return {true, signal, false}; }
    // The shell convention: the status itself, or 128+N for death by signal N.
    constexpr int shell_code() const { return signaled ? 128 + code : code; }
    friend constexpr bool operator==(ExitStatus, ExitStatus) = default;
};

// The shell carried out a Spawn action and the new program has been exec'd. `pid` is the
// spawned process: the leader of the service's session and process group, and the pid the core
// knows the incarnation by, even after MAINPID= has moved the main role elsewhere.
struct Spawned {
    ChildId child;
    Incarnation incarnation;
    Pid pid;
};

// The shell could not start the program (fork, exec, setuid, env_file... failed). `reason` is
// the rendered message, e.g. "exec /usr/bin/pyhton3: No such file or directory".
struct SpawnFailed {
    ChildId child;
    Incarnation incarnation;
    std::string reason;
};

// A process of the incarnation ended: the spawned process or the main process that MAINPID=
// named (reaped by vigild, or seen ending through a pidfd when it is not vigild's child). Only
// the end of the main process ends the incarnation; it is reported (restart decided) once the
// incarnation has also drained (Drained), or when the stop timeout for what is left has passed.
struct Exited {
    ChildId child;
    Incarnation incarnation;
    Pid pid;
    ExitStatus status;
};

// The incarnation's output pipes reached EOF and, where the service has a cgroup, the cgroup is
// empty: nothing of this run is left that could write. Every line it wrote has been read.
struct Drained {
    ChildId child;
    Incarnation incarnation;
};

// The incarnation reported readiness (sd_notify READY=1, the ready fd, a ready.log line).
struct BecameReady {
    ChildId child;
    Incarnation incarnation;
};

// The readiness probe (or the probe of `ready`) changed its verdict: `ready` moves back and
// forth with it. (The first success of the probe of `ready`, the unit's start condition, also
// comes as BecameReady.)
struct ProbeReadiness {
    ChildId child;
    Incarnation incarnation;
    bool ready;
    std::string detail; // e.g. "readiness http 127.0.0.1:8080/ready: status 503, 3 times"
};

enum class FailureCause : std::uint8_t { Liveness, StartupProbe, Watchdog, Pattern };

// A running incarnation is judged failed although its process lives: the core stops it and
// treats the end as abnormal (restart per strategy, counted in intensity).
struct HealthFailed {
    ChildId child;
    Incarnation incarnation;
    FailureCause cause;
    std::string subject; // what failed: "liveness http 127.0.0.1:8080/healthz", a pattern
    std::string detail;  // e.g. "status 503, 3 times", the matching line
};

// What a fired log pattern asks for (the unit's `patterns[].action`).
enum class PatternAction : std::uint8_t { Restart, Stop, Unhealthy, Event };

// A log pattern fired (its `count` matches within `within`). The core maps the action: restart
// and unhealthy are health failures of the incarnation (reported as this pattern), stop is a
// stop as if commanded, event is a history record.
struct PatternFired {
    ChildId child;
    Incarnation incarnation;
    PatternAction action;
    std::string pattern;
    std::string line; // the line that completed the count (the shell bounds its length)
};

// sd_notify MAINPID=N from a process of the service. `refusal` is what the shell found wrong
// with N from the OS's side (not a process of the service, not alive, vigild itself), or empty.
// The core adds its own reasons (N is another unit's process, the incarnation is ending) and
// either makes N the main process (and asks the shell to watch it) or records the refusal.
struct MainPidReported {
    ChildId child;
    Incarnation incarnation;
    Pid pid;
    std::string refusal;
};

// sd_notify WATCHDOG=1.
struct WatchdogPing {
    ChildId child;
    Incarnation incarnation;
};

// sd_notify WATCHDOG_USEC=: the service moved its own watchdog interval (0: switched off).
struct WatchdogInterval {
    ChildId child;
    Incarnation incarnation;
    Duration interval;
};

// sd_notify STATUS= (text shown by `vigilctl status`; the shell bounds its length) and
// STOPPING=1 (recorded).
struct StatusText {
    ChildId child;
    Incarnation incarnation;
    std::string text;
};
struct StoppingReported {
    ChildId child;
    Incarnation incarnation;
};

// Without a cgroup to hold a service, processes it started can leave its session (setsid) and
// outlive it. After an incarnation ended, the shell looks for processes of the unit that are not
// part of its current run and reports them (empty: none left). Shown by `vigilctl status`.
struct LeftBehind {
    ChildId child;
    std::vector<Pid> pids;
};

// The time returned by Core::next_deadline() has come. The core handles every due deadline.
struct DeadlineReached {};

using Event =
    std::variant<Spawned, SpawnFailed, Exited, Drained, BecameReady, ProbeReadiness, HealthFailed,
                 PatternFired, MainPidReported, WatchdogPing, WatchdogInterval, StatusText,
                 StoppingReported, LeftBehind, DeadlineReached>;

} // namespace vigil::core

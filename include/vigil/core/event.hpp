// vigil/core/event.hpp: the facts the shell reports to the core.
//
// Events are past-tense facts. Process events carry (ChildId, Incarnation[, Pid]); the core
// drops any whose incarnation is not the child's current one, so a late exit or a reused pid
// can never touch the wrong run. Commands from people (vigilctl, signals to vigild) are not
// events: they go through Core::command(), which also returns an answer.
#pragma once

#include <string>
#include <variant>

#include "vigil/ids.hpp"

namespace vigil::core {

// How a process ended, as waitpid reported it.
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

// The shell carried out a Spawn action and the new program has been exec'd.
struct Spawned {
    ChildId child;
    Incarnation inc;
    Pid pid;
};

// The shell could not start the program (fork, exec, setuid... failed). `reason` is the
// rendered message, e.g. "exec /usr/bin/pyhton3: No such file or directory".
struct SpawnFailed {
    ChildId child;
    Incarnation inc;
    std::string reason;
};

// The main process of the incarnation ended (and, per DESIGN §4, its log pipes are drained).
struct Exited {
    ChildId child;
    Incarnation inc;
    Pid pid;
    ExitStatus status;
};

// The incarnation reported readiness (sd_notify READY=1, ready fd, probe or log line).
struct BecameReady {
    ChildId child;
    Incarnation inc;
};

enum class FailureCause : std::uint8_t { Liveness, Watchdog, LogPattern, StartupProbe };

// A running incarnation is judged failed although its process lives: the core stops it and
// treats the end as abnormal (restart per strategy, counted in intensity).
struct HealthFailed {
    ChildId child;
    Incarnation inc;
    FailureCause cause;
    std::string detail; // e.g. "liveness http :8080/healthz: 503 three times"
};

// The time returned by Core::next_deadline() has come. The core handles every due deadline.
struct DeadlineReached {};

using Event =
    std::variant<Spawned, SpawnFailed, Exited, BecameReady, HealthFailed, DeadlineReached>;

} // namespace vigil::core

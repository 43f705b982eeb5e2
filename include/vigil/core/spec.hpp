// vigil/core/spec.hpp: the policy half of a unit, as the supervision core sees it.
//
// The unit loader (src/unit) turns JSON unit files into a `TreeSpec`: a flat node table in
// which node 0 is the root supervisor and every supervisor lists its children in start order
// (the topological order of `after`, ties broken by name). The core never sees JSON, argv,
// environment or file names: those go to proc::SpawnSpec. Everything here is plain data with
// vigil's documented defaults (see man/vigil.unit.5 and docs/defaults.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vigil/core/names.hpp"
#include "vigil/ids.hpp"
#include "vigil/time.hpp"

namespace vigil::core {

enum class Kind : std::uint8_t { Service, Supervisor };
enum class Restart : std::uint8_t { Permanent, Transient, Temporary };
enum class Strategy : std::uint8_t { OneForOne, OneForAll, RestForOne };
enum class AutoShutdown : std::uint8_t { Never, AnySignificant, AllSignificant };

struct StopSpec {
    int signal = sig_term; // sig_kill means OTP brutal_kill: no graceful phase.
    // How long to wait after `signal` before SIGKILL. nullopt means infinity (OTP `infinity`).
    std::optional<Duration> timeout = Duration{10'000};
    // Before `signal`, a running service that has started is marked not ready (status, /readyz)
    // and given this long to finish its requests; its exit ends the wait early. `timeout`
    // counts from the signal. 0: no drain. Not for a service that has not started yet, one
    // stopped after a health failure or a start timeout, or once the tree is being killed.
    Duration drain{0};
};

// What reload does with a unit whose fingerprint changed: restart all its instances at once,
// or roll over them, at most `max_unavailable` down at a time (Core::roll).
enum class Update : std::uint8_t { Restart, Rolling };

struct BackoffSpec {
    Duration initial{100};
    Duration max{30'000};
    double factor = 2.0;
    double jitter = 0.2;          // fraction: the delay is scaled by a factor in [1-j, 1+j].
    Duration reset_after{60'000}; // an incarnation that lived this long resets the delay.
};

struct ChildSpec {
    std::string name; // the unit's name (file stem); "root" for node 0.
    // The unit this child is an instance of: "web" for web@1..web@N, the unit's own name for a
    // unit without instances (empty: the same as `name`). A rolling restart (Core::roll) goes
    // over the live children of one supervisor with this unit, in `instance` order.
    std::string unit;
    int instance = 0; // 1..N for an instance, 0 for a unit without instances
    Update update = Update::Restart;
    int max_unavailable = 1; // rolling restarts: instances down at once (1..instances)
    Kind kind = Kind::Service;
    std::optional<ChildId> parent; // nullopt only for the root.
    std::vector<ChildId> children; // supervisors: children in start order.

    Restart restart = Restart::Permanent;
    bool significant = false;
    StopSpec stop;
    BackoffSpec backoff;

    // Readiness: when true the child counts as started only once it reports ready
    // (sd_notify, ready fd, probe or log line); until then later siblings wait.
    bool wait_ready = false;
    // A child that is not started (spawned, or ready when wait_ready) within this time is a
    // start failure. nullopt: no limit.
    std::optional<Duration> start_timeout;
    // The unit has a readiness probe: once started, the child shows as ready only after the
    // probe's first success, and as not ready whenever the probe fails (ProbeReadiness).
    bool readiness_probe = false;
    // sd_notify watchdog: once the child is up, WATCHDOG=1 must come within this interval
    // (the service may move it with WATCHDOG_USEC=). nullopt: no watchdog.
    std::optional<Duration> watchdog;

    // Siblings this child is ordered after (the unit's `after`, instances expanded). A
    // sequential supervisor needs only the start order; a parallel one starts this child once
    // these have started, and stops them only once this child is down.
    std::vector<ChildId> after;

    // Supervisors only.
    // Start and stop the children concurrently, keeping only the `after` order, instead of
    // one at a time in start order (docs/otp-departures.md, item 42). Strategies, intensity and
    // start-up rollback are unchanged.
    bool parallel = false;
    Strategy strategy = Strategy::OneForOne;
    int intensity = 5;
    Duration period{10'000};
    AutoShutdown auto_shutdown = AutoShutdown::Never;

    // A hash of everything in the unit that is not tree structure (command, env, probes...).
    // Reload restarts a child whose fingerprint changed; equal fingerprints keep the process.
    std::uint64_t fingerprint = 0;
};

struct TreeSpec {
    std::vector<ChildSpec> nodes;                // nodes[0] is the root supervisor.
    std::uint64_t seed = 0x5eed'0f'5171'6111ULL; // jitter generator seed.
};

} // namespace vigil::core

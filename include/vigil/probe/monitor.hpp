// vigil/probe/monitor.hpp: the startup, liveness and readiness probes of one incarnation.
//
// Kubernetes semantics:
//  - With a startup probe, only it runs at first. When it succeeds it stops for good and the
//    liveness and readiness probes start; when it fails (failure_threshold times in a row) the
//    incarnation failed: on_failed(StartupProbe, detail).
//  - A liveness failure is a failure of the incarnation: on_failed(Liveness, detail).
//  - Readiness drives on_ready(true/false), called on changes only (starting from not ready).
//    Without a readiness probe but with a startup probe, startup success means ready
//    (Kubernetes' "no readiness probe: ready once started"). With neither, the Monitor never
//    calls on_ready: readiness comes from elsewhere (notify, ready fd, log line) or is implicit.
// After on_failed the Monitor stops all its probes; the daemon then feeds core::HealthFailed
// and destroys or restarts the Monitor with the next incarnation.
//
// The daemon makes one Monitor per incarnation, start()s it when the process is spawned and
// stop()s (or destroys) it when the incarnation stops, backs off or exits. No probe configured:
// no timer, nothing runs.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "vigil/core/event.hpp"
#include "vigil/probe/prober.hpp"

namespace vigil::probe {

struct MonitorSpecs {
    std::optional<unit::ProbeSpec> startup, liveness, readiness;
    bool empty() const { return !startup && !liveness && !readiness; }
};

// A unit's probes: its startup and liveness probes, and its readiness probe or, without one,
// the probe of `ready: {"probe": ...}` (which then decides readiness the same way).
MonitorSpecs specs_for(const unit::Unit &u);

// What a running Monitor carries across an exec of vigild.
struct MonitorState {
    bool started = false, ready = false;
    std::optional<ProberState> startup, liveness, readiness; // those that were running
};

class Monitor {
public:
    struct Callbacks {
        std::function<void(bool ready)> on_ready;
        std::function<void(core::FailureCause cause, const std::string &detail)> on_failed;
        // Optional: every check of every probe ("startup", "liveness", "readiness").
        std::function<void(const std::string &role, const CheckResult &)> on_checked;
    };

    // `exec` runs the exec probes (see prober.hpp): the daemon passes its spawn function and
    // the unit's SpawnSpec.
    Monitor(uv_loop_s *loop, ExecRegistry &registry, MonitorSpecs specs, Callbacks callbacks,
            ExecSpawn exec = {});
    ~Monitor() = default;
    Monitor(const Monitor &) = delete;
    Monitor &operator=(const Monitor &) = delete;

    void start();
    void stop();
    // Continuity across an exec of vigild: where the probes are, and a start() from there
    // (a probe that was not running when the state was taken starts as start() would).
    MonitorState state() const;
    void resume(const MonitorState &s);

    // True when the Monitor will decide readiness (readiness or startup probe configured).
    bool decides_readiness() const noexcept;
    bool ready() const noexcept { return ready_; }
    bool started() const noexcept { return started_; } // startup probe passed (or none)
    std::uint64_t failures_total() const noexcept;     // failed checks over all probes
    bool running() const noexcept { return running_; }
    // The prober of `role` ("startup", "liveness", "readiness"), or null when the unit has no
    // such probe. For `vigilctl checks` (its state) and `check --run` (Prober::run_now).
    Prober *prober(std::string_view role) noexcept;

private:
    void on_startup_succeeded();
    void fail(core::FailureCause cause, const std::string &detail);
    void set_ready(bool r);
    Prober::Callbacks callbacks_for(const std::string &role);

    Callbacks cb_;
    std::unique_ptr<Prober> startup_, liveness_, readiness_;
    bool running_ = false;
    bool started_ = false;
    bool ready_ = false;
};

} // namespace vigil::probe

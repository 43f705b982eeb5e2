// checks_view.hpp: what `vigilctl checks` shows, and which probe `vigilctl check --run` names.
//
// One row per probe of each unit (startup, liveness, and readiness or, where `ready: {"probe":
// ...}` stands in for it, "ready") and one for its sd_notify watchdog (configured, or armed by
// WATCHDOG_USEC=). A unit with neither has no rows. The shape of a row is in
// vigil/ctl/protocol.hpp (`checks`).
//
// Where the figures come from: a probe's state and counters from its Prober in the current
// incarnation's Monitor (so they restart at zero with each incarnation; "off" and zeros while the
// unit does not run); the watchdog's interval and whether it is armed from the core, its
// keep-alives from the Run; the last failure of each from UnitRuntime::last_failures, which
// outlives incarnations so that a restart by liveness still shows why.
#pragma once

#include <string_view>
#include <vector>

#include "shell.hpp"
#include "vigil/ctl/protocol.hpp"

namespace vigil::daemon {

// A probe as `checks` and `check` name it. `role` is the Monitor's name of it ("readiness" for
// "ready").
struct NamedProbe {
    std::string_view name;
    std::string_view role;
    const unit::ProbeSpec *spec;
};

// The probes of a unit, in the order the rows show them.
std::vector<NamedProbe> probes_of(const unit::Unit &u);

// {"checks":[row...]} for the units `ids`, in their order.
ctl::Json checks_json(Shell &shell, const std::vector<ChildId> &ids);

// The running prober of the unit's probe `role`, or null when the unit's incarnation has no
// probes running (not running, or its probes stopped).
probe::Prober *running_prober(Shell &shell, ChildId id, std::string_view role);

} // namespace vigil::daemon

// status_view.hpp: what `vigilctl status`, GET /status, /readyz and /metrics show. Every
// figure comes from the core (core::ChildStatus: state, readiness, main pid, ...) and from the
// counters of the unit's log and probes; the shell keeps no second copy of any of them, so the
// status table, /readyz and vigil_unit_ready always agree.
#pragma once

#include <vector>

#include "shell.hpp"
#include "vigil/ctl/shapes.hpp"
#include "vigil/http/metrics.hpp"

namespace vigil::daemon {

// {"units":[status...]} (vigil/ctl/shapes.hpp) plus, per unit, the counters only the shell has:
// "log_lines_failed" (lines its log file could not take), "forward_dropped" (forwarded lines
// dropped while vigild's stdout was blocked), "probe_failures" (failed probe checks), and
// "waiting_for": the `after` siblings a stopped unit that should run waits for (names, not yet
// running; empty otherwise), which vigilctl shows as "waiting for db".
ctl::Json status_json(Shell &shell, const std::vector<ChildId> &ids);

// The units not removed, in id order.
std::vector<ChildId> live_units(const Shell &shell);

http::Snapshot snapshot(Shell &shell);

} // namespace vigil::daemon

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
//
// With `detail` (a `status` request's "detail":true whose patterns match one unit, what
// `vigilctl status NAME` asks for; the control API gives none for several), each object also
// carries what the table never shows and would cost every row to build:
// "description" (the unit file's), "unit_file" (its absolute path; "" for the root),
// "command" (the argv; [] for a supervisor), "intensity" ({"max","period_ms","used"}: its
// supervisor's intensity, period and the restarts its window holds now; null for the root) and
// "last_exit_by" (null, or {"command":"stop"|"restart"|"signal","by":"vigilctl (uid 0 pid 42)",
// "signal"?:"SIGKILL"}: the command that led to the last exit, found in the unit's last
// max_detail_history records after the incarnation that exited began) and "pid_namespace"
// (vigild's, "pid:[4026531836]", or null: a client reads /proc/PID of the pids shown only when
// it is in the same one; elsewhere the same number is another process) and "listen" (the
// sockets held for the unit's `listen`, in its order: [{"address":"tcp 0.0.0.0:8080",
// "name":"web","reuseport":false,"open":true}]).
ctl::Json status_json(Shell &shell, const std::vector<ChildId> &ids, bool detail = false);
// The same result without detail, written straight to text (ctl::append_status): byte for
// byte encode_item(status_json(shell, ids)), without a tree of nlohmann objects.
std::string status_encoded(Shell &shell, const std::vector<ChildId> &ids, bool brief = false);
inline constexpr std::size_t max_detail_history = 64;

// The units not removed, in id order.
std::vector<ChildId> live_units(const Shell &shell);

http::Snapshot snapshot(Shell &shell);

} // namespace vigil::daemon

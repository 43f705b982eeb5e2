// The shell: vigild's one libuv loop around the pure supervision core.
//
// Shape (s6-svscan's main loop, in libuv): libuv callbacks become core events; the actions the
// core returns are carried out in order. Spawning is synchronous (proc::spawn returns after the
// child exec'd or failed), so the answer to a Spawn action is fed back at once. One uv_timer is
// armed at core.next_deadline(); with nothing to wait for no timer is armed and vigild sleeps.
//
// Reaping: one uv_signal_t(SIGCHLD) runs proc::reap_all() (waitpid(-1) until nothing is left).
// Pids map to (ChildId, Incarnation); probe pids go to the health monitors; anything else is a
// re-parented orphan, reaped and counted. A service's exit is handed to the core only once its
// output pipes reached EOF (so no line written before a SIGKILL is lost), or after a short
// drain limit when something else keeps the pipes open.
#pragma once

#include "options.hpp"
#include "vigil/unit/unit.hpp"

namespace vigil::daemon {

// Runs the supervision tree until it stops; returns vigild's exit status.
int run_shell(const Options &opts, unit::LoadResult loaded);

} // namespace vigil::daemon

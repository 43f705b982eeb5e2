// vigil/core/state.hpp: the life of a child, as the supervision core models it.
//
// Every child (a service with a process, or a supervisor without one) has two pieces of state,
// after dinit's service.h: where it IS (`ChildState`, in core.hpp) and where it SHOULD be (its
// `Goal`, `ChildStatus::goal`). The core moves a child one step at a time towards its goal,
// but only when the child's parent allows it: a supervisor starts its children one at a time in
// start order and stops them one at a time in reverse (docs/otp-semantics.md items 1, 2, 37, 38).
//
// States (services), each with the one timer it may have:
//   Stopped   no process. The incarnation is the last one (0 before the first start).
//   Starting  a Spawn was emitted and not answered yet (no pid), or the process runs but has not
//             reported readiness (wait_ready). Timer: the start timeout. Later siblings wait
//             (item 1).
//   Running   the process runs and counts as started: spawned, or ready when wait_ready.
//             Timer: the watchdog, once the child is up (WATCHDOG=1 re-arms it).
//   Stopping  the stop signal was sent (after StopProbes); the stop timeout, if any, is armed
//             and sends SIGKILL when it passes (item 35, 41).
//   Backoff   a restart was decided and counted (intensity) when the child ended; the spawn
//             waits until backoff_until. No process. Timer: the restart delay.
// The end of an incarnation takes two facts: its main process ended (Exited; MAINPID= may have
// made another process than the spawned one the main one) and its output drained (Drained: both
// pipes at EOF, and its cgroup empty where it has one), in either order. Between the two the
// child is "exiting" in whichever state it was: what is left of it (a process that inherited its
// pipes) gets the stop signal and SIGCONT at once, the stop timeout replaces the state's timer,
// and when it passes the leftovers get SIGKILL and the end is reported without waiting any longer.
// Only then does the child leave its state (Starting or Running: it ended by itself; Stopping:
// the stop completed), so the restart decision always sees every line the run wrote.
//
// Readiness over time: `ready` is shown only for a Running child that started (ready when it
// waits for readiness) and, with a readiness probe, whose probe's last verdict was a success.
// Supervisors use Stopped, Starting (its children are being started in order), Running (all
// started; restarts may be under way inside it) and Stopping (its children are being stopped in
// reverse order; it ends when the last one has). A supervisor restarts without backoff.
//
// State x goal:
//   Stopped  + Up    about to be started by its parent's start sequence, or its parent is down.
//   Stopped  + Down  stopped by a command, a transient/temporary child that ended normally, or a
//                    child whose subtree was shut down. Stays down across reload until started.
//                    One that ended by itself and was not restarted is shown as "exited"
//                    (ChildStatus::exited) and stays in view, temporary ones included.
//   Starting + Up    normal start.
//   Starting + Down  a stop arrived while starting: the core stops it as soon as it has a pid.
//   Running  + Up    steady state.
//   Running  + Down  transient: a stop is being decided in the same call.
//   Stopping + Up    a stop that is followed by a start: manual restart, reload restart, a
//                    one_for_all/rest_for_one sweep, or a health failure (restart decided
//                    later). Also every child of a supervisor that is itself stopping: a
//                    child's goal is its own, so when that supervisor starts again (its parent
//                    restarts it, or a command), the child comes back with it.
//   Stopping + Down  stopped by command, or removed by reload.
//   Backoff  + Up    waiting for the restart delay; the parent's sweep may also wait for it.
//   Backoff  + Down  not kept: a stop command cancels the delay and the child becomes Stopped.
//
// Why the stop cause matters: when a process ends, the core asks "who wanted this?". A child
// that ended by itself gets a restart decision (restart type, intensity, strategy; items 7-33);
// a child stopped by its supervisor's sweep or shutdown gets none (items 33, 39, 47); a child
// stopped after a health failure is treated as an abnormal end; a manual stop is never counted
// and never restarted (item 50).
//
// Interrupted transitions: a Stopping child is never sent a second stop signal; a new request
// only changes what happens after it has ended. A Starting supervisor being stopped stops the
// children it has started so far, in reverse. Every process event carries the incarnation, and
// one from an older incarnation is dropped, so a late exit can never end a newer run.
#pragma once

#include <cstdint>

#include "vigil/core/core.hpp"

namespace vigil::core {

// One phrase for each (state, goal) pair, for `vigilctl status --verbose` and logs.
const char *describe(ChildState state, Goal goal) noexcept;

} // namespace vigil::core

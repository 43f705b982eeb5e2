// vigil/log/wiring.hpp: the usual connection of one incarnation's Capture to its unit's UnitLog,
// so the daemon does not have to get the order of calls right by hand:
//
//     auto cbs = log::wire(unit_log, loop, log::Wiring{
//         .on_hits = [&](std::span<const log::PatternHit> hits) { /* LogMatched events */ },
//         .on_eof = [&] { /* now report the child's exit to the core */ },
//         .ready = unit.ready.log ? &ready_regex : nullptr,
//         .on_ready = [&] { /* Ready event */ }});
//     auto cap = std::make_unique<log::Capture>(loop, out_fd, err_fd, log::CaptureOptions{
//         .max_line = unit.logs.max_line}, std::move(cbs));
//     cap->start();
//
// Each line goes to UnitLog::line at the loop's time (uv_now); after each batch UnitLog::flush
// runs and on_hits gets the fired patterns (only when there are some); after EOF a final flush
// happens before on_eof. `ready` (ready.log) is tried on every line until it first matches; then
// on_ready runs once and matching stops (it costs nothing afterwards). Its work is bounded like
// the patterns' (Regex::first_line: PCRE2 limits per line, a CPU budget per read).
#pragma once

#include <functional>
#include <span>

#include "vigil/log/capture.hpp"
#include "vigil/log/pattern.hpp"
#include "vigil/log/unit_log.hpp"

namespace vigil::log {

struct Wiring {
    std::function<void(std::span<const PatternHit>)> on_hits; // may be empty
    std::function<void()> on_eof;                             // may be empty
    const Regex *ready = nullptr;                             // must outlive the Capture
    std::function<void()> on_ready;
    // After each batch (its lines are in the ring): e.g. send ring().after(last_sent) to the
    // `vigilctl logs -f` followers of this unit. May be empty.
    std::function<void()> on_batch;
};

// `log` must outlive the Capture the callbacks are given to.
Capture::Callbacks wire(UnitLog &log, uv_loop_s *loop, Wiring w);

} // namespace vigil::log

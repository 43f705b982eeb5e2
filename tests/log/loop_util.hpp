// Bounded waits on a libuv loop for the log module's sys tests (docs/house-style.md §7.8: every
// wait is bounded, scaled by VIGIL_TEST_TIMEOUT_MULTIPLIER).
#pragma once

#include <chrono>
#include <cstdlib>
#include <functional>
#include <uv.h>

namespace vigil::log::test {

inline std::chrono::milliseconds scaled(int ms) {
    const char *m = std::getenv("VIGIL_TEST_TIMEOUT_MULTIPLIER");
    const int k = m != nullptr && std::atoi(m) > 0 ? std::atoi(m) : 1;
    return std::chrono::milliseconds(ms * k);
}

// Runs the loop until pred() is true or `ms` (scaled) passed. A 5 ms timer keeps UV_RUN_ONCE
// from blocking forever. Returns whether pred() became true (it may no longer be: the handles
// keep running).
inline bool run_until(uv_loop_t *loop, const std::function<bool()> &pred, int ms = 10000) {
    uv_timer_t tick;
    uv_timer_init(loop, &tick);
    uv_timer_start(
        &tick, [](uv_timer_t *) {}, 5, 5);
    const auto deadline = std::chrono::steady_clock::now() + scaled(ms);
    bool ok = pred();
    while (!ok && std::chrono::steady_clock::now() < deadline) {
        uv_run(loop, UV_RUN_ONCE);
        ok = pred();
    }
    uv_close(reinterpret_cast<uv_handle_t *>(&tick), nullptr);
    // Lets the timer's close callback run. That may run other callbacks too, so the answer is
    // the one seen before it.
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

// Runs the loop for about `ms` milliseconds (not scaled: used to show nothing happens).
inline void run_for(uv_loop_t *loop, int ms) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    run_until(
        loop, [&] { return std::chrono::steady_clock::now() >= end; }, ms + 1000);
}

// Closes every handle left and checks the loop can be closed (libuv's MAKE_VALGRIND_HAPPY).
inline int close_loop(uv_loop_t *loop) {
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop);
}

} // namespace vigil::log::test

// vigil/time.hpp: the one representation of time shared by every module.
//
// The supervision core never reads a clock: every function that needs the time takes a
// `TimePoint now` parameter. `MonoClock` is therefore a clock *type* without `now()`; the
// shell builds time points from libuv's monotonic millisecond clock (`uv_now`), tests from a
// fake clock. Millisecond resolution matches libuv timers and every duration in unit files.
#pragma once

#include <chrono>
#include <cstdint>

namespace vigil {

using Duration = std::chrono::milliseconds;

struct MonoClock {
    using rep = std::int64_t;
    using period = std::milli;
    using duration = Duration;
    using time_point = std::chrono::time_point<MonoClock, Duration>;
    static constexpr bool is_steady = true;
    // Deliberately no now(): see the header comment.
};

using TimePoint = MonoClock::time_point;

inline constexpr TimePoint at_ms(std::int64_t ms) {
    return TimePoint{Duration{ms}};
}

} // namespace vigil

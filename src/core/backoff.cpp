#include "backoff.hpp"

#include <algorithm>

namespace vigil::core {

namespace {
// Rounds a non-negative count of milliseconds to the nearest (halves up), as llround() would.
std::int64_t round_ms(double ms) noexcept {
    return static_cast<std::int64_t>(ms + 0.5);
}
} // namespace

Duration backoff_base(const BackoffSpec &spec, std::uint32_t k) noexcept {
    const double initial = static_cast<double>(std::max<std::int64_t>(spec.initial.count(), 0));
    const double cap = static_cast<double>(std::max<std::int64_t>(spec.max.count(), 0));
    const double factor = spec.factor < 1.0 ? 1.0 : spec.factor;
    if (initial <= 0.0) return Duration{0};
    // At most 1000 multiplications whatever k is: past 1000 steps any factor worth having has
    // long reached the cap, and the loop ends as soon as it does (no overflow to +inf). No
    // pow(): vigild needs nothing from libm, one shared library less to map before `vigild --`
    // runs its command.
    const std::uint32_t steps = std::min<std::uint32_t>(k, 1000);
    double d = initial;
    for (std::uint32_t i = 0; i < steps && d < cap; ++i)
        d *= factor;
    return Duration{round_ms(std::min(d, cap))};
}

Duration backoff_delay(const BackoffSpec &spec, std::uint32_t k, SplitMix64 &rng) noexcept {
    const Duration base = backoff_base(spec, k);
    const double j = std::clamp(spec.jitter, 0.0, 1.0);
    if (j == 0.0 || base.count() == 0) return base;
    const double scale = 1.0 - j + 2.0 * j * rng.unit();
    return Duration{round_ms(static_cast<double>(base.count()) * scale)};
}

} // namespace vigil::core

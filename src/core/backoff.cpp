#include "backoff.hpp"

#include <algorithm>
#include <cmath>

namespace vigil::core {

Duration backoff_base(const BackoffSpec &spec, std::uint32_t k) noexcept {
    const double initial = static_cast<double>(std::max<std::int64_t>(spec.initial.count(), 0));
    const double cap = static_cast<double>(std::max<std::int64_t>(spec.max.count(), 0));
    const double factor = spec.factor < 1.0 ? 1.0 : spec.factor;
    if (initial <= 0.0) return Duration{0};
    // O(1) whatever k is. Past 1000 steps any factor worth having has long reached the cap,
    // and pow() would overflow to +inf (and 0 * inf is NaN, hence the early return above).
    const double steps = static_cast<double>(std::min<std::uint32_t>(k, 1000));
    const double d = std::min(initial * std::pow(factor, steps), cap);
    return Duration{static_cast<std::int64_t>(std::llround(d))};
}

Duration backoff_delay(const BackoffSpec &spec, std::uint32_t k, SplitMix64 &rng) noexcept {
    const Duration base = backoff_base(spec, k);
    const double j = std::clamp(spec.jitter, 0.0, 1.0);
    if (j == 0.0 || base.count() == 0) return base;
    const double scale = 1.0 - j + 2.0 * j * rng.unit();
    return Duration{
        static_cast<std::int64_t>(std::llround(static_cast<double>(base.count()) * scale))};
}

} // namespace vigil::core

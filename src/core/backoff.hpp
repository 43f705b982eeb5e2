// backoff.hpp: the restart delay of a service (vigil's addition to OTP; docs/otp-departures.md).
//
// The k-th consecutive restart (k = 0 first) waits initial * factor^k, capped at `max`, then
// scaled by a jitter factor drawn uniformly from [1 - jitter, 1 + jitter]. The caller resets k
// to 0 when an incarnation ran for at least `reset_after`. Delays are whole milliseconds.
#pragma once

#include <cstdint>

#include "splitmix.hpp"
#include "vigil/core/spec.hpp"

namespace vigil::core {

// The delay before the k-th consecutive restart, before jitter.
Duration backoff_base(const BackoffSpec &spec, std::uint32_t k) noexcept;

// backoff_base() scaled by jitter drawn from `rng` (one draw, only when jitter > 0).
Duration backoff_delay(const BackoffSpec &spec, std::uint32_t k, SplitMix64 &rng) noexcept;

} // namespace vigil::core

// splitmix.hpp: the core's deterministic random generator (for backoff jitter).
//
// splitmix64 (Steele, Lea, Flood 2014; the seeding generator of xoshiro). It is owned by the
// core and seeded from TreeSpec::seed, so a test that replays the same events sees the same
// delays. std::*_distribution is not used: its output differs between standard libraries.
#pragma once

#include <cstdint>

namespace vigil::core {

class SplitMix64 {
public:
    explicit SplitMix64(std::uint64_t seed) noexcept : state_(seed) {}

    std::uint64_t next() noexcept {
        std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

    // The whole state, for snapshots: SplitMix64(state()) continues the same sequence.
    std::uint64_t state() const noexcept { return state_; }

    // A double in [0, 1) from the top 53 bits.
    double unit() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

private:
    std::uint64_t state_;
};

} // namespace vigil::core

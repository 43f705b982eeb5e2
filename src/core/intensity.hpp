// intensity.hpp: a supervisor's restart history, OTP's intensity/period sliding window.
//
// As in supervisor.erl add_restart/3 (docs/otp-semantics.md items 23-26): timestamps are whole
// monotonic seconds, a new restart is appended first, then entries older than the period are
// dropped (an entry is kept while T >= Now - Period), and the supervisor gives up when more than
// `intensity` entries remain. The deque never holds more than intensity + 1 entries, so a
// decision is O(1) amortised. Pruning happens only at the next restart: no deadline is needed.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>

#include "vigil/time.hpp"

namespace vigil::core {

class RestartIntensity {
public:
    // Records a restart at `now`; returns false when that restart exceeds the intensity (the
    // supervisor must give up instead of restarting).
    bool add(TimePoint now, int intensity, Duration period) {
        const std::int64_t t = seconds(now);
        // Periods are whole seconds in OTP; a sub-second remainder rounds up.
        const std::int64_t period_s = (period.count() + 999) / 1000;
        if (!stamps_) stamps_.emplace();
        auto &st = *stamps_;
        st.push_back(t);
        while (!st.empty() && st.front() < t - period_s)
            st.pop_front();
        const auto max = static_cast<std::size_t>(intensity < 0 ? 0 : intensity);
        while (st.size() > max + 1) // keeps the bound after a reload lowered the intensity
            st.pop_front();
        return st.size() <= max;
    }
    void clear() noexcept { stamps_.reset(); }
    std::size_t count() const noexcept { return stamps_ ? stamps_->size() : 0; }
    // The restarts the window holds at `now` (those add() would keep): entries are pruned only
    // at the next restart, so count() may include older ones.
    std::size_t in_window(TimePoint now, Duration period) const noexcept {
        if (!stamps_) return 0;
        const std::int64_t oldest = seconds(now) - (period.count() + 999) / 1000;
        std::size_t n = 0;
        for (std::int64_t t : *stamps_)
            n += t >= oldest;
        return n;
    }

    // For snapshots: the stamps, oldest first (null before the first restart), and the way back.
    const std::deque<std::int64_t> *stamps() const noexcept {
        return stamps_ ? &*stamps_ : nullptr;
    }
    void restore(std::deque<std::int64_t> stamps) {
        if (stamps.empty())
            stamps_.reset();
        else
            stamps_ = std::move(stamps);
    }

    static std::int64_t seconds(TimePoint tp) noexcept {
        const std::int64_t ms = tp.time_since_epoch().count();
        return ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
    }

private:
    // Created at the first restart: a std::deque allocates ~600 bytes when it is constructed,
    // and most nodes (every service) never need one.
    std::optional<std::deque<std::int64_t>> stamps_;
};

} // namespace vigil::core

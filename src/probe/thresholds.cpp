// Kubernetes probe thresholds: see vigil/probe/thresholds.hpp.
#include "vigil/probe/thresholds.hpp"

namespace vigil::probe {

const char *to_string(Verdict v) noexcept {
    switch (v) {
    case Verdict::Unknown:
        return "unknown";
    case Verdict::Success:
        return "success";
    case Verdict::Failure:
        return "failure";
    }
    return "?";
}

Thresholds::Thresholds(unsigned failure_threshold, unsigned success_threshold) noexcept
    : failure_threshold_(failure_threshold == 0 ? 1 : failure_threshold),
      success_threshold_(success_threshold == 0 ? 1 : success_threshold) {}

std::optional<Verdict> Thresholds::record(bool ok) noexcept {
    Verdict next = verdict_;
    if (ok) {
        failures_ = 0;
        if (successes_ < success_threshold_) ++successes_;
        if (successes_ >= success_threshold_) next = Verdict::Success;
    } else {
        successes_ = 0;
        // Keep counting past the threshold (saturating) so messages can say "5 times".
        if (failures_ < ~0u) ++failures_;
        if (failures_ >= failure_threshold_) next = Verdict::Failure;
    }
    if (next == verdict_) return std::nullopt;
    verdict_ = next;
    return next;
}

void Thresholds::reset() noexcept {
    failures_ = successes_ = 0;
    verdict_ = Verdict::Unknown;
}

void Thresholds::restore(unsigned failures, unsigned successes, Verdict verdict) noexcept {
    reset();
    // What record() can reach: one counter at a time, successes saturated at the threshold,
    // and a counter at its threshold only with its verdict.
    if ((failures != 0 && successes != 0) || successes > success_threshold_ ||
        verdict > Verdict::Failure ||
        (successes == success_threshold_ && verdict != Verdict::Success) ||
        (failures >= failure_threshold_ && verdict != Verdict::Failure))
        return;
    failures_ = failures;
    successes_ = successes;
    verdict_ = verdict;
}

void CheckTally::record(bool ok) noexcept {
    if (run_ == 0 || ok != run_ok_) {
        run_ = 0;
        run_ok_ = ok;
    }
    if (run_ < ~std::uint32_t{0}) ++run_;
    std::uint64_t &total = ok ? successes_ : failures_;
    if (total < ~std::uint64_t{0}) ++total;
}

std::int64_t CheckTally::in_a_row() const noexcept {
    return run_ok_ ? std::int64_t{run_} : -std::int64_t{run_};
}

} // namespace vigil::probe

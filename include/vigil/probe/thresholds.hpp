// vigil/probe/thresholds.hpp: Kubernetes threshold semantics for one probe (pure).
//
// A probe's verdict starts Unknown. `failure_threshold` consecutive failed checks make it
// Failure; `success_threshold` consecutive successful checks make it Success. A single check of
// the other outcome resets the opposite counter, as the kubelet does. record() reports a verdict
// only when it changes, so a readiness probe that keeps failing says "not ready" once, and a
// liveness probe reports its failure once per incarnation.
//
// Invariants: at most one of the two counters is non-zero; thresholds are at least 1 (0 is
// read as 1, Kubernetes' minimum).
#pragma once

#include <cstdint>
#include <optional>

namespace vigil::probe {

enum class Verdict : std::uint8_t { Unknown, Success, Failure };

const char *to_string(Verdict v) noexcept;

class Thresholds {
public:
    Thresholds(unsigned failure_threshold, unsigned success_threshold) noexcept;

    // Records one check. Returns the new verdict when this check changed it, else nullopt.
    std::optional<Verdict> record(bool ok) noexcept;

    // Back to Unknown with both counters at zero (a new incarnation, or probes restarted).
    void reset() noexcept;
    // The counters and verdict a re-exec of vigild carried, when record() could have reached
    // them (else reset()).
    void restore(unsigned failures, unsigned successes, Verdict verdict) noexcept;

    Verdict verdict() const noexcept { return verdict_; }
    unsigned consecutive_failures() const noexcept { return failures_; }
    unsigned consecutive_successes() const noexcept { return successes_; }
    unsigned failure_threshold() const noexcept { return failure_threshold_; }
    unsigned success_threshold() const noexcept { return success_threshold_; }

private:
    unsigned failure_threshold_;
    unsigned success_threshold_;
    unsigned failures_ = 0;
    unsigned successes_ = 0;
    Verdict verdict_ = Verdict::Unknown;
};

// What `vigilctl checks` shows of a probe's checks: the current run of one outcome and the
// totals. A Prober keeps one per incarnation (it is not reset by a restart of the probes, only
// by a new Prober). Fixed size: every counter saturates instead of wrapping.
class CheckTally {
public:
    void record(bool ok) noexcept;
    // Checks of the current outcome in a row: > 0 successes, < 0 failures, 0 before any.
    std::int64_t in_a_row() const noexcept;
    std::uint64_t successes() const noexcept { return successes_; }
    std::uint64_t failures() const noexcept { return failures_; }
    // What a re-exec of vigild carries.
    std::uint32_t run() const noexcept { return run_; }
    bool run_ok() const noexcept { return run_ok_; }
    void restore(std::uint32_t run, bool run_ok, std::uint64_t successes,
                 std::uint64_t failures) noexcept {
        run_ = run;
        run_ok_ = run_ok;
        successes_ = successes;
        failures_ = failures;
    }

private:
    std::uint32_t run_ = 0;
    bool run_ok_ = false;
    std::uint64_t successes_ = 0, failures_ = 0;
};

} // namespace vigil::probe

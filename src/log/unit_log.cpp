// One unit's log sinks: see vigil/log/unit_log.hpp.
#include "vigil/log/unit_log.hpp"

#include "vigil/log/framer.hpp"

namespace vigil::log {

namespace {
constexpr std::size_t stage_limit = 256u << 10;
// Runs from this size on are matched in place rather than copied into the stage.
constexpr std::size_t direct_scan = 16u << 10;
} // namespace

UnitLog::UnitLog(std::string name, const unit::LogSpec &spec, PatternSet patterns,
                 Forwarder *forwarder, SeqCounter &seq, WallClock wall_clock)
    : name_(std::move(name)), spec_(spec), forwarder_given_(forwarder),
      patterns_(std::move(patterns)), forwarder_(spec.forward ? forwarder : nullptr), seq_(seq),
      wall_clock_(wall_clock), ring_(static_cast<std::size_t>(spec.ring)) {
    if (forwarder_ != nullptr) prefix_ = forwarder_->prefix(name_);
    if (spec_.file) {
        file_ = std::make_unique<RotatingFile>(
            RotatingFileOptions{*spec_.file, spec_.max_size, spec_.keep, spec_.timestamps});
    }
}

WallMs UnitLog::wall(TimePoint now) {
    if (now != last_now_) {
        last_now_ = now;
        last_wall_ = wall_clock_();
    }
    return last_wall_;
}

void UnitLog::line(Stream stream, std::string_view text, bool continued, TimePoint now) {
    const WallMs w = wall(now);
    ++counters_.lines;
    counters_.bytes += text.size();
    ring_.push(seq_.take(), w, stream, continued, text);
    if (file_) file_->append(text, continued, w);
    if (forwarder_ != nullptr)
        forwarder_->line(prefix_, stream, text, continued,
                         spec_.timestamps ? std::optional<WallMs>(w) : std::nullopt);
    if (!patterns_.empty()) {
        std::string &st = staged_[stream == Stream::Stderr ? 1 : 0];
        st.append(text);
        st.push_back('\n');
        if (st.size() >= stage_limit) scan_staged(now);
    }
}

void UnitLog::lines(Stream stream, std::string_view run, std::size_t count, TimePoint now) {
    if (count == 0) return;
    const WallMs w = wall(now);
    counters_.lines += count;
    counters_.bytes += run.size() - count; // without the '\n's
    ring_.push_run(seq_.take(count), w, stream, run, count);
    if (file_) file_->append_run(run, count, w);
    if (forwarder_ != nullptr) {
        const std::optional<WallMs> ts = spec_.timestamps ? std::optional<WallMs>(w) : std::nullopt;
        for_each_line(run,
                      [&](std::string_view l) { forwarder_->line(prefix_, stream, l, false, ts); });
    }
    if (!patterns_.empty()) {
        // Staged lines are '\n'-terminated, as the run's are already: a small run is staged,
        // a big one scanned where it lies, after what was staged before it.
        std::string &st = staged_[stream == Stream::Stderr ? 1 : 0];
        if (run.size() < direct_scan) {
            st.append(run);
            if (st.size() >= stage_limit) scan_staged(now);
        } else {
            if (!st.empty()) patterns_.scan(stream, st, now, hits_);
            st.clear();
            patterns_.scan(stream, run, now, hits_);
        }
    }
}

void UnitLog::scan_staged(TimePoint now) {
    for (int i = 0; i < 2; ++i) {
        if (staged_[i].empty()) continue;
        patterns_.scan(i == 1 ? Stream::Stderr : Stream::Stdout, staged_[i], now, hits_);
        staged_[i].clear(); // keeps its capacity: no allocation in steady state
    }
}

std::span<const PatternHit> UnitLog::flush(TimePoint now) {
    if (file_) file_->flush();
    scan_staged(now);
    returned_.swap(hits_);
    hits_.clear();
    counters_.pattern_hits += returned_.size();
    return returned_;
}

int UnitLog::reopen() {
    return file_ ? file_->reopen() : 0;
}

void UnitLog::reconfigure(const unit::LogSpec &spec, PatternSet patterns, TimePoint now) {
    scan_staged(now); // hits stay in hits_ for the next flush()
    patterns_ = std::move(patterns);

    const bool file_changed = spec.file != spec_.file || spec.max_size != spec_.max_size ||
                              spec.keep != spec_.keep || spec.timestamps != spec_.timestamps;
    if (file_changed) {
        if (file_) {
            file_->flush();
            failed_before_ += file_->lines_failed(); // stays counted
        }
        file_.reset();
        if (spec.file) {
            file_ = std::make_unique<RotatingFile>(
                RotatingFileOptions{*spec.file, spec.max_size, spec.keep, spec.timestamps});
        }
    }
    if (spec.ring != spec_.ring) {
        Ring resized(static_cast<std::size_t>(spec.ring));
        for (const auto &l : ring_.last(SIZE_MAX))
            resized.push(l.seq, l.wall, l.stream, l.continued, l.text);
        ring_ = std::move(resized);
    }
    forwarder_ = spec.forward ? forwarder_given_ : nullptr;
    if (forwarder_ != nullptr && prefix_.out.empty()) prefix_ = forwarder_->prefix(name_);
    spec_ = spec;
}

UnitLogCounters UnitLog::counters() const {
    UnitLogCounters c = counters_;
    c.lines_failed = failed_before_ + (file_ ? file_->lines_failed() : 0);
    if (forwarder_ != nullptr) c.forward_failed = forwarder_->lines_failed();
    return c;
}

} // namespace vigil::log

// One unit's log sinks: see vigil/log/unit_log.hpp.
#include "vigil/log/unit_log.hpp"

#include "vigil/log/framer.hpp"

#include <algorithm>
#include <cerrno>

namespace vigil::log {

namespace {
constexpr std::size_t scan_stage_limit = 256u << 10;
// Runs from this size on are matched in place rather than copied into the stage.
constexpr std::size_t direct_scan = 16u << 10;

std::uint64_t limited(const PatternSet &set) {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i < set.size(); ++i)
        n += set.limit_hits(i) + set.skipped(i);
    return n;
}
} // namespace

UnitLog::UnitLog(std::string name, const unit::LogSpec &spec, FileIdentity identity,
                 PatternSet patterns, UnitLogSinks sinks, SeqCounter &seq, WallClock wall_clock)
    : name_(std::move(name)), spec_(spec), identity_(std::move(identity)), sinks_(std::move(sinks)),
      patterns_(std::move(patterns)), forwarder_(spec.forward ? sinks_.forwarder : nullptr),
      seq_(seq), wall_clock_(wall_clock),
      ring_(static_cast<std::size_t>(std::min<std::uint64_t>(spec.ring, ring_limit))) {
    if (forwarder_ != nullptr) prefix_ = forwarder_->prefix(name_);
    open_file();
}

void UnitLog::open_file() {
    file_.reset();
    if (!spec_.file || !sinks_.files) return;
    file_ = sinks_.files(FileSinkOptions::from(spec_, identity_));
    if (file_) file_->set_events(file_events_);
}

// A unit with a file but no sink to write it (no factory was given): its lines count as failed.
void UnitLog::no_file(std::uint64_t lines) {
    if (spec_.file && !file_) counters_.lines_failed += lines;
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
    if (file_)
        file_->append(text, continued, w);
    else
        no_file(1);
    if (forwarder_ != nullptr &&
        !forwarder_->line(prefix_, stream, text, continued,
                          spec_.timestamps ? std::optional<WallMs>(w) : std::nullopt))
        ++counters_.forward_dropped;
    if (!patterns_.empty()) {
        std::string &st = staged_[stream == Stream::Stderr ? 1 : 0];
        st.append(text);
        st.push_back('\n');
        if (st.size() >= scan_stage_limit) scan_staged(now);
    }
}

void UnitLog::lines(Stream stream, std::string_view run, std::size_t count, TimePoint now) {
    if (count == 0) return;
    const WallMs w = wall(now);
    counters_.lines += count;
    counters_.bytes += run.size() - count; // without the '\n's
    ring_.push_run(seq_.take(count), w, stream, run, count);
    if (file_)
        file_->append_run(run, count, w);
    else
        no_file(count);
    if (forwarder_ != nullptr) {
        const std::optional<WallMs> ts = spec_.timestamps ? std::optional<WallMs>(w) : std::nullopt;
        for_each_line(run, [&](std::string_view l) {
            if (!forwarder_->line(prefix_, stream, l, false, ts)) ++counters_.forward_dropped;
        });
    }
    if (!patterns_.empty()) {
        // Staged lines are '\n'-terminated, as the run's are already: a small run is staged,
        // a big one scanned where it lies, after what was staged before it.
        std::string &st = staged_[stream == Stream::Stderr ? 1 : 0];
        if (run.size() < direct_scan) {
            st.append(run);
            if (st.size() >= scan_stage_limit) scan_staged(now);
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

void UnitLog::reopen(FileSink::ReopenDone done) {
    if (file_) {
        file_->reopen(std::move(done));
        return;
    }
    if (!done) return;
    if (spec_.file)
        done(ECANCELED, "cannot reopen " + *spec_.file + ": vigild has no log writer for it");
    else
        done(0, {});
}

void UnitLog::set_file_events(FileSinkEvents events) {
    file_events_ = std::move(events);
    if (file_) file_->set_events(file_events_);
}

void UnitLog::reconfigure(const unit::LogSpec &spec, FileIdentity identity, PatternSet patterns,
                          TimePoint now) {
    scan_staged(now); // hits stay in hits_ for the next flush(), self-contained (PatternHit)
    limited_before_ += limited(patterns_);
    patterns_ = std::move(patterns);

    const bool file_changed = spec.file != spec_.file || spec.max_size != spec_.max_size ||
                              spec.keep != spec_.keep || spec.timestamps != spec_.timestamps ||
                              !(identity == identity_);
    if (spec.ring != spec_.ring) {
        Ring resized(static_cast<std::size_t>(std::min<std::uint64_t>(spec.ring, ring_limit)));
        for (const auto &l : ring_.last(SIZE_MAX))
            resized.push(l.seq, l.wall, l.stream, l.continued, l.text);
        ring_ = std::move(resized);
    }
    forwarder_ = spec.forward ? sinks_.forwarder : nullptr;
    if (forwarder_ != nullptr && prefix_.out.empty()) prefix_ = forwarder_->prefix(name_);
    spec_ = spec;
    identity_ = std::move(identity);
    if (file_changed) {
        const bool was_congested = congested();
        if (file_) {
            // Handed over before the sink goes: its writer finishes them (file_sink.hpp).
            file_->flush();
            failed_before_ += file_->counters().lines_failed; // stays counted
        }
        open_file();
        // The paused Captures waited for the old sink, which will never say so: say it here.
        if (was_congested && file_events_.on_pressure) file_events_.on_pressure(false);
    }
}

UnitLogCounters UnitLog::counters() const {
    UnitLogCounters c = counters_;
    c.lines_failed += failed_before_ + (file_ ? file_->counters().lines_failed : 0);
    c.pattern_limited = limited_before_ + limited(patterns_);
    return c;
}

} // namespace vigil::log

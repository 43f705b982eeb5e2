// vigil/log/unit_log.hpp: all log sinks of one unit behind one call (issue 6 §2-§4).
//
// The daemon keeps one UnitLog per unit (it outlives incarnations: the ring and the file carry
// on across restarts) and wires each incarnation's Capture to it, by hand or with log::wire()
// (vigil/log/wiring.hpp):
//
//     on_line  = [&](Stream s, std::string_view l, bool c) { ul.line(s, l, c, loop_now()); }
//     on_batch = [&] { for (const auto &hit : ul.flush(loop_now())) core_feed(hit); }
//
// line() (or lines(), for a run of many) sends the line to every sink at once: the ring (always),
// the rotating file (if `logs.file`), the forwarder (if `logs.forward` and a Forwarder was given),
// and stages it for the patterns. flush() writes the file's batch and evaluates the patterns over
// the staged lines (see PatternSet::scan: matching a whole batch at once is what keeps ten patterns
// cheap) and returns the patterns that fired. Call flush() after every batch (Capture's on_batch)
// and before shutdown. Between flushes, the file writes whenever its buffer passes 128 KiB, and the
// patterns run whenever 256 KiB are staged (their hits wait for the next flush()).
//
// Time: `now` is the loop's monotonic time (pattern windows). Wall-clock time (timestamps, ring)
// is read from `wall_clock` only when `now` changes, so a batch costs one clock read.
// Sequence numbers come from a SeqCounter shared by every unit (one per vigild), so `vigilctl
// logs` of several units can be merged in order.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vigil/log/forwarder.hpp"
#include "vigil/log/line.hpp"
#include "vigil/log/pattern.hpp"
#include "vigil/log/ring.hpp"
#include "vigil/log/rotating_file.hpp"
#include "vigil/time.hpp"
#include "vigil/unit/unit.hpp"

namespace vigil::log {

struct SeqCounter {
    std::uint64_t next = 1;
    std::uint64_t take() { return next++; }
    // Takes n consecutive numbers; returns the first.
    std::uint64_t take(std::uint64_t n) {
        const std::uint64_t first = next;
        next += n;
        return first;
    }
};

struct UnitLogCounters {
    std::uint64_t lines = 0;          // lines (pieces) received
    std::uint64_t bytes = 0;          // their bytes, without '\n'
    std::uint64_t lines_failed = 0;   // file lines that could not be written (ENOSPC, ...)
    std::uint64_t forward_failed = 0; // forwarded lines lost to a dead stdout (whole daemon)
    std::uint64_t pattern_hits = 0;   // patterns fired
};

class UnitLog {
public:
    // `patterns` must come from PatternSet::compile (compile errors are the loader's business).
    // `forwarder` may be null (forwarding off for everyone); it must outlive the UnitLog.
    UnitLog(std::string name, const unit::LogSpec &spec, PatternSet patterns, Forwarder *forwarder,
            SeqCounter &seq, WallClock wall_clock = wall_now);

    void line(Stream stream, std::string_view text, bool continued, TimePoint now);
    // The `count` lines of a run (Framer::feed_runs, Capture's on_lines: each ends with '\n',
    // none is continued), with the same effect as `count` calls of line() but done per run: one
    // block of sequence numbers, the ring copies only the lines it keeps, the file writes the
    // run without copying it, the patterns stage it as it is. Only forwarding works per line.
    void lines(Stream stream, std::string_view run, std::size_t count, TimePoint now);
    // Writes the file batch and evaluates the patterns. The span is valid until the next call.
    std::span<const PatternHit> flush(TimePoint now);

    // Reopens the log file (SIGUSR2, `vigilctl logs --reopen`): 0 or errno. 0 without a file.
    int reopen();

    // After a reload: applies a new `logs` spec and pattern set. Staged lines are matched
    // against the old patterns first (their hits come with the next flush()). The file is
    // reopened only if its settings changed; the ring keeps its newest lines that fit the new
    // size; pattern windows start empty.
    void reconfigure(const unit::LogSpec &spec, PatternSet patterns, TimePoint now);

    const std::string &name() const { return name_; }
    const Ring &ring() const { return ring_; }
    const RotatingFile *file() const { return file_.get(); }
    const PatternSet &patterns() const { return patterns_; }
    UnitLogCounters counters() const;

private:
    WallMs wall(TimePoint now);
    void scan_staged(TimePoint now);

    std::string name_;
    unit::LogSpec spec_;
    Forwarder *forwarder_given_; // as passed in; forwarder_ is null when spec_.forward is off
    PatternSet patterns_;
    Forwarder *forwarder_;
    Forwarder::Prefix prefix_;
    SeqCounter &seq_;
    WallClock wall_clock_;
    TimePoint last_now_ = TimePoint::min();
    WallMs last_wall_ = 0;
    Ring ring_;
    std::unique_ptr<RotatingFile> file_;
    std::uint64_t failed_before_ = 0; // lines_failed of files replaced by reconfigure()
    // Staged lines for the patterns, one block per stream, each line '\n'-terminated.
    std::string staged_[2];
    std::vector<PatternHit> hits_, returned_;
    UnitLogCounters counters_;
};

} // namespace vigil::log

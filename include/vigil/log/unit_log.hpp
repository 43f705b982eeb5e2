// vigil/log/unit_log.hpp: all log sinks of one unit behind one call.
//
// The daemon keeps one UnitLog per unit (it outlives incarnations: the ring and the file carry
// on across restarts) and wires each incarnation's Capture to it, by hand or with log::wire()
// (vigil/log/wiring.hpp):
//
//     on_line  = [&](Stream s, std::string_view l, bool c) { ul.line(s, l, c, loop_now()); }
//     on_batch = [&] { for (const auto &hit : ul.flush(loop_now())) core_feed(hit); }
//
// line() (or lines(), for a run of many) sends the line to every sink at once: the ring (always),
// the log file (if `logs.file`: a FileSink from the factory, written by the log writer thread),
// the forwarder (if `logs.forward` and a Forwarder was given), and stages it for the patterns.
// flush() hands the file's records to its writer and evaluates the patterns over the staged
// lines (see PatternSet::scan: matching a whole batch at once is what keeps ten patterns cheap)
// and returns the patterns that fired. Call flush() after every batch (Capture's on_batch) and
// before shutdown. Between flushes the file's records go over whenever 256 KiB are staged, and
// the patterns run whenever 256 KiB are staged (their hits wait for the next flush()).
//
// Back-pressure: the file's sink reports congestion through set_file_events() (on_pressure):
// the daemon pauses this unit's Captures only (vigil/log/file_sink.hpp). The forwarder never
// pushes back: a forwarded line it drops is counted here (forward_dropped).
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

#include "vigil/log/file_identity.hpp"
#include "vigil/log/file_sink.hpp"
#include "vigil/log/forwarder.hpp"
#include "vigil/log/line.hpp"
#include "vigil/log/pattern.hpp"
#include "vigil/log/ring.hpp"
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
    std::uint64_t lines = 0;           // lines (pieces) received
    std::uint64_t bytes = 0;           // their bytes, without '\n'
    std::uint64_t lines_failed = 0;    // file records that could not be written (ENOSPC, ...)
    std::uint64_t forward_dropped = 0; // this unit's forwarded lines dropped (stdout blocked)
    std::uint64_t pattern_hits = 0;    // patterns fired
    // Lines the patterns gave up on: a PCRE2 limit stopped them, or the block's budget was spent
    // (vigil/log/pattern.hpp). Counted as "no match".
    std::uint64_t pattern_limited = 0;
};

// The daemon-wide sinks a UnitLog writes to.
struct UnitLogSinks {
    Forwarder *forwarder = nullptr; // may be null (forwarding off); must outlive the UnitLog
    // Makes the sink of `logs.file` (LogWriter::factory() in vigild, MemoryFileSink in tests).
    // Empty: a unit with a file counts every line as failed.
    FileSinkFactory files;
};

class UnitLog {
public:
    // `patterns` must come from PatternSet::compile (compile errors are the loader's business).
    // `identity`: who opens, rotates and reopens `logs.file` (vigil/log/file_identity.hpp).
    UnitLog(std::string name, const unit::LogSpec &spec, FileIdentity identity, PatternSet patterns,
            UnitLogSinks sinks, SeqCounter &seq, WallClock wall_clock = wall_now);

    void line(Stream stream, std::string_view text, bool continued, TimePoint now);
    // The `count` lines of a run (Framer::feed_runs, Capture's on_lines: each ends with '\n',
    // none is continued), with the same effect as `count` calls of line() but done per run: one
    // block of sequence numbers, the ring copies only the lines it keeps, the file stages the
    // run in one copy, the patterns stage it as it is. Only forwarding works per line.
    void lines(Stream stream, std::string_view run, std::size_t count, TimePoint now);
    // Hands the file's records to its writer and evaluates the patterns. The span is valid until
    // the next call.
    std::span<const PatternHit> flush(TimePoint now);

    // Reopens the log file (SIGUSR2, `vigilctl logs --reopen`): done(0 or errno, message) runs
    // on the loop once the writer did it (at once, with 0, without a file). Not called if the
    // UnitLog (or its file, by reconfigure) is destroyed first.
    void reopen(FileSink::ReopenDone done);

    // After a reload: applies a new `logs` spec, identity and pattern set. Staged lines are
    // matched against the old patterns first (their hits come with the next flush()). The file
    // is reopened only if its settings or the identity changed; the ring keeps its newest lines
    // that fit the new size; pattern windows start empty.
    void reconfigure(const unit::LogSpec &spec, FileIdentity identity, PatternSet patterns,
                     TimePoint now);

    // Events of the file's sink (this one and any made by reconfigure(); a congested sink that
    // reconfigure() replaces ends with on_pressure(false)).
    void set_file_events(FileSinkEvents events);
    // The file's sink is congested: pause this unit's Captures (new ones too).
    bool congested() const { return file_ != nullptr && file_->congested(); }

    const std::string &name() const { return name_; }
    const Ring &ring() const { return ring_; }
    // The ring a re-exec carried (Ring::restore), in place of this one's.
    void adopt_ring(Ring ring) { ring_ = std::move(ring); }
    const FileSink *file() const { return file_.get(); }
    const PatternSet &patterns() const { return patterns_; }
    UnitLogCounters counters() const;

private:
    WallMs wall(TimePoint now);
    void scan_staged(TimePoint now);
    void open_file();
    void no_file(std::uint64_t lines);

    std::string name_;
    unit::LogSpec spec_;
    FileIdentity identity_;
    UnitLogSinks sinks_;
    PatternSet patterns_;
    Forwarder *forwarder_; // null when spec_.forward is off
    Forwarder::Prefix prefix_;
    SeqCounter &seq_;
    WallClock wall_clock_;
    TimePoint last_now_ = TimePoint::min();
    WallMs last_wall_ = 0;
    Ring ring_;
    std::unique_ptr<FileSink> file_;
    FileSinkEvents file_events_;
    std::uint64_t failed_before_ = 0;  // lines_failed of files replaced by reconfigure()
    std::uint64_t limited_before_ = 0; // pattern_limited of pattern sets replaced
    // Staged lines for the patterns, one block per stream, each line '\n'-terminated.
    std::string staged_[2];
    std::vector<PatternHit> hits_, returned_;
    UnitLogCounters counters_;
};

} // namespace vigil::log

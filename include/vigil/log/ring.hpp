// vigil/log/ring.hpp: a byte-bounded tail of one unit's recent lines, behind
// `vigilctl logs [-n N] [-f]`.
//
// Invariants:
//  - The text of the lines kept never takes more than `capacity` bytes of storage, counting one
//    extra byte per line (so even empty lines are bounded: at most `capacity` lines are kept).
//    Storage is allocated once, at the first push; bookkeeping grows only up to that bound.
//  - The oldest lines are overwritten first; this is the only place in the log module that drops
//    data, by design (it is a tail; the file and forwarded output are the lossless sinks).
//  - Sequence numbers are given by the caller (one global counter in vigild, see UnitLog) and
//    must increase; queries by sequence number ("after S") are how followers (`-f`) catch up.
//  - A line longer than capacity-1 bytes keeps only its first capacity-1 bytes (and `truncated`).
//  - The capacity is clamped to ring_limit (64 MiB): a unit file cannot make vigild allocate more.
// Views returned by queries point into the ring: they are valid until the next push().
//
// Continuity across an exec of vigild: snapshot() appends the lines kept to a byte string and
// restore() makes a ring of them again, so `vigilctl logs` and followers (by sequence number) go
// on as if nothing happened. Format (native byte order: the bytes cross one exec, never a
// machine): "VIGILRNG", u32 version (ring_snapshot_version), u32 line count, then per line,
// oldest first: u64 seq, i64 wall, u8 stream, u8 flags (1 continued, 2 truncated), u32 length,
// the text. restore() refuses, whole and with an error that says what was wrong, an unknown
// version, bytes truncated or left over, a stream or flag that cannot be, sequence numbers that
// do not increase, and a count or a length over ring_limit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vigil/log/line.hpp"

namespace vigil::log {

struct RingLine {
    std::uint64_t seq = 0;
    WallMs wall = 0;
    Stream stream = Stream::Stdout;
    bool continued = false; // a piece of a longer line; the next piece follows
    bool truncated = false; // did not fit in the ring
    std::string_view text;
};

inline constexpr std::uint32_t ring_snapshot_version = 1;

class Ring;
struct RingRestore;

class Ring {
public:
    // capacity is clamped to ring_limit.
    explicit Ring(std::size_t capacity);

    void push(std::uint64_t seq, WallMs wall, Stream stream, bool continued, std::string_view text);
    // Pushes the `count` lines of a run (Framer::feed_runs: each line ends with '\n'), numbered
    // first_seq, first_seq+1, ...; none is continued. Only the newest lines that fit are copied:
    // the others would be overwritten by the same run anyway (their sequence numbers are used
    // up all the same, so a follower sees the gap as after any overwrite).
    void push_run(std::uint64_t first_seq, WallMs wall, Stream stream, std::string_view run,
                  std::size_t count);

    // The last `n` lines kept, oldest first.
    std::vector<RingLine> last(std::size_t n) const;
    // The i-th line from the newest (0: the newest), i < size(). For merges that walk back.
    RingLine from_back(std::size_t i) const { return view(at(count_ - 1 - i)); }
    // Lines with seq > `seq`, oldest first, at most `max`. If the ring no longer holds seq+1,
    // the answer starts at the oldest line kept (the follower missed some: compare
    // front().seq with seq+1).
    std::vector<RingLine> after(std::uint64_t seq, std::size_t max = SIZE_MAX) const;

    std::size_t size() const { return count_; }
    bool empty() const { return count_ == 0; }
    std::size_t capacity() const { return capacity_; }
    // Storage in use, including the one byte per line.
    std::size_t used() const { return used_; }
    // 0 when empty.
    std::uint64_t first_seq() const;
    std::uint64_t last_seq() const;

    // Appends the lines kept, oldest first (format above).
    void snapshot(std::string &out) const;
    // A ring of `capacity` (the unit's logs.ring as the new binary loaded it, clamped as the
    // constructor does) holding the snapshot's lines: all of them when it is as large, else the
    // newest that fit, as push() would have kept them (a line longer than capacity-1 is cut and
    // marked truncated).
    static RingRestore restore(std::size_t capacity, std::string_view bytes);

private:
    struct Entry {
        std::uint64_t seq;
        WallMs wall;
        std::uint32_t off;
        std::uint32_t len;
        Stream stream;
        bool continued;
        bool truncated;
    };
    const Entry &at(std::size_t i) const { return entries_[(head_ + i) & (entries_.size() - 1)]; }
    RingLine view(const Entry &e) const;
    void pop_front();

    std::size_t capacity_ = 0;
    std::vector<char> data_;     // allocated at the first push: an idle unit costs no buffer
    std::vector<Entry> entries_; // circular: head_, count_; size a power of two
    std::size_t head_ = 0;
    std::size_t count_ = 0;
    std::size_t write_ = 0; // next free offset in data_
    std::size_t used_ = 0;
};

struct RingRestore {
    std::optional<Ring> ring; // empty on failure
    std::string error;        // "ring snapshot: <what was wrong>"
};

} // namespace vigil::log

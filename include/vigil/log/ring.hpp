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
#pragma once

#include <cstddef>
#include <cstdint>
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

} // namespace vigil::log

// Byte-bounded ring of recent lines: see vigil/log/ring.hpp for the invariants.
//
// Layout: line texts are stored contiguously in `data_` in push order, each followed by one
// unused byte (its footprint is len+1). When a text does not fit between `write_` and the end, the
// writer wraps to offset 0. The oldest entries are always the first ones the writer runs into, so
// making room is "pop the front while it overlaps the bytes about to be written".
#include "vigil/log/ring.hpp"

#include "vigil/log/framer.hpp"

#include <algorithm>
#include <cstring>

namespace vigil::log {

Ring::Ring(std::size_t capacity) : capacity_(std::min(capacity, ring_limit)) {
    // Storage is allocated at the first push, not here: with 10,000 services most never write
    // a line, and 64 KiB each would be 640 MB of resident memory for nothing.
}

void Ring::pop_front() {
    const Entry &e = entries_[head_];
    used_ -= std::size_t{e.len} + 1;
    head_ = (head_ + 1) & (entries_.size() - 1);
    --count_;
}

void Ring::push(std::uint64_t seq, WallMs wall, Stream stream, bool continued,
                std::string_view text) {
    const std::size_t cap = capacity_;
    if (cap < 2) return; // nothing but the one-byte footprint would fit
    if (data_.empty()) {
        data_.resize(cap);
        // Bounded by capacity entries (every entry takes at least one byte); start small.
        // A power of two, so positions wrap with a mask rather than a division.
        entries_.resize(64);
    }
    const bool truncated = text.size() > cap - 1;
    const std::size_t len = truncated ? cap - 1 : text.size();
    const std::size_t foot = len + 1;

    if (count_ == 0) write_ = 0;
    std::size_t start = write_;
    if (start + foot > cap) {
        // Wrap: everything still stored at or after write_ is older than what is before it.
        while (count_ > 0 && entries_[head_].off >= write_)
            pop_front();
        start = 0;
    }
    while (count_ > 0) {
        const Entry &f = entries_[head_];
        const std::size_t f_end = std::size_t{f.off} + f.len + 1;
        if (f.off >= start + foot || f_end <= start) break; // no overlap
        pop_front();
    }
    if (count_ == entries_.size()) {
        std::vector<Entry> bigger(entries_.size() * 2);
        for (std::size_t i = 0; i < count_; ++i)
            bigger[i] = at(i);
        entries_.swap(bigger);
        head_ = 0;
    }
    if (len > 0) std::memcpy(data_.data() + start, text.data(), len);
    entries_[(head_ + count_) & (entries_.size() - 1)] = Entry{seq,
                                                               wall,
                                                               static_cast<std::uint32_t>(start),
                                                               static_cast<std::uint32_t>(len),
                                                               stream,
                                                               continued,
                                                               truncated};
    ++count_;
    used_ += foot;
    write_ = start + foot;
}

void Ring::push_run(std::uint64_t first_seq, WallMs wall, Stream stream, std::string_view run,
                    std::size_t count) {
    if (count == 0 || capacity_ < 2) return;
    // A line's footprint is its length + 1, which is its size in the run with its '\n': the
    // lines that fit are the longest suffix of the run of at most capacity_ bytes, walked back
    // from the end one '\n' at a time (the newest line always, even if it must be truncated).
    std::size_t start = run.size(); // where the kept suffix begins
    std::size_t kept = 0;
    while (kept < count) {
        const std::size_t nl = start - 1; // the '\n' that ends the line before `start`
        const void *prev = nl == 0 ? nullptr : ::memrchr(run.data(), '\n', nl);
        const std::size_t begin =
            prev == nullptr
                ? 0
                : static_cast<std::size_t>(static_cast<const char *>(prev) - run.data()) + 1;
        if (kept > 0 && run.size() - begin > capacity_) break;
        start = begin;
        ++kept;
    }
    // Lines skipped: pushing them would have overwritten every older line too (the run alone
    // is more than the ring holds), so drop those, or the ring would show a hole in the middle.
    if (kept < count) {
        while (count_ > 0)
            pop_front();
    }
    std::uint64_t seq = first_seq + (count - kept);
    for_each_line(run.substr(start),
                  [&](std::string_view line) { push(seq++, wall, stream, false, line); });
}

RingLine Ring::view(const Entry &e) const {
    return RingLine{e.seq,       e.wall,      e.stream,
                    e.continued, e.truncated, std::string_view(data_.data() + e.off, e.len)};
}

std::vector<RingLine> Ring::last(std::size_t n) const {
    std::vector<RingLine> out;
    const std::size_t k = std::min(n, count_);
    out.reserve(k);
    for (std::size_t i = count_ - k; i < count_; ++i)
        out.push_back(view(at(i)));
    return out;
}

std::vector<RingLine> Ring::after(std::uint64_t seq, std::size_t max) const {
    std::vector<RingLine> out;
    // Sequence numbers increase along the ring: binary search the first one > seq.
    std::size_t lo = 0, hi = count_;
    while (lo < hi) {
        const std::size_t mid = lo + (hi - lo) / 2;
        if (at(mid).seq <= seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (std::size_t i = lo; i < count_ && out.size() < max; ++i)
        out.push_back(view(at(i)));
    return out;
}

std::uint64_t Ring::first_seq() const {
    return count_ == 0 ? 0 : at(0).seq;
}
std::uint64_t Ring::last_seq() const {
    return count_ == 0 ? 0 : at(count_ - 1).seq;
}

// ---- snapshots (format: vigil/log/ring.hpp) ------------------------------------------------

namespace {

constexpr char ring_magic[8] = {'V', 'I', 'G', 'I', 'L', 'R', 'N', 'G'};
constexpr std::size_t ring_header = 16;
constexpr std::size_t line_header = 8 + 8 + 1 + 1 + 4;

template <class T> void put(std::string &out, T v) {
    out.append(reinterpret_cast<const char *>(&v), sizeof v);
}
template <class T> T get(std::string_view b, std::size_t at) {
    T v;
    std::memcpy(&v, b.data() + at, sizeof v);
    return v;
}

} // namespace

void Ring::snapshot(std::string &out) const {
    out.reserve(out.size() + ring_header + count_ * line_header + used_);
    out.append(ring_magic, sizeof ring_magic);
    put(out, ring_snapshot_version);
    put(out, static_cast<std::uint32_t>(count_));
    for (std::size_t i = 0; i < count_; ++i) {
        const Entry &e = at(i);
        put(out, e.seq);
        put(out, e.wall);
        put(out, static_cast<std::uint8_t>(e.stream));
        put(out, static_cast<std::uint8_t>((e.continued ? 1 : 0) | (e.truncated ? 2 : 0)));
        put(out, e.len);
        out.append(data_.data() + e.off, e.len);
    }
}

RingRestore Ring::restore(std::size_t capacity, std::string_view b) {
    RingRestore res;
    auto fail = [&](std::string why) {
        res.ring.reset();
        res.error = "ring snapshot: " + std::move(why);
        return std::move(res);
    };
    if (b.size() < ring_header) return fail("truncated: less than a header");
    if (std::memcmp(b.data(), ring_magic, sizeof ring_magic) != 0) return fail("bad magic");
    const auto version = get<std::uint32_t>(b, 8);
    if (version != ring_snapshot_version)
        return fail("format version " + std::to_string(version) +
                    " is not known (this vigild "
                    "reads version " +
                    std::to_string(ring_snapshot_version) + ")");
    const auto count = get<std::uint32_t>(b, 12);
    if (count > ring_limit || count > (b.size() - ring_header) / line_header)
        return fail("line count " + std::to_string(count) + " is more than the bytes hold");
    res.ring.emplace(capacity);
    std::size_t at = ring_header;
    std::uint64_t last = 0;
    for (std::uint32_t i = 0; i < count; ++i) {
        const std::string line = "line " + std::to_string(i) + ": ";
        if (b.size() - at < line_header) return fail(line + "truncated");
        const auto seq = get<std::uint64_t>(b, at);
        const auto wall = get<WallMs>(b, at + 8);
        const auto stream = get<std::uint8_t>(b, at + 16);
        const auto flags = get<std::uint8_t>(b, at + 17);
        const auto len = get<std::uint32_t>(b, at + 18);
        at += line_header;
        if (stream > static_cast<std::uint8_t>(Stream::Stderr) || flags > 3)
            return fail(line + "a stream or flags that cannot be");
        if (i > 0 && seq <= last) return fail(line + "sequence numbers do not increase");
        if (len >= ring_limit || len > b.size() - at) return fail(line + "truncated text");
        last = seq;
        res.ring->push(seq, wall, static_cast<Stream>(stream), (flags & 1) != 0, b.substr(at, len));
        if ((flags & 2) != 0 && res.ring->count_ > 0)
            res.ring
                ->entries_[(res.ring->head_ + res.ring->count_ - 1) &
                           (res.ring->entries_.size() - 1)]
                .truncated = true;
        at += len;
    }
    if (at != b.size())
        return fail("the last line is followed by " + std::to_string(b.size() - at) +
                    " more bytes");
    return res;
}

} // namespace vigil::log

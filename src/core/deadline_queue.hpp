// deadline_queue.hpp: the one min-heap that holds every deadline of the core.
//
// Entries are keyed (when, seq): `seq` grows with every push, so two deadlines at the same
// millisecond fire in the order they were armed, on every platform (docs/house-style.md §7.4).
// Cancelling is lazy: a node remembers the seq of its one live timer (`Node::timer_seq`), and an
// entry whose seq no longer matches is skipped when it reaches the top. A node never has more
// than one live timer because each timer belongs to a state (Starting: start timeout,
// Stopping: stop timeout, Backoff: restart delay) and leaving the state cancels it.
// A snapshot (snapshot.cpp) carries only the live entries and last_seq(): the stale ones change
// nothing (next_deadline() is read after tidy_deadlines() has dropped those on top).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "vigil/ids.hpp"
#include "vigil/time.hpp"

namespace vigil::core {

struct DeadlineEntry {
    TimePoint when;
    std::uint64_t seq = 0;
    ChildId child;
};

struct DeadlineLater {
    bool operator()(const DeadlineEntry &a, const DeadlineEntry &b) const noexcept {
        if (a.when != b.when) return a.when > b.when;
        return a.seq > b.seq;
    }
};

class DeadlineQueue {
public:
    // Arms a deadline and returns its seq (never 0, so 0 can mean "no timer").
    std::uint64_t push(TimePoint when, ChildId child) {
        const std::uint64_t seq = ++last_seq_;
        heap_.push_back(DeadlineEntry{when, seq, child});
        std::push_heap(heap_.begin(), heap_.end(), DeadlineLater{});
        return seq;
    }
    bool empty() const noexcept { return heap_.empty(); }
    const DeadlineEntry &top() const noexcept { return heap_.front(); }
    void pop() {
        std::pop_heap(heap_.begin(), heap_.end(), DeadlineLater{});
        heap_.pop_back();
    }
    std::size_t size() const noexcept { return heap_.size(); }

    // For snapshots: every entry (in heap order), the last seq handed out, and the way back.
    // (when, seq) keys are unique, so the order in which entries come out does not depend on how
    // the heap was built.
    const std::vector<DeadlineEntry> &entries() const noexcept { return heap_; }
    std::uint64_t last_seq() const noexcept { return last_seq_; }
    void restore(std::vector<DeadlineEntry> entries, std::uint64_t last_seq) {
        heap_ = std::move(entries);
        std::make_heap(heap_.begin(), heap_.end(), DeadlineLater{});
        last_seq_ = last_seq;
    }

private:
    std::vector<DeadlineEntry> heap_; // a binary heap under DeadlineLater: the earliest on top
    std::uint64_t last_seq_ = 0;
};

} // namespace vigil::core

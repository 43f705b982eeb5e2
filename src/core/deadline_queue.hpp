// deadline_queue.hpp: the one min-heap that holds every deadline of the core.
//
// Entries are keyed (when, seq): `seq` grows with every push, so two deadlines at the same
// millisecond fire in the order they were armed, on every platform (docs/house-style.md §7.4).
// Cancelling is lazy: a node remembers the seq of its one live timer (`Node::timer_seq`), and an
// entry whose seq no longer matches is skipped when it reaches the top. A node never has more
// than one live timer because each timer belongs to a state (Starting: start timeout,
// Stopping: stop timeout, Backoff: restart delay) and leaving the state cancels it.
#pragma once

#include <cstdint>
#include <queue>
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
        heap_.push(DeadlineEntry{when, seq, child});
        return seq;
    }
    bool empty() const noexcept { return heap_.empty(); }
    const DeadlineEntry &top() const noexcept { return heap_.top(); }
    void pop() { heap_.pop(); }
    std::size_t size() const noexcept { return heap_.size(); }

private:
    std::priority_queue<DeadlineEntry, std::vector<DeadlineEntry>, DeadlineLater> heap_;
    std::uint64_t last_seq_ = 0;
};

} // namespace vigil::core

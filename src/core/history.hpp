// history.hpp: a bounded ring of history records (global and per child).
//
// Rings overwrite their oldest entry when full, so memory stays bounded however long vigild
// runs: per child at most `per_child_history` records, globally `global_history`.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "vigil/core/action.hpp"

namespace vigil::core {

inline constexpr std::size_t per_child_history = 32;
inline constexpr std::size_t global_history = 4096;

class RecordRing {
public:
    explicit RecordRing(std::size_t capacity) : capacity_(capacity) {}

    void push(const Record &r) { push(Record(r)); }
    void push(Record &&r) {
        if (items_.size() < capacity_) {
            items_.push_back(std::move(r));
        } else {
            items_[head_] = std::move(r);
            head_ = (head_ + 1) % capacity_;
        }
    }
    std::size_t size() const noexcept { return items_.size(); }
    std::size_t capacity() const noexcept { return capacity_; }

    // Calls f on every record, oldest first, without copying (snapshots). A ring refilled by
    // push() in this order holds the same records and overwrites them in the same order.
    template <class F> void for_each(F &&f) const {
        for (std::size_t i = 0; i < items_.size(); ++i)
            f(items_[(head_ + i) % items_.size()]);
    }

    // The newest `max` records, oldest first.
    std::vector<Record> last(std::size_t max) const {
        const std::size_t n = items_.size() < max ? items_.size() : max;
        std::vector<Record> out;
        out.reserve(n);
        for (std::size_t i = items_.size() - n; i < items_.size(); ++i)
            out.push_back(items_[(head_ + i) % items_.size()]);
        return out;
    }

private:
    std::size_t capacity_;
    std::size_t head_ = 0; // index of the oldest record once the ring is full
    std::vector<Record> items_;
};

} // namespace vigil::core

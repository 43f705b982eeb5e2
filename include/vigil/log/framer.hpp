// vigil/log/framer.hpp: bytes in (any chunking), lines out (issue 6 §1).
//
// A Framer turns the byte stream of one pipe into lines. It never drops a byte:
//  - a line is everything up to a '\n' (the '\n' itself is not part of the line; a '\r' before
//    it is kept, as are NUL and any other binary byte);
//  - a line longer than `max_line` bytes is cut into pieces of exactly `max_line` bytes; every
//    piece except the last is emitted with `continued == true` ("more of this line follows"),
//    the last with `continued == false`;
//  - bytes after the last '\n' are kept until more data arrives, and are emitted as a final
//    line by flush() (at EOF).
// Lines are emitted as string_views, either straight into the caller's chunk (the common case:
// no copy) or into the framer's internal buffer (a line that straddles two chunks). A view is
// valid only during the callback. No heap allocation happens after construction.
#pragma once

#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

namespace vigil::log {

class Framer {
public:
    // max_line == 0 is treated as 1.
    // The carry buffer grows on first use (a partial line) and then keeps its capacity: an idle
    // service costs no buffer, a busy one no allocation per line.
    explicit Framer(std::size_t max_line) : max_line_(max_line == 0 ? 1 : max_line) {}

    std::size_t max_line() const { return max_line_; }
    // Bytes held back waiting for their '\n'.
    std::size_t pending() const { return carry_.size(); }

    // Feeds one chunk; calls on_line(std::string_view line, bool continued) for every line or
    // piece completed by it, in order.
    template <class F> void feed(std::string_view data, F &&on_line) {
        while (!data.empty()) {
            if (!carry_.empty()) {
                const std::size_t room = max_line_ - carry_.size();
                // Look one byte past `room`: a '\n' there still ends a line of max_line bytes.
                const std::size_t scan = data.size() < room + 1 ? data.size() : room + 1;
                const auto *nl = static_cast<const char *>(std::memchr(data.data(), '\n', scan));
                if (nl != nullptr) {
                    const auto n = static_cast<std::size_t>(nl - data.data());
                    carry_.append(data.data(), n);
                    on_line(std::string_view(carry_), false);
                    carry_.clear();
                    data.remove_prefix(n + 1);
                } else if (data.size() > room) {
                    carry_.append(data.data(), room);
                    on_line(std::string_view(carry_), true);
                    carry_.clear();
                    data.remove_prefix(room);
                } else {
                    carry_.append(data.data(), data.size());
                    return;
                }
                continue;
            }
            const std::size_t scan = data.size() < max_line_ + 1 ? data.size() : max_line_ + 1;
            const auto *nl = static_cast<const char *>(std::memchr(data.data(), '\n', scan));
            if (nl != nullptr) {
                const auto n = static_cast<std::size_t>(nl - data.data());
                on_line(data.substr(0, n), false);
                data.remove_prefix(n + 1);
            } else if (data.size() > max_line_) {
                on_line(data.substr(0, max_line_), true);
                data.remove_prefix(max_line_);
            } else {
                carry_.assign(data.data(), data.size());
                return;
            }
        }
    }

    // Emits the bytes held back (a final line without '\n'), if any. Call at EOF.
    template <class F> void flush(F &&on_line) {
        if (carry_.empty()) return;
        on_line(std::string_view(carry_), false);
        carry_.clear();
    }

private:
    std::size_t max_line_;
    std::string carry_; // capacity max_line_, never reallocated
};

} // namespace vigil::log

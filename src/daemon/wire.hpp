// wire.hpp: the re-exec state's byte format (handover.hpp has the layout): fixed-width
// integers in native byte order, strings as u32 length + bytes, lists as u32 count + items.
// The Reader refuses (throws Refused) anything truncated or over a bound
// (handover_max_string, handover_max_count).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "handover.hpp"

namespace vigil::daemon::wire {

// Appends to a string, or writes into a buffer of a given size (more than fits throws
// std::length_error), or (with neither) only counts the bytes it would write: a counting pass
// sizes the buffer of a large state, which then never grows by copying.
class Writer {
public:
    explicit Writer(std::string &out) : out_(&out) {}
    Writer(char *buf, std::size_t cap) : buf_(buf), cap_(cap) {}
    Writer() = default;
    std::size_t size() const { return size_; } // written (or counted) so far
    void raw(std::string_view s) { append(s); }
    template <class T> void num(T v) {
        static_assert(std::is_integral_v<T> || std::is_floating_point_v<T>);
        char b[sizeof v];
        std::memcpy(b, &v, sizeof v);
        append(std::string_view(b, sizeof v));
    }
    template <class E> void enumerated(E v) {
        static_assert(std::is_enum_v<E>);
        num(static_cast<std::uint8_t>(v));
    }
    void flag(bool v) { num<std::uint8_t>(v ? 1 : 0); }
    void str(std::string_view s) {
        num(static_cast<std::uint32_t>(s.size()));
        append(s);
    }
    template <class T, class F> void list(const std::vector<T> &v, F &&each) {
        num(static_cast<std::uint32_t>(v.size()));
        for (const T &x : v)
            each(x);
    }

private:
    void append(std::string_view s) {
        if (out_) {
            out_->append(s);
        } else if (buf_) {
            if (s.size() > cap_ - size_) throw std::length_error("the state outgrew its buffer");
            std::memcpy(buf_ + size_, s.data(), s.size());
        }
        size_ += s.size();
    }
    std::string *out_ = nullptr;
    char *buf_ = nullptr;
    std::size_t cap_ = 0;
    std::size_t size_ = 0;
};

struct Refused : std::runtime_error {
    using std::runtime_error::runtime_error;
};

class Reader {
public:
    explicit Reader(std::string_view in) : in_(in) {}
    template <class T> T num(const char *what) {
        static_assert(std::is_integral_v<T> || std::is_floating_point_v<T>);
        if (in_.size() - at_ < sizeof(T)) throw Refused(std::string("truncated at ") + what);
        T v;
        std::memcpy(&v, in_.data() + at_, sizeof v);
        at_ += sizeof v;
        return v;
    }
    // An enumerator no greater than `last` (every enum of the state counts from 0).
    template <class E> E enumerated(E last, const char *what) {
        static_assert(std::is_enum_v<E>);
        const auto v = num<std::uint8_t>(what);
        if (v > static_cast<std::uint8_t>(last)) throw Refused(std::string("unknown ") + what);
        return static_cast<E>(v);
    }
    bool flag(const char *what) {
        const auto v = num<std::uint8_t>(what);
        if (v > 1) throw Refused(std::string("not a boolean: ") + what);
        return v == 1;
    }
    std::string str(const char *what) { return std::string(view(what)); }
    // A string's bytes where they are in the state (valid while the state is).
    std::string_view view(const char *what) {
        const auto n = num<std::uint32_t>(what);
        if (n > handover_max_string || in_.size() - at_ < n)
            throw Refused(std::string("bad length of ") + what);
        const std::string_view s = in_.substr(at_, n);
        at_ += n;
        return s;
    }
    std::uint32_t count(const char *what) {
        const auto n = num<std::uint32_t>(what);
        // Every element takes at least one byte: a count beyond what is left is a lie.
        if (n > handover_max_count || n > in_.size() - at_)
            throw Refused(std::string("bad count of ") + what);
        return n;
    }
    // count(), and room reserved in `v` for that many elements that take at least
    // `min_bytes` each (as many as the bytes left can hold): a large state is read without
    // a vector growing by moving what it holds.
    template <class V> std::uint32_t count_into(V &v, const char *what, std::size_t min_bytes) {
        const std::uint32_t n = count(what);
        v.reserve(v.size() + std::min<std::size_t>(n, (in_.size() - at_) / min_bytes));
        return n;
    }
    std::string_view take(std::size_t n, const char *what) {
        if (in_.size() - at_ < n) throw Refused(std::string("truncated at ") + what);
        std::string_view v = in_.substr(at_, n);
        at_ += n;
        return v;
    }
    bool done() const { return at_ == in_.size(); }

private:
    std::string_view in_;
    std::size_t at_ = 0;
};

} // namespace vigil::daemon::wire

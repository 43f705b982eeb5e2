// wire.hpp: the re-exec state's byte format (handover.hpp has the layout): fixed-width
// integers in native byte order, strings as u32 length + bytes, lists as u32 count + items.
// The Reader refuses (throws Refused) anything truncated or over a bound
// (handover_max_string, handover_max_count).
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "handover.hpp"

namespace vigil::daemon::wire {

class Writer {
public:
    explicit Writer(std::string &out) : out_(out) {}
    template <class T> void num(T v) {
        static_assert(std::is_integral_v<T> || std::is_floating_point_v<T>);
        char b[sizeof v];
        std::memcpy(b, &v, sizeof v);
        out_.append(b, sizeof v);
    }
    template <class E> void enumerated(E v) {
        static_assert(std::is_enum_v<E>);
        num(static_cast<std::uint8_t>(v));
    }
    void flag(bool v) { num<std::uint8_t>(v ? 1 : 0); }
    void str(std::string_view s) {
        num(static_cast<std::uint32_t>(s.size()));
        out_.append(s);
    }
    template <class T, class F> void list(const std::vector<T> &v, F &&each) {
        num(static_cast<std::uint32_t>(v.size()));
        for (const T &x : v)
            each(x);
    }

private:
    std::string &out_;
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
    std::string str(const char *what) {
        const auto n = num<std::uint32_t>(what);
        if (n > handover_max_string || in_.size() - at_ < n)
            throw Refused(std::string("bad length of ") + what);
        std::string s(in_.substr(at_, n));
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

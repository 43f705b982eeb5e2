// vigil/boxed.hpp: an optional value kept on the heap, for large fields most records leave out.
//
// Boxed<T> reads like std::optional<T> (bool test, *, ->, = value, = std::nullopt) and copies
// deeply, but an empty one is one pointer wide instead of sizeof(T). unit::Unit holds its four
// probes this way: few units declare them, and inline every unit paid for all four
// (bench/README.md, "PSS of vigild and of its spawner helper").
#pragma once

#include <memory>
#include <optional>
#include <utility>

namespace vigil {

template <class T> class Boxed {
public:
    Boxed() = default;
    Boxed(std::nullopt_t) {}
    Boxed(const T &v) : p_(std::make_unique<T>(v)) {}
    Boxed(T &&v) : p_(std::make_unique<T>(std::move(v))) {}
    Boxed(std::optional<T> v) {
        if (v) p_ = std::make_unique<T>(std::move(*v));
    }
    Boxed(const Boxed &o) : p_(o.p_ ? std::make_unique<T>(*o.p_) : nullptr) {}
    Boxed(Boxed &&) noexcept = default;
    Boxed &operator=(const Boxed &o) {
        if (this != &o) p_ = o.p_ ? std::make_unique<T>(*o.p_) : nullptr;
        return *this;
    }
    Boxed &operator=(Boxed &&) noexcept = default;
    ~Boxed() = default;

    bool has_value() const { return p_ != nullptr; }
    explicit operator bool() const { return p_ != nullptr; }
    T &operator*() { return *p_; }
    const T &operator*() const { return *p_; }
    T *operator->() { return p_.get(); }
    const T *operator->() const { return p_.get(); }
    void reset() { p_.reset(); }
    // A copy as a std::optional, for APIs that take one.
    std::optional<T> optional() const { return p_ ? std::optional<T>(*p_) : std::nullopt; }

private:
    std::unique_ptr<T> p_;
};

} // namespace vigil

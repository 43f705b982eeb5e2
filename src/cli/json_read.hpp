// src/cli/json_read.hpp: reading vigild's answers leniently. A member that is missing, or of
// another type than the reader expects, reads as nothing (or the caller's fallback), never as
// an exception: the renderer and the rules of waiting read answers of older and newer vigilds.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "render.hpp"

namespace vigil::cli {

// The value of `key` in object `j`, or null.
inline const Json *member(const Json &j, const char *key) {
    if (!j.is_object()) return nullptr;
    auto it = j.find(key);
    return it == j.end() ? nullptr : &*it;
}

inline std::string text_of(const Json *v, const char *fallback) {
    return v && v->is_string() ? v->get<std::string>() : fallback;
}

inline std::optional<std::int64_t> int_of(const Json *v) {
    if (!v || !v->is_number_integer()) return std::nullopt;
    return v->get<std::int64_t>();
}

inline bool flag_of(const Json *v) {
    return v && v->is_boolean() && v->get<bool>();
}

// The string at `key` of object `j`, or `fallback`.
inline std::string str(const Json &j, const char *key, const char *fallback = "-") {
    return text_of(member(j, key), fallback);
}

// True when `key` of object `j` is the boolean true.
inline bool flag(const Json &j, const char *key) {
    return flag_of(member(j, key));
}

} // namespace vigil::cli

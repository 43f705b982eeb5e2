// src/unit/checker.hpp: typed access to one unit file's JSON that reports every problem.
//
// Each getter validates one value, its type and its bounds (every getter takes an upper bound:
// see vigil/unit/bounds.hpp; no string holds a NUL), and returns it, or reports a Diagnostic at
// the value's position (from json_positions) and returns nullopt. Nothing throws, nothing stops:
// the loader calls every getter it needs and the Checker accumulates all problems of the file.
#pragma once

#include <algorithm>
#include <array>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "vigil/unit/bounds.hpp"
#include "vigil/unit/json_positions.hpp"
#include "vigil/unit/unit.hpp"
#include "vigil/unit/values.hpp"

namespace vigil::unit::detail {

using nlohmann::json;
using Fields = std::vector<std::string_view>;

template <class E> struct EnumName {
    std::string_view name;
    E value;
};

// A short rendering of a JSON value for "got ..." ("sometimes" quoted, objects abbreviated).
std::string describe(const json &v);
// A file mode written as an octal string of 3 or 4 digits ("0660", "022"), at most 0777
// (umask, a unix socket's mode); nullopt for anything else.
std::optional<unsigned> octal_mode(const json &v);
// A string from the input as messages show it: JSON-quoted and escaped (no control character
// reaches a terminal), at most 60 characters.
std::string shown(std::string_view s);
// A string from the input as text for a terminal: as it is, or JSON-quoted (whole) when it holds
// a control character, so that no escape sequence in a hostile unit directory reaches the
// terminal of whoever runs vigild --check.
std::string printable(std::string_view s);

// The diagnostics of one load: at most bounds::max_diagnostics are kept and the others only
// counted (load_dir() then adds one that says how many were not shown), so that a hostile
// directory cannot make millions of them.
class Diagnostics {
public:
    void add(Diagnostic d) {
        if (kept_.size() < bounds::max_diagnostics)
            kept_.push_back(std::move(d));
        else
            ++dropped_;
    }
    bool empty() const { return kept_.empty(); }
    std::size_t dropped() const { return dropped_; }
    std::vector<Diagnostic> &kept() { return kept_; }

private:
    std::vector<Diagnostic> kept_;
    std::size_t dropped_ = 0;
};

class Checker {
public:
    Checker(std::string file, const PositionedJson &pj, Diagnostics &out)
        : file_(std::move(file)), pj_(pj), out_(out) {}

    const std::string &file() const { return file_; }
    Pos value_pos(const std::string &ptr) const;
    Pos key_pos(const std::string &ptr) const;

    // At the value (type and range problems) or at the key (unknown or misplaced fields).
    void error(const std::string &ptr, std::string message);
    void error_at_key(const std::string &ptr, std::string message);

    // Reports every key of `obj` not in `allowed` (with a "did you mean" among `allowed`).
    // `why_not` may explain known-but-misplaced keys: it returns a message or "".
    template <class WhyNot>
    void check_keys(const json &obj, const std::string &ptr, const Fields &allowed,
                    WhyNot why_not) {
        for (const auto &[k, v] : obj.items()) {
            if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) continue;
            std::string p = pointer_append(ptr, k);
            if (std::string why = why_not(k); !why.empty()) {
                error_at_key(p, why);
                continue;
            }
            std::string msg = "unknown field " + shown(k);
            if (std::string near = closest(k, allowed); !near.empty())
                msg += "; did you mean \"" + near + "\"?";
            error_at_key(p, msg);
        }
    }
    void check_keys(const json &obj, const std::string &ptr, const Fields &allowed) {
        check_keys(obj, ptr, allowed, [](const std::string &) { return std::string(); });
    }

    bool expect_object(const json &v, const std::string &ptr);
    // Every string is at most `max_bytes` long and holds no NUL (C APIs would cut it there).
    std::optional<std::string> string(const json &v, const std::string &ptr, bool non_empty = false,
                                      std::size_t max_bytes = bounds::max_string_bytes);
    std::optional<bool> boolean(const json &v, const std::string &ptr);
    std::optional<std::int64_t> integer(const json &v, const std::string &ptr, std::int64_t min,
                                        std::int64_t max);
    std::optional<double> number(const json &v, const std::string &ptr, double min, double max);
    // A duration string from `min` to `max`; `infinity` allows "infinity" (returned as nullopt
    // inside the optional).
    std::optional<std::optional<Duration>> duration(const json &v, const std::string &ptr,
                                                    bool infinity, Duration min, Duration max);
    // A size (a JSON integer or a size string) from `min` to `max` bytes.
    std::optional<std::uint64_t> size(const json &v, const std::string &ptr, std::uint64_t min,
                                      std::uint64_t max);
    // At most `max_items` strings of at most `max_bytes` each.
    std::optional<std::vector<std::string>> string_array(const json &v, const std::string &ptr,
                                                         bool non_empty, std::size_t max_items,
                                                         std::size_t max_bytes);
    // At most `max_entries` members; keys and values checked as by string().
    std::optional<std::map<std::string, std::string>>
    string_map(const json &v, const std::string &ptr, std::size_t max_entries,
               std::size_t max_key_bytes, std::size_t max_value_bytes);
    // Compiles a PCRE2 pattern so that a bad regex is reported at load time.
    std::optional<std::string> regex(const json &v, const std::string &ptr);

    template <class E, std::size_t N>
    std::optional<E> enumeration(const json &v, const std::string &ptr,
                                 const std::array<EnumName<E>, N> &names) {
        if (v.is_string()) {
            for (const auto &n : names)
                if (v.get_ref<const std::string &>() == n.name) return n.value;
        }
        std::string msg = "expected one of ";
        for (std::size_t i = 0; i < N; ++i) {
            if (i) msg += ", ";
            msg += "\"" + std::string(names[i].name) + "\"";
        }
        msg += "; got " + describe(v);
        if (v.is_string()) {
            std::vector<std::string_view> all;
            for (const auto &n : names)
                all.push_back(n.name);
            if (auto near = closest(v.get_ref<const std::string &>(), all); !near.empty())
                msg += "; did you mean \"" + near + "\"?";
        }
        error(ptr, msg);
        return std::nullopt;
    }

private:
    std::string file_;
    const PositionedJson &pj_;
    Diagnostics &out_;
};

} // namespace vigil::unit::detail

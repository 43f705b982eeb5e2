// Typed, diagnosing access to unit-file JSON (see checker.hpp).
#include "checker.hpp"

#include <cmath>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "vigil/core/names.hpp"
#include "vigil/unit/values.hpp"

namespace vigil::unit::detail {

std::optional<unsigned> octal_mode(const json &v) {
    if (!v.is_string()) return std::nullopt;
    const auto &s = v.get_ref<const std::string &>();
    if (s.size() < 3 || s.size() > 4) return std::nullopt;
    unsigned value = 0;
    for (char ch : s) {
        if (ch < '0' || ch > '7') return std::nullopt;
        value = value * 8 + static_cast<unsigned>(ch - '0');
    }
    if (value > 0777) return std::nullopt;
    return value;
}

std::string describe(const json &v) {
    switch (v.type()) {
    case json::value_t::object:
        return "an object";
    case json::value_t::array:
        return "an array";
    case json::value_t::null:
        return "null";
    case json::value_t::string:
    case json::value_t::boolean:
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
    case json::value_t::binary:
    case json::value_t::discarded:
        break;
    }
    std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
    if (s.size() > 60) s = s.substr(0, 57) + "...";
    return s;
}

std::string shown(std::string_view s) {
    return describe(json(std::string(s)));
}

std::string printable(std::string_view s) {
    bool control = std::any_of(s.begin(), s.end(), [](char ch) {
        auto u = static_cast<unsigned char>(ch);
        return u < 0x20 || u == 0x7f;
    });
    if (!control) return std::string(s);
    return json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
}

Pos Checker::value_pos(const std::string &ptr) const {
    auto it = pj_.value_pos.find(ptr);
    return it == pj_.value_pos.end() ? Pos{} : it->second;
}

Pos Checker::key_pos(const std::string &ptr) const {
    auto it = pj_.key_pos.find(ptr);
    return it == pj_.key_pos.end() ? value_pos(ptr) : it->second;
}

void Checker::error(const std::string &ptr, std::string message) {
    Pos p = value_pos(ptr);
    out_.add(Diagnostic{file_, p.line, p.column, ptr, std::move(message)});
}

void Checker::error_at_key(const std::string &ptr, std::string message) {
    Pos p = key_pos(ptr);
    out_.add(Diagnostic{file_, p.line, p.column, ptr, std::move(message)});
}

bool Checker::expect_object(const json &v, const std::string &ptr) {
    if (v.is_object()) return true;
    error(ptr, "expected an object; got " + describe(v));
    return false;
}

namespace {

// Why a string may not be used as it is, or "".
std::string text_problem(std::string_view s, std::size_t max_bytes) {
    if (s.size() > max_bytes)
        return "must be at most " + std::to_string(max_bytes) + " bytes long; got " +
               std::to_string(s.size()) + " bytes";
    if (s.find('\0') != std::string_view::npos) return "must not contain a NUL character (\\u0000)";
    return {};
}

} // namespace

std::optional<std::string> Checker::string(const json &v, const std::string &ptr, bool non_empty,
                                           std::size_t max_bytes) {
    if (!v.is_string()) {
        error(ptr, "expected a string; got " + describe(v));
        return std::nullopt;
    }
    const auto &s = v.get_ref<const std::string &>();
    if (non_empty && s.empty()) {
        error(ptr, "must not be empty");
        return std::nullopt;
    }
    if (std::string why = text_problem(s, max_bytes); !why.empty()) {
        error(ptr, why);
        return std::nullopt;
    }
    return s;
}

std::optional<bool> Checker::boolean(const json &v, const std::string &ptr) {
    if (!v.is_boolean()) {
        error(ptr, "expected true or false; got " + describe(v));
        return std::nullopt;
    }
    return v.get<bool>();
}

std::optional<std::int64_t> Checker::integer(const json &v, const std::string &ptr,
                                             std::int64_t min, std::int64_t max) {
    std::int64_t n = 0;
    if (v.is_number_unsigned()) {
        auto u = v.get<std::uint64_t>();
        n = u > static_cast<std::uint64_t>(max) ? max : static_cast<std::int64_t>(u);
        if (u > static_cast<std::uint64_t>(max)) {
            error(ptr, "must be at most " + std::to_string(max) + "; got " + describe(v));
            return std::nullopt;
        }
    } else if (v.is_number_integer()) {
        n = v.get<std::int64_t>();
    } else {
        error(ptr, "expected an integer; got " + describe(v));
        return std::nullopt;
    }
    if (n < min) {
        error(ptr, "must be at least " + std::to_string(min) + "; got " + describe(v));
        return std::nullopt;
    }
    if (n > max) {
        error(ptr, "must be at most " + std::to_string(max) + "; got " + describe(v));
        return std::nullopt;
    }
    return n;
}

std::optional<double> Checker::number(const json &v, const std::string &ptr, double min,
                                      double max) {
    if (!v.is_number()) {
        error(ptr, "expected a number; got " + describe(v));
        return std::nullopt;
    }
    double d = v.get<double>();
    if (!(d >= min && d <= max)) {
        auto show = [](double x) {
            std::string s = json(x).dump();
            return s;
        };
        error(ptr, "must be between " + show(min) + " and " + show(max) + "; got " + describe(v));
        return std::nullopt;
    }
    return d;
}

std::optional<std::optional<Duration>> Checker::duration(const json &v, const std::string &ptr,
                                                         bool infinity, Duration min,
                                                         Duration max) {
    std::string expected = infinity
                               ? "a duration like \"10s\", \"250ms\", \"1m30s\" or \"infinity\""
                               : "a duration like \"10s\", \"250ms\" or \"1m30s\"";
    if (!v.is_string()) {
        error(ptr, "expected " + expected + "; got " + describe(v));
        return std::nullopt;
    }
    const auto &s = v.get_ref<const std::string &>();
    if (infinity && s == "infinity") return std::optional<Duration>{};
    auto d = scan_duration(s);
    if (d.too_large || (d.value && *d.value > max)) {
        error(ptr, "must be at most " + core::format_duration(max) + "; got " + describe(v));
        return std::nullopt;
    }
    if (!d.value) {
        std::string hint;
        if (!s.empty() && s.find_first_not_of("0123456789.") == std::string::npos)
            hint = " (a unit is required: \"" + s + "s\" or \"" + s + "ms\")";
        error(ptr, "expected " + expected + "; got " + describe(v) + hint);
        return std::nullopt;
    }
    if (*d.value < min) {
        error(ptr, min == Duration{1}
                       ? "must be greater than 0; got " + describe(v)
                       : "must be at least " + core::format_duration(min) + "; got " + describe(v));
        return std::nullopt;
    }
    return std::optional<Duration>{*d.value};
}

std::optional<std::uint64_t> Checker::size(const json &v, const std::string &ptr, std::uint64_t min,
                                           std::uint64_t max) {
    ScannedSize n;
    if (v.is_number_unsigned())
        n.value = v.get<std::uint64_t>();
    else if (v.is_string())
        n = scan_size(v.get_ref<const std::string &>());
    if (n.too_large || (n.value && *n.value > max)) {
        error(ptr, "must be at most " + format_size(max) + "; got " + describe(v));
        return std::nullopt;
    }
    if (!n.value) {
        error(ptr,
              "expected a size like \"64KiB\", \"10MiB\" or a number of bytes; got " + describe(v));
        return std::nullopt;
    }
    if (*n.value < min) {
        error(ptr, "must be at least " + format_size(min) + "; got " + describe(v));
        return std::nullopt;
    }
    return n.value;
}

std::optional<std::vector<std::string>> Checker::string_array(const json &v, const std::string &ptr,
                                                              bool non_empty, std::size_t max_items,
                                                              std::size_t max_bytes) {
    if (!v.is_array()) {
        error(ptr, "expected an array of strings; got " + describe(v));
        return std::nullopt;
    }
    if (non_empty && v.empty()) {
        error(ptr, "must not be empty");
        return std::nullopt;
    }
    if (v.size() > max_items) {
        error(ptr, "must have at most " + std::to_string(max_items) + " items; got " +
                       std::to_string(v.size()));
        return std::nullopt;
    }
    std::vector<std::string> out;
    bool ok = true;
    for (std::size_t i = 0; i < v.size(); ++i) {
        auto s = string(v[i], pointer_append(ptr, std::to_string(i)), false, max_bytes);
        if (s)
            out.push_back(*s);
        else
            ok = false;
    }
    if (!ok) return std::nullopt;
    return out;
}

std::optional<std::map<std::string, std::string>>
Checker::string_map(const json &v, const std::string &ptr, std::size_t max_entries,
                    std::size_t max_key_bytes, std::size_t max_value_bytes) {
    if (!v.is_object()) {
        error(ptr, "expected an object of strings; got " + describe(v));
        return std::nullopt;
    }
    if (v.size() > max_entries) {
        error(ptr, "must have at most " + std::to_string(max_entries) + " members; got " +
                       std::to_string(v.size()));
        return std::nullopt;
    }
    std::map<std::string, std::string> out;
    bool ok = true;
    for (const auto &[k, val] : v.items()) {
        std::string p = pointer_append(ptr, k);
        if (std::string why = text_problem(k, max_key_bytes); !why.empty()) {
            error_at_key(p, "the name " + why);
            ok = false;
            continue;
        }
        auto s = string(val, p, false, max_value_bytes);
        if (s)
            out[k] = *s;
        else
            ok = false;
    }
    if (!ok) return std::nullopt;
    return out;
}

std::optional<std::string> Checker::regex(const json &v, const std::string &ptr) {
    auto s = string(v, ptr, true, bounds::max_regex_bytes);
    if (!s) return std::nullopt;
    int code = 0;
    PCRE2_SIZE offset = 0;
    // Compiled here only to validate; the log module compiles its own copy.
    pcre2_code *re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(s->data()), s->size(), PCRE2_UTF,
                                   &code, &offset, nullptr);
    if (re) {
        pcre2_code_free(re);
        return s;
    }
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(code, buf, sizeof buf);
    error(ptr, "invalid regular expression at offset " + std::to_string(offset) + ": " +
                   reinterpret_cast<const char *>(buf));
    return std::nullopt;
}

} // namespace vigil::unit::detail

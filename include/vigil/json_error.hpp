// vigil/json_error.hpp: nlohmann/json's exception text, in words fit for a user.
//
// nlohmann's messages carry library internals ("[json.exception.out_of_range.406] number
// overflow parsing '1e999'", "[json.exception.parse_error.101] parse error at line 1, column 2:
// syntax error while parsing value - ..."). Unit-file diagnostics and control-protocol errors
// give the position themselves (or ask to keep nlohmann's "at line 1, column 2"), so this keeps
// what went wrong, and bounds its length (the message quotes the last token read, which can be
// most of the input).
#pragma once

#include <string>
#include <string_view>

namespace vigil {

inline std::string json_error_text(std::string_view what, bool keep_position = false,
                                   std::size_t max_bytes = 160) {
    // "[json.exception.KIND.ID] " first.
    if (what.starts_with("[json.exception.")) {
        if (auto p = what.find("] "); p != std::string_view::npos) what.remove_prefix(p + 2);
    }
    // "parse error at line 1, column 2: " (the caller says where).
    if (!keep_position && what.starts_with("parse error")) {
        if (auto c = what.find("column "); c != std::string_view::npos) {
            if (auto colon = what.find(": ", c); colon != std::string_view::npos)
                what.remove_prefix(colon + 2);
        }
    }
    std::string out(what);
    if (out.starts_with("number overflow parsing "))
        out = "number out of range: " + out.substr(24) + " does not fit in a double";
    if (out.size() > max_bytes) out = out.substr(0, max_bytes) + "...";
    return out;
}

} // namespace vigil

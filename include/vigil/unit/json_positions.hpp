// vigil/unit/json_positions.hpp: JSON parsing that remembers where every value was written.
//
// nlohmann/json 3.11.2 keeps no source positions (JSON_DIAGNOSTIC_POSITIONS arrived in 3.12.0)
// and silently keeps the last of two equal keys. Unit-file diagnostics need both, so
// parse_positioned() runs json::sax_parse with its own handler:
//  - a small scanner first lists the start offset of every token of the text; nlohmann calls
//    the SAX handler exactly once per token except ':' and ',' (start_object at '{', key at
//    the key string, one call per scalar, end_object at '}'), so the handler's n-th call maps
//    to the n-th such token, and its offset gives the line and column;
//  - the handler builds the DOM itself (so it knows the JSON pointer of every value) and
//    reports duplicate keys instead of overwriting.
// Lines and columns are 1-based; a column counts UTF-8 code points (a tab counts as one),
// which is what an editor's "go to column" expects for non-ASCII text.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace vigil::unit {

struct Pos {
    int line = 0;   // 1-based; 0: unknown
    int column = 0; // 1-based, in code points
};

struct JsonProblem {
    Pos pos;
    std::string pointer; // JSON pointer of the offending key or value; empty for syntax errors
    std::string message;
};

struct PositionedJson {
    nlohmann::json value;                 // null when syntax_ok is false
    std::map<std::string, Pos> value_pos; // JSON pointer -> first character of the value
    std::map<std::string, Pos> key_pos;   // JSON pointer -> opening quote of the member's key
    std::vector<JsonProblem> problems;    // syntax error (at most one), duplicate keys
    bool syntax_ok = false;
};

// Arrays and objects nest at most this deep; deeper text is one syntax problem ("nested deeper
// than 64 levels") at the opening bracket that goes too deep. Unit files nest a few levels; the
// limit keeps a broken or hostile file from costing quadratic time and memory (every value's
// JSON pointer spells its whole path: 100,000 levels took over 2 GiB) and from overflowing the
// stack in nlohmann::json's recursive copy, comparison and dump.
inline constexpr std::size_t max_json_depth = 64;
// The JSON pointers of every position recorded for one text take at most this many bytes; past
// it the parse stops with one problem. Depth alone does not bound them: a long key repeats in
// the pointer of every value under it, so a 1 MiB text of one 400 KB key over an array of small
// values made 250,000 pointers of 400 KB each (over 4 GiB). A real unit file needs a few bytes
// of pointer per byte of text.
inline constexpr std::size_t max_pointer_bytes = std::size_t{16} << 20;

PositionedJson parse_positioned(std::string_view text);

// Appends one RFC 6901 reference token ("~" -> "~0", "/" -> "~1") to a pointer.
std::string pointer_append(std::string_view pointer, std::string_view token);

// Line and column of a byte offset in `text` (code-point columns, as above).
Pos position_of(std::string_view text, std::size_t offset);

} // namespace vigil::unit

// JSON parsing with source positions and duplicate-key detection (see json_positions.hpp).
#include "vigil/unit/json_positions.hpp"
#include "vigil/json_error.hpp"

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <set>

namespace vigil::unit {

namespace {

using nlohmann::json;

bool is_continuation(unsigned char c) {
    return (c & 0xC0) == 0x80;
}

// Start offsets of the tokens nlohmann reports to a SAX handler, in order. ':' and ',' are
// skipped because they produce no callback. The scan stops at the first character that cannot
// start a token: nlohmann reports that syntax error itself, before any callback would need it.
std::vector<std::size_t> scan_tokens(std::string_view s) {
    std::vector<std::size_t> out;
    std::size_t i = 0;
    if (s.substr(0, 3) == "\xEF\xBB\xBF") i = 3; // nlohmann skips a UTF-8 BOM too
    while (i < s.size()) {
        char c = s[i];
        switch (c) {
        case ' ':
        case '\t':
        case '\n':
        case '\r':
        case ':':
        case ',':
            ++i;
            break;
        case '{':
        case '}':
        case '[':
        case ']':
            out.push_back(i++);
            break;
        case '"': {
            out.push_back(i++);
            while (i < s.size() && s[i] != '"')
                i += (s[i] == '\\') ? 2 : 1;
            ++i;
            break;
        }
        default:
            if (c == '-' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')) {
                out.push_back(i);
                while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) ||
                                        s[i] == '-' || s[i] == '+' || s[i] == '.'))
                    ++i;
            } else {
                return out;
            }
        }
    }
    return out;
}

class Handler {
public:
    Handler(std::string_view text, PositionedJson &out)
        : text_(text), tokens_(scan_tokens(text)), out_(out) {
        for (std::size_t i = 0; i < text.size(); ++i)
            if (text[i] == '\n') line_starts_.push_back(i + 1);
    }

    bool null() { return scalar(nullptr); }
    bool boolean(bool b) { return scalar(b); }
    bool number_integer(json::number_integer_t v) { return scalar(v); }
    bool number_unsigned(json::number_unsigned_t v) { return scalar(v); }
    bool number_float(json::number_float_t v, const json::string_t &) { return scalar(v); }
    bool string(json::string_t &v) { return scalar(std::move(v)); }
    bool binary(json::binary_t &) { return false; } // never produced by the JSON text parser

    bool start_object(std::size_t) {
        if (stack_.size() >= max_json_depth) return too_deep();
        Pos p = take();
        std::string ptr;
        json *node = place(json::object(), p, ptr);
        if (!node) return false;
        stack_.push_back(Frame{node, std::move(ptr), 0, {}, {}});
        return true;
    }
    bool key(json::string_t &k) {
        Pos p = take();
        Frame &f = stack_.back();
        std::string ptr = pointer_append(f.pointer, k);
        if (!charge(ptr, p)) return false;
        auto [it, fresh] = f.seen.emplace(k, p);
        if (!fresh) {
            std::string shown = k.size() > 60 ? k.substr(0, 57) + "..." : k;
            out_.problems.push_back({p, ptr,
                                     "duplicate key \"" + shown + "\" (first at line " +
                                         std::to_string(it->second.line) + ", column " +
                                         std::to_string(it->second.column) + ")"});
        }
        out_.key_pos[ptr] = p;
        f.key = k;
        return true;
    }
    bool end_object() {
        take();
        stack_.pop_back();
        return true;
    }
    bool start_array(std::size_t) {
        if (stack_.size() >= max_json_depth) return too_deep();
        Pos p = take();
        std::string ptr;
        json *node = place(json::array(), p, ptr);
        if (!node) return false;
        stack_.push_back(Frame{node, std::move(ptr), 0, {}, {}});
        return true;
    }
    bool end_array() {
        take();
        stack_.pop_back();
        return true;
    }

    bool parse_error(std::size_t position, const std::string &,
                     const nlohmann::detail::exception &ex) {
        // `position` counts the characters read, the offending one included.
        std::size_t off = position == 0 ? 0 : position - 1;
        out_.problems.push_back(
            {pos_at(std::min(off, text_.size())), "", "JSON " + json_error_text(ex.what())});
        out_.syntax_ok = false;
        return false;
    }

    Pos pos_at(std::size_t off) const {
        auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), off);
        std::size_t start = *(it - 1);
        if (start == 0 && text_.substr(0, 3) == "\xEF\xBB\xBF") start = 3; // not a column
        int col = 1;
        for (std::size_t i = start; i < off && i < text_.size(); ++i)
            if (!is_continuation(static_cast<unsigned char>(text_[i]))) ++col;
        return Pos{static_cast<int>(it - line_starts_.begin()), col};
    }

private:
    struct Frame {
        json *node;
        std::string pointer;
        std::size_t index;               // next array index
        std::map<std::string, Pos> seen; // object keys so far, for duplicates
        std::string key;                 // the key whose value comes next
    };

    // Stops the parse (sax_parse then returns false) before the path becomes too long.
    bool too_deep() {
        out_.problems.push_back(
            {take(), stack_.back().pointer,
             "JSON nested deeper than " + std::to_string(max_json_depth) + " levels"});
        out_.syntax_ok = false;
        return false;
    }

    // Counts a pointer about to be recorded against max_pointer_bytes; past it, stops the parse
    // with one problem at `p`.
    bool charge(const std::string &ptr, Pos p) {
        pointer_bytes_ += ptr.size();
        if (pointer_bytes_ <= max_pointer_bytes) return true;
        out_.problems.push_back(
            {p, "",
             "JSON too costly to index: the paths of its values would take more than " +
                 std::to_string(max_pointer_bytes >> 20) +
                 " MiB (long keys repeat in the path of every value under them)"});
        out_.syntax_ok = false;
        return false;
    }

    Pos take() {
        if (next_ >= tokens_.size()) return Pos{};
        return advance_to(tokens_[next_++]);
    }

    // pos_at() for offsets in increasing order (the tokens'): counts on from the previous token
    // instead of from the line's start, which made a long line quadratic (a 200 KB unit file
    // on one line took minutes).
    Pos advance_to(std::size_t off) {
        if (off < cursor_off_ || off > text_.size()) return pos_at(std::min(off, text_.size()));
        auto it = std::upper_bound(line_starts_.begin() + static_cast<std::ptrdiff_t>(cursor_line_),
                                   line_starts_.end(), off);
        const auto line = static_cast<std::size_t>(it - line_starts_.begin()) - 1;
        if (line != cursor_line_) {
            cursor_line_ = line;
            cursor_off_ = line_starts_[line];
            cursor_col_ = 1;
        }
        for (; cursor_off_ < off; ++cursor_off_)
            if (!is_continuation(static_cast<unsigned char>(text_[cursor_off_]))) ++cursor_col_;
        return Pos{static_cast<int>(line) + 1, cursor_col_};
    }

    template <class V> bool scalar(V &&v) {
        Pos p = take();
        std::string ptr;
        return place(json(std::forward<V>(v)), p, ptr) != nullptr;
    }

    // Stores `v` where the parser is (root, next array element or current key), records its
    // position and returns it (nullptr: over max_pointer_bytes, the parse stops). Pointers stay
    // valid: objects are std::maps, and an array only grows after every frame inside its
    // previous element has been popped.
    json *place(json v, Pos p, std::string &ptr) {
        if (!stack_.empty()) {
            const Frame &f = stack_.back();
            ptr = pointer_append(f.pointer, f.node->is_array() ? std::to_string(f.index) : f.key);
            if (!charge(ptr, p)) return nullptr;
        }
        json *slot;
        if (stack_.empty()) {
            out_.value = std::move(v);
            slot = &out_.value;
        } else if (Frame &f = stack_.back(); f.node->is_array()) {
            ++f.index;
            f.node->push_back(std::move(v));
            slot = &f.node->back();
        } else {
            slot = &((*f.node)[f.key] = std::move(v));
        }
        out_.value_pos[ptr] = p;
        return slot;
    }

    std::string_view text_;
    std::vector<std::size_t> tokens_;
    std::vector<std::size_t> line_starts_{0};
    std::size_t next_ = 0;
    // advance_to()'s cursor: a byte offset, its line (index into line_starts_) and column.
    std::size_t cursor_off_ = text_.substr(0, 3) == "\xEF\xBB\xBF" ? 3 : 0;
    std::size_t cursor_line_ = 0;
    int cursor_col_ = 1;
    std::vector<Frame> stack_;
    std::size_t pointer_bytes_ = 0;
    PositionedJson &out_;
};

} // namespace

std::string pointer_append(std::string_view pointer, std::string_view token) {
    std::string out(pointer);
    out += '/';
    for (char c : token) {
        if (c == '~')
            out += "~0";
        else if (c == '/')
            out += "~1";
        else
            out += c;
    }
    return out;
}

Pos position_of(std::string_view text, std::size_t offset) {
    PositionedJson dummy;
    Handler h(text, dummy);
    return h.pos_at(std::min(offset, text.size()));
}

PositionedJson parse_positioned(std::string_view text) {
    PositionedJson out;
    out.syntax_ok = true;
    Handler h(text, out);
    // nlohmann's lexer takes a NUL byte for the end of the input, so "{...}\0garbage" would
    // parse; JSON text cannot hold a NUL anywhere (inside strings it must be escaped).
    if (auto nul = text.find('\0'); nul != std::string_view::npos) {
        out.problems.push_back({h.pos_at(nul), "", "JSON text must not contain a NUL byte"});
        out.syntax_ok = false;
        out.value = nullptr;
        return out;
    }
    // strict: trailing garbage after the value is an error too. Comments are not allowed:
    // unit files are plain RFC 8259 JSON.
    bool ok = json::sax_parse(text.begin(), text.end(), &h, json::input_format_t::json, true);
    if (!ok || !out.syntax_ok) {
        out.syntax_ok = false;
        out.value = nullptr;
    }
    return out;
}

} // namespace vigil::unit

// env_file.cpp: systemd EnvironmentFile syntax (see include/vigil/proc/spawn.hpp).
//
// The rules, after systemd's parse_env_file():
//   - Leading whitespace is skipped; a line whose first other character is '#' or ';' is a
//     comment. Empty lines are ignored.
//   - KEY=VALUE, KEY a shell variable name ([A-Za-z_][A-Za-z0-9_]*); whitespace around '=' is
//     allowed. An `export ` prefix is tolerated (shell-sourced files use it).
//   - Unquoted values: trailing whitespace is removed, `\x` is a literal x, and a backslash at
//     the end of the line continues the value on the next line.
//   - 'single quotes' are literal. "double quotes" honour \" \\ \` \$ and backslash-newline;
//     any other backslash stays as it is (as in sh). Quoted parts may span lines and may be
//     glued to unquoted parts (a"b c"d is `ab cd`).
// Errors name the line the entry started on; the parser then skips to the next line and
// carries on, so one run reports every problem.
#include "vigil/proc/spawn.hpp"

namespace vigil::proc {

namespace {

bool is_blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

bool valid_name(std::string_view k) {
    if (k.empty()) return false;
    for (std::size_t i = 0; i < k.size(); ++i) {
        char c = k[i];
        bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
        bool digit = c >= '0' && c <= '9';
        if (!alpha && !(digit && i > 0)) return false;
    }
    return true;
}

enum class State {
    PreKey,
    Key,
    KeyEnd, // after the key, before '='
    PreValue,
    Value,
    ValueEscape,
    Single,
    Double,
    DoubleEscape,
    Comment,
    Skip, // error recovery: ignore the rest of the line
};

} // namespace

EnvFileResult parse_env_file(std::string_view text) {
    EnvFileResult r;
    State st = State::PreKey;
    std::string key, value;
    std::size_t keep = 0; // value length without trailing unquoted whitespace
    int line = 1, entry_line = 1;

    auto error = [&](int at, std::string what) {
        r.errors.push_back("line " + std::to_string(at) + ": " + std::move(what));
    };
    auto emit = [&] {
        value.resize(keep);
        r.vars.emplace_back(std::move(key), std::move(value));
        key.clear();
        value.clear();
        keep = 0;
    };
    auto start_value = [&] {
        if (!valid_name(key)) {
            error(entry_line, "invalid variable name '" + key + "'");
            key.clear();
            return State::Skip;
        }
        value.clear();
        keep = 0;
        return State::PreValue;
    };

    for (char c : text) {
        switch (st) {
        case State::PreKey:
            if (c == '\n') {
                ++line;
            } else if (is_blank(c)) {
            } else if (c == '#' || c == ';') {
                st = State::Comment;
            } else if (c == '=') {
                entry_line = line;
                error(line, "expected KEY=VALUE, got an empty name");
                st = State::Skip;
            } else {
                entry_line = line;
                key.assign(1, c);
                st = State::Key;
            }
            break;
        case State::Key:
            if (c == '=') {
                st = start_value();
            } else if (c == '\n') {
                error(entry_line, "expected KEY=VALUE");
                key.clear();
                ++line;
                st = State::PreKey;
            } else if (is_blank(c)) {
                st = State::KeyEnd;
            } else {
                key += c;
            }
            break;
        case State::KeyEnd:
            if (c == '=') {
                st = start_value();
            } else if (c == '\n') {
                error(entry_line, "expected KEY=VALUE");
                key.clear();
                ++line;
                st = State::PreKey;
            } else if (is_blank(c)) {
            } else if (key == "export") {
                key.assign(1, c);
                st = State::Key;
            } else {
                error(entry_line, "expected '=' after '" + key + "'");
                key.clear();
                st = State::Skip;
            }
            break;
        case State::PreValue:
            if (is_blank(c)) break;
            st = State::Value;
            [[fallthrough]];
        case State::Value:
            if (c == '\n') {
                emit();
                ++line;
                st = State::PreKey;
            } else if (c == '\\') {
                st = State::ValueEscape;
            } else if (c == '\'') {
                st = State::Single;
            } else if (c == '"') {
                st = State::Double;
            } else {
                value += c;
                if (!is_blank(c)) keep = value.size();
            }
            break;
        case State::ValueEscape:
            if (c == '\n') {
                ++line; // continuation: the backslash and the newline vanish
            } else {
                value += c;
                keep = value.size();
            }
            st = State::Value;
            break;
        case State::Single:
            if (c == '\'') {
                keep = value.size();
                st = State::Value;
            } else {
                if (c == '\n') ++line;
                value += c;
            }
            break;
        case State::Double:
            if (c == '"') {
                keep = value.size();
                st = State::Value;
            } else if (c == '\\') {
                st = State::DoubleEscape;
            } else {
                if (c == '\n') ++line;
                value += c;
            }
            break;
        case State::DoubleEscape:
            if (c == '\n') {
                ++line;
            } else if (c == '"' || c == '\\' || c == '`' || c == '$') {
                value += c;
            } else {
                value += '\\';
                value += c;
            }
            st = State::Double;
            break;
        case State::Comment:
        case State::Skip:
            if (c == '\n') {
                ++line;
                st = State::PreKey;
            }
            break;
        }
    }

    // End of text: finish whatever was open.
    switch (st) {
    case State::PreKey:
    case State::Comment:
    case State::Skip:
        break;
    case State::Key:
    case State::KeyEnd:
        error(entry_line, "expected KEY=VALUE");
        break;
    case State::PreValue:
    case State::Value:
    case State::ValueEscape: // a trailing backslash at the very end continues into nothing
        emit();
        break;
    case State::Single:
    case State::Double:
    case State::DoubleEscape:
        error(entry_line, "unterminated quote");
        break;
    }
    return r;
}

} // namespace vigil::proc

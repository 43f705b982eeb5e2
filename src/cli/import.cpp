// src/cli/import.cpp: `vigilctl import` (see import.hpp for the design, vigilctl(1) for the
// mapping). The Python functions whose behaviour is reproduced here are supervisord's (4.2):
// configparser.RawConfigParser._read, shlex.shlex, str.__mod__, and supervisor.datatypes.
#include "import.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <glob.h>
#include <new>
#include <set>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "vigil/core/names.hpp"
#include "vigil/unit/bounds.hpp"

extern char **environ;

namespace vigil::cli::import {

namespace {

namespace ubounds = vigil::unit::bounds;
using ojson = nlohmann::ordered_json;

// ---- text ---------------------------------------------------------------------------------

// Python's str.isspace() for the characters a configuration uses: ASCII white space and the
// separators U+001C..U+001F, which Python counts too.
bool py_space(char ch) {
    auto c = static_cast<unsigned char>(ch);
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

std::string_view lstrip(std::string_view s) {
    while (!s.empty() && py_space(s.front()))
        s.remove_prefix(1);
    return s;
}

std::string_view rstrip(std::string_view s) {
    while (!s.empty() && py_space(s.back()))
        s.remove_suffix(1);
    return s;
}

std::string_view strip(std::string_view s) {
    return rstrip(lstrip(s));
}

std::string lower(std::string_view s) {
    std::string r(s);
    for (char &ch : r)
        if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    return r;
}

// The length of the UTF-8 sequence that starts at s[i], or 0 when it is not valid UTF-8
// (overlong forms, surrogates and code points past U+10FFFF included).
std::size_t utf8_seq(std::string_view s, std::size_t i) {
    auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    unsigned char c = b(i);
    if (c < 0x80) return 1;
    std::size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (n == 0 || c > 0xf4 || i + n > s.size()) return 0;
    for (std::size_t k = 1; k < n; ++k)
        if ((b(i + k) & 0xc0) != 0x80) return 0;
    if (c == 0xe0 && b(i + 1) < 0xa0) return 0;  // overlong
    if (c == 0xed && b(i + 1) >= 0xa0) return 0; // surrogate
    if (c == 0xf0 && b(i + 1) < 0x90) return 0;  // overlong
    if (c == 0xf4 && b(i + 1) >= 0x90) return 0; // past U+10FFFF
    return n;
}

bool valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        std::size_t n = utf8_seq(s, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

std::size_t code_points(std::string_view s) {
    std::size_t n = 0;
    for (char ch : s)
        if ((static_cast<unsigned char>(ch) & 0xc0) != 0x80) ++n;
    return n;
}

// The longest prefix of valid UTF-8 `s` of at most `max` bytes that ends on a character.
std::string utf8_prefix(std::string_view s, std::size_t max) {
    if (s.size() <= max) return std::string(s);
    std::size_t end = max;
    while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xc0) == 0x80)
        --end;
    return std::string(s.substr(0, end));
}

// The first `n` code points of `s`.
std::string_view first_code_points(std::string_view s, std::size_t n) {
    std::size_t i = 0;
    for (std::size_t seen = 0; i < s.size(); ++i) {
        if ((static_cast<unsigned char>(s[i]) & 0xc0) != 0x80) {
            if (seen == n) break;
            ++seen;
        }
    }
    return s.substr(0, i);
}

// A value for a message: quoted, cut after 80 bytes.
std::string shown(std::string_view s) {
    std::string r = "\"" + utf8_prefix(s, 80);
    if (s.size() > 80) r += "...";
    return r + "\"";
}

// ---- Python's number and flag syntax ------------------------------------------------------

// Python's int(text, base) for base 10, or 8 with an optional 0o prefix: white space around, a
// sign, digits with single underscores between them. Magnitudes past 10^15 are refused: no
// setting needs them, and every caller bounds what it keeps.
std::optional<long long> py_int(std::string_view s, int base = 10) {
    s = strip(s);
    bool negative = false;
    if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
        negative = s[0] == '-';
        s.remove_prefix(1);
    }
    if (base == 8 && s.size() >= 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'O')) {
        s.remove_prefix(2);
        if (!s.empty() && s[0] == '_') s.remove_prefix(1);
    }
    if (s.empty()) return std::nullopt;
    long long v = 0;
    bool after_digit = false;
    for (char ch : s) {
        if (ch == '_') {
            if (!after_digit) return std::nullopt;
            after_digit = false;
            continue;
        }
        int d = ch - '0';
        if (d < 0 || d >= base) return std::nullopt;
        if (v > 1'000'000'000'000'000LL) return std::nullopt;
        v = v * base + d;
        after_digit = true;
    }
    if (!after_digit) return std::nullopt;
    return negative ? -v : v;
}

// supervisor.datatypes.boolean.
std::optional<bool> py_bool(std::string_view s) {
    std::string l = lower(s);
    if (l == "yes" || l == "true" || l == "on" || l == "1") return true;
    if (l == "no" || l == "false" || l == "off" || l == "0") return false;
    return std::nullopt;
}

// supervisor.datatypes.byte_size: a number with an optional KB, MB or GB (any case; powers of
// 1024). Past what any setting can use, the result saturates at 2^62.
std::optional<long long> byte_size(std::string_view s) {
    std::string l = lower(s);
    static constexpr std::pair<std::string_view, long long> suffixes[] = {
        {"kb", 1LL << 10}, {"mb", 1LL << 20}, {"gb", 1LL << 30}};
    for (const auto &[suffix, factor] : suffixes) {
        if (l.size() >= 2 && std::string_view(l).ends_with(suffix)) {
            auto n = py_int(std::string_view(l).substr(0, l.size() - 2));
            if (!n) return std::nullopt;
            if (*n > (1LL << 62) / factor) return 1LL << 62;
            return *n * factor;
        }
    }
    return py_int(l);
}

// ---- paths --------------------------------------------------------------------------------

// os.path.normpath for POSIX paths (a leading "//" is not kept).
std::string normpath(std::string_view p) {
    bool absolute = p.starts_with('/');
    std::vector<std::string_view> parts;
    while (!p.empty()) {
        std::size_t slash = p.find('/');
        std::string_view part = p.substr(0, slash);
        p = slash == std::string_view::npos ? std::string_view{} : p.substr(slash + 1);
        if (part.empty() || part == ".") continue;
        if (part == "..") {
            if (!parts.empty() && parts.back() != "..")
                parts.pop_back();
            else if (!absolute)
                parts.push_back(part);
            continue;
        }
        parts.push_back(part);
    }
    std::string r = absolute ? "/" : "";
    for (std::size_t i = 0; i < parts.size(); ++i) {
        if (i) r += '/';
        r += parts[i];
    }
    return r.empty() ? "." : r;
}

// os.path.join(a, b) for two parts.
std::string join_path(std::string_view a, std::string_view b) {
    if (b.starts_with('/') || a.empty()) return std::string(b);
    std::string r(a);
    if (!r.ends_with('/')) r += '/';
    return r + std::string(b);
}

// os.path.abspath(os.path.dirname(p)) with `cwd` as the working directory.
std::string abs_dir(std::string_view p, const std::string &cwd) {
    std::size_t slash = p.rfind('/');
    std::string_view head = slash == std::string_view::npos ? "" : p.substr(0, slash + 1);
    return normpath(join_path(cwd, head));
}

} // namespace

// ---- findings -----------------------------------------------------------------------------

std::string format(const Finding &f) {
    std::string r;
    if (!f.file.empty()) {
        r = f.file + ":";
        if (f.line > 0) r += std::to_string(f.line) + ":";
        r += " ";
    } else {
        r = "vigilctl: import: ";
    }
    if (f.kind == Finding::Kind::Error) return r + "error: " + f.message;
    if (!f.section.empty()) r += "[" + f.section + "] ";
    if (!f.key.empty()) r += f.key + " ";
    if (!f.section.empty() || !f.key.empty()) {
        r.pop_back();
        r += ": ";
    }
    r += f.kind == Finding::Kind::Lost ? "not converted: " : "note: ";
    return r + f.message;
}

// ---- shlex ----------------------------------------------------------------------------------

std::optional<std::vector<std::string>> shlex_split(std::string_view s, std::string &error) {
    // shlex.shlex(s, posix=True) with whitespace_split=True and no comment characters.
    enum class St { Space, Word, Single, Double, Escape };
    auto white = [](char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; };
    std::vector<std::string> out;
    std::string token;
    bool quoted = false;
    St state = St::Space, escaped_from = St::Word;
    auto emit = [&] {
        if (!token.empty() || quoted) out.push_back(token);
        token.clear();
        quoted = false;
    };
    for (char ch : s) {
        switch (state) {
        case St::Space:
            if (white(ch)) break;
            if (ch == '\\') {
                escaped_from = St::Word;
                state = St::Escape;
            } else if (ch == '\'' || ch == '"') {
                quoted = true;
                state = ch == '\'' ? St::Single : St::Double;
            } else {
                token = ch;
                state = St::Word;
            }
            break;
        case St::Word:
            if (white(ch)) {
                emit();
                state = St::Space;
            } else if (ch == '\'' || ch == '"') {
                quoted = true;
                state = ch == '\'' ? St::Single : St::Double;
            } else if (ch == '\\') {
                escaped_from = St::Word;
                state = St::Escape;
            } else {
                token += ch;
            }
            break;
        case St::Single:
            if (ch == '\'')
                state = St::Word;
            else
                token += ch;
            break;
        case St::Double:
            if (ch == '"') {
                state = St::Word;
            } else if (ch == '\\') {
                escaped_from = St::Double;
                state = St::Escape;
            } else {
                token += ch;
            }
            break;
        case St::Escape:
            // In double quotes a backslash escapes only a quote or a backslash.
            if (escaped_from == St::Double && ch != '\\' && ch != '"') token += '\\';
            token += ch;
            state = escaped_from;
            break;
        }
    }
    if (state == St::Single || state == St::Double) {
        error = "no closing quotation";
        return std::nullopt;
    }
    if (state == St::Escape) {
        error = "no escaped character after the last backslash";
        return std::nullopt;
    }
    if (state == St::Word) emit();
    return out;
}

std::optional<std::vector<std::pair<std::string, std::string>>>
key_value_pairs(std::string_view s, std::string &error) {
    // shlex.shlex(s) (not POSIX): '#' comments, quotes kept in the token, and every character
    // that is neither white space nor a word character a token of its own.
    auto word = [](std::string_view c) {
        if (c.size() != 1) return false;
        char ch = c[0];
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               std::string_view("_/.+-():").find(ch) != std::string_view::npos;
    };
    auto white = [](std::string_view c) { return c == " " || c == "\t" || c == "\r" || c == "\n"; };
    auto quote = [](std::string_view c) { return c == "'" || c == "\""; };
    std::vector<std::string> tokens;
    enum class St { Space, Word, Quote } state = St::Space;
    std::string token;
    std::string_view open_quote;
    std::size_t i = 0;
    auto next_char = [&]() -> std::string_view {
        std::size_t n = std::max<std::size_t>(1, utf8_seq(s, i));
        std::string_view c = s.substr(i, n);
        i += c.size();
        return c;
    };
    auto skip_line = [&] {
        std::size_t nl = s.find('\n', i);
        i = nl == std::string_view::npos ? s.size() : nl + 1;
    };
    while (i < s.size()) {
        std::string_view c = next_char();
        switch (state) {
        case St::Space:
            if (white(c)) break;
            if (c == "#") {
                skip_line();
            } else if (word(c)) {
                token = c;
                state = St::Word;
            } else if (quote(c)) {
                token = c;
                open_quote = c;
                state = St::Quote;
            } else {
                tokens.emplace_back(c);
            }
            break;
        case St::Word:
            if (white(c)) {
                tokens.push_back(std::move(token));
                token.clear();
                state = St::Space;
            } else if (c == "#") {
                skip_line(); // and the word goes on: Python's non-POSIX shlex does that
            } else if (word(c) || quote(c)) {
                token += c;
            } else {
                tokens.push_back(std::move(token));
                token.clear();
                tokens.emplace_back(c);
                state = St::Space;
            }
            break;
        case St::Quote:
            token += c;
            if (c == open_quote) {
                tokens.push_back(std::move(token));
                token.clear();
                state = St::Space;
            }
            break;
        }
    }
    if (state == St::Quote) {
        error = "no closing quotation";
        return std::nullopt;
    }
    if (state == St::Word) tokens.push_back(std::move(token));

    std::vector<std::pair<std::string, std::string>> pairs;
    std::map<std::string_view, std::size_t> index; // a key's place in `pairs`
    for (std::size_t k = 0; k < tokens.size(); k += 4) {
        if (k + 2 >= tokens.size() || tokens[k + 1] != "=") {
            error = "expected KEY=value pairs separated by commas (quote a value that has "
                    "characters other than letters, digits and _/.+-():)";
            return std::nullopt;
        }
        std::string_view v = tokens[k + 2];
        while (!v.empty() && quote(v.substr(0, 1)))
            v.remove_prefix(1);
        while (!v.empty() && quote(v.substr(v.size() - 1)))
            v.remove_suffix(1);
        if (auto same = index.find(tokens[k]); same != index.end()) {
            pairs[same->second].second = v;
        } else {
            index.emplace(tokens[k], pairs.size());
            pairs.emplace_back(tokens[k], v);
        }
    }
    return pairs;
}

// ---- %-formatting -------------------------------------------------------------------------

const Expansion *Scope::find(std::string_view name) const {
    for (auto it = maps.rbegin(); it != maps.rend(); ++it) {
        if (!*it) continue;
        if (auto f = (*it)->find(name); f != (*it)->end()) return &f->second;
    }
    return nullptr;
}

namespace {

// The names a scope offers, for a message about one it lacks.
std::string missing_name_message(std::string_view name) {
    if (name.starts_with("ENV_"))
        return "%(" + std::string(name) + ")s: " + std::string(name.substr(4)) +
               " is set neither in vigilctl's environment nor in an \"environment\" setting "
               "(supervisord takes it from its own environment when it starts: set it and "
               "import again, or write the value)";
    return "%(" + std::string(name) +
           ")s names nothing (the names are here, program_name, group_name, host_node_name, "
           "process_num, numprocs and ENV_ followed by a variable's name)";
}

} // namespace

std::optional<std::string> expand(std::string_view s, const Scope &scope, std::string &error) {
    std::string out;
    std::size_t i = 0;
    auto fail = [&](std::string why) {
        error = std::move(why);
        return std::nullopt;
    };
    while (i < s.size()) {
        std::size_t pct = s.find('%', i);
        if (pct == std::string_view::npos) {
            out.append(s.substr(i));
            break;
        }
        out.append(s.substr(i, pct - i));
        i = pct + 1;
        if (i >= s.size()) return fail("a lone % at the end (write %% for a % sign)");
        if (s[i] == '%') {
            out += '%';
            ++i;
            continue;
        }
        if (s[i] != '(') return fail("a % that is not followed by (name) (write %% for a % sign)");
        // The name, with nested parentheses, as Python reads it.
        std::size_t start = ++i;
        int depth = 1;
        while (i < s.size() && depth > 0) {
            if (s[i] == '(') ++depth;
            if (s[i] == ')') --depth;
            ++i;
        }
        if (depth > 0) return fail("\"%(\" without its \")\"");
        std::string_view name = s.substr(start, i - 1 - start);
        bool left = false, plus = false, space = false, alternate = false, zero = false;
        for (bool more = true; more && i < s.size();) {
            switch (s[i]) {
            case '-':
                left = true;
                break;
            case '+':
                plus = true;
                break;
            case ' ':
                space = true;
                break;
            case '#':
                alternate = true;
                break;
            case '0':
                zero = true;
                break;
            default:
                more = false;
                continue;
            }
            ++i;
        }
        auto number = [&](long long &into) -> bool {
            if (i < s.size() && s[i] == '*') return false;
            into = 0;
            while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
                into = into * 10 + (s[i] - '0');
                if (into > max_format_width) return false;
                ++i;
            }
            return true;
        };
        long long width = 0, precision = -1;
        if (!number(width))
            return fail("a %-format's width must be a number of at most " +
                        std::to_string(max_format_width));
        if (i < s.size() && s[i] == '.') {
            ++i;
            if (!number(precision))
                return fail("a %-format's precision must be a number of at most " +
                            std::to_string(max_format_width));
        }
        if (i < s.size() && (s[i] == 'h' || s[i] == 'l' || s[i] == 'L')) ++i;
        if (i >= s.size())
            return fail("%(" + std::string(name) + ") without a conversion (s or d)");
        char conversion = s[i++];
        const Expansion *v = scope.find(name);
        if (!v) return fail(missing_name_message(name));
        std::string piece;
        switch (conversion) {
        case 's':
            piece = std::holds_alternative<std::string>(*v)
                        ? std::get<std::string>(*v)
                        : std::to_string(std::get<long long>(*v));
            if (precision >= 0)
                piece = first_code_points(piece, static_cast<std::size_t>(precision));
            break;
        case 'd':
        case 'i':
        case 'u':
        case 'x':
        case 'X':
        case 'o': {
            if (!std::holds_alternative<long long>(*v))
                return fail("%(" + std::string(name) + ")" + conversion + " needs a number, and " +
                            std::string(name) + " is text (use %(" + std::string(name) + ")s)");
            long long n = std::get<long long>(*v);
            unsigned long long magnitude = n < 0 ? 0ULL - static_cast<unsigned long long>(n)
                                                 : static_cast<unsigned long long>(n);
            unsigned base = conversion == 'x' || conversion == 'X' ? 16
                            : conversion == 'o'                    ? 8
                                                                   : 10;
            const char *digits = conversion == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
            std::string body;
            do {
                body.insert(body.begin(), digits[magnitude % base]);
                magnitude /= base;
            } while (magnitude);
            if (precision > static_cast<long long>(body.size()))
                body.insert(0, static_cast<std::size_t>(precision) - body.size(), '0');
            std::string prefix = n < 0 ? "-" : plus ? "+" : space ? " " : "";
            if (alternate && base == 16) prefix += conversion == 'X' ? "0X" : "0x";
            if (alternate && base == 8) prefix += "0o";
            if (zero && !left && width > static_cast<long long>(prefix.size() + body.size()))
                body.insert(0, static_cast<std::size_t>(width) - prefix.size() - body.size(), '0');
            piece = prefix + body;
            break;
        }
        default:
            return fail(std::string("%(") + std::string(name) + ")" + conversion +
                        ": only the conversions s, d, i, u, x, X and o are read");
        }
        std::size_t cps = code_points(piece);
        if (width > static_cast<long long>(cps)) {
            std::string pad(static_cast<std::size_t>(width) - cps, ' ');
            piece = left ? piece + pad : pad + piece;
        }
        out += piece;
        if (out.size() > max_value_bytes)
            return fail("longer than " + std::to_string(max_value_bytes) + " bytes once expanded");
    }
    if (out.size() > max_value_bytes)
        return fail("longer than " + std::to_string(max_value_bytes) + " bytes once expanded");
    return out;
}

// ---- the ini reader -----------------------------------------------------------------------

const IniSection *Ini::find(std::string_view name) const {
    auto it = index.find(name);
    return it == index.end() ? nullptr : &sections[it->second];
}

bool parse_ini(std::string_view text, std::size_t file, Ini &ini, std::vector<Finding> &out,
               std::optional<IniValue> *own_include) {
    const std::string &path = ini.files.at(file).path;
    bool ok = true;
    auto error = [&](int line, std::string msg) {
        out.push_back({Finding::Kind::Error, path, line, "", "", std::move(msg)});
        ok = false;
    };
    if (text.starts_with("\xef\xbb\xbf")) text.remove_prefix(3); // a UTF-8 byte order mark

    // Python's parser keeps a list of lines per key and joins them at the end of the file.
    constexpr std::ptrdiff_t defaults = -1, no_section = -2;
    struct Pending {
        std::ptrdiff_t section; // index into ini.sections, or `defaults`
        std::string key;
        int line;
        std::vector<std::string> lines;
    };
    std::vector<Pending> pending; // every key this file sets, in order
    std::ptrdiff_t current = no_section;
    constexpr std::size_t none = static_cast<std::size_t>(-1);
    std::size_t option = none; // the pending key that continuation lines extend
    std::size_t indent_level = 0;
    int lineno = 0;

    while (!text.empty()) {
        // Universal newlines: "\n", "\r\n" and "\r" end a line.
        std::size_t end = text.find_first_of("\r\n");
        std::string_view line = text.substr(0, end);
        if (end == std::string_view::npos) {
            text = {};
        } else {
            bool crlf = text[end] == '\r' && end + 1 < text.size() && text[end + 1] == '\n';
            text.remove_prefix(end + (crlf ? 2 : 1));
        }
        ++lineno;
        if (line.size() > max_line_bytes) {
            error(lineno, "a line longer than " + std::to_string(max_line_bytes) + " bytes");
            continue;
        }
        if (line.find('\0') != std::string_view::npos) {
            error(lineno, "a NUL byte: this is not a text file");
            continue;
        }
        if (!valid_utf8(line)) {
            error(lineno, "not valid UTF-8");
            continue;
        }
        // An inline comment starts at a ';' or '#' after white space, found the way Python's
        // loop finds it: in round n, the n-th occurrence of each of the two characters.
        std::size_t comment = std::string_view::npos;
        {
            const char prefixes[2] = {';', '#'};
            std::size_t from[2] = {0, 0};
            bool alive[2] = {true, true};
            while (comment == std::string_view::npos && (alive[0] || alive[1])) {
                for (int p = 0; p < 2; ++p) {
                    if (!alive[p]) continue;
                    std::size_t idx = line.find(prefixes[p], from[p]);
                    if (idx == std::string_view::npos) {
                        alive[p] = false;
                        continue;
                    }
                    from[p] = idx + 1;
                    if (idx == 0 || py_space(line[idx - 1])) comment = std::min(comment, idx);
                }
            }
        }
        std::string_view whole = strip(line);
        if (whole.starts_with('#') || whole.starts_with(';')) comment = 0;
        std::string_view value =
            strip(comment == std::string_view::npos ? line : line.substr(0, comment));
        if (value.empty()) {
            // An empty line belongs to the value above it (and is dropped if it ends it); a
            // comment line does not.
            if (comment == std::string_view::npos && option != none)
                pending[option].lines.emplace_back();
            continue;
        }
        std::size_t indent = line.size() - lstrip(line).size();
        if (current != no_section && option != none && indent > indent_level) {
            pending[option].lines.emplace_back(value);
            continue;
        }
        indent_level = indent;
        if (value.front() == '[') {
            // Python 3.11's "\[(?P<header>.+)\]": up to the last ']', at least one character.
            std::size_t close = value.rfind(']');
            if (close != std::string_view::npos && close >= 2) {
                std::string name(value.substr(1, close - 1));
                option = none;
                if (name == "DEFAULT") {
                    current = defaults;
                    continue;
                }
                auto it = ini.index.find(name);
                if (it == ini.index.end()) {
                    it = ini.index.emplace(name, ini.sections.size()).first;
                    ini.sections.push_back({name, file, lineno, {}});
                }
                current = static_cast<std::ptrdiff_t>(it->second);
                continue;
            }
        }
        if (current == no_section) {
            error(lineno, "a line before the first [section] header: " + shown(value));
            return false; // Python stops at this one (MissingSectionHeaderError)
        }
        std::size_t delim = value.find_first_of("=:");
        if (delim == std::string_view::npos) {
            error(lineno, "neither a [section] header nor a key = value line: " + shown(value));
            option = none;
            continue;
        }
        std::string key = lower(rstrip(value.substr(0, delim)));
        if (key.empty()) {
            error(lineno, "a value without a key: " + shown(value));
            option = none;
            continue;
        }
        pending.push_back({current, key, lineno, {std::string(strip(value.substr(delim + 1)))}});
        option = pending.size() - 1;
    }
    // Join each key's lines and drop trailing white space; a key set twice keeps the later
    // setting, as Python's dictionary assignment does.
    for (auto &p : pending) {
        std::string joined;
        for (std::size_t k = 0; k < p.lines.size(); ++k) {
            if (k) joined += '\n';
            joined += p.lines[k];
        }
        IniSection &section = p.section == defaults ? ini.defaults : ini.sections[p.section];
        section.keys[p.key] = IniValue{std::string(rstrip(joined)), file, p.line};
        if (own_include && p.section != defaults && section.name == "include" && p.key == "files")
            *own_include = section.keys[p.key];
    }
    return ok;
}

// ---- files and includes -------------------------------------------------------------------

Environment environment_of_process() {
    Environment e;
    for (char **p = environ; p && *p; ++p) {
        std::string_view kv = *p;
        std::size_t eq = kv.find('=');
        if (eq == std::string_view::npos || eq == 0) continue;
        // Values that are not UTF-8 cannot go into a JSON unit file: such a variable is not
        // offered for %(ENV_X)s (naming it is reported as a missing name).
        if (!valid_utf8(kv)) continue;
        e.vars.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
    struct utsname u {};
    if (uname(&u) == 0 && valid_utf8(u.nodename)) e.host_node_name = u.nodename;
    std::string cwd(4096, '\0');
    if (getcwd(cwd.data(), cwd.size()))
        e.cwd = cwd.c_str();
    else
        e.cwd = "/";
    return e;
}

namespace {

// ENV_X for every variable of `vars`.
Expansions env_expansions(const std::map<std::string, std::string> &vars) {
    Expansions e;
    for (const auto &[k, v] : vars)
        e.emplace("ENV_" + k, v);
    return e;
}

// Python's str.split(): fields separated by runs of white space.
std::vector<std::string> split_white(std::string_view s) {
    std::vector<std::string> r;
    for (;;) {
        s = lstrip(s);
        if (s.empty()) return r;
        std::size_t n = 0;
        while (n < s.size() && !py_space(s[n]))
            ++n;
        r.emplace_back(s.substr(0, n));
        s.remove_prefix(n);
    }
}

class Reader {
public:
    Reader(const Environment &env, Ini &ini, std::vector<Finding> &out)
        : env_(env), ini_(ini), out_(out),
          env_vars_(env_expansions(env.vars)), host_{{"host_node_name", env.host_node_name}} {}

    // Reads `path` (shown as `shown`) at `depth`. `from` is the include line that named it
    // (nullptr for the main file). False after an Error: nothing may be written.
    bool read(const std::string &shown, const std::string &path, int depth, const Finding *from) {
        // A file that cannot be read: the main one ends the import, an included one is lost
        // (supervisord would skip it silently; the user should know).
        auto problem = [&](std::string why) {
            if (!from) {
                out_.push_back({Finding::Kind::Error, shown, 0, "", "", std::move(why)});
                return false;
            }
            Finding f = *from;
            f.kind = Finding::Kind::Lost;
            f.message = "cannot read " + shown + ": " + why + "; its sections are not converted";
            out_.push_back(std::move(f));
            return true;
        };
        // A path goes into descriptions and %(here)s, and JSON holds only UTF-8.
        if (!valid_utf8(shown) || !valid_utf8(path))
            return problem("its path is not UTF-8, and could not go into a unit file");
        int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) return problem(std::strerror(errno));
        struct stat st {};
        if (fstat(fd, &st) != 0) {
            int e = errno;
            close(fd);
            return problem(std::strerror(e));
        }
        if (!S_ISREG(st.st_mode)) {
            close(fd);
            return problem("not a regular file");
        }
        auto id = std::make_pair(st.st_dev, st.st_ino);
        if (std::find(stack_.begin(), stack_.end(), id) != stack_.end()) {
            close(fd);
            Finding f = *from;
            f.message = "includes " + shown +
                        ", which is being read already (a cycle): not "
                        "read again";
            out_.push_back(std::move(f));
            return true;
        }
        if (std::find(seen_.begin(), seen_.end(), id) != seen_.end()) {
            close(fd); // included twice: reading it again would change nothing
            return true;
        }
        if (ini_.files.size() >= max_files) {
            close(fd);
            return problem("more than " + std::to_string(max_files) + " files in all");
        }
        if (static_cast<std::uint64_t>(st.st_size) > max_file_bytes) {
            close(fd);
            return problem("larger than " + std::to_string(max_file_bytes >> 20) +
                           " MiB, not a supervisord configuration");
        }
        std::string text;
        text.resize(static_cast<std::size_t>(max_file_bytes) + 1);
        std::size_t got = 0;
        while (got < text.size()) {
            ssize_t n = ::read(fd, text.data() + got, text.size() - got);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                int e = errno;
                close(fd);
                return problem(std::strerror(e));
            }
            if (n == 0) break;
            got += static_cast<std::size_t>(n);
        }
        close(fd);
        if (got > max_file_bytes)
            return problem("larger than " + std::to_string(max_file_bytes >> 20) +
                           " MiB, not a supervisord configuration");
        text.resize(got);
        total_ += got;
        if (total_ > max_total_bytes)
            return problem("more than " + std::to_string(max_total_bytes >> 20) +
                           " MiB of configuration in all");
        seen_.push_back(id);
        stack_.push_back(id);

        std::size_t index = ini_.files.size();
        ini_.files.push_back({shown, abs_dir(path, env_.cwd), (st.st_mode & S_IROTH) != 0});
        std::optional<IniValue> include;
        if (!parse_ini(text, index, ini_, out_, &include)) return false;
        bool ok = !include || includes(*include, index, depth);
        stack_.pop_back();
        return ok;
    }

private:
    bool includes(const IniValue &files, std::size_t index, int depth) {
        const IniFile &f = ini_.files[index];
        Finding at{Finding::Kind::Note, f.path, files.line, "include", "files", ""};
        if (depth > 0) {
            at.message = "supervisord reads [include] in its main file only and ignores this "
                         "one; vigilctl import follows it";
            out_.push_back(at);
        }
        Expansions here{{"here", f.dir}};
        std::string why;
        auto text = expand(files.text, Scope{{&env_vars_, &host_, &here}}, why);
        if (!text) {
            Finding lost = at;
            lost.kind = Finding::Kind::Lost;
            lost.message = why + "; nothing is included";
            out_.push_back(std::move(lost));
            return true;
        }
        std::string dir = f.dir; // f may move as files are added
        for (const auto &pattern : split_white(*text)) {
            std::string full = join_path(dir, pattern);
            glob_t g{};
            int r = glob(full.c_str(), GLOB_NOESCAPE | GLOB_NOSORT, nullptr, &g);
            std::vector<std::string> matches;
            if (r == 0)
                for (std::size_t k = 0; k < g.gl_pathc && k <= max_files; ++k)
                    matches.emplace_back(g.gl_pathv[k]);
            globfree(&g);
            if (r == GLOB_NOMATCH) {
                Finding n = at;
                n.message = "no file matches " + full + " (supervisord only warns as well)";
                out_.push_back(std::move(n));
                continue;
            }
            if (r != 0 || matches.size() > max_files) {
                Finding lost = at;
                lost.kind = Finding::Kind::Lost;
                lost.message = r != 0 ? "cannot list " + full + " (glob failed)"
                                      : full + " matches more than " + std::to_string(max_files) +
                                            " files; none is read";
                out_.push_back(std::move(lost));
                continue;
            }
            std::sort(matches.begin(), matches.end());
            for (const auto &m : matches) {
                if (depth + 1 > max_include_depth) {
                    Finding lost = at;
                    lost.kind = Finding::Kind::Lost;
                    lost.message = "includes nested deeper than " +
                                   std::to_string(max_include_depth) + " levels: " + m +
                                   " is not read";
                    out_.push_back(std::move(lost));
                    continue;
                }
                Finding from = at;
                // Shown relative to the working directory when it is below it.
                std::string prefix = env_.cwd.ends_with('/') ? env_.cwd : env_.cwd + "/";
                std::string shown_path = normpath(m);
                std::string display =
                    shown_path.starts_with(prefix) ? shown_path.substr(prefix.size()) : shown_path;
                if (!read(display, m, depth + 1, &from)) return false;
            }
        }
        return true;
    }

    const Environment &env_;
    Ini &ini_;
    std::vector<Finding> &out_;
    Expansions env_vars_;
    Expansions host_;
    std::vector<std::pair<dev_t, ino_t>> seen_, stack_;
    std::uint64_t total_ = 0;
};

} // namespace

bool read_config(const std::string &path, const Environment &env, Ini &ini,
                 std::vector<Finding> &out) {
    ini.defaults.name = "DEFAULT";
    Reader r(env, ini, out);
    return r.read(path, normpath(join_path(env.cwd, path)), 0, nullptr);
}

// ---- conversion ---------------------------------------------------------------------------

namespace {

// The keys of a [program:x] section (supervisord 4.2). A constant array, not a set: vigilctl
// pays for every static initialiser at each start, `status` included.
constexpr std::string_view program_key_list[] = {"command",
                                                 "process_name",
                                                 "numprocs",
                                                 "numprocs_start",
                                                 "priority",
                                                 "autostart",
                                                 "autorestart",
                                                 "startsecs",
                                                 "startretries",
                                                 "exitcodes",
                                                 "stopsignal",
                                                 "stopwaitsecs",
                                                 "stopasgroup",
                                                 "killasgroup",
                                                 "user",
                                                 "redirect_stderr",
                                                 "stdout_logfile",
                                                 "stdout_logfile_maxbytes",
                                                 "stdout_logfile_backups",
                                                 "stdout_capture_maxbytes",
                                                 "stdout_events_enabled",
                                                 "stdout_syslog",
                                                 "stderr_logfile",
                                                 "stderr_logfile_maxbytes",
                                                 "stderr_logfile_backups",
                                                 "stderr_capture_maxbytes",
                                                 "stderr_events_enabled",
                                                 "stderr_syslog",
                                                 "environment",
                                                 "directory",
                                                 "umask",
                                                 "serverurl"};

bool program_key(std::string_view k) {
    return std::find(std::begin(program_key_list), std::end(program_key_list), k) !=
           std::end(program_key_list);
}

// A node of the tree being built: a service (one unit file, maybe instanced) or a supervisor.
struct Node {
    std::string name;   // the unit name once make_names() ran; before, the wanted one
    std::string origin; // "[program:web] (conf.d/web.conf:3)"
    std::string description;
    const IniSection *section = nullptr;
    bool supervisor = false;
    bool disabled = false;
    long long priority = 999;
    std::ptrdiff_t parent = -1;   // index of the supervisor node, -1 for root
    ojson body = ojson::object(); // a service's fields after "after", in order
    int instances = 0;
    bool parallel = false;
    // The restart budget (see Converter::budgets): the largest startretries of what restarts
    // here or below, -1 when nothing does, and the startsecs that goes with the period.
    long long retries = -1;
    long long startsecs = 0;
    std::vector<std::string> after;
};

// What one stream's log settings say (supervisor.datatypes.logfile_name, seen from vigil).
struct Stream {
    enum class Kind { Auto, None, Syslog, Forward, File, Bad };
    Kind kind = Kind::Auto;
    std::string path; // File
    std::string why;  // Bad
    long long max_bytes = 50LL << 20;
    long long backups = 10;
    std::string key; // "stdout_logfile"
};

// A size for a unit file: "50MiB" when it is a whole number of MiB, and so on.
ojson size_value(long long bytes) {
    if (bytes >= (1LL << 40) && bytes % (1LL << 40) == 0)
        return std::to_string(bytes >> 40) + "TiB";
    if (bytes >= (1LL << 30) && bytes % (1LL << 30) == 0)
        return std::to_string(bytes >> 30) + "GiB";
    if (bytes >= (1LL << 20) && bytes % (1LL << 20) == 0)
        return std::to_string(bytes >> 20) + "MiB";
    if (bytes >= (1LL << 10) && bytes % (1LL << 10) == 0)
        return std::to_string(bytes >> 10) + "KiB";
    return bytes;
}

std::string seconds(long long s) {
    return core::format_duration(Duration{s * 1000});
}

// A unit name from a supervisord name: lower case, every character outside [a-z0-9.-] a '-'
// (so '_' and '@' too: "name@N" is how vigil names instances), no leading '.' or '-', at
// most 64 bytes. Empty: `fallback`.
std::string unit_name(std::string_view raw, std::string_view fallback) {
    std::string r;
    for (std::size_t i = 0; i < raw.size();) {
        auto c = static_cast<unsigned char>(raw[i]);
        if (c >= 0x80) {
            i += std::max<std::size_t>(1, utf8_seq(raw, i));
            r += '-';
            continue;
        }
        char ch = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : static_cast<char>(c);
        bool keep = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-';
        r += keep ? ch : '-';
        ++i;
    }
    std::size_t first = r.find_first_not_of(".-");
    r = first == std::string::npos ? "" : r.substr(first);
    if (r.size() > ubounds::max_name_bytes) r.resize(ubounds::max_name_bytes);
    return r.empty() ? std::string(fallback) : r;
}

class Converter {
public:
    Converter(const Ini &ini, const Environment &env, std::vector<Finding> &out)
        : ini_(ini), env_(env), out_(out),
          env_vars_(env_expansions(env.vars)), host_{{"host_node_name", env.host_node_name}} {}

    std::optional<Conversion> convert() {
        // Sections by kind, in the order supervisord handles them: [supervisord] first (its
        // environment feeds %(ENV_X)s), groups before the programs they claim.
        if (const IniSection *s = ini_.find("supervisord")) supervisord(*s);
        for (const auto &s : ini_.sections) {
            std::string_view n = s.name;
            if (n == "supervisord" || n.starts_with("program:") || n.starts_with("group:"))
                continue;
            other_section(s);
        }
        for (const auto &s : ini_.sections)
            if (std::string_view(s.name).starts_with("group:")) group(s);
        for (const auto &s : ini_.sections)
            if (std::string_view(s.name).starts_with("program:")) program(s);
        for (const auto &[k, v] : ini_.defaults.keys)
            if (!program_key(k) && k != "priority" && k != "programs")
                note(ini_.defaults, k, "unknown key; supervisord ignores it too");
        make_names();
        order();
        budgets();
        return emit();
    }

private:
    // ---- findings and values ----

    const IniValue *value(const IniSection &s, std::string_view key) const {
        if (auto it = s.keys.find(std::string(key)); it != s.keys.end()) return &it->second;
        if (auto it = ini_.defaults.keys.find(std::string(key)); it != ini_.defaults.keys.end())
            return &it->second;
        return nullptr;
    }

    void add(Finding::Kind kind, const IniSection &s, std::string_view key, std::string msg) {
        const IniValue *v = key.empty() ? nullptr : value(s, key);
        std::size_t file = v ? v->file : s.file;
        int line = v ? v->line : s.line;
        Finding f{kind, ini_.files.at(file).path, line, s.name, std::string(key), std::move(msg)};
        // A program with numprocs > 1 meets the same problem once per process: say it once.
        if (seen_.insert(format(f)).second) out_.push_back(std::move(f));
    }
    void lost(const IniSection &s, std::string_view key, std::string msg) {
        add(Finding::Kind::Lost, s, key, std::move(msg));
    }
    void note(const IniSection &s, std::string_view key, std::string msg) {
        add(Finding::Kind::Note, s, key, std::move(msg));
    }
    void error(std::string msg) {
        out_.push_back({Finding::Kind::Error, ini_.files.empty() ? "" : ini_.files[0].path, 0, "",
                        "", std::move(msg)});
    }

    std::string where(const IniSection &s) const {
        return ini_.files.at(s.file).path + ":" + std::to_string(s.line);
    }

    // A value, %-expanded in `scope` plus %(here)s (the folder of the file that set it).
    struct Got {
        const IniValue *v = nullptr;     // nullptr: not set
        std::optional<std::string> text; // nothing when it could not be expanded
        std::string why;                 // ... and why
    };
    // Reports a value that cannot be expanded as Lost, unless `quiet`.
    Got get(const IniSection &s, std::string_view key, const Scope &scope, bool quiet = false) {
        Got g;
        g.v = value(s, key);
        if (!g.v) return g;
        Expansions here{{"here", ini_.files.at(g.v->file).dir}};
        Scope with_here = scope;
        with_here.maps.push_back(&here);
        g.text = expand(g.v->text, with_here, g.why);
        if (!g.text && !quiet) lost(s, key, g.why + " (supervisord refuses such a value)");
        return g;
    }

    // An integer setting in [lo, hi]; `fallback` when it is absent, or unreadable (Lost).
    long long integer(const IniSection &s, std::string_view key, const Scope &scope,
                      long long fallback, long long lo, long long hi) {
        Got g = get(s, key, scope);
        if (!g.v || !g.text) return fallback;
        auto n = py_int(*g.text);
        if (!n) {
            lost(s, key,
                 "expected an integer, got " + shown(*g.text) +
                     " (supervisord refuses it); taken as " + std::to_string(fallback));
            return fallback;
        }
        if (*n < lo || *n > hi) {
            lost(s, key,
                 "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                     ", got " + std::to_string(*n) + "; taken as " + std::to_string(fallback));
            return fallback;
        }
        return *n;
    }

    bool boolean(const IniSection &s, std::string_view key, const Scope &scope, bool fallback) {
        Got g = get(s, key, scope);
        if (!g.v || !g.text) return fallback;
        auto b = py_bool(*g.text);
        if (!b) {
            lost(s, key,
                 "expected true or false, got " + shown(*g.text) +
                     " (supervisord refuses it); taken as " + (fallback ? "true" : "false"));
            return fallback;
        }
        return *b;
    }

    // supervisor.datatypes.octal_type, as a umask takes it: only the permission bits count.
    std::optional<long long> umask_value(const IniSection &s, std::string_view text) {
        auto m = py_int(text, 8);
        if (!m || *m < 0) {
            lost(s, "umask", "expected an octal number, got " + shown(text));
            return std::nullopt;
        }
        if (*m > 0777) note(s, "umask", "only its last three octal digits count");
        return *m & 0777;
    }

    // ---- [supervisord] and the sections without units ----

    void supervisord(const IniSection &s) {
        Scope scope{{&env_vars_, &host_}};
        bool daemon = !boolean(s, "nodaemon", scope, false);
        for (const auto &[key, v] : s.keys) {
            if (key == "environment") {
                Got g = get(s, key, scope);
                if (!g.text) continue;
                std::string why;
                auto pairs = key_value_pairs(*g.text, why);
                if (pairs && pairs->size() > ubounds::max_env) {
                    lost(s, key, "more than " + std::to_string(ubounds::max_env) + " variables");
                } else if (pairs) {
                    global_env_ = *pairs;
                    for (const auto &[k, val] : global_env_)
                        sup_env_vars_["ENV_" + k] = val;
                } else {
                    lost(s, key, why + " (supervisord refuses it)");
                }
            } else if (key == "user") {
                Got g = get(s, key, scope);
                if (g.text) global_user_ = std::string(strip(*g.text));
            } else if (key == "directory" || key == "umask") {
                if (!daemon) {
                    note(s, key,
                         "supervisord applies it only when it runs as a daemon, and nodaemon is "
                         "true: not converted");
                    continue;
                }
                Got g = get(s, key, scope);
                if (!g.text) continue;
                if (key == "directory") {
                    if (std::string d(strip(*g.text)); d.starts_with('/'))
                        global_cwd_ = d;
                    else
                        lost(s, key, "not an absolute path: the programs' cwd is not set");
                } else {
                    global_umask_ = umask_value(s, *g.text);
                }
            } else if (key == "minfds" || key == "minprocs") {
                lost(s, key,
                     std::string("supervisord raised its own ") +
                         (key == "minfds" ? "RLIMIT_NOFILE" : "RLIMIT_NPROC") +
                         " soft limit to this, and the programs inherited it; vigild does not: "
                         "add \"limits\": {\"" +
                         (key == "minfds" ? "nofile" : "nproc") +
                         "\": N} to the units that need it");
            } else if (key == "strip_ansi") {
                if (boolean(s, key, scope, false))
                    lost(s, key, "vigil keeps escape sequences in its log files");
            } else if (key == "logfile" || key == "logfile_maxbytes" || key == "logfile_backups" ||
                       key == "loglevel" || key == "silent") {
                note(s, key,
                     "supervisord's own log: vigild logs to its standard error (see vigild "
                     "--log-level)");
            } else if (key == "pidfile") {
                note(s, key, "vigild writes no pid file");
            } else if (key == "nodaemon") {
                note(s, key, "vigild always runs in the foreground");
            } else if (key == "childlogdir" || key == "nocleanup") {
                note(s, key,
                     "where supervisord kept AUTO log files: vigild keeps each service's recent "
                     "output in memory (vigilctl logs)");
            } else if (key == "identifier" || key == "profile_options") {
                note(s, key, "a setting of supervisord itself, with no counterpart in vigil");
            } else {
                note(s, key, "unknown key; supervisord ignores it too");
            }
        }
    }

    void other_section(const IniSection &s) {
        std::string_view n = s.name;
        if (n == "include") {
            if (!s.keys.contains("files"))
                lost(s, "",
                     "an [include] without files= (supervisord refuses it): nothing is "
                     "included");
            for (const auto &[k, v] : s.keys)
                if (k != "files") note(s, k, "unknown key; supervisord ignores it too");
        } else if (n.starts_with("unix_http_server")) {
            note(s, "",
                 "supervisorctl's socket: vigilctl talks to vigild's own control socket "
                 "(vigild --socket)");
        } else if (n.starts_with("inet_http_server")) {
            note(s, "",
                 "supervisord's XML-RPC and web interface: vigild --http ADDRESS serves health, "
                 "readiness, metrics and status, and control goes through vigilctl");
        } else if (n == "supervisorctl") {
            note(s, "", "supervisorctl's settings: vigilctl finds vigild's socket itself");
        } else if (n.starts_with("rpcinterface:")) {
            const IniValue *f = value(s, "supervisor.rpcinterface_factory");
            if (f && strip(f->text) == "supervisor.rpcinterface:make_main_rpcinterface")
                note(s, "",
                     "supervisord's XML-RPC interface: vigil's control protocol replaces it");
            else
                lost(s, "", "a plugin of supervisord's XML-RPC interface has no counterpart");
        } else if (n.starts_with("ctlplugin:")) {
            lost(s, "", "a supervisorctl plugin has no counterpart in vigilctl");
        } else if (n.starts_with("eventlistener:")) {
            lost(s, "",
                 "event listeners have no counterpart: vigil reports events itself (vigilctl "
                 "events -f), acts on output lines (patterns) and checks health (probes)");
        } else if (n.starts_with("fcgi-program:")) {
            lost(s, "",
                 "vigil does not open sockets for its services: run the FastCGI program as a "
                 "[program] that binds its own socket");
        } else {
            note(s, "", "unknown section; supervisord ignores it too");
        }
    }

    // ---- groups ----

    void group(const IniSection &s) {
        std::string gname(strip(std::string_view(s.name).substr(6)));
        if (gname.empty() || gname.find_first_of(" :/") != std::string::npos) {
            lost(s, "",
                 "the name " + shown(gname) +
                     " is empty or has a space, ':' or '/' (supervisord refuses it)");
            return;
        }
        Scope scope{{&env_vars_, &sup_env_vars_, &host_}};
        for (const auto &[k, v] : s.keys)
            if (k != "programs" && k != "priority")
                note(s, k, "unknown key; supervisord ignores it too");
        Node n;
        n.supervisor = true;
        n.parallel = true;
        n.name = unit_name(gname, "group");
        n.section = &s;
        n.priority = integer(s, "priority", scope, 999, -1'000'000'000, 1'000'000'000);
        n.origin = "[" + s.name + "] (" + where(s) + ")";
        n.description = "[" + s.name + "] from " + where(s) +
                        ": its programs start together, "
                        "in priority order";
        if (!room()) return;
        std::ptrdiff_t index = static_cast<std::ptrdiff_t>(nodes_.size());
        nodes_.push_back(std::move(n));
        Got g = get(s, "programs", scope);
        if (!g.text) return;
        std::string_view list = *g.text;
        if (list.empty()) return;
        for (;;) {
            std::size_t comma = list.find(',');
            std::string p(strip(list.substr(0, comma)));
            if (p.empty())
                lost(s, "programs", "an empty program name (supervisord refuses it)");
            else if (ini_.find("program:" + p) && ini_.find("fcgi-program:" + p))
                lost(s, "programs",
                     p + " is both a program and an fcgi-program (supervisord "
                         "refuses that)");
            else if (!ini_.find("program:" + p))
                lost(s, "programs",
                     ini_.find("fcgi-program:" + p)
                         ? p + " is an fcgi-program, which is not converted"
                         : "names " + p + ", which has no [program:" + p +
                               "] section (supervisord refuses that)");
            else if (auto it = group_of_.find(p); it != group_of_.end())
                lost(s, "programs",
                     p + " is in [" + nodes_[it->second].section->name +
                         "] already; supervisord would run it twice, a unit has one parent");
            else
                group_of_.emplace(p, index);
            if (comma == std::string_view::npos) break;
            list.remove_prefix(comma + 1);
        }
    }

    // ---- programs ----

    // One stream's logfile, maxbytes, backups, syslog, capture and events settings.
    Stream stream(const IniSection &s, std::string_view which, const Scope &scope) {
        Stream st;
        std::string key = std::string(which) + "_logfile";
        st.key = key;
        st.max_bytes = 50LL << 20;
        if (Got g = get(s, key + "_maxbytes", scope); g.text) {
            if (auto n = byte_size(*g.text); n && *n >= 0)
                st.max_bytes = *n;
            else
                lost(s, key + "_maxbytes",
                     "expected a size like 50MB, got " + shown(*g.text) + "; taken as 50MB");
        }
        st.backups = integer(s, key + "_backups", scope, 10, -1'000'000'000, 1'000'000'000);
        if (boolean(s, std::string(which) + "_syslog", scope, false))
            lost(s, std::string(which) + "_syslog", "vigil does not write to syslog");
        if (Got g = get(s, std::string(which) + "_capture_maxbytes", scope); g.text) {
            auto n = byte_size(*g.text);
            if (!n || *n != 0)
                lost(s, std::string(which) + "_capture_maxbytes",
                     "capture mode feeds event listeners, which vigil does not have");
        }
        if (boolean(s, std::string(which) + "_events_enabled", scope, false))
            lost(s, std::string(which) + "_events_enabled",
                 "output events feed event listeners, which vigil does not have");
        Got g = get(s, key, scope);
        if (!g.v) return st; // AUTO
        if (!g.text) {
            st.kind = Stream::Kind::Bad;
            st.why = "";
            return st;
        }
        std::string p(*g.text);
        std::string l = lower(p);
        if (l == "none" || l == "off") {
            st.kind = Stream::Kind::None;
        } else if (l == "auto") {
            st.kind = Stream::Kind::Auto;
        } else if (l == "syslog") {
            st.kind = Stream::Kind::Syslog;
        } else {
            if (p == "~" || p.starts_with("~/")) {
                auto home = env_.vars.find("HOME");
                if (home == env_.vars.end()) {
                    st.kind = Stream::Kind::Bad;
                    st.why = "~ needs HOME, which is not set";
                    return st;
                }
                p = home->second + p.substr(1);
            } else if (p.starts_with('~')) {
                st.kind = Stream::Kind::Bad;
                st.why = "~user paths are not expanded here: write the path out";
                return st;
            }
            static constexpr std::string_view to_stdout[] = {"/dev/stdout",     "/dev/stderr",
                                                             "/dev/fd/1",       "/dev/fd/2",
                                                             "/proc/self/fd/1", "/proc/self/fd/2"};
            if (std::find(std::begin(to_stdout), std::end(to_stdout), p) != std::end(to_stdout)) {
                st.kind = Stream::Kind::Forward;
            } else if (p == "/dev/null") {
                st.kind = Stream::Kind::None;
            } else if (p.starts_with("/dev/")) {
                st.kind = Stream::Kind::Bad;
                st.why = "a device: vigil's log file is a regular file that it rotates";
            } else if (!p.starts_with('/')) {
                st.kind = Stream::Kind::Bad;
                st.why = "a relative path (relative to supervisord's working directory): "
                         "write it out in full";
            } else if (p.size() > ubounds::max_path_bytes) {
                st.kind = Stream::Kind::Bad;
                st.why = "longer than " + std::to_string(ubounds::max_path_bytes) + " bytes";
            } else {
                st.kind = Stream::Kind::File;
                st.path = p;
            }
        }
        return st;
    }

    // The "logs" object for two streams (nothing when vigil's defaults say it all).
    std::optional<ojson> logs(const IniSection &s, const Stream &out, Stream err, bool redirect) {
        if (redirect) {
            if (err.kind == Stream::Kind::File || err.kind == Stream::Kind::Forward)
                note(s, err.key, "ignored, as supervisord ignores it with redirect_stderr=true");
            err.kind = Stream::Kind::None;
        }
        for (const Stream *st : std::initializer_list<const Stream *>{&out, &err}) {
            if (st->kind == Stream::Kind::Syslog)
                lost(s, st->key, "vigil does not write to syslog");
            if (st->kind == Stream::Kind::Bad && !st->why.empty()) lost(s, st->key, st->why);
        }
        const Stream *file = out.kind == Stream::Kind::File   ? &out
                             : err.kind == Stream::Kind::File ? &err
                                                              : nullptr;
        if (out.kind == Stream::Kind::File && err.kind == Stream::Kind::File &&
            out.path != err.path)
            lost(s, err.key,
                 "vigil writes a service's stdout and stderr to one file: stderr goes to " +
                     out.path + " too");
        auto is = [](const Stream &st, Stream::Kind k) { return st.kind == k; };
        bool forwarded = is(out, Stream::Kind::Forward) || is(err, Stream::Kind::Forward);
        bool chosen = is(out, Stream::Kind::File) || is(out, Stream::Kind::None) ||
                      is(err, Stream::Kind::File) || (!redirect && is(err, Stream::Kind::None));
        ojson l = ojson::object();
        if (chosen && !forwarded) l["forward"] = false;
        if (redirect) l["stderr"] = "stdout"; // one pipe, as supervisord's redirect_stderr
        if (file) {
            l["file"] = file->path;
            long long size = file->max_bytes;
            if (size == 0) {
                note(s, file->key + "_maxbytes",
                     "0 (never rotate) cannot be said: the file rotates at 1TiB, vigil's largest "
                     "max_size");
                size = static_cast<long long>(ubounds::max_log_size);
            } else if (size < static_cast<long long>(ubounds::min_log_size)) {
                note(s, file->key + "_maxbytes", "below vigil's least max_size: 4KiB");
                size = static_cast<long long>(ubounds::min_log_size);
            } else if (size > static_cast<long long>(ubounds::max_log_size)) {
                note(s, file->key + "_maxbytes", "above vigil's largest max_size: 1TiB");
                size = static_cast<long long>(ubounds::max_log_size);
            }
            l["max_size"] = size_value(size);
            long long keep = std::max(0LL, file->backups);
            if (keep > ubounds::max_keep) {
                note(s, file->key + "_backups",
                     "vigil keeps at most " + std::to_string(ubounds::max_keep) + " rotated files");
                keep = ubounds::max_keep;
            }
            l["keep"] = keep;
        }
        if (l.empty()) return std::nullopt;
        return l;
    }

    void program(const IniSection &s) {
        std::string pname(strip(std::string_view(s.name).substr(8)));
        if (pname.empty() || pname.find_first_of(" :/") != std::string::npos) {
            lost(s, "",
                 "the name " + shown(pname) +
                     " is empty or has a space, ':' or '/' (supervisord refuses it)");
            return;
        }
        for (const auto &[k, v] : s.keys)
            if (!program_key(k)) note(s, k, "unknown key; supervisord ignores it too");
        auto in_group = group_of_.find(pname);
        std::ptrdiff_t group = in_group == group_of_.end() ? -1 : in_group->second;
        std::string gname =
            group < 0 ? pname
                      : std::string(strip(std::string_view(nodes_[group].section->name).substr(6)));
        Expansions program_names{{"program_name", pname}, {"group_name", gname}};
        // supervisord reads these before it knows process_num: they cannot name it.
        Scope scope{{&env_vars_, &sup_env_vars_, &host_, &program_names}};

        long long numprocs = integer(s, "numprocs", scope, 1, -1'000'000'000, 1'000'000'000);
        if (numprocs <= 0) {
            note(s, "numprocs", "no process to run (supervisord starts none either)");
            return;
        }
        if (numprocs > ubounds::max_instances) {
            lost(s, "numprocs",
                 "vigil runs at most " + std::to_string(ubounds::max_instances) +
                     " instances of a unit: the program is not converted");
            return;
        }
        long long first = integer(s, "numprocs_start", scope, 0, -1'000'000'000, 1'000'000'000);
        long long priority = integer(s, "priority", scope, 999, -1'000'000'000, 1'000'000'000);
        bool autostart = boolean(s, "autostart", scope, true);
        std::string restart = "transient";
        std::string autorestart = "unexpected";
        if (Got g = get(s, "autorestart", scope); g.text) {
            std::string l = lower(*g.text);
            if (auto b = py_bool(l))
                autorestart = *b ? "true" : "false";
            else if (l == "unexpected")
                autorestart = l;
            else
                lost(s, "autorestart",
                     "expected true, false or unexpected, got " + shown(*g.text) +
                         "; taken as unexpected");
        }
        restart = autorestart == "true"    ? "permanent"
                  : autorestart == "false" ? "temporary"
                                           : "transient";
        long long startsecs = integer(s, "startsecs", scope, 1, -1'000'000'000, 1'000'000'000);
        if (startsecs < 0) {
            note(s, "startsecs", "negative: taken as 0");
            startsecs = 0;
        }
        long long startretries =
            integer(s, "startretries", scope, 3, -1'000'000'000, 1'000'000'000);
        startretries = std::max(0LL, startretries);
        std::optional<std::string> stop_signal;
        if (Got g = get(s, "stopsignal", scope); g.text) {
            auto n = core::parse_signal(strip(*g.text));
            if (!n)
                lost(s, "stopsignal", "not a signal: " + shown(*g.text) + "; SIGTERM is used");
            else if (*n != core::sig_term)
                stop_signal = core::signal_name(*n);
        }
        long long stopwait = integer(s, "stopwaitsecs", scope, 10, -1'000'000'000, 1'000'000'000);
        if (stopwait < 0) {
            note(s, "stopwaitsecs", "negative: taken as 0");
            stopwait = 0;
        }
        if (stopwait > 86'400) {
            note(s, "stopwaitsecs", "above vigil's largest stop timeout: 1d");
            stopwait = 86'400;
        }
        bool stopasgroup = boolean(s, "stopasgroup", scope, false);
        bool killasgroup = boolean(s, "killasgroup", scope, stopasgroup);
        if (stopasgroup && !killasgroup)
            lost(s, "killasgroup",
                 "stopasgroup=true with killasgroup=false (supervisord refuses "
                 "it); vigil signals the whole process group anyway");
        else
            for (const char *k : {"stopasgroup", "killasgroup"})
                if (value(s, k))
                    note(s, k,
                         "vigil always signals the service's whole process group, the stop "
                         "signal and the SIGKILL after the stop timeout alike");
        if (Got g = get(s, "exitcodes", scope); g.text) {
            std::set<long long> codes;
            bool ok = true;
            std::string_view list = *g.text;
            while (ok && !list.empty()) {
                std::size_t comma = list.find(',');
                auto n = py_int(list.substr(0, comma));
                ok = n && *n >= 0 && *n <= 255;
                if (ok) codes.insert(*n);
                list =
                    comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
            }
            if (!ok)
                lost(s, "exitcodes",
                     "expected exit codes from 0 to 255 separated by commas, got " +
                         shown(*g.text));
            else if (autorestart == "unexpected" && codes != std::set<long long>{0})
                lost(s, "exitcodes",
                     "vigil's \"transient\" restarts after every non-zero exit status, so the "
                     "expected codes cannot be told apart (0 is the only one vigil expects)");
        }
        bool redirect = boolean(s, "redirect_stderr", scope, false); // logs.stderr "stdout"
        std::optional<std::string> user = global_user_;
        if (Got g = get(s, "user", scope); g.text) user = std::string(strip(*g.text));
        if (user && (user->empty() || user->size() > ubounds::max_user_bytes)) {
            lost(s, "user",
                 "expected a user name of 1 to " + std::to_string(ubounds::max_user_bytes) +
                     " bytes");
            user.reset();
        }
        std::optional<long long> umask = global_umask_;
        if (Got g = get(s, "umask", scope); g.text)
            if (auto m = umask_value(s, *g.text)) umask = m;
        if (Got g = get(s, "serverurl", scope); g.text && lower(strip(*g.text)) != "auto")
            lost(s, "serverurl", "supervisord's XML-RPC URL for the program: vigil has none");

        const IniValue *raw_name = value(s, "process_name");
        std::string process_name = raw_name ? raw_name->text : "%(program_name)s";
        if (std::string_view t = strip(process_name);
            t.empty() || t.find_first_of(" :/") != std::string_view::npos) {
            lost(s, "process_name",
                 shown(process_name) + " is empty or has a space, ':' or '/' (supervisord "
                                       "refuses it): the program is not converted");
            return;
        }
        process_name = strip(process_name);
        if (numprocs > 1 && process_name.find("%(process_num)") == std::string::npos) {
            lost(s, "process_name",
                 "numprocs > 1 needs %(process_num) in process_name (supervisord refuses it): "
                 "the program is not converted");
            return;
        }
        if (!value(s, "command")) {
            lost(s, "", "no command (supervisord refuses such a section)");
            return;
        }

        // Each process: the values that may name process_num. While every body is the first
        // one, only names are kept; once one differs, every body is (bounded by the bytes of
        // units vigild reads).
        std::vector<std::string> names;
        std::vector<ojson> bodies;
        std::uint64_t body_bytes = 0;
        bool all_alike = true;
        // The environment, parsed again only when its expanded text changes (a pool of 10,000
        // with thousands of variables would otherwise parse them 10,000 times).
        std::optional<std::string> env_text;
        bool env_ready = false;
        std::vector<std::pair<std::string, std::string>> env;
        Expansions penv; // ENV_X of the program's environment
        std::uint64_t all_bytes = 0;
        for (long long num = first; num < first + numprocs; ++num) {
            Expansions proc{{"process_num", num}, {"numprocs", numprocs}};
            Scope ps = scope;
            ps.maps.push_back(&proc);
            Got envg = get(s, "environment", ps);
            if (!env_ready || envg.text != env_text) {
                env_ready = true;
                env_text = envg.text;
                env = global_env_;
                penv.clear();
                std::string why;
                auto pairs = envg.text ? key_value_pairs(*envg.text, why) : std::nullopt;
                if (envg.text && !pairs) lost(s, "environment", why + " (supervisord refuses it)");
                if (pairs && pairs->size() + env.size() > ubounds::max_env) {
                    lost(s, "environment",
                         "more than " + std::to_string(ubounds::max_env) +
                             " variables: the program is not converted");
                    return;
                }
                if (pairs) {
                    std::map<std::string, std::size_t> index; // a variable's place in `env`
                    for (std::size_t k = 0; k < env.size(); ++k)
                        index.emplace(env[k].first, k);
                    for (const auto &[k, v] : *pairs) {
                        penv["ENV_" + k] = v;
                        if (auto same = index.find(k); same != index.end()) {
                            env[same->second].second = v;
                        } else {
                            index.emplace(k, env.size());
                            env.emplace_back(k, v);
                        }
                    }
                }
                for (const auto &[k, v] : env)
                    if (k.empty() || k.find('=') != std::string::npos)
                        lost(s, "environment",
                             "the variable name " + shown(k) + " is empty or has a '='");
                std::erase_if(env, [](const auto &e) {
                    return e.first.empty() || e.first.find('=') != std::string::npos;
                });
            }
            ps.maps.push_back(&penv);
            std::string why;
            auto name = expand(process_name, ps, why);
            if (!name) {
                lost(s, "process_name", why + ": the program is not converted");
                return;
            }
            Got cmd = get(s, "command", ps, true);
            if (!cmd.text) {
                lost(s, "command", cmd.why + ": the program is not converted");
                return;
            }
            auto argv = shlex_split(*cmd.text, why);
            if (!argv) {
                lost(s, "command",
                     why + " (supervisord cannot start it): the program is not "
                           "converted");
                return;
            }
            if (argv->empty() || argv->front().empty()) {
                lost(s, "command", "no program to run: the program is not converted");
                return;
            }
            if (argv->size() > ubounds::max_argv || env.size() > ubounds::max_env ||
                ubounds::exec_bytes(*argv, env) > ubounds::max_exec_bytes ||
                std::any_of(
                    argv->begin(), argv->end(),
                    [](const std::string &a) { return a.size() > ubounds::max_arg_bytes; }) ||
                std::any_of(env.begin(), env.end(), [](const auto &e) {
                    return e.first.size() + 1 + e.second.size() > ubounds::max_arg_bytes;
                })) {
                lost(s, "command",
                     "the command and environment are larger than execve takes (vigil's limits: " +
                         std::to_string(ubounds::max_argv) + " arguments, " +
                         std::to_string(ubounds::max_exec_bytes) +
                         " bytes in all): the program is not converted");
                return;
            }
            std::optional<std::string> cwd = global_cwd_;
            if (Got g = get(s, "directory", ps); g.text) {
                std::string d = *g.text;
                if (!d.starts_with('/'))
                    lost(s, "directory",
                         "not an absolute path (supervisord's working directory "
                         "is not known here): cwd is not set");
                else if (d.size() > ubounds::max_path_bytes)
                    lost(s, "directory",
                         "longer than " + std::to_string(ubounds::max_path_bytes) +
                             " bytes: cwd is not set");
                else
                    cwd = d;
            }
            Stream out = stream(s, "stdout", ps);
            Stream err = stream(s, "stderr", ps);

            ojson b = ojson::object();
            b["command"] = *argv;
            if (cwd) b["cwd"] = *cwd;
            if (!env.empty()) {
                // The names are unique already: append, without ordered_json's linear search.
                ojson e = ojson::object();
                auto &members = e.get_ref<ojson::object_t &>();
                members.reserve(env.size());
                for (const auto &[k, v] : env)
                    members.emplace_back(k, v);
                b["env"] = std::move(e);
            }
            if (user) b["user"] = *user;
            if (umask) {
                char text[8];
                std::snprintf(text, sizeof text, "%04llo", *umask);
                b["umask"] = text;
            }
            b["restart"] = restart;
            if (stop_signal || stopwait != 10) {
                ojson st = ojson::object();
                if (stop_signal) st["signal"] = *stop_signal;
                if (stopwait != 10) st["timeout"] = seconds(stopwait);
                b["stop"] = st;
            }
            // supervisord waits 1s after a failed start (then 2s, 3s...) and restarts a program
            // that ran past startsecs at once; vigil's backoff does the same from "1s", doubling,
            // and starts again from 1s once a run lived startsecs.
            b["backoff"] = {{"initial", "1s"},
                            {"reset_after", startsecs == 0
                                                ? std::string("1ms")
                                                : seconds(std::min(startsecs, 86'400LL))}};
            if (auto l = logs(s, out, err, redirect)) b["logs"] = *l;
            std::size_t size = b.dump().size();
            if (size + 128 * 1024 > ubounds::max_file_bytes) {
                lost(s, "",
                     "the unit would be larger than vigil's 1 MiB: the program is not "
                     "converted");
                return;
            }
            // Past the loader's bound on unit text with instances, whether the processes turn
            // out alike (instances x size) or not (the sum of their files, a lower bound):
            // vigild would refuse the tree either way, so stop here.
            all_bytes += size;
            if (all_bytes > ubounds::max_expanded_bytes) {
                error("[" + s.name + "] makes more than " +
                      std::to_string(ubounds::max_expanded_bytes >> 20) +
                      " MiB of unit text with its instances: vigild reads at most that much");
                too_many_ = true;
                return;
            }
            names.push_back(std::move(*name));
            if (bodies.empty()) {
                bodies.push_back(std::move(b));
                continue;
            }
            if (all_alike && b == bodies.front()) continue;
            if (all_alike) {
                all_alike = false;
                bodies.resize(names.size() - 1, bodies.front());
                body_bytes = size * bodies.size();
            }
            body_bytes += size;
            if (body_bytes > ubounds::max_dir_bytes) {
                error("[" + s.name + "] makes more than " +
                      std::to_string(ubounds::max_dir_bytes >> 20) +
                      " MiB of unit files: vigild reads at most that much");
                too_many_ = true;
                return;
            }
            bodies.push_back(std::move(b));
        }

        // One unit (with instances when every process is alike), or one per process.
        auto service = [&](std::string name, ojson body, std::ptrdiff_t parent,
                           std::string description) {
            if (!room()) return;
            Node n;
            n.name = std::move(name);
            n.section = &s;
            n.disabled = !autostart;
            n.priority = priority;
            n.parent = parent;
            n.body = std::move(body);
            n.origin = "[" + s.name + "] (" + where(s) + ")";
            n.description = std::move(description);
            if (restart != "temporary") {
                n.retries = startretries;
                n.startsecs = startsecs;
            }
            nodes_.push_back(std::move(n));
        };
        ++programs_;
        if (all_alike) {
            std::string d = "[" + s.name + "] from " + where(s);
            service(unit_name(pname, "program"), std::move(bodies.front()), group, d);
            if (numprocs > 1 && !too_many_) {
                nodes_.back().instances = static_cast<int>(numprocs);
                note(s, "numprocs",
                     "the processes are alike: " + std::to_string(numprocs) +
                         " instances NAME@1... of one unit, which tell themselves apart by "
                         "VIGIL_INSTANCE (1 to " +
                         std::to_string(numprocs) + "), not by process_num");
            }
            return;
        }
        std::ptrdiff_t parent = group;
        if (group < 0 && room()) {
            // supervisord makes the processes a group named after the program: so does this.
            Node n;
            n.supervisor = true;
            n.parallel = true;
            n.name = unit_name(pname, "program");
            n.section = &s;
            n.disabled = !autostart;
            n.priority = priority;
            n.origin = "[" + s.name + "] (" + where(s) + ")";
            n.description = "[" + s.name + "] from " + where(s) + ": its " +
                            std::to_string(numprocs) + " processes";
            parent = static_cast<std::ptrdiff_t>(nodes_.size());
            nodes_.push_back(std::move(n));
        }
        for (std::size_t k = 0; k < names.size(); ++k)
            service(unit_name(names[k], "process"), std::move(bodies[k]), parent,
                    "[" + s.name + "] process " + names[k] + " from " + where(s));
    }

    // Whether one more node fits: the files vigild reads are bounded, and so, a little more
    // loosely (disabled units are written too), are the nodes kept here.
    bool room() {
        if (nodes_.size() < ubounds::max_unit_files) return !too_many_;
        if (!too_many_)
            error("more than " + std::to_string(ubounds::max_unit_files) +
                  " units: vigild reads at most that many");
        too_many_ = true;
        return false;
    }

    // ---- the tree ----

    // Unique unit names: "root" is taken, and a clash gets "-2", "-3"... (a Note).
    void make_names() {
        std::set<std::string> used{"root"};
        for (auto &n : nodes_) {
            std::string base = n.name, name = base;
            for (int k = 2; used.contains(name); ++k) {
                std::string suffix = "-" + std::to_string(k);
                name = base.substr(0, ubounds::max_name_bytes - suffix.size()) + suffix;
            }
            if (name != base)
                note(*n.section, "",
                     "named " + name + ": " + base + " is taken" +
                         (base == "root" ? " by vigil's root supervisor" : ""));
            used.insert(name);
            n.name = name;
        }
        // autostart=false, once per program, naming its files.
        std::map<const IniSection *, std::vector<std::string>> disabled;
        for (const auto &n : nodes_)
            if (n.disabled) disabled[n.section].push_back(n.name + ".json.disabled");
        for (const auto &[section, files] : disabled) {
            std::string list = files.front();
            if (files.size() > 1) list += " and " + std::to_string(files.size() - 1) + " more";
            lost(*section, "autostart",
                 "vigil starts every unit it loads: written as " + list +
                     ", which vigild does not read; drop .disabled from the name to run it (it "
                     "will start)");
        }
    }

    // Start order: among the siblings under one supervisor, each unit is after every unit of
    // the next lower priority (so lower priorities start first, and stop last).
    void order() {
        std::map<std::ptrdiff_t, std::map<long long, std::vector<std::size_t>>> levels;
        for (std::size_t i = 0; i < nodes_.size(); ++i)
            if (!nodes_[i].disabled) levels[nodes_[i].parent][nodes_[i].priority].push_back(i);
        for (auto &[parent, by_priority] : levels) {
            const std::vector<std::size_t> *previous = nullptr;
            long long previous_priority = 0;
            for (auto &[priority, members] : by_priority) {
                if (previous) {
                    std::vector<std::string> names;
                    for (std::size_t i : *previous)
                        names.push_back(nodes_[i].name);
                    std::sort(names.begin(), names.end());
                    for (std::size_t i : members) {
                        if (names.size() > ubounds::max_after) {
                            lost(*nodes_[i].section, "priority",
                                 "more than " + std::to_string(ubounds::max_after) +
                                     " units have priority " + std::to_string(previous_priority) +
                                     ": this one is not ordered after them");
                            continue;
                        }
                        nodes_[i].after = names;
                    }
                }
                previous = &members;
                previous_priority = priority;
            }
        }
    }

    // supervisord gives up on one program after startretries failed starts in a row (FATAL);
    // vigil gives up per supervisor: more than `intensity` restarts within `period`. Each
    // supervisor gets the largest startretries among what restarts below it as intensity (at
    // least 1), and a period that holds that many failed starts in a row of one program with
    // the backoff written (1s doubling up to 30s, +20% jitter, each run up to startsecs).
    void budgets() {
        auto fold = [](Node &into, long long retries, long long startsecs) {
            if (retries > into.retries || (retries == into.retries && startsecs > into.startsecs)) {
                into.retries = retries;
                into.startsecs = startsecs;
            }
        };
        // Supervisors have only services as children (groups and numprocs groups sit under
        // root), so one pass for them and one for root suffice.
        for (auto &n : nodes_)
            if (!n.supervisor && !n.disabled && n.parent >= 0 && n.retries >= 0)
                fold(nodes_[n.parent], n.retries, n.startsecs);
        for (auto &n : nodes_)
            if (!n.disabled && n.parent < 0 && n.retries >= 0) fold(root_, n.retries, n.startsecs);
    }

    static void budget_fields(const Node &n, ojson &j) {
        if (n.retries < 0) return;
        long long total = 0, delay = 1;
        for (long long k = 0; k < n.retries && total < 86'400; ++k) {
            total += std::max(delay, n.startsecs);
            delay = std::min(delay * 2, 30LL);
        }
        long long period = std::clamp((total * 6 + 4) / 5 + n.startsecs + 1, 1LL, 86'400LL);
        j["intensity"] = std::clamp(n.retries, 1LL, static_cast<long long>(ubounds::max_intensity));
        j["period"] = seconds(period);
    }

    std::optional<Conversion> emit() {
        if (too_many_) return std::nullopt;
        Conversion c;
        ojson root = ojson::object();
        root["description"] = utf8_prefix("converted by vigilctl import from " +
                                              (ini_.files.empty() ? "" : ini_.files[0].path),
                                          ubounds::max_description_bytes);
        root["strategy"] = "one_for_one";
        budget_fields(root_, root);
        c.units.push_back({"root", false, root, "the root supervisor"});
        for (const auto &n : nodes_) {
            ojson j = ojson::object();
            if (n.supervisor) j["kind"] = "supervisor";
            j["description"] = utf8_prefix(n.description, ubounds::max_description_bytes);
            if (n.parent >= 0) j["parent"] = nodes_[n.parent].name;
            if (!n.after.empty()) j["after"] = n.after;
            for (const auto &[k, v] : n.body.items())
                j[k] = v;
            if (n.instances > 0) j["instances"] = n.instances;
            if (n.supervisor) {
                budget_fields(n, j);
                if (n.parallel) j["parallel"] = true;
            }
            c.units.push_back({n.name, n.disabled, std::move(j), n.origin});
        }
        std::sort(c.units.begin(), c.units.end(), [](const UnitFile &a, const UnitFile &b) {
            return a.file_name() < b.file_name();
        });
        c.programs = programs_;

        // The loader's bounds on the whole tree (vigil/unit/bounds.hpp), for the files vigild
        // reads (not the disabled ones).
        std::map<std::string, long long> copies;
        std::uint64_t files = 0, bytes = 0, expanded = 0, children = 0, edges = 0;
        for (const auto &u : c.units) {
            if (u.disabled) continue;
            long long k = u.json.contains("instances") ? u.json["instances"].get<long long>() : 1;
            copies[u.name] = k;
            std::uint64_t size = u.json.dump(2).size() + 1;
            if (size > ubounds::max_file_bytes) {
                error("the unit " + u.name + " would be larger than 1 MiB");
                return std::nullopt;
            }
            ++files;
            bytes += size;
            expanded += size * static_cast<std::uint64_t>(k);
            if (u.name != "root") children += static_cast<std::uint64_t>(k);
        }
        for (const auto &u : c.units)
            if (!u.disabled && u.json.contains("after"))
                for (const auto &a : u.json["after"])
                    edges +=
                        static_cast<std::uint64_t>(copies[u.name] * copies[a.get<std::string>()]);
        auto over = [&](std::uint64_t n, std::uint64_t bound, const char *what) {
            if (n <= bound) return false;
            error(std::string("the tree would have ") + std::to_string(n) + " " + what +
                  "; vigild takes at most " + std::to_string(bound));
            return true;
        };
        if (over(files, ubounds::max_unit_files, "unit files") ||
            over(children, ubounds::max_nodes, "children (instances counted)") ||
            over(bytes, ubounds::max_dir_bytes, "bytes of unit files") ||
            over(expanded, ubounds::max_expanded_bytes, "bytes of units with instances") ||
            over(edges, ubounds::max_after_edges, "\"after\" edges"))
            return std::nullopt;
        return c;
    }

    const Ini &ini_;
    const Environment &env_;
    std::vector<Finding> &out_;
    std::set<std::string> seen_;
    Expansions env_vars_, host_, sup_env_vars_;
    std::vector<std::pair<std::string, std::string>> global_env_;
    std::optional<std::string> global_user_, global_cwd_;
    std::optional<long long> global_umask_;
    std::map<std::string, std::ptrdiff_t> group_of_; // program name -> its group's node
    std::vector<Node> nodes_;
    Node root_;
    std::size_t programs_ = 0;
    bool too_many_ = false;
};

} // namespace

std::optional<Conversion> convert(const Ini &ini, const Environment &env,
                                  std::vector<Finding> &out) {
    return Converter(ini, env, out).convert();
}

// ---- writing ------------------------------------------------------------------------------

namespace {

bool write_all(int fd, std::string_view data) {
    while (!data.empty()) {
        ssize_t n = ::write(fd, data.data(), data.size());
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

bool exists_at(int dir, const std::string &name) {
    struct stat st {};
    return fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

} // namespace

bool write_units(const std::vector<UnitFile> &units, const std::string &dir, bool force,
                 bool private_files, std::vector<Finding> &out, std::size_t *written) {
    std::size_t count = 0;
    if (!written) written = &count;
    *written = 0;
    auto fail = [&](std::string msg) {
        if (*written == 1) msg += " (the file before it was written)";
        if (*written > 1)
            msg += " (the " + std::to_string(*written) + " files before it were written)";
        out.push_back({Finding::Kind::Error, "", 0, "", "", std::move(msg)});
        return false;
    };
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        int e = errno;
        return fail("cannot create " + dir + ": " + std::strerror(e) +
                    (e == ENOENT ? " (its parent folder must exist)" : ""));
    }
    int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return fail("cannot open " + dir + ": " + std::strerror(errno));
    struct Closer {
        int fd;
        ~Closer() { close(fd); }
    } closer{dfd};

    // Every file or none: look for the names first (both variants of each name, so that a
    // stale NAME.json cannot sit next to a new NAME.json.disabled).
    auto other = [](const UnitFile &u) {
        return u.name + (u.disabled ? ".json" : ".json.disabled");
    };
    if (!force) {
        std::vector<std::string> taken;
        for (const auto &u : units)
            for (const auto &name : {u.file_name(), other(u)})
                if (exists_at(dfd, name)) taken.push_back(dir + "/" + name);
        if (!taken.empty()) {
            std::string list = taken.front();
            if (taken.size() > 1) list += " and " + std::to_string(taken.size() - 1) + " more";
            return fail(list + " exist" + (taken.size() == 1 ? "s" : "") +
                        " (--force replaces them, or choose another --out)");
        }
    }
    mode_t mode = private_files ? 0600 : 0644;
    for (const auto &u : units) {
        std::string text = u.json.dump(2) + "\n";
        std::string name = u.file_name();
        if (!force) {
            int fd = openat(dfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                            mode);
            if (fd < 0)
                return fail("cannot create " + dir + "/" + name + ": " + std::strerror(errno));
            bool ok = write_all(fd, text);
            int e = errno;
            if (close(fd) != 0 && ok) {
                ok = false;
                e = errno;
            }
            if (!ok) return fail("cannot write " + dir + "/" + name + ": " + std::strerror(e));
            ++*written;
            continue;
        }
        // --force: a new file beside the old one, renamed over it (a symbolic link in its way
        // is replaced, never followed).
        std::string tmp;
        int fd = -1;
        for (int k = 0; fd < 0 && k < 100; ++k) {
            tmp = "." + name + ".tmp" + std::to_string(getpid()) + "-" + std::to_string(k);
            fd = openat(dfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        mode);
            if (fd < 0 && errno != EEXIST) break;
        }
        if (fd < 0) return fail("cannot create a file in " + dir + ": " + std::strerror(errno));
        bool ok = write_all(fd, text);
        int e = errno;
        if (close(fd) != 0 && ok) {
            ok = false;
            e = errno;
        }
        if (ok && renameat(dfd, tmp.c_str(), dfd, name.c_str()) != 0) {
            ok = false;
            e = errno;
        }
        if (!ok) {
            unlinkat(dfd, tmp.c_str(), 0);
            return fail("cannot write " + dir + "/" + name + ": " + std::strerror(e));
        }
        ++*written;
        if (unlinkat(dfd, other(u).c_str(), 0) != 0 && errno != ENOENT)
            return fail("cannot remove " + dir + "/" + other(u) + ": " + std::strerror(errno));
    }
    return true;
}

// ---- the command --------------------------------------------------------------------------

namespace {
int run_import(const Options &o, const Environment &env);
} // namespace

int run(const Options &o, const Environment &env) {
    // The last line of defence: an exception (memory, a value JSON cannot hold) is a message
    // and exit status 1, never an abort.
    try {
        return run_import(o, env);
    } catch (const std::bad_alloc &) {
        std::fprintf(stderr, "vigilctl: import: out of memory\n");
    } catch (const std::exception &e) {
        std::fprintf(stderr, "vigilctl: import: internal error: %s\n", e.what());
    }
    return 1;
}

namespace {

int run_import(const Options &o, const Environment &env) {
    std::vector<Finding> findings;
    Ini ini;
    std::optional<Conversion> c;
    bool ok = read_config(o.config, env, ini, findings);
    if (ok) {
        c = convert(ini, env, findings);
        ok = c.has_value();
    }
    bool private_files = std::any_of(ini.files.begin(), ini.files.end(),
                                     [](const IniFile &f) { return !f.readable_by_others; });
    std::size_t written = 0;
    if (ok) ok = write_units(c->units, o.out, o.force, private_files, findings, &written);

    // Findings in file order, then line order; those about no file last.
    std::map<std::string, std::size_t> order;
    for (std::size_t i = 0; i < ini.files.size(); ++i)
        order.emplace(ini.files[i].path, i);
    auto rank = [&](const Finding &f) {
        auto it = order.find(f.file);
        return std::make_pair(it == order.end() ? ini.files.size() : it->second, f.line);
    };
    std::stable_sort(findings.begin(), findings.end(),
                     [&](const Finding &a, const Finding &b) { return rank(a) < rank(b); });
    std::size_t lost = 0, shown_findings = 0;
    for (const auto &f : findings) {
        if (shown_findings++ < max_findings_shown) std::fprintf(stderr, "%s\n", format(f).c_str());
        if (f.kind == Finding::Kind::Lost) ++lost;
    }
    if (findings.size() > max_findings_shown)
        std::fprintf(stderr, "vigilctl: import: %zu more findings not shown\n",
                     findings.size() - max_findings_shown);
    if (!ok) {
        if (written == 0) std::fprintf(stderr, "vigilctl: import: nothing was written\n");
        return 1;
    }
    for (const auto &u : c->units)
        std::printf("%s/%s  <- %s\n", o.out.c_str(), u.file_name().c_str(), u.origin.c_str());
    std::printf("vigilctl: %zu unit files from %zu programs in %s; check them with "
                "`vigild --check --units %s`\n",
                c->units.size(), c->programs, o.out.c_str(), o.out.c_str());
    if (lost > 0) {
        std::fflush(stdout);
        std::fprintf(stderr,
                     "vigilctl: import: %zu setting%s could not be converted (listed above); the "
                     "units run without %s\n",
                     lost, lost == 1 ? "" : "s", lost == 1 ? "it" : "them");
        return 1;
    }
    return 0;
}

} // namespace

} // namespace vigil::cli::import

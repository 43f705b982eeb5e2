// PCRE2 regexes and per-unit pattern sets: see vigil/log/pattern.hpp.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "vigil/log/pattern.hpp"

#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <ctime>
#include <utility>

namespace vigil::log {

// ---------------------------------------------------------------------------------------------
// Regex

std::optional<Regex> Regex::compile(std::string_view pattern, RegexError *error, bool jit,
                                    bool multiline) {
    // UTF + MATCH_INVALID_UTF: patterns may use UTF-8, and subjects (log lines: any bytes) are
    // matched without a validity check failing the whole match.
    std::uint32_t options = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
    if (multiline) options |= PCRE2_MULTILINE;
    pcre2_compile_context *cctx = pcre2_compile_context_create(nullptr);
    if (cctx == nullptr) {
        if (error != nullptr) *error = RegexError{0, "out of memory"};
        return std::nullopt;
    }
    // Fix the newline convention (a build may default to ANYCRLF): lines end at '\n' only.
    pcre2_set_newline(cctx, PCRE2_NEWLINE_LF);
    int errcode = 0;
    PCRE2_SIZE erroff = 0;
    pcre2_code *code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     options, &errcode, &erroff, cctx);
    pcre2_compile_context_free(cctx);
    if (code == nullptr) {
        if (error != nullptr) {
            std::array<PCRE2_UCHAR, 256> buf{};
            pcre2_get_error_message(errcode, buf.data(), buf.size());
            *error = RegexError{erroff, reinterpret_cast<const char *>(buf.data())};
        }
        return std::nullopt;
    }
    Regex r;
    r.pattern_ = std::string(pattern);
    r.code_ = code;
    // JIT is optional: unsupported platforms (or SELinux denying executable memory) return an
    // error and the interpreter is used.
    r.jit_ = jit && pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;
    r.match_data_ = pcre2_match_data_create(1, nullptr);
    r.context_ = pcre2_match_context_create(nullptr);
    if (r.match_data_ == nullptr || r.context_ == nullptr) {
        if (error != nullptr) *error = RegexError{0, "out of memory"};
        return std::nullopt;
    }
    return r;
}

Regex::Regex(Regex &&o) noexcept
    : pattern_(std::move(o.pattern_)), code_(std::exchange(o.code_, nullptr)),
      match_data_(std::exchange(o.match_data_, nullptr)),
      context_(std::exchange(o.context_, nullptr)), jit_(o.jit_), errors_(o.errors_),
      skipped_(o.skipped_) {}

Regex &Regex::operator=(Regex &&o) noexcept {
    if (this != &o) {
        release();
        pattern_ = std::move(o.pattern_);
        code_ = std::exchange(o.code_, nullptr);
        match_data_ = std::exchange(o.match_data_, nullptr);
        context_ = std::exchange(o.context_, nullptr);
        jit_ = o.jit_;
        errors_ = o.errors_;
        skipped_ = o.skipped_;
    }
    return *this;
}

Regex::~Regex() {
    release();
}

void Regex::release() {
    if (match_data_ != nullptr) pcre2_match_data_free(static_cast<pcre2_match_data *>(match_data_));
    if (context_ != nullptr) pcre2_match_context_free(static_cast<pcre2_match_context *>(context_));
    if (code_ != nullptr) pcre2_code_free(static_cast<pcre2_code *>(code_));
    match_data_ = context_ = code_ = nullptr;
}

// Why these limits (the measurements behind them: bench/README.md, "PCRE2 limits"):
//  - a normal pattern needs at most about one step per byte of a line (a greedy `.*` backtracks
//    one byte at a time) and a handful on an ordinary line; a pattern that backtracks
//    exponentially needs millions on the same line, and PCRE2's default limit (ten million)
//    costs tens of milliseconds per line;
//  - so one line gets 10,000 steps plus 8 per byte, at most 1,000,000 (a 1 MiB line): normal
//    patterns never reach it, and a limit hit on an ordinary line costs tens of microseconds;
//  - a block scan only proposes candidates (a limit hit makes the pattern go line by line,
//    losing nothing), so it gets 20,000 plus one per byte, at most 100,000;
//  - the depth limit equals the match limit (depth never exceeds the steps); the heap limit
//    bounds the interpreter's backtracking frames, which the match data keeps between calls
//    (released again after a call that failed).
Regex::Limits Regex::limits(std::size_t len, bool block) {
    const std::uint64_t n = len;
    const std::uint64_t steps = block ? std::min<std::uint64_t>(20'000 + n, 100'000)
                                      : std::min<std::uint64_t>(10'000 + 8 * n, 1'000'000);
    return Limits{static_cast<std::uint32_t>(steps), 1024};
}

// 1 ms plus 16 ns per byte, at most 5 ms: 2 ms for a 64 KiB read, 5 ms for the 1 MiB reads of
// output that is not forwarded; several times what a normal pattern spends on the same bytes.
std::int64_t Regex::budget_ns(std::size_t len) {
    const auto n = static_cast<std::int64_t>(std::min<std::size_t>(len, 1u << 30));
    return std::min<std::int64_t>(1'000'000 + 16 * n, 5'000'000);
}

std::optional<std::size_t> Regex::find(std::string_view subject, std::size_t start,
                                       bool block) const {
    auto *code = static_cast<pcre2_code *>(code_);
    auto *md = static_cast<pcre2_match_data *>(match_data_);
    auto *mc = static_cast<pcre2_match_context *>(context_);
    const Limits lim = limits(subject.size() - std::min(start, subject.size()), block);
    pcre2_set_match_limit(mc, lim.match);
    pcre2_set_depth_limit(mc, lim.match);
    pcre2_set_heap_limit(mc, lim.heap_kib);
    const auto *s = reinterpret_cast<PCRE2_SPTR>(subject.data());
    // pcre2_jit_match skips the interpreter's argument checks: the fast path.
    const int rc = jit_ ? pcre2_jit_match(code, s, subject.size(), start, 0, md, mc)
                        : pcre2_match(code, s, subject.size(), start, 0, md, mc);
    if (rc >= 0) return static_cast<std::size_t>(pcre2_get_ovector_pointer(md)[0]);
    if (rc != PCRE2_ERROR_NOMATCH) {
        ++errors_;
        if (!jit_) {
            // The interpreter keeps the frames it grew in the match data: give them back.
            if (auto *fresh = pcre2_match_data_create(1, nullptr); fresh != nullptr) {
                pcre2_match_data_free(md);
                match_data_ = fresh;
            }
        }
    }
    return std::nullopt;
}

bool Regex::match(std::string_view subject) const {
    return find(subject, 0).has_value();
}

namespace {

std::int64_t thread_cpu_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// The CPU budget of one pattern on one block (see pattern.hpp). The clock (a syscall) is first
// read at the 16th PCRE2 call or at the first limit hit, then after every 16th call and every
// limit hit: a block that needs few calls (a line per read, a literal) costs no clock read at
// all, and the calls before the first read are at most 15, each bounded by the match limit.
class Budget {
public:
    explicit Budget(std::size_t len) : allowed_(Regex::budget_ns(len)) {}
    // After a PCRE2 call; `limit_hit`: it stopped at a limit. False once the budget is spent.
    bool charge(bool limit_hit) {
        ++calls_;
        if (!limit_hit && (calls_ & 15) != 0) return true;
        const std::int64_t now = thread_cpu_ns();
        if (start_ < 0) start_ = now;
        return now - start_ <= allowed_;
    }

private:
    std::int64_t allowed_;
    std::int64_t start_ = -1;
    unsigned calls_ = 0;
};

std::uint64_t count_lines(std::string_view block) {
    const auto n = static_cast<std::uint64_t>(std::count(block.begin(), block.end(), '\n'));
    return n + (!block.empty() && block.back() != '\n' ? 1 : 0);
}

} // namespace

std::optional<std::string_view> Regex::first_line(std::string_view block) const {
    Budget budget(block.size());
    std::size_t pos = 0;
    while (pos < block.size()) {
        const std::size_t nl = block.find('\n', pos);
        const std::size_t end = nl == std::string_view::npos ? block.size() : nl;
        const std::string_view line = block.substr(pos, end - pos);
        const auto errors = errors_;
        if (match(line)) return line;
        pos = end + 1;
        if (!budget.charge(errors_ != errors) && pos < block.size()) {
            skipped_ += count_lines(block.substr(pos));
            return std::nullopt;
        }
    }
    return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Syntax scans. Both are conservative: when unsure they answer "no literal" / "not safe", which
// only costs speed.

namespace {

bool is_alnum(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Skips a character class starting at p[i] == '['; returns the index after its ']', or npos.
std::size_t skip_class(std::string_view p, std::size_t i) {
    ++i;
    if (i < p.size() && p[i] == '^') ++i;
    if (i < p.size() && p[i] == ']') ++i; // a leading ']' is literal
    while (i < p.size()) {
        if (p[i] == '\\') {
            i += 2;
        } else if (p[i] == '[' && i + 1 < p.size() && p[i + 1] == ':') {
            const auto end = p.find(":]", i + 2);
            if (end == std::string_view::npos) return std::string_view::npos;
            i = end + 2;
        } else if (p[i] == ']') {
            return i + 1;
        } else {
            ++i;
        }
    }
    return std::string_view::npos;
}

// Skips a group starting at p[i] == '('; returns the index after its ')', or npos.
std::size_t skip_group(std::string_view p, std::size_t i) {
    int depth = 0;
    while (i < p.size()) {
        const char c = p[i];
        if (c == '\\') {
            if (i + 1 < p.size() && p[i + 1] == 'Q') return std::string_view::npos;
            i += 2;
        } else if (c == '[') {
            i = skip_class(p, i);
            if (i == std::string_view::npos) return i;
        } else if (c == '(') {
            ++depth;
            ++i;
        } else if (c == ')') {
            ++i;
            if (--depth == 0) return i;
        } else {
            ++i;
        }
    }
    return std::string_view::npos;
}

// {n}, {n,}, {n,m}: returns the index after '}', or npos if p[i..] is not a quantifier.
std::size_t skip_braces(std::string_view p, std::size_t i) {
    std::size_t j = i + 1;
    const std::size_t d0 = j;
    while (j < p.size() && p[j] >= '0' && p[j] <= '9')
        ++j;
    if (j == d0) return std::string_view::npos;
    if (j < p.size() && p[j] == ',') {
        ++j;
        while (j < p.size() && p[j] >= '0' && p[j] <= '9')
            ++j;
    }
    if (j < p.size() && p[j] == '}') return j + 1;
    return std::string_view::npos;
}

// Removes the last UTF-8 character of s.
void pop_char(std::string &s) {
    while (!s.empty() && (static_cast<unsigned char>(s.back()) & 0xC0) == 0x80)
        s.pop_back();
    if (!s.empty()) s.pop_back();
}

// Rough frequency of bytes in log text (higher: more common), to pick the byte to memchr for.
int byte_rank(unsigned char c) {
    if (c == ' ') return 255;
    if (std::strchr("etaoinsrhldcum", c) != nullptr && c != 0) return 220;
    if (c >= '0' && c <= '9') return 210;
    if (std::strchr(".:-/,_=()[]\"'", c) != nullptr && c != 0) return 180;
    if (std::strchr("qzjxkv", c) != nullptr && c != 0) return 100;
    if (c >= 'a' && c <= 'z') return 160;
    if (std::strchr("ETSAIRONCL", c) != nullptr && c != 0) return 110;
    if (c >= 'A' && c <= 'Z') return 80;
    if (c >= 0x80) return 60;
    return 120;
}

} // namespace

namespace {

// Splits at top-level '|'. nullopt if the syntax is not understood.
std::optional<std::vector<std::string_view>> split_alternatives(std::string_view p) {
    std::vector<std::string_view> out;
    std::size_t start = 0, i = 0;
    while (i < p.size()) {
        if (p[i] == '\\') {
            if (i + 1 < p.size() && p[i + 1] == 'Q') return std::nullopt;
            i += 2;
        } else if (p[i] == '[') {
            i = skip_class(p, i);
            if (i == std::string_view::npos) return std::nullopt;
        } else if (p[i] == '(') {
            i = skip_group(p, i);
            if (i == std::string_view::npos) return std::nullopt;
        } else if (p[i] == '|') {
            out.push_back(p.substr(start, i - start));
            start = ++i;
        } else {
            ++i;
        }
    }
    out.push_back(p.substr(start));
    return out;
}

// How much a set of literals is expected to cost as a prefilter: lower is better. Long literals
// with a rare byte are cheap; one- and two-byte literals stop the search on most lines.
int set_cost(const LiteralSet &set) {
    int total = 0;
    for (const auto &lit : set.any) {
        int rarest = 1 << 20;
        for (const char ch : lit)
            rarest = std::min(rarest, byte_rank(static_cast<unsigned char>(ch)));
        int cost = rarest - 12 * static_cast<int>(std::min<std::size_t>(lit.size(), 8));
        if (lit.size() < 3) cost += 600;
        total += cost + 300; // every literal is one more search
    }
    return total;
}

std::optional<LiteralSet> extract(std::string_view p, bool icase, int depth) {
    constexpr auto npos = std::string_view::npos;
    if (depth > 8) return std::nullopt;
    if (depth == 0 && p.starts_with("(?i)")) {
        icase = true;
        p.remove_prefix(4);
    }
    const auto branches = split_alternatives(p);
    if (!branches) return std::nullopt;
    if (branches->size() > 1) {
        // Every match contains a literal of its branch: the union is required.
        LiteralSet all{{}, icase, false};
        for (const auto b : *branches) {
            auto one = extract(b, icase, depth + 1);
            if (!one) return std::nullopt;
            for (auto &lit : one->any)
                all.any.push_back(std::move(lit));
        }
        return all;
    }

    std::optional<LiteralSet> best;
    auto consider = [&](LiteralSet cand) {
        if (cand.any.empty()) return;
        for (const auto &lit : cand.any)
            if (lit.empty()) return;
        if (!best || set_cost(cand) < set_cost(*best)) best = std::move(cand);
    };
    std::string run;
    bool clean = true;     // nothing but literal characters so far
    bool last_lit = false; // the previous atom is the last character of `run`
    auto end_run = [&] {
        consider(LiteralSet{{run}, icase, false});
        run.clear();
        last_lit = false;
    };
    auto non_literal_atom = [&] {
        end_run();
        clean = false;
    };
    auto literal_char = [&](unsigned char ch) {
        // Caseless UTF matching folds 'k' with U+212A and 's' with U+017F, and non-ASCII
        // letters by Unicode rules: an ASCII caseless search could miss those, so they end the
        // run instead of joining it.
        if (icase && (ch >= 0x80 || ch == 'k' || ch == 'K' || ch == 's' || ch == 'S')) {
            non_literal_atom();
            return;
        }
        run.push_back(static_cast<char>(ch));
        last_lit = true;
    };
    std::size_t i = 0;
    while (i < p.size()) {
        const auto c = static_cast<unsigned char>(p[i]);
        switch (c) {
        case '\\': {
            if (i + 1 >= p.size()) return std::nullopt;
            const auto e = static_cast<unsigned char>(p[i + 1]);
            if (!is_alnum(e)) { // an escaped punctuation or space: itself
                literal_char(e);
                i += 2;
                break;
            }
            if (std::strchr("dDwWsShHvVRbB", e) != nullptr) {
                non_literal_atom();
                i += 2;
                break;
            }
            if (e >= '1' && e <= '9') { // back reference
                non_literal_atom();
                i += 2;
                while (i < p.size() && p[i] >= '0' && p[i] <= '9')
                    ++i;
                break;
            }
            return std::nullopt; // \x \p \Q \c \g \k ...: not worth parsing
        }
        case '[':
            i = skip_class(p, i);
            if (i == npos) return std::nullopt;
            non_literal_atom();
            break;
        case '(': {
            std::size_t body = i + 1; // where the group's pattern starts
            if (i + 1 < p.size() && p[i + 1] == '?') {
                const std::string_view rest = p.substr(i + 2);
                if (rest.starts_with(":") || rest.starts_with("|") || rest.starts_with(">")) {
                    body = i + 3;
                } else if (rest.starts_with("P<") || (rest.starts_with("<") && rest.size() > 1 &&
                                                      rest[1] != '=' && rest[1] != '!')) {
                    body = p.find('>', i) + 1;
                } else if (rest.starts_with("'")) {
                    body = p.find('\'', i + 3) + 1;
                } else {
                    return std::nullopt; // options, lookaround, conditionals, ...
                }
                if (body == 0) return std::nullopt; // npos + 1
            } else if (i + 1 < p.size() && p[i + 1] == '*') {
                return std::nullopt;
            }
            const std::size_t end = skip_group(p, i);
            if (end == npos || body > end - 1) return std::nullopt;
            non_literal_atom();
            // A group that must match (not followed by ?, * or {0...}) needs one of its
            // alternatives' literals.
            const bool optional =
                end < p.size() && (p[end] == '?' || p[end] == '*' ||
                                   (p[end] == '{' && end + 1 < p.size() && p[end + 1] == '0'));
            if (!optional) {
                if (auto inner = extract(p.substr(body, end - 1 - body), icase, depth + 1))
                    consider(std::move(*inner));
            }
            i = end;
            break;
        }
        case ')':
            return std::nullopt;
        case '.':
        case '^':
        case '$':
            non_literal_atom();
            ++i;
            break;
        case '*':
        case '?':
        case '+':
        case '{': {
            std::size_t next = i + 1;
            if (c == '{') {
                next = skip_braces(p, i);
                if (next == npos) return std::nullopt;
            }
            if (last_lit) {
                // The quantified character is optional (or repeated): it cannot stay in a run
                // that continues past it. '+' keeps one copy.
                const bool keep = c == '+' || (c == '{' && p[i + 1] != '0');
                if (!keep) pop_char(run);
            }
            non_literal_atom();
            if (next < p.size() && (p[next] == '?' || p[next] == '+')) ++next; // lazy/possessive
            i = next;
            break;
        }
        case '\n':
            non_literal_atom(); // a literal newline can never be inside a line
            ++i;
            break;
        default:
            // Only the last *character* is quantifiable; continuation bytes join it.
            literal_char(c);
            ++i;
            break;
        }
    }
    const std::string last = run;
    end_run();
    if (!best) return std::nullopt;
    best->whole =
        !icase && clean && best->any.size() == 1 && best->any[0] == last && last.size() == p.size();
    return best;
}

} // namespace

std::optional<LiteralSet> required_literals(std::string_view pattern) {
    return extract(pattern, false, 0);
}

bool block_scan_safe(std::string_view p) {
    std::size_t i = 0;
    while (i < p.size()) {
        const char c = p[i];
        if (c == '\\') {
            if (i + 1 >= p.size()) return false;
            const char e = p[i + 1];
            if (std::strchr("AzZGKC", e) != nullptr) return false; // bound-dependent
            if (e == 'Q') {
                const auto end = p.find("\\E", i + 2);
                if (end == std::string_view::npos) return true; // literal to the end
                i = end + 2;
                continue;
            }
            i += 2;
        } else if (c == '[') {
            i = skip_class(p, i);
            if (i == std::string_view::npos) return false;
        } else if (c == '(') {
            if (i + 1 < p.size() && p[i + 1] == '*') return false; // verbs, (*pla:, (*CR)
            if (i + 1 < p.size() && p[i + 1] == '?') {
                const std::string_view rest = p.substr(i + 2);
                if (rest.empty()) return false;
                const char o = rest[0];
                const bool named =
                    (o == '<' && rest.size() > 1 && rest[1] != '=' && rest[1] != '!') ||
                    rest.starts_with("P<") || o == '\'';
                const bool options = std::strchr("imnsxJU^-", o) != nullptr && o != 0;
                if (!(o == ':' || o == '|' || o == '>' || o == '#' || named || options))
                    return false; // lookaround, conditionals, recursion, callouts
            }
            ++i;
        } else {
            ++i;
        }
    }
    return true;
}

// ---------------------------------------------------------------------------------------------
// PatternSet

std::optional<PatternSet> PatternSet::compile(const std::vector<unit::PatternSpec> &specs,
                                              PatternCompileError *error, bool jit) {
    PatternSet set;
    set.pats_.reserve(specs.size());
    for (std::size_t i = 0; i < specs.size(); ++i) {
        const auto &spec = specs[i];
        RegexError err;
        auto re = Regex::compile(spec.match, &err, jit);
        if (!re) {
            if (error != nullptr) *error = PatternCompileError{i, err};
            return std::nullopt;
        }
        Pat p{spec, std::move(*re), std::nullopt, {}, false, false, {}, 0, 0, 0, 0};
        // Literals of one or two bytes (e.g. " " in "(a|b) (c|d)") stop memchr on nearly every
        // line: below three bytes, prefer a block regex when it is safe.
        auto lits = required_literals(spec.match);
        const bool safe = block_scan_safe(spec.match);
        bool short_lit = false;
        if (lits)
            for (const auto &l : lits->any)
                short_lit = short_lit || l.size() < 3;
        if (lits && (lits->whole || !short_lit || !safe)) {
            for (auto &l : lits->any)
                p.needles.push_back(Pat::Needle{std::move(l), 0, 0});
            p.icase = lits->icase;
            p.pure_literal = lits->whole;
        } else if (safe) {
            p.block_re = Regex::compile(spec.match, nullptr, jit, /*multiline=*/true);
        }
        p.window.resize(std::clamp(spec.count, 1u, pattern_count_limit));
        set.pats_.push_back(std::move(p));
    }
    set.choose_rare_bytes(ByteCounts{});
    return set;
}

namespace {
unsigned char other_case(unsigned char c) {
    if (c >= 'a' && c <= 'z') return static_cast<unsigned char>(c - 'a' + 'A');
    if (c >= 'A' && c <= 'Z') return static_cast<unsigned char>(c - 'A' + 'a');
    return c;
}
} // namespace

void PatternSet::choose_rare_bytes(const ByteCounts &hist) {
    // Fewest occurrences in the last sample first, then the static guess (before any sample
    // every count is 0 and the static rank decides). Caseless: both cases count.
    for (Pat &p : pats_) {
        for (auto &n : p.needles) {
            std::uint64_t best = UINT64_MAX;
            for (std::size_t k = 0; k < n.text.size(); ++k) {
                const auto b = static_cast<unsigned char>(n.text[k]);
                std::uint64_t count = hist[b];
                if (p.icase && other_case(b) != b) count += hist[other_case(b)] + 1;
                const std::uint64_t score = (count << 8) | static_cast<unsigned>(byte_rank(b));
                if (score < best) {
                    best = score;
                    n.rare = k;
                }
            }
        }
    }
}

void PatternSet::sample(std::string_view block) {
    // A byte histogram of (the start of) this block: which literal byte is really rare in this
    // service's output. Costs one counting pass every 256 blocks.
    ByteCounts hist{};
    const std::size_t n = std::min<std::size_t>(block.size(), 64u << 10);
    for (std::size_t i = 0; i < n; ++i)
        ++hist[static_cast<unsigned char>(block[i])];
    choose_rare_bytes(hist);
}

bool PatternSet::jit() const {
    for (const auto &p : pats_)
        if (!p.line_re.jit() || (p.block_re && !p.block_re->jit())) return false;
    return true;
}

std::string_view PatternSet::strategy(std::size_t i) const {
    const Pat &p = pats_[i];
    if (p.pure_literal) return "literal";
    if (!p.needles.empty()) return "prefilter";
    if (p.block_re) return "block";
    return "line";
}

void PatternSet::record(Pat &p, Stream s, std::string_view line, TimePoint now,
                        std::vector<PatternHit> &out) {
    ++p.matches;
    const std::size_t n = p.window.size();
    if (p.win_size < n) {
        p.window[(p.win_head + p.win_size) % n] = now;
        ++p.win_size;
    } else {
        p.window[p.win_head] = now; // forget the oldest
        p.win_head = (p.win_head + 1) % n;
    }
    if (p.win_size < n) return;
    const TimePoint oldest = p.window[p.win_head];
    if (p.spec.within && now - oldest > *p.spec.within) return;
    p.win_size = 0;
    p.win_head = 0;
    out.push_back(PatternHit{p.spec.match, p.spec.action, s, std::string(line.substr(0, 512))});
}

void PatternSet::match(Stream stream, std::string_view line, TimePoint now,
                       std::vector<PatternHit> &out) {
    for (std::size_t i = 0; i < pats_.size(); ++i) {
        Pat &p = pats_[i];
        if (!applies(p, stream)) continue;
        const bool hit = p.pure_literal ? line.find(p.needles[0].text) != std::string_view::npos
                                        : p.line_re.match(line);
        if (hit) record(p, stream, line, now, out);
    }
}

namespace {

bool equal_icase(const char *a, std::string_view lit) {
    for (std::size_t k = 0; k < lit.size(); ++k) {
        const auto x = static_cast<unsigned char>(a[k]), y = static_cast<unsigned char>(lit[k]);
        if (x != y && other_case(x) != y) return false;
    }
    return true;
}

// Start of the first occurrence of `lit` in block[pos..], or npos. memchr (vectorised in glibc)
// on the literal's rarest byte does the skipping; caseless, on both cases of it.
std::size_t find_literal(std::string_view block, std::size_t pos, std::string_view lit,
                         std::size_t rare, bool icase) {
    const auto r = static_cast<unsigned char>(lit[rare]);
    const unsigned char r2 = icase ? other_case(r) : r;
    std::size_t at = pos + rare;
    while (at < block.size()) {
        const char *base = block.data() + at;
        const std::size_t len = block.size() - at;
        const auto *hit = static_cast<const char *>(std::memchr(base, r, len));
        if (r2 != r) {
            const std::size_t lim = hit == nullptr ? len : static_cast<std::size_t>(hit - base);
            const auto *hit2 = static_cast<const char *>(std::memchr(base, r2, lim));
            if (hit2 != nullptr) hit = hit2;
        }
        if (hit == nullptr) return std::string_view::npos;
        const auto h = static_cast<std::size_t>(hit - block.data());
        const std::size_t start = h - rare;
        if (start + lit.size() <= block.size() &&
            (icase ? equal_icase(block.data() + start, lit)
                   : std::memcmp(block.data() + start, lit.data(), lit.size()) == 0))
            return start;
        at = h + 1;
    }
    return std::string_view::npos;
}

} // namespace

void PatternSet::scan(Stream stream, std::string_view block, TimePoint now,
                      std::vector<PatternHit> &out) {
    constexpr auto npos = std::string_view::npos;
    if ((scans_++ & 255) == 0) sample(block);
    for (Pat &p : pats_) {
        if (!applies(p, stream)) continue;
        constexpr std::size_t unsearched = npos - 1;
        for (auto &n : p.needles)
            n.next = unsearched;
        Budget budget(block.size());
        std::size_t pos = 0;
        bool every_line = p.needles.empty() && !p.block_re;
        while (pos < block.size()) {
            std::size_t cand;
            if (every_line) {
                cand = pos;
            } else if (!p.needles.empty()) {
                // The nearest occurrence of any needle; each needle's is cached until passed.
                cand = npos;
                for (auto &n : p.needles) {
                    if (n.next == unsearched || (n.next != npos && n.next < pos))
                        n.next = find_literal(block, pos, n.text, n.rare, p.icase);
                    cand = std::min(cand, n.next);
                }
            } else {
                const auto errors = p.block_re->errors();
                const auto f = p.block_re->find(block, pos, /*block=*/true);
                cand = f ? *f : npos;
                const bool limited = !f && p.block_re->errors() != errors;
                if (limited) {
                    // A resource limit over the whole block says nothing about single lines:
                    // finish this block line by line, each line bounded.
                    every_line = true;
                    cand = pos;
                } else if (!f) {
                    break; // no line left matches
                }
                if (!budget.charge(limited)) {
                    p.skipped += count_lines(block.substr(pos));
                    break;
                }
            }
            if (cand == npos) break;
            // An empty match after the final '\n' is not on any line.
            if (cand >= block.size() && (block.empty() || block.back() == '\n')) break;
            // The candidate's line: pos is a line start, so search back no further than pos.
            std::size_t ls = pos;
            if (cand > pos) {
                const void *nl = ::memrchr(block.data() + pos, '\n', cand - pos);
                if (nl != nullptr)
                    ls = static_cast<std::size_t>(static_cast<const char *>(nl) - block.data()) + 1;
            }
            const void *nl = std::memchr(block.data() + ls, '\n', block.size() - ls);
            const std::size_t le =
                nl == nullptr
                    ? block.size()
                    : static_cast<std::size_t>(static_cast<const char *>(nl) - block.data());
            const std::string_view line = block.substr(ls, le - ls);
            pos = le + 1;
            if (p.pure_literal) {
                record(p, stream, line, now, out);
                continue;
            }
            const auto errors = p.line_re.errors();
            if (p.line_re.match(line)) record(p, stream, line, now, out);
            if (!budget.charge(p.line_re.errors() != errors) && pos < block.size()) {
                p.skipped += count_lines(block.substr(pos));
                break;
            }
        }
    }
}

} // namespace vigil::log

// vigil/log/pattern.hpp: regular expressions on log lines with PCRE2 + JIT.
//
// `Regex` is one compiled PCRE2 pattern (UTF mode with PCRE2_MATCH_INVALID_UTF, so any bytes can
// be matched safely; JIT-compiled when the platform allows, interpreted otherwise). It is used
// as-is for `ready.log`.
//
// `PatternSet` holds a unit's `patterns` (unit::PatternSpec), compiled once. Semantics:
//  - a pattern is tried on every line of its stream (Stdout, Stderr or Both); a line is the unit
//    the pattern sees (a piece of a split long line is a line here);
//  - each matching line is one "match"; a pattern fires when `count` matches happened within
//    `within` (or ever, without `within`). After firing its window is emptied, so count=3 fires
//    on the 3rd, 6th, 9th ... match;
//  - time is a parameter (the loop's monotonic `now`); nothing here reads a clock.
// Speed (ten patterns must cost under 20% of the throughput): calling pcre2_match per line and
// pattern costs far too much, so scan() takes a *block* of '\n'-terminated lines and, per pattern,
// finds candidate lines across the whole block, then confirms each candidate on its own line:
//  - required literals (e.g. "OutOfMemoryError" in "java.lang.OutOfMemoryError: (.*)", or
//    {"disk", "filesystem"} in "(disk|filesystem) full", caseless after "(?i)") are searched
//    with memchr on their rarest byte (rarest in this unit's output: a byte histogram of every
//    256th block picks it); a pattern that *is* a literal needs no regex at all;
//  - otherwise, if the pattern has nothing whose meaning depends on the subject's bounds (no
//    \A \z \Z \G \K, lookaround, verbs, callouts), it is run over the whole block with
//    PCRE2_MULTILINE as a candidate finder (any line match is also a block match at the same
//    offset, and candidates are re-checked on their line, so results equal per-line matching);
//  - otherwise every line is matched on its own.
// match() is the per-line path (one line, e.g. a test or a straddling line).
//
// Bounded work (a unit file's pattern and a service's output are both hostile: `^(\w+\s?)*$`
// on ordinary text backtracks exponentially, and under PCRE2's default match limit a few dozen
// KB of output froze vigild for seconds):
//  - every PCRE2 call runs with a match limit, a depth limit and a heap limit (Regex::limits: the
//    JIT obeys the match limit and its own stack limit). The match limit grows with the subject:
//    a greedy `.*` costs about one step per byte, so a fixed limit would fail normal patterns on
//    long lines. A call that hits a limit counts as "no match" and is counted (Regex::errors());
//  - a block scan that hits a limit says nothing about single lines: that pattern finishes the
//    block line by line, each line bounded (never one limit-bounded call per byte);
//  - each pattern has a CPU budget per block (Regex::budget_ns, thread CPU time, read after every
//    16th PCRE2 call and after every limit hit): when it is spent, the rest of the block is not
//    matched by that pattern and its lines are counted (PatternSet::skipped). Normal patterns use
//    a small fraction of it; only a pattern that keeps hitting its limits exhausts it.
// `count` is clamped to pattern_count_limit: the window keeps one time per match to count.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vigil/log/line.hpp"
#include "vigil/time.hpp"
#include "vigil/unit/unit.hpp"

namespace vigil::log {

struct RegexError {
    std::size_t offset = 0; // byte offset in the pattern where PCRE2 gave up
    std::string message;
};

// A pattern's `count` is clamped to this (its window holds one time per counted match).
inline constexpr unsigned pattern_count_limit = 10000;

class Regex {
public:
    // The limits of one PCRE2 call on a subject of `len` bytes (see the top of this file).
    // The measurements behind them: bench/README.md, "PCRE2 limits".
    struct Limits {
        std::uint32_t match;    // pcre2_set_match_limit (also the depth limit)
        std::uint32_t heap_kib; // pcre2_set_heap_limit
    };
    static Limits limits(std::size_t len, bool block);
    // CPU time a pattern may spend on a block of `len` bytes.
    static std::int64_t budget_ns(std::size_t len);

    // `multiline`: ^ and $ also match at '\n' (used for block scans). `jit`: try JIT.
    static std::optional<Regex> compile(std::string_view pattern, RegexError *error = nullptr,
                                        bool jit = true, bool multiline = false);
    Regex(Regex &&o) noexcept;
    Regex &operator=(Regex &&o) noexcept;
    Regex(const Regex &) = delete;
    Regex &operator=(const Regex &) = delete;
    ~Regex();

    // True if the pattern matches somewhere in `subject` (bounded by limits(subject.size())).
    bool match(std::string_view subject) const;
    // Offset of the leftmost match starting at or after `start`, if any. `block`: the subject is
    // many lines (a block scan), bounded by the block limits.
    std::optional<std::size_t> find(std::string_view subject, std::size_t start = 0,
                                    bool block = false) const;
    // The first line of `block` (lines ending with '\n'; the last one may lack it) that matches,
    // trying line by line within budget_ns(block.size()); nullopt if none matched or the budget
    // ran out first (the lines not tried are counted in skipped()). For ready.log.
    std::optional<std::string_view> first_line(std::string_view block) const;

    bool jit() const { return jit_; }
    const std::string &pattern() const { return pattern_; }
    // Calls abandoned because of a PCRE2 resource limit (counted as "no match").
    std::uint64_t errors() const { return errors_; }
    // Lines first_line() did not try because its budget was spent.
    std::uint64_t skipped() const { return skipped_; }

private:
    Regex() = default;
    void release();
    std::string pattern_;
    void *code_ = nullptr; // pcre2_code_8*
    // pcre2_match_data_8*, reused by every match; replaced after a call that failed (mutable:
    // matching is logically const).
    mutable void *match_data_ = nullptr;
    void *context_ = nullptr; // pcre2_match_context_8*: the limits
    bool jit_ = false;
    mutable std::uint64_t errors_ = 0;
    mutable std::uint64_t skipped_ = 0;
};

// A fired pattern, self-contained: it stays meaningful after a reload replaced the unit's
// patterns (the daemon never indexes the current list with it). PatternAction says which event
// to feed the core.
struct PatternHit {
    std::string pattern; // the pattern as written in the unit file
    unit::PatternAction action = unit::PatternAction::Event;
    Stream stream = Stream::Stdout;
    std::string line; // the line that completed the count, cut at 512 bytes (for the event)
};

struct PatternCompileError {
    std::size_t index = 0; // which pattern
    RegexError error;
};

class PatternSet {
public:
    PatternSet() = default; // no patterns
    // Compiles every pattern; on the first error returns nullopt and fills *error.
    static std::optional<PatternSet> compile(const std::vector<unit::PatternSpec> &specs,
                                             PatternCompileError *error = nullptr, bool jit = true);

    bool empty() const { return pats_.empty(); }
    std::size_t size() const { return pats_.size(); }
    // True if every pattern is JIT-compiled.
    bool jit() const;

    // One line (no '\n'). Appends fired patterns to `out`.
    void match(Stream stream, std::string_view line, TimePoint now, std::vector<PatternHit> &out);
    // A block of lines, each terminated by '\n' (the last one may lack it). Same result as
    // match() on each line in order, but much faster. Appends fired patterns to `out`.
    void scan(Stream stream, std::string_view block, TimePoint now, std::vector<PatternHit> &out);

    // How each pattern finds candidates (for tests and the bench): "literal", "prefilter",
    // "block", "line".
    std::string_view strategy(std::size_t i) const;
    std::uint64_t matches(std::size_t i) const { return pats_[i].matches; }
    // Lines pattern i treated as "no match" because a PCRE2 limit stopped it.
    std::uint64_t limit_hits(std::size_t i) const { return pats_[i].line_re.errors(); }
    // Lines pattern i did not try because its budget for their block was spent.
    std::uint64_t skipped(std::size_t i) const { return pats_[i].skipped; }

private:
    struct Pat {
        unit::PatternSpec spec;
        Regex line_re;                 // the pattern as written, run on one line
        std::optional<Regex> block_re; // PCRE2_MULTILINE, for block scans (if safe)
        struct Needle {
            std::string text;
            std::size_t rare = 0; // index in text of its rarest byte
            std::size_t next = 0; // cached next occurrence in the current block
        };
        std::vector<Needle> needles;   // one of these is in every match (empty: none)
        bool icase = false;            // needles compare ASCII-caselessly
        bool pure_literal = false;     // the pattern is exactly needles[0]
        std::vector<TimePoint> window; // times of the last matches, ring of `count`
        std::size_t win_head = 0, win_size = 0;
        std::uint64_t matches = 0;
        std::uint64_t skipped = 0;
    };
    static bool applies(const Pat &p, Stream s) {
        return p.spec.stream == Stream::Both || p.spec.stream == s;
    }
    static void record(Pat &p, Stream s, std::string_view line, TimePoint now,
                       std::vector<PatternHit> &out);
    // Byte counts of a sampled block: only while choosing, not kept (every unit has a
    // PatternSet, most have no pattern, and 1 KiB each adds up over 10,000 units).
    using ByteCounts = std::array<std::uint32_t, 256>;
    void sample(std::string_view block);
    void choose_rare_bytes(const ByteCounts &hist);
    std::vector<Pat> pats_;
    std::uint64_t scans_ = 0;
};

// Exposed for tests: literals of which every match of `pattern` contains at least one (found by
// a conservative scan of the syntax, through alternations and groups), whether they compare
// ASCII-caselessly (a leading "(?i)"), and whether the pattern is exactly any[0].
// nullopt when nothing could be proven (inline options, lookaround, \x escapes, ...).
struct LiteralSet {
    std::vector<std::string> any;
    bool icase = false;
    bool whole = false;
};
std::optional<LiteralSet> required_literals(std::string_view pattern);
// True if running `pattern` over many lines at once (multiline) cannot miss a line match.
bool block_scan_safe(std::string_view pattern);

} // namespace vigil::log

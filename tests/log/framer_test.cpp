// Framer: lines from any chunking, long lines split and marked, partial final line, binary.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "vigil/log/framer.hpp"

using vigil::log::Framer;

namespace {

struct Piece {
    std::string text;
    bool continued;
    bool operator==(const Piece &) const = default;
};

// Calls feed(chunk) on `input` cut in chunks of the given sizes (cycled).
template <class Feed>
void in_chunks(std::string_view input, const std::vector<std::size_t> &chunks, Feed &&feed) {
    std::size_t i = 0, k = 0;
    while (i < input.size()) {
        const std::size_t n = std::min(chunks[k++ % chunks.size()], input.size() - i);
        feed(input.substr(i, n));
        i += n;
    }
}

// Feeds `input` in chunks of the given sizes (cycled), then flushes.
std::vector<Piece> frame(std::string_view input, std::size_t max_line,
                         const std::vector<std::size_t> &chunks) {
    Framer f(max_line);
    std::vector<Piece> out;
    auto sink = [&](std::string_view l, bool c) { out.push_back({std::string(l), c}); };
    in_chunks(input, chunks, [&](std::string_view chunk) { f.feed(chunk, sink); });
    f.flush(sink);
    return out;
}

// Like frame(), through feed_runs: runs are split back into lines with for_each_line, after
// checking what a run promises (count lines, each ending with '\n', each at most max_line bytes,
// a view into the chunk fed).
std::vector<Piece> frame_runs(std::string_view input, std::size_t max_line,
                              const std::vector<std::size_t> &chunks) {
    Framer f(max_line);
    std::vector<Piece> out;
    auto sink = [&](std::string_view l, bool c) { out.push_back({std::string(l), c}); };
    in_chunks(input, chunks, [&](std::string_view chunk) {
        f.feed_runs(
            chunk,
            [&](std::string_view run, std::size_t count) {
                CHECK(count >= 1);
                CHECK(run.data() >= chunk.data());
                CHECK(run.data() + run.size() <= chunk.data() + chunk.size());
                REQUIRE(!run.empty());
                CHECK(run.back() == '\n');
                CHECK(static_cast<std::size_t>(std::count(run.begin(), run.end(), '\n')) == count);
                std::size_t seen = 0;
                vigil::log::for_each_line(run, [&](std::string_view l) {
                    CHECK(l.size() <= max_line);
                    out.push_back({std::string(l), false});
                    ++seen;
                });
                CHECK(seen == count);
            },
            sink);
    });
    f.flush(sink);
    return out;
}

// The specification, written the obvious way.
std::vector<Piece> reference(std::string_view input, std::size_t max_line) {
    std::vector<Piece> out;
    std::size_t i = 0;
    while (i < input.size()) {
        const auto nl = input.find('\n', i);
        const std::size_t end = nl == std::string_view::npos ? input.size() : nl;
        std::string_view line = input.substr(i, end - i);
        while (line.size() > max_line) {
            out.push_back({std::string(line.substr(0, max_line)), true});
            line.remove_prefix(max_line);
        }
        out.push_back({std::string(line), false});
        i = nl == std::string_view::npos ? input.size() : nl + 1;
    }
    return out;
}

std::uint64_t rng_state = 0x9E3779B97F4A7C15ull;
std::uint64_t next_rand() { // splitmix64: deterministic across platforms
    std::uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

} // namespace

TEST_SUITE("log") {

    TEST_CASE("framer splits on newline and keeps empty lines") {
        CHECK(frame("a\nbb\n\nccc\n", 100, {64}) ==
              std::vector<Piece>{{"a", false}, {"bb", false}, {"", false}, {"ccc", false}});
    }

    TEST_CASE("framer max_line is clamped to [1, max_line_limit]") {
        CHECK(Framer(0).max_line() == 1);
        CHECK(Framer(std::size_t{4} << 30).max_line() == vigil::log::max_line_limit);
        // `logs.max_line "4GiB"`: a line without '\n' is cut at the limit, not buffered whole.
        Framer f(std::size_t{4} << 30);
        const std::string chunk(vigil::log::max_line_limit + 10, 'x');
        std::vector<std::size_t> sizes;
        f.feed(chunk, [&](std::string_view l, bool) { sizes.push_back(l.size()); });
        CHECK(sizes == std::vector<std::size_t>{vigil::log::max_line_limit});
        CHECK(f.pending() == 10);
    }

    TEST_CASE("framer emits a final line without newline only on flush") {
        Framer f(100);
        std::vector<Piece> out;
        auto sink = [&](std::string_view l, bool c) { out.push_back({std::string(l), c}); };
        f.feed("one\ntw", sink);
        CHECK(out == std::vector<Piece>{{"one", false}});
        CHECK(f.pending() == 2);
        f.feed("o", sink);
        CHECK(out.size() == 1);
        f.flush(sink);
        CHECK(out == std::vector<Piece>{{"one", false}, {"two", false}});
        f.flush(sink); // nothing more
        CHECK(out.size() == 2);
    }

    TEST_CASE("framer splits long lines into marked pieces without losing bytes") {
        CHECK(frame("abcdefghij\n", 4, {64}) ==
              std::vector<Piece>{{"abcd", true}, {"efgh", true}, {"ij", false}});
        // Exactly max_line: not split.
        CHECK(frame("abcd\nefghi\n", 4, {64}) ==
              std::vector<Piece>{{"abcd", false}, {"efgh", true}, {"i", false}});
        // A multiple of max_line: the last piece is full and not continued.
        CHECK(frame("abcdefgh\n", 4, {64}) == std::vector<Piece>{{"abcd", true}, {"efgh", false}});
        // Without a newline at the end.
        CHECK(frame("abcdefgh", 4, {64}) == std::vector<Piece>{{"abcd", true}, {"efgh", false}});
    }

    TEST_CASE("framer passes binary bytes and CRLF through unchanged") {
        const std::string bin("a\0b\xff\r\n\x01\x80\r\n", 10);
        CHECK(frame(bin, 100, {1}) ==
              std::vector<Piece>{{std::string("a\0b\xff\r", 5), false}, {"\x01\x80\r", false}});
    }

    TEST_CASE("framer output does not depend on chunking (1-byte chunks, random chunks)") {
        for (int round = 0; round < 200; ++round) {
            // Random text: short and long lines, some binary, sometimes no final newline.
            std::string input;
            const auto lines = next_rand() % 20;
            for (std::uint64_t l = 0; l < lines; ++l) {
                const auto len = next_rand() % 4 == 0 ? next_rand() % 100 : next_rand() % 8;
                for (std::uint64_t b = 0; b < len; ++b) {
                    auto c = static_cast<char>(next_rand() % 256);
                    if (c == '\n') c = 'x';
                    input.push_back(c);
                }
                if (l + 1 < lines || next_rand() % 2 == 0) input.push_back('\n');
            }
            const std::size_t max_line = 1 + next_rand() % 20;
            const auto want = reference(input, max_line);
            CHECK(frame(input, max_line, {1}) == want);
            CHECK(frame(input, max_line, {3, 1, 7}) == want);
            std::vector<std::size_t> chunks;
            for (int k = 0; k < 10; ++k)
                chunks.push_back(1 + next_rand() % 50);
            CHECK(frame(input, max_line, chunks) == want);
            CHECK(frame(input, max_line, {1 << 20}) == want);
            // feed_runs gives the same lines, whatever the chunking.
            CHECK(frame_runs(input, max_line, {1}) == want);
            CHECK(frame_runs(input, max_line, {3, 1, 7}) == want);
            CHECK(frame_runs(input, max_line, chunks) == want);
            CHECK(frame_runs(input, max_line, {1 << 20}) == want);
        }
    }

    TEST_CASE("framer views into the caller's chunk for whole lines (no copy)") {
        Framer f(100);
        const std::string chunk = "abc\ndef\n";
        std::vector<const char *> starts;
        f.feed(chunk, [&](std::string_view l, bool) { starts.push_back(l.data()); });
        REQUIRE(starts.size() == 2);
        CHECK(starts[0] == chunk.data());
        CHECK(starts[1] == chunk.data() + 4);
    }

    TEST_CASE("feed_runs gives a chunk of short whole lines as one run, without copying") {
        Framer f(100);
        const std::string chunk = "abc\n\ndef\ntail";
        std::vector<std::pair<std::string_view, std::size_t>> runs;
        std::vector<Piece> lines;
        auto sink = [&](std::string_view l, bool c) { lines.push_back({std::string(l), c}); };
        f.feed_runs(
            chunk, [&](std::string_view r, std::size_t n) { runs.emplace_back(r, n); }, sink);
        REQUIRE(runs.size() == 1);
        CHECK(runs[0].first.data() == chunk.data());
        CHECK(runs[0].first == "abc\n\ndef\n");
        CHECK(runs[0].second == 3);
        CHECK(lines.empty()); // "tail" waits for its newline
        CHECK(f.pending() == 4);
        // The straddling line goes to on_line; the whole lines after it form a run again.
        f.feed_runs(
            "end\nx\ny\n", [&](std::string_view r, std::size_t n) { runs.emplace_back(r, n); },
            sink);
        CHECK(lines == std::vector<Piece>{{"tailend", false}});
        REQUIRE(runs.size() == 2);
        CHECK(runs[1].first == "x\ny\n");
        CHECK(runs[1].second == 2);
    }

    TEST_CASE("feed_runs: an over-long line breaks the run; its last piece opens the next") {
        Framer f(4);
        std::vector<std::string> events;
        f.feed_runs(
            "ab\nabcdefg\nh\nabcd\n",
            [&](std::string_view r, std::size_t n) {
                events.push_back("run " + std::to_string(n) + " " + std::string(r));
            },
            [&](std::string_view l, bool c) {
                events.push_back(std::string(c ? "piece " : "line ") + std::string(l));
            });
        // "abcd" is exactly max_line: an ordinary line of the run.
        CHECK(events ==
              std::vector<std::string>{"run 1 ab\n", "piece abcd", "run 3 efg\nh\nabcd\n"});
    }

    TEST_CASE("for_each_line splits a run and ignores nothing but a missing final newline") {
        std::vector<std::string> got;
        vigil::log::for_each_line("a\n\nbc\n", [&](std::string_view l) { got.emplace_back(l); });
        CHECK(got == std::vector<std::string>{"a", "", "bc"});
        got.clear();
        vigil::log::for_each_line("", [&](std::string_view l) { got.emplace_back(l); });
        CHECK(got.empty());
    }

} // TEST_SUITE

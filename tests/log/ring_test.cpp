// Ring: byte bound, order, sequence numbers, "after S" queries for followers.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "vigil/log/ring.hpp"

using vigil::log::Ring;
using vigil::log::RingLine;
using vigil::log::Stream;

namespace {
std::vector<std::string> texts(const std::vector<RingLine> &v) {
    std::vector<std::string> out;
    for (const auto &l : v)
        out.emplace_back(l.text);
    return out;
}
} // namespace

TEST_SUITE("log") {

    TEST_CASE("ring keeps lines in order with their metadata") {
        Ring r(1024);
        r.push(1, 1000, Stream::Stdout, false, "one");
        r.push(2, 1001, Stream::Stderr, true, "two");
        r.push(5, 1002, Stream::Stdout, false, "");
        CHECK(r.size() == 3);
        CHECK(r.first_seq() == 1);
        CHECK(r.last_seq() == 5);
        const auto all = r.last(10);
        REQUIRE(all.size() == 3);
        CHECK(all[1].seq == 2);
        CHECK(all[1].wall == 1001);
        CHECK(all[1].stream == Stream::Stderr);
        CHECK(all[1].continued);
        CHECK(texts(all) == std::vector<std::string>{"one", "two", ""});
        CHECK(texts(r.last(2)) == std::vector<std::string>{"two", ""});
        CHECK(r.used() == 3 + 1 + 3 + 1 + 0 + 1);
    }

    TEST_CASE("ring overwrites the oldest lines and never exceeds its capacity") {
        const std::size_t cap = 100;
        Ring r(cap);
        std::uint64_t seq = 0;
        for (int i = 0; i < 1000; ++i) {
            const std::string t = "line-" + std::to_string(i) + std::string(i % 13, '.');
            r.push(++seq, 0, Stream::Stdout, false, t);
            CHECK(r.used() <= cap);
            // The newest line is always there, and the kept lines are consecutive.
            const auto all = r.last(SIZE_MAX);
            REQUIRE(!all.empty());
            CHECK(all.back().text == t);
            for (std::size_t k = 1; k < all.size(); ++k)
                CHECK(all[k].seq == all[k - 1].seq + 1);
            // Every kept line is intact.
            for (const auto &l : all) {
                const std::string want =
                    "line-" + std::to_string(l.seq - 1) + std::string((l.seq - 1) % 13, '.');
                CHECK(l.text == want);
            }
        }
        CHECK(r.size() > 3); // the ring is used, not just the last line
    }

    TEST_CASE("ring bounds the number of empty lines too") {
        Ring r(10);
        for (std::uint64_t s = 1; s <= 100; ++s)
            r.push(s, 0, Stream::Stdout, false, "");
        CHECK(r.size() == 10);
        CHECK(r.first_seq() == 91);
    }

    TEST_CASE("ring capacity is clamped to ring_limit") {
        Ring r(std::size_t{1} << 40); // `logs.ring "1TiB"`: allocated at the first line
        CHECK(r.capacity() == vigil::log::ring_limit);
        r.push(1, 0, Stream::Stdout, false, "first");
        CHECK(r.size() == 1);
    }

    TEST_CASE("ring truncates a line longer than its capacity") {
        Ring r(8);
        r.push(1, 0, Stream::Stdout, false, "0123456789");
        const auto all = r.last(5);
        REQUIRE(all.size() == 1);
        CHECK(all[0].text == "0123456");
        CHECK(all[0].truncated);
        Ring none(0);
        none.push(1, 0, Stream::Stdout, false, "x");
        CHECK(none.empty());
    }

    TEST_CASE("ring answers followers: lines after a sequence number") {
        Ring r(1000);
        for (std::uint64_t s = 10; s < 20; ++s)
            r.push(s * 2, 0, Stream::Stdout, false, "x");
        CHECK(r.after(0).size() == 10);
        CHECK(r.after(29).front().seq == 30);
        CHECK(r.after(30).front().seq == 32);
        CHECK(r.after(38).empty());
        CHECK(r.after(20, 3).size() == 3);
        // A follower that fell behind gets the oldest kept line and can see the gap.
        Ring small(20);
        for (std::uint64_t s = 1; s <= 50; ++s)
            small.push(s, 0, Stream::Stdout, false, "abc");
        const auto rest = small.after(3);
        REQUIRE(!rest.empty());
        CHECK(rest.front().seq > 4);
        CHECK(rest.back().seq == 50);
    }

    TEST_CASE("ring survives wrap-around with mixed sizes") {
        Ring r(64);
        std::uint64_t seq = 0;
        for (int i = 0; i < 5000; ++i) {
            const std::size_t len = static_cast<std::size_t>((i * 7919) % 70);
            r.push(++seq, i, Stream::Stdout, false,
                   std::string(len, static_cast<char>('a' + i % 26)));
            CHECK(r.used() <= 64);
            for (const auto &l : r.last(SIZE_MAX)) {
                const auto k = static_cast<int>(l.seq - 1);
                const std::size_t want =
                    std::min<std::size_t>(static_cast<std::size_t>((k * 7919) % 70), 63);
                CHECK(l.text.size() == want);
                CHECK(l.text == std::string(want, static_cast<char>('a' + k % 26)));
            }
        }
    }

    TEST_CASE("push_run numbers every line and keeps the newest that fit") {
        // Runs of random lines into rings of several sizes: the lines kept are consecutive, end
        // with the run's last line, carry their own text and sequence number, stay within the
        // capacity, and a run that fits whole is kept whole (unless wrapping around the end of
        // the storage overwrote its head, as it would pushing line by line).
        std::uint64_t state = 7;
        auto rnd = [&state] {
            return (state = state * 6364136223846793005ull + 1442695040888963407ull) >> 33;
        };
        for (const std::size_t cap : {2u, 8u, 64u, 1000u}) {
            Ring r(cap);
            std::uint64_t seq = 1;
            for (int round = 0; round < 300; ++round) {
                std::string run;
                std::vector<std::string> lines;
                const std::size_t count = 1 + rnd() % 12;
                for (std::size_t i = 0; i < count; ++i) {
                    lines.push_back(std::to_string(seq + i) + std::string(rnd() % 20, '.'));
                    run += lines.back() + "\n";
                }
                r.push_run(seq, 42, Stream::Stderr, run, count);
                seq += count;
                CHECK(r.used() <= cap);
                const auto all = r.last(SIZE_MAX);
                REQUIRE(!all.empty());
                CHECK(all.back().seq == seq - 1);
                for (std::size_t k = 0; k < all.size(); ++k) {
                    if (k > 0) CHECK(all[k].seq == all[k - 1].seq + 1);
                    CHECK(all[k].wall == 42);
                    CHECK(all[k].stream == Stream::Stderr);
                    CHECK(!all[k].continued);
                    // Each line's text starts with its own sequence number.
                    const std::string want = std::to_string(all[k].seq);
                    CHECK(all[k].text.substr(0, std::min(want.size(), all[k].text.size())) ==
                          std::string_view(want).substr(0, all[k].text.size()));
                }
                if (run.size() <= cap && r.size() >= count) CHECK(texts(r.last(count)) == lines);
            }
        }
    }

    TEST_CASE("push_run keeps the last line truncated when it alone exceeds the capacity") {
        Ring r(8);
        r.push_run(10, 0, Stream::Stdout, "ab\n0123456789\n", 2);
        const auto all = r.last(5);
        REQUIRE(all.size() == 1);
        CHECK(all[0].seq == 11);
        CHECK(all[0].text == "0123456");
        CHECK(all[0].truncated);
        r.push_run(12, 0, Stream::Stdout, "a\nb\nc\n", 3);
        CHECK(texts(r.last(5)) == std::vector<std::string>{"a", "b", "c"});
        CHECK(r.first_seq() == 12);
        CHECK(r.last_seq() == 14);
        r.push_run(15, 0, Stream::Stdout, "", 0); // nothing
        CHECK(r.last_seq() == 14);
    }

} // TEST_SUITE

// Ring::snapshot / Ring::restore and Framer::pending_bytes: a unit's recent lines and its partial
// line across an exec of vigild, none lost or given twice; bad bytes refused whole.
#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "vigil/log/framer.hpp"
#include "vigil/log/ring.hpp"

using vigil::log::Framer;
using vigil::log::Ring;
using vigil::log::RingLine;
using vigil::log::Stream;

namespace {

std::string dump(const std::vector<RingLine> &v) {
    std::string out;
    for (const auto &l : v)
        out += std::to_string(l.seq) + "/" + std::to_string(l.wall) + "/" +
               std::to_string(static_cast<int>(l.stream)) + "/" + std::to_string(l.continued) +
               std::to_string(l.truncated) + ":" + std::string(l.text) + "\n";
    return out;
}

// 40 lines through a 256-byte ring: it has wrapped, some lines are continued or truncated.
Ring busy_ring() {
    Ring r(256);
    for (std::uint64_t i = 1; i <= 40; ++i)
        r.push(i * 2, 1000 + static_cast<std::int64_t>(i), i % 3 ? Stream::Stdout : Stream::Stderr,
               i % 5 == 0, std::string(i % 7 * 3, static_cast<char>('a' + i % 26)));
    r.push(101, 2001, Stream::Stderr, false, "");
    return r;
}

std::string refused(std::string_view b, std::size_t capacity = 256) {
    auto res = Ring::restore(capacity, b);
    CHECK(!res.ring);
    CHECK(res.error.rfind("ring snapshot: ", 0) == 0);
    return res.error;
}

} // namespace

TEST_SUITE("log") {

    TEST_CASE("ring snapshot: restore gives back every line with its seq, time, stream, flags") {
        const Ring r = busy_ring();
        std::string b;
        r.snapshot(b);
        auto res = Ring::restore(256, b);
        REQUIRE_MESSAGE(res.ring, res.error);
        CHECK(dump(res.ring->last(1000)) == dump(r.last(1000)));
        CHECK(res.ring->used() == r.used());
        CHECK(res.ring->size() > 10);
        // A truncated line (always the newest: it fills its ring) stays truncated.
        Ring t(64);
        t.push(7, 0, Stream::Stdout, false, std::string(100, 't'));
        std::string tb;
        t.snapshot(tb);
        auto tr = Ring::restore(128, tb);
        REQUIRE(tr.ring);
        CHECK(tr.ring->last(1)[0].truncated);
        CHECK(tr.ring->last(1)[0].text.size() == 63);
        // And it goes on as the original: the same lines kept after more pushes.
        Ring a = r;
        for (std::uint64_t s = 200; s < 230; ++s) {
            a.push(s, 3000, Stream::Stdout, false, "more " + std::to_string(s));
            res.ring->push(s, 3000, Stream::Stdout, false, "more " + std::to_string(s));
        }
        CHECK(dump(res.ring->last(1000)) == dump(a.last(1000)));
        std::string again;
        res.ring->snapshot(again);
        std::string expect;
        a.snapshot(expect);
        CHECK(again == expect);
    }

    TEST_CASE("ring snapshot: a smaller ring keeps the newest lines that fit; empty rings too") {
        const Ring r = busy_ring();
        std::string b;
        r.snapshot(b);
        auto small = Ring::restore(64, b);
        REQUIRE(small.ring);
        CHECK(small.ring->used() <= 64);
        CHECK(small.ring->last_seq() == 101);
        CHECK(dump(small.ring->last(small.ring->size())) ==
              dump(r.last(r.size()))
                  .substr(dump(r.last(r.size())).size() -
                          dump(small.ring->last(small.ring->size())).size()));
        std::string e;
        Ring(128).snapshot(e);
        auto empty = Ring::restore(128, e);
        REQUIRE(empty.ring);
        CHECK(empty.ring->empty());
    }

    TEST_CASE("ring snapshot: refuses versions, truncations, impossible lines, trailing bytes") {
        const Ring r = busy_ring();
        std::string b;
        r.snapshot(b);
        std::string v = b;
        v[8] = 9;
        CHECK(refused(v).find("format version 9 is not known") != std::string::npos);
        v = b;
        v[0] = 'x';
        CHECK(refused(v).find("bad magic") != std::string::npos);
        for (std::size_t n = 0; n < b.size(); ++n) {
            CAPTURE(n);
            CHECK(!refused(b.substr(0, n)).empty());
        }
        CHECK(refused(b + "x").find("the last line is followed by 1 more bytes") !=
              std::string::npos);
        v = b;
        v[16 + 16] = 7; // the first line's stream
        CHECK(refused(v).find("a stream or flags that cannot be") != std::string::npos);
        v = b;
        const std::uint64_t seq = 1u << 30;
        std::memcpy(v.data() + 16, &seq, 8); // the first line's seq, past the second's
        CHECK(refused(v).find("line 1: sequence numbers do not increase") != std::string::npos);
        v = b;
        const std::uint32_t count = 1u << 31;
        std::memcpy(v.data() + 12, &count, 4);
        CHECK(refused(v).find("more than the bytes hold") != std::string::npos);
    }

    TEST_CASE("ring snapshot: any flipped byte is refused or read into a ring within its bounds") {
        const Ring r = busy_ring();
        std::string b;
        r.snapshot(b);
        for (std::size_t i = 0; i < b.size(); ++i) {
            for (unsigned char mask : {0x01, 0x80, 0xff}) {
                std::string f = b;
                f[i] = static_cast<char>(static_cast<unsigned char>(f[i]) ^ mask);
                auto res = Ring::restore(256, f);
                CHECK((res.ring.has_value() != !res.error.empty()));
                if (res.ring) CHECK(res.ring->used() <= 256);
            }
        }
    }

    TEST_CASE("framer: the partial line, carried to a new framer, is neither lost nor doubled") {
        const std::string stream = "one\ntwo, a partial li" + std::string("ne\nthree\n");
        for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
            CAPTURE(cut);
            std::vector<std::string> got;
            auto on_line = [&](std::string_view l, bool c) {
                got.push_back(std::string(l) + (c ? "\\" : ""));
            };
            Framer before(64);
            before.feed(std::string_view(stream).substr(0, cut), on_line);
            const std::string carried(before.pending_bytes()); // across the exec
            Framer after(64);
            after.feed(carried, on_line);
            after.feed(std::string_view(stream).substr(cut), on_line);
            CHECK(got == std::vector<std::string>{"one", "two, a partial line", "three"});
        }
        // A shorter max_line in the new binary: the partial line comes out in its pieces.
        Framer before(64);
        before.feed("0123456789", [](std::string_view, bool) {});
        std::vector<std::string> got;
        Framer after(4);
        after.feed(before.pending_bytes(), [&](std::string_view l, bool c) {
            got.push_back(std::string(l) + (c ? "\\" : ""));
        });
        after.feed("ab\n", [&](std::string_view l, bool c) {
            got.push_back(std::string(l) + (c ? "\\" : ""));
        });
        CHECK(got == std::vector<std::string>{"0123\\", "4567\\", "89ab"});
    }
}

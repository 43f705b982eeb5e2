// HeapTrim's policy (heap_trim.hpp): when freed heap is worth giving back.
#include <doctest/doctest.h>

#include "heap_trim.hpp"

using vigil::daemon::HeapTrim;

namespace {
constexpr std::size_t MiB = std::size_t{1} << 20;
}

TEST_SUITE("heap trim") {
    TEST_CASE("a check is armed only with enough free heap, asked at most every 250 ms") {
        HeapTrim t;
        CHECK_FALSE(HeapTrim::worth_arming(HeapTrim::slack - 1));
        CHECK(HeapTrim::worth_arming(HeapTrim::slack));
        const std::uint64_t every = HeapTrim::probe_every_ms;
        CHECK(t.probe_wait(0) == 0);
        CHECK(t.probe_wait(0) == every); // a turn too soon learns when to probe
        CHECK(t.probe_wait(every - 1) == 1);
        CHECK(t.probe_wait(every) == 0);
        CHECK(t.probe_wait(every + 1) == every - 1);
        CHECK(t.probe_wait(10'000) == 0);
    }

    TEST_CASE("little free heap is kept; enough free heap is trimmed once") {
        HeapTrim t;
        CHECK_FALSE(t.due(HeapTrim::slack - 1, 100 * MiB));
        CHECK(t.due(HeapTrim::slack, 20 * MiB));
        t.trimmed(8 * MiB, 16 * MiB);
        // The free bytes stay counted after a trim (the pages are only given back): no second
        // trim until vigild has grown again by the slack.
        CHECK_FALSE(t.due(16 * MiB, 8 * MiB));
        CHECK_FALSE(t.due(16 * MiB, 8 * MiB + HeapTrim::slack - 1));
        CHECK(t.due(16 * MiB, 8 * MiB + HeapTrim::slack));
    }

    TEST_CASE("growth is measured from the lowest resident size seen since the trim") {
        HeapTrim t;
        t.trimmed(30 * MiB, 8 * MiB);
        t.observed(10 * MiB, 8 * MiB); // memory went back by another way (top of the heap, munmap)
        CHECK(t.due(8 * MiB, 10 * MiB + HeapTrim::slack));
        t.observed(40 * MiB, 8 * MiB); // a higher figure does not move the mark
        CHECK(t.due(8 * MiB, 14 * MiB));
    }

    TEST_CASE("memory freed after a trim at the high-water mark is trimmed too") {
        // The trim came while a full queue still held its memory: little was free, much was
        // resident. The queue then drains: its memory is free and resident, and the resident
        // size does not grow. Freed bytes alone call for the next trim.
        HeapTrim t;
        t.trimmed(16 * MiB, 1 * MiB);
        CHECK_FALSE(t.due(1 * MiB + HeapTrim::slack - 1, 16 * MiB));
        CHECK(t.due(1 * MiB + HeapTrim::slack, 16 * MiB));
        // Measured from the lowest free figure seen since.
        t.trimmed(6 * MiB, 12 * MiB);
        t.observed(6 * MiB, 2 * MiB); // allocated again
        CHECK(t.due(2 * MiB + HeapTrim::slack, 6 * MiB));
    }

    TEST_CASE("before the first trim, free heap alone decides") {
        HeapTrim t;
        t.observed(1 * MiB, 0);
        CHECK(t.due(HeapTrim::slack, 1 * MiB));
        CHECK_FALSE(t.due(0, 1000 * MiB));
    }
}

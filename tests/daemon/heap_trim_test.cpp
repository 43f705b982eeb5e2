// HeapTrim's policy (heap_trim.hpp): when freed heap is worth giving back.
#include <doctest/doctest.h>

#include "heap_trim.hpp"

using vigil::daemon::HeapTrim;

namespace {
constexpr std::size_t MiB = std::size_t{1} << 20;
constexpr std::size_t slack = HeapTrim::slack;
} // namespace

TEST_SUITE("heap trim") {
    TEST_CASE("a check is armed only with enough free heap, asked at most every 250 ms") {
        HeapTrim t;
        CHECK_FALSE(HeapTrim::worth_arming(slack - 1));
        CHECK(HeapTrim::worth_arming(slack));
        const std::uint64_t every = HeapTrim::probe_every_ms;
        CHECK(t.probe_wait(0) == 0);
        CHECK(t.probe_wait(0) == every); // a turn too soon learns when to probe
        CHECK(t.probe_wait(every - 1) == 1);
        CHECK(t.probe_wait(every) == 0);
        CHECK(t.probe_wait(every + 1) == every - 1);
        CHECK(t.probe_wait(10'000) == 0);
    }

    TEST_CASE("before the first trim, free heap alone decides") {
        HeapTrim t;
        t.observed(1 * MiB, 0);
        CHECK_FALSE(t.due(slack - 1, 2 * MiB, 100 * MiB));
        CHECK(t.due(slack, 2 * MiB, 1 * MiB));
        CHECK_FALSE(t.due(0, 0, 1000 * MiB));
    }

    TEST_CASE("free pages given back stay counted as free: no second trim for them") {
        HeapTrim t;
        t.trimmed(8 * MiB, 4 * MiB); // 4 MiB resident that is not heap in use
        CHECK_FALSE(t.due(16 * MiB, 4 * MiB, 8 * MiB));
        // Resident growth with the heap in use unchanged: heap used and freed again.
        CHECK_FALSE(t.due(16 * MiB, 4 * MiB, 8 * MiB + slack - 1));
        CHECK(t.due(16 * MiB, 4 * MiB, 8 * MiB + slack));
        // Growth of the heap in use is not free memory.
        CHECK_FALSE(t.due(16 * MiB, 4 * MiB + slack, 8 * MiB + slack));
    }

    TEST_CASE("memory freed after a trim at the high-water mark is trimmed too") {
        // The trim came while a full queue still held its memory: much in use and resident.
        // The queue then drains: its memory is free and resident, the resident size does not
        // grow, the heap in use shrinks.
        HeapTrim t;
        t.trimmed(16 * MiB, 14 * MiB);
        CHECK_FALSE(t.due(1 * MiB + slack, 14 * MiB - slack + 1, 16 * MiB));
        CHECK(t.due(1 * MiB + slack, 14 * MiB - slack, 16 * MiB));
    }

    TEST_CASE("a queue that fills and drains between two checks is trimmed") {
        // After a trim, 8 MiB of the heap are free and given back. A queue takes 6 MiB of
        // them and gives them back before the next check: the free figure is where it was,
        // but the 6 MiB are resident now.
        HeapTrim t;
        t.trimmed(10 * MiB, 6 * MiB);
        CHECK(t.due(8 * MiB, 6 * MiB, 16 * MiB));
        // What the trim gives back is measured from then on.
        t.trimmed(10 * MiB, 6 * MiB);
        CHECK_FALSE(t.due(8 * MiB, 6 * MiB, 10 * MiB));
    }

    TEST_CASE("measured from the lowest resident-less-heap figure seen since the trim") {
        HeapTrim t;
        t.trimmed(30 * MiB, 20 * MiB);
        // Memory went back another way (say, pages of the program dropped): 2 MiB not heap.
        t.observed(22 * MiB, 20 * MiB);
        CHECK(t.due(8 * MiB, 20 * MiB, 22 * MiB + slack));
        t.observed(50 * MiB, 20 * MiB); // a higher figure does not move the mark
        CHECK(t.due(8 * MiB, 20 * MiB, 26 * MiB));
    }
}

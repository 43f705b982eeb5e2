// HeapTrim's policy (heap_trim.hpp): when freed heap is worth giving back.
#include <doctest/doctest.h>

#include "heap_trim.hpp"

using vigil::daemon::HeapTrim;

namespace {
constexpr std::size_t MiB = std::size_t{1} << 20;
}

TEST_SUITE("heap trim") {
    TEST_CASE("little free heap is kept; enough free heap is trimmed once") {
        HeapTrim t;
        CHECK_FALSE(t.due(HeapTrim::slack - 1, 100 * MiB));
        CHECK(t.due(HeapTrim::slack, 20 * MiB));
        t.trimmed(8 * MiB);
        // The free bytes stay counted after a trim (the pages are only given back): no second
        // trim until vigild has grown again by the slack.
        CHECK_FALSE(t.due(16 * MiB, 8 * MiB));
        CHECK_FALSE(t.due(16 * MiB, 8 * MiB + HeapTrim::slack - 1));
        CHECK(t.due(16 * MiB, 8 * MiB + HeapTrim::slack));
    }

    TEST_CASE("growth is measured from the lowest resident size seen since the trim") {
        HeapTrim t;
        t.trimmed(30 * MiB);
        t.observed(10 * MiB); // memory went back by another way (top of the heap, munmap)
        CHECK(t.due(8 * MiB, 10 * MiB + HeapTrim::slack));
        t.observed(40 * MiB); // a higher figure does not move the mark
        CHECK(t.due(8 * MiB, 14 * MiB));
    }

    TEST_CASE("before the first trim, free heap alone decides") {
        HeapTrim t;
        t.observed(1 * MiB);
        CHECK(t.due(HeapTrim::slack, 1 * MiB));
        CHECK_FALSE(t.due(0, 1000 * MiB));
    }
}

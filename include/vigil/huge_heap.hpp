// vigil/huge_heap.hpp: a heap that grows ahead, in transparent huge pages, while a program
// builds a large structure in fresh memory.
//
// Why: the first touch of each 4 KiB page is a page fault, and on a virtual machine a fault
// costs many times what it does on bare metal (bench/README.md, "Page faults: the state in one
// buffer, one core, a heap in huge pages", and "Status of all: page faults, and huge pages"):
// building megabytes in a new heap then costs more in faults than in work. Marked
// MADV_HUGEPAGE (the kernel's default THP mode is "madvise"), the region faults in once per
// 2 MiB.
//
// Who: vigilctl while it parses the answer to a status of every unit (its whole life), and
// the new image of a re-exec while it reads and adopts the old one's state (then back to
// small pages: vigild runs on for months, and its heap should not stay in huge pages).
//
// Best effort: without THP, or under a sanitizer's allocator (which does not use the program
// break), nothing changes. The heap grows by `ahead` bytes of address space, not of memory:
// only the pages touched become resident.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

namespace vigil {

struct HugeHeap {
    char *from = nullptr; // the region marked, 2 MiB aligned; nullptr when none was
    std::size_t size = 0;
};

// Grows the heap `ahead` bytes past its top, untouched, and marks what it grew (from the first
// 2 MiB boundary) for huge pages; malloc keeps that much ahead (M_TOP_PAD) until
// heap_back_to_small_pages().
inline HugeHeap heap_ahead_in_huge_pages(std::size_t ahead) {
    constexpr std::size_t huge = std::size_t{2} << 20, block = std::size_t{64} << 10;
    constexpr std::size_t max_blocks = 256;
    mallopt(M_TOP_PAD, static_cast<int>(ahead));
    auto *before = static_cast<char *>(sbrk(0));
    // Blocks below malloc's mmap threshold, taken until the heap itself grows (by the pad): the
    // first ones may come from free memory the heap has already. Not written to (a page touched
    // would keep its 2 MiB from being a huge page): the empty asm keeps the compiler from
    // dropping the calls.
    void *taken[max_blocks];
    std::size_t n = 0;
    while (n < max_blocks && static_cast<char *>(sbrk(0)) == before) {
        void *p = std::malloc(block);
        if (!p) break;
        asm volatile("" : : "r"(p) : "memory");
        taken[n++] = p;
    }
    for (std::size_t i = 0; i < n; ++i)
        std::free(taken[i]);
    auto *after = static_cast<char *>(sbrk(0)); // free() may have trimmed the top to the pad
    if (before == reinterpret_cast<char *>(-1) || after <= before) return {};
    auto *from = reinterpret_cast<char *>((reinterpret_cast<std::uintptr_t>(before) + huge - 1) &
                                          ~(std::uintptr_t{huge} - 1));
    if (after <= from) return {};
    const auto size = static_cast<std::size_t>(after - from);
    if (madvise(from, size, MADV_HUGEPAGE) != 0) return {};
    return HugeHeap{from, size};
}

// The heap as before: malloc's pad back to glibc's default (128 KiB), the region no longer
// for huge pages (khugepaged leaves it alone; the huge pages made stay until their memory is
// freed and trimmed). One thing cannot be put back: once mallopt() set the pad, glibc no
// longer raises its mmap threshold by itself (from 128 KiB, up to 32 MiB, to the size of
// each large block freed; the trim threshold to twice that). The two are left where that
// adjustment ends, so that a large block that comes again (a status of every unit, a stuck
// output's queue) is taken from the heap, not mapped and faulted in anew each time; the heap's
// free pages go back to the kernel by malloc_trim() (vigild's heap trim).
inline void heap_back_to_small_pages(const HugeHeap &h) {
    mallopt(M_TOP_PAD, 128 << 10);
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    if (h.from) (void)madvise(h.from, h.size, MADV_NOHUGEPAGE);
}

} // namespace vigil

// Giving freed heap back to the kernel.
//
// glibc's free() returns memory to the kernel only from the top of the heap (and for chunks it
// mmap'ed). Memory freed in the middle of the heap stays resident: after 100 log followers that
// never read are dropped, or a 1 MiB request has been parsed, vigild would keep tens of MiB for
// good. malloc_trim(0) gives back every free page of every arena (madvise), but it walks the
// heap, so it must not run on every free.
//
// The policy (HeapTrim, pure, tested in tests/daemon): at most one check every `period`, and
// only while the loop is doing something, so an idle vigild never wakes up for it. A check
// trims when at least `slack` bytes of the heap are free and, since the last trim (or
// start-up), at least `slack` of them have become resident: vigild's resident size less the
// heap in use (mallinfo2's arenas and mmapped blocks) is `slack` over what it was right after
// the trim (what is resident and not heap in use: the program, the stacks, free pages a trim
// cannot give back). Free bytes alone cannot say it: free pages that were given back stay
// counted as free, and freed heap that is allocated and freed again between two checks (a
// queue that fills and drains) leaves the free figure where it was while its pages are
// resident again. Memory freed while resident raises the figure whether it grew first (a
// burst) or was in use at the last trim (a trim at the high-water mark of a full queue);
// memory given back another way (the top of the heap, munmap) lowers the resident size and
// the heap in use alike and leaves it as it was. UvOs carries it out: a one-shot timer armed by
// a loop turn that did work, mallinfo2() for the free bytes and the heap in use, and
// /proc/self/statm for the resident size (a read of vigild's own proc file, which does not
// block).
// A turn arms the check only when `slack` bytes are free already (worth_arming: due() needs
// them), asking mallinfo2() at most every `probe_every_ms`: the timer fires after the loop's
// last busy turn, so without this every burst of work (a start-up, a reload) cost an idle
// vigild one wake-up 5 s later for a check with nothing to trim. A busy turn that comes before
// the next probe is due arms a probe for when it is (probe_wait): memory freed in the last
// turns of a burst (a dropped client's queue) is still found, at the cost of at most one
// wake-up, within probe_every_ms of the burst's end.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vigil::daemon {

class HeapTrim {
public:
    static constexpr std::size_t slack = std::size_t{4} << 20;
    static constexpr std::uint64_t probe_every_ms = 250;

    // A busy turn at `now_ms` (the loop's clock): 0 when the free bytes are to be asked for
    // now (the probe is then counted as done), else the milliseconds until they may be. At
    // most one probe every probe_every_ms.
    std::uint64_t probe_wait(std::uint64_t now_ms) noexcept {
        if (probed_ && now_ms < last_probe_ms_ + probe_every_ms)
            return last_probe_ms_ + probe_every_ms - now_ms;
        probed_ = true;
        last_probe_ms_ = now_ms;
        return 0;
    }
    // With `free_bytes` free, is a check worth its timer?
    static bool worth_arming(std::size_t free_bytes) noexcept { return free_bytes >= slack; }

    // A check found `free_bytes` free in the heap, `in_use` bytes of heap in use and
    // `resident` bytes resident: trim now?
    bool due(std::size_t free_bytes, std::uint64_t in_use, std::uint64_t resident) const noexcept {
        if (free_bytes < slack) return false;
        return !trimmed_ || resident >= in_use + not_heap_after_ + slack;
    }
    // A trim left `resident` bytes resident and `in_use` bytes of heap in use.
    void trimmed(std::uint64_t resident, std::uint64_t in_use) noexcept {
        trimmed_ = true;
        not_heap_after_ = resident > in_use ? resident - in_use : 0;
    }
    // A check's figures that did not lead to a trim: when the resident size less the heap in
    // use is below what the last trim left (pages given back some other way, a trim's
    // figure taken while memory was being freed), the next trim is measured from the lowest.
    void observed(std::uint64_t resident, std::uint64_t in_use) noexcept {
        const std::uint64_t not_heap = resident > in_use ? resident - in_use : 0;
        if (trimmed_ && not_heap < not_heap_after_) not_heap_after_ = not_heap;
    }

private:
    bool probed_ = false;
    std::uint64_t last_probe_ms_ = 0;
    bool trimmed_ = false;
    std::uint64_t not_heap_after_ = 0; // resident less heap in use, after the last trim
};

} // namespace vigil::daemon

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
// start-up), vigild's resident size has grown by at least `slack` or `slack` more bytes have
// been freed: memory that is free but not resident, or that was given back already, costs
// nothing to keep. The second rule is for a trim that came at the high-water mark, while the
// memory was still in use (a full forwarder queue): what is freed after it is resident, yet the
// resident size does not grow. UvOs carries it out: a one-shot timer
// armed by a loop turn that did work, mallinfo2() for the free bytes and /proc/self/statm for
// the resident size (a read of vigild's own proc file, which does not block).
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

    // A check found `free_bytes` free in the heap and `resident` bytes resident: trim now?
    bool due(std::size_t free_bytes, std::uint64_t resident) const noexcept {
        return free_bytes >= slack && (!trimmed_ || resident >= resident_after_ + slack ||
                                       free_bytes >= free_after_ + slack);
    }
    // A trim left `resident` bytes resident and `free_bytes` free.
    void trimmed(std::uint64_t resident, std::size_t free_bytes) noexcept {
        trimmed_ = true;
        resident_after_ = resident;
        free_after_ = free_bytes;
    }
    // Resident size no longer includes memory that was given back some other way (top of the
    // heap, munmap), and free heap that was allocated again is no longer free: the next trim is
    // measured from the lowest figures seen.
    void observed(std::uint64_t resident, std::size_t free_bytes) noexcept {
        if (trimmed_ && resident < resident_after_) resident_after_ = resident;
        if (trimmed_ && free_bytes < free_after_) free_after_ = free_bytes;
    }

private:
    bool probed_ = false;
    std::uint64_t last_probe_ms_ = 0;
    bool trimmed_ = false;
    std::uint64_t resident_after_ = 0;
    std::size_t free_after_ = 0;
};

} // namespace vigil::daemon

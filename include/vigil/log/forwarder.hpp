// vigil/log/forwarder.hpp: every unit's output, and vigild's own lines, on vigild's standard
// streams, without ever stalling supervision.
//
// Format, one record per line (vigil/log/line.hpp's RecordWriter, with a prefix):
//     name | text        a stdout line
//     name ! text        a stderr line
//     name | text\       a piece of an over-long line; the next record continues it
// With timestamps: "name | 2026-11-26T09:38:09.123Z text". On a TTY with NO_COLOR unset, the
// "name |" part is coloured with one of six colours chosen by a stable hash of the name
// (FNV-1a), so a service keeps its colour across restarts and runs. vigild's own lines (raw())
// are written as given.
//
// Never blocks the loop, never stalls supervision:
//  - Records go into a bounded in-memory queue; a thread of the Forwarder's own writes it to the
//    fd with ordinary blocking write(2). The fd's flags are never touched: it is often a file
//    description shared with others (vigild's stderr under `2>&1`, `docker run -t`, systemd),
//    and making it O_NONBLOCK made their writes, vigild's own lines among them, fail with EAGAIN.
//  - The loop wakes the thread once per loop iteration (a uv_idle handle, which also keeps the
//    iteration's poll from waiting: a line given from a timer goes out at once), so everything the
//    iteration produced goes out in one write.
//  - When forwarded records would take the queue past `max_queue` (4 MiB: nobody reads vigild's
//    stdout, or too slowly), they are dropped and counted (dropped_lines(); line() returns
//    false, so each UnitLog counts its own). Dropping goes on until the queue has drained below
//    `resume_below`; then one marker record says how many were dropped, e.g.
//        vigil | 1234 lines dropped: standard output was blocked
//    and forwarding resumes after it. Services are never paused for it: their lines still reach
//    the ring, the log file and the patterns; only this copy is lost, and counted.
//  - vigild's own lines (raw()) have a larger bound, `max_own_queue` (8 MiB), so they are never
//    dropped before forwarded ones; those dropped beyond it are counted (dropped_own_lines())
//    and included in the marker.
//  - flush_blocking(timeout) waits until the thread wrote everything: for vigild's shutdown.
// A write error other than EINTR (EPIPE: nobody reads our stdout) loses the records being
// written; they are counted in lines_failed() and the thread goes on with the next ones.
//
// Lifetime: close() closes the loop handle (call it before the loop ends); lines may still be
// given afterwards (vigild's last words), they wake the thread directly. The destructor stops the
// thread; a thread stuck in a write that never returns (a reader that never reads) is left
// behind rather than waited for, with what it still holds counted in lines_failed().
//
// open_standard_streams() builds the Forwarders of vigild's stdout and stderr. If fd 1 and fd 2
// are the same file (same st_dev and st_ino: `2>&1`, a tty, a journal stream), one Forwarder
// serves both, so vigild's lines and the forwarded ones come out in the order they were given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "vigil/log/line.hpp"
#include "vigil/time.hpp"

struct uv_loop_s;

namespace vigil::log {

struct ForwarderOptions {
    int fd = 1;
    // nullopt: colour when fd is a TTY and NO_COLOR is unset or empty.
    std::optional<bool> colour;
    std::size_t max_queue = 4u << 20;     // forwarded records beyond this are dropped
    std::size_t max_own_queue = 8u << 20; // vigild's own lines beyond this are dropped
    std::size_t resume_below = 1u << 20;  // after drops, forwarding resumes below this
    // For the marker: "... lines dropped: <stream_name> was blocked".
    std::string stream_name = "standard output";
};

class Forwarder {
public:
    // The record prefixes of one unit, built once (UnitLog keeps them).
    struct Prefix {
        std::string out; // "name | " (with colour codes)
        std::string err; // "name ! "
    };

    // The thread starts here. If it cannot (no memory, no threads), every line counts as
    // failed and last_error() says why.
    Forwarder(uv_loop_s *loop, ForwarderOptions opts);
    ~Forwarder();
    Forwarder(const Forwarder &) = delete;
    Forwarder &operator=(const Forwarder &) = delete;

    Prefix prefix(std::string_view name) const;
    // Queues one record of a unit. False if it was dropped (see above).
    bool line(const Prefix &prefix, Stream stream, std::string_view text, bool continued,
              std::optional<WallMs> timestamp = std::nullopt);
    // Queues one of vigild's own lines, as given plus '\n'. False if it was dropped.
    bool raw(std::string_view line);

    // Waits until everything queued was written, at most `timeout`. True if all was.
    bool flush_blocking(Duration timeout);
    // Closes the loop handle; cb (may be empty) runs once libuv released it. See above.
    void close(std::function<void()> cb);

    int fd() const { return fd_; }
    bool colour() const { return colour_; }
    // Bytes queued and not yet written.
    std::size_t queued() const;
    std::uint64_t lines() const;             // records accepted, forwarded and own
    std::uint64_t bytes_written() const;     // by the thread
    std::uint64_t dropped_lines() const;     // forwarded records dropped
    std::uint64_t dropped_own_lines() const; // vigild's own lines dropped
    std::uint64_t lines_failed() const;      // records lost to write errors
    int last_error() const;                  // errno of the last write error, 0 if none

    struct Shared;  // the queue and the thread's state, in forwarder.cpp
    struct Handles; // the loop handle, in forwarder.cpp

private:
    void wake_later();

    int fd_;
    bool colour_ = false;
    std::shared_ptr<Shared> shared_;
    Handles *h_ = nullptr;
    RecordWriter records_;
};

struct StandardStreamsOptions {
    int out_fd = 1;
    int err_fd = 2;
    std::optional<bool> colour; // for forwarded output (see ForwarderOptions::colour)
};

// vigild's standard streams. `out` takes the forwarded output of services, `err` vigild's own
// lines (Forwarder::raw); they are the same Forwarder when fd 1 and fd 2 are the same file.
struct StandardStreams {
    std::unique_ptr<Forwarder> out_owner;
    std::unique_ptr<Forwarder> err_owner; // null when shared
    Forwarder *out = nullptr;
    Forwarder *err = nullptr;
    bool shared() const { return out == err; }
};

StandardStreams open_standard_streams(uv_loop_s *loop, StandardStreamsOptions opts = {});

} // namespace vigil::log

// vigil/log/forwarder.hpp: every unit's output on vigild's own stdout (issue 6 §2, §4).
//
// Format, one record per line:
//     name | text        a stdout line
//     name ! text        a stderr line
//     name | text\       a piece of an over-long line; the next record continues it
// With timestamps: "name | 2026-11-26T09:38:09.123Z text". On a TTY with NO_COLOR unset, the
// "name |" part is coloured with one of six colours chosen by a stable hash of the name
// (FNV-1a), so a service keeps its colour across restarts and runs.
//
// Never blocks the loop, never drops:
//  - Records are appended to an in-memory queue and written when the fd is writable: an idle
//    handle writes what the current loop iteration produced in one go; if the fd would block,
//    a uv_poll waits for it to become writable. The fd is made non-blocking (its flags are
//    restored by close()).
//  - When the queue grows past `high_water` bytes, on_pressure(true) runs: the daemon pauses
//    every Capture (the children then block on their full pipes). When it drains below
//    `low_water`, on_pressure(false) runs and the daemon resumes them. Producers that still
//    deliver (a read in progress) are queued anyway: the queue is bounded by high_water plus
//    one read per capture.
//  - A regular file (stdout redirected to a file) cannot be polled; it is written directly
//    (such writes do not block for long).
//  - flush_blocking(timeout) writes everything, waiting with poll(2): for vigild's shutdown.
// A write error other than EAGAIN/EINTR (EPIPE: nobody reads our stdout) drops the queue and is
// counted in lines_failed(): there is nowhere left to write it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
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
    std::size_t high_water = 1u << 20;
    std::size_t low_water = 256u << 10;
};

class Forwarder {
public:
    // The record prefixes of one unit, built once (UnitLog keeps them).
    struct Prefix {
        std::string out; // "name | " (with colour codes)
        std::string err; // "name ! "
    };

    Forwarder(uv_loop_s *loop, ForwarderOptions opts);
    ~Forwarder(); // requires close() to have completed, or the loop never to run again
    Forwarder(const Forwarder &) = delete;
    Forwarder &operator=(const Forwarder &) = delete;

    Prefix prefix(std::string_view name) const;
    void line(const Prefix &prefix, Stream stream, std::string_view text, bool continued,
              std::optional<WallMs> timestamp = std::nullopt);

    // Called with true when the queue passes high_water, false when it drains below low_water.
    void on_pressure(std::function<void(bool congested)> cb) { on_pressure_ = std::move(cb); }
    bool congested() const { return congested_; }
    std::size_t queued() const { return buf_.size() - head_; }

    // Writes everything queued, blocking at most `timeout`. Returns true if all was written.
    bool flush_blocking(Duration timeout);
    // Stops the handles (without flushing: call flush_blocking first), restores the fd's flags;
    // cb (may be empty) runs once libuv released the handles.
    void close(std::function<void()> cb);

    bool colour() const { return colour_; }
    std::uint64_t lines() const { return lines_; }
    std::uint64_t bytes_written() const { return written_; }
    std::uint64_t lines_failed() const { return lines_failed_; }
    int last_error() const { return last_error_; }

    struct Handles; // libuv handles, in forwarder.cpp

private:
    friend struct ForwarderAccess;
    // Writes as much as possible without blocking. Returns false on EAGAIN.
    bool write_some();
    void after_write();
    void schedule();

    ForwarderOptions opts_;
    bool colour_ = false;
    bool pollable_ = false;
    int saved_flags_ = -1;
    Handles *h_ = nullptr;
    std::string buf_;
    std::size_t head_ = 0;
    bool congested_ = false;
    bool waiting_ = false; // poll for writable is armed
    bool scheduled_ = false;
    bool closing_ = false;
    std::function<void(bool)> on_pressure_;
    TimestampFormatter ts_;
    std::uint64_t lines_ = 0, written_ = 0, lines_failed_ = 0;
    int last_error_ = 0;
};

} // namespace vigil::log

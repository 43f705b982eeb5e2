// vigil/log/capture.hpp: reads one child incarnation's stdout and stderr pipes in vigild's
// libuv loop and frames them into lines.
//
// Contract with the daemon:
//  - The read ends come from the process spawner, already non-blocking and CLOEXEC. Capture
//    takes ownership: they are closed by close() (or the destructor). Either may be -1 (not
//    captured); it then counts as already at EOF.
//  - Every line (or piece of an over-long line) is handed to on_line in order, per stream; the
//    two streams are independent (their relative order is whatever the loop sees).
//  - If on_lines is set, runs of ordinary lines (Framer::feed_runs: many complete lines of one
//    read, each ending with its '\n', as one view into the read buffer) go to it instead, and
//    on_line gets only the rest (lines that straddle two reads, pieces of over-long lines); the
//    order across both callbacks is the stream's. Without on_lines every line goes to on_line.
//  - on_batch runs after the lines of each read were delivered: the moment to flush sinks and
//    collect pattern hits (UnitLog::flush). Optional.
//  - on_eof runs once, when both streams reached EOF and every byte was delivered (the final
//    line without '\n' included). Report the child's exit to the core only after it: lines
//    written just before a SIGKILL are then never lost. If both fds are -1, start() calls it.
//  - pause()/resume() stop and restart reading both pipes (uv_read_stop/uv_read_start) for
//    back-pressure: the child blocks on a full pipe instead of vigild dropping anything. A read
//    already in progress is delivered in full. EOF is seen only while reading.
//  - Lifetime: libuv closes handles asynchronously. The handles and buffers live in a heap block
//    that frees itself after the last close callback, so the Capture object may be destroyed at
//    any time (destruction closes without calling back). close(cb) calls cb once the handles are
//    closed; no other callback runs after close() was called.
//  - A pipe whose read comes back with at least 32 KiB (half the default pipe size: the writer
//    is fast enough to fill it) is grown once to grow_pipe bytes (F_SETPIPE_SZ), so that a fast
//    writer and vigild take turns less often. Quiet services keep the default pipe (big pipes
//    count against the user's pipe-user-pages limits).
// Reads use one buffer (read_buffer bytes) shared by every Capture of the thread (capture.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>

#include "vigil/log/framer.hpp" // for_each_line, to walk the runs given to on_lines
#include "vigil/log/line.hpp"

struct uv_loop_s;

namespace vigil::log {

struct CaptureOptions {
    std::size_t max_line = 16u << 10;    // clamped to max_line_limit (by the Framer)
    std::size_t read_buffer = 64u << 10; // clamped to read_buffer_limit
    // If non-zero, try to grow both pipes to this many bytes (F_SETPIPE_SZ) so a fast writer
    // blocks less often. Failures (limits, EPERM) are ignored.
    std::size_t pipe_size = 0;
    // If non-zero, grow a pipe to this many bytes once a read shows its writer filled it (see
    // above). Failures are ignored: the pipe keeps its size, only speed is lost.
    std::size_t grow_pipe = 0;
};

// The capture settings for a unit's `logs`: its max_line (clamped to max_line_limit) and, when
// its output is not forwarded, 1 MiB reads and pipes grown to 1 MiB for fast writers (a writer
// and vigild then hand over 1 MiB at a time, not 64 KiB: 16 times fewer wake-ups). Forwarded
// output keeps 64 KiB reads and default pipes: one read's records stay small next to the
// forwarder's 4 MiB queue (a 1 MiB read of short lines is several MiB of prefixed records), so
// one busy service does not fill it alone.
CaptureOptions capture_options(const unit::LogSpec &spec);

class Capture {
public:
    struct Callbacks {
        std::function<void(Stream, std::string_view line, bool continued)> on_line;
        std::function<void()> on_batch; // may be empty
        std::function<void()> on_eof;
        // May be empty: then each line of a run goes to on_line.
        std::function<void(Stream, std::string_view run, std::size_t count)> on_lines;
    };

    Capture(uv_loop_s *loop, int stdout_fd, int stderr_fd, CaptureOptions opts, Callbacks cbs);
    ~Capture();
    Capture(const Capture &) = delete;
    Capture &operator=(const Capture &) = delete;

    // Starts reading. Returns 0 or a libuv error code (then nothing is read and on_eof never
    // runs; call close()).
    int start();
    void pause();
    void resume();
    bool paused() const;
    // Both streams reached EOF (on_eof ran or is running).
    bool eof() const;
    // Reads what the pipes hold now, without waiting for the loop, and delivers it (lines, the
    // batch, EOF) through the callbacks before returning; paused or not. For the moment the
    // child's main process has been reaped: its last lines and its EOF then come before its
    // exit is reported. Bounded: at most read_now_limit reads per pipe (a writer that keeps
    // filling the pipe is read on by the loop as usual). The callbacks may destroy the Capture.
    void read_now();
    static constexpr int read_now_limit = 32;
    // Stops reading and closes both pipes; on_closed (may be empty) runs from the loop once
    // libuv is done with the handles.
    void close(std::function<void()> on_closed);

    std::uint64_t bytes() const; // read so far, both streams
    std::uint64_t lines() const; // delivered so far
    // First read error other than EOF (a libuv error code), 0 if none. Treated as EOF.
    int read_error() const;

    // Continuity across an exec of vigild (the new binary reads on where this one stopped):
    // the read end of stream `s` (still the Capture's; -1 once that stream reached EOF or
    // when it had none), and the bytes of a partial line read from it (no '\n' in them).
    int carried_fd(Stream s) const;
    std::string_view pending(Stream s) const;
    // Before start(): the bytes of a partial line the old binary had read from `s`; the
    // framer takes them first, so they are held back as they were (no byte lost or doubled).
    void preload(Stream s, std::string_view bytes);

    struct State; // implementation, in capture.cpp

private:
    State *state_;
};

} // namespace vigil::log

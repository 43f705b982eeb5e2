// vigil/log/rotating_file.hpp: a unit's log file with size-based rotation (issue 6 §2).
//
//  - Lines are appended (O_APPEND) through an internal buffer that is written when it passes
//    `batch` bytes and on flush(): one write(2) per batch, not per line.
//  - Rotation: before a line would make the file exceed `max_size`, the buffered lines are
//    written, then file.{keep-1} -> file.{keep}, ..., file -> file.1, and a new file is opened.
//    keep == 0 truncates instead. max_size == 0 never rotates. A line longer than max_size goes
//    alone into a file of its own (lines are never cut by rotation). If rotating fails (the
//    renames are refused), last_error() says why and the file keeps growing until reopen().
//  - A target that is not a regular file (FIFO, /dev/stdout, a tty, /dev/null) is written but
//    never rotated: rotating it makes no sense, and seeking it fails ("Illegal seek"). Neither is
//    a path that is a symlink (/dev/stdout -> /proc/self/fd/1 may point to a regular file).
//  - Errors are never silent: a line that could not be written (ENOSPC, EIO, file not open) is
//    counted in lines_failed() and the errno kept in last_error(). Writing continues with the next
//    batch (the disk may have room again).
//  - reopen() (SIGUSR2, `vigilctl logs --reopen`) closes and reopens the path, for external
//    logrotate's "move then signal" scheme.
// Record format: [timestamp ' '] line ['\\' if continued] '\n'. The trailing backslash marks a
// piece of a longer line that continues on the next record.
// Opening never blocks (a FIFO without a reader fails with ENXIO: lines count as failed until a
// reopen() finds a reader). Writes do block: a FIFO whose reader is slow slows vigild down
// rather than losing lines (a known limitation: the file sink has no back-pressure queue).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "vigil/log/line.hpp"

namespace vigil::log {

struct RotatingFileOptions {
    std::string path;
    std::uint64_t max_size = 10ull << 20;
    unsigned keep = 5;
    bool timestamps = false;
    std::size_t batch = 128u << 10;    // buffer size that triggers a write
    std::size_t direct_run = 4u << 10; // append_run writes runs this big without copying them
};

class RotatingFile {
public:
    // Opens the file (creating it 0644); on failure is_open() is false and last_error() says why;
    // lines appended then count as failed until a reopen() succeeds.
    explicit RotatingFile(RotatingFileOptions opts);
    ~RotatingFile();
    RotatingFile(const RotatingFile &) = delete;
    RotatingFile &operator=(const RotatingFile &) = delete;

    void append(std::string_view line, bool continued, WallMs wall);
    // Appends the `count` lines of a run (Framer::feed_runs: each ends with '\n', none is
    // continued), with the same records and rotation as `count` calls of append(). Without
    // timestamps a line's record is its bytes in the run, so a run of at least `direct_run`
    // bytes that needs no rotation is written straight from the caller's memory, together
    // with what is buffered, in one writev(2): no copy (issue 6 §5). Smaller runs are buffered.
    void append_run(std::string_view run, std::size_t count, WallMs wall);
    // Writes the buffered lines. Returns false if some could not be written.
    bool flush();
    // Flushes, closes and reopens the path. Returns 0 or the errno of open(2).
    int reopen();

    bool is_open() const { return fd_ >= 0; }
    bool rotates() const { return regular_; }
    const std::string &path() const { return opts_.path; }
    std::uint64_t lines_written() const { return lines_written_; }
    std::uint64_t lines_failed() const { return lines_failed_; }
    std::uint64_t rotations() const { return rotations_; }
    // errno of the last failure (write, open or rename), 0 if none yet.
    int last_error() const { return last_error_; }
    // Size of the current file including buffered bytes.
    std::uint64_t size() const { return size_ + buf_.size(); }

private:
    int open_file();
    void close_file();
    void rotate();
    // Writes the buffer, then `run` (`run_lines` records), in order; counts what failed.
    void write_out(std::string_view run = {}, std::size_t run_lines = 0);

    RotatingFileOptions opts_;
    int fd_ = -1;
    bool regular_ = false;
    bool rotate_failed_ = false; // renames failed: append without rotating until reopen()
    std::uint64_t size_ = 0;     // bytes in the file (written)
    std::string buf_;
    std::size_t buf_lines_ = 0;
    TimestampFormatter ts_;
    std::uint64_t lines_written_ = 0;
    std::uint64_t lines_failed_ = 0;
    std::uint64_t rotations_ = 0;
    int last_error_ = 0;
};

} // namespace vigil::log

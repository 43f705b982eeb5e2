// vigil/log/rotating_file.hpp: a unit's log file with size-based rotation: the synchronous,
// single-threaded core that the log writer thread drives (vigil/log/file_sink.hpp). It makes
// file syscalls that can block, so vigild never calls it on its event loop.
//
//  - Records (vigil/log/line.hpp's one format) are appended (O_APPEND) through an internal buffer
//    that is written when it passes `batch` bytes and on flush(): one write(2) per batch.
//  - Rotation: before a record would make the file exceed `max_size`, the buffered records are
//    written, then file.{keep-1} -> file.{keep}, ..., file -> file.1, and a new file is opened.
//    keep == 0 truncates instead; keep is clamped to keep_limit. max_size == 0 never rotates. A
//    record longer than max_size goes alone into a file of its own (records are never cut by
//    rotation). If rotating fails (the renames are refused), last_error() says why and the file
//    keeps growing until reopen().
//  - Identity (vigil/log/file_identity.hpp): every path operation (open, lstat, the renames and
//    the unlink of rotation, reopen) runs as `identity`, the service's user when vigild is root
//    and the unit has one. A service that replants its log path as a symlink between a rename
//    and the open can then only make vigild open what the service could open itself.
//  - What may be written: after open(2) the descriptor is fstat'ed. A regular file is written and
//    rotated (unless the path itself is a symlink: "/dev/stdout" -> /proc/self/fd/1 may lead to a
//    regular file, and renaming the symlink would make no sense). A FIFO or a character device
//    (a tty, /dev/null) is written, never rotated. Anything else (a block device, a socket that
//    open(2) accepted) is refused: closed, every line counts as failed, last_error_text() says so.
//  - Opening and writing never block on a FIFO or a device: the descriptor stays O_NONBLOCK. A
//    FIFO without a reader fails to open with ENXIO (lines count as failed until a reopen() finds
//    a reader); when a FIFO or device is full, the write stops, the rest stays buffered and
//    blocked() is true: the caller polls fd() for POLLOUT and calls flush() again. Records
//    appended while blocked() are buffered (the caller bounds them: the writer thread stops
//    appending). A regular file's write can still block (a hung network file system): that is
//    why this runs on its own thread.
//  - Errors are never silent: a record that could not be written (ENOSPC, EIO, file not open,
//    refused) is counted in lines_failed(); last_error() keeps the errno and last_error_text() the
//    whole message, e.g. "cannot open /var/log/vigil/web.log as user www-data: Permission denied
//    (vigild opens a service's log file as the service's user: make the folder writable by
//    www-data)". Writing continues with the next batch (the disk may have room again).
//  - reopen() (SIGUSR2, `vigilctl logs --reopen`) closes and reopens the path, for external
//    logrotate's "move then signal" scheme. Bytes still buffered for a blocked FIFO go to the new
//    descriptor.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "vigil/log/file_identity.hpp"
#include "vigil/log/line.hpp"

namespace vigil::log {

struct RotatingFileOptions {
    std::string path;
    std::uint64_t max_size = 10ull << 20;
    unsigned keep = 5; // clamped to keep_limit
    bool timestamps = false;
    std::size_t batch = 128u << 10;    // buffer size that triggers a write
    std::size_t direct_run = 4u << 10; // append_records writes runs this big without copying them
    FileIdentity identity;             // who does the path operations (see above)
    // Test seam: runs just before every open(2) of the path (to replant a symlink in the window
    // between a rotation's renames and its open). Empty in vigild.
    std::function<void()> before_open;
};

class RotatingFile {
public:
    // Opens the file (creating it 0644); on failure is_open() is false and last_error() says why;
    // lines appended then count as failed until a reopen() succeeds.
    explicit RotatingFile(RotatingFileOptions opts);
    // Flushes without waiting: what a blocked FIFO did not take counts as failed.
    ~RotatingFile();
    RotatingFile(const RotatingFile &) = delete;
    RotatingFile &operator=(const RotatingFile &) = delete;

    // One line, made into a record (with a timestamp if `timestamps`).
    void append(std::string_view line, bool continued, WallMs wall);
    // The `count` lines of a run (Framer::feed_runs: each ends with '\n', none is continued),
    // with the same records and rotation as `count` calls of append().
    void append_run(std::string_view run, std::size_t count, WallMs wall);
    // `count` ready-made records (RecordWriter's format, each ending with '\n'), written as they
    // are, with the rotation of append(). A run of at least `direct_run` bytes that needs no
    // rotation is written straight from the caller's memory, together with what is buffered,
    // in one writev(2): no copy.
    void append_records(std::string_view records, std::size_t count);
    // Writes the buffered records. Returns false if some could not be written (a blocked FIFO
    // is not a failure: see blocked()).
    bool flush();
    // Flushes, closes and reopens the path. Returns 0 or the errno of the failure.
    int reopen();

    bool is_open() const { return fd_ >= 0; }
    bool rotates() const { return regular_; }
    // The last write stopped because the FIFO or device was full; buffered() bytes wait.
    bool blocked() const { return blocked_; }
    int fd() const { return fd_; }
    std::size_t buffered() const { return buf_.size(); }
    const RotatingFileOptions &options() const { return opts_; }
    const std::string &path() const { return opts_.path; }
    std::uint64_t lines_written() const { return lines_written_; }
    std::uint64_t lines_failed() const { return lines_failed_; }
    std::uint64_t rotations() const { return rotations_; }
    // errno of the last failure (write, open or rename), 0 if none yet.
    int last_error() const { return last_error_; }
    // The message of that failure ("cannot rotate PATH as user NAME: Permission denied (...)"),
    // empty if none yet.
    const std::string &last_error_text() const { return last_error_text_; }
    // Size of the current file including buffered bytes.
    std::uint64_t size() const { return size_ + buf_.size(); }

private:
    int open_file();
    void close_file();
    void rotate();
    // Writes the buffer, then `run` (`run_lines` records), in order; counts what failed and keeps
    // what a full FIFO did not take.
    void write_out(std::string_view run = {}, std::size_t run_lines = 0);
    void fail(int err, std::string_view action, std::string_view detail = {});

    RotatingFileOptions opts_;
    int fd_ = -1;
    bool regular_ = false;
    bool blocked_ = false;
    bool rotate_failed_ = false; // renames failed: append without rotating until reopen()
    std::uint64_t size_ = 0;     // bytes in the file (written)
    std::string buf_;
    std::size_t buf_lines_ = 0; // records ending in buf_
    RecordWriter records_;
    std::uint64_t lines_written_ = 0;
    std::uint64_t lines_failed_ = 0;
    std::uint64_t rotations_ = 0;
    int last_error_ = 0;
    std::string last_error_text_;
};

} // namespace vigil::log

// Rotating log file: see vigil/log/rotating_file.hpp.
#include "vigil/log/rotating_file.hpp"

#include "vigil/log/framer.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

namespace vigil::log {

RotatingFile::RotatingFile(RotatingFileOptions opts) : opts_(std::move(opts)) {
    // No reserve: the buffer grows to what is buffered between two flushes, which for runs
    // written in place is little. A reserve of `batch` bytes was touched page by page, late, by
    // every unit with a file (+0.7 MiB of VmRSS after the soak's warm-up).
    open_file();
}

RotatingFile::~RotatingFile() {
    flush();
    close_file();
}

int RotatingFile::open_file() {
    // O_APPEND: several writers (or an external truncation) never make us write at a stale
    // offset. O_CLOEXEC: children must not inherit vigild's log files.
    // O_NONBLOCK only for the open: opening a FIFO that has no reader would otherwise block
    // vigild (it fails with ENXIO instead, and the lines count as failed until reopen()).
    fd_ = ::open(opts_.path.c_str(),
                 O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0644);
    if (fd_ < 0) {
        last_error_ = errno;
        return last_error_;
    }
    // Writes block (a slow FIFO reader slows vigild down rather than losing lines; regular
    // files ignore the flag anyway).
    const int fl = ::fcntl(fd_, F_GETFL);
    if (fl >= 0) (void)::fcntl(fd_, F_SETFL, fl & ~O_NONBLOCK);
    // Rotate only a regular file reached without a symlink: renaming "/dev/stdout" (a symlink
    // to /proc/self/fd/1, which may well be a regular file) would move the symlink itself.
    struct stat st {
    }, lst{};
    regular_ = ::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode) &&
               ::lstat(opts_.path.c_str(), &lst) == 0 && S_ISREG(lst.st_mode);
    size_ = regular_ ? static_cast<std::uint64_t>(st.st_size) : 0;
    return 0;
}

void RotatingFile::close_file() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

void RotatingFile::append(std::string_view line, bool continued, WallMs wall) {
    const std::size_t rec =
        line.size() + 1 + (continued ? 1 : 0) + (opts_.timestamps ? timestamp_len + 1 : 0);
    if (regular_ && !rotate_failed_ && opts_.max_size > 0 && size() > 0 &&
        size() + rec > opts_.max_size) {
        write_out();
        rotate();
    }
    if (opts_.timestamps) {
        char ts[timestamp_len];
        ts_.format(wall, ts);
        buf_.append(ts, timestamp_len);
        buf_.push_back(' ');
    }
    buf_.append(line);
    if (continued) buf_.push_back('\\');
    buf_.push_back('\n');
    ++buf_lines_;
    if (buf_.size() >= opts_.batch) write_out();
}

void RotatingFile::append_run(std::string_view run, std::size_t count, WallMs wall) {
    if (opts_.timestamps) {
        // Records differ from the bytes read.
        for_each_line(run, [&](std::string_view line) { append(line, false, wall); });
        return;
    }
    // Rotation cuts between two records, exactly where count calls of append() would: before a
    // record that would take a non-empty file past max_size. The pieces are written in place.
    while (regular_ && !rotate_failed_ && opts_.max_size > 0 &&
           size() + run.size() > opts_.max_size) {
        const std::uint64_t room = size() < opts_.max_size ? opts_.max_size - size() : 0;
        // The whole records that fit: up to the last '\n' within `room` bytes.
        const void *cut = room == 0 ? nullptr : ::memrchr(run.data(), '\n', room);
        std::size_t n =
            cut == nullptr
                ? 0
                : static_cast<std::size_t>(static_cast<const char *>(cut) - run.data()) + 1;
        if (n == 0 && size() > 0) {
            write_out();
            rotate();
            continue;
        }
        if (n == 0) // an empty file: a record longer than max_size goes alone into it
            n = static_cast<std::size_t>(
                    static_cast<const char *>(std::memchr(run.data(), '\n', run.size())) -
                    run.data()) +
                1;
        const auto lines = static_cast<std::size_t>(std::count(run.data(), run.data() + n, '\n'));
        write_out(run.substr(0, n), lines);
        run.remove_prefix(n);
        count -= lines;
    }
    if (run.empty()) return;
    if (run.size() < opts_.direct_run && buf_.size() + run.size() < opts_.batch) {
        buf_.append(run); // the buffer never holds more than `batch` bytes
        buf_lines_ += count;
        return;
    }
    write_out(run, count);
}

bool RotatingFile::flush() {
    const auto failed = lines_failed_;
    write_out();
    return lines_failed_ == failed;
}

void RotatingFile::write_out(std::string_view run, std::size_t run_lines) {
    if (buf_.empty() && run.empty()) return;
    // Two pieces, buffer first: one writev(2) carries both in order.
    iovec iov[2] = {{buf_.data(), buf_.size()}, {const_cast<char *>(run.data()), run.size()}};
    int first = buf_.empty() ? 1 : 0;
    const int last = run.empty() ? 1 : 2;
    std::size_t done = 0; // bytes written, buffer and run together
    if (fd_ >= 0) {
        while (first < last) {
            const ssize_t n = ::writev(fd_, iov + first, last - first);
            if (n > 0) {
                done += static_cast<std::size_t>(n);
                auto left = static_cast<std::size_t>(n);
                while (first < last && left >= iov[first].iov_len) {
                    left -= iov[first].iov_len;
                    ++first;
                }
                if (first < last) {
                    iov[first].iov_base = static_cast<char *>(iov[first].iov_base) + left;
                    iov[first].iov_len -= left;
                }
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else {
                last_error_ = n < 0 ? errno : EIO;
                break;
            }
        }
    } else if (last_error_ == 0) {
        last_error_ = EBADF;
    }
    // Records are '\n'-terminated, so the lines lost are the newlines not written. A record cut
    // in the middle counts as failed (its head is in the file, its end is not).
    std::size_t lost = 0;
    for (int i = first; i < last; ++i) {
        const char *b = static_cast<const char *>(iov[i].iov_base);
        lost += static_cast<std::size_t>(std::count(b, b + iov[i].iov_len, '\n'));
    }
    lines_failed_ += lost;
    lines_written_ += buf_lines_ + run_lines - lost;
    if (regular_) size_ += done;
    buf_.clear();
    buf_lines_ = 0;
}

void RotatingFile::rotate() {
    // Renames first, then reopen: a reader following the path sees the old file end and the new
    // one begin, and a crash in between leaves every line in some file.
    close_file();
    const std::string &p = opts_.path;
    bool moved = true;
    if (opts_.keep == 0) {
        if (::unlink(p.c_str()) != 0 && errno != ENOENT) {
            last_error_ = errno;
            moved = false;
        }
    } else {
        for (unsigned k = opts_.keep; k >= 2; --k) {
            const std::string from = p + "." + std::to_string(k - 1);
            const std::string to = p + "." + std::to_string(k);
            if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) last_error_ = errno;
        }
        if (::rename(p.c_str(), (p + ".1").c_str()) != 0 && errno != ENOENT) {
            last_error_ = errno;
            moved = false;
        }
    }
    if (moved) ++rotations_;
    // If the file could not be moved away (permissions, a read-only directory), the same full
    // file comes back: stop trying on every line until the next reopen(), keep appending.
    rotate_failed_ = !moved;
    open_file();
}

int RotatingFile::reopen() {
    write_out();
    close_file();
    rotate_failed_ = false;
    return open_file();
}

} // namespace vigil::log

// Rotating log file: see vigil/log/rotating_file.hpp.
#include "vigil/log/rotating_file.hpp"

#include "vigil/log/framer.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <optional>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

namespace vigil::log {

namespace {

constexpr auto npos = std::string_view::npos;

} // namespace

RotatingFile::RotatingFile(RotatingFileOptions opts) : opts_(std::move(opts)) {
    opts_.keep = std::min(opts_.keep, keep_limit);
    // No reserve: the buffer grows to what is buffered between two flushes, which for runs
    // written in place is little. A reserve of `batch` bytes was touched page by page, late, by
    // every unit with a file (+0.7 MiB of VmRSS after the soak's warm-up).
    open_file();
}

RotatingFile::~RotatingFile() {
    flush();
    // A FIFO that stayed full: nobody will take these.
    lines_failed_ += buf_lines_;
    buf_.clear();
    buf_lines_ = 0;
    close_file();
}

void RotatingFile::fail(int err, std::string_view action, std::string_view detail) {
    last_error_ = err;
    const bool as_user = !opts_.identity.as_vigild();
    std::string msg = "cannot ";
    msg += action;
    msg += ' ';
    msg += opts_.path;
    if (as_user) msg += " as user " + opts_.identity.name();
    msg += ": ";
    if (!detail.empty())
        msg += detail;
    else
        msg += std::strerror(err);
    if (as_user && (err == EACCES || err == EPERM) && detail.empty() && action != "write") {
        // The kernel checked the service's rights, which is the point: say what to change.
        msg += " (vigild ";
        msg += action == "open" ? "opens" : "rotates";
        msg += " a service's log file as the service's user: make the folder writable by " +
               opts_.identity.name() + ")";
    }
    last_error_text_ = std::move(msg);
}

int RotatingFile::open_file() {
    if (opts_.before_open) opts_.before_open();
    blocked_ = false;
    regular_ = false;
    size_ = 0;
    const FileIdentityScope as(opts_.identity);
    if (as.error() != 0) {
        fail(as.error(), "open",
             std::string("cannot act as this user: ") + std::strerror(as.error()));
        return last_error_;
    }
    // O_APPEND: several writers (or an external truncation) never make us write at a stale
    // offset. O_CLOEXEC: children must not inherit vigild's log files. O_NONBLOCK: opening a FIFO
    // that has no reader fails (ENXIO) instead of waiting, and a full FIFO or device makes the
    // write stop instead of the writer thread (regular files ignore the flag).
    fd_ = ::open(opts_.path.c_str(),
                 O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NONBLOCK, 0644);
    if (fd_ < 0) {
        fail(errno, "open");
        return last_error_;
    }
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
        fail(errno, "open");
        close_file();
        return last_error_;
    }
    if (S_ISREG(st.st_mode)) {
        // Rotate only a regular file reached without a symlink: renaming "/dev/stdout" (a
        // symlink to /proc/self/fd/1, which may well be a regular file) would move the symlink.
        struct stat lst {};
        regular_ = ::lstat(opts_.path.c_str(), &lst) == 0 && S_ISREG(lst.st_mode);
        size_ = regular_ ? static_cast<std::uint64_t>(st.st_size) : 0;
    } else if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode)) {
        fail(EINVAL, "open", "not a regular file, FIFO or character device");
        close_file();
        return last_error_;
    }
    return 0;
}

void RotatingFile::close_file() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    blocked_ = false;
}

void RotatingFile::append(std::string_view line, bool continued, WallMs wall) {
    const std::size_t rec = RecordWriter::size(0, opts_.timestamps, line.size(), continued);
    if (regular_ && !rotate_failed_ && opts_.max_size > 0 && size() > 0 &&
        size() + rec > opts_.max_size) {
        write_out();
        rotate();
    }
    records_.append(buf_, {}, opts_.timestamps ? std::optional<WallMs>(wall) : std::nullopt, line,
                    continued);
    ++buf_lines_;
    if (buf_.size() >= opts_.batch) write_out();
}

void RotatingFile::append_run(std::string_view run, std::size_t count, WallMs wall) {
    if (opts_.timestamps) {
        // Records differ from the bytes read.
        for_each_line(run, [&](std::string_view line) { append(line, false, wall); });
        return;
    }
    append_records(run, count); // a line of a run is its own record
}

void RotatingFile::append_records(std::string_view run, std::size_t count) {
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
        if (n == 0) { // an empty file: a record longer than max_size goes alone into it
            const std::size_t nl = run.find('\n');
            n = nl == npos ? run.size() : nl + 1;
        }
        const auto lines = static_cast<std::size_t>(std::count(run.data(), run.data() + n, '\n'));
        write_out(run.substr(0, n), lines);
        run.remove_prefix(n);
        count -= std::min(count, lines);
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
    bool full = false;    // a FIFO or device would block
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
            } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && !regular_) {
                full = true;
                break;
            } else {
                fail(n < 0 ? errno : EIO, "write");
                break;
            }
        }
    } else if (last_error_ == 0) {
        fail(EBADF, "write");
    }
    // Records are '\n'-terminated, so the records not written are the newlines not written. A
    // record cut in the middle is not written (its head is in the file, its end is not).
    std::size_t left_lines = 0;
    for (int i = first; i < last; ++i) {
        const char *b = static_cast<const char *>(iov[i].iov_base);
        left_lines += static_cast<std::size_t>(std::count(b, b + iov[i].iov_len, '\n'));
    }
    lines_written_ += buf_lines_ + run_lines - left_lines;
    if (regular_) size_ += done;
    blocked_ = full;
    if (full) {
        // Keep what the FIFO did not take, in order, for the next flush(). iov[0] may point
        // into buf_ itself: gather first, then swap.
        std::string rest;
        for (int i = first; i < last; ++i)
            rest.append(static_cast<const char *>(iov[i].iov_base), iov[i].iov_len);
        buf_.swap(rest);
        buf_lines_ = left_lines;
        return;
    }
    lines_failed_ += left_lines;
    buf_.clear();
    buf_lines_ = 0;
}

void RotatingFile::rotate() {
    // Renames first, then reopen: a reader following the path sees the old file end and the new
    // one begin, and a crash in between leaves every line in some file.
    close_file();
    const std::string &p = opts_.path;
    bool moved = true;
    {
        const FileIdentityScope as(opts_.identity);
        if (as.error() != 0) {
            fail(as.error(), "rotate",
                 std::string("cannot act as this user: ") + std::strerror(as.error()));
            moved = false;
        } else if (opts_.keep == 0) {
            if (::unlink(p.c_str()) != 0 && errno != ENOENT) {
                fail(errno, "rotate");
                moved = false;
            }
        } else {
            for (unsigned k = opts_.keep; k >= 2; --k) {
                const std::string from = p + "." + std::to_string(k - 1);
                const std::string to = p + "." + std::to_string(k);
                if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT)
                    fail(errno, "rotate");
            }
            if (::rename(p.c_str(), (p + ".1").c_str()) != 0 && errno != ENOENT) {
                fail(errno, "rotate");
                moved = false;
            }
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

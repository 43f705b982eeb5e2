// Forwarding to vigild's stdout with back-pressure: see vigil/log/forwarder.hpp.
#include "vigil/log/forwarder.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <ctime>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

namespace vigil::log {

// Heap-allocated so that a Forwarder destroyed before its close callbacks ran leaves libuv
// valid memory; freed by the last close callback.
struct Forwarder::Handles {
    uv_idle_t idle{};
    uv_poll_t poll{};
    bool poll_inited = false;
    bool closing = false;
    int pending = 0;
    Forwarder *owner = nullptr; // null once the Forwarder is gone
    std::function<void()> on_closed;
};

struct ForwarderAccess {
    static void on_idle(uv_idle_t *idle) {
        auto *h = static_cast<Forwarder::Handles *>(idle->data);
        uv_idle_stop(idle);
        Forwarder *f = h->owner;
        if (f == nullptr) return;
        f->scheduled_ = false;
        if (!f->write_some()) {
            if (h->poll_inited) {
                // The fd would block: wait until it is writable instead of spinning.
                f->waiting_ = true;
                uv_poll_start(&h->poll, UV_WRITABLE, on_poll);
            } else {
                f->schedule(); // an fd epoll refuses but that was non-blocking: retry
            }
        }
        f->after_write();
    }
    static void on_poll(uv_poll_t *poll, int /*status*/, int /*events*/) {
        // On an error status the write below reports the real errno.
        auto *h = static_cast<Forwarder::Handles *>(poll->data);
        Forwarder *f = h->owner;
        if (f == nullptr) return;
        if (f->write_some()) {
            uv_poll_stop(poll);
            f->waiting_ = false;
        }
        f->after_write();
    }
    static void on_close(uv_handle_t *handle) {
        auto *h = static_cast<Forwarder::Handles *>(handle->data);
        if (--h->pending > 0) return;
        auto cb = std::move(h->on_closed);
        if (h->owner != nullptr) h->owner->h_ = nullptr;
        delete h;
        if (cb) cb();
    }
};

Forwarder::Forwarder(uv_loop_s *loop, ForwarderOptions opts) : opts_(opts) {
    if (opts_.colour) {
        colour_ = *opts_.colour;
    } else {
        const char *nc = std::getenv("NO_COLOR"); // https://no-color.org: set and non-empty
        colour_ = ::isatty(opts_.fd) == 1 && (nc == nullptr || *nc == '\0');
    }
    h_ = new Handles;
    h_->owner = this;
    uv_idle_init(loop, &h_->idle);
    h_->idle.data = h_;
    struct stat st {};
    const bool regular = ::fstat(opts_.fd, &st) == 0 && S_ISREG(st.st_mode);
    if (!regular) {
        saved_flags_ = ::fcntl(opts_.fd, F_GETFL);
        // uv_poll_init makes the fd non-blocking (the file description, shared with whoever
        // gave us this stdout; close() restores the flags). epoll refuses some fds (EPERM for
        // /dev/null): those are written blocking, which for them never waits.
        if (uv_poll_init(loop, &h_->poll, opts_.fd) == 0) {
            h_->poll_inited = true;
            h_->poll.data = h_;
            pollable_ = true;
        } else if (saved_flags_ >= 0) {
            (void)::fcntl(opts_.fd, F_SETFL, saved_flags_);
        }
    }
}

Forwarder::~Forwarder() {
    if (h_ == nullptr) return;
    h_->owner = nullptr;
    if (!h_->closing) close(nullptr);
    if (h_ != nullptr) h_->owner = nullptr;
}

Forwarder::Prefix Forwarder::prefix(std::string_view name) const {
    // FNV-1a: stable across runs and platforms (std::hash is neither).
    std::uint32_t hash = 2166136261u;
    for (const char c : name) {
        hash ^= static_cast<unsigned char>(c);
        hash *= 16777619u;
    }
    static constexpr std::array<const char *, 6> palette = {"36", "33", "32", "35", "34", "96"};
    Prefix p;
    if (colour_) {
        const std::string on = std::string("\x1b[") + palette[hash % palette.size()] + "m";
        p.out = on + std::string(name) + " |\x1b[0m ";
        p.err = on + std::string(name) + " !\x1b[0m ";
    } else {
        p.out = std::string(name) + " | ";
        p.err = std::string(name) + " ! ";
    }
    return p;
}

void Forwarder::line(const Prefix &prefix, Stream stream, std::string_view text, bool continued,
                     std::optional<WallMs> timestamp) {
    buf_.append(stream == Stream::Stderr ? prefix.err : prefix.out);
    if (timestamp) {
        char ts[timestamp_len];
        ts_.format(*timestamp, ts);
        buf_.append(ts, timestamp_len);
        buf_.push_back(' ');
    }
    buf_.append(text);
    if (continued) buf_.push_back('\\');
    buf_.push_back('\n');
    ++lines_;
    if (!congested_ && queued() > opts_.high_water) {
        congested_ = true;
        if (on_pressure_) on_pressure_(true);
    }
    schedule();
}

void Forwarder::schedule() {
    if (scheduled_ || waiting_ || closing_ || h_ == nullptr) return;
    scheduled_ = true;
    // An idle handle runs on the next loop iteration and keeps that iteration's poll from
    // blocking: everything produced by this iteration's callbacks goes out in one write.
    uv_idle_start(&h_->idle, ForwarderAccess::on_idle);
}

bool Forwarder::write_some() {
    while (queued() > 0) {
        const ssize_t n = ::write(opts_.fd, buf_.data() + head_, queued());
        if (n > 0) {
            head_ += static_cast<std::size_t>(n);
            written_ += static_cast<std::uint64_t>(n);
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            // Keep the queue compact: drop what was written once it is most of the buffer.
            if (head_ > (1u << 20) && head_ > buf_.size() / 2) {
                buf_.erase(0, head_);
                head_ = 0;
            }
            return false;
        }
        last_error_ = n < 0 ? errno : EIO;
        lines_failed_ += static_cast<std::uint64_t>(
            std::count(buf_.data() + head_, buf_.data() + buf_.size(), '\n'));
        break;
    }
    buf_.clear();
    head_ = 0;
    return true;
}

void Forwarder::after_write() {
    if (congested_ && queued() < opts_.low_water) {
        congested_ = false;
        if (on_pressure_) on_pressure_(false);
    }
}

bool Forwarder::flush_blocking(Duration timeout) {
    timespec t0{};
    ::clock_gettime(CLOCK_MONOTONIC, &t0);
    const auto start_ms = static_cast<std::int64_t>(t0.tv_sec) * 1000 + t0.tv_nsec / 1'000'000;
    bool done = write_some();
    while (!done) {
        timespec t{};
        ::clock_gettime(CLOCK_MONOTONIC, &t);
        const auto now_ms = static_cast<std::int64_t>(t.tv_sec) * 1000 + t.tv_nsec / 1'000'000;
        const auto left = timeout.count() - (now_ms - start_ms);
        if (left <= 0) break;
        pollfd pfd{opts_.fd, POLLOUT, 0};
        (void)::poll(&pfd, 1, static_cast<int>(std::min<std::int64_t>(left, 1000)));
        done = write_some();
    }
    if (done && waiting_ && h_ != nullptr) {
        uv_poll_stop(&h_->poll);
        waiting_ = false;
    }
    after_write();
    return done;
}

void Forwarder::close(std::function<void()> cb) {
    if (h_ == nullptr || h_->closing) return;
    closing_ = true;
    h_->closing = true;
    h_->on_closed = std::move(cb);
    uv_idle_stop(&h_->idle);
    ++h_->pending;
    uv_close(reinterpret_cast<uv_handle_t *>(&h_->idle), ForwarderAccess::on_close);
    if (h_->poll_inited) {
        uv_poll_stop(&h_->poll);
        ++h_->pending;
        uv_close(reinterpret_cast<uv_handle_t *>(&h_->poll), ForwarderAccess::on_close);
    }
    // uv_poll_init switched the fd to non-blocking; give it back as we found it.
    if (pollable_ && saved_flags_ >= 0) (void)::fcntl(opts_.fd, F_SETFL, saved_flags_);
    scheduled_ = false;
    waiting_ = false;
}

} // namespace vigil::log

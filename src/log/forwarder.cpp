// Forwarding to vigild's standard streams through a bounded queue and a writer thread: see
// vigil/log/forwarder.hpp.
//
// Threads: the loop thread calls line()/raw() and reads the counters; the writer thread takes
// the whole queue at once (a swap under the mutex) and writes it without the mutex. Everything
// they share is in Shared, under `mu`. The marker record is appended by the writer thread when
// the queue has drained, under the same mutex as the drops it counts, so it always lands after
// every record accepted before the drops and before every record accepted after them.
#include "vigil/log/forwarder.hpp"

#include "worker.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

namespace vigil::log {

struct Forwarder::Shared {
    Shared(int fd_, ForwarderOptions o) : fd(fd_), opts(std::move(o)) {}

    const int fd;
    const ForwarderOptions opts;
    std::mutex mu;
    std::condition_variable wake;    // to the thread: work, or stop
    std::condition_variable drained; // from the thread: the queue is empty, or it exited
    // Guarded by mu.
    std::string queue;
    std::size_t in_flight = 0; // bytes the thread took and has not written yet
    bool stop = false;
    bool exited = false;
    std::uint64_t lines = 0;
    std::uint64_t episode_fwd = 0, episode_own = 0; // drops not yet told by a marker
    std::uint64_t dropped_fwd = 0, dropped_own = 0;
    std::uint64_t written = 0, lines_failed = 0;
    int last_error = 0;

    std::size_t pending() const { return queue.size() + in_flight; }
    void run();
    void add_marker();
};

// The loop handle, heap-allocated so that a Forwarder destroyed before libuv ran the close
// callback leaves libuv valid memory; freed by that callback.
struct Forwarder::Handles {
    uv_idle_t idle{};
    bool armed = false;
    bool closing = false;
    Shared *shared = nullptr; // kept alive by the Forwarder, which closes the handle first
    std::function<void()> on_closed;
};

namespace {

std::uint64_t newlines(std::string_view s) {
    return static_cast<std::uint64_t>(std::count(s.begin(), s.end(), '\n'));
}

void on_idle(uv_idle_t *idle) {
    auto *h = static_cast<Forwarder::Handles *>(idle->data);
    uv_idle_stop(idle);
    h->armed = false;
    // The records were appended under the mutex before this: a thread about to wait sees them.
    h->shared->wake.notify_one();
}

void on_forwarder_closed(uv_handle_t *handle) {
    auto *h = static_cast<Forwarder::Handles *>(handle->data);
    auto cb = std::move(h->on_closed);
    delete h;
    if (cb) cb();
}

} // namespace

void Forwarder::Shared::add_marker() {
    const std::uint64_t total = episode_fwd + episode_own;
    std::string m = "vigil | " + std::to_string(total) + " lines dropped";
    if (episode_own > 0) m += " (" + std::to_string(episode_own) + " of them vigild's own)";
    m += ": " + opts.stream_name + " was blocked\n";
    queue += m;
    episode_fwd = episode_own = 0;
}

void Forwarder::Shared::run() {
    std::string work;
    std::unique_lock lock(mu);
    for (;;) {
        if ((episode_fwd > 0 || episode_own > 0) && pending() < opts.resume_below) add_marker();
        if (queue.empty()) {
            drained.notify_all();
            if (stop) break;
            wake.wait(lock);
            continue;
        }
        if (stop) break;
        work.swap(queue);
        in_flight = work.size();
        lock.unlock();
        std::string_view left = work;
        int err = 0;
        while (!left.empty()) {
            const ssize_t n = ::write(fd, left.data(), left.size());
            if (n > 0) {
                left.remove_prefix(static_cast<std::size_t>(n));
                const std::lock_guard g(mu);
                in_flight -= static_cast<std::size_t>(n);
                written += static_cast<std::uint64_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                // Someone else made the shared description non-blocking: wait here instead.
                pollfd pfd{fd, POLLOUT, 0};
                (void)::poll(&pfd, 1, -1);
                continue;
            }
            err = n < 0 ? errno : EIO;
            break;
        }
        lock.lock();
        if (err != 0) {
            last_error = err;
            lines_failed += newlines(left);
        }
        in_flight = 0;
        // A burst's buffer is not kept for ever (the queue may have held megabytes). Swapped
        // with an empty string: assigning one keeps the buffer (a short string is copied in).
        if (work.capacity() > (1u << 20)) std::string().swap(work);
        work.clear();
    }
    lines_failed += newlines(queue) + newlines(work);
    queue.clear();
    exited = true;
    drained.notify_all();
}

Forwarder::Forwarder(uv_loop_s *loop, ForwarderOptions opts) : fd_(opts.fd) {
    if (opts.colour) {
        colour_ = *opts.colour;
    } else {
        const char *nc = std::getenv("NO_COLOR"); // https://no-color.org: set and non-empty
        colour_ = ::isatty(fd_) == 1 && (nc == nullptr || *nc == '\0');
    }
    shared_ = std::make_shared<Shared>(fd_, std::move(opts));
    h_ = new Handles;
    h_->shared = shared_.get();
    uv_idle_init(loop, &h_->idle);
    h_->idle.data = h_;
    if (const int err = detail::start_detached([s = shared_] { s->run(); }); err != 0) {
        const std::lock_guard g(shared_->mu);
        shared_->last_error = err;
        shared_->stop = true;
        shared_->exited = true;
    }
}

Forwarder::~Forwarder() {
    if (h_ != nullptr && !h_->closing) close(nullptr);
    {
        const std::lock_guard g(shared_->mu);
        shared_->stop = true;
    }
    shared_->wake.notify_one();
    // The thread is detached (worker.hpp): wait a little for it to leave, so that in the normal
    // case nothing runs after the Forwarder is gone; a thread stuck in write(2) keeps `shared_`
    // alive by itself.
    std::unique_lock lock(shared_->mu);
    shared_->drained.wait_for(lock, std::chrono::milliseconds(200),
                              [&] { return shared_->exited; });
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

bool Forwarder::line(const Prefix &prefix, Stream stream, std::string_view text, bool continued,
                     std::optional<WallMs> timestamp) {
    const std::string &pre = stream == Stream::Stderr ? prefix.err : prefix.out;
    const std::size_t rec =
        RecordWriter::size(pre.size(), timestamp.has_value(), text.size(), continued);
    bool dropped = false;
    {
        const std::lock_guard g(shared_->mu);
        Shared &s = *shared_;
        if (s.exited) {
            ++s.lines_failed;
            return false;
        }
        // Once dropping started it goes on until the marker was queued: no record may slip in
        // before the marker that tells of the ones dropped before it.
        if (s.episode_fwd > 0 || s.episode_own > 0 || s.pending() + rec > s.opts.max_queue) {
            ++s.episode_fwd;
            ++s.dropped_fwd;
            dropped = true;
        } else {
            records_.append(s.queue, pre, timestamp, text, continued);
            ++s.lines;
        }
    }
    // Also after a drop: an idle thread must come and write the marker (a record bigger than
    // the whole queue is dropped while the queue is empty).
    wake_later();
    return !dropped;
}

bool Forwarder::raw(std::string_view line) {
    bool dropped = false;
    {
        const std::lock_guard g(shared_->mu);
        Shared &s = *shared_;
        if (s.exited) {
            ++s.lines_failed;
            return false;
        }
        if (s.pending() + line.size() + 1 > s.opts.max_own_queue) {
            ++s.episode_own;
            ++s.dropped_own;
            dropped = true;
        } else {
            s.queue.append(line);
            s.queue.push_back('\n');
            ++s.lines;
        }
    }
    // Woken once a loop turn, as for forwarded lines (a stop of many services says a few lines
    // for each), or at once after close(); after a drop too (for the marker).
    wake_later();
    return !dropped;
}

void Forwarder::wake_later() {
    if (h_ == nullptr || h_->closing) {
        shared_->wake.notify_one();
        return;
    }
    if (h_->armed) return;
    h_->armed = true;
    uv_idle_start(&h_->idle, on_idle);
}

bool Forwarder::flush_blocking(Duration timeout) {
    shared_->wake.notify_one();
    std::unique_lock lock(shared_->mu);
    Shared &s = *shared_;
    return s.drained.wait_for(lock, timeout, [&] { return s.pending() == 0 || s.exited; }) &&
           s.pending() == 0;
}

void Forwarder::close(std::function<void()> cb) {
    if (h_ == nullptr || h_->closing) return;
    h_->closing = true;
    h_->on_closed = std::move(cb);
    if (h_->armed) {
        uv_idle_stop(&h_->idle);
        h_->armed = false;
        shared_->wake.notify_one(); // what it would have woken the thread for
    }
    uv_close(reinterpret_cast<uv_handle_t *>(&h_->idle), on_forwarder_closed);
    h_ = nullptr; // freed by on_forwarder_closed
}

std::size_t Forwarder::queued() const {
    const std::lock_guard g(shared_->mu);
    return shared_->pending();
}
std::uint64_t Forwarder::lines() const {
    const std::lock_guard g(shared_->mu);
    return shared_->lines;
}
std::uint64_t Forwarder::bytes_written() const {
    const std::lock_guard g(shared_->mu);
    return shared_->written;
}
std::uint64_t Forwarder::dropped_lines() const {
    const std::lock_guard g(shared_->mu);
    return shared_->dropped_fwd;
}
std::uint64_t Forwarder::dropped_own_lines() const {
    const std::lock_guard g(shared_->mu);
    return shared_->dropped_own;
}
std::uint64_t Forwarder::lines_failed() const {
    const std::lock_guard g(shared_->mu);
    return shared_->lines_failed;
}
int Forwarder::last_error() const {
    const std::lock_guard g(shared_->mu);
    return shared_->last_error;
}

StandardStreams open_standard_streams(uv_loop_s *loop, StandardStreamsOptions opts) {
    struct stat o {
    }, e{};
    const bool same = ::fstat(opts.out_fd, &o) == 0 && ::fstat(opts.err_fd, &e) == 0 &&
                      o.st_dev == e.st_dev && o.st_ino == e.st_ino;
    StandardStreams s;
    ForwarderOptions out;
    out.fd = opts.out_fd;
    out.colour = opts.colour;
    out.stream_name = same ? "standard output and error" : "standard output";
    s.out_owner = std::make_unique<Forwarder>(loop, std::move(out));
    s.out = s.out_owner.get();
    if (same) {
        s.err = s.out;
        return s;
    }
    ForwarderOptions err;
    err.fd = opts.err_fd;
    err.colour = false; // vigild's lines carry no prefix to colour
    err.stream_name = "standard error";
    s.err_owner = std::make_unique<Forwarder>(loop, std::move(err));
    s.err = s.err_owner.get();
    return s;
}

} // namespace vigil::log

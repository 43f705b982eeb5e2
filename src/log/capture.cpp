// Pipe capture on libuv: see vigil/log/capture.hpp.
//
// All libuv state lives in Capture::State, which is freed by whichever comes last: the last
// close callback or the Capture object's destructor. Any callback into the daemon may close or
// destroy the Capture, so after each one the code re-checks `closing` before touching libuv.
#include "vigil/log/capture.hpp"

#include <algorithm>
#include <cerrno>
#include <fcntl.h>
#include <memory>
#include <unistd.h>
#include <uv.h>

#include "vigil/log/framer.hpp"

namespace vigil::log {

struct Capture::State {
    struct Pipe {
        uv_pipe_t handle{};
        State *st = nullptr;
        Stream stream = Stream::Stdout;
        int fd = -1;
        bool opened = false; // uv_pipe_open succeeded: libuv owns the fd
        bool eof = false;
        bool grown = false; // grow_pipe was tried
        std::size_t buf_size = 0;
        Framer framer;
        explicit Pipe(std::size_t max_line) : framer(max_line) {}
    };

    State(uv_loop_t *l, int out_fd, int err_fd, CaptureOptions o, Callbacks c)
        : loop(l), opts(o), cbs(std::move(c)), out(o.max_line), err(o.max_line) {
        out.fd = out_fd;
        out.stream = Stream::Stdout;
        err.fd = err_fd;
        err.stream = Stream::Stderr;
        for (Pipe *p : {&out, &err}) {
            p->st = this;
            p->eof = p->fd < 0;
            // Initialised even without an fd, so close() always has two handles to close and
            // its callback always comes from the loop.
            uv_pipe_init(loop, &p->handle, 0);
            p->handle.data = p;
        }
    }

    uv_loop_t *loop;
    CaptureOptions opts;
    Callbacks cbs;
    Pipe out, err;
    bool started = false;
    bool paused = false;
    bool closing = false;
    bool closed = false;
    bool owner_alive = true;
    bool eof_reported = false;
    int pending_closes = 0;
    int read_error = 0;
    std::uint64_t bytes = 0;
    std::uint64_t lines = 0;
    std::function<void()> on_closed;

    void start_reading(Pipe &p);
    void finish_stream(Pipe &p);
    void begin_close();
};

namespace {

// A new pipe's capacity on Linux (16 pages). A read of half of it or more means the writer is
// fast enough to fill it (a 65,500-byte write fills all 16 pages: reads never see 64 KiB).
constexpr std::size_t default_pipe_size = 64u << 10;

// One read buffer for every Capture of the loop's thread. libuv calls alloc, read(2) and the
// read callback back to back for one stream, and on_read hands every line on (the framer copies
// only an unfinished tail) before it returns, so no two reads ever use the buffer at once. A
// buffer per stream cost 128 KiB per service and, re-allocated at each restart, fragmented the
// heap (the chaos soak's RSS growth).
char *shared_read_buffer(std::size_t size) {
    thread_local std::unique_ptr<char[]> buf;
    thread_local std::size_t cap = 0;
    if (cap < size) {
        // Zero-filled so every page is resident at once: left untouched, the pages of a 1 MiB
        // buffer became resident one burst at a time, long after start-up (the chaos soak
        // saw VmRSS creep up by most of a MiB after its warm-up).
        buf.reset(new char[size]());
        cap = size;
    }
    return buf.get();
}

void on_alloc(uv_handle_t *h, std::size_t /*suggested*/, uv_buf_t *buf) {
    auto *p = static_cast<Capture::State::Pipe *>(h->data);
    const std::size_t want = p->st->opts.read_buffer;
    p->buf_size = want == 0 ? default_pipe_size : std::min(want, read_buffer_limit);
    buf->base = shared_read_buffer(p->buf_size);
    buf->len = p->buf_size;
}

void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    auto *p = static_cast<Capture::State::Pipe *>(s->data);
    Capture::State *st = p->st;
    if (st->closing) return;
    if (nread > 0) {
        const auto n = static_cast<std::size_t>(nread);
        st->bytes += n;
        if (n >= default_pipe_size / 2 && !p->grown &&
            st->opts.grow_pipe > std::max(default_pipe_size, st->opts.pipe_size)) {
            p->grown = true;
            // The writer filled the pipe: let it run ahead of us. Limited by pipe-max-size and
            // pipe-user-pages-soft for unprivileged vigild; failure only costs speed.
            (void)::fcntl(p->fd, F_SETPIPE_SZ, static_cast<int>(st->opts.grow_pipe));
        }
        auto one = [&](std::string_view line, bool continued) {
            if (st->closing) return; // closed by an earlier line's callback
            ++st->lines;
            if (st->cbs.on_line) st->cbs.on_line(p->stream, line, continued);
        };
        p->framer.feed_runs(
            std::string_view(buf->base, n),
            [&](std::string_view run, std::size_t count) {
                if (st->closing) return;
                if (!st->cbs.on_lines) {
                    for_each_line(run, [&](std::string_view line) { one(line, false); });
                    return;
                }
                st->lines += count;
                st->cbs.on_lines(p->stream, run, count);
            },
            one);
        if (!st->closing && st->cbs.on_batch) st->cbs.on_batch();
        return;
    }
    if (nread == 0) return; // EAGAIN
    if (nread != UV_EOF && st->read_error == 0) st->read_error = static_cast<int>(nread);
    st->finish_stream(*p);
}

void on_pipe_closed(uv_handle_t *h) {
    auto *p = static_cast<Capture::State::Pipe *>(h->data);
    Capture::State *st = p->st;
    if (--st->pending_closes > 0) return;
    auto cb = std::move(st->on_closed);
    st->closed = true;
    // If the owner is gone nobody else will free the state; if it is alive, cb may destroy
    // it, and the destructor then frees the state (closed == true). Either way: no access
    // to `st` after this point.
    if (!st->owner_alive) delete st;
    if (cb) cb();
}

} // namespace

void Capture::State::start_reading(Pipe &p) {
    if (!p.opened || p.eof || closing) return;
    uv_read_start(reinterpret_cast<uv_stream_t *>(&p.handle), on_alloc, on_read);
}

void Capture::State::finish_stream(Pipe &p) {
    uv_read_stop(reinterpret_cast<uv_stream_t *>(&p.handle));
    p.eof = true;
    p.framer.flush([&](std::string_view line, bool continued) {
        if (closing) return;
        ++lines;
        if (cbs.on_line) cbs.on_line(p.stream, line, continued);
    });
    if (!closing && cbs.on_batch) cbs.on_batch();
    if (!closing && out.eof && err.eof && !eof_reported) {
        eof_reported = true;
        if (cbs.on_eof) cbs.on_eof();
    }
}

void Capture::State::begin_close() {
    if (closing) return;
    closing = true;
    for (Pipe *p : {&out, &err}) {
        if (p->opened) {
            uv_read_stop(reinterpret_cast<uv_stream_t *>(&p->handle));
        } else if (p->fd >= 0) {
            ::close(p->fd); // never handed to libuv: still ours
        }
        ++pending_closes;
        uv_close(reinterpret_cast<uv_handle_t *>(&p->handle), on_pipe_closed);
    }
}

CaptureOptions capture_options(const unit::LogSpec &spec) {
    CaptureOptions o;
    o.max_line = static_cast<std::size_t>(std::min<std::uint64_t>(spec.max_line, max_line_limit));
    if (!spec.forward) {
        o.read_buffer = 1u << 20;
        o.grow_pipe = 1u << 20;
    }
    return o;
}

Capture::Capture(uv_loop_s *loop, int stdout_fd, int stderr_fd, CaptureOptions opts, Callbacks cbs)
    : state_(new State(loop, stdout_fd, stderr_fd, opts, std::move(cbs))) {}

Capture::~Capture() {
    state_->begin_close();
    state_->owner_alive = false;
    if (state_->closed) delete state_;
}

int Capture::start() {
    State &st = *state_;
    if (st.started || st.closing) return UV_EALREADY;
    st.started = true;
    for (State::Pipe *p : {&st.out, &st.err}) {
        if (p->fd < 0) continue;
        if (st.opts.pipe_size > 0) {
            // A bigger pipe lets a fast writer run longer between context switches. Limited by
            // /proc/sys/fs/pipe-max-size for unprivileged vigild; failure only costs speed.
            (void)::fcntl(p->fd, F_SETPIPE_SZ, static_cast<int>(st.opts.pipe_size));
        }
        const int rc = uv_pipe_open(&p->handle, p->fd);
        if (rc != 0) return rc; // fd stays ours; begin_close() closes it
        p->opened = true;
    }
    if (st.out.eof && st.err.eof) {
        st.eof_reported = true;
        if (st.cbs.on_eof) st.cbs.on_eof();
        return 0;
    }
    if (!st.paused) {
        st.start_reading(st.out);
        st.start_reading(st.err);
    }
    return 0;
}

void Capture::read_now() {
    State *st = state_; // a callback may destroy the Capture; the state outlives it until closed
    if (!st->started || st->closing) return;
    for (State::Pipe *p : {&st->out, &st->err}) {
        for (int i = 0; i < read_now_limit && p->opened && !p->eof && !st->closing; ++i) {
            uv_buf_t buf;
            on_alloc(reinterpret_cast<uv_handle_t *>(&p->handle), 0, &buf);
            ssize_t n = ::read(p->fd, buf.base, buf.len);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            const ssize_t nread = n > 0 ? n : (n == 0 ? UV_EOF : -errno);
            on_read(reinterpret_cast<uv_stream_t *>(&p->handle), nread, &buf);
            if (n <= 0) break;
        }
        if (st->closing) return;
    }
}

void Capture::pause() {
    State &st = *state_;
    if (st.paused) return;
    st.paused = true;
    for (State::Pipe *p : {&st.out, &st.err})
        if (p->opened && !p->eof && !st.closing)
            uv_read_stop(reinterpret_cast<uv_stream_t *>(&p->handle));
}

void Capture::resume() {
    State &st = *state_;
    if (!st.paused) return;
    st.paused = false;
    if (!st.started) return;
    st.start_reading(st.out);
    st.start_reading(st.err);
}

bool Capture::paused() const {
    return state_->paused;
}
bool Capture::eof() const {
    return state_->eof_reported;
}

void Capture::close(std::function<void()> on_closed) {
    if (state_->closing) return;
    state_->on_closed = std::move(on_closed);
    state_->begin_close();
}

int Capture::carried_fd(Stream s) const {
    const State::Pipe &p = s == Stream::Stdout ? state_->out : state_->err;
    return p.eof || state_->closing ? -1 : p.fd;
}

std::string_view Capture::pending(Stream s) const {
    return (s == Stream::Stdout ? state_->out : state_->err).framer.pending_bytes();
}

void Capture::preload(Stream s, std::string_view bytes) {
    State &st = *state_;
    if (st.started || st.closing) return;
    State::Pipe &p = s == Stream::Stdout ? st.out : st.err;
    p.framer.feed(bytes, [&](std::string_view line, bool continued) {
        ++st.lines;
        if (st.cbs.on_line) st.cbs.on_line(p.stream, line, continued);
    });
}

std::uint64_t Capture::bytes() const {
    return state_->bytes;
}
std::uint64_t Capture::lines() const {
    return state_->lines;
}
int Capture::read_error() const {
    return state_->read_error;
}

} // namespace vigil::log

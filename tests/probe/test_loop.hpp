// tests/probe/test_loop.hpp: a libuv loop for `sys` tests, with bounded waits.
//
// Shared by tests/{probe,notify,http}. run_until() runs the loop until a predicate holds or a
// deadline passes (scaled by VIGIL_TEST_TIMEOUT_MULTIPLIER), never longer. The destructor
// proves the code under test closed every handle: uv_loop_close() must return 0.
#pragma once

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>

namespace vigil::test {

inline int scaled_ms(int ms) {
    const char *m = std::getenv("VIGIL_TEST_TIMEOUT_MULTIPLIER");
    int k = m ? std::atoi(m) : 1;
    return ms * (k > 0 ? k : 1);
}

class TestLoop {
public:
    TestLoop() { uv_loop_init(&loop); }
    ~TestLoop() {
        settle();
        int rc = uv_loop_close(&loop);
        CHECK_MESSAGE(rc == 0, "handles left open on the loop");
        if (rc != 0) {
            uv_walk(
                &loop,
                [](uv_handle_t *h, void *) {
                    if (!uv_is_closing(h)) uv_close(h, nullptr);
                },
                nullptr);
            uv_run(&loop, UV_RUN_DEFAULT);
            uv_loop_close(&loop);
        }
    }
    TestLoop(const TestLoop &) = delete;
    TestLoop &operator=(const TestLoop &) = delete;

    // Runs the loop until pred() holds or timeout_ms (scaled) passes. Returns pred().
    bool run_until(const std::function<bool()> &pred, int timeout_ms) {
        bool expired = false;
        uv_timer_t guard;
        uv_timer_init(&loop, &guard);
        guard.data = &expired;
        uv_timer_start(
            &guard, [](uv_timer_t *t) { *static_cast<bool *>(t->data) = true; },
            static_cast<std::uint64_t>(scaled_ms(timeout_ms)), 0);
        // A timer callback may make pred() true just before the loop blocks in poll: a prepare
        // handle checks it there and uv_stop() makes that poll return at once.
        uv_prepare_t check;
        uv_prepare_init(&loop, &check);
        check.data = const_cast<std::function<bool()> *>(&pred);
        uv_prepare_start(&check, [](uv_prepare_t *p) {
            if ((*static_cast<const std::function<bool()> *>(p->data))()) uv_stop(p->loop);
        });
        while (!pred() && !expired)
            uv_run(&loop, UV_RUN_ONCE);
        uv_close(reinterpret_cast<uv_handle_t *>(&check), nullptr);
        uv_close(reinterpret_cast<uv_handle_t *>(&guard), nullptr);
        settle();
        return pred();
    }

    // Runs the loop for `ms` (for "nothing happens" checks).
    void run_for(int ms) {
        run_until([] { return false; }, ms);
    }

    // Lets pending close callbacks run.
    void settle() {
        for (int i = 0; i < 16; ++i)
            uv_run(&loop, UV_RUN_NOWAIT);
    }

    uv_loop_t loop;
};

// Plays vigild's reaper: SIGCHLD -> waitpid(-1, WNOHANG) until nothing is left, every pid handed
// to `on_reaped` (which returns whether the pid was claimed).
class TestReaper {
public:
    struct Reaped {
        int pid;
        int wstatus;
        bool claimed;
    };

    TestReaper(uv_loop_t *loop, std::function<bool(int, int)> on_reaped)
        : on_reaped_(std::move(on_reaped)) {
        sig_ = new uv_signal_t;
        uv_signal_init(loop, sig_);
        sig_->data = this;
        uv_signal_start(
            sig_, [](uv_signal_t *s, int) { static_cast<TestReaper *>(s->data)->reap(); }, SIGCHLD);
        // The signal handle alone must not keep the loop alive.
        uv_unref(reinterpret_cast<uv_handle_t *>(sig_));
    }
    ~TestReaper() {
        uv_close(reinterpret_cast<uv_handle_t *>(sig_),
                 [](uv_handle_t *h) { delete reinterpret_cast<uv_signal_t *>(h); });
    }

    void reap() {
        int ws = 0;
        for (;;) {
            int pid = waitpid(-1, &ws, WNOHANG);
            if (pid <= 0) break;
            reaped.push_back({pid, ws, on_reaped_(pid, ws)});
        }
    }

    std::vector<Reaped> reaped;

private:
    std::function<bool(int, int)> on_reaped_;
    uv_signal_t *sig_;
};

// A tiny HTTP/TCP server on 127.0.0.1 (ephemeral port) inside the test loop. It answers each
// connection, after the blank line ending the request, with `response` and closes.
class TestHttpServer {
public:
    explicit TestHttpServer(uv_loop_t *loop) : loop_(loop) {
        server_ = new uv_tcp_t;
        uv_tcp_init(loop, server_);
        server_->data = this;
        sockaddr_in a{};
        uv_ip4_addr("127.0.0.1", 0, &a);
        REQUIRE(uv_tcp_bind(server_, reinterpret_cast<sockaddr *>(&a), 0) == 0);
        REQUIRE(uv_listen(reinterpret_cast<uv_stream_t *>(server_), 64, [](uv_stream_t *s, int st) {
                    if (st == 0) static_cast<TestHttpServer *>(s->data)->accept();
                }) == 0);
        sockaddr_storage ss{};
        int len = sizeof ss;
        uv_tcp_getsockname(server_, reinterpret_cast<sockaddr *>(&ss), &len);
        port = ntohs(reinterpret_cast<sockaddr_in *>(&ss)->sin_port);
    }
    ~TestHttpServer() {
        uv_close(reinterpret_cast<uv_handle_t *>(server_),
                 [](uv_handle_t *h) { delete reinterpret_cast<uv_tcp_t *>(h); });
    }

    void respond_status(int code) {
        response = "HTTP/1.1 " + std::to_string(code) +
                   " X\r\nContent-Length: 2\r\n"
                   "Connection: close\r\n\r\nok";
    }

    int port = 0;
    int connections = 0;
    std::string response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    std::string last_request;

private:
    struct Conn {
        uv_tcp_t tcp;
        uv_write_t wr;
        TestHttpServer *srv;
        std::string in, out;
        char buf[4096];
    };

    void accept() {
        auto *c = new Conn;
        c->srv = this;
        uv_tcp_init(loop_, &c->tcp);
        c->tcp.data = c;
        if (uv_accept(reinterpret_cast<uv_stream_t *>(server_),
                      reinterpret_cast<uv_stream_t *>(&c->tcp)) != 0) {
            close(c);
            return;
        }
        ++connections;
        uv_read_start(
            reinterpret_cast<uv_stream_t *>(&c->tcp),
            [](uv_handle_t *h, size_t, uv_buf_t *b) {
                auto *cc = static_cast<Conn *>(h->data);
                *b = uv_buf_init(cc->buf, sizeof cc->buf);
            },
            [](uv_stream_t *s, ssize_t n, const uv_buf_t *) {
                auto *cc = static_cast<Conn *>(s->data);
                if (n < 0) {
                    close(cc);
                    return;
                }
                cc->in.append(cc->buf, static_cast<std::size_t>(n));
                if (cc->in.find("\r\n\r\n") == std::string::npos) return;
                uv_read_stop(s);
                cc->srv->last_request = cc->in;
                cc->out = cc->srv->response;
                uv_buf_t b = uv_buf_init(cc->out.data(), static_cast<unsigned>(cc->out.size()));
                cc->wr.data = cc;
                uv_write(&cc->wr, s, &b, 1,
                         [](uv_write_t *w, int) { close(static_cast<Conn *>(w->data)); });
            });
    }
    static void close(Conn *c) {
        uv_close(reinterpret_cast<uv_handle_t *>(&c->tcp),
                 [](uv_handle_t *h) { delete static_cast<Conn *>(h->data); });
    }

    uv_loop_t *loop_;
    uv_tcp_t *server_;
};

// A port on 127.0.0.1 with nothing listening (bound then closed; the kernel will refuse it).
inline int closed_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr *>(&a), sizeof a);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr *>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

} // namespace vigil::test

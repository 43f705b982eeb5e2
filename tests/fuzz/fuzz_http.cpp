// tests/fuzz/fuzz_http.cpp: libFuzzer target for the HTTP endpoint's request handling.
//
// The request parsing glue (http-parser callbacks, header and body limits, keep-alive,
// pipelining) lives inside the libuv server's connection, so this target drives the real
// Server: one listener on 127.0.0.1 on a private loop, and per input one TCP connection that
// writes the input (in chunks the first byte chooses, the loop running between chunks so that
// each chunk is a separate read), half-closes, and reads until the server closes. Invariants:
//  - the server answers only with HTTP/1.1 responses and always closes the connection once the
//    client has half-closed (within 5 s; the request and idle timeouts are 30 s here, so a
//    hang is a bug);
//  - after the close the server holds no connection.
// Then the pure parts on the input's first line: route() (method, target) and render_response()
// (status line, Content-Length, HEAD without body), and parse_listen_address().
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include <uv.h>

#include "vigil/http/server.hpp"

namespace {

using namespace vigil::http;

void check(bool ok, const char *what) {
    if (ok) return;
    std::fprintf(stderr, "fuzz_http: invariant broken: %s\n", what);
    std::abort();
}

Handlers handlers() {
    Handlers h;
    h.snapshot = [] {
        Snapshot s;
        s.daemon.version = "0.1.0";
        s.daemon.rss_bytes = 4096;
        UnitFigures web;
        web.name = "web";
        web.state = "running";
        web.goal_up = web.up = web.ready = true;
        UnitFigures db;
        db.name = "db\"\\\n";
        db.state = "backoff";
        db.goal_up = true;
        db.last_exit_code = 1;
        s.units = {web, db};
        return s;
    };
    h.status_json = [] { return std::string("{\"units\":[]}\n"); };
    return h;
}

struct World {
    uv_loop_t loop{};
    std::unique_ptr<Server> server;
    sockaddr_in addr{};
};

World *world = nullptr;

void run_loop() {
    uv_run(&world->loop, UV_RUN_NOWAIT);
}

// Reads what is available; returns false at EOF or on a reset.
bool drain(int fd, std::string &got) {
    char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            got.append(buf, static_cast<std::size_t>(n));
            continue;
        }
        if (n == 0) return false;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        return false; // ECONNRESET: the server closed with unread input
    }
}

void check_server(std::string_view input) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    check(fd >= 0, "socket()");
    // Linger 0: close() resets instead of leaving a TIME_WAIT socket per input, which would use
    // up the ephemeral ports within a minute.
    linger lg{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    int rc = connect(fd, reinterpret_cast<const sockaddr *>(&world->addr), sizeof world->addr);
    if (rc != 0 && errno == EINTR) {
        // libFuzzer's SIGALRM (-timeout) interrupted it; the connection goes on being made.
        pollfd p{fd, POLLOUT, 0};
        while (poll(&p, 1, 5000) < 0 && errno == EINTR) {
        }
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        rc = err == 0 ? 0 : -1;
        errno = err;
    }
    if (rc != 0) {
        std::perror("fuzz_http: connect");
        std::abort();
    }
    const std::size_t chunk = static_cast<unsigned char>(input[0]) % 32 + 1;
    input.remove_prefix(1);
    std::string got;
    bool open = true;
    while (!input.empty() && open) {
        std::size_t n = chunk < input.size() ? chunk : input.size();
        ssize_t w = send(fd, input.data(), n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0)
            input.remove_prefix(static_cast<std::size_t>(w));
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            break; // the server closed the connection (400, 413, 431, Connection: close)
        run_loop();
        open = drain(fd, got);
    }
    shutdown(fd, SHUT_WR);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (open) {
        run_loop();
        open = drain(fd, got);
        check(std::chrono::steady_clock::now() < deadline,
              "the server closes a half-closed connection");
    }
    close(fd);
    for (int i = 0; i < 4; ++i)
        run_loop();
    check(world->server->connections() == 0, "no connection left after the close");
    check(got.empty() || got.rfind("HTTP/1.1 ", 0) == 0, "answers are HTTP/1.1 responses");
}

void check_pure(std::string_view input) {
    std::string_view line = input.substr(0, input.find_first_of("\r\n"));
    auto sp = line.find(' ');
    std::string_view method = line.substr(0, sp);
    std::string_view target = sp == std::string_view::npos ? "" : line.substr(sp + 1);
    target = target.substr(0, target.find(' '));
    Response r = route(method, target, handlers());
    check(r.status == 200 || r.status == 404 || r.status == 405 || r.status == 503,
          "route() answers 200, 404, 405 or 503");
    check((r.status == 405) == !r.allow.empty(), "a 405 and only a 405 says what is allowed");
    for (bool head : {false, true}) {
        std::string out = render_response(r, head, !head);
        std::string status_line = "HTTP/1.1 " + std::to_string(r.status) + " ";
        check(out.rfind(status_line, 0) == 0, "the status line comes first");
        check(out.find("Content-Length: " + std::to_string(r.body.size()) + "\r\n") !=
                  std::string::npos,
              "Content-Length is the body's");
        auto end = out.find("\r\n\r\n");
        check(end != std::string::npos, "the headers end");
        check(out.size() - (end + 4) == (head ? 0 : r.body.size()), "the body follows (not HEAD)");
    }
    if (auto a = parse_listen_address(line))
        check(a->second >= 0 && a->second <= 65535 && !a->first.empty(), "a listen address");
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    world = new World;
    check(uv_loop_init(&world->loop) == 0, "uv_loop_init");
    // Deadlines far beyond the 5 s this target waits, so that a hang shows as one.
    Server::Options options;
    options.request_timeout = vigil::Duration{30'000};
    options.idle_timeout = vigil::Duration{30'000};
    auto opened = Server::listen(&world->loop, "127.0.0.1", 0, options, handlers());
    if (!opened.server) {
        std::fprintf(stderr, "fuzz_http: %s\n", opened.error.c_str());
        std::abort();
    }
    world->server = std::move(opened.server);
    world->addr.sin_family = AF_INET;
    world->addr.sin_port = htons(static_cast<std::uint16_t>(world->server->port()));
    world->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    std::string_view input(reinterpret_cast<const char *>(data), size);
    if (input.empty()) return 0;
    check_server(input);
    check_pure(input.substr(1));
    return 0;
}

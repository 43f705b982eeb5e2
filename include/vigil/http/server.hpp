// vigil/http/server.hpp: vigild's HTTP endpoint for orchestrators (`vigild --http ADDR`).
//
//   GET /healthz  200 "ok": the loop is alive (it answered)
//   GET /readyz   200 when every unit that should run is running and ready, else 503; JSON body
//                 {"ready": bool, "not_ready": ["db", ...]}
//   GET /metrics  Prometheus text format (metrics.hpp)
//   GET /status   the JSON of `vigilctl status --json`, from the daemon's callback
// HEAD is answered like GET without a body; other methods get 405, other paths 404.
//
// Requests are parsed by Debian's libhttp-parser. Limits keep one client from hurting vigild, and
// in particular from failing the orchestrator's liveness probe (which would get the pod killed):
//  - request line plus headers over `max_header_bytes` get 431, bodies over 64 KiB 413, a
//    malformed request 400; the connection is then closed;
//  - a request must arrive whole within `request_timeout`, counted from the connection's start
//    (first request) or from the request's first byte (later ones): bytes trickling in do not
//    extend it (slowloris);
//  - between requests a kept-alive connection may stay idle for `idle_timeout`;
//  - at `max_connections` a new connection is not refused: an open one is closed to make room
//    (evicted_total() counts them), the one idle or incomplete the longest among those of the
//    client address (IPv6: its /64) that holds the most connections, the newcomer included.
//    So one address that floods or trickles evicts only its own connections, and a probe from
//    another address, answered within milliseconds of connecting, always gets in.
//  - one answer at a time: once a request is complete, nothing more of that connection is read
//    or parsed until its answer is written (pipelined requests wait in the kernel's buffers),
//    so a connection holds at most one answer and gets at most one request answered per loop
//    iteration; a client that sends requests and never reads the answers costs vigild one
//    answer, and its connection is closed after `idle_timeout`;
//  - answers not yet written, all connections together, are capped at `max_unsent_bytes`:
//    past it the connection holding the most is closed (dropped_total() counts them), though a
//    single answer, however large, is never refused.
// The listen backlog is the kernel's largest by default (4096, clamped to net.core.somaxconn),
// so that a burst of connections while vigild is not scheduled does not drop a probe's SYN.
// Keep-alive follows HTTP/1.1 (`Connection: close` honoured, HTTP/1.0 closes unless it asks for
// keep-alive); pipelined requests are answered in order.
//
// No exception escapes into libuv or http-parser: a failing handler gives 500, a failed
// allocation closes that connection.
//
// Everything runs on the daemon's loop: one listening handle, one prepare handle (active only
// while a connection waits to resume parsing), and per open connection one tcp handle and one
// deadline timer. With no connection open nothing is armed.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vigil/http/metrics.hpp"
#include "vigil/time.hpp"

struct uv_loop_s;
struct uv_tcp_s;
struct uv_prepare_s;

namespace vigil::http {

struct Response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
    std::string allow; // for 405: the Allow header
};

// What the daemon provides. Both are called on the loop, once per request that needs them.
struct Handlers {
    std::function<Snapshot()> snapshot;       // /readyz, /metrics
    std::function<std::string()> status_json; // /status
};

// The answer to one request (pure given the handlers). `target` is the request target as sent;
// the query string is ignored.
Response route(std::string_view method, std::string_view target, const Handlers &h);

// The bytes of a response. `head`: headers only (Content-Length still that of the body).
std::string render_response(const Response &r, bool head, bool keep_alive);

// "127.0.0.1:9100", "[::1]:9100", "localhost:9100" or ":9100" (all interfaces, IPv4) ->
// (host, port). nullopt when malformed or the port is not 0..65535.
std::optional<std::pair<std::string, int>> parse_listen_address(std::string_view addr);

class Server {
public:
    struct Options {
        std::size_t max_header_bytes = 8 * 1024;
        Duration idle_timeout{30'000};   // kept-alive, between requests
        Duration request_timeout{5'000}; // a whole request, from its first byte
        std::size_t max_connections = 64;
        std::size_t max_unsent_bytes = std::size_t{32} << 20; // all connections together
    };
    struct OpenResult {
        std::unique_ptr<Server> server;
        std::string error; // "listen 127.0.0.1:9100: address already in use"
    };

    // Binds and listens; port 0 picks a free port (see port()). Host must be an IP literal or
    // "localhost" (the listener is set up before the loop runs: no DNS).
    static OpenResult listen(uv_loop_s *loop, const std::string &host, int port, Options options,
                             Handlers handlers);
    // Continuity across an exec of vigild: listens on the socket the old binary had (fd()),
    // which kept the connections that came meanwhile in its backlog. The descriptor is the
    // Server's, or closed on failure.
    static OpenResult adopt(uv_loop_s *loop, int fd, Options options, Handlers handlers);
    int fd() const noexcept;
    // Closes the listener and every connection.
    ~Server();
    Server(const Server &) = delete;
    Server &operator=(const Server &) = delete;

    int port() const noexcept { return port_; }
    std::size_t connections() const noexcept { return conns_.size(); }
    std::uint64_t requests_total() const noexcept { return requests_; }
    std::uint64_t rejected_total() const noexcept { return rejected_; } // 400/413/431/500
    std::uint64_t evicted_total() const noexcept { return evicted_; }   // closed to make room
    // Closed because the answers waiting for all clients passed max_unsent_bytes.
    std::uint64_t dropped_total() const noexcept { return dropped_; }
    // Bytes of answers handed to libuv and not yet written, all connections together.
    std::size_t unsent_bytes() const noexcept { return unsent_; }

    struct Conn; // one client connection (server.cpp)
    // A client's address as eviction groups clients: an IPv4 address, or an IPv6 address's /64.
    using PeerKey = std::array<unsigned char, 17>;

private:
    Server(uv_loop_s *loop, Options options, Handlers handlers);
    uv_tcp_s *make_listener();
    int start_accepting();
    void on_connection();
    void enforce_unsent() noexcept;
    void arm_resume();
    void forget_peer(const PeerKey &peer) noexcept; // one connection of `peer` left conns_
    void resume_all() noexcept;

    uv_loop_s *loop_;
    Options options_;
    Handlers handlers_;
    uv_tcp_s *listener_ = nullptr;
    uv_prepare_s *resume_ = nullptr; // runs resume_all() while ready_ is not empty
    int port_ = 0;
    std::set<Conn *> conns_;
    std::map<PeerKey, std::size_t> per_peer_; // connections in conns_ by client address
    std::vector<Conn *> ready_; // answered, to resume parsing on the next loop iteration
    std::size_t unsent_ = 0;
    std::uint64_t requests_ = 0, rejected_ = 0, evicted_ = 0, dropped_ = 0;
};

} // namespace vigil::http

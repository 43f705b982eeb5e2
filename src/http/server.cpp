// vigild's HTTP endpoint: see vigil/http/server.hpp.
#include "vigil/http/server.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <nlohmann/json.hpp>

#include <http_parser.h>
#include <uv.h>

namespace vigil::http {

namespace {

constexpr std::size_t max_body_bytes = 64 * 1024;
// The listen backlog: connections the kernel completes and queues while vigild has not yet
// accepted them. A burst larger than the backlog (1000 connections while vigild is not
// scheduled) makes the kernel drop the SYNs beyond it, a liveness probe's among them, and TCP
// resends a dropped SYN only after a second, the timeout of a Kubernetes probe. So the backlog
// is as large as Linux allows by default (SOMAXCONN, 4096); the kernel clamps it to
// net.core.somaxconn itself. Queued connections cost kernel memory, not vigild's: accepted,
// they are evicted at max_connections like any other.
constexpr int listen_backlog = 4096;

const char *reason(int status) {
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 413:
        return "Payload Too Large";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return http_status_str(static_cast<http_status>(status));
    }
}

Response text(int status, std::string body) {
    Response r;
    r.status = status;
    r.body = std::move(body);
    return r;
}

Response json(int status, std::string body) {
    Response r;
    r.status = status;
    r.content_type = "application/json";
    r.body = std::move(body);
    return r;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Pure parts

Response route(std::string_view method, std::string_view target, const Handlers &h) {
    if (method != "GET" && method != "HEAD") {
        Response r = text(405, "method not allowed\n");
        r.allow = "GET, HEAD";
        return r;
    }
    std::string_view path = target.substr(0, target.find_first_of("?#"));
    if (path == "/healthz") return text(200, "ok\n");
    if (path == "/readyz") {
        Snapshot s = h.snapshot ? h.snapshot() : Snapshot{};
        auto missing = not_ready(s);
        nlohmann::json body{{"ready", missing.empty()}, {"not_ready", missing}};
        return json(missing.empty() ? 200 : 503, body.dump() + "\n");
    }
    if (path == "/metrics") {
        Response r = text(200, render_metrics(h.snapshot ? h.snapshot() : Snapshot{}));
        r.content_type = "text/plain; version=0.0.4; charset=utf-8";
        return r;
    }
    if (path == "/status") return json(200, h.status_json ? h.status_json() : std::string("{}\n"));
    return text(404, "not found; try /healthz /readyz /metrics /status\n");
}

std::string render_response(const Response &r, bool head, bool keep_alive) {
    std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) + "\r\n";
    out += "Content-Type: " + r.content_type + "\r\n";
    out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
    out += "Cache-Control: no-store\r\n";
    if (!r.allow.empty()) out += "Allow: " + r.allow + "\r\n";
    out += keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
    if (!head) out += r.body;
    return out;
}

std::optional<std::pair<std::string, int>> parse_listen_address(std::string_view a) {
    std::string host;
    std::string_view port_text;
    if (!a.empty() && a.front() == '[') {
        auto close = a.find(']');
        if (close == std::string_view::npos || close + 1 >= a.size() || a[close + 1] != ':')
            return std::nullopt;
        host = std::string(a.substr(1, close - 1));
        port_text = a.substr(close + 2);
    } else {
        auto colon = a.rfind(':');
        if (colon == std::string_view::npos) return std::nullopt;
        host = std::string(a.substr(0, colon));
        if (host.find(':') != std::string::npos)
            return std::nullopt; // an IPv6 literal needs brackets
        port_text = a.substr(colon + 1);
    }
    if (host.empty()) host = "0.0.0.0";
    if (port_text.empty() || port_text.size() > 5) return std::nullopt;
    int port = 0;
    for (char c : port_text) {
        if (c < '0' || c > '9') return std::nullopt;
        port = port * 10 + (c - '0');
    }
    if (port > 65535) return std::nullopt;
    return std::make_pair(host, port);
}

// ---------------------------------------------------------------------------------------------
// Client addresses, as eviction groups them: an IPv4 address, or an IPv6 address's /64 (one
// host or site usually has a whole /64, so a /128 would let it take many seats).
namespace {

using PeerKey = Server::PeerKey;

PeerKey peer_key(const uv_tcp_t *tcp) {
    PeerKey k{};
    sockaddr_storage ss{};
    int len = sizeof ss;
    if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr *>(&ss), &len) != 0) return k;
    if (ss.ss_family == AF_INET) {
        k[0] = 4;
        std::memcpy(&k[1], &reinterpret_cast<const sockaddr_in *>(&ss)->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        k[0] = 6;
        std::memcpy(&k[1], &reinterpret_cast<const sockaddr_in6 *>(&ss)->sin6_addr, 8);
    }
    return k;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// Conn: one client connection.
//
// It owns two handles (tcp, deadline timer); its memory is freed when both close callbacks ran.
// `server` becomes null when the Server goes away first.
//
// Deadlines: a connection is always in one phase, and the phase's deadline is set when the
// phase begins; bytes arriving never move it (a client dribbling a byte at a time gets no more
// time than one that sends nothing).
//   Request: from the connection's start (first request) or from the first byte of a later
//            request, the whole request must arrive within `request_timeout`.
//   Idle:    after an answer, on a kept-alive connection, the next request must start within
//            `idle_timeout`; the same deadline bounds the time the client takes to read it.
// `since` is when the phase began: at the connection cap the connection with the oldest `since`
// (the one idle or incomplete the longest) is closed to make room for the newcomer.
//
// One answer at a time: when a request is complete its answer is rendered and handed to one
// uv_write(), the parser is paused and reading stops; the bytes of the read not yet parsed
// (pipelined requests) stay in `buf` (held_off, held_len). When the write is done the
// connection waits for the server's prepare handle (Server::resume_all), which resumes parsing
// from the held bytes first, then from the socket. Resuming in the write callback itself would
// not do: libuv runs write callbacks up to nine times per loop iteration, so a connection could
// have ~10 answers rendered per iteration. So a connection gets at most one request answered
// per loop iteration (between two runs of the prepare handle: one from its held bytes there, or
// one from a read during the poll), holds at most one answer, and a client that never reads its
// answers gets nothing more parsed: its requests wait in the kernel's buffers, not in vigild.
//
// No exception leaves a libuv or http-parser callback: http-parser is C, and unwinding through
// it (or through libuv) would terminate vigild. Every entry point catches and closes the
// connection instead.
struct Server::Conn {
    enum class Phase : std::uint8_t { Request, Idle };

    Server *server;
    uv_tcp_t tcp{};
    uv_timer_t deadline{};
    int open_handles = 0;
    bool closing = false;
    bool reading = false;
    Phase phase = Phase::Request;
    std::uint64_t since = 0; // uv_now() when the phase began
    PeerKey peer{};          // the client's address (IPv6: its /64), for eviction
    http_parser parser{};
    http_parser_settings settings{};
    std::string url;
    std::size_t header_bytes = 0;
    std::size_t body_bytes = 0;
    int reject = 0;           // 413/431/500 decided inside a parser callback
    bool close_after = false; // the last queued response ends the connection
    std::size_t unsent = 0;   // bytes of the answer in flight (counted in server->unsent_)
    std::size_t held_off = 0; // buf[held_off, held_off + held_len): read, not parsed yet
    std::size_t held_len = 0;
    char buf[4096];

    explicit Conn(Server *s) : server(s) {}

    struct Write {
        uv_write_t req;
        std::string data;
        Conn *conn;
    };

    void close() noexcept {
        if (closing) return;
        closing = true;
        if (server) {
            server->unsent_ -= unsent; // the write is cancelled and its buffer freed
            if (server->conns_.erase(this) != 0) server->forget_peer(peer);
            std::erase(server->ready_, this);
            server = nullptr;
        }
        unsent = 0;
        auto done = [](uv_handle_t *h) {
            auto *c = static_cast<Conn *>(h->data);
            if (--c->open_handles == 0) delete c;
        };
        uv_close(reinterpret_cast<uv_handle_t *>(&deadline), done);
        uv_close(reinterpret_cast<uv_handle_t *>(&tcp), done);
    }

    // Enters `p` now: its deadline counts from this moment.
    void enter(Phase p) {
        if (!server || closing) return;
        phase = p;
        since = uv_now(tcp.loop);
        Duration limit =
            p == Phase::Request ? server->options_.request_timeout : server->options_.idle_timeout;
        uv_timer_start(
            &deadline, [](uv_timer_t *t) { static_cast<Conn *>(t->data)->close(); },
            static_cast<std::uint64_t>(std::max<std::int64_t>(0, limit.count())), 0);
    }

    void start_reading() {
        if (reading || closing) return;
        reading = true;
        int rc = uv_read_start(
            reinterpret_cast<uv_stream_t *>(&tcp),
            [](uv_handle_t *h, size_t, uv_buf_t *b) {
                auto *c = static_cast<Conn *>(h->data);
                *b = uv_buf_init(c->buf, sizeof c->buf);
            },
            [](uv_stream_t *s, ssize_t n, const uv_buf_t *) {
                auto *c = static_cast<Conn *>(s->data);
                try {
                    c->on_read(n);
                } catch (...) {
                    c->close(); // bad_alloc: drop this client, keep vigild
                }
            });
        if (rc < 0) close();
    }

    void stop_reading() {
        if (reading) uv_read_stop(reinterpret_cast<uv_stream_t *>(&tcp));
        reading = false;
    }

    // Hands one answer to libuv. The caller has stopped parsing until on_written().
    void send(const Response &r, bool head, bool keep_alive) {
        auto w = std::make_unique<Write>(Write{{}, render_response(r, head, keep_alive), this});
        w->req.data = w.get();
        uv_buf_t b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
        int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t *>(&tcp), &b, 1,
                          [](uv_write_t *req, int status) {
                              std::unique_ptr<Write> wr(static_cast<Write *>(req->data));
                              Conn *c = wr->conn;
                              wr.reset();
                              try {
                                  c->on_written(status);
                              } catch (...) {
                                  c->close();
                              }
                          });
        if (rc < 0) {
            close();
            return;
        }
        unsent = w->data.size();
        w.release(); // owned by the write request until its callback
        if (server) {
            server->unsent_ += unsent;
            server->enforce_unsent(); // may close this connection
        }
    }

    void on_written(int status) {
        if (closing) return; // cancelled by close(), which uncounted it
        if (server) server->unsent_ -= unsent;
        unsent = 0;
        if (status < 0 || close_after || !server) {
            close();
            return;
        }
        // The answer is out: the next request may be parsed, on the next loop iteration.
        server->ready_.push_back(this);
        server->arm_resume();
    }

    // From Server::resume_all(): parses what was held back, or reads on.
    void resume() {
        if (closing) return;
        http_parser_pause(&parser, 0);
        if (held_len > 0)
            parse(buf + held_off, held_len);
        else
            start_reading();
    }

    // Answers an unusable request and ends the connection once the answer is written.
    void refuse(int status, const std::string &why) {
        if (server) ++server->rejected_;
        close_after = true;
        stop_reading();
        send(text(status, why + "\n"), false, false);
    }

    void on_read(ssize_t n) {
        if (closing || close_after) return;
        if (n < 0) {
            close(); // EOF or error: nothing more to answer (queued writes are cancelled)
            return;
        }
        if (n == 0) return;
        parse(buf, static_cast<std::size_t>(n));
    }

    // Parses bytes of buf until a request is complete (its answer then pauses the parser) or
    // the bytes run out. What a pause leaves unparsed is held for resume().
    void parse(const char *data, std::size_t len) {
        held_len = 0;
        std::size_t used = http_parser_execute(&parser, &settings, data, len);
        if (closing || close_after)
            return; // a response closing the connection was queued from a callback
        if (reject == 431) {
            refuse(431, "request header fields too large");
            return;
        }
        if (reject == 413) {
            refuse(413, "request body too large");
            return;
        }
        if (reject == 500) {
            refuse(500, "internal error");
            return;
        }
        auto err = static_cast<http_errno>(parser.http_errno);
        if (err == HPE_PAUSED) {
            used = std::min(used, len);
            held_off = static_cast<std::size_t>(data - buf) + used;
            held_len = len - used;
            return;
        }
        if (err != HPE_OK) {
            refuse(400, std::string("bad request: ") + http_errno_description(err));
            return;
        }
        start_reading(); // all parsed and nothing to answer yet: the request goes on
    }

    int add_header_bytes(std::size_t len) {
        header_bytes += len;
        if (server && header_bytes > server->options_.max_header_bytes) {
            reject = 431;
            return 1; // stops the parser
        }
        return 0;
    }

    // Runs a parser callback's body; an exception stops the parser and answers 500.
    template <class F> static int guarded(http_parser *p, F body) noexcept {
        auto *c = static_cast<Conn *>(p->data);
        try {
            return body(c);
        } catch (...) {
            c->reject = 500;
            return 1;
        }
    }

    void init_parser() {
        http_parser_init(&parser, HTTP_REQUEST);
        parser.data = this;
        http_parser_settings_init(&settings);
        settings.on_message_begin = [](http_parser *p) {
            return guarded(p, [](Conn *c) {
                c->url.clear();
                c->header_bytes = 0;
                c->body_bytes = 0;
                // The first byte of a request on a kept-alive connection: its deadline
                // starts now and is not moved by the bytes that follow.
                if (c->phase == Phase::Idle) c->enter(Phase::Request);
                return 0;
            });
        };
        settings.on_url = [](http_parser *p, const char *at, size_t len) {
            return guarded(p, [at, len](Conn *c) {
                if (c->add_header_bytes(len)) return 1;
                c->url.append(at, len);
                return 0;
            });
        };
        settings.on_header_field = [](http_parser *p, const char *, size_t len) {
            return guarded(p, [len](Conn *c) { return c->add_header_bytes(len + 4); });
        };
        settings.on_header_value = [](http_parser *p, const char *, size_t len) {
            return guarded(p, [len](Conn *c) { return c->add_header_bytes(len); });
        };
        settings.on_body = [](http_parser *p, const char *, size_t len) {
            return guarded(p, [len](Conn *c) {
                c->body_bytes += len;
                if (c->body_bytes > max_body_bytes) {
                    c->reject = 413;
                    return 1;
                }
                return 0;
            });
        };
        settings.on_message_complete = [](http_parser *p) {
            return guarded(p, [p](Conn *c) {
                if (!c->server || c->close_after) return 1;
                ++c->server->requests_;
                auto method = static_cast<http_method>(p->method);
                bool keep = http_should_keep_alive(p) != 0;
                Response r;
                try {
                    r = route(http_method_str(method), c->url, c->server->handlers_);
                } catch (const std::exception &e) {
                    // A failing snapshot must not take vigild down with it.
                    r = text(500, std::string("internal error: ") + e.what() + "\n");
                } catch (...) {
                    r = text(500, "internal error\n");
                }
                // Nothing more is read or parsed until this answer is written (see above).
                c->stop_reading();
                if (!keep) c->close_after = true;
                c->send(r, method == HTTP_HEAD, keep);
                if (c->closing) return 1;
                // Until the next request begins the connection is idle; with close_after the
                // same deadline bounds the time the client takes to read the answer.
                c->enter(Phase::Idle);
                // After `Connection: close` the rest of the buffer is ignored.
                if (c->close_after) return 1;
                http_parser_pause(p, 1);
                return 0;
            });
        };
    }
};

// ---------------------------------------------------------------------------------------------
// Server

Server::Server(uv_loop_s *loop, Options options, Handlers handlers)
    : loop_(loop), options_(options), handlers_(std::move(handlers)) {}

Server::OpenResult Server::listen(uv_loop_s *loop, const std::string &host, int port,
                                  Options options, Handlers handlers) {
    OpenResult r;
    std::string literal = host == "localhost" ? std::string("127.0.0.1") : host;
    std::string where = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
                        std::to_string(port);
    sockaddr_storage ss{};
    if (uv_ip4_addr(literal.c_str(), port, reinterpret_cast<sockaddr_in *>(&ss)) != 0 &&
        uv_ip6_addr(literal.c_str(), port, reinterpret_cast<sockaddr_in6 *>(&ss)) != 0) {
        r.error = "listen " + where + ": not an IP address";
        return r;
    }
    std::unique_ptr<Server> s(new Server(loop, options, std::move(handlers)));
    auto *tcp = s->make_listener();
    int rc = uv_tcp_bind(tcp, reinterpret_cast<sockaddr *>(&ss), 0);
    if (rc == 0) rc = s->start_accepting();
    if (rc < 0) {
        r.error = "listen " + where + ": " + uv_strerror(rc);
        return r; // ~Server closes the handle
    }
    r.server = std::move(s);
    return r;
}

Server::OpenResult Server::adopt(uv_loop_s *loop, int fd, Options options, Handlers handlers) {
    OpenResult r;
    std::unique_ptr<Server> s(new Server(loop, options, std::move(handlers)));
    auto *tcp = s->make_listener();
    int rc = uv_tcp_open(tcp, fd);
    if (rc != 0) ::close(fd);
    if (rc == 0) rc = s->start_accepting();
    if (rc < 0) {
        r.error = "listen (kept across an exec): " + std::string(uv_strerror(rc));
        return r;
    }
    r.server = std::move(s);
    return r;
}

int Server::fd() const noexcept {
    uv_os_fd_t fd = -1;
    if (!listener_ || uv_fileno(reinterpret_cast<const uv_handle_t *>(listener_), &fd) != 0)
        return -1;
    return fd;
}

uv_tcp_t *Server::make_listener() {
    auto *prep = new uv_prepare_t;
    uv_prepare_init(loop_, prep);
    prep->data = this;
    resume_ = prep;
    auto *tcp = new uv_tcp_t;
    uv_tcp_init(loop_, tcp);
    tcp->data = this;
    listener_ = reinterpret_cast<uv_tcp_s *>(tcp);
    return tcp;
}

// Listens on the bound listener and learns its port: 0 or a libuv error.
int Server::start_accepting() {
    auto *tcp = reinterpret_cast<uv_tcp_t *>(listener_);
    int rc =
        uv_listen(reinterpret_cast<uv_stream_t *>(tcp), listen_backlog, [](uv_stream_t *l, int st) {
            // st: EMFILE, libuv already accepted and closed the connection
            if (st != 0) return;
            auto *srv = static_cast<Server *>(l->data);
            try {
                srv->on_connection();
            } catch (...) {
                // bad_alloc: the connection stays queued for the next wake-up
            }
        });
    if (rc < 0) return rc;
    sockaddr_storage bound{};
    int len = sizeof bound;
    uv_tcp_getsockname(tcp, reinterpret_cast<sockaddr *>(&bound), &len);
    port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6 *>(&bound)->sin6_port
                                              : reinterpret_cast<sockaddr_in *>(&bound)->sin_port);
    return 0;
}

Server::~Server() {
    if (resume_)
        uv_close(reinterpret_cast<uv_handle_t *>(resume_),
                 [](uv_handle_t *h) { delete reinterpret_cast<uv_prepare_t *>(h); });
    if (listener_)
        uv_close(reinterpret_cast<uv_handle_t *>(listener_),
                 [](uv_handle_t *h) { delete reinterpret_cast<uv_tcp_t *>(h); });
    auto conns = conns_;
    for (Conn *c : conns)
        c->close();
}

// Past max_unsent_bytes of answers not yet written, the connection holding the most (the
// oldest among equals) is closed, until the total is back under the cap. A single answer is
// never refused, however large: with one connection holding answers, nothing is closed.
void Server::enforce_unsent() noexcept {
    while (unsent_ > options_.max_unsent_bytes) {
        Conn *worst = nullptr;
        std::size_t holders = 0;
        for (Conn *c : conns_) {
            if (c->unsent == 0) continue;
            ++holders;
            if (!worst || c->unsent > worst->unsent ||
                (c->unsent == worst->unsent && c->since < worst->since))
                worst = c;
        }
        if (holders < 2) return;
        ++dropped_;
        worst->close();
    }
}

void Server::arm_resume() {
    if (resume_ && !uv_is_active(reinterpret_cast<uv_handle_t *>(resume_)))
        uv_prepare_start(resume_, [](uv_prepare_t *p) {
            if (auto *srv = static_cast<Server *>(p->data)) srv->resume_all();
        });
}

// Once per loop iteration while connections wait: each resumes (parses at most one request).
void Server::resume_all() noexcept {
    std::vector<Conn *> ready;
    ready.swap(ready_);
    uv_prepare_stop(resume_);
    for (Conn *c : ready) {
        try {
            c->resume();
        } catch (...) {
            c->close(); // bad_alloc: drop this client, keep vigild
        }
    }
}

void Server::forget_peer(const PeerKey &peer) noexcept {
    const auto it = per_peer_.find(peer);
    if (it != per_peer_.end() && --it->second == 0) per_peer_.erase(it);
}

void Server::on_connection() {
    auto c = std::make_unique<Conn>(this);
    uv_tcp_init(loop_, &c->tcp);
    if (uv_accept(reinterpret_cast<uv_stream_t *>(listener_),
                  reinterpret_cast<uv_stream_t *>(&c->tcp)) != 0) {
        c->tcp.data = c.get();
        c->open_handles = 1;
        uv_close(reinterpret_cast<uv_handle_t *>(&c->tcp),
                 [](uv_handle_t *h) { delete static_cast<Conn *>(h->data); });
        c.release();
        return;
    }
    uv_timer_init(loop_, &c->deadline);
    c->tcp.data = c.get();
    c->deadline.data = c.get();
    c->open_handles = 2;
    Conn *conn = c.release(); // freed by its close callbacks
    conn->peer = peer_key(&conn->tcp);
    if (conns_.size() >= options_.max_connections && options_.max_connections > 0) {
        // At the cap a connection makes room: a slow client (one byte at a time, or none)
        // cannot keep the orchestrator's probes out. The victim is the stalest connection of
        // the client address that holds the most (the newcomer's included), so that one
        // address, however fast it reconnects, only ever evicts its own connections once it
        // holds more than anybody else.
        Conn *victim = nullptr;
        std::size_t victim_count = 0;
        for (Conn *x : conns_) {
            const auto held = per_peer_.find(x->peer);
            const std::size_t n =
                (held == per_peer_.end() ? 0 : held->second) + (x->peer == conn->peer ? 1 : 0);
            if (!victim || n > victim_count || (n == victim_count && x->since < victim->since)) {
                victim = x;
                victim_count = n;
            }
        }
        if (victim) {
            ++evicted_;
            victim->close();
        }
    }
    if (conns_.size() >= options_.max_connections) { // max_connections 0: serve nobody
        ++rejected_;
        conn->close();
        return;
    }
    try {
        ++per_peer_[conn->peer];
    } catch (...) {
        conn->close();
        throw;
    }
    try {
        conns_.insert(conn);
    } catch (...) {
        forget_peer(conn->peer); // close() forgets the peer of a member of conns_ only
        conn->close();
        throw;
    }
    conn->init_parser();
    conn->enter(Conn::Phase::Request); // the first request is due from the connection's start
    conn->start_reading();
}

} // namespace vigil::http

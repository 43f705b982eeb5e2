// vigil/ctl/server.hpp: the control socket server that vigild embeds (libuv).
//
// The server owns the listening Unix socket and the connections; it speaks the protocol of
// vigil/ctl/protocol.hpp and hands each valid, permitted request to the daemon's Handler.
// The daemon answers through the Session, at once or later (streams).
//
// Socket setup (listen()):
//  - the socket's folder is created (0700, or 0750 owned by the socket group) when missing;
//    an existing folder is left as it is;
//  - an old socket file is removed only if nobody answers on it (a crashed vigild's leftover);
//    if a server answers, listen() fails with -EADDRINUSE;
//  - the socket file is 0600, or 0660 with group `socket_group`.
// Access (checked per connection with SO_PEERCRED, and SO_PEERGROUPS for supplementary groups):
//  - root and vigild's own euid: every command;
//  - members of `socket_group` (primary or supplementary): read-only commands
//    (status, tree, events, logs, version); anything else gets `forbidden`;
//  - anyone else: `forbidden` for the first request, then the connection is closed.
//  Every refusal is reported through `log`.
// Limits (so that no client can block the loop, other clients, or grow vigild's memory):
//  - a request line longer than `max_line`: a too_long error, then disconnect;
//  - a connection with no request in progress and no complete request within
//    `idle_timeout`: disconnected (open streams and unanswered requests keep it alive);
//  - unsent output that would pass `max_output` (a client that stopped reading):
//    disconnected; one answer alone is never refused, however large;
//  - more than `max_sessions` connections: the new one gets an error and is closed.
// Writes never block: output is queued per session and written as the socket accepts it.
// The server does its own non-blocking I/O on the descriptors (uv_poll_t, send(2) with
// MSG_NOSIGNAL) rather than libuv streams, because libuv writes with write(2) and a client that
// hangs up would otherwise raise SIGPIPE in vigild. A client that half-closes after its request
// (`socat`, `nc -N`) still gets its answers; the connection closes when they are written.
//
// Lifetime: Sessions are shared_ptr; the daemon may keep one (for a stream) as long as it
// likes. Once a session has closed, its send functions return false and do nothing, so a
// stale handle is harmless. Server::close() closes every session; the daemon must run the
// loop until close's callback before destroying the Server.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>

#include <uv.h>

#include "vigil/ctl/protocol.hpp"
#include "vigil/time.hpp"

namespace vigil::ctl {

struct ServerOptions {
    std::string path;                  // the socket file
    std::optional<gid_t> socket_group; // socket 0660 with this group; members: read-only
    Duration idle_timeout{30'000};
    std::size_t max_line = max_request_line;
    std::size_t max_output = std::size_t{8} << 20; // 8 MiB of unsent output per session
    std::size_t max_sessions = 256;
    std::string server_version = VIGIL_VERSION; // reported in the hello
    // Refusals and disconnects of misbehaving clients, as one line each without a newline,
    // e.g. "control: refused uid 65534 (pid 4242): stop needs root or uid 0".
    std::function<void(std::string_view)> log;
};

class Server;

// One client connection.
class Session : public std::enable_shared_from_this<Session> {
public:
    ~Session();
    Session(const Session &) = delete;
    Session &operator=(const Session &) = delete;

    std::uint64_t id() const noexcept { return id_; } // unique within the server, from 1
    uid_t uid() const noexcept { return uid_; }
    gid_t gid() const noexcept { return gid_; }
    pid_t pid() const noexcept { return pid_; }
    bool read_only() const noexcept { return read_only_; }
    bool open() const noexcept { return state_ == State::Open; }
    // "vigilctl (uid 1000, pid 4242)": for history records (core::Command::who).
    std::string who() const;

    // Each queues one line and returns false (doing nothing) when the session is closed or
    // closing. reply/error/end finish the request `id`; stream does not.
    bool reply(const Json &id, const Json &result);
    bool error(const Json &id, ErrorCode code, std::string_view message,
               const Json &extra = nullptr);
    bool stream(const Json &id, const Json &item);
    bool end(const Json &id);

    // `cb` is called once, from the loop (never from inside a Session or Server call), after
    // the connection has closed for any reason: the daemon drops the session's subscriptions
    // there. Returns false, and drops cb, when the session's close callbacks have already run.
    bool on_close(std::function<void()> cb);
    // Closes the connection after the queued output has been written (bounded by the idle
    // timeout).
    void close();

    // Bytes queued and not yet written (for tests and metrics).
    std::size_t pending_output() const noexcept { return out_.size() - out_off_; }

private:
    friend class Server;
    struct Private {};

public:
    Session(Private, Server *server, std::uint64_t id); // made by Server only

private:
    enum class State : std::uint8_t { Open, Draining, Closed };

    bool send(std::string_view line, bool finishes);
    void write_some();
    void update_poll();
    void drain_then_close();
    void close_now();
    void arm_idle();
    void maybe_finish();
    void on_readable();
    void handle_line(std::string_view line);
    static void on_poll(uv_poll_t *h, int status, int events);
    static void on_idle(uv_timer_t *t);
    static void on_handle_closed(uv_handle_t *h);

    Server *server_;
    std::uint64_t id_;
    int fd_ = -1;
    uv_poll_t poll_{};
    uv_timer_t idle_{};
    int handles_open_ = 0;
    int poll_events_ = 0; // the events poll_ is started with (0: stopped)
    State state_ = State::Open;
    uid_t uid_ = static_cast<uid_t>(-1);
    gid_t gid_ = static_cast<gid_t>(-1);
    pid_t pid_ = 0;
    bool read_only_ = false;
    bool denied_ = false;   // no access at all: first request refused, then closed
    bool read_eof_ = false; // the client shut down its sending side
    bool callbacks_fired_ = false;
    std::size_t outstanding_ = 0; // requests handed to the handler and not finished
    std::string inbuf_;           // bytes of an incomplete request line
    std::string out_;             // output not yet written, from out_off_
    std::size_t out_off_ = 0;
    std::vector<std::function<void()>> on_close_;
};

using SessionPtr = std::shared_ptr<Session>;

// Called for every valid request the session may run. The handler answers through the session
// (now or later) and may keep the SessionPtr. An exception escaping it becomes an `internal`
// error reply.
using Handler = std::function<void(const SessionPtr &, const Request &)>;

class Server {
public:
    Server(uv_loop_t *loop, ServerOptions options, Handler handler);
    ~Server(); // requires close() to have completed (or listen() never to have succeeded)
    Server(const Server &) = delete;
    Server &operator=(const Server &) = delete;

    // Creates the folder and the socket and starts accepting. Returns 0, or -errno with a
    // one-line explanation in *message (e.g. "control socket /run/vigil/control.sock: another
    // vigild is listening on it").
    int listen(std::string *message = nullptr);

    // Stops accepting, closes every session, removes the socket file (if it is still ours) and
    // calls `done` from the loop once every handle is closed.
    void close(std::function<void()> done = {});

    std::size_t session_count() const noexcept { return sessions_.size(); }
    const ServerOptions &options() const noexcept { return options_; }

private:
    friend class Session;
    void log(const std::string &line) const;
    void on_acceptable();
    void session_closed(Session *s);
    void maybe_done();
    static void on_listen_poll(uv_poll_t *h, int status, int events);

    uv_loop_t *loop_;
    ServerOptions options_;
    Handler handler_;
    int listen_fd_ = -1;
    uv_poll_t listener_{};
    bool listener_open_ = false;
    bool closing_ = false;
    dev_t sock_dev_ = 0;
    ino_t sock_ino_ = 0;
    std::uint64_t next_id_ = 1;
    std::vector<SessionPtr> sessions_; // open and closing sessions
    std::function<void()> done_;
    std::unique_ptr<char[]> readbuf_; // shared by all sessions: reads are synchronous
};

// Looks a group name (or a number) up with getgrnam(3). On failure returns nullopt and sets
// *error ("no group named 'vigl'").
std::optional<gid_t> lookup_group(std::string_view name, std::string *error);

} // namespace vigil::ctl

// vigil/ctl/server.hpp: the control socket server that vigild embeds (libuv).
//
// The server owns the listening Unix socket and the connections; it speaks the protocol of
// vigil/ctl/protocol.hpp and hands each valid, permitted request to the daemon's Handler with
// the connection's Responder (vigil/ctl/responder.hpp), through which the daemon answers.
//
// Socket setup (listen()):
//  - the socket's folder is created (0700, or 0750 owned by the socket group) when missing. An
//    existing folder must be a real folder (not a symbolic link) owned by vigild's euid and not
//    writable by its group or others: otherwise whoever controls it could replace the socket
//    (a non-root vigild's /tmp/vigil-UID can be made first by another user), and listen()
//    refuses with -EPERM and a message that names the owner or the mode and what to do;
//  - an old socket file is removed only if nobody answers on it (a crashed vigild's leftover);
//    if a server answers, listen() fails with -EADDRINUSE;
//  - the socket file is 0600, or 0660 with group `socket_group`.
// Access (checked per connection with SO_PEERCRED, and SO_PEERGROUPS for supplementary groups):
//  - root and vigild's own euid ("privileged"): every request;
//  - members of `socket_group` (primary or supplementary): requests for which
//    is_read_only(request) holds; anything else gets `forbidden`;
//  - anyone else: `forbidden` for the first request, then the connection is closed.
//  Every refusal is reported through `log`.
// Limits (so that no client can block the loop, lock others out, or grow vigild's memory):
//  - a request line longer than max_request_line: a too_long error, then disconnect; lines are
//    further bounded by parse_request() (depth, values, sizes);
//  - deadlines that bytes trickling in never move: a connection with no request being answered
//    and no open stream ("idle") is closed `idle_timeout` after its last request finished (or
//    after it connected); a request line must be complete within `request_timeout` of its
//    first byte, even while a stream is open;
//  - unsent output: a session whose unsent output would pass `max_output` (it stopped reading,
//    or reads too slowly) is disconnected, though one answer alone is never refused, however
//    large; and when the unsent output of all sessions together passes `max_total_output`, the
//    session holding the most is disconnected (with a log line) until it no longer does. A
//    session disconnected so is told why: what waits for it is dropped and an `internal` error
//    line with {"unread": bytes} follows the write in flight (at most 64 KiB, extended to the
//    end of a line); the connection closes once that is written, or 2 s later (at most
//    idle_timeout) if the client does not take it; until then it counts as unsent output;
//  - connections: a non-privileged uid holds at most `max_sessions_per_uid` (beyond, its own
//    idle connection open the longest makes room, else the newcomer is refused); at
//    `max_sessions` the session idle the longest is evicted for the newcomer (non-privileged
//    newcomers evict only non-privileged sessions); root and vigild's euid always get in, by
//    evicting a busy non-privileged session (a follower) when no session is idle. An evicted
//    client gets an `internal` error line, then the close; a refused one the same.
//  - the listen backlog is the kernel's largest by default (4096, clamped to
//    net.core.somaxconn): a burst of connections while vigild is not scheduled is queued, not
//    refused with EAGAIN, and the caps above apply once they are accepted;
//  - the server's own log lines are throttled: at most `log_per_second`, then one line with the
//    count of what was suppressed.
// I/O: libuv streams (uv_pipe_t, uv_read_start, uv_try_write/uv_write). Writes never block:
// what the socket does not take is queued per session and written as the socket accepts it.
// At the descriptor limit libuv's listener accepts and closes pending connections with a
// reserved descriptor (its EMFILE trick) instead of spinning on the listening socket.
// libuv writes with write(2): the embedding process must ignore SIGPIPE (vigild does).
// A client that half-closes after its request (`socat`, `nc -N`) still gets its answers; the
// connection closes when they are written.
//
// No exception reaches libuv: handler exceptions become `internal` replies, a failed allocation
// in a callback closes that connection, on_close callbacks are run each in its own try.
//
// Lifetime: Responders are shared_ptr; the daemon may keep one (for a stream) as long as it
// likes. Server::close() closes every session and calls `done` once every handle is closed;
// the daemon should run the loop until then before destroying the Server. Destroying it earlier
// is safe too (never an assert or a dangling handle): it starts the close itself, the handles
// free themselves when the loop runs, and on_close callbacks not yet run are dropped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

#include <uv.h>

#include "vigil/ctl/protocol.hpp"
#include "vigil/ctl/responder.hpp"
#include "vigil/time.hpp"

namespace vigil::ctl {

struct ServerOptions {
    std::string path;                  // the socket file
    std::optional<gid_t> socket_group; // socket 0660 with this group; members: read-only
    Duration idle_timeout{30'000};     // no request being answered, no stream open
    Duration request_timeout{10'000};  // a request line, from its first byte to its "\n"
    std::size_t max_output = std::size_t{8} << 20;        // unsent output per session
    std::size_t max_total_output = std::size_t{32} << 20; // unsent output of all sessions
    std::size_t max_sessions = 256;
    std::size_t max_sessions_per_uid = 16;      // for uids other than root and vigild's euid
    std::size_t log_per_second = 20;            // the server's own log lines
    std::string server_version = VIGIL_VERSION; // reported in the hello
    // Refusals and disconnects of misbehaving clients, as one line each without a newline,
    // e.g. "control: refused uid 65534 pid 4242: stop needs root or uid 0".
    std::function<void(std::string_view)> log;
    // A server that stands in for vigild during a re-exec (src/daemon/uv_standin.cpp): a
    // permitted request for which `hold` says true is not handed to the Handler; the session
    // stops reading and keeps the request, with whatever followed it, for the next vigild
    // (carriable_sessions()).
    std::function<bool(const Request &)> hold;
};

class Session; // one connection (server.cpp): the Responder the Handler gets

class Server {
public:
    Server(uv_loop_t *loop, ServerOptions options, Handler handler);
    ~Server();
    Server(const Server &) = delete;
    Server &operator=(const Server &) = delete;

    // Creates the folder and the socket and starts accepting. Returns 0, or -errno with a
    // one-line explanation in *message (e.g. "control socket /run/vigil/control.sock: another
    // vigild is listening on it; stop it or choose another --socket").
    int listen(std::string *message = nullptr);
    // Continuity across an exec of vigild: listens on the socket the old binary had (fd(),
    // bound at options.path), which kept the connections that came meanwhile in its backlog.
    // 0, or -errno with *message; the descriptor is the Server's either way.
    int adopt(int fd, std::string *message = nullptr);
    // The listening socket's descriptor, -1 when not listening.
    int fd() const noexcept;
    // Continuity across an exec of vigild: the connections the new binary can take on as they
    // are (open, every request answered, nothing queued to write, no stream): each one's socket
    // and the bytes of a request line it has sent only in part. A connection whose request came
    // just before the exec still has it in its socket, and the new binary reads and answers it.
    struct CarriedSession {
        int fd = -1;
        std::string pending;
    };
    // A session holding a request (ServerOptions::hold) is carriable too, with that request
    // and what followed it as `pending`.
    std::vector<CarriedSession> carriable_sessions() const;
    // Closes, without a word, the sessions carriable_sessions() returns: another process holds
    // their sockets now (a stand-in forked with them, or the next vigild).
    void close_carriable();
    // The new binary: one of those connections (no hello again: the client has it). Whole
    // request lines in `pending` are answered on the loop's next turn, before the socket is
    // read again.
    void adopt_session(int fd, std::string pending);
    // A stand-in handing over: stops accepting (the socket file stays: the next vigild
    // listens on it), closes, without a word, the sessions carriable_sessions() returned (the
    // next vigild has them), and answers a request still held by any other session (one whose
    // earlier answer is still being written) with an `internal` error that says to send it
    // again, then closes it once its answers are written. `given_up`: nobody takes the
    // sessions; every held request gets that error, and every session closes once its answers
    // are written. Returns how many sessions are left to finish their writes.
    std::size_t hand_over(bool given_up = false);

    // Stops accepting, closes every session, removes the socket file (if it is still ours) and
    // calls `done` from the loop once every handle is closed.
    void close(std::function<void()> done = {});

    // Sessions open or closing.
    std::size_t session_count() const noexcept { return sessions_.size(); }
    // Bytes queued for clients and not yet written, all sessions together.
    std::size_t queued_output() const noexcept { return queued_; }
    std::uint64_t evicted_total() const noexcept { return evicted_; } // closed to make room
    std::uint64_t refused_total() const noexcept { return refused_; } // turned away at connect
    const ServerOptions &options() const noexcept { return options_; }

private:
    friend class Session;
    void log(std::string_view line) noexcept;
    void flush_suppressed() noexcept;
    void on_connection(int status);
    void identify(Session &s);
    std::shared_ptr<Session> new_session();
    uv_pipe_t *listening_pipe(int fd, int &err, std::string &what);
    void accept_on(uv_pipe_t *pipe);
    void turn_away() noexcept;
    void admit(const std::shared_ptr<Session> &s);
    Session *pick_victim(const Session &newcomer) const;
    void enforce_total_output();
    void session_closed(Session *s) noexcept;
    static void own_handle_closed(uv_handle_t *h); // the listener's and the log timer's
    void maybe_done() noexcept;

    uv_loop_t *loop_;
    ServerOptions options_;
    Handler handler_;
    // Heap-allocated, so that a Server destroyed before its close completed leaves libuv
    // nothing dangling: their close callbacks free them and touch the Server only through
    // `data`, which the destructor clears.
    uv_pipe_t *listener_ = nullptr;
    uv_timer_t *log_timer_ = nullptr;
    int handles_open_ = 0;       // listener_ and log_timer_
    uv_pipe_t *spare_ = nullptr; // takes a connection we fail to take (turn_away())
    bool spare_busy_ = false;
    bool closing_ = false;
    dev_t sock_dev_ = 0;
    ino_t sock_ino_ = 0;
    std::uint64_t next_id_ = 1;
    std::vector<std::shared_ptr<Session>> sessions_; // open and closing sessions
    std::size_t queued_ = 0;
    std::uint64_t evicted_ = 0, refused_ = 0;
    std::function<void()> done_;
    std::unique_ptr<char[]> readbuf_; // shared by all sessions: a read is handled at once
    // Log throttle: lines in the current one-second window, and lines dropped.
    std::uint64_t log_window_ = 0;
    std::size_t log_lines_ = 0;
    std::uint64_t log_suppressed_ = 0;
};

// Looks a group name (or a number) up with getgrnam(3). On failure returns nullopt and sets
// *error ("no group named 'vigl'").
std::optional<gid_t> lookup_group(std::string_view name, std::string *error);

} // namespace vigil::ctl

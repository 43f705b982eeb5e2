// vigil/ctl/client.hpp: a small blocking client for the control socket (used by vigilctl).
//
// Plain sockets and poll(2) with deadlines: no event loop, no libuv, nothing to initialise,
// so a query costs a connect, one write and a few reads. Every call that waits takes a
// timeout in milliseconds (negative: wait for ever) and fails with -ETIMEDOUT when it passes.
// Errors are returned as -errno; the socket never raises SIGPIPE (MSG_NOSIGNAL).
//
// Who answers is checked: connect() reads the server's credentials (SO_PEERCRED) and talks only
// to a server run by root or by the caller's own euid. Anyone else may have made the socket (a
// non-root vigild's /tmp/vigil-UID folder can be created by another user first), and believing
// its answers would show a fake status with success.
#pragma once

#include <cerrno>
#include <cstddef>
#include <string>
#include <string_view>
#include <sys/types.h>

namespace vigil::ctl {

// connect()'s answer when the server runs as a uid that is neither root nor the caller's euid
// (connect(2) itself does not give EPERM for a Unix socket; no permission is EACCES).
inline constexpr int untrusted_server = -EPERM;

class Client {
public:
    Client() = default;
    ~Client();
    Client(Client &&other) noexcept;
    Client &operator=(Client &&other) noexcept;
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    // Connects to the Unix socket at `path`. Returns 0 or -errno (-ENOENT: no socket there,
    // -ECONNREFUSED: nobody listening, -EACCES: no permission, -ETIMEDOUT: backlog stayed full,
    // untrusted_server: the server runs as another user; server_uid() says which, and the
    // connection is closed).
    int connect(const std::string &path, int timeout_ms);
    // The server's uid as SO_PEERCRED gave it at the last connect(); -1 before.
    uid_t server_uid() const noexcept { return server_uid_; }
    // The server's pid as SO_PEERCRED gave it at the last connect(); 0 before, or when the
    // server runs in a pid namespace this process cannot see.
    pid_t server_pid() const noexcept { return server_pid_; }
    // Writes all of `data`. Returns 0 or -errno.
    int send_all(std::string_view data, int timeout_ms);
    // Reads one line into `line` (without its "\n"). Returns 0, -ETIMEDOUT, -ECONNRESET when
    // the server closed the connection, -EMSGSIZE for a line over `max_line`, or -errno.
    int read_line(std::string &line, int timeout_ms);
    void close();
    int fd() const noexcept { return fd_; }

    std::size_t max_line = std::size_t{1} << 30;

private:
    int fd_ = -1;
    uid_t server_uid_ = static_cast<uid_t>(-1);
    pid_t server_pid_ = 0;
    std::string buf_;
    std::size_t off_ = 0;
};

} // namespace vigil::ctl

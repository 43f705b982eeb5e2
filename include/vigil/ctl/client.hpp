// vigil/ctl/client.hpp: a small blocking client for the control socket (used by vigilctl).
//
// Plain sockets and poll(2) with deadlines: no event loop, no libuv, nothing to initialise,
// so a query costs a connect, one write and a few reads. Every call that waits takes a
// timeout in milliseconds (negative: wait for ever) and fails with -ETIMEDOUT when it passes.
// Errors are returned as -errno; the socket never raises SIGPIPE (MSG_NOSIGNAL).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace vigil::ctl {

class Client {
public:
    Client() = default;
    ~Client();
    Client(Client &&other) noexcept;
    Client &operator=(Client &&other) noexcept;
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    // Connects to the Unix socket at `path`. Returns 0 or -errno (-ENOENT: no socket there,
    // -ECONNREFUSED: nobody listening, -EACCES: no permission, -ETIMEDOUT: backlog stayed full).
    int connect(const std::string &path, int timeout_ms);
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
    std::string buf_;
    std::size_t off_ = 0;
};

} // namespace vigil::ctl

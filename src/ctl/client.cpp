// The blocking control client: see include/vigil/ctl/client.hpp.
#include "vigil/ctl/client.hpp"

#include <cerrno>
#include <cstring>
#include <ctime>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace vigil::ctl {

namespace {

long long now_ms() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

// Milliseconds left until `deadline` for poll(2): -1 waits for ever.
int left(long long deadline) {
    if (deadline < 0) return -1;
    long long l = deadline - now_ms();
    return l < 0 ? 0 : static_cast<int>(l);
}

long long deadline_of(int timeout_ms) {
    return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

// Waits for `events` on fd. Returns 0, -ETIMEDOUT or -errno.
int wait_for(int fd, short events, long long deadline) {
    for (;;) {
        pollfd p{fd, events, 0};
        int r = poll(&p, 1, left(deadline));
        if (r > 0) return 0;
        if (r == 0) return -ETIMEDOUT;
        if (errno != EINTR) return -errno;
    }
}

} // namespace

Client::~Client() {
    close();
}

Client::Client(Client &&o) noexcept
    : fd_(o.fd_), server_uid_(o.server_uid_), server_pid_(o.server_pid_), buf_(std::move(o.buf_)),
      off_(o.off_) {
    o.fd_ = -1;
}

Client &Client::operator=(Client &&o) noexcept {
    if (this != &o) {
        close();
        fd_ = o.fd_;
        server_uid_ = o.server_uid_;
        server_pid_ = o.server_pid_;
        buf_ = std::move(o.buf_);
        off_ = o.off_;
        o.fd_ = -1;
    }
    return *this;
}

void Client::close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    buf_.clear();
    off_ = 0;
}

int Client::connect(const std::string &path, int timeout_ms) {
    close();
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof sa.sun_path) return -ENAMETOOLONG;
    std::memcpy(sa.sun_path, path.data(), path.size());
    // Non-blocking so that a full listen backlog (EAGAIN) cannot hang us past the timeout.
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -errno;
    long long deadline = deadline_of(timeout_ms);
    for (;;) {
        if (::connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0) break;
        int e = errno;
        if (e == EINTR) continue;
        if (e == EAGAIN && (deadline < 0 || now_ms() < deadline)) {
            timespec ts{0, 5'000'000}; // the server is busy: retry in 5 ms
            nanosleep(&ts, nullptr);
            continue;
        }
        ::close(fd);
        return e == EAGAIN ? -ETIMEDOUT : -e;
    }
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        int e = errno;
        ::close(fd);
        return -e;
    }
    server_uid_ = cred.uid;
    server_pid_ = cred.pid;
    if (cred.uid != 0 && cred.uid != geteuid()) {
        ::close(fd);
        return untrusted_server;
    }
    fd_ = fd;
    return 0;
}

int Client::send_all(std::string_view data, int timeout_ms) {
    if (fd_ < 0) return -EBADF;
    long long deadline = deadline_of(timeout_ms);
    while (!data.empty()) {
        ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
        if (n > 0) {
            data.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (int r = wait_for(fd_, POLLOUT, deadline); r != 0) return r;
            continue;
        }
        return -errno;
    }
    return 0;
}

int Client::read_line(std::string &line, int timeout_ms) {
    if (fd_ < 0) return -EBADF;
    long long deadline = deadline_of(timeout_ms);
    std::size_t scanned = off_;
    for (;;) {
        if (auto nl = buf_.find('\n', scanned); nl != std::string::npos) {
            line.assign(buf_, off_, nl - off_);
            off_ = nl + 1;
            if (off_ == buf_.size()) {
                buf_.clear();
                off_ = 0;
            }
            return 0;
        }
        scanned = buf_.size();
        if (buf_.size() - off_ > max_line) return -EMSGSIZE;
        if (off_ > 0) {
            buf_.erase(0, off_);
            scanned -= off_;
            off_ = 0;
        }
        char chunk[65536];
        ssize_t n = ::recv(fd_, chunk, sizeof chunk, MSG_DONTWAIT);
        if (n > 0) {
            buf_.append(chunk, static_cast<std::size_t>(n));
            continue;
        }
        if (n == 0) return -ECONNRESET;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
        if (int r = wait_for(fd_, POLLIN, deadline); r != 0) return r;
    }
}

} // namespace vigil::ctl

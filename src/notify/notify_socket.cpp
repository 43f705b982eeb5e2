// NOTIFY_SOCKET, ready fds and the watchdog: see vigil/notify/notify_socket.hpp.
#include "vigil/notify/notify_socket.hpp"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

namespace vigil::notify {

namespace {

template <class H> void close_and_delete(H *h) {
    uv_close(reinterpret_cast<uv_handle_t *>(h),
             [](uv_handle_t *p) { delete reinterpret_cast<H *>(p); });
}

std::string errno_text(const char *what, const std::string &object, int err) {
    return std::string(what) + " " + object + ": " + std::strerror(err);
}

// systemd's limit for one notification (NOTIFY_BUFFER_MAX): longer datagrams are refused.
constexpr std::size_t max_datagram = 4096;
// Most fds one datagram can carry (SCM_MAX_FD); they are all closed.
constexpr std::size_t max_fds = 253;

} // namespace

// ---------------------------------------------------------------------------------------------
// Credentials helpers

std::optional<ProcIds> proc_ids(int pid) {
    if (pid <= 0) return std::nullopt;
    std::string path = "/proc/" + std::to_string(pid) + "/stat";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    char buf[1024];
    ssize_t n;
    do {
        n = ::read(fd, buf, sizeof buf);
    } while (n < 0 && errno == EINTR);
    ::close(fd);
    if (n <= 0) return std::nullopt;
    return parse_proc_stat(std::string_view(buf, static_cast<std::size_t>(n)));
}

int session_of(int pid) {
    auto ids = proc_ids(pid);
    return ids ? ids->session : -1;
}

bool in_service(int pid, int session) {
    if (pid <= 0 || session <= 0) return false;
    return pid == session || session_of(pid) == session;
}

std::string main_pid_refusal(int pid, int session) {
    if (pid == ::getpid()) return "that is vigild itself";
    auto ids = proc_ids(pid);
    if (!ids) return "no such process";
    if (ids->state == 'Z') return "the process has exited";
    if (ids->session != session)
        return "the process is not part of the service (session " + std::to_string(ids->session) +
               ", not " + std::to_string(session) + ")";
    return {};
}

std::string socket_path(const std::string &dir, const std::string &unit) {
    return dir + "/" + unit + ".sock";
}

std::string prepare_socket_dir(const std::string &dir) {
    // 0711: search (to reach a socket by name) for everyone, listing for vigild's user only.
    constexpr mode_t mode = 0711;
    if (::mkdir(dir.c_str(), mode) == 0) {
        // mkdir applied vigild's umask; the folder is new and ours, so set the mode exactly.
        if (::chmod(dir.c_str(), mode) < 0) return errno_text("chmod 0711", dir, errno);
        return {};
    }
    if (errno != EEXIST) return errno_text("mkdir", dir, errno);
    struct stat st {};
    // lstat: a symlink planted here must not redirect the sockets elsewhere.
    if (::lstat(dir.c_str(), &st) < 0) return errno_text("stat", dir, errno);
    if (!S_ISDIR(st.st_mode)) return dir + ": not a directory";
    if (st.st_uid != ::geteuid())
        return dir + ": owned by uid " + std::to_string(st.st_uid) +
               ", not by vigild's user (uid " + std::to_string(::geteuid()) + ")";
    if ((st.st_mode & 07777) != mode && ::chmod(dir.c_str(), mode) < 0)
        return errno_text("chmod 0711", dir, errno);
    return {};
}

// ---------------------------------------------------------------------------------------------
// NotifySocket

NotifySocket::OpenResult NotifySocket::open(uv_loop_s *loop, const std::string &path,
                                            Callbacks callbacks) {
    OpenResult r;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof addr.sun_path) {
        r.error = "notify socket " + path + ": path longer than " +
                  std::to_string(sizeof addr.sun_path - 1) + " bytes";
        return r;
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);

    int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        r.error = errno_text("socket", path, errno);
        return r;
    }
    // Ask the kernel to attach each sender's credentials; without it recvmsg gets none.
    int one = 1;
    if (::setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0) {
        r.error = errno_text("setsockopt SO_PASSCRED", path, errno);
        ::close(fd);
        return r;
    }
    // A socket file left by a previous vigild (crash, restart) would make bind fail.
    ::unlink(path.c_str());
    if (::bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) < 0) {
        r.error = errno_text("bind", path, errno);
        ::close(fd);
        return r;
    }
    // Services may run as another user; sending must be allowed to them. Who may notify is
    // decided by the credentials check, as with systemd's own 0777 notify socket.
    if (::chmod(path.c_str(), 0666) < 0) {
        r.error = errno_text("chmod 0666", path, errno);
        ::close(fd);
        ::unlink(path.c_str());
        return r;
    }

    std::unique_ptr<NotifySocket> s(new NotifySocket(loop, path, fd, std::move(callbacks)));
    r.socket = std::move(s);
    return r;
}

std::unique_ptr<NotifySocket> NotifySocket::adopt(uv_loop_s *loop, std::string path, int fd,
                                                  Callbacks callbacks) {
    return std::unique_ptr<NotifySocket>(
        new NotifySocket(loop, std::move(path), fd, std::move(callbacks)));
}

NotifySocket::NotifySocket(uv_loop_s *loop, std::string path, int fd, Callbacks cb)
    : path_(std::move(path)), fd_(fd), cb_(std::move(cb)) {
    auto *p = new uv_poll_t;
    uv_poll_init(loop, p, fd_);
    p->data = this;
    uv_poll_start(p, UV_READABLE, [](uv_poll_t *h, int status, int) {
        if (status >= 0) static_cast<NotifySocket *>(h->data)->on_readable();
    });
    poll_ = reinterpret_cast<uv_poll_s *>(p);
}

NotifySocket::~NotifySocket() {
    *alive_ = false;
    // uv_close stops polling at once; only then may the fd be closed.
    close_and_delete(reinterpret_cast<uv_poll_t *>(poll_));
    ::close(fd_);
    ::unlink(path_.c_str());
}

namespace {

// Closes every descriptor the datagram carried (SCM_RIGHTS).
void close_passed_fds(msghdr &mh) {
    for (cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < count; ++i) {
            int passed;
            std::memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof passed);
            ::close(passed);
        }
    }
}

} // namespace

void NotifySocket::on_readable() {
    auto alive = alive_;
    for (int batch = 0; batch < 64; ++batch) {
        char buf[max_datagram + 1];
        alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * max_fds)];
        iovec iov{buf, sizeof buf};
        msghdr mh{};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = ctrl;
        mh.msg_controllen = sizeof ctrl;
        // MSG_TRUNC: return the real length so an oversized datagram is recognised and refused.
        // MSG_CMSG_CLOEXEC: passed fds must not leak into a child spawned before we close them.
        ssize_t n = ::recvmsg(fd_, &mh, MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
        if (n < 0) {
            if (errno == EINTR) continue;
            return; // EAGAIN: drained. Other errors: wait for the next readiness.
        }
        const ucred *cred = nullptr;
        for (cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
                c->cmsg_len == CMSG_LEN(sizeof(ucred)))
                cred = reinterpret_cast<const ucred *>(CMSG_DATA(c));
        int pid = cred ? cred->pid : 0;
        bool oversized = static_cast<std::size_t>(n) > max_datagram;
        Message m;
        if (!oversized) m = parse_message(std::string_view(buf, static_cast<std::size_t>(n)));
        // Attribution first, while a barrier's sender still waits for its fd to be closed.
        std::string why;
        if (!cred || pid <= 0)
            why = "no sender credentials";
        else if (oversized)
            why = "message longer than " + std::to_string(max_datagram) + " bytes";
        else if (!cb_.owns || !cb_.owns(pid))
            why = "sender pid " + std::to_string(pid) + " is not part of the service";
        // BARRIER=1 carries a pipe end and its sender waits until every copy is closed.
        close_passed_fds(mh);
        if (!why.empty()) {
            ++refused_;
            if (cb_.refused && (oversized || m.acts())) {
                auto cb = cb_.refused; // copies: a callback may destroy this socket
                cb(pid, why);
                if (!*alive) return;
            }
            continue;
        }
        ++accepted_;
        if (cb_.message) {
            auto cb = cb_.message;
            cb(m, pid);
            if (!*alive) return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ReadyFd

ReadyFd::OpenResult ReadyFd::open(uv_loop_s *loop, std::function<void()> on_ready) {
    OpenResult r;
    int fds[2];
    // Both ends close-on-exec: spawn's dup2 onto fd N clears the flag for the child's copy
    // only, so no other child inherits the pipe.
    if (::pipe2(fds, O_CLOEXEC) < 0) {
        r.error = std::string("pipe: ") + std::strerror(errno);
        return r;
    }
    ::fcntl(fds[0], F_SETFL, ::fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    r.ready_fd.reset(new ReadyFd(loop, fds[0], fds[1], std::move(on_ready)));
    return r;
}

std::unique_ptr<ReadyFd> ReadyFd::adopt(uv_loop_s *loop, int read_fd,
                                        std::function<void()> on_ready) {
    return std::unique_ptr<ReadyFd>(new ReadyFd(loop, read_fd, -1, std::move(on_ready)));
}

ReadyFd::ReadyFd(uv_loop_s *loop, int read_fd, int write_fd, std::function<void()> on_ready)
    : read_fd_(read_fd), write_fd_(write_fd), on_ready_(std::move(on_ready)) {
    auto *p = new uv_poll_t;
    uv_poll_init(loop, p, read_fd_);
    p->data = this;
    uv_poll_start(p, UV_READABLE, [](uv_poll_t *h, int status, int) {
        auto *self = static_cast<ReadyFd *>(h->data);
        if (status < 0) {
            self->stop_reading();
            return;
        }
        self->on_readable();
    });
    poll_ = reinterpret_cast<uv_poll_s *>(p);
}

ReadyFd::~ReadyFd() {
    stop_reading();
    close_child_end();
}

void ReadyFd::close_child_end() noexcept {
    if (write_fd_ >= 0) {
        ::close(write_fd_);
        write_fd_ = -1;
    }
}

void ReadyFd::stop_reading() noexcept {
    if (poll_) {
        close_and_delete(reinterpret_cast<uv_poll_t *>(poll_));
        poll_ = nullptr;
    }
    if (read_fd_ >= 0) {
        ::close(read_fd_);
        read_fd_ = -1;
    }
}

void ReadyFd::on_readable() {
    char buf[512];
    for (;;) {
        ssize_t n = ::read(read_fd_, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return; // EAGAIN
        if (n == 0) {
            // EOF: every writer closed it without a newline. Stop polling, or EOF would keep
            // the fd readable and spin the loop.
            eof_ = true;
            stop_reading();
            return;
        }
        if (std::memchr(buf, '\n', static_cast<std::size_t>(n))) {
            fired_ = true;
            stop_reading();
            if (on_ready_) {
                auto cb = on_ready_; // a copy, called last: it may destroy us
                cb();
            }
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Watchdog

Watchdog::Watchdog(uv_loop_s *loop, Duration interval, std::function<void()> missed)
    : interval_(interval), missed_(std::move(missed)) {
    auto *t = new uv_timer_t;
    uv_timer_init(loop, t);
    t->data = this;
    timer_ = reinterpret_cast<uv_timer_s *>(t);
}

Watchdog::~Watchdog() {
    close_and_delete(reinterpret_cast<uv_timer_t *>(timer_));
}

void Watchdog::arm() {
    if (interval_.count() <= 0) {
        stop();
        return;
    }
    armed_ = true;
    uv_timer_start(
        reinterpret_cast<uv_timer_t *>(timer_),
        [](uv_timer_t *t) {
            auto *self = static_cast<Watchdog *>(t->data);
            self->armed_ = false;
            if (self->missed_) {
                auto cb = self->missed_; // a copy, called last: it may destroy us
                cb();
            }
        },
        static_cast<std::uint64_t>(interval_.count()), 0);
}

void Watchdog::start() {
    arm();
}

void Watchdog::ping() {
    if (armed_) arm();
}

void Watchdog::set_interval(Duration interval) {
    interval_ = interval;
    // systemd: a new WATCHDOG_USEC also restarts the countdown; 0 switches the watchdog off.
    if (interval_.count() <= 0)
        stop();
    else
        arm();
}

void Watchdog::stop() {
    armed_ = false;
    uv_timer_stop(reinterpret_cast<uv_timer_t *>(timer_));
}

std::vector<std::pair<std::string, std::string>> watchdog_env(Duration interval,
                                                              std::optional<int> pid) {
    std::vector<std::pair<std::string, std::string>> env;
    env.emplace_back("WATCHDOG_USEC", std::to_string(interval.count() * 1000));
    if (pid) env.emplace_back("WATCHDOG_PID", std::to_string(*pid));
    return env;
}

} // namespace vigil::notify

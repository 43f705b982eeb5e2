// listen.cpp: binding the sockets vigild holds for services (see listen.hpp).
#include "listen.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace vigil::daemon {

namespace {

class Fd {
public:
    explicit Fd(int fd = -1) : fd_(fd) {}
    Fd(const Fd &) = delete;
    Fd &operator=(const Fd &) = delete;
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const { return fd_; }
    int release() {
        const int fd = fd_;
        fd_ = -1;
        return fd;
    }
    void reset(int fd) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = fd;
    }

private:
    int fd_;
};

std::string errno_text(int e) {
    return std::strerror(e);
}

// What to do about a failed bind, by its errno.
std::string bind_hint(const unit::ListenSpec &s, int e) {
    if (e == EADDRINUSE)
        return s.kind == unit::ListenKind::Unix
                   ? "; something else is at that path"
                   : std::string("; another process has the port (ss -") +
                         (s.kind == unit::ListenKind::Tcp ? "ltnp" : "lunp") + ")";
    if (e == EACCES) return "; ports below 1024 need root or CAP_NET_BIND_SERVICE";
    if (e == EADDRNOTAVAIL) return "; no interface of this machine has that address";
    return "";
}

// Whether directory `st` is one only root or vigild can change. `last`: the socket's own.
std::string unsafe_dir(const struct stat &st, const std::string &path, bool last) {
    const uid_t me = ::geteuid();
    if (st.st_uid != 0 && st.st_uid != me)
        return "directory " + path + " belongs to uid " + std::to_string(st.st_uid) +
               ", not to root";
    const bool writable = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
    if (writable && (last || !(st.st_mode & S_ISVTX)))
        return "directory " + path + " is writable by its group or others" +
               (last ? " (a socket's own directory must be writable by its owner only)" : "");
    return "";
}

// Opens the directory of `path` one component at a time from "/", checking each (listen.hpp).
// Returns an O_PATH descriptor of the socket's directory, or -1 with `why`.
int open_safe_dir(const std::string &path, std::string &why) {
    const auto slash = path.rfind('/');
    const std::string dir = path.substr(0, slash);
    Fd fd(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
    std::string walked;
    for (std::size_t i = 1; fd.get() >= 0;) {
        struct stat st {};
        if (::fstat(fd.get(), &st) != 0) {
            why = "stat " + (walked.empty() ? "/" : walked) + ": " + errno_text(errno);
            return -1;
        }
        const bool last = walked == dir;
        why = unsafe_dir(st, walked.empty() ? "/" : walked, last);
        if (!why.empty()) return -1;
        if (last) return fd.release();
        auto next = dir.find('/', i);
        const std::string part = dir.substr(i, next == std::string::npos ? next : next - i);
        walked = dir.substr(0, next);
        fd.reset(::openat(fd.get(), part.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (fd.get() < 0) {
            why = "directory " + walked + ": " + errno_text(errno) +
                  (errno == ENOENT ? " (create it first, owned by root, mode 0755)" : "");
            return -1;
        }
        i = next == std::string::npos ? dir.size() : next + 1;
    }
    why = "open /: " + errno_text(errno);
    return -1;
}

// Removes a stale socket at `name` in `dirfd`; anything else there is an error.
std::string clear_path(int dirfd, const std::string &name, const std::string &path) {
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
        return errno == ENOENT ? "" : "stat " + path + ": " + errno_text(errno);
    if (!S_ISSOCK(st.st_mode))
        return path + " exists and is not a socket; remove it or choose another path";
    if (::unlinkat(dirfd, name.c_str(), 0) != 0)
        return "remove the stale socket " + path + ": " + errno_text(errno);
    return "";
}

// The socket file's owner and mode, through a descriptor of the file itself (never a path
// that could have become a symlink).
std::string set_access(int dirfd, const std::string &name, const unit::ListenSpec &s) {
    Fd f(::openat(dirfd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    struct stat st {};
    if (f.get() < 0 || ::fstat(f.get(), &st) != 0)
        return "open " + s.address + ": " + errno_text(errno);
    if (!S_ISSOCK(st.st_mode)) return s.address + " is no longer the socket vigild bound";
    if ((s.uid || s.gid) && ::fchownat(f.get(), "", s.uid ? *s.uid : static_cast<uid_t>(-1),
                                       s.gid ? *s.gid : static_cast<gid_t>(-1), AT_EMPTY_PATH) != 0)
        return "chown " + s.address + ": " + errno_text(errno);
    const std::string proc = "/proc/self/fd/" + std::to_string(f.get());
    if (::chmod(proc.c_str(), static_cast<mode_t>(s.mode)) != 0)
        return "chmod " + s.address + ": " + errno_text(errno) +
               (errno == ENOENT ? " (/proc is not mounted)" : "");
    return "";
}

BoundSocket bind_unix(const unit::ListenSpec &s, const std::string &what) {
    std::string why;
    Fd dir(open_safe_dir(s.address, why));
    if (dir.get() < 0) return {-1, what + ": " + why};
    const std::string name = s.address.substr(s.address.rfind('/') + 1);
    if (std::string e = clear_path(dir.get(), name, s.address); !e.empty())
        return {-1, what + ": " + e};
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) return {-1, what + ": socket: " + errno_text(errno)};
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, s.address.c_str(), s.address.size() + 1); // the loader bounds it
    if (::bind(fd.get(), reinterpret_cast<sockaddr *>(&sa), sizeof sa) != 0) {
        const int e = errno;
        return {-1, what + ": bind: " + errno_text(e) + bind_hint(s, e)};
    }
    if (std::string e = set_access(dir.get(), name, s); !e.empty()) {
        ::unlinkat(dir.get(), name.c_str(), 0);
        return {-1, what + ": " + e};
    }
    if (::listen(fd.get(), s.backlog) != 0) return {-1, what + ": listen: " + errno_text(errno)};
    return {fd.release(), ""};
}

BoundSocket bind_inet(const unit::ListenSpec &s, const std::string &what) {
    const bool v6 = s.host.find(':') != std::string::npos;
    const bool tcp = s.kind == unit::ListenKind::Tcp;
    Fd fd(::socket(v6 ? AF_INET6 : AF_INET, (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) return {-1, what + ": socket: " + errno_text(errno)};
    const int one = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        (s.reuseport && ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0))
        return {-1, what + ": setsockopt: " + errno_text(errno)};
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (v6) {
        auto *a = reinterpret_cast<sockaddr_in6 *>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(static_cast<std::uint16_t>(s.port));
        ::inet_pton(AF_INET6, s.host.c_str(), &a->sin6_addr);
        len = sizeof *a;
    } else {
        auto *a = reinterpret_cast<sockaddr_in *>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(static_cast<std::uint16_t>(s.port));
        ::inet_pton(AF_INET, s.host.c_str(), &a->sin_addr);
        len = sizeof *a;
    }
    if (::bind(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) != 0) {
        const int e = errno;
        return {-1, what + ": bind: " + errno_text(e) + bind_hint(s, e)};
    }
    if (tcp && ::listen(fd.get(), s.backlog) != 0)
        return {-1, what + ": listen: " + errno_text(errno)};
    return {fd.release(), ""};
}

} // namespace

BoundSocket bind_socket(const unit::ListenSpec &spec) {
    const std::string what = "listen " + spec.describe();
    return spec.kind == unit::ListenKind::Unix ? bind_unix(spec, what) : bind_inet(spec, what);
}

std::string held_key(const unit::ListenSpec &spec, const std::string &unit_name) {
    std::string k = spec.key();
    if (spec.kind == unit::ListenKind::Unix) { // another mode or owner: a new socket file
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", spec.mode);
        k += std::string(" mode=") + mode;
        k += " uid=" + (spec.uid ? std::to_string(*spec.uid) : "-");
        k += " gid=" + (spec.gid ? std::to_string(*spec.gid) : "-");
    }
    if (spec.reuseport) k += " #" + unit_name;
    return k;
}

std::string check_socket_dirs(const std::string &path) {
    std::string why;
    Fd fd(open_safe_dir(path, why));
    return why;
}

} // namespace vigil::daemon

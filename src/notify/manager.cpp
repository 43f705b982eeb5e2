// vigild's own sd_notify to its service manager: see vigil/notify/manager.hpp.
#include "vigil/notify/manager.hpp"

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <unistd.h>

namespace vigil::notify {

namespace {

// Longest path or abstract name sockaddr_un holds: sun_path less its NUL (a path's
// terminator, or an abstract name's leading byte).
constexpr std::size_t max_address = sizeof(sockaddr_un::sun_path) - 1;

// A decimal number of at most 19 digits (fits in uint64 without overflow), nothing else.
std::optional<std::uint64_t> parse_decimal(std::string_view s) {
    if (s.empty() || s.size() > 19) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return v;
}

// The watchdog the manager asked for, when it is meant for `self_pid`.
std::optional<std::uint64_t> read_watchdog(const char *usec, const char *pid, int self_pid,
                                           std::vector<std::string> &problems) {
    if (!usec) return std::nullopt;
    const auto v = parse_decimal(usec);
    if (!v || *v == 0) {
        problems.push_back(std::string("WATCHDOG_USEC=") + usec +
                           ": not a positive number of microseconds; not pinging the manager's "
                           "watchdog");
        return std::nullopt;
    }
    if (pid) {
        const auto p = parse_decimal(pid);
        if (!p || *p != static_cast<std::uint64_t>(self_pid)) {
            problems.push_back(std::string("WATCHDOG_PID=") + pid + " is not vigild's pid (" +
                               std::to_string(self_pid) +
                               "): its watchdog is another process's; not pinging it (start "
                               "vigild with exec, not from a shell that stays)");
            return std::nullopt;
        }
    }
    return *v < max_watchdog_usec ? *v : max_watchdog_usec;
}

std::string with_status(std::string head, std::string_view status) {
    const std::string text = status_text(status);
    if (!text.empty()) head += "\nSTATUS=" + text;
    return head;
}

} // namespace

std::optional<ManagerAddress> parse_manager_address(std::string_view value, std::string *error) {
    auto fail = [&](const char *why) -> std::optional<ManagerAddress> {
        if (error) *error = "NOTIFY_SOCKET=" + std::string(value.substr(0, 128)) + ": " + why;
        return std::nullopt;
    };
    if (value.empty()) return fail("empty");
    ManagerAddress a;
    a.addr.sun_family = AF_UNIX;
    if (value[0] == '@') {
        const std::string_view name = value.substr(1);
        if (name.empty()) return fail("an abstract name needs a name after '@'");
        if (name.size() > max_address) return fail("longer than a socket address holds");
        // sun_path[0] stays NUL: the abstract namespace.
        std::memcpy(a.addr.sun_path + 1, name.data(), name.size());
        a.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
        return a;
    }
    if (value[0] != '/') return fail("not an absolute path or an @abstract name");
    if (value.size() > max_address) return fail("longer than a socket address holds");
    std::memcpy(a.addr.sun_path, value.data(), value.size());
    a.length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + value.size() + 1);
    return a;
}

ManagerEnv read_manager_env(const std::function<const char *(const char *)> &get, int self_pid) {
    ManagerEnv env;
    const char *socket = get("NOTIFY_SOCKET");
    if (socket && *socket) {
        env.socket = socket;
        std::string error;
        env.address = parse_manager_address(socket, &error);
        if (!env.address)
            env.problems.push_back(error + "; not notifying the service manager (it may fail "
                                           "vigild's start: use Type=simple there)");
    }
    auto watchdog =
        read_watchdog(get("WATCHDOG_USEC"), get("WATCHDOG_PID"), self_pid, env.problems);
    if (env.address) env.watchdog_usec = watchdog;
    return env;
}

ManagerEnv take_manager_env() {
    ManagerEnv env =
        read_manager_env([](const char *name) { return std::getenv(name); }, ::getpid());
    for (const char *name : manager_env_vars)
        ::unsetenv(name);
    return env;
}

std::string status_text(std::string_view text) {
    std::string out(text.substr(0, max_status));
    if (text.size() > max_status) // do not end inside a UTF-8 character
        while (!out.empty() && (static_cast<unsigned char>(text[out.size()]) & 0xC0) == 0x80)
            out.pop_back();
    for (char &c : out)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
    return out;
}

std::string ready_message(std::string_view status) {
    return with_status("READY=1", status);
}

std::string reloading_message(std::uint64_t monotonic_usec) {
    return "RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonic_usec);
}

std::string stopping_message(std::string_view status) {
    return with_status("STOPPING=1", status);
}

std::string status_message(std::string_view status) {
    return "STATUS=" + status_text(status);
}

std::string watchdog_message() {
    return "WATCHDOG=1";
}

std::string main_pid_message(int pid) {
    return "MAINPID=" + std::to_string(pid);
}

std::uint64_t monotonic_usec() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000 +
           static_cast<std::uint64_t>(ts.tv_nsec) / 1000;
}

// ---- the socket ------------------------------------------------------------------------------

std::optional<ManagerSocket> ManagerSocket::open(const ManagerAddress &to, std::string *error) {
    const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        if (error) *error = std::string("socket for NOTIFY_SOCKET: ") + std::strerror(errno);
        return std::nullopt;
    }
    return ManagerSocket(fd, to);
}

ManagerSocket::ManagerSocket(ManagerSocket &&other) noexcept : fd_(other.fd_), to_(other.to_) {
    other.fd_ = -1;
}

ManagerSocket &ManagerSocket::operator=(ManagerSocket &&other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) ::close(fd_);
        fd_ = other.fd_;
        to_ = other.to_;
        other.fd_ = -1;
    }
    return *this;
}

ManagerSocket::~ManagerSocket() {
    if (fd_ >= 0) ::close(fd_);
}

int ManagerSocket::send(std::string_view datagram) const noexcept {
    if (fd_ < 0) return EBADF;
    if (datagram.size() > max_message) return EMSGSIZE;
    for (int tries = 0; tries < 4; ++tries) { // EINTR only: a signal handler ran
        const ssize_t n =
            ::sendto(fd_, datagram.data(), datagram.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                     reinterpret_cast<const sockaddr *>(&to_.addr), to_.length);
        if (n >= 0) return 0;
        if (errno != EINTR) return errno;
    }
    return EINTR;
}

} // namespace vigil::notify

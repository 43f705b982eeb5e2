// vigil/notify/manager.hpp: vigild's own sd_notify(3) to the service manager that started it
// (systemd with Type=notify), the sending side of the protocol message.hpp parses.
//
// The manager gives its service NOTIFY_SOCKET (a path, or "@name" for an abstract socket),
// and with a watchdog WATCHDOG_USEC (and WATCHDOG_PID, the process it is meant for). vigild:
//  - reads them once, at start-up (read_manager_env), and removes them from its own
//    environment with LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES (scrub_manager_env), before
//    the spawner helper forks: services start from the helper's `environ` as of its fork
//    (vigil/proc/spawner.hpp), so none of them inherits vigild's manager's variables. A
//    service's own NOTIFY_SOCKET and LISTEN_* are vigild's (the unit's notify socket, its
//    listen entries), set per spawn;
//  - sends the datagrams built here (READY=1, RELOADING=1, STOPPING=1, WATCHDOG=1, STATUS=)
//    through a ManagerSocket: one unbound datagram socket, non-blocking and close-on-exec,
//    sendto() the manager's address each time (libsystemd does the same: a manager that
//    re-executes keeps its socket's address, not necessarily the same connection).
//
// Invariants: nothing here blocks (MSG_DONTWAIT on a non-blocking socket); a send that fails
// returns its errno and changes nothing else, whatever the manager does (gone, queue full,
// refusing); no message is longer than max_message, and STATUS= text never holds a newline
// (it would start another assignment). Wrapper mode (`vigild -- CMD`) uses none of this: CMD
// inherits the variables unchanged (daemon/wrapper.hpp).
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vigil::notify {

// The variables a service manager sets for its service, which vigild must not pass on.
inline constexpr std::array<const char *, 6> manager_env_vars = {
    "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"};

// Bounds. systemd reads at most 4096 bytes of one notification (NOTIFY_BUFFER_MAX); vigild's
// are far shorter. STATUS= text is cut to max_status bytes.
inline constexpr std::size_t max_message = 4096;
inline constexpr std::size_t max_status = 256;
// WATCHDOG_USEC above a year is taken as a year (no overflow in milliseconds).
inline constexpr std::uint64_t max_watchdog_usec = 366ULL * 24 * 3600 * 1'000'000;

// A manager's socket address: sun_path holds the path, or a NUL then the abstract name.
struct ManagerAddress {
    sockaddr_un addr{};
    socklen_t length = 0; // what sendto() takes: the family, then the path or the name
};

// Parses NOTIFY_SOCKET: an absolute path, or "@name" (abstract). nullopt, with `error` set
// ("NOTIFY_SOCKET=x: not an absolute path or an @abstract name"), otherwise or when it does
// not fit sockaddr_un (at most 107 bytes of path or name). Pure.
std::optional<ManagerAddress> parse_manager_address(std::string_view value, std::string *error);

// What the manager gave vigild.
struct ManagerEnv {
    std::optional<ManagerAddress> address; // NOTIFY_SOCKET, when valid
    std::string socket;                    // NOTIFY_SOCKET as given (for messages)
    // WATCHDOG_USEC when it is valid, non-zero and meant for this process (WATCHDOG_PID unset,
    // or this pid), capped at max_watchdog_usec; nullopt: no watchdog to ping.
    std::optional<std::uint64_t> watchdog_usec;
    // What was ignored and why, one line each, for vigild's journal.
    std::vector<std::string> problems;
};

// Reads the manager's variables through `get` (getenv: null when unset) for the process
// `self_pid`. Pure. A watchdog without a usable NOTIFY_SOCKET is dropped (nowhere to ping).
ManagerEnv read_manager_env(const std::function<const char *(const char *)> &get, int self_pid);

// Reads this process's variables (getenv, getpid) and removes every manager_env_vars entry
// from its environment. Call it once, first, while vigild runs no other thread and before the
// spawner helper forks (unsetenv is not thread-safe).
ManagerEnv take_manager_env();

// The datagrams (pure). `status` is sanitised (status_text).
std::string ready_message(std::string_view status);          // READY=1, STATUS=
std::string reloading_message(std::uint64_t monotonic_usec); // RELOADING=1, MONOTONIC_USEC=
std::string stopping_message(std::string_view status);       // STOPPING=1, STATUS=
std::string status_message(std::string_view status);         // STATUS= alone
std::string watchdog_message();                              // WATCHDOG=1
std::string main_pid_message(int pid);                       // MAINPID= (a later re-exec)
// `text` fit for STATUS=: control characters (newline included) become spaces, and it is cut
// to max_status bytes (at a UTF-8 character boundary).
std::string status_text(std::string_view text);

// CLOCK_MONOTONIC in microseconds, the clock MONOTONIC_USEC= is read against.
std::uint64_t monotonic_usec();

// The sending end: one datagram socket, SOCK_NONBLOCK | SOCK_CLOEXEC.
class ManagerSocket {
public:
    // nullopt, with `error` set, when no socket can be made (EMFILE...).
    static std::optional<ManagerSocket> open(const ManagerAddress &to, std::string *error);
    ManagerSocket(ManagerSocket &&other) noexcept;
    ManagerSocket &operator=(ManagerSocket &&other) noexcept;
    ManagerSocket(const ManagerSocket &) = delete;
    ManagerSocket &operator=(const ManagerSocket &) = delete;
    ~ManagerSocket();

    // Sends one datagram without blocking: 0, or the errno (EAGAIN: the manager's queue is
    // full; ECONNREFUSED, ENOENT: nobody listens there; EMSGSIZE: longer than max_message).
    int send(std::string_view datagram) const noexcept;
    int fd() const noexcept { return fd_; }

private:
    ManagerSocket(int fd, const ManagerAddress &to) : fd_(fd), to_(to) {}
    int fd_ = -1;
    ManagerAddress to_;
};

} // namespace vigil::notify

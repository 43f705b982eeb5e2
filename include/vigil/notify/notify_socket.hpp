// vigil/notify/notify_socket.hpp: a service's NOTIFY_SOCKET, ready fds and the watchdog.
//
// NotifySocket: one AF_UNIX datagram socket per service, bound at a path the daemon chooses
// (<notify dir>/<unit>.sock) and put in the service's environment as NOTIFY_SOCKET.
// SO_PASSCRED makes the kernel attach every sender's pid/uid/gid (SCM_CREDENTIALS), which a
// sender cannot forge without CAP_SYS_ADMIN. The daemon's `owns(pid)` decides whether the
// sender belongs to the service (in_service() below is the usual answer); other senders are
// refused and reported through `refused`, except that a message asking for nothing
// (Message::acts() false: a lone BARRIER=1) is dropped quietly.
//
// Who may send: the socket is mode 0666 in a directory of mode 0711 (prepare_socket_dir), so a
// service running as another user ("user" in its unit) can reach it, and nobody can list the
// directory. The credentials check is the access control, as with systemd's own world-writable
// notify socket; a foreign process may send, and is refused.
//
// File descriptors passed along (BARRIER=1 sends one and waits for its closing; FDSTORE=1 is
// not supported) are closed once the datagram has been attributed, never before: closing the
// barrier's fd releases systemd-notify, which then exits, and a sender that exited (and was
// reaped by its parent) can no longer be attributed to a service.
//
// Reading uses uv_poll on the socket's fd and recvmsg(), never blocking; a burst is read in
// batches of at most 64 datagrams per loop iteration so one chatty service cannot starve
// the rest. Callbacks may destroy the NotifySocket.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "vigil/notify/message.hpp"
#include "vigil/time.hpp"

struct uv_loop_s;
struct uv_poll_s;
struct uv_timer_s;

namespace vigil::notify {

// The session id of `pid` from /proc/<pid>/stat; -1 when the process is gone or unreadable.
// A zombie still has its ids, so a sender that exited but was not reaped is still attributed.
int session_of(int pid);
std::optional<ProcIds> proc_ids(int pid);

// True when `pid` is the process vigild spawned (`session`) or runs in its session. Services
// are spawned with setsid(), so their session id is the spawned pid; grandchildren such as
// `systemd-notify` started from a shell script inherit it unless they call setsid() themselves.
bool in_service(int pid, int session);

// Why `pid` cannot become the main process of the service spawned as `session` (MAINPID=), or
// "" when it can. Like systemd, which takes a MAINPID= only in the service's cgroup, the pid
// must belong to the service: it runs in the service's session (the check every sender
// passes), it is alive and not a zombie, and it is not vigild itself.
std::string main_pid_refusal(int pid, int session);

// "<dir>/<unit>.sock"
std::string socket_path(const std::string &dir, const std::string &unit);

// Makes `dir` ready to hold notify sockets: created (one level) if missing, mode 0711 so that
// services running as other users can reach their socket but nobody can list the folder. An
// existing folder must be a directory (not a symlink) owned by vigild's user, or a user who made
// it first could swap the sockets: "" or the error, e.g. "/run/vigil-notify: owned by uid 1000,
// not by vigild's user (uid 0)". A folder of vigild's user with a wider mode (a run that was
// stopped halfway, an operator's chmod) gets 0711 back rather than being refused, unlike the
// control socket's folder: this is safe because what others planted in it while it was open
// is unlinked before each socket is bound (open()), after the mode is fixed, and the control
// socket's folder is refused because its path is the operator's choice and may be shared.
std::string prepare_socket_dir(const std::string &dir);

class NotifySocket {
public:
    struct Callbacks {
        std::function<bool(int pid)> owns;                            // required
        std::function<void(const Message &, int pid)> message;        // an accepted datagram
        std::function<void(int pid, const std::string &why)> refused; // optional, for the log
    };
    struct OpenResult {
        std::unique_ptr<NotifySocket> socket;
        std::string error; // "bind /run/vigil/notify/web.sock: Permission denied"
    };

    // Removes a stale socket at `path`, binds (the folder must exist: prepare_socket_dir),
    // makes the socket 0666 and starts reading. Errors are values.
    static OpenResult open(uv_loop_s *loop, const std::string &path, Callbacks callbacks);
    // Continuity across an exec of vigild: the socket the old binary had bound at `path`
    // (its descriptor, fd()), read on by the new one.
    static std::unique_ptr<NotifySocket> adopt(uv_loop_s *loop, std::string path, int fd,
                                               Callbacks callbacks);
    int fd() const noexcept { return fd_; }

    // Stops reading, closes the socket and removes its path.
    ~NotifySocket();
    NotifySocket(const NotifySocket &) = delete;
    NotifySocket &operator=(const NotifySocket &) = delete;

    const std::string &path() const noexcept { return path_; }
    // ("NOTIFY_SOCKET", path): for proc::SpawnExtras::env.
    std::pair<std::string, std::string> env() const { return {"NOTIFY_SOCKET", path_}; }
    std::uint64_t accepted_total() const noexcept { return accepted_; }
    std::uint64_t refused_total() const noexcept { return refused_; }

    // Reads the datagrams waiting now, without waiting for the loop. The daemon calls it
    // before it acts on the exit of the service's main process, so that a MAINPID= sent just
    // before that exit is seen first (systemd, too, reads notifications before SIGCHLD).
    void receive_now() { on_readable(); }

private:
    NotifySocket(uv_loop_s *loop, std::string path, int fd, Callbacks cb);
    void on_readable();

    std::string path_;
    int fd_;
    Callbacks cb_;
    uv_poll_s *poll_ = nullptr;
    std::uint64_t accepted_ = 0, refused_ = 0;
    std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// The s6/dinit readiness convention (`ready: {"fd": N}`): the service writes a newline to fd N
// when it is ready. ReadyFd owns a pipe: the daemon passes child_end() to the spawn as fd N
// (proc::SpawnExtras::fds = {{child_end(), N}}) and calls close_child_end() right after the
// spawn, so that the pipe reports EOF once the service and its children close it. on_ready
// fires once, at the first newline; then the read end is closed (a later write by the service
// gets EPIPE, as with s6). EOF without a newline means the service will never be ready this way.
class ReadyFd {
public:
    struct OpenResult {
        std::unique_ptr<ReadyFd> ready_fd;
        std::string error;
    };
    static OpenResult open(uv_loop_s *loop, std::function<void()> on_ready);
    // Continuity across an exec of vigild: the read end the old binary was waiting on
    // (read_fd()); the service's end is in the service only by then.
    static std::unique_ptr<ReadyFd> adopt(uv_loop_s *loop, int read_fd,
                                          std::function<void()> on_ready);
    ~ReadyFd();
    ReadyFd(const ReadyFd &) = delete;
    ReadyFd &operator=(const ReadyFd &) = delete;

    int child_end() const noexcept { return write_fd_; } // close-on-exec in vigild
    void close_child_end() noexcept;
    bool fired() const noexcept { return fired_; }
    bool eof() const noexcept { return eof_; }
    // The read end while vigild still waits for the newline, else -1.
    int read_fd() const noexcept { return fired_ || eof_ ? -1 : read_fd_; }

private:
    ReadyFd(uv_loop_s *loop, int read_fd, int write_fd, std::function<void()> on_ready);
    void on_readable();
    void stop_reading() noexcept;

    int read_fd_, write_fd_;
    std::function<void()> on_ready_;
    uv_poll_s *poll_ = nullptr;
    bool fired_ = false, eof_ = false;
};

// The sd_watchdog protocol: the service sends WATCHDOG=1 at least every `interval`
// (it reads the interval from WATCHDOG_USEC and usually pings at half of it). One uv_timer,
// armed only between start() and stop() or a miss; missed() fires once, when an interval
// passes with no ping(). The daemon calls ping() on WATCHDOG=1, set_interval() on
// WATCHDOG_USEC= (0 disables, like systemd), and treats WATCHDOG=trigger like a miss.
class Watchdog {
public:
    Watchdog(uv_loop_s *loop, Duration interval, std::function<void()> missed);
    ~Watchdog();
    Watchdog(const Watchdog &) = delete;
    Watchdog &operator=(const Watchdog &) = delete;

    void start();
    void ping();
    void set_interval(Duration interval);
    void stop();
    bool armed() const noexcept { return armed_; }
    Duration interval() const noexcept { return interval_; }

private:
    void arm();

    uv_timer_s *timer_;
    Duration interval_;
    std::function<void()> missed_;
    bool armed_ = false;
};

// WATCHDOG_USEC (and WATCHDOG_PID when the pid is known) for the service's environment.
// sd_watchdog_enabled() ignores a missing WATCHDOG_PID but refuses a wrong one, so pass the
// pid only if it is the pid the service will have.
std::vector<std::pair<std::string, std::string>> watchdog_env(Duration interval,
                                                              std::optional<int> pid = {});

} // namespace vigil::notify

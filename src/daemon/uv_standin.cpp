// uv_standin.cpp: the stand-in that answers the control socket while vigild re-executes
// itself (reexec.cpp has the re-exec, uv_reexec.cpp the exec).
//
// From writing the state until the new binary's loop runs, vigild answers nobody: the old
// image exports and encodes its state, executes, and the new one decodes and adopts it. Reading
// clients (`vigilctl status` polled by a script, a readiness check) would wait all that time.
// So, before the export, vigild forks a copy of itself, the stand-in (comm "vigild-standin"):
//  - it listens on the same control socket, with a loop and a server of its own, every
//    signal blocked and nothing of vigild's loop touched (its descriptors stay open, unused,
//    until it exits);
//  - it answers the requests that only read (status, tree, checks, version: answers_here()),
//    from its copy of the state, which is vigild's as it was when the re-exec began; `version`
//    says "stand_in": true. Access rules and limits are the control server's own;
//  - any other request (start, stop, logs, events, reload, another reexec...) it holds:
//    unanswered and unread past it, for the new binary (ctl::ServerOptions::hold);
//  - the new binary, once it has adopted the state and its loop has turned once (that turn
//    registers every carried descriptor with epoll), sends "S" over a socket pair, before it
//    listens; the stand-in stops accepting and sends back every connection it can hand on
//    (each with the request it held or the part of a line it read), then "E"; the new binary
//    adopts them and answers the held requests on its loop's next turn. A
//    connection whose answer the stand-in is still writing is finished by the stand-in (a
//    request held behind it is answered with an error that says to send it again) and closed;
//  - should the exec fail, the old binary takes the connections back the same way;
//  - it exits once it has nothing left to write (or after stand_in_drain), when the socket
//    pair closes (the other side is gone), and at the latest stand_in_life after it began
//    (then it answers what it held with an error that says to send it again): a binary
//    that does not know the stand-in (an older vigild) still gets the socket to itself.
// The stand-in is vigild's child before and after the exec; reap() knows its pid (carried in
// VIGIL_REEXEC_STAND_IN with the socket pair's descriptor), so it is not counted as an orphan.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "control_api.hpp"
#include "shell.hpp"
#include "uv_os.hpp"

namespace vigil::daemon {

namespace {

constexpr Duration stand_in_life{30'000};          // then it gives up (the exec never ended)
constexpr Duration stand_in_drain{2'000};          // to finish writing answers after the hand-over
constexpr Duration stand_in_answer{2'000};         // for the stand-in to hand its connections over
constexpr std::size_t stand_in_max_carried = 4096; // connections taken from it, at most
constexpr int stand_in_nice = 10;

// The requests a stand-in answers: those that only read the tree's state.
bool answers_here(ctl::Cmd c) {
    return c == ctl::Cmd::Status || c == ctl::Cmd::Tree || c == ctl::Cmd::Checks ||
           c == ctl::Cmd::Version;
}

// A message over the socket pair: its bytes and room for one descriptor (SCM_RIGHTS), for
// sending and for receiving alike.
struct OneFdMessage {
    iovec iov;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))]{};
    msghdr m{};
    OneFdMessage(char *data, std::size_t size) : iov{data, size} {
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        m.msg_control = control;
        m.msg_controllen = sizeof control;
    }
    OneFdMessage(const OneFdMessage &) = delete; // m points into it
    void put_fd(int fd) {
        cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    int received_fd() { // the one received, -1 if none
        int got = -1;
        for (cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
                c->cmsg_len == CMSG_LEN(sizeof(int)))
                std::memcpy(&got, CMSG_DATA(c), sizeof got);
        return got;
    }
};

// One connection over the socket pair: "C", the bytes it has sent and nobody read, and its
// descriptor. False when the other side does not take it.
bool send_connection(int chan, int fd, const std::string &pending) {
    std::string bytes = "C" + pending;
    OneFdMessage msg(bytes.data(), bytes.size());
    msg.put_fd(fd);
    ssize_t n;
    do
        n = ::sendmsg(chan, &msg.m, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == static_cast<ssize_t>(bytes.size());
}

// What the other side of the socket pair said: "S", hand everything over; end of file or an
// error, it is gone (the connections are closed, held requests answered: send it again).
void stand_in_told(int chan, ctl::Server &server, const std::function<void(std::size_t)> &drain) {
    char what = 0;
    ssize_t n;
    do
        n = ::recv(chan, &what, 1, 0);
    while (n < 0 && errno == EINTR);
    if (n == 1 && what == 'S') {
        const timeval limit{2, 0};
        ::setsockopt(chan, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
        for (const ctl::Server::CarriedSession &s : server.carriable_sessions())
            if (!send_connection(chan, s.fd, s.pending)) break;
        // The connections are the next vigild's now (or, if it took none, gone
        // with this one): close them here, then say that all went.
        const std::size_t left = server.hand_over();
        (void)::send(chan, "E", 1, MSG_NOSIGNAL);
        drain(left);
        return;
    }
    drain(server.hand_over(true));
}

} // namespace

std::optional<StandInEnv> take_stand_in_env() {
    const char *v = std::getenv(stand_in_env);
    if (!v) return std::nullopt;
    int fd = -1, pid = -1;
    char tail = 0;
    const bool ok = std::sscanf(v, "%d:%d%c", &fd, &pid, &tail) == 2 && fd >= 0 && pid > 0;
    ::unsetenv(stand_in_env);
    if (!ok) return std::nullopt;
    return StandInEnv{fd, pid};
}

void UvOs::expect_stand_in(StandInEnv s) {
    stand_in_fd_ = s.fd;
    stand_in_pid_ = s.pid;
}

void UvOs::begin_stand_in() {
    if (!ctl_ || ctl_->fd() < 0 || stand_in_fd_ >= 0 || stand_in_pid_ > 0) return;
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return; // none: the
    // requests wait in the listening socket's backlog, as they would without a stand-in
    const pid_t vigild = ::getpid();
    // vigild's connections that wait for nothing go to the stand-in too: a request may be in
    // one of them already (accepted in the turn that began the re-exec), or come next.
    std::vector<ctl::Server::CarriedSession> sessions = ctl_->carriable_sessions();
    // Every signal blocked across the fork: the child never runs vigild's handlers (they would
    // write into vigild's loop), and keeps them blocked.
    sigset_t all, old;
    sigfillset(&all);
    ::sigprocmask(SIG_SETMASK, &all, &old);
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::close(sv[0]);
        stand_in_main(sv[1], vigild, std::move(sessions));
    }
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    ::close(sv[1]);
    if (pid < 0) {
        ::close(sv[0]);
        return;
    }
    ctl_->close_carriable(); // the stand-in has them (and hands them on, or back)
    stand_in_fd_ = sv[0];
    stand_in_pid_ = pid;
}

void UvOs::take_over_later() {
    uv_idle_init(&loop_, &stand_in_idle_);
    uv_idle_start(&stand_in_idle_, [](uv_idle_t *) {});
    uv_check_init(&loop_, &stand_in_check_);
    stand_in_check_.data = this;
    uv_check_start(&stand_in_check_, [](uv_check_t *h) {
        auto *self = static_cast<UvOs *>(h->data);
        self->guard("the control socket taken over from the stand-in",
                    [self] { self->take_over_control(); });
    });
    stand_in_handles_ = true;
}

// After the first turn: the stand-in stops and hands over, then this binary listens on the
// socket and takes every connection, the old binary's and the stand-in's.
void UvOs::take_over_control() {
    if (!stand_in_handles_) return;
    stand_in_handles_ = false;
    uv_idle_stop(&stand_in_idle_);
    uv_check_stop(&stand_in_check_);
    uv_close(reinterpret_cast<uv_handle_t *>(&stand_in_idle_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t *>(&stand_in_check_), nullptr);
    std::vector<HandoverSession> taken = take_from_stand_in();
    std::string message;
    if (ctl_->adopt(std::exchange(later_control_fd_, -1), &message) != 0) {
        // Nobody listens on the path any more: a new socket there is the next best thing.
        own_.say(LogLevel::Error, message + "; listening on a new socket");
        if (ctl_->listen(&message) != 0)
            own_.say(LogLevel::Error,
                     message + "; vigild runs on without a control socket (SIGTERM stops it, "
                               "SIGRTMIN+1 executes it again)");
    }
    adopt_sessions(std::move(taken));
}

void UvOs::end_stand_in() {
    for (HandoverSession &s : take_from_stand_in()) {
        if (ctl_)
            ctl_->adopt_session(s.fd, std::move(s.pending));
        else
            ::close(s.fd);
    }
}

// Blocks, bounded by stand_in_answer: the stand-in is vigild's own child, which answers at
// once unless something is badly wrong (then it is killed, and its connections go with it).
std::vector<HandoverSession> UvOs::take_from_stand_in() {
    std::vector<HandoverSession> out;
    if (stand_in_fd_ < 0) return out;
    const int chan = std::exchange(stand_in_fd_, -1);
    bool ended = false;
    if (::send(chan, "S", 1, MSG_NOSIGNAL) == 1) {
        const std::uint64_t until =
            uv_hrtime() + static_cast<std::uint64_t>(stand_in_answer.count()) * 1'000'000;
        // Not zero-filled: only what a message brings is touched.
        constexpr std::size_t buf_size = 1 + ctl::max_request_line + 64 * 1024;
        const std::unique_ptr<char[]> buf(new char[buf_size]);
        while (out.size() < stand_in_max_carried) {
            // What is queued already is taken even past the limit (vigild may have been
            // stopped, or not scheduled, in between): the limit bounds only waiting for more.
            const std::uint64_t t = uv_hrtime();
            const int wait_ms = t >= until ? 0 : static_cast<int>((until - t) / 1'000'000) + 1;
            pollfd p{chan, POLLIN, 0};
            const int r = ::poll(&p, 1, wait_ms);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            OneFdMessage msg(buf.get(), buf_size);
            const ssize_t n = ::recvmsg(chan, &msg.m, MSG_CMSG_CLOEXEC);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            const int fd = msg.received_fd();
            if (buf[0] == 'E' && fd < 0) {
                ended = true;
                break;
            }
            if (buf[0] != 'C' || fd < 0 || (msg.m.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
                if (fd >= 0) ::close(fd);
                continue;
            }
            out.push_back(
                HandoverSession{fd, std::string(buf.get() + 1, static_cast<std::size_t>(n) - 1)});
        }
    }
    ::close(chan);
    if (!ended && stand_in_pid_ > 0) {
        ::kill(stand_in_pid_, SIGKILL);
        own_.say(LogLevel::Warn, "re-exec: the stand-in (pid " + std::to_string(stand_in_pid_) +
                                     ") did not hand its connections over within " +
                                     core::format_duration(stand_in_answer) +
                                     "; it was killed and its clients must ask again");
    }
    return out;
}

// The stand-in's whole life: never returns. Nothing here may touch vigild's loop, its threads'
// locks (the log writers', the journal's) or its signal handlers: only this process's own
// loop, the control server made here, and reads of the state copied by the fork.
[[noreturn]] void UvOs::stand_in_main(int chan, pid_t vigild,
                                      std::vector<ctl::Server::CarriedSession> sessions) {
    ::prctl(PR_SET_NAME, "vigild-standin", 0, 0, 0);
    // The exec comes first: the stand-in answers with the CPU that vigild does not need (no
    // privilege is needed to lower one's own priority).
    (void)::setpriority(PRIO_PROCESS, 0, stand_in_nice);
    standing_in_for_ = vigild;
    int code = 0;
    try {
        uv_loop_t loop{};
        if (uv_loop_init(&loop) != 0) ::_exit(1);
        ctl::ServerOptions so = ctl_->options();
        so.log = nullptr; // the journal is vigild's (its forwarder's thread is not here)
        so.hold = [](const ctl::Request &q) { return !answers_here(q.cmd); };
        ctl::Server server(
            &loop, std::move(so), [this](const ctl::ResponderPtr &s, const ctl::Request &q) {
                shell_->control().handle(s, q); // the server turns an exception into an error
            });
        if (server.adopt(ctl_->fd()) != 0) ::_exit(1);
        for (ctl::Server::CarriedSession &s : sessions)
            server.adopt_session(s.fd, std::move(s.pending));

        enum class Phase { Answering, Draining, Done } phase = Phase::Answering;
        const std::uint64_t born = uv_now(&loop);
        std::uint64_t drain_until = 0;
        auto drain = [&](std::size_t left) {
            phase = left > 0 ? Phase::Draining : Phase::Done;
            drain_until = uv_now(&loop) + static_cast<std::uint64_t>(stand_in_drain.count());
        };
        // "S": hand everything over. End of file or an error: the other side is gone.
        uv_poll_t poll{};
        uv_poll_init(&loop, &poll, chan);
        struct Ctx {
            int chan;
            ctl::Server *server;
            std::function<void(std::size_t)> drain;
        } ctx{chan, &server, drain};
        poll.data = &ctx;
        uv_poll_start(&poll, UV_READABLE | UV_DISCONNECT, [](uv_poll_t *h, int, int) {
            auto *c = static_cast<Ctx *>(h->data);
            uv_poll_stop(h);
            try {
                stand_in_told(c->chan, *c->server, c->drain);
            } catch (...) {
                ::_exit(1); // nothing may be thrown into libuv; the connections go with it
            }
        });
        // The clock: the stand-in's life, then the drain's end.
        uv_timer_t tick{};
        uv_timer_init(&loop, &tick);
        uv_timer_start(
            &tick, [](uv_timer_t *) {}, 10, 10);
        while (phase != Phase::Done) {
            uv_run(&loop, UV_RUN_ONCE);
            const std::uint64_t now = uv_now(&loop);
            if (phase == Phase::Answering &&
                now - born >= static_cast<std::uint64_t>(stand_in_life.count())) {
                uv_poll_stop(&poll);
                drain(server.hand_over(true));
            }
            if (phase == Phase::Draining && (server.session_count() == 0 || now >= drain_until))
                phase = Phase::Done;
        }
    } catch (...) {
        code = 1;
    }
    ::_exit(code);
}

} // namespace vigil::daemon

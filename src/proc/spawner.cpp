// spawner.cpp: proc::Spawner and its helper process (see include/vigil/proc/spawner.hpp).
//
// Wire format, one SOCK_SEQPACKET message each way (native endianness: both ends are the same
// binary):
//   request: u32 magic, u32 flags, path, argv, envp, fd targets (the sources ride along as
//            SCM_RIGHTS, in order), limits, groups, gid, uid, umask, cwd.
//   reply:   a fixed ReplyHead, then the error's object and detail strings; with a child that
//            exec'd and pipes, the two read ends as SCM_RIGHTS.
// Strings are u32 length + bytes + NUL, so the helper points argv/envp into its buffer.
#include "vigil/proc/spawner.hpp"

#include "launch.hpp"

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace vigil::proc {

namespace {

constexpr std::uint32_t request_magic = 0x76696731; // "vig1"
constexpr std::size_t max_request = 1 << 20;
constexpr std::size_t max_extra_fds = 64;

// Request flags.
constexpr std::uint32_t flag_new_session = 1U << 0;
constexpr std::uint32_t flag_set_groups = 1U << 1;
constexpr std::uint32_t flag_set_gid = 1U << 2;
constexpr std::uint32_t flag_set_uid = 1U << 3;
constexpr std::uint32_t flag_set_umask = 1U << 4;
constexpr std::uint32_t flag_has_cwd = 1U << 5;

struct ReplyHead {
    std::uint32_t status; // detail::Launched::Status
    std::int32_t pid;
    detail::ChildFailure failure;
    std::int32_t status_errno;
    std::uint32_t error_stage;
    std::int32_t error_errno;
    std::uint32_t object_len, detail_len;
};

// ---- encoding ------------------------------------------------------------------------------

class Writer {
public:
    template <typename T> void put(T v) {
        const char *p = reinterpret_cast<const char *>(&v);
        buf_.append(p, sizeof v);
    }
    void str(const char *s) {
        auto n = static_cast<std::uint32_t>(std::strlen(s));
        put(n);
        buf_.append(s, n + 1); // with the NUL
    }
    std::string &data() { return buf_; }

private:
    std::string buf_;
};

class Reader {
public:
    Reader(char *p, std::size_t n) : p_(p), end_(p + n) {}
    template <typename T> bool get(T &v) {
        if (static_cast<std::size_t>(end_ - p_) < sizeof v) return false;
        std::memcpy(&v, p_, sizeof v);
        p_ += sizeof v;
        return true;
    }
    // Points into the buffer; the NUL was sent with the string.
    bool str(char *&s) {
        std::uint32_t n = 0;
        if (!get(n) || static_cast<std::size_t>(end_ - p_) <= n || p_[n] != '\0') return false;
        s = p_;
        p_ += n + 1;
        return true;
    }
    bool done() const { return p_ == end_; }

private:
    char *p_, *end_;
};

bool write_strings(Writer &w, const std::vector<char *> &v) {
    w.put(static_cast<std::uint32_t>(v.size() - 1)); // without the null terminator
    for (std::size_t i = 0; i + 1 < v.size(); ++i)
        w.str(v[i]);
    return true;
}

bool read_strings(Reader &r, std::vector<char *> &v) {
    std::uint32_t n = 0;
    if (!r.get(n) || n > max_request) return false;
    v.assign(n + 1, nullptr);
    for (std::uint32_t i = 0; i < n; ++i)
        if (!r.str(v[i])) return false;
    return true;
}

// The plan minus the fd sources, which travel as SCM_RIGHTS.
std::string encode(const detail::LaunchPlan &p) {
    Writer w;
    std::uint32_t flags = (p.new_session ? flag_new_session : 0) |
                          (p.set_groups ? flag_set_groups : 0) | (p.set_gid ? flag_set_gid : 0) |
                          (p.set_uid ? flag_set_uid : 0) | (p.set_umask ? flag_set_umask : 0) |
                          (p.cwd ? flag_has_cwd : 0);
    w.put(request_magic);
    w.put(flags);
    w.str(p.path);
    write_strings(w, p.argv);
    write_strings(w, p.envp);
    w.put(static_cast<std::uint32_t>(p.fds.size()));
    for (const auto &fd : p.fds)
        w.put(static_cast<std::int32_t>(fd.second));
    w.put(static_cast<std::uint32_t>(p.limits.size()));
    for (const detail::ChildLimit &l : p.limits) {
        w.put(static_cast<std::int32_t>(l.resource));
        w.put(static_cast<std::uint64_t>(l.value.rlim_cur));
        w.put(static_cast<std::uint64_t>(l.value.rlim_max));
    }
    w.put(static_cast<std::uint32_t>(p.groups.size()));
    for (gid_t g : p.groups)
        w.put(static_cast<std::uint32_t>(g));
    w.put(static_cast<std::uint32_t>(p.gid));
    w.put(static_cast<std::uint32_t>(p.uid));
    w.put(static_cast<std::uint32_t>(p.umask_value));
    if (p.cwd) w.str(p.cwd);
    return std::move(w.data());
}

// Decodes a request whose fd sources are `fds` (received, in order). False: malformed.
bool decode(char *buf, std::size_t n, const std::vector<int> &fds, detail::LaunchPlan &p) {
    Reader r(buf, n);
    std::uint32_t magic = 0, flags = 0, count = 0;
    char *path = nullptr;
    if (!r.get(magic) || magic != request_magic || !r.get(flags) || !r.str(path)) return false;
    p.path = path;
    if (!read_strings(r, p.argv) || !read_strings(r, p.envp)) return false;
    if (!r.get(count) || count != fds.size()) return false;
    p.fds.clear();
    for (std::uint32_t i = 0; i < count; ++i) {
        std::int32_t target = 0;
        if (!r.get(target)) return false;
        p.fds.emplace_back(fds[i], target);
    }
    if (!r.get(count) || count > 1024) return false;
    p.limits.assign(count, {});
    for (detail::ChildLimit &l : p.limits) {
        std::int32_t res = 0;
        std::uint64_t soft = 0, hard = 0;
        if (!r.get(res) || !r.get(soft) || !r.get(hard)) return false;
        l.resource = res;
        l.value.rlim_cur = static_cast<rlim_t>(soft);
        l.value.rlim_max = static_cast<rlim_t>(hard);
    }
    if (!r.get(count) || count > 65536) return false;
    p.groups.assign(count, 0);
    for (gid_t &g : p.groups) {
        std::uint32_t v = 0;
        if (!r.get(v)) return false;
        g = static_cast<gid_t>(v);
    }
    std::uint32_t gid = 0, uid = 0, mask = 0;
    if (!r.get(gid) || !r.get(uid) || !r.get(mask)) return false;
    p.gid = static_cast<gid_t>(gid);
    p.uid = static_cast<uid_t>(uid);
    p.umask_value = static_cast<mode_t>(mask);
    p.cwd = nullptr;
    if (flags & flag_has_cwd) {
        char *cwd = nullptr;
        if (!r.str(cwd)) return false;
        p.cwd = cwd;
    }
    p.pipes = true;
    p.foreground_tty = false;
    p.new_session = (flags & flag_new_session) != 0;
    p.set_groups = (flags & flag_set_groups) != 0;
    p.set_gid = (flags & flag_set_gid) != 0;
    p.set_uid = (flags & flag_set_uid) != 0;
    p.set_umask = (flags & flag_set_umask) != 0;
    return r.done();
}

// ---- fd passing ------------------------------------------------------------------------------

// One sendmsg of `data` with `fds` as SCM_RIGHTS. Returns 0 or errno. MSG_NOSIGNAL: a dead
// peer is EPIPE, not a SIGPIPE that kills us.
int send_with_fds(int sock, const void *data, std::size_t n, const int *fds, std::size_t nfds) {
    iovec iov{const_cast<void *>(data), n};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control;
    if (nfds > 0) {
        control.assign(CMSG_SPACE(sizeof(int) * nfds), 0);
        msg.msg_control = control.data();
        msg.msg_controllen = control.size();
        cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    }
    for (;;) {
        ssize_t r = sendmsg(sock, &msg, MSG_NOSIGNAL);
        if (r >= 0) return static_cast<std::size_t>(r) == n ? 0 : EIO;
        if (errno != EINTR) return errno;
    }
}

// One recvmsg into `buf`; received fds (close-on-exec) are appended to `fds`. Returns the
// message length, 0 at EOF, or -errno; a truncated message is -EMSGSIZE. `fds_lost` is set
// when some fds did not arrive (MSG_CTRUNC: the receiver is out of descriptors, and the kernel
// closed the rest); those that did arrive are still returned, for the caller to close.
ssize_t recv_with_fds(int sock, char *buf, std::size_t cap, std::vector<int> &fds,
                      std::size_t max_fds, bool &fds_lost) {
    iovec iov{buf, cap};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * max_fds), 0);
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    ssize_t n;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return -errno;
    for (cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        std::size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (std::size_t i = 0; i < k; ++i) {
            int fd = -1;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
            fds.push_back(fd);
        }
    }
    fds_lost = (msg.msg_flags & MSG_CTRUNC) != 0;
    if (msg.msg_flags & MSG_TRUNC) return -EMSGSIZE;
    return n;
}

void close_all(std::vector<int> &fds) {
    for (int fd : fds)
        if (fd >= 0) close(fd);
    fds.clear();
}

// ---- the helper ------------------------------------------------------------------------------

void reply(int sock, const detail::Launched &l) {
    ReplyHead h{};
    h.status = static_cast<std::uint32_t>(l.status);
    h.pid = l.pid;
    h.failure = l.failure;
    h.status_errno = l.status_errno;
    std::string tail;
    if (l.error) {
        h.error_stage = static_cast<std::uint32_t>(l.error->stage);
        h.error_errno = l.error->error;
        h.object_len = static_cast<std::uint32_t>(l.error->object.size());
        h.detail_len = static_cast<std::uint32_t>(l.error->detail.size());
        tail = l.error->object + l.error->detail;
    }
    std::string msg(reinterpret_cast<const char *>(&h), sizeof h);
    msg += tail;
    int fds[2] = {l.out_fd, l.err_fd};
    std::size_t nfds = (l.out_fd >= 0 && l.err_fd >= 0) ? 2 : 0;
    if (send_with_fds(sock, msg.data(), msg.size(), fds, nfds) != 0) _exit(0); // vigild gone
}

// Closes every descriptor but `keep` from `from` up (close_range, or one by one).
void close_from(int from, int keep) {
    if (keep < from) {
        if (syscall(SYS_close_range, static_cast<unsigned>(from), ~0U, 0U) == 0) return;
    } else {
        bool ok = true;
        if (keep > from)
            ok = syscall(SYS_close_range, static_cast<unsigned>(from),
                         static_cast<unsigned>(keep - 1), 0U) == 0;
        if (ok && syscall(SYS_close_range, static_cast<unsigned>(keep + 1), ~0U, 0U) == 0) return;
    }
    long limit = sysconf(_SC_OPEN_MAX);
    for (long fd = from; fd < (limit > 0 ? limit : 65536); ++fd)
        if (fd != keep) close(static_cast<int>(fd));
}

[[noreturn]] void helper_main(int sock, pid_t parent) {
    // Die with vigild even if the socket's EOF never comes (say, a descriptor leaked into a
    // process of vigild's that outlives it). The check closes the race with an early death.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(0);
    // Every signal blocked for good: a terminal's ^C or a `kill -TERM -pgid` aimed at vigild
    // must not kill the helper mid-spawn; it leaves when vigild closes the socket.
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, nullptr);

    // Hold nothing but the socket (fd 3) and stderr (crash reports): 0 and 1 become
    // /dev/null so that the helper keeps no pipe of vigild's open.
    int s = fcntl(sock, F_DUPFD_CLOEXEC, 3);
    if (s < 0) _exit(1);
    close(sock);
    int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd >= 0) {
        dup2(null_fd, 0);
        dup2(null_fd, 1);
        if (fcntl(2, F_GETFD) < 0) dup2(null_fd, 2);
    }
    if (s != 3) {
        if (dup3(s, 3, O_CLOEXEC) < 0) _exit(1);
        s = 3;
    }
    close_from(4, -1);

    std::vector<char> buf(max_request);
    std::vector<int> fds;
    detail::LaunchPlan plan;
    for (;;) {
        fds.clear();
        bool lost = false;
        ssize_t n = recv_with_fds(s, buf.data(), buf.size(), fds, max_extra_fds, lost);
        if (n == 0) _exit(0); // vigild closed its end
        if (n < 0 && n != -EMSGSIZE) _exit(1);
        detail::Launched l;
        if (lost) {
            l.status = detail::Launched::Status::Error;
            l.error = SpawnError{ExecStage::Prepare, EMFILE, "spawner", {}};
        } else if (n < 0 || !decode(buf.data(), static_cast<std::size_t>(n), fds, plan)) {
            l.status = detail::Launched::Status::Error;
            l.error = SpawnError{ExecStage::Prepare, EPROTO, "spawner request", {}};
        } else {
            l = detail::launch(plan, true);
        }
        close_all(fds); // the child has its copies (or never will)
        reply(s, l);
        if (l.out_fd >= 0) close(l.out_fd);
        if (l.err_fd >= 0) close(l.err_fd);
    }
}

} // namespace

Spawner::~Spawner() {
    stop();
}

int Spawner::start() {
    if (sock_ >= 0) return 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return errno;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(sv[0]);
        close(sv[1]);
        return err;
    }
    if (pid == 0) {
        close(sv[0]);
        helper_main(sv[1], parent);
    }
    close(sv[1]);
    sock_ = sv[0];
    pid_ = pid;
    // A pidfd lets stop() wait for this very process even if vigild's waitpid(-1) reaped it
    // first and the pid was reused (then waitid says ECHILD instead of reaping a stranger).
    pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (pidfd_ >= 0) fcntl(pidfd_, F_SETFD, FD_CLOEXEC);
    return 0;
}

void Spawner::stop() noexcept {
    if (sock_ >= 0) close(sock_);
    sock_ = -1;
    if (pid_ < 0) return;
    if (pidfd_ >= 0) {
        // EOF on the socket makes the helper exit at once; a second is plenty.
        pollfd p{pidfd_, POLLIN, 0};
        if (poll(&p, 1, 1000) == 0) syscall(SYS_pidfd_send_signal, pidfd_, SIGKILL, nullptr, 0);
        siginfo_t info{};
        while (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_), &info, WEXITED) <
                   0 &&
               errno == EINTR) {
        }
        close(pidfd_);
        pidfd_ = -1;
    } else {
        // No pidfd (Linux < 5.3): a bounded WNOHANG wait on the pid itself.
        int st = 0;
        for (int i = 0; i < 1000; ++i) {
            int r = waitpid(pid_, &st, WNOHANG);
            if (r != 0) break;
            if (i == 999) {
                kill(pid_, SIGKILL);
                waitpid(pid_, &st, 0);
            }
            usleep(1000);
        }
    }
    pid_ = -1;
}

void Spawner::give_up(const std::string &why) {
    stop();
    disabled_ = true;
    if (!warning_.empty()) warning_ += "; ";
    warning_ += "spawner helper " + why + "; spawning from vigild directly from now on";
}

std::string Spawner::take_warning() {
    return std::exchange(warning_, {});
}

SpawnResult Spawner::spawn(const SpawnSpec &spec, const SpawnExtras &extras) {
    if (sock_ < 0 || disabled_ || extras.stdio != Stdio::Pipes ||
        (extras.foreground_tty && !extras.new_session) || extras.fds.size() > max_extra_fds)
        return proc::spawn(spec, extras);

    detail::Prepared prep;
    if (auto e = detail::prepare(spec, extras, prep)) return SpawnResult{std::nullopt, *e};
    // proc::spawn's child would fail to install a closed descriptor with EBADF at the stdio
    // stage; SCM_RIGHTS refuses the whole message instead, so say it the child's way here.
    for (const auto &[src, target] : extras.fds) {
        if (fcntl(src, F_GETFD) < 0)
            return SpawnResult{
                std::nullopt,
                SpawnError{ExecStage::Stdio, errno, "fd " + std::to_string(target), {}}};
    }
    detail::LaunchPlan plan = detail::make_plan(spec, extras, prep);
    std::string msg = encode(plan);
    if (msg.size() > max_request) return proc::spawn(spec, extras);
    std::vector<int> srcs;
    for (const auto &fd : extras.fds)
        srcs.push_back(fd.first);

    for (;;) {
        int err = send_with_fds(sock_, msg.data(), msg.size(), srcs.data(), srcs.size());
        // Too big for one message on this socket: this request only goes the direct way.
        if (err == EMSGSIZE || err == ENOBUFS) return proc::spawn(spec, extras);
        std::string why;
        if (err != 0) {
            why = std::string("died (send: ") + std::strerror(err) + ")";
        } else {
            char head_buf[sizeof(ReplyHead) + 8192];
            std::vector<int> fds;
            bool lost = false; // then fds.size() != 2: handled below
            ssize_t n = recv_with_fds(sock_, head_buf, sizeof head_buf, fds, 2, lost);
            if (n >= static_cast<ssize_t>(sizeof(ReplyHead))) {
                ReplyHead h{};
                std::memcpy(&h, head_buf, sizeof h);
                std::size_t tail = static_cast<std::size_t>(n) - sizeof h;
                if (h.status <= static_cast<std::uint32_t>(detail::Launched::Status::Error) &&
                    std::size_t{h.object_len} + h.detail_len == tail) {
                    detail::Launched l;
                    l.status = static_cast<detail::Launched::Status>(h.status);
                    l.pid = h.pid;
                    l.failure = h.failure;
                    l.status_errno = h.status_errno;
                    if (l.status == detail::Launched::Status::Error) {
                        const char *t = head_buf + sizeof h;
                        l.error = SpawnError{static_cast<ExecStage>(h.error_stage), h.error_errno,
                                             std::string(t, h.object_len),
                                             std::string(t + h.object_len, h.detail_len)};
                    }
                    if (l.status == detail::Launched::Status::Execd) {
                        if (fds.size() != 2 || lost) {
                            // The read ends did not arrive (vigild is out of descriptors):
                            // the service would write into the void. Take it back, and fail
                            // the spawn as proc::spawn's pipe2() would have.
                            close_all(fds);
                            kill(l.pid, SIGKILL);
                            int st = 0;
                            while (waitpid(l.pid, &st, 0) < 0 && errno == EINTR) {
                            }
                            return SpawnResult{std::nullopt,
                                               SpawnError{ExecStage::Prepare, EMFILE, "pipe", {}}};
                        }
                        l.out_fd = fds[0];
                        l.err_fd = fds[1];
                    } else {
                        close_all(fds);
                    }
                    return detail::finish(std::move(l), spec, prep);
                }
            }
            close_all(fds);
            if (n == 0)
                why = "died";
            else if (n < 0)
                why = std::string("died (receive: ") + std::strerror(static_cast<int>(-n)) + ")";
            else
                why = "died (malformed reply)";
        }
        // The helper is gone (or confused): restart it once, then give up on it.
        stop();
        if (restarts_left_ > 0) {
            --restarts_left_;
            int e = start();
            if (!warning_.empty()) warning_ += "; ";
            if (e == 0) {
                warning_ += "spawner helper " + why + "; restarted";
                continue;
            }
            why += std::string(", and could not be restarted: ") + std::strerror(e);
        }
        give_up(why);
        return proc::spawn(spec, extras);
    }
}

} // namespace vigil::proc

// spawner.cpp: proc::Spawner and its helper process (see include/vigil/proc/spawner.hpp).
//
// Wire format, one SOCK_SEQPACKET message each (native endianness: both ends are the same
// binary; strings are u32 length + bytes):
//   request (vigild -> helper): u32 magic, u64 ticket, u32 flags, then the SpawnSpec and the
//            SpawnExtras field by field (encode() is the reference); SCM_RIGHTS: the sources
//            of extras.fds in order, then cgroup_procs_fd.
//   report  (child -> vigild):  detail::ChildReport; SCM_RIGHTS: stdout's read end, then
//            stderr's (not with merge_stderr), then the child's pidfd (none on Linux < 5.3).
//   reply   (helper -> vigild): ReplyHead, then the error's object and detail; no
//            descriptors (the read ends came with the report).
//
// vigild's side keeps every request from submit() to its delivery by pump() in requests_
// (ticket order, so a ticket's index is ticket - front's ticket). A request is Queued (its
// message and duplicated fds wait in vigild), Sent (the current helper has it) or Done (its
// result waits for delivery). Messages from the helper always concern sent_.front(): the
// helper serves requests one at a time, in order. A request keeps its spec, message and
// duplicated fds until it is Done, so that a helper's death can send it again
// (settle_lost()) or, once the Spawner gave up on helpers, run it in vigild.
#include "vigil/proc/spawner.hpp"

#include "launch.hpp"
#include "vigil/proc/exit.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <string_view>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace vigil::proc {

namespace {

constexpr std::uint32_t request_magic = 0x76726571; // "vreq"
constexpr std::uint32_t reply_magic = 0x7672706c;   // "vrpl"
constexpr std::size_t max_reply_string = 4096;      // object and detail, each
constexpr std::size_t reply_buffer = 16384;
constexpr std::size_t max_unclaimed = 4096;

// Request flags.
constexpr std::uint32_t f_cwd = 1U << 0;
constexpr std::uint32_t f_env_file = 1U << 1;
constexpr std::uint32_t f_env_file_optional = 1U << 2;
constexpr std::uint32_t f_user = 1U << 3;
constexpr std::uint32_t f_group = 1U << 4;
constexpr std::uint32_t f_identity = 1U << 5;
constexpr std::uint32_t f_set_uid = 1U << 6;
constexpr std::uint32_t f_set_gid = 1U << 7;
constexpr std::uint32_t f_set_groups = 1U << 8;
constexpr std::uint32_t f_umask = 1U << 9;
constexpr std::uint32_t f_new_session = 1U << 10;
constexpr std::uint32_t f_merge_stderr = 1U << 11;
constexpr std::uint32_t f_cgroup = 1U << 12;
constexpr std::uint32_t f_listen_pid = 1U << 13;

struct ReplyHead {
    std::uint32_t magic;
    std::uint32_t ok; // 1: exec'd; 0: `stage`, `error`, object and detail follow
    std::uint64_t ticket;
    std::int32_t pid; // the child, or -1
    std::uint32_t stage;
    std::int32_t error;
    std::uint32_t object_len, detail_len;
    std::uint32_t pad; // no implicit padding: every byte sent is initialised
};
static_assert(sizeof(ReplyHead) == 40);

// ---- encoding ------------------------------------------------------------------------------

class Writer {
public:
    template <typename T> void put(T v) {
        buf_.append(reinterpret_cast<const char *>(&v), sizeof v);
    }
    void str(std::string_view s) {
        put(static_cast<std::uint32_t>(s.size()));
        buf_.append(s);
    }
    std::string take() { return std::move(buf_); }

private:
    std::string buf_;
};

// Every read is checked against the end of the buffer, so a count read from the message can
// never make the reader run further than the message (each element consumes bytes).
class Reader {
public:
    Reader(const char *p, std::size_t n) : p_(p), end_(p + n) {}
    template <typename T> bool get(T &v) {
        if (static_cast<std::size_t>(end_ - p_) < sizeof v) return false;
        std::memcpy(&v, p_, sizeof v);
        p_ += sizeof v;
        return true;
    }
    bool str(std::string &s) {
        std::uint32_t n = 0;
        if (!get(n) || static_cast<std::size_t>(end_ - p_) < n) return false;
        s.assign(p_, n);
        p_ += n;
        return true;
    }
    bool done() const { return p_ == end_; }

private:
    const char *p_, *end_;
};

std::string encode(std::uint64_t ticket, const SpawnSpec &s, const SpawnExtras &x) {
    Writer w;
    std::uint32_t flags = 0;
    auto flag = [&flags](bool on, std::uint32_t bit) { flags |= on ? bit : 0; };
    flag(s.cwd.has_value(), f_cwd);
    flag(s.env_file.has_value(), f_env_file);
    flag(s.env_file_optional, f_env_file_optional);
    flag(s.user.has_value(), f_user);
    flag(s.group.has_value(), f_group);
    flag(s.identity.has_value(), f_identity);
    if (s.identity) {
        flag(s.identity->set_uid, f_set_uid);
        flag(s.identity->set_gid, f_set_gid);
        flag(s.identity->set_groups, f_set_groups);
    }
    flag(s.umask.has_value(), f_umask);
    flag(x.new_session, f_new_session);
    flag(x.merge_stderr, f_merge_stderr);
    flag(x.cgroup_procs_fd >= 0, f_cgroup);
    flag(x.listen_pid, f_listen_pid);
    w.put(request_magic);
    w.put(ticket);
    w.put(flags);
    w.put(static_cast<std::uint32_t>(s.argv.size()));
    for (const std::string &a : s.argv)
        w.str(a);
    if (s.cwd) w.str(*s.cwd);
    w.put(static_cast<std::uint32_t>(s.env.size()));
    for (const auto &[k, v] : s.env) {
        w.str(k);
        w.str(v);
    }
    if (s.env_file) w.str(*s.env_file);
    if (s.user) w.str(*s.user);
    if (s.group) w.str(*s.group);
    if (s.identity) {
        w.put(static_cast<std::uint32_t>(s.identity->uid));
        w.put(static_cast<std::uint32_t>(s.identity->gid));
        w.put(static_cast<std::uint32_t>(s.identity->groups.size()));
        for (std::uint32_t g : s.identity->groups)
            w.put(g);
        w.str(s.identity->user_name);
        w.str(s.identity->home);
    }
    if (s.umask) w.put(static_cast<std::uint32_t>(*s.umask));
    w.put(static_cast<std::uint32_t>(s.limits.size()));
    for (const Limit &l : s.limits) {
        w.put(static_cast<std::int32_t>(l.resource));
        w.put(l.soft);
        w.put(l.hard);
    }
    w.put(static_cast<std::uint32_t>(x.env.size()));
    for (const auto &[k, v] : x.env) {
        w.str(k);
        w.str(v);
    }
    w.put(static_cast<std::uint32_t>(x.fds.size()));
    for (const auto &fd : x.fds)
        w.put(static_cast<std::int32_t>(fd.second));
    return w.take();
}

// The ticket alone, to answer even a request that does not decode.
bool decode_ticket(const char *buf, std::size_t n, std::uint64_t &ticket) {
    Reader r(buf, n);
    std::uint32_t magic = 0;
    return r.get(magic) && magic == request_magic && r.get(ticket);
}

// Decodes a request whose fds arrived as `fds` (in order). False: malformed.
bool decode(const char *buf, std::size_t n, const std::vector<int> &fds, SpawnSpec &s,
            SpawnExtras &x) {
    Reader r(buf, n);
    std::uint32_t magic = 0, flags = 0, count = 0;
    std::uint64_t ticket = 0;
    if (!r.get(magic) || !r.get(ticket) || !r.get(flags) || !r.get(count)) return false;
    for (std::uint32_t i = 0; i < count; ++i)
        if (!r.str(s.argv.emplace_back())) return false;
    if (flags & f_cwd && !r.str(s.cwd.emplace())) return false;
    if (!r.get(count)) return false;
    for (std::uint32_t i = 0; i < count; ++i) {
        std::string k, v;
        if (!r.str(k) || !r.str(v)) return false;
        s.env.insert_or_assign(std::move(k), std::move(v));
    }
    if (flags & f_env_file && !r.str(s.env_file.emplace())) return false;
    s.env_file_optional = (flags & f_env_file_optional) != 0;
    if (flags & f_user && !r.str(s.user.emplace())) return false;
    if (flags & f_group && !r.str(s.group.emplace())) return false;
    if (flags & f_identity) {
        Identity &id = s.identity.emplace();
        id.set_uid = (flags & f_set_uid) != 0;
        id.set_gid = (flags & f_set_gid) != 0;
        id.set_groups = (flags & f_set_groups) != 0;
        if (!r.get(id.uid) || !r.get(id.gid) || !r.get(count)) return false;
        for (std::uint32_t i = 0; i < count; ++i)
            if (!r.get(id.groups.emplace_back())) return false;
        if (!r.str(id.user_name) || !r.str(id.home)) return false;
    }
    if (flags & f_umask) {
        std::uint32_t mask = 0;
        if (!r.get(mask)) return false;
        s.umask = mask;
    }
    if (!r.get(count)) return false;
    for (std::uint32_t i = 0; i < count; ++i) {
        Limit l{};
        std::int32_t res = 0;
        if (!r.get(res) || !r.get(l.soft) || !r.get(l.hard)) return false;
        l.resource = res;
        s.limits.push_back(l);
    }
    if (!r.get(count)) return false;
    for (std::uint32_t i = 0; i < count; ++i) {
        std::string k, v;
        if (!r.str(k) || !r.str(v)) return false;
        x.env.emplace_back(std::move(k), std::move(v));
    }
    x.stdio = Stdio::Pipes;
    x.new_session = (flags & f_new_session) != 0;
    x.foreground_tty = false;
    x.merge_stderr = (flags & f_merge_stderr) != 0;
    x.listen_pid = (flags & f_listen_pid) != 0;
    bool cgroup = (flags & f_cgroup) != 0;
    if (!r.get(count) || count + (cgroup ? 1 : 0) != fds.size()) return false;
    for (std::uint32_t i = 0; i < count; ++i) {
        std::int32_t target = 0;
        if (!r.get(target) || target < 0) return false;
        x.fds.emplace_back(fds[i], target);
    }
    x.cgroup_procs_fd = cgroup ? fds.back() : -1;
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

void close_fd(int &fd) {
    if (fd >= 0) close(fd);
    fd = -1;
}

SpawnError helper_error(std::string detail) {
    return SpawnError{ExecStage::Prepare, EIO, {}, std::move(detail)};
}

// A wait status from waitid()'s siginfo, for describe_wait_status().
int wstatus_of(const siginfo_t &info) {
    if (info.si_code == CLD_EXITED) return (info.si_status & 0xff) << 8;
    return (info.si_status & 0x7f) | (info.si_code == CLD_DUMPED ? 0x80 : 0);
}

// Whether a reported child has run its program, as /proc/<pid>/stat shows it: its name is
// detail::pre_exec_comm until an execve() succeeds (child_side.hpp). Asked only while it is
// our unreaped child (waitid(WNOWAIT) says so: nobody can have reaped it in between, vigild
// being single-threaded), so the pid is still its own; its parent must be us, or this /proc
// is another pid namespace's. Unknown: no /proc, or not our child any more.
enum class Ran : std::uint8_t { No, Yes, Unknown };

Ran ran_program(int pid, int pidfd) {
    siginfo_t info{};
    int rc = pidfd >= 0 ? waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info,
                                 WEXITED | WNOHANG | WNOWAIT)
                        : waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
    if (rc != 0 || pid <= 0) return Ran::Unknown;
    std::string path = "/proc/" + std::to_string(pid) + "/stat";
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return Ran::Unknown;
    char buf[512]; // "pid (comm) state ppid ...": comm is at most 64 bytes
    ssize_t n;
    do {
        n = read(fd, buf, sizeof buf);
    } while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0) return Ran::Unknown;
    std::string_view line(buf, static_cast<std::size_t>(n));
    // A program may name itself anything, ')' included, and no later field holds one.
    std::size_t open_paren = line.find('(');
    std::size_t close_paren = line.rfind(')');
    if (open_paren == std::string_view::npos || close_paren == std::string_view::npos ||
        close_paren < open_paren)
        return Ran::Unknown;
    std::string_view comm = line.substr(open_paren + 1, close_paren - open_paren - 1);
    std::string_view rest = line.substr(close_paren + 1); // " S 1234 ..."
    if (rest.size() < 4 || rest[0] != ' ' || rest[2] != ' ') return Ran::Unknown;
    rest.remove_prefix(3);
    int ppid = 0;
    auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), ppid);
    if (ec != std::errc{} || ppid != getpid()) return Ran::Unknown;
    return comm == detail::pre_exec_comm ? Ran::No : Ran::Yes;
}

// ---- the helper ------------------------------------------------------------------------------

void reply(int sock, std::uint64_t ticket, const detail::Launched &l,
           const std::optional<SpawnError> &err) {
    ReplyHead h{};
    h.magic = reply_magic;
    h.ticket = ticket;
    h.pid = l.pid;
    std::string msg;
    if (!err) {
        h.ok = 1;
        msg.assign(reinterpret_cast<const char *>(&h), sizeof h);
    } else {
        std::string object = err->object.substr(0, max_reply_string);
        std::string text = err->detail.substr(0, max_reply_string);
        h.stage = static_cast<std::uint32_t>(err->stage);
        h.error = err->error;
        h.object_len = static_cast<std::uint32_t>(object.size());
        h.detail_len = static_cast<std::uint32_t>(text.size());
        msg.assign(reinterpret_cast<const char *>(&h), sizeof h);
        msg += object;
        msg += text;
    }
    if (send_with_fds(sock, msg.data(), msg.size(), nullptr, 0) != 0) _exit(0); // vigild gone
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

// Serves one request: prepare (may block: NSS, env_file, PATH), launch, wait for a failed
// child to be gone, reply.
void serve(int sock, std::uint64_t ticket, const char *buf, std::size_t n,
           const std::vector<int> &fds, bool fds_lost) {
    SpawnSpec spec;
    SpawnExtras extras;
    detail::Launched l;
    std::optional<SpawnError> err;
    if (fds_lost) {
        err = SpawnError{ExecStage::Prepare, EMFILE, "spawner", {}};
    } else if (!decode(buf, n, fds, spec, extras)) {
        err = SpawnError{ExecStage::Prepare, EPROTO, "spawner request", {}};
    } else {
        detail::Prepared prep;
        err = detail::prepare(spec, extras, prep);
        if (!err) {
            detail::LaunchPlan plan = detail::make_plan(spec, extras, prep);
            detail::ReportMessage report;
            report.build(ticket);
            plan.report_fd = sock;
            plan.report = &report;
            plan.want_pidfd = true;
            l = detail::launch(plan, true);
            if (l.status != detail::Launched::Status::Execd) {
                // The failed child _exit()s right after its verdict: once its pidfd is
                // readable it is a zombie, and vigild reaps it without waiting.
                if (l.pid > 0 && l.pidfd >= 0) {
                    pollfd p{l.pidfd, POLLIN, 0};
                    while (poll(&p, 1, -1) < 0 && errno == EINTR) {
                    }
                }
                err = detail::child_error(l, spec, prep);
            }
            close_fd(l.pidfd);
        }
    }
    reply(sock, ticket, l, err);
    close_fd(l.out_fd);
    close_fd(l.err_fd);
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
    if (fcntl(s, F_SETFL, 0) < 0) _exit(1); // blocking: the helper waits for requests
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

    std::vector<char> buf(Spawner::max_request);
    for (;;) {
        std::vector<int> fds;
        bool lost = false;
        ssize_t n = recv_with_fds(s, buf.data(), buf.size(), fds, Spawner::max_extra_fds + 1, lost);
        if (n == 0) _exit(0); // vigild closed its end
        if (n < 0 && n != -EMSGSIZE) _exit(1);
        std::uint64_t ticket = 0;
        // A request without even a ticket cannot be answered: leave, vigild settles it.
        if (n < 0 || !decode_ticket(buf.data(), static_cast<std::size_t>(n), ticket)) _exit(1);
        serve(s, ticket, buf.data(), static_cast<std::size_t>(n), fds, lost);
        close_all(fds); // the child has its copies (or never will)
    }
}

} // namespace

// ---- vigild's side ---------------------------------------------------------------------------

struct Spawner::Request {
    std::uint64_t ticket = 0;
    enum class State : std::uint8_t { Queued, Sent, Done } state = State::Queued;
    // Until Done (a resend, or a spawn in vigild after all):
    SpawnSpec spec;       // as submitted
    SpawnExtras extras;   // its fds are the duplicates in `fds`
    std::string msg;      // the encoded request
    std::vector<int> fds; // our duplicates, in message order (extras.fds, then the cgroup's)
    bool merge_stderr = false;
    int deaths = 0; // helper deaths while this request was the one in the helper's hands
    // The current attempt's child, from its report (or a spawn in vigild):
    int pid = -1;
    int pidfd = -1;               // ours until delivered
    int out_fd = -1, err_fd = -1; // the read ends, ours until delivered
    bool pipes_lost = false;      // the report's descriptors did not all arrive
    std::optional<int> reaped;
    SpawnResult result; // when Done
};

Spawner::Spawner() = default;

Spawner::~Spawner() {
    // Processes never handed over would run unsupervised: kill them (through their pidfd).
    for (auto &r : requests_) {
        bool has_process =
            r->state == Request::State::Sent || (r->state == Request::State::Done && r->result.ok);
        if (has_process && r->pid > 0 && !r->reaped) kill_unreaped(r->pid, r->pidfd);
        close_fd(r->pidfd);
        close_fd(r->out_fd);
        close_fd(r->err_fd);
        close_all(r->fds);
        if (r->result.ok) {
            close_fd(r->result.ok->stdout_fd);
            close_fd(r->result.ok->stderr_fd);
        }
    }
    requests_.clear();
    for (SpawnCompletion &c : stash_) {
        if (c.result.ok) {
            if (!c.reaped_wstatus) kill_unreaped(c.result.ok->pid, c.pidfd);
            close_fd(c.result.ok->stdout_fd);
            close_fd(c.result.ok->stderr_fd);
        }
        close_fd(c.pidfd);
    }
    close_fd(sock_); // the helper exits at EOF
    if (pid_ > 0 && pidfd_ >= 0) {
        // EOF makes the helper exit at once, unless a child of it is stuck before exec.
        pollfd p{pidfd_, POLLIN, 0};
        if (poll(&p, 1, 1000) == 0) signal_pidfd(pidfd_, SIGKILL);
        siginfo_t info{};
        while (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_), &info, WEXITED) <
                   0 &&
               errno == EINTR) {
        }
    } else if (pid_ > 0) {
        // No pidfd (Linux < 5.3): a bounded WNOHANG wait on the pid itself (our unreaped
        // child until waitpid says otherwise, so the pid is still its own).
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
    close_fd(pidfd_);
    close_fd(evfd_);
    close_fd(epfd_);
}

Spawner::Request *Spawner::find(std::uint64_t ticket) {
    if (requests_.empty() || ticket < requests_.front()->ticket) return nullptr;
    std::uint64_t i = ticket - requests_.front()->ticket;
    return i < requests_.size() ? requests_[i].get() : nullptr;
}

void Spawner::notify() {
    if (evfd_ < 0) return;
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(evfd_, &one, sizeof one);
}

void Spawner::complete(Request &r, SpawnResult result) {
    close_all(r.fds);
    r.spec = SpawnSpec{};
    r.extras = SpawnExtras{};
    r.msg.clear();
    r.msg.shrink_to_fit();
    if (!result.ok) close_fd(r.pidfd);
    close_fd(r.out_fd); // moved into `result` when it is ok
    close_fd(r.err_fd);
    r.result = std::move(result);
    r.state = Request::State::Done;
    notify();
}

void Spawner::kill_unreaped(int pid, int pidfd) {
    if (pidfd >= 0) {
        signal_pidfd(pidfd, SIGKILL);
        return;
    }
    // No pidfd (a kernel without pidfd_open, or vigild out of descriptors when it arrived):
    // kill by pid only while waitid() shows it is our child and not yet reaped, so the pid
    // cannot have been given to another process. (Reaping it is the caller's, and the
    // caller offers it to on_reaped() first, which would have marked it.)
    siginfo_t info{};
    if (pid > 0 && waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == 0)
        kill(pid, SIGKILL);
}

void Spawner::claim_later(int pid, int pidfd) {
    if (pidfd >= 0) {
        // Reap it here if it is gone already; ECHILD: the caller reaped it first.
        siginfo_t info{};
        int rc = waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info,
                        WEXITED | WNOHANG);
        int err = errno;
        close(pidfd);
        if (rc == 0 && info.si_pid == pid) return;
        if (rc < 0 && err == ECHILD) return;
    }
    if (pid <= 0) return;
    if (unclaimed_.size() >= max_unclaimed) unclaimed_.erase(unclaimed_.begin());
    unclaimed_.push_back(pid);
}

void Spawner::run_in_vigild(Request &r) {
    int pidfd = -1;
    SpawnResult res = proc::spawn(r.spec, r.extras, pidfd);
    if (res.ok) {
        r.pid = res.ok->pid;
        r.pidfd = pidfd;
    }
    complete(r, std::move(res));
}

std::uint64_t Spawner::submit(SpawnSpec spec, SpawnExtras extras) {
    auto owned = std::make_unique<Request>();
    Request &r = *owned;
    r.ticket = next_ticket_++;
    requests_.push_back(std::move(owned));
    r.merge_stderr = extras.merge_stderr && extras.stdio == Stdio::Pipes;
    if (pending() > max_pending) {
        complete(r, SpawnResult{std::nullopt,
                                helper_error("spawner: more than " + std::to_string(max_pending) +
                                             " spawns pending")});
        return r.ticket;
    }
    // Our own copies of the caller's descriptors: the caller may close its own at once, and
    // a closed one fails here with proc::spawn's message.
    for (auto &[src, target] : extras.fds) {
        if (src < 0 || target < 0) {
            complete(
                r, SpawnResult{
                       std::nullopt,
                       SpawnError{ExecStage::Prepare, EBADF, "fd " + std::to_string(target), {}}});
            return r.ticket;
        }
        int dup = fcntl(src, F_DUPFD_CLOEXEC, 3);
        if (dup < 0) {
            complete(r,
                     SpawnResult{
                         std::nullopt,
                         SpawnError{ExecStage::Stdio, errno, "fd " + std::to_string(target), {}}});
            return r.ticket;
        }
        r.fds.push_back(dup);
        src = dup;
    }
    if (extras.cgroup_procs_fd >= 0) {
        int dup = fcntl(extras.cgroup_procs_fd, F_DUPFD_CLOEXEC, 3);
        if (dup < 0) {
            complete(r, SpawnResult{std::nullopt, SpawnError{ExecStage::Cgroup, errno, {}, {}}});
            return r.ticket;
        }
        r.fds.push_back(dup);
        extras.cgroup_procs_fd = dup;
    }
    bool direct = sock_ < 0 || extras.stdio != Stdio::Pipes ||
                  (extras.foreground_tty && !extras.new_session) ||
                  extras.fds.size() > max_extra_fds;
    r.spec = std::move(spec);
    r.extras = std::move(extras);
    if (!direct) {
        r.msg = encode(r.ticket, r.spec, r.extras);
        direct = r.msg.size() > max_message_;
    }
    if (direct) {
        run_in_vigild(r);
        return r.ticket;
    }
    queued_.push_back(r.ticket);
    send_queued();
    if (!dead_.empty()) notify();
    return r.ticket;
}

void Spawner::watch_write(bool on) {
    if (on == writing_ || sock_ < 0 || epfd_ < 0) return;
    epoll_event ev{};
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0U);
    ev.data.fd = sock_;
    if (epoll_ctl(epfd_, EPOLL_CTL_MOD, sock_, &ev) == 0) writing_ = on;
}

void Spawner::send_queued() {
    while (sock_ >= 0 && dead_.empty() && !queued_.empty()) {
        Request *r = find(queued_.front());
        int err = send_with_fds(sock_, r->msg.data(), r->msg.size(), r->fds.data(), r->fds.size());
        if (err == EAGAIN || err == EWOULDBLOCK) break;
        queued_.pop_front();
        if (err == 0) {
            // The request keeps its fds and message: a helper's death sends it again.
            r->state = Request::State::Sent;
            sent_.push_back(r->ticket);
        } else if (err == EMSGSIZE || err == ENOBUFS) {
            run_in_vigild(*r); // too large for this socket after all
        } else {
            queued_.push_front(r->ticket); // for the next helper
            // A closed peer is the death itself; anything else is worth naming.
            bool closed = err == EPIPE || err == ECONNRESET || err == ECONNREFUSED;
            dead_ = closed ? std::string("died")
                           : std::string("died (send: ") + std::strerror(err) + ")";
        }
    }
    watch_write(!queued_.empty());
}

void Spawner::receive() {
    char buf[reply_buffer];
    while (sock_ >= 0) {
        std::vector<int> fds;
        bool lost = false;
        ssize_t n = recv_with_fds(sock_, buf, sizeof buf, fds, 3, lost);
        if (n == -EAGAIN || n == -EWOULDBLOCK) return;
        if (n == 0) {
            if (dead_.empty()) dead_ = "died";
            return;
        }
        if (n < 0 && n != -EMSGSIZE) {
            close_all(fds);
            // A closed peer is the death itself (ECONNRESET: it left requests unread).
            if (dead_.empty())
                dead_ = n == -ECONNRESET ? std::string("died")
                                         : std::string("died (receive: ") +
                                               std::strerror(static_cast<int>(-n)) + ")";
            return;
        }
        handle_message(buf, n < 0 ? 0 : static_cast<std::size_t>(n), fds, lost);
        if (!dead_.empty() && !settling_) return; // settle_death() reads the rest
    }
}

void Spawner::handle_message(const char *buf, std::size_t n, std::vector<int> &fds, bool lost) {
    std::uint32_t magic = 0;
    if (n >= sizeof magic) std::memcpy(&magic, buf, sizeof magic);
    auto malformed = [&] {
        // A child's report that makes no sense still names a live process: kill it through
        // its pidfd (the last descriptor; pidfd_send_signal() refuses any other kind) rather
        // than let it run unsupervised.
        if (magic == detail::child_report_magic && n == sizeof(detail::ChildReport) &&
            !fds.empty() && signal_pidfd(fds.back(), SIGKILL) == 0) {
            detail::ChildReport rep{};
            std::memcpy(&rep, buf, sizeof rep);
            claim_later(rep.pid, fds.back());
            fds.pop_back();
        }
        close_all(fds);
        if (dead_.empty()) dead_ = "sent a malformed message";
    };
    if (n < sizeof magic || sent_.empty()) return malformed();
    Request *r = find(sent_.front());
    if (!r) return malformed();

    if (magic == detail::child_report_magic && n == sizeof(detail::ChildReport)) {
        detail::ChildReport rep{};
        std::memcpy(&rep, buf, sizeof rep);
        std::size_t pipes = r->merge_stderr ? 1 : 2;
        if (rep.ticket != r->ticket || rep.pid <= 0 || r->pid > 0 || fds.size() > pipes + 1 ||
            (!lost && fds.size() < pipes))
            return malformed();
        r->pid = rep.pid;
        if (lost) {
            // vigild is out of descriptors and some did not arrive (the pidfd, last, never
            // did): without its read ends the service would write into the void. Kill it now
            // (our unreaped child: the pid is its own); the reply fails the spawn as
            // proc::spawn's pipe2() would have.
            close_all(fds);
            r->pipes_lost = true;
            kill_unreaped(r->pid, -1);
            return;
        }
        r->out_fd = fds[0];
        r->err_fd = pipes == 2 ? fds[1] : -1;
        r->pidfd = fds.size() > pipes ? fds.back() : -1; // none: Linux < 5.3
        fds.clear();
        return;
    }
    if (magic != reply_magic || n < sizeof(ReplyHead) || !fds.empty()) return malformed();
    ReplyHead h{};
    std::memcpy(&h, buf, sizeof h);
    // A child that exec'd has reported first (its report precedes its exec, the reply follows).
    if (h.ticket != r->ticket || std::size_t{h.object_len} + h.detail_len != n - sizeof h ||
        h.stage > static_cast<std::uint32_t>(ExecStage::Exec) ||
        (h.ok && (r->pid <= 0 || h.pid != r->pid)))
        return malformed();
    sent_.pop_front();
    if (r->pipes_lost) {
        // Killed at its report: whether the SIGKILL or its exec came first, the spawn failed
        // for want of descriptors, as proc::spawn's pipe2() would have.
        release(*r);
        complete(*r, SpawnResult{std::nullopt, SpawnError{ExecStage::Prepare, EMFILE, "pipe", {}}});
        return;
    }
    if (!h.ok) {
        const char *tail = buf + sizeof h;
        SpawnError e{static_cast<ExecStage>(h.stage), h.error, std::string(tail, h.object_len),
                     std::string(tail + h.object_len, h.detail_len)};
        // A child that failed is gone (the helper waited for it): reap it now.
        release(*r);
        complete(*r, SpawnResult{std::nullopt, std::move(e)});
        return;
    }
    deliver(*r);
}

void Spawner::release(Request &r) {
    // Not handed over: the caller's reaper offers it to on_reaped(), unless it reaped it
    // already (then only its pidfd is left to close).
    if (r.pid > 0 && !r.reaped)
        claim_later(r.pid, r.pidfd);
    else
        close_fd(r.pidfd);
    r.pidfd = -1;
}

void Spawner::deliver(Request &r) {
    Spawned s{r.pid, std::exchange(r.out_fd, -1), std::exchange(r.err_fd, -1)};
    complete(r, SpawnResult{s, std::nullopt});
}

bool Spawner::settle_lost(Request &r, bool in_hand, const std::string &why, bool killed_by_us) {
    // Only the request in the helper's hands can have caused its death: that one counts the
    // deaths, and past max_resends it is not sent again (a request that kills every helper
    // must not keep vigild restarting them). What the caller's deadline killed (kill_helper())
    // is not sent again at all: it would hang the next helper the same way.
    if (in_hand && !killed_by_us) ++r.deaths;
    bool too_many = r.deaths > max_resends;
    bool may_resend = !(in_hand && killed_by_us) && !too_many;
    std::string died = "spawner helper died";
    if (too_many)
        died += " during this spawn " + std::to_string(r.deaths) + " times (the last time: " + why +
                ")";
    if (r.pid <= 0) { // no child: nothing ran
        if (may_resend) return true;
        complete(r, SpawnResult{std::nullopt,
                                helper_error(too_many ? died : died + " before the spawn")});
        return false;
    }
    std::string process = "its process (pid " + std::to_string(r.pid) + ")";
    // Reaped by the caller already (it ended): whether it ran can no longer be told, so it
    // counts as having run, and the caller gets its death.
    if (r.reaped && !r.pipes_lost) {
        deliver(r);
        return false;
    }
    Ran ran = r.reaped ? Ran::Unknown : ran_program(r.pid, r.pidfd);
    if (ran == Ran::No) {
        kill_unreaped(r.pid, r.pidfd);
        // SIGKILLed, it cannot run one instruction of the program any more: if it still has
        // not exec'd (or just exec'd, but its name is not the program's yet), it never ran.
        ran = ran_program(r.pid, r.pidfd);
    }
    if (ran == Ran::Yes && !r.pipes_lost) {
        deliver(r); // running (or just SIGKILLed above: the caller sees it die)
        return false;
    }
    if (ran != Ran::No && !r.reaped) kill_unreaped(r.pid, r.pidfd);
    release(r);
    if (ran == Ran::No && may_resend) {
        close_fd(r.out_fd);
        close_fd(r.err_fd);
        r.pid = -1;
        r.pipes_lost = false;
        return true;
    }
    // Its read ends never arrived (vigild was out of descriptors): failed as in handle_message().
    if (r.pipes_lost && !too_many) {
        complete(r, SpawnResult{std::nullopt, SpawnError{ExecStage::Prepare, EMFILE, "pipe", {}}});
        return false;
    }
    complete(r,
             SpawnResult{std::nullopt,
                         helper_error(died + (too_many ? "; " : " during the spawn; ") + process +
                                      (r.reaped ? " had ended already" : " was killed"))});
    return false;
}

void Spawner::settle_death(const std::string &why_in, bool killed_by_us) {
    std::string why = why_in;
    // From now on nothing can be queued to our end: a child that has not reported yet fails
    // its report and _exits. What was queued before is read, so every child is known.
    shutdown(sock_, SHUT_RD);
    if (pidfd_ >= 0) signal_pidfd(pidfd_, SIGKILL);
    settling_ = true;
    receive();
    settling_ = false;
    dead_.clear();

    if (epfd_ >= 0) epoll_ctl(epfd_, EPOLL_CTL_DEL, sock_, nullptr);
    close_fd(sock_);
    writing_ = false;
    if (pidfd_ >= 0) {
        siginfo_t info{};
        int rc = waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_), &info,
                        WEXITED | WNOHANG);
        if (rc == 0 && info.si_pid == pid_) {
            if (!killed_by_us) why += " (" + describe_wait_status(wstatus_of(info)) + ")";
        } else if (rc == 0) {
            claim_later(pid_, -1); // SIGKILLed above, not gone yet: the caller reaps it
        }
        if (epfd_ >= 0) epoll_ctl(epfd_, EPOLL_CTL_DEL, pidfd_, nullptr);
        close_fd(pidfd_);
    } else if (pid_ > 0) {
        int st = 0;
        int rc = waitpid(pid_, &st, WNOHANG);
        if (rc == 0) { // our unreaped child: its pid is still its own
            kill(pid_, SIGKILL);
            claim_later(pid_, -1);
        }
    }
    pid_ = -1;

    // What the dead helper had is sent again (ahead of what waits, in order) or settled.
    std::deque<std::uint64_t> again;
    for (std::size_t i = 0; i < sent_.size(); ++i) {
        Request *r = find(sent_[i]);
        if (r && settle_lost(*r, i == 0, why, killed_by_us)) {
            r->state = Request::State::Queued;
            again.push_back(r->ticket);
        }
    }
    sent_.clear();
    queued_.insert(queued_.begin(), again.begin(), again.end());

    auto now = std::chrono::steady_clock::now();
    while (!restarts_.empty() && now - restarts_.front() > restart_window)
        restarts_.pop_front();
    if (restarts_.size() < static_cast<std::size_t>(max_restarts)) {
        restarts_.push_back(now);
        int err = start_helper();
        if (err == 0) {
            if (!warning_.empty()) warning_ += "; ";
            warning_ += "spawner helper " + why + "; restarted";
            notify();
            return;
        }
        why += std::string(", and could not be restarted: ") + std::strerror(err);
    } else {
        why += " (" + std::to_string(max_restarts + 1) + " times within " +
               std::to_string(restart_window.count()) + "s)";
    }
    give_up(why);
    notify();
}

void Spawner::give_up(const std::string &why) {
    disabled_ = true;
    if (!warning_.empty()) warning_ += "; ";
    warning_ += "spawner helper " + why + "; spawning from vigild directly from now on";
}

void Spawner::drain_in_vigild() {
    while (!queued_.empty()) {
        Request *r = find(queued_.front());
        queued_.pop_front();
        if (r) run_in_vigild(*r);
    }
}

std::vector<SpawnCompletion> Spawner::collect() {
    std::vector<SpawnCompletion> out = std::move(stash_);
    stash_.clear();
    while (!requests_.empty() && requests_.front()->state == Request::State::Done) {
        Request &r = *requests_.front();
        SpawnCompletion c;
        c.ticket = r.ticket;
        c.result = std::move(r.result);
        c.pidfd = c.result.ok ? r.pidfd : -1;
        if (!c.result.ok) close_fd(r.pidfd);
        c.reaped_wstatus = r.reaped;
        out.push_back(std::move(c));
        requests_.pop_front();
    }
    return out;
}

std::vector<SpawnCompletion> Spawner::pump() {
    // Each round either finishes or settles one helper death; deaths are bounded by the
    // restart budget, so this loop is too.
    for (int round = 0; round <= max_restarts + 1 && sock_ >= 0; ++round) {
        receive();
        if (dead_.empty() && pidfd_ >= 0) {
            pollfd p{pidfd_, POLLIN, 0};
            if (poll(&p, 1, 0) > 0) dead_ = "died";
        }
        if (dead_.empty()) send_queued();
        if (dead_.empty()) break;
        settle_death(std::exchange(dead_, {}), false);
    }
    if (sock_ < 0) drain_in_vigild();
    std::vector<SpawnCompletion> out = collect();
    if (evfd_ >= 0) {
        std::uint64_t v = 0;
        [[maybe_unused]] ssize_t n = read(evfd_, &v, sizeof v);
    }
    if (!dead_.empty()) notify(); // a death found in the last round: the next pump() settles it
    return out;
}

bool Spawner::on_reaped(int pid, int wstatus) {
    if (pid <= 0) return false;
    if (pid == pid_) {
        // The helper itself: settle it at the next pump() (its pidfd is readable too).
        if (dead_.empty()) dead_ = "died (" + describe_wait_status(wstatus) + ")";
        notify();
        return true;
    }
    if (auto it = std::find(unclaimed_.begin(), unclaimed_.end(), pid); it != unclaimed_.end()) {
        unclaimed_.erase(it);
        return true;
    }
    // The child's report may still wait in the socket (it is sent before exec, so it is
    // there by the time the process can have ended).
    receive();
    if (!dead_.empty()) notify();
    for (auto &r : requests_) {
        if (r->pid == pid && !r->reaped) {
            r->reaped = wstatus;
            return true;
        }
    }
    return false;
}

void Spawner::kill_helper(const std::string &why) {
    if (sock_ < 0) return;
    dead_.clear();
    settle_death("killed: " + why, true);
}

std::string Spawner::take_warning() {
    return std::exchange(warning_, {});
}

int Spawner::start() {
    if (sock_ >= 0 || disabled_) return 0;
    if (epfd_ < 0) {
        epfd_ = epoll_create1(EPOLL_CLOEXEC);
        if (epfd_ < 0) return errno;
        evfd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (evfd_ < 0) {
            int err = errno;
            close_fd(epfd_);
            return err;
        }
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = evfd_;
        if (epoll_ctl(epfd_, EPOLL_CTL_ADD, evfd_, &ev) < 0) {
            int err = errno;
            close_fd(evfd_);
            close_fd(epfd_);
            return err;
        }
    }
    return start_helper();
}

int Spawner::start_helper() {
    // Both ends non-blocking from the start; the helper makes its own end blocking again.
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) return errno;
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
    // Room for the largest request, as far as net.core.wmem_max lets us (see the header).
    int want = static_cast<int>(max_request * 2);
    setsockopt(sock_, SOL_SOCKET, SO_SNDBUF, &want, sizeof want);
    int sndbuf = 0;
    socklen_t len = sizeof sndbuf;
    if (getsockopt(sock_, SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) < 0) sndbuf = 212992;
    max_message_ = std::min(max_request, static_cast<std::size_t>(sndbuf) / 4);
    // A pidfd of the helper: its death wakes fd() even while a child of it keeps the socket
    // open. The helper is our unreaped child here, so its pid is still its own.
    pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (epfd_ >= 0) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.fd = sock_;
        epoll_ctl(epfd_, EPOLL_CTL_ADD, sock_, &ev);
        if (pidfd_ >= 0) {
            ev.data.fd = pidfd_;
            epoll_ctl(epfd_, EPOLL_CTL_ADD, pidfd_, &ev);
        }
    }
    writing_ = false;
    watch_write(!queued_.empty());
    return 0;
}

SpawnResult Spawner::spawn(const SpawnSpec &spec, const SpawnExtras &extras) {
    std::uint64_t ticket = submit(spec, extras);
    for (;;) {
        std::vector<SpawnCompletion> got = pump();
        std::optional<SpawnCompletion> mine;
        for (SpawnCompletion &c : got) {
            if (c.ticket == ticket)
                mine = std::move(c);
            else
                stash_.push_back(std::move(c));
        }
        if (mine) {
            close_fd(mine->pidfd);
            return std::move(mine->result);
        }
        if (epfd_ < 0) return SpawnResult{std::nullopt, helper_error("spawner: lost a request")};
        pollfd p{epfd_, POLLIN, 0};
        while (poll(&p, 1, -1) < 0 && errno == EINTR) {
        }
    }
}

} // namespace vigil::proc

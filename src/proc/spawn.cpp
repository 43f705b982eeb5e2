// spawn.cpp: the parent side of spawn() (see include/vigil/proc/spawn.hpp).
//
// Order of work: resolve everything that can fail without a child (argv, PATH, user and groups,
// env_file, environment, fds), then create the pipes, block every signal, clone a CLONE_VM |
// CLONE_VFORK child onto a private stack (child_side.cpp), restore the mask, and read the status
// pipe: EOF means the child exec'd, a ChildFailure means it did not (then the parent reaps it
// right here, so a failed spawn never surfaces in reap_all()). The steps are split (prepare,
// launch, child_error, finish: launch.hpp) so that the Spawner's helper process (spawner.cpp)
// runs prepare() and launch() and names errors with the same code and the same messages;
// only the reaping of a failed child stays with vigild. env_file is read by
// env_file_read.cpp.
#include "vigil/proc/spawn.hpp"

#include "asan.hpp"
#include "launch.hpp"
#include "vigil/core/names.hpp"
#include "vigil/proc/exit.hpp"

#include <array>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#if VIGIL_ASAN
#include <sanitizer/asan_interface.h>
#endif

extern char **environ;

namespace vigil::proc {

namespace {

constexpr std::array<const char *, 13> exec_stage_names{
    "prepare",   "fork",   "cgroup", "setsid", "signals", "stdio", "setrlimit",
    "setgroups", "setgid", "setuid", "umask",  "chdir",   "exec",
};
static_assert(exec_stage_names.size() == static_cast<std::size_t>(ExecStage::Exec) + 1,
              "exec_stage_names must name every ExecStage");

// The search path used when the environment has no PATH (glibc's execvp default, with sbin).
constexpr const char *default_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// Closes an fd on scope exit unless released.
class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) : fd_(fd) {}
    Fd(const Fd &) = delete;
    Fd &operator=(const Fd &) = delete;
    ~Fd() { reset(); }
    int get() const { return fd_; }
    int release() { return std::exchange(fd_, -1); }
    void reset(int fd = -1) {
        if (fd_ >= 0) close(fd_);
        fd_ = fd;
    }

private:
    int fd_ = -1;
};

SpawnError prepare_error(std::string object, int error, std::string detail = {}) {
    return SpawnError{ExecStage::Prepare, error, std::move(object), std::move(detail)};
}

bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

// A numeric uid/gid. (uid_t)-1 is refused: setuid(-1) means "no change" to some calls.
std::optional<std::uint32_t> parse_id(std::string_view s) {
    std::uint32_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size() || v == UINT32_MAX) return std::nullopt;
    return v;
}

// NSS modules report "not found" either as success with no result or as one of these.
bool not_found(int rc) {
    return rc == 0 || rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM;
}

// getpwnam_r / getpwuid_r with a growing buffer. Returns errno-like: 0 found, -1 not found.
template <typename Key, typename Fn> int lookup_pw(Key key, Fn fn, passwd &pw, std::string &buf) {
    buf.resize(1024);
    for (;;) {
        passwd *res = nullptr;
        int rc = fn(key, &pw, buf.data(), buf.size(), &res);
        if (rc == ERANGE && buf.size() < (1U << 20)) {
            buf.resize(buf.size() * 2);
            continue;
        }
        if (res) return 0;
        return not_found(rc) ? -1 : rc;
    }
}

template <typename Key, typename Fn> int lookup_gr(Key key, Fn fn, group &gr, std::string &buf) {
    buf.resize(1024);
    for (;;) {
        group *res = nullptr;
        int rc = fn(key, &gr, buf.data(), buf.size(), &res);
        if (rc == ERANGE && buf.size() < (1U << 20)) {
            buf.resize(buf.size() * 2);
            continue;
        }
        if (res) return 0;
        return not_found(rc) ? -1 : rc;
    }
}

// Resolves `user` and `group` (names or numeric ids) and the supplementary groups, in the
// parent, because NSS lookups allocate and lock.
std::optional<SpawnError> resolve_ids(const SpawnSpec &spec, Identity &ids) {
    std::optional<std::string> user_name; // for getgrouplist
    gid_t primary = 0;
    bool have_primary = false;
    if (spec.user) {
        const std::string &u = *spec.user;
        std::optional<std::uint32_t> id;
        if (all_digits(u) && !(id = parse_id(u)))
            return prepare_error("user " + u, 0, "invalid user id");
        passwd pw{};
        std::string buf;
        int rc = id ? lookup_pw(static_cast<uid_t>(*id), getpwuid_r, pw, buf)
                    : lookup_pw(u.c_str(), getpwnam_r, pw, buf);
        if (rc > 0) return prepare_error("user " + u, rc);
        if (rc < 0 && !id) return prepare_error("user " + u, 0, "no such user");
        ids.set_uid = true;
        if (rc == 0) {
            ids.uid = pw.pw_uid;
            primary = pw.pw_gid;
            have_primary = true;
            user_name = pw.pw_name;
            ids.user_name = pw.pw_name;
            ids.home = pw.pw_dir ? pw.pw_dir : "";
        } else {
            ids.uid = static_cast<uid_t>(*id);
        }
    }
    if (spec.group) {
        const std::string &g = *spec.group;
        if (all_digits(g)) {
            auto id = parse_id(g);
            if (!id) return prepare_error("group " + g, 0, "invalid group id");
            ids.gid = static_cast<gid_t>(*id);
        } else {
            group gr{};
            std::string buf;
            int rc = lookup_gr(g.c_str(), getgrnam_r, gr, buf);
            if (rc > 0) return prepare_error("group " + g, rc);
            if (rc < 0) return prepare_error("group " + g, 0, "no such group");
            ids.gid = gr.gr_gid;
        }
        ids.set_gid = true;
    } else if (have_primary) {
        ids.gid = primary;
        ids.set_gid = true;
    } else if (spec.user) {
        // A numeric uid without a passwd entry: refuse to guess a group (keeping vigild's,
        // often root's, would be a privilege leak).
        return prepare_error("user " + *spec.user, 0, "no passwd entry; set `group` explicitly");
    }
    if (!ids.set_uid && !ids.set_gid) return std::nullopt;

    // Supplementary groups: the user's (getgrouplist), else only the group itself. Without
    // privilege setgroups() fails; skip it when the identity does not change at all.
    if (user_name) {
        int n = 32;
        ids.groups.resize(static_cast<std::size_t>(n));
        while (getgrouplist(user_name->c_str(), ids.gid, ids.groups.data(), &n) < 0) {
            ids.groups.resize(static_cast<std::size_t>(n) + 16);
            n = static_cast<int>(ids.groups.size());
        }
        ids.groups.resize(static_cast<std::size_t>(n));
    } else {
        ids.groups = {ids.gid};
    }
    bool same = (!ids.set_uid || ids.uid == geteuid()) && (!ids.set_gid || ids.gid == getegid());
    ids.set_groups = geteuid() == 0 || !same;
    if (same && geteuid() != 0) ids.set_uid = ids.set_gid = false;
    return std::nullopt;
}

// The child's environment: vigild's own, then (with `user`) HOME/USER/LOGNAME, then env_file,
// then the unit's env, then the shell's extras. Later wins.
std::vector<std::string> build_env(const SpawnSpec &spec, const SpawnExtras &extras,
                                   const Identity &ids,
                                   const std::vector<std::pair<std::string, std::string>> &file) {
    std::map<std::string, std::string, std::less<>> env;
    for (char **e = environ; e && *e; ++e) {
        std::string_view kv(*e);
        auto eq = kv.find('=');
        if (eq == std::string_view::npos || eq == 0) continue;
        env.insert_or_assign(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
    // Socket activation describes the receiving process's own descriptors: what vigild was
    // given is not its services' (SpawnExtras::listen_pid).
    for (const char *k : {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"})
        env.erase(std::string(k));
    if (!ids.user_name.empty()) {
        env.insert_or_assign("USER", ids.user_name);
        env.insert_or_assign("LOGNAME", ids.user_name);
        if (!ids.home.empty()) env.insert_or_assign("HOME", ids.home);
    }
    for (const auto &[k, v] : file)
        env.insert_or_assign(k, v);
    for (const auto &[k, v] : spec.env)
        env.insert_or_assign(k, v);
    for (const auto &[k, v] : extras.env)
        env.insert_or_assign(k, v);
    if (extras.listen_pid) // the room the child writes its pid into (child_side.hpp)
        env.insert_or_assign("LISTEN_PID", std::string(detail::listen_pid_room, '0'));
    std::vector<std::string> out;
    out.reserve(env.size());
    for (const auto &[k, v] : env)
        out.push_back(k + "=" + v);
    return out;
}

std::string_view env_value(const std::vector<std::string> &env, std::string_view key) {
    for (const std::string &kv : env) {
        if (kv.size() > key.size() && kv.compare(0, key.size(), key) == 0 && kv[key.size()] == '=')
            return std::string_view(kv).substr(key.size() + 1);
    }
    return {};
}

// execvp's search, done before the fork: the first regular, executable file wins. Reports
// EACCES if a candidate existed but was not executable, else ENOENT.
std::optional<SpawnError> find_in_path(const std::string &name, std::string_view path_list,
                                       std::string &out) {
    if (path_list.empty()) path_list = default_path;
    int error = ENOENT;
    std::size_t start = 0;
    for (;;) {
        std::size_t end = path_list.find(':', start);
        std::string_view dir = path_list.substr(
            start, end == std::string_view::npos ? std::string_view::npos : end - start);
        std::string candidate = dir.empty() ? name : std::string(dir) + "/" + name;
        struct stat st {};
        if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
            if (access(candidate.c_str(), X_OK) == 0) {
                out = std::move(candidate);
                return std::nullopt;
            }
            error = EACCES;
        }
        if (end == std::string_view::npos) break;
        start = end + 1;
    }
    return SpawnError{ExecStage::Exec, error, name, {}};
}

// A private stack for the CLONE_VM child, with a guard page, mapped once per thread. The child
// runs only child_main(), whose frames are small.
char *child_stack_top() {
    constexpr std::size_t size = 256 * 1024;
    thread_local char *top = nullptr;
    if (!top) {
        void *m = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) return nullptr;
        mprotect(m, static_cast<std::size_t>(sysconf(_SC_PAGESIZE)), PROT_NONE);
        top = static_cast<char *>(m) + size;
    }
#if VIGIL_ASAN
    // Whatever a previous child left poisoned on this stack must not fail the next one.
    std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    ASAN_UNPOISON_MEMORY_REGION(top - size + page, size - page);
#endif
    return top;
}

// The object a child-side failure refers to, for SpawnError::object.
std::string failure_object(const detail::ChildFailure &f, const SpawnSpec &spec,
                           const std::string &path, const Identity &ids) {
    switch (static_cast<ExecStage>(f.stage)) {
    case ExecStage::Setsid:
        return f.aux == 0 ? "" : (f.aux == 1 ? "(setpgid)" : "(tcsetpgrp)");
    case ExecStage::Signals: {
        return f.aux > 0 ? core::signal_name(f.aux) : "mask";
    }
    case ExecStage::Stdio:
        return "fd " + std::to_string(f.aux);
    case ExecStage::Rlimit: {
        auto i = static_cast<std::size_t>(f.aux);
        if (i >= spec.limits.size()) return "";
        for (std::string_view n : rlimit_names())
            if (rlimit_by_name(n) == spec.limits[i].resource) return std::string(n);
        return std::to_string(spec.limits[i].resource);
    }
    case ExecStage::Setgroups:
    case ExecStage::Setuid:
        return spec.user ? *spec.user : (spec.group ? *spec.group : "");
    case ExecStage::Setgid:
        return spec.group ? *spec.group : std::to_string(ids.gid);
    case ExecStage::Chdir:
        return spec.cwd ? *spec.cwd : "";
    case ExecStage::Exec:
        return path;
    case ExecStage::Fork:
        return f.aux == 1 ? "report" : "";
    case ExecStage::Prepare:
    case ExecStage::Cgroup:
    case ExecStage::Umask:
        return "";
    }
    return "";
}

} // namespace

IdentityResult resolve_identity(const std::optional<std::string> &user,
                                const std::optional<std::string> &group) {
    SpawnSpec spec;
    spec.user = user;
    spec.group = group;
    Identity ids;
    if (auto e = resolve_ids(spec, ids)) return {std::nullopt, e->message()};
    return {std::move(ids), {}};
}

const char *to_string(ExecStage s) noexcept {
    auto i = static_cast<std::size_t>(s);
    return i < exec_stage_names.size() ? exec_stage_names[i] : "unknown";
}

std::string SpawnError::message() const {
    std::string reason = detail.empty() ? std::string(std::strerror(error)) : detail;
    if (stage == ExecStage::Prepare) return object.empty() ? reason : object + ": " + reason;
    std::string out = to_string(stage);
    if (!object.empty()) out += " " + object;
    return out + ": " + reason;
}

namespace detail {

std::optional<SpawnError> prepare(const SpawnSpec &spec, const SpawnExtras &extras, Prepared &out) {
    if (spec.argv.empty() || spec.argv[0].empty())
        return prepare_error("argv", EINVAL, "empty command");
    if (spec.identity)
        out.ids = *spec.identity;
    else if (auto e = resolve_ids(spec, out.ids))
        return e;
    std::vector<std::pair<std::string, std::string>> file_env;
    if (spec.env_file) {
        if (auto e = read_env_file(spec, out.ids, file_env)) return e;
    }
    out.env = build_env(spec, extras, out.ids, file_env);
    out.listen_pid_env = -1;
    if (extras.listen_pid)
        for (std::size_t i = 0; i < out.env.size(); ++i)
            if (out.env[i].starts_with("LISTEN_PID=")) out.listen_pid_env = static_cast<long>(i);
    out.path = spec.argv[0];
    if (out.path.find('/') == std::string::npos) {
        if (auto e = find_in_path(spec.argv[0], env_value(out.env, "PATH"), out.path)) return e;
    }
    out.limits.clear();
    for (const Limit &l : spec.limits) {
        out.limits.push_back(
            {l.resource, {static_cast<rlim_t>(l.soft), static_cast<rlim_t>(l.hard)}});
    }
    for (const auto &[src, target] : extras.fds) {
        if (src < 0 || target < 0) return prepare_error("fd " + std::to_string(target), EBADF);
    }
    return std::nullopt;
}

LaunchPlan make_plan(const SpawnSpec &spec, const SpawnExtras &extras, const Prepared &prep) {
    LaunchPlan plan;
    plan.path = prep.path.c_str();
    plan.argv.reserve(spec.argv.size() + 1);
    for (const std::string &a : spec.argv)
        plan.argv.push_back(const_cast<char *>(a.c_str()));
    plan.argv.push_back(nullptr);
    plan.envp.reserve(prep.env.size() + 1);
    for (const std::string &kv : prep.env)
        plan.envp.push_back(const_cast<char *>(kv.c_str()));
    plan.envp.push_back(nullptr);
    if (prep.listen_pid_env >= 0) // room for the digits and the NUL: listen_pid_room + 1
        plan.listen_pid_slot =
            plan.envp[static_cast<std::size_t>(prep.listen_pid_env)] + sizeof "LISTEN_PID=" - 1;
    plan.pipes = extras.stdio == Stdio::Pipes;
    plan.merge_stderr = extras.merge_stderr;
    plan.cgroup_fd = extras.cgroup_procs_fd;
    plan.new_session = extras.new_session;
    plan.foreground_tty = extras.foreground_tty;
    plan.fds = extras.fds;
    plan.limits = prep.limits;
    plan.set_groups = prep.ids.set_groups;
    plan.set_gid = prep.ids.set_gid;
    plan.set_uid = prep.ids.set_uid;
    plan.groups.assign(prep.ids.groups.begin(), prep.ids.groups.end());
    plan.gid = prep.ids.gid;
    plan.uid = prep.ids.uid;
    plan.set_umask = spec.umask.has_value();
    plan.umask_value = static_cast<mode_t>(spec.umask.value_or(0));
    plan.cwd = spec.cwd ? spec.cwd->c_str() : nullptr;
    return plan;
}

Launched launch(const LaunchPlan &lp, bool clone_parent) {
    Launched out;
    auto failed = [&out](SpawnError e) {
        out.status = Launched::Status::Error;
        out.error = std::move(e);
        return std::move(out);
    };

    // Pipes, all close-on-exec so that concurrent spawns never leak them into each other.
    Fd devnull, out_r, out_w, err_r, err_w, status_r, status_w;
    std::vector<FdMove> moves;
    if (lp.pipes) {
        int p[2];
        devnull.reset(open("/dev/null", O_RDONLY | O_CLOEXEC));
        if (devnull.get() < 0) return failed(prepare_error("/dev/null", errno));
        if (pipe2(p, O_CLOEXEC) < 0) return failed(prepare_error("pipe", errno));
        out_r.reset(p[0]);
        out_w.reset(p[1]);
        if (!lp.merge_stderr) {
            if (pipe2(p, O_CLOEXEC) < 0) return failed(prepare_error("pipe", errno));
            err_r.reset(p[0]);
            err_w.reset(p[1]);
        }
        // Non-blocking on the read ends only: the child's ends stay blocking, so a slow log
        // consumer makes the child wait instead of failing its writes (docs/DESIGN.md §4).
        if (fcntl(out_r.get(), F_SETFL, O_NONBLOCK) < 0 ||
            (err_r.get() >= 0 && fcntl(err_r.get(), F_SETFL, O_NONBLOCK) < 0))
            return failed(prepare_error("pipe", errno));
        moves.push_back({devnull.get(), 0});
        moves.push_back({out_w.get(), 1});
        moves.push_back({lp.merge_stderr ? out_w.get() : err_w.get(), 2});
    }
    // The Spawner's child hands the read ends to vigild in its report (child_side.hpp).
    if (lp.report) {
        lp.report->pipes[0] = out_r.get();
        lp.report->pipes[1] = err_r.get();
    }
    int max_target = 2;
    for (const auto &[src, target] : lp.fds) {
        if (src < 0 || target < 0)
            return failed(prepare_error("fd " + std::to_string(target), EBADF));
        moves.push_back({src, target});
        max_target = std::max(max_target, target);
    }
    std::vector<int> scratch(moves.size(), -1);
    {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) return failed(prepare_error("pipe", errno));
        status_r.reset(p[0]);
        status_w.reset(p[1]);
        // Keep the status pipe out of the way of the fds the child installs.
        if (status_w.get() <= max_target) {
            int moved = fcntl(status_w.get(), F_DUPFD_CLOEXEC, max_target + 1);
            if (moved < 0) return failed(prepare_error("pipe", errno));
            status_w.reset(moved);
        }
    }

    ChildPlan plan;
    plan.path = lp.path;
    plan.argv = lp.argv.data();
    plan.envp = lp.envp.data();
    plan.new_session = lp.new_session;
    // Only a process group (not a new session) can take over vigild's terminal.
    if (!lp.new_session && lp.foreground_tty && isatty(STDIN_FILENO)) plan.tty_fd = 0;
    plan.moves = moves.data();
    plan.n_moves = moves.size();
    plan.scratch = scratch.data();
    plan.max_target = max_target;
    struct rlimit nofile {};
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY)
        plan.fd_limit = static_cast<long>(nofile.rlim_cur);
    plan.limits = lp.limits.data();
    plan.n_limits = lp.limits.size();
    plan.set_groups = lp.set_groups;
    plan.groups = lp.groups.data();
    plan.n_groups = lp.groups.size();
    plan.set_gid = lp.set_gid;
    plan.gid = lp.gid;
    plan.set_uid = lp.set_uid;
    plan.uid = lp.uid;
    plan.set_umask = lp.set_umask;
    plan.umask_value = lp.umask_value;
    plan.cwd = lp.cwd;
    plan.status_fd = status_w.get();
    plan.report_fd = lp.report_fd;
    plan.report = lp.report;
    plan.cgroup_fd = lp.cgroup_fd;
    plan.listen_pid_slot = lp.listen_pid_slot;

    char *stack = child_stack_top();
    if (!stack) return failed(SpawnError{ExecStage::Fork, errno, "stack", {}});

    // Block every signal across the clone: a handler of vigild's (libuv's) running in the
    // child would run on shared memory. The child inherits this full mask, resets the
    // dispositions, and empties the mask right before execve().
    // CLONE_PARENT (the Spawner's helper): the child becomes a sibling of the caller, i.e. a
    // child of vigild, which reaps it and gets its SIGCHLD (the exit signal is the caller's
    // own, SIGCHLD for a forked helper). The vfork wait still suspends the caller.
    // CLONE_PIDFD (Linux >= 5.2) hands the caller a pidfd with no window for a reaper to
    // recycle the pid first; an older kernel refuses the flag (EINVAL), then we go without.
    int flags = CLONE_VM | CLONE_VFORK | SIGCHLD | (clone_parent ? CLONE_PARENT : 0);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int pidfd = -1;
    int pid = -1;
    if (lp.want_pidfd) pid = clone(child_main, stack, flags | CLONE_PIDFD, &plan, &pidfd);
    if (!lp.want_pidfd || (pid < 0 && errno == EINVAL)) {
        pidfd = -1;
        pid = clone(child_main, stack, flags, &plan);
    }
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    if (pid < 0) return failed(SpawnError{ExecStage::Fork, clone_errno, "", {}});
    out.pid = pid;
    out.pidfd = pid > 0 ? pidfd : -1;

    // The child has exec'd or exited: drop our copies of its ends, then read its verdict.
    status_w.reset();
    devnull.reset();
    out_w.reset();
    err_w.reset();
    ssize_t n;
    do {
        n = read(status_r.get(), &out.failure, sizeof out.failure);
    } while (n < 0 && errno == EINTR);
    if (n == 0) {
        out.status = Launched::Status::Execd;
        out.out_fd = out_r.release();
        out.err_fd = err_r.release();
    } else if (n != static_cast<ssize_t>(sizeof out.failure) ||
               out.failure.stage > static_cast<std::uint32_t>(ExecStage::Exec)) {
        out.status = Launched::Status::BadStatus;
        out.status_errno = n < 0 ? errno : EIO;
    } else {
        out.status = Launched::Status::ChildFailed;
    }
    return out;
}

SpawnError child_error(const Launched &l, const SpawnSpec &spec, const Prepared &prep) {
    switch (l.status) {
    case Launched::Status::Execd:
    case Launched::Status::Error:
        return l.error.value_or(SpawnError{ExecStage::Fork, EIO, "", {}});
    case Launched::Status::BadStatus:
        return SpawnError{ExecStage::Fork, l.status_errno, "status pipe", {}};
    case Launched::Status::ChildFailed:
        break;
    }
    SpawnError e{static_cast<ExecStage>(l.failure.stage), l.failure.error, {}, {}};
    e.object = failure_object(l.failure, spec, prep.path, prep.ids);
    return e;
}

SpawnResult finish(Launched l, const SpawnSpec &spec, const Prepared &prep, int *pidfd) {
    Fd own_pidfd(l.pidfd);
    if (l.status == Launched::Status::Execd) {
        if (pidfd) *pidfd = own_pidfd.release();
        return SpawnResult{Spawned{l.pid, l.out_fd, l.err_fd}, std::nullopt};
    }
    if (l.pid > 0) {
        // The child failed before exec and has _exit(127)ed (or is about to): reap it here,
        // so a failed spawn never surfaces in reap_all().
        int st = 0;
        while (waitpid(l.pid, &st, 0) < 0 && errno == EINTR) {
        }
    }
    return SpawnResult{std::nullopt, child_error(l, spec, prep)};
}

} // namespace detail

SpawnResult spawn(const SpawnSpec &spec, const SpawnExtras &extras) {
    detail::Prepared prep;
    if (auto e = detail::prepare(spec, extras, prep)) return SpawnResult{std::nullopt, *e};
    detail::LaunchPlan plan = detail::make_plan(spec, extras, prep);
    return detail::finish(detail::launch(plan, false), spec, prep);
}

SpawnResult spawn(const SpawnSpec &spec, const SpawnExtras &extras, int &pidfd) {
    pidfd = -1;
    detail::Prepared prep;
    if (auto e = detail::prepare(spec, extras, prep)) return SpawnResult{std::nullopt, *e};
    detail::LaunchPlan plan = detail::make_plan(spec, extras, prep);
    plan.want_pidfd = true;
    return detail::finish(detail::launch(plan, false), spec, prep, &pidfd);
}

} // namespace vigil::proc

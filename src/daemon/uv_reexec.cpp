// uv_reexec.cpp: the OS's side of a re-exec of vigild (reexec.cpp has the shell's, handover.hpp
// the state's format).
//
// The old binary: once no spawn is pending (a spawn in the helper's hands would be answered to
// nobody), the log writers are drained (bounded: a file system that does not take the lines
// refuses the re-exec rather than lose them), the state goes into a sealed memfd, every signal
// is blocked (a blocked signal stays pending across execve, so nothing sent meanwhile is lost or
// handled by a default action), the carried descriptors lose their close-on-exec flag, and
// execve runs the binary vigild started from, with its arguments. Should execve fail, all of
// that is undone and vigild goes on. Everything else (the spawner helper, probes' checks in
// flight, the loop's own descriptors) is close-on-exec and goes with the old image.
//
// The new binary: adopt_listeners() takes the control and HTTP sockets (connections that came
// during the exec wait in their backlog, or were the stand-in's: uv_standin.cpp) and the
// cgroup folder with its lock, before attach(); attach() unblocks the signals once its
// handlers are in place.
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uv_os.hpp"

extern char **environ;

namespace vigil::daemon {

namespace {

// How long the log writers may take to write out what they hold before an exec.
constexpr Duration flush_limit{2000};

// The state in a sealed memfd (not close-on-exec: the new binary reads it). -1 with `error`.
// It is encoded straight into a mapping of the memfd, populated in one call: no buffer on the
// heap whose every page would be a fault (or, with a stand-in forked, a copy) inside the pause,
// and no copy of it into the file.
int state_memfd(const Handover &h, std::string &error) {
    const std::size_t size = handover_size(h);
    const int fd = ::memfd_create("vigil-reexec-state", MFD_ALLOW_SEALING);
    if (fd < 0) {
        error = std::string("memfd_create: ") + std::strerror(errno);
        return -1;
    }
    auto fail = [&](const std::string &what) {
        error = "writing the state: " + what;
        ::close(fd);
        return -1;
    };
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) return fail(std::strerror(errno));
    void *map = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (map == MAP_FAILED) return fail(std::string("mmap: ") + std::strerror(errno));
    try {
        encode_handover_into(h, static_cast<char *>(map), size);
    } catch (const std::exception &e) {
        ::munmap(map, size);
        return fail(e.what());
    }
    ::munmap(map, size); // no writable mapping may be left for F_SEAL_WRITE
    // The new binary reads only a sealed state: unsealed, it would refuse it.
    if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
        return fail(std::string("sealing: ") + std::strerror(errno));
    return fd;
}

// FD_CLOEXEC is the only descriptor flag: one fcntl each (thousands of them at 1,000 services).
void set_cloexec(const std::vector<std::int32_t> &fds, bool on) {
    for (int fd : fds)
        (void)::fcntl(fd, F_SETFD, on ? FD_CLOEXEC : 0);
}

} // namespace

void UvOs::when_spawns_idle(Duration limit, std::function<void(bool)> done) {
    idle_wait_ = std::move(done);
    idle_deadline_ = now() + limit;
    idle_limit_ = after(spawns_.empty() ? Duration{0} : limit, [this] { spawns_idle_verdict(); });
}

// After each spawn answer: a re-exec waiting for the spawner goes on once nothing is pending.
void UvOs::check_spawns_idle() {
    if (!idle_wait_ || !spawns_.empty()) return;
    idle_limit_ = after(Duration{0}, [this] { spawns_idle_verdict(); });
}

// The verdict comes a loop turn after the spawner went idle, and a spawn may have been asked
// for meanwhile (a restart whose backoff ended): the wait then goes on, to the next answer
// that leaves nothing pending or the limit, whichever comes first. Only the limit says no.
void UvOs::spawns_idle_verdict() {
    if (!idle_wait_) return;
    if (!spawns_.empty() && now() < idle_deadline_) {
        idle_limit_ = after(idle_deadline_ - now(), [this] { spawns_idle_verdict(); });
        return;
    }
    auto cb = std::exchange(idle_wait_, nullptr);
    cb(spawns_.empty());
}

std::string UvOs::exec_self(Handover &h) {
    if (opts_.exe.empty() || opts_.argv.empty())
        return "the path of vigild's binary is not known (/proc/self/exe was not readable)";
    auto carry = [&](int fd) {
        if (fd >= 0) h.fds.push_back(fd);
        return fd;
    };
    h.control_fd = carry(ctl_ ? ctl_->fd() : -1);
    h.http_fd = carry(http_ ? http_->fd() : -1);
    if (ctl_)
        for (ctl::Server::CarriedSession &s : ctl_->carriable_sessions())
            if (s.fd != h.requester_fd)
                h.sessions.push_back(HandoverSession{carry(s.fd), std::move(s.pending)});
    h.retired_fd = carry(uv_backend_fd(&loop_));
    if (cgroups_) {
        h.cgroup_root = cgroups_->path();
        h.cgroup_lock_fd = carry(cgroups_->lock_fd());
    }
    if (files_ && !files_->flush_blocking(flush_limit))
        return "the services' log files did not take their lines within " +
               core::format_duration(flush_limit) +
               " (a slow or hung file system?); nothing was lost: try again later";
    for (log::Forwarder *f : {streams_.out, streams_.shared() ? nullptr : streams_.err})
        if (f && !f->flush_blocking(flush_limit))
            return "vigild's standard output or error is not being read (nothing was lost); "
                   "try again once its reader keeps up";
    h.exec_started_ns = static_cast<std::int64_t>(uv_hrtime());
    std::string error;
    const int state = state_memfd(h, error);
    if (state < 0) return error;

    auto named = [](const char *entry, const char *name) {
        return std::strncmp(entry, name, std::strlen(name)) == 0 && entry[std::strlen(name)] == '=';
    };
    std::vector<std::string> env_strings;
    for (char **e = environ; e && *e; ++e)
        if (!named(*e, handover_env) && !named(*e, stand_in_env) && !named(*e, leftovers_env))
            env_strings.emplace_back(*e);
    for (const std::string &m : opts_.manager_env)
        env_strings.push_back(m);
    env_strings.push_back(std::string(handover_env) + "=" + std::to_string(state));
    if (stand_in_fd_ >= 0)
        env_strings.push_back(std::string(stand_in_env) + "=" + std::to_string(stand_in_fd_) + ":" +
                              std::to_string(stand_in_pid_));
    // The spawner helper leaves once its socket closes with this image: vigild's own child,
    // not an orphan, for the new binary that reaps it.
    if (spawner_.helper_pid() > 0)
        env_strings.push_back(std::string(leftovers_env) + "=" +
                              std::to_string(spawner_.helper_pid()));
    std::vector<char *> envp, argv;
    for (std::string &e : env_strings)
        envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<std::string> args = opts_.argv;
    for (std::string &a : args)
        argv.push_back(a.data());
    argv.push_back(nullptr);

    sigset_t all, old;
    sigfillset(&all);
    ::sigprocmask(SIG_SETMASK, &all, &old);
    set_cloexec(h.fds, false);
    if (stand_in_fd_ >= 0) set_cloexec({stand_in_fd_}, false);
    ::execve(opts_.exe.c_str(), argv.data(), envp.data());
    const int err = errno;
    set_cloexec(h.fds, true);
    if (stand_in_fd_ >= 0) set_cloexec({stand_in_fd_}, true);
    ::close(state);
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    return "execve " + opts_.exe + ": " + std::strerror(err);
}

std::vector<int> take_leftovers_env() {
    std::vector<int> out;
    const char *v = std::getenv(leftovers_env);
    if (!v) return out;
    std::string s(v);
    ::unsetenv(leftovers_env);
    constexpr std::size_t most = 8;
    std::size_t at = 0;
    while (at < s.size() && out.size() < most) {
        const std::size_t end = std::min(s.find(',', at), s.size());
        const std::string one = s.substr(at, end - at);
        char *stop = nullptr;
        errno = 0;
        const long pid = std::strtol(one.c_str(), &stop, 10);
        if (one.empty() || errno != 0 || *stop != '\0' || pid <= 0 || pid > (1L << 22)) return {};
        out.push_back(static_cast<int>(pid));
        at = end + 1;
    }
    return out;
}

void UvOs::adopt_listeners(const Handover &h) {
    adopted_control_fd_ = h.control_fd;
    adopted_http_fd_ = h.http_fd;
    adopted_sessions_ = h.sessions;
    if (h.cgroup_lock_fd >= 0) {
        cgroups_tried_ = true;
        cgroups_ = proc::CgroupRoot::adopt(h.cgroup_root, h.cgroup_lock_fd);
        if (!cgroups_) cgroups_error_ = h.cgroup_root + ": not a folder of vigild's any more";
    }
}

} // namespace vigil::daemon

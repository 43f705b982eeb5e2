// reap.cpp: reaping, signalling, the subreaper flag, and finding a unit's processes in /proc
// (see include/vigil/proc/spawn.hpp).
#include "vigil/proc/spawn.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <string>
#include <string_view>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace vigil::proc {

std::vector<Reaped> reap_all() {
    // SIGCHLD is not queued: one signal may stand for many exits, so loop until the kernel
    // says there is nothing left (0: children remain but none has exited; ECHILD: no child).
    std::vector<Reaped> out;
    for (;;) {
        int st = 0;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid > 0) {
            out.push_back({pid, st});
            continue;
        }
        if (pid < 0 && errno == EINTR) continue;
        break;
    }
    return out;
}

int signal_group(int pgid, int sig) noexcept {
    // Refuse pgid <= 1: kill(-1) would signal every process we may signal, kill(0) our own group.
    if (pgid <= 1) return EINVAL;
    return kill(-pgid, sig) == 0 ? 0 : errno;
}

int signal_process(int pid, int sig) noexcept {
    if (pid <= 0) return EINVAL;
    return kill(pid, sig) == 0 ? 0 : errno;
}

int signal_pidfd(int pidfd, int sig) noexcept {
    if (pidfd < 0) return EBADF;
    return syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0U) == 0 ? 0 : errno;
}

bool group_alive(int pgid) noexcept {
    // EPERM means a process exists that we may not signal: still alive. Zombies count as
    // alive until reaped (kill() succeeds on them), which is what a stop must wait for.
    if (pgid <= 1) return false;
    return kill(-pgid, 0) == 0 || errno == EPERM;
}

int become_subreaper() noexcept {
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 ? 0 : errno;
}

namespace {

// The value of VIGIL_UNIT in /proc/<pid>/environ, or "" (entries are NUL-separated).
std::string unit_of(const std::string &path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return {};
    std::string env;
    char buf[16384];
    constexpr std::size_t limit = 256 * 1024;
    while (env.size() < limit) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        env.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    constexpr std::string_view key = "VIGIL_UNIT=";
    for (std::size_t at = 0; at < env.size();) {
        std::size_t end = env.find('\0', at);
        if (end == std::string::npos) end = env.size();
        std::string_view entry(env.data() + at, end - at);
        if (entry.substr(0, key.size()) == key) return std::string(entry.substr(key.size()));
        at = end + 1;
    }
    return {};
}

bool zombie(const std::string &stat_path) {
    int fd = ::open(stat_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return true;
    char buf[512];
    ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) return true;
    std::string_view s(buf, static_cast<std::size_t>(n));
    const auto close = s.rfind(')');
    return close == std::string_view::npos || close + 2 >= s.size() || s[close + 2] == 'Z';
}

} // namespace

std::map<std::string, std::vector<int>> processes_of(const std::vector<std::string> &units,
                                                     std::size_t max) {
    std::map<std::string, std::vector<int>> out;
    for (const std::string &u : units)
        out[u];
    DIR *d = ::opendir("/proc");
    if (!d) return out;
    while (dirent *e = ::readdir(d)) {
        const char *name = e->d_name;
        if (*name < '1' || *name > '9') continue;
        const int pid = std::atoi(name);
        const std::string base = std::string("/proc/") + name;
        if (pid <= 0) continue;
        auto it = out.find(unit_of(base + "/environ"));
        if (it == out.end() || zombie(base + "/stat")) continue;
        it->second.push_back(pid);
    }
    ::closedir(d);
    for (auto &[unit, pids] : out) {
        std::sort(pids.begin(), pids.end());
        if (pids.size() > max) pids.resize(max);
    }
    return out;
}

} // namespace vigil::proc

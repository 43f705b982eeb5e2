// Service cgroups: see include/vigil/proc/cgroup.hpp.
#include "vigil/proc/cgroup.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace vigil::proc {

namespace {

// A small file of the cgroup or proc file system, read whole (they are a few KiB at most).
std::string read_small(const std::string &path, std::size_t limit = 1 << 20) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return {};
    std::string out;
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0 || out.size() > limit) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return out;
}

bool write_small(const std::string &path, std::string_view text) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) return false;
    ssize_t n = ::write(fd, text.data(), text.size());
    const int e = errno;
    ::close(fd);
    errno = e;
    return n == static_cast<ssize_t>(text.size());
}

// The cgroup2 mount point (mountinfo: field 5 is the mount point; after " - " the fs type).
std::string cgroup2_mount() {
    std::istringstream in(read_small("/proc/self/mountinfo"));
    std::string line;
    while (std::getline(in, line)) {
        const auto dash = line.find(" - ");
        if (dash == std::string::npos || line.compare(dash + 3, 8, "cgroup2 ") != 0) continue;
        std::istringstream f(line.substr(0, dash));
        std::string id, parent, dev, root, mount;
        if (f >> id >> parent >> dev >> root >> mount) return mount;
    }
    return {};
}

// vigild's cgroup in the v2 hierarchy: the "0::<path>" line of /proc/self/cgroup.
std::string own_cgroup() {
    std::istringstream in(read_small("/proc/self/cgroup"));
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("0::", 0) == 0) return line.substr(3);
    return {};
}

// What makes this vigild's folder name unique: its pid and the boot-relative start time of its
// PID namespace's init (two vigilds that are both PID 1 of their namespaces differ there).
std::string instance_id() {
    std::string stat = read_small("/proc/1/stat");
    std::string start;
    if (auto close = stat.rfind(')'); close != std::string::npos) {
        std::istringstream f(stat.substr(close + 2));
        std::string field;
        for (int i = 3; i <= 22 && f >> field; ++i)
            if (i == 22) start = field;
    }
    return std::to_string(::getpid()) + "." + (start.empty() ? "0" : start);
}

bool valid_unit_name(const std::string &unit) {
    return !unit.empty() && unit.find('/') == std::string::npos && unit != "." && unit != "..";
}

} // namespace

std::optional<CgroupRoot> CgroupRoot::make(std::string *error) {
    const std::string mount = cgroup2_mount();
    const std::string own = own_cgroup();
    if (mount.empty() || own.empty()) {
        if (error) *error = "no cgroup v2 hierarchy";
        return std::nullopt;
    }
    CgroupRoot r;
    r.path_ = mount + (own == "/" ? "" : own) + "/vigil." + instance_id();
    if (::mkdir(r.path_.c_str(), 0755) != 0 && errno != EEXIST) {
        if (error) *error = "cannot make " + r.path_ + ": " + std::strerror(errno);
        return std::nullopt;
    }
    struct stat st {};
    if (::lstat(r.path_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid()) {
        if (error) *error = r.path_ + ": not a folder of vigild's";
        return std::nullopt;
    }
    return r;
}

std::string CgroupRoot::service(const std::string &unit, std::string *error) const {
    if (!valid_unit_name(unit)) {
        if (error) *error = "invalid unit name for a cgroup";
        return {};
    }
    const std::string dir = path_ + "/" + unit;
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        if (error) *error = "cannot make " + dir + ": " + std::strerror(errno);
        return {};
    }
    return dir;
}

void CgroupRoot::remove_all() const {
    if (DIR *d = ::opendir(path_.c_str())) {
        while (dirent *e = ::readdir(d)) {
            if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
            cgroup::remove(path_ + "/" + e->d_name);
        }
        ::closedir(d);
    }
    cgroup::remove(path_);
}

namespace cgroup {

int open_procs(const std::string &dir) {
    return ::open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY);
}

std::vector<int> pids(const std::string &dir) {
    std::vector<int> out;
    std::istringstream in(read_small(dir + "/cgroup.procs"));
    int pid = 0;
    while (in >> pid)
        out.push_back(pid);
    return out;
}

bool empty(const std::string &dir) {
    const std::string events = read_small(dir + "/cgroup.events");
    if (events.empty()) return true;
    return events.find("populated 0") != std::string::npos;
}

int signal(const std::string &dir, int sig) {
    if (sig == SIGKILL && write_small(dir + "/cgroup.kill", "1")) return 0;
    int first = 0;
    for (int pid : pids(dir))
        if (::kill(pid, sig) != 0 && errno != ESRCH && first == 0) first = errno;
    return first;
}

int open_events(const std::string &dir) {
    return ::open((dir + "/cgroup.events").c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
}

bool remove(const std::string &dir) {
    return ::rmdir(dir.c_str()) == 0 || errno == ENOENT;
}

} // namespace cgroup

} // namespace vigil::proc

// Service cgroups: see include/vigil/proc/cgroup.hpp.
#include "vigil/proc/cgroup.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace vigil::proc {

namespace {

// A small file of the cgroup or proc file system, read whole (they are a few KiB at most).
// They are sequence files: a read fills the buffer unless the text has ended, so a short read
// is the end (a stop reads a cgroup's files for every service: one read less each).
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
        if (static_cast<std::size_t>(n) < sizeof buf) break;
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

// An exclusive lock on a folder, taken without waiting: the descriptor, or -1.
int lock_folder(const std::string &dir) {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

// Removes `dir`'s empty sub-folders, then `dir`: true when it is gone.
bool remove_tree(const std::string &dir) {
    if (DIR *d = ::opendir(dir.c_str())) {
        while (dirent *e = ::readdir(d)) {
            if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
            cgroup::remove(dir + "/" + e->d_name);
        }
        ::closedir(d);
    }
    return cgroup::remove(dir);
}

// The folders of vigilds that are gone (their lock is free), among `parent`'s `vigil.*`
// sub-folders other than `own`: removed when empty, else reported. At most 4096 are looked at.
void sweep_stale(const std::string &parent, const std::string &own,
                 std::vector<std::string> *stale) {
    DIR *d = ::opendir(parent.c_str());
    if (!d) return;
    std::vector<std::string> names;
    while (dirent *e = ::readdir(d)) {
        if (names.size() >= 4096) break;
        const std::string name = e->d_name;
        if (e->d_type == DT_DIR && name.rfind("vigil.", 0) == 0 && parent + "/" + name != own)
            names.push_back(name);
    }
    ::closedir(d);
    for (const std::string &name : names) {
        const std::string dir = parent + "/" + name;
        const int fd = lock_folder(dir);
        if (fd < 0) continue; // a live vigild's (or not a folder any more)
        const bool gone = remove_tree(dir);
        ::close(fd);
        if (!gone && stale)
            stale->push_back(dir + ": left by a vigild that is gone, still holds processes");
    }
}

} // namespace

CgroupRoot::CgroupRoot(CgroupRoot &&other) noexcept
    : path_(std::move(other.path_)), lock_fd_(other.lock_fd_) {
    other.lock_fd_ = -1;
}

CgroupRoot &CgroupRoot::operator=(CgroupRoot &&other) noexcept {
    if (this != &other) {
        if (lock_fd_ >= 0) ::close(lock_fd_);
        path_ = std::move(other.path_);
        lock_fd_ = other.lock_fd_;
        other.lock_fd_ = -1;
    }
    return *this;
}

CgroupRoot::~CgroupRoot() {
    if (lock_fd_ >= 0) ::close(lock_fd_);
}

std::optional<CgroupRoot> CgroupRoot::make(std::string *error, std::vector<std::string> *stale) {
    const std::string mount = cgroup2_mount();
    const std::string own = own_cgroup();
    if (mount.empty() || own.empty()) {
        if (error) *error = "no cgroup v2 hierarchy";
        return std::nullopt;
    }
    const std::string parent = mount + (own == "/" ? "" : own);
    const std::string base = parent + "/vigil." + instance_id();
    // Made, then locked: between the two, another vigild's sweep may take the lock of the new,
    // empty folder and remove it, and a vigild started in the same clock tick has the same id.
    // So a folder counts as vigild's only once it is locked and is still the one at its path;
    // else the next name is tried.
    constexpr int attempts = 16;
    for (int k = 0; k < attempts; ++k) {
        CgroupRoot r;
        r.path_ = k == 0 ? base : base + "-" + std::to_string(k);
        if (::mkdir(r.path_.c_str(), 0755) != 0 && errno != EEXIST) {
            if (error) *error = "cannot make " + r.path_ + ": " + std::strerror(errno);
            return std::nullopt;
        }
        struct stat st {};
        if (::lstat(r.path_.c_str(), &st) != 0) continue; // swept already
        if (!S_ISDIR(st.st_mode) || st.st_uid != ::geteuid()) {
            if (error) *error = r.path_ + ": not a folder of vigild's";
            return std::nullopt;
        }
        r.lock_fd_ = lock_folder(r.path_);
        if (r.lock_fd_ < 0) continue; // another vigild's, or being swept
        struct stat locked {};
        if (::fstat(r.lock_fd_, &locked) != 0 || ::lstat(r.path_.c_str(), &st) != 0 ||
            locked.st_dev != st.st_dev || locked.st_ino != st.st_ino)
            continue; // removed (by a sweep) before the lock was taken
        sweep_stale(parent, r.path_, stale);
        return r;
    }
    if (error)
        *error = "cannot make a folder of vigild's: " + base + " and " +
                 std::to_string(attempts - 1) + " more are taken";
    return std::nullopt;
}

std::optional<CgroupRoot> CgroupRoot::adopt(std::string path, int lock_fd) {
    struct stat st {};
    if (lock_fd < 0 || ::fstat(lock_fd, &st) != 0 || !S_ISDIR(st.st_mode) ||
        st.st_uid != ::geteuid()) {
        if (lock_fd >= 0) ::close(lock_fd);
        return std::nullopt;
    }
    (void)::fcntl(lock_fd, F_SETFD, FD_CLOEXEC);
    CgroupRoot r;
    r.path_ = std::move(path);
    r.lock_fd_ = lock_fd;
    return r;
}

std::string CgroupRoot::service(const std::string &unit, std::string *error) const {
    if (!valid_unit_name(unit)) {
        if (error) *error = "invalid unit name for a cgroup";
        return {};
    }
    constexpr int max_instances = 64;
    for (int k = 1; k <= max_instances; ++k) {
        const std::string dir = path_ + "/" + unit + (k == 1 ? "" : "+" + std::to_string(k));
        if (::mkdir(dir.c_str(), 0755) == 0) return dir;
        if (errno != EEXIST) {
            if (error) *error = "cannot make " + dir + ": " + std::strerror(errno);
            return {};
        }
    }
    if (error)
        *error = "cannot make a cgroup: " + std::to_string(max_instances) + " folders for " + unit +
                 " exist";
    return {};
}

void CgroupRoot::remove_all() const {
    remove_tree(path_);
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

int signal(const std::string &dir, int sig, bool then_cont) {
    if (sig == SIGKILL && write_small(dir + "/cgroup.kill", "1")) return 0;
    int first = 0;
    const std::vector<int> all = pids(dir);
    for (int pid : all)
        if (::kill(pid, sig) != 0 && errno != ESRCH && first == 0) first = errno;
    if (then_cont && sig != SIGKILL)
        for (int pid : all)
            (void)::kill(pid, SIGCONT);
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

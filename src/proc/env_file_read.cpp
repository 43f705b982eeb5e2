// env_file_read.cpp: reading a unit's env_file defensively (see launch.hpp and spawn.hpp).
//
// The file is named by a unit but may be written by the service's user, and it is read by a
// root process (vigild's spawner helper, or vigild itself). So:
//   - it is opened as the unit's identity when that differs from ours: a symlink to a file
//     only root may read fails with EACCES, as it would for the service itself. The switch
//     is setfsuid/setfsgid plus setgroups, as raw syscalls: they change the calling thread
//     only (glibc's wrappers would broadcast the change to every thread), which is what we
//     want both in the single-threaded helper and on vigild's loop thread. Each switch is
//     checked (setfsuid reports no error: we ask for the id back), and undone right after
//     the open; nothing is read while switched, since read() checks no permission.
//   - O_NONBLOCK: opening a FIFO with no writer returns at once instead of hanging; O_NOCTTY:
//     a terminal never becomes our controlling terminal.
//   - fstat on the open descriptor: only a regular file is read (not /dev/zero, not a FIFO),
//     and at most env_file_max_bytes + 1 bytes of it, whatever st_size says.
#include "launch.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace vigil::proc::detail {

namespace {

SpawnError env_error(const std::string &path, int error, std::string detail = {}) {
    return SpawnError{ExecStage::Prepare, error, "env_file " + path, std::move(detail)};
}

const char *file_type(mode_t m) {
    if (S_ISFIFO(m)) return "FIFO";
    if (S_ISCHR(m)) return "character device";
    if (S_ISBLK(m)) return "block device";
    if (S_ISDIR(m)) return "directory";
    if (S_ISSOCK(m)) return "socket";
    if (S_ISLNK(m)) return "symbolic link";
    return "unknown type";
}

// "user nobody", "uid 4242", "gid 99": who the file is read as, for messages.
std::string reader(const Identity &ids) {
    if (ids.set_uid)
        return ids.user_name.empty() ? "uid " + std::to_string(ids.uid) : "user " + ids.user_name;
    return "gid " + std::to_string(ids.gid);
}

// The calling thread's file-system identity while the file is opened.
class FsIdentity {
public:
    // Switches to `ids` (only what differs is changed). Returns 0 or an errno; on failure
    // everything already switched is switched back.
    int enter(const Identity &ids) {
        old_uid_ = static_cast<uid_t>(syscall(SYS_setfsuid, -1)); // -1: no change, the current
        old_gid_ = static_cast<gid_t>(syscall(SYS_setfsgid, -1));
        if (ids.set_groups) {
            long n = syscall(SYS_getgroups, 0, nullptr);
            if (n < 0) return errno;
            old_groups_.resize(static_cast<std::size_t>(n));
            n = syscall(SYS_getgroups, n, old_groups_.data());
            if (n < 0) return errno;
            old_groups_.resize(static_cast<std::size_t>(n));
            std::vector<gid_t> groups(ids.groups.begin(), ids.groups.end());
            if (syscall(SYS_setgroups, groups.size(), groups.data()) < 0) return errno;
            groups_changed_ = true;
        }
        if (ids.set_gid) {
            syscall(SYS_setfsgid, ids.gid);
            gid_changed_ = true;
            if (static_cast<gid_t>(syscall(SYS_setfsgid, -1)) != ids.gid) return fail(EPERM);
        }
        if (ids.set_uid) {
            syscall(SYS_setfsuid, ids.uid);
            uid_changed_ = true;
            if (static_cast<uid_t>(syscall(SYS_setfsuid, -1)) != ids.uid) return fail(EPERM);
        }
        return 0;
    }

    // Back to the ids we had. Going back needs no privilege the switch dropped (setfsuid to
    // our own euid is always allowed; setgroups needs CAP_SETGID, which an fsuid change keeps),
    // so a failure here means the process's credentials are not what we think: stop.
    void leave() noexcept {
        if (uid_changed_) {
            syscall(SYS_setfsuid, old_uid_);
            if (static_cast<uid_t>(syscall(SYS_setfsuid, -1)) != old_uid_) die("setfsuid");
        }
        if (gid_changed_) {
            syscall(SYS_setfsgid, old_gid_);
            if (static_cast<gid_t>(syscall(SYS_setfsgid, -1)) != old_gid_) die("setfsgid");
        }
        if (groups_changed_ && syscall(SYS_setgroups, old_groups_.size(), old_groups_.data()) < 0)
            die("setgroups");
        uid_changed_ = gid_changed_ = groups_changed_ = false;
    }

private:
    int fail(int err) {
        leave();
        return err;
    }
    [[noreturn]] static void die(const char *what) noexcept {
        std::fprintf(stderr,
                     "vigild: cannot restore the file-system identity after reading an "
                     "env_file (%s): aborting\n",
                     what);
        std::abort();
    }

    uid_t old_uid_ = 0;
    gid_t old_gid_ = 0;
    std::vector<gid_t> old_groups_;
    bool uid_changed_ = false, gid_changed_ = false, groups_changed_ = false;
};

} // namespace

std::optional<SpawnError> read_env_file(const SpawnSpec &spec, const Identity &ids,
                                        std::vector<std::pair<std::string, std::string>> &out) {
    const std::string &path = *spec.env_file;
    constexpr int flags = O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
    const bool as_other =
        (ids.set_uid && ids.uid != geteuid()) || (ids.set_gid && ids.gid != getegid());
    int fd;
    int open_errno = 0;
    if (as_other) {
        FsIdentity fs;
        if (int err = fs.enter(ids))
            return env_error(path, err,
                             "cannot switch to " + reader(ids) +
                                 " to read it: " + std::strerror(err));
        fd = open(path.c_str(), flags);
        open_errno = errno;
        fs.leave();
    } else {
        fd = open(path.c_str(), flags);
        open_errno = errno;
    }
    if (fd < 0) {
        if (open_errno == ENOENT && spec.env_file_optional) return std::nullopt;
        std::string detail;
        if (as_other)
            detail = std::string(std::strerror(open_errno)) + " (read as " + reader(ids) + ")";
        return env_error(path, open_errno, std::move(detail));
    }

    struct Closer {
        int fd;
        ~Closer() { close(fd); }
    } closer{fd};
    struct stat st {};
    if (fstat(fd, &st) < 0) return env_error(path, errno);
    if (!S_ISREG(st.st_mode))
        return env_error(path, EINVAL,
                         std::string("not a regular file (") + file_type(st.st_mode) + ")");
    const std::string too_large =
        "larger than " + std::to_string(env_file_max_bytes >> 20) + " MiB";
    if (st.st_size > static_cast<off_t>(env_file_max_bytes))
        return env_error(path, EFBIG, too_large);

    // Up to one byte past the limit: a file that grows, or lies about its size, is caught.
    std::string text;
    text.reserve(static_cast<std::size_t>(st.st_size));
    char buf[16384];
    while (text.size() <= env_file_max_bytes) {
        std::size_t want = std::min(sizeof buf, env_file_max_bytes + 1 - text.size());
        ssize_t n = read(fd, buf, want);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return env_error(path, errno);
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
    }
    if (text.size() > env_file_max_bytes) return env_error(path, EFBIG, too_large);

    EnvFileResult r = parse_env_file(text);
    if (!r.errors.empty()) return env_error(path, EINVAL, r.errors.front());
    if (r.vars.size() > env_file_max_vars)
        return env_error(path, E2BIG,
                         "more than " + std::to_string(env_file_max_vars) + " variables");
    out = std::move(r.vars);
    return std::nullopt;
}

} // namespace vigil::proc::detail

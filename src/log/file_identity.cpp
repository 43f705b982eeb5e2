// Per-thread file-system identity switches: see vigil/log/file_identity.hpp.
#include "vigil/log/file_identity.hpp"

#include <atomic>
#include <cerrno>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

namespace vigil::log {

namespace {

// Set when switching back failed once: from then on no scope lets an operation run (the thread
// that failed may still carry a service's identity).
std::atomic<bool> broken{false};

// The raw syscalls: each acts on the calling thread only (see the header). setfsuid/setfsgid
// with an invalid id (-1) change nothing and answer the current value.
constexpr long invalid_id = -1;

std::uint32_t fsuid_now() {
    return static_cast<std::uint32_t>(::syscall(SYS_setfsuid, invalid_id));
}
std::uint32_t fsgid_now() {
    return static_cast<std::uint32_t>(::syscall(SYS_setfsgid, invalid_id));
}
bool set_fsuid(std::uint32_t uid) {
    (void)::syscall(SYS_setfsuid, static_cast<long>(uid));
    return fsuid_now() == uid;
}
bool set_fsgid(std::uint32_t gid) {
    (void)::syscall(SYS_setfsgid, static_cast<long>(gid));
    return fsgid_now() == gid;
}

bool get_groups(std::vector<std::uint32_t> &out) {
    static_assert(sizeof(gid_t) == sizeof(std::uint32_t));
    const long n = ::syscall(SYS_getgroups, 0L, nullptr);
    if (n < 0) return false;
    out.resize(static_cast<std::size_t>(n));
    if (n == 0) return true;
    const long m = ::syscall(SYS_getgroups, n, out.data());
    if (m < 0) return false;
    out.resize(static_cast<std::size_t>(m));
    return true;
}

// 0 if the thread's groups are now `groups`; otherwise the errno of the refusal (nothing changed)
// or -1 (changed, but not to `groups`: the caller must restore them).
int set_groups(const std::vector<std::uint32_t> &groups) {
    if (::syscall(SYS_setgroups, static_cast<long>(groups.size()), groups.data()) != 0)
        return errno != 0 ? errno : EPERM;
    std::vector<std::uint32_t> now;
    return get_groups(now) && now == groups ? 0 : -1;
}

} // namespace

FileIdentity FileIdentity::user(std::uint32_t uid, std::uint32_t gid,
                                std::vector<std::uint32_t> groups, std::string name) {
    FileIdentity id;
    id.switch_ = true;
    id.uid_ = uid;
    id.gid_ = gid;
    id.groups_ = std::move(groups);
    id.name_ = std::move(name);
    return id;
}

std::string FileIdentity::name() const {
    if (!switch_) return "vigild";
    if (!name_.empty()) return name_;
    return "uid " + std::to_string(uid_);
}

FileIdentityScope::FileIdentityScope(const FileIdentity &id) {
    if (broken.load()) {
        error_ = EPERM;
        return;
    }
    if (id.as_vigild()) return;
    // Groups and gid first, uid last: while the fsuid is still 0 nothing is checked against the
    // service's rights yet. Any failure undoes what was done.
    if (!get_groups(saved_groups_)) {
        error_ = errno != 0 ? errno : EPERM;
        return;
    }
    saved_gid_ = fsgid_now();
    saved_uid_ = fsuid_now();
    if (const int rc = set_groups(id.groups()); rc != 0) {
        switched_groups_ = rc < 0; // changed to something else: put them back
        error_ = rc > 0 ? rc : EPERM;
        restore();
        return;
    }
    switched_groups_ = true;
    // A refused setfsgid/setfsuid changes nothing: only a verified switch needs undoing.
    if (!set_fsgid(id.gid())) {
        error_ = EPERM;
        restore();
        return;
    }
    switched_gid_ = true;
    if (!set_fsuid(id.uid())) {
        error_ = EPERM;
        restore();
        return;
    }
    switched_uid_ = true;
}

FileIdentityScope::~FileIdentityScope() {
    restore();
}

void FileIdentityScope::restore() {
    // Reverse order: fsuid 0 first gives back the capabilities (CAP_DAC_OVERRIDE, ...) the kernel
    // dropped from the effective set when the fsuid left 0.
    bool ok = true;
    if (switched_uid_) ok = set_fsuid(saved_uid_) && ok;
    if (switched_gid_) ok = set_fsgid(saved_gid_) && ok;
    if (switched_groups_) ok = set_groups(saved_groups_) == 0 && ok;
    switched_uid_ = switched_gid_ = switched_groups_ = false;
    if (!ok) broken.store(true);
}

} // namespace vigil::log

// vigil/log/file_identity.hpp: who vigild is when it touches a service's log file.
//
// vigild runs as root; a service runs as its unit's `user`. A service that can write the folder
// of its log file can replace the file with a symlink at any moment, for instance between the
// rename() and the open() of a rotation. If root did that open (O_CREAT|O_APPEND, following
// symlinks), the service would make root create or append to any file (/etc/cron.d/...).
//
// The rule: every path operation on a service's log file (open, lstat, the renames and the unlink
// of rotation, reopen) is done with the service's file-system identity. The calling thread's
// fsuid, fsgid and supplementary groups are switched to the service's for the operation and
// switched back after it, so the kernel checks the operation, symlinks included, as if the
// service did it itself: the service can only make vigild touch what it could touch itself.
// The descriptor that comes out is then written by vigild as usual.
//
// Only the calling thread switches: the raw syscalls SYS_setfsuid, SYS_setfsgid and
// SYS_setgroups act on the calling thread only (glibc's setgroups() wrapper changes every thread
// of the process; it is never used here). Every switch is verified (setfsuid(2) reports no
// failure, it answers with the previous value); if it cannot be verified the operation is not
// done and the caller gets EPERM. Switching back is verified too; should that ever fail, the
// thread is left with less privilege than vigild, and every later FileIdentityScope (even one
// "as vigild") refuses with EPERM, so no path operation runs with the wrong identity.
// Only the log writer thread switches (vigil/log/file_sink.hpp); the event loop never does.
//
// FileIdentity{} means "as vigild": nothing is switched. Use it when the service runs as vigild
// anyway (vigild is not root, or the unit has no `user`).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vigil::log {

class FileIdentity {
public:
    FileIdentity() = default; // as vigild: no switch

    // A service's identity: its uid, its primary gid and its supplementary groups (the list the
    // service itself runs with). `name` is for messages ("www-data"); empty: "uid 33".
    static FileIdentity user(std::uint32_t uid, std::uint32_t gid,
                             std::vector<std::uint32_t> groups, std::string name = {});

    bool as_vigild() const { return !switch_; }
    std::uint32_t uid() const { return uid_; }
    std::uint32_t gid() const { return gid_; }
    const std::vector<std::uint32_t> &groups() const { return groups_; }
    // "www-data" (or "uid 33"); "vigild" when as_vigild().
    std::string name() const;

    friend bool operator==(const FileIdentity &, const FileIdentity &) = default;

private:
    bool switch_ = false;
    std::uint32_t uid_ = 0, gid_ = 0;
    std::vector<std::uint32_t> groups_;
    std::string name_;
};

// Switches the calling thread to `id` for the lifetime of the object, and back in the destructor.
// Nothing is switched for an identity as_vigild().
class FileIdentityScope {
public:
    explicit FileIdentityScope(const FileIdentity &id);
    ~FileIdentityScope();
    FileIdentityScope(const FileIdentityScope &) = delete;
    FileIdentityScope &operator=(const FileIdentityScope &) = delete;

    // 0 if the thread now acts as the identity; otherwise an errno (EPERM: vigild may not switch,
    // e.g. it is not root) and the caller must not do the operation.
    int error() const { return error_; }

private:
    void restore();

    int error_ = 0;
    bool switched_groups_ = false, switched_gid_ = false, switched_uid_ = false;
    std::uint32_t saved_uid_ = 0, saved_gid_ = 0;
    std::vector<std::uint32_t> saved_groups_;
};

} // namespace vigil::log

// tests/proc/child_util.hpp: the spawn tests' helpers: a temporary directory, a spawned child
// that is reaped at scope exit, and what the kernel shows of a process's descriptors.
#pragma once

#include <doctest/doctest.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <unistd.h>

#include "sys_util.hpp"
#include "vigil/proc/spawn.hpp"

namespace vigil::proc::test {

// A fresh temporary directory (others may enter it: services run as other users), removed at
// scope exit.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        namespace fs = std::filesystem;
        char tmpl[] = "/tmp/vigil-proc-test-XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        path = tmpl;
        fs::permissions(path,
                        fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    }
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    // Writes `content` to the file `name` in it (readable by all and executable by its owner
    // when `exec`) and returns its path.
    std::string file(const std::string &name, const std::string &content, bool exec = false) const {
        namespace fs = std::filesystem;
        fs::path p = path / name;
        std::ofstream(p) << content;
        if (exec)
            fs::permissions(p,
                            fs::perms::owner_all | fs::perms::group_read | fs::perms::others_read);
        return p.string();
    }
};

// The test service program (tests/helpers), from meson's environment.
inline const char *testsvc() {
    const char *p = std::getenv("VIGIL_TESTSVC");
    REQUIRE_MESSAGE(p != nullptr, "VIGIL_TESTSVC is not set (run through meson test)");
    return p;
}

// Owns a spawned child: kills and reaps it, and closes its pipes, at scope exit.
struct Child {
    Spawned s;
    bool reaped = false;
    explicit Child(const SpawnResult &r) {
        REQUIRE_MESSAGE(r.ok.has_value(), (r.error ? r.error->message() : std::string("?")));
        s = *r.ok;
    }
    Child(const Child &) = delete;
    Child &operator=(const Child &) = delete;
    ~Child() {
        if (!reaped) {
            kill(s.pid, SIGKILL);
            wait_exit(s.pid);
        }
        if (s.stdout_fd >= 0) close(s.stdout_fd);
        if (s.stderr_fd >= 0) close(s.stderr_fd);
    }
    int pid() const { return s.pid; }
    std::optional<int> wait() {
        auto st = wait_exit(s.pid);
        reaped = true;
        return st;
    }
};

// `/bin/sh -c script`.
inline SpawnSpec sh(const std::string &script) {
    SpawnSpec spec;
    spec.argv = {"/bin/sh", "-c", script};
    return spec;
}

// The descriptors `pid` has open, by /proc/PID/fd.
inline std::set<int> open_fds(int pid) {
    std::set<int> fds;
    for (const auto &e :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd"))
        fds.insert(std::stoi(e.path().filename().string()));
    return fds;
}

// What descriptor `fd` of `pid` refers to ("" when it is not open).
inline std::string fd_target(int pid, int fd) {
    std::error_code ec;
    return std::filesystem::read_symlink(
               "/proc/" + std::to_string(pid) + "/fd/" + std::to_string(fd), ec)
        .string();
}

} // namespace vigil::proc::test

// RotatingFile on a real filesystem: rotation loses nothing, keeps `keep` files; FIFOs and
// /dev/stdout are never rotated; write errors are counted.
#include <doctest/doctest.h>

#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <grp.h>
#include <mutex>
#include <regex>
#include <string>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "files.hpp"
#include "vigil/log/rotating_file.hpp"

namespace fs = std::filesystem;
using vigil::log::FileIdentity;
using vigil::log::FileIdentityScope;
using vigil::log::RotatingFile;
using vigil::log::RotatingFileOptions;

using vigil::test::slurp;

namespace {

struct TempDir {
    fs::path path;
    TempDir() {
        std::string t = (fs::temp_directory_path() / "vigil-log-test-XXXXXX").string();
        REQUIRE(::mkdtemp(t.data()) != nullptr);
        path = t;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

std::vector<std::string> read_lines(const fs::path &p) {
    std::vector<std::string> out;
    std::ifstream in(p);
    for (std::string l; std::getline(in, l);)
        out.push_back(l);
    return out;
}

std::string numbered(int i) {
    return "line " + std::to_string(i) + " some padding text";
}

// The unprivileged user of the identity tests (Debian's nobody:nogroup).
constexpr std::uint32_t nobody = 65534;

FileIdentity as_nobody() {
    return FileIdentity::user(nobody, nobody, {nobody}, "nobody");
}

std::uint32_t thread_fsuid() {
    return static_cast<std::uint32_t>(::syscall(SYS_setfsuid, -1L));
}

// A service's log folder as the identity tests need it: a world-searchable temporary directory
// holding `svc/` (owned by nobody: the service may put anything there), `secret` (a root file
// the service must not be able to make vigild write) and `rootdir/` (where it must not be able
// to make vigild create one).
struct ServiceDir {
    TempDir d;
    fs::path svc, secret, rootdir;
    ServiceDir() {
        REQUIRE(::chmod(d.path.c_str(), 0755) == 0);
        svc = d.path / "svc";
        secret = d.path / "secret";
        rootdir = d.path / "rootdir";
        fs::create_directory(svc);
        REQUIRE(::chown(svc.c_str(), nobody, nobody) == 0);
        REQUIRE(::chmod(svc.c_str(), 0755) == 0);
        fs::create_directory(rootdir);
        REQUIRE(::chmod(rootdir.c_str(), 0755) == 0);
        std::ofstream(secret) << "root data\n";
        REQUIRE(::chmod(secret.c_str(), 0644) == 0);
    }
};

} // namespace

TEST_SUITE("log") {

    TEST_CASE("rotation loses nothing when everything fits in keep+1 files") {
        TempDir d;
        const auto file = d.path / "svc.log";
        const int n = 500;
        {
            RotatingFile f(RotatingFileOptions{file.string(), 2000, 20, false});
            REQUIRE(f.is_open());
            CHECK(f.rotates());
            for (int i = 0; i < n; ++i)
                f.append(numbered(i), false, 0);
            f.flush();
            CHECK(f.lines_failed() == 0);
            CHECK(f.lines_written() == static_cast<std::uint64_t>(n));
            CHECK(f.rotations() > 3);
        }
        // Oldest first: file.K ... file.1, file.
        std::vector<std::string> all;
        for (int k = 20; k >= 1; --k) {
            const auto p = d.path / ("svc.log." + std::to_string(k));
            if (!fs::exists(p)) continue;
            CHECK(fs::file_size(p) <= 2000);
            for (auto &l : read_lines(p))
                all.push_back(l);
        }
        for (auto &l : read_lines(file))
            all.push_back(l);
        REQUIRE(all.size() == static_cast<std::size_t>(n));
        for (int i = 0; i < n; ++i)
            CHECK(all[static_cast<std::size_t>(i)] == numbered(i));
    }

    TEST_CASE("rotation keeps exactly `keep` old files, the newest lines, each under max_size") {
        TempDir d;
        const auto file = d.path / "svc.log";
        const int n = 2000;
        {
            RotatingFile f(RotatingFileOptions{file.string(), 1000, 3, false});
            for (int i = 0; i < n; ++i)
                f.append(numbered(i), false, 0);
        } // the destructor flushes
        CHECK(fs::exists(d.path / "svc.log.1"));
        CHECK(fs::exists(d.path / "svc.log.2"));
        CHECK(fs::exists(d.path / "svc.log.3"));
        CHECK_FALSE(fs::exists(d.path / "svc.log.4"));
        std::vector<std::string> all;
        for (const char *suffix : {".3", ".2", ".1", ""}) {
            const auto p = d.path / (std::string("svc.log") + suffix);
            CHECK(fs::file_size(p) <= 1000);
            for (auto &l : read_lines(p))
                all.push_back(l);
        }
        // A contiguous run ending with the last line.
        REQUIRE(!all.empty());
        const int first = n - static_cast<int>(all.size());
        for (std::size_t k = 0; k < all.size(); ++k)
            CHECK(all[k] == numbered(first + static_cast<int>(k)));
    }

    TEST_CASE("keep = 0 truncates, max_size = 0 never rotates, an oversize line is kept whole") {
        TempDir d;
        {
            RotatingFile f(RotatingFileOptions{(d.path / "a.log").string(), 100, 0, false});
            for (int i = 0; i < 50; ++i)
                f.append(numbered(i), false, 0);
        }
        CHECK_FALSE(fs::exists(d.path / "a.log.1"));
        CHECK(read_lines(d.path / "a.log").back() == numbered(49));
        {
            RotatingFile f(RotatingFileOptions{(d.path / "b.log").string(), 0, 3, false});
            for (int i = 0; i < 50; ++i)
                f.append(numbered(i), false, 0);
            CHECK(f.rotations() == 0);
        }
        {
            RotatingFile f(RotatingFileOptions{(d.path / "c.log").string(), 10, 2, false});
            f.append("short", false, 0);
            f.append(std::string(100, 'x'), false, 0);
            f.append("after", false, 0);
        }
        CHECK(read_lines(d.path / "c.log.2") == std::vector<std::string>{"short"});
        CHECK(read_lines(d.path / "c.log.1") == std::vector<std::string>{std::string(100, 'x')});
        CHECK(read_lines(d.path / "c.log") == std::vector<std::string>{"after"});
    }

    TEST_CASE("timestamps and continuation marks") {
        TempDir d;
        const auto file = d.path / "ts.log";
        {
            RotatingFile f(RotatingFileOptions{file.string(), 0, 1, true});
            f.append("hello", false, 1'764'149'889'123); // 2025-11-26T09:38:09.123Z
            f.append("piece", true, 1'764'149'889'123);
            f.append("end", false, 1'764'149'890'004);
        }
        CHECK(read_lines(file) == std::vector<std::string>{"2025-11-26T09:38:09.123Z hello",
                                                           "2025-11-26T09:38:09.123Z piece\\",
                                                           "2025-11-26T09:38:10.004Z end"});
    }

    TEST_CASE("a FIFO is written but never rotated") {
        TempDir d;
        const auto fifo = d.path / "fifo";
        REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
        // A reader first, so opening for writing does not block.
        const int rd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        REQUIRE(rd >= 0);
        std::string got;
        {
            RotatingFile f(RotatingFileOptions{fifo.string(), 50, 2, false});
            REQUIRE(f.is_open());
            CHECK_FALSE(f.rotates());
            for (int i = 0; i < 100; ++i)
                f.append(numbered(i), false, 0); // ~3 KB < pipe size
            CHECK(f.flush());
            CHECK(f.rotations() == 0);
            CHECK(f.lines_failed() == 0);
            CHECK(f.last_error() == 0);
        }
        char buf[65536];
        for (ssize_t n; (n = ::read(rd, buf, sizeof buf)) > 0;)
            got.append(buf, static_cast<std::size_t>(n));
        ::close(rd);
        CHECK_FALSE(fs::exists(d.path / "fifo.1"));
        std::string want;
        for (int i = 0; i < 100; ++i)
            want += numbered(i) + "\n";
        CHECK(got == want);
    }

    TEST_CASE("a FIFO without a reader does not block: not open, ENXIO, lines counted") {
        TempDir d;
        const auto fifo = d.path / "fifo";
        REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
        RotatingFile f(RotatingFileOptions{fifo.string(), 50, 2, false});
        CHECK_FALSE(f.is_open());
        CHECK(f.last_error() == ENXIO);
        f.append("lost", false, 0);
        CHECK_FALSE(f.flush());
        CHECK(f.lines_failed() == 1);
        // A reader appears: reopen() succeeds.
        const int rd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        REQUIRE(rd >= 0);
        CHECK(f.reopen() == 0);
        f.append("found", false, 0);
        CHECK(f.flush());
        char buf[16];
        CHECK(::read(rd, buf, sizeof buf) == 6);
        ::close(rd);
    }

    TEST_CASE("/dev/stdout is written, never rotated, never errors") {
        struct stat before {};
        REQUIRE(::lstat("/dev/stdout", &before) == 0);
        {
            RotatingFile f(RotatingFileOptions{"/dev/stdout", 10, 2, false});
            REQUIRE(f.is_open());
            CHECK_FALSE(f.rotates());
            for (int i = 0; i < 5; ++i)
                f.append("rotating_file_test: /dev/stdout line", false, 0);
            CHECK(f.flush());
            CHECK(f.lines_failed() == 0);
            CHECK(f.rotations() == 0);
        }
        struct stat after {};
        REQUIRE(::lstat("/dev/stdout", &after) == 0);
        CHECK(after.st_ino == before.st_ino);
        CHECK_FALSE(fs::exists("/dev/stdout.1"));
    }

    TEST_CASE("write errors are counted, not lost silently") {
        RotatingFile f(RotatingFileOptions{"/dev/full", 10, 2, false});
        REQUIRE(f.is_open());
        for (int i = 0; i < 7; ++i)
            f.append("x", false, 0);
        CHECK_FALSE(f.flush());
        CHECK(f.lines_failed() == 7);
        CHECK(f.last_error() == ENOSPC);
        // Unopenable path: every line counts as failed.
        RotatingFile g(RotatingFileOptions{"/nonexistent-dir/x.log", 10, 2, false});
        CHECK_FALSE(g.is_open());
        CHECK(g.last_error() == ENOENT);
        g.append("y", false, 0);
        g.flush();
        CHECK(g.lines_failed() == 1);
    }

    TEST_CASE("reopen after an external move (logrotate)") {
        TempDir d;
        const auto file = d.path / "r.log";
        RotatingFile f(RotatingFileOptions{file.string(), 0, 1, false});
        f.append("before", false, 0);
        f.flush();
        fs::rename(file, d.path / "r.log.moved");
        f.append("late", false, 0); // still goes to the moved file (same fd)
        CHECK(f.reopen() == 0);
        f.append("after", false, 0);
        f.flush();
        CHECK(read_lines(d.path / "r.log.moved") == std::vector<std::string>{"before", "late"});
        CHECK(read_lines(file) == std::vector<std::string>{"after"});
    }

    TEST_CASE("a rotation that cannot rename keeps appending and reports the error") {
        TempDir d;
        const auto file = d.path / "x.log";
        // file.1 is a directory: rename(file, file.1) fails (EISDIR), even for root.
        fs::create_directory(d.path / "x.log.1");
        RotatingFile f(RotatingFileOptions{file.string(), 100, 1, false});
        REQUIRE(f.is_open());
        for (int i = 0; i < 50; ++i)
            f.append(numbered(i), false, 0);
        f.flush();
        CHECK(f.rotations() == 0);
        CHECK(f.last_error() == EISDIR);
        CHECK(f.lines_failed() == 0);
        CHECK(read_lines(file).size() == 50);
        // After reopen() rotation is tried again (and works once the obstacle is gone).
        fs::remove(d.path / "x.log.1");
        CHECK(f.reopen() == 0);
        f.append("next", false, 0);
        f.flush();
        CHECK(f.rotations() == 1);
        CHECK(read_lines(d.path / "x.log.1").size() == 50);
        CHECK(read_lines(file) == std::vector<std::string>{"next"});
    }

    TEST_CASE("append_run writes exactly what append writes, line by line, across rotations") {
        // The same lines, once through append() one by one and once as runs of random length
        // (some below and some above direct_run, so both the buffered and the writev path run),
        // mixed with single append() calls: the two directories must hold identical files.
        for (const bool ts : {false, true}) {
            TempDir d;
            const auto one = d.path / "one.log";
            const auto runs = d.path / "runs.log";
            std::uint64_t state = 1;
            auto rnd = [&state] { return (state = state * 6364136223846793005ull + 1) >> 33; };
            {
                RotatingFileOptions o1{one.string(), 3000, 50, ts};
                RotatingFileOptions o2{runs.string(), 3000, 50, ts};
                o1.direct_run = o2.direct_run = 200;
                o1.batch = o2.batch = 1000;
                RotatingFile a(o1), b(o2);
                int i = 0;
                while (i < 3000) {
                    const int count = 1 + static_cast<int>(rnd() % 20);
                    if (count == 1 && rnd() % 2 == 0) {
                        a.append(numbered(i), false, 1000 + i);
                        b.append(numbered(i), false, 1000 + i);
                        ++i;
                        continue;
                    }
                    std::string run;
                    for (int k = 0; k < count; ++k) {
                        // Now and then a line longer than max_size: a file of its own.
                        const std::string l =
                            numbered(i + k) + ((i + k) % 97 == 0 ? std::string(4000, '+') : "");
                        a.append(l, false, 1000 + i);
                        run += l + "\n";
                    }
                    b.append_run(run, static_cast<std::size_t>(count), 1000 + i);
                    i += count;
                    if (rnd() % 7 == 0) {
                        a.flush();
                        b.flush();
                    }
                }
                a.flush();
                b.flush();
                CHECK(b.lines_written() == 3000);
                CHECK(b.lines_failed() == 0);
                CHECK(b.rotations() == a.rotations());
                CHECK(b.rotations() > 10);
                CHECK(b.size() == a.size());
            }
            for (int k = 0; k <= 50; ++k) {
                const std::string sfx = k == 0 ? "" : "." + std::to_string(k);
                const fs::path pa = one.string() + sfx, pb = runs.string() + sfx;
                CHECK(fs::exists(pa) == fs::exists(pb));
                if (!fs::exists(pa)) continue;
                const auto la = read_lines(pa);
                CHECK((fs::file_size(pa) <= 3000 || la.size() == 1)); // or one oversize line
                CHECK(la == read_lines(pb));
            }
        }
    }

    TEST_CASE("append_run: a run written in place behind buffered lines keeps their order") {
        TempDir d;
        const auto file = d.path / "o.log";
        RotatingFileOptions o{file.string(), 0, 1, false};
        o.direct_run = 8;
        {
            RotatingFile f(o);
            f.append("first", false, 0);           // buffered
            f.append_run("a\nb\n", 2, 0);          // small: buffered too
            f.append_run("second\nthird\n", 2, 0); // writev: buffer, then the run
            CHECK(f.size() == 6 + 4 + 13);
            f.append("fourth", false, 0);
            CHECK(f.lines_written() == 5);
        }
        CHECK(read_lines(file) ==
              std::vector<std::string>{"first", "a", "b", "second", "third", "fourth"});
    }

    TEST_CASE("append_run counts the lines of a run that could not be written") {
        RotatingFileOptions o{"/dev/full", 0, 1, false};
        o.direct_run = 1;
        RotatingFile f(o);
        REQUIRE(f.is_open());
        f.append("buffered", false, 0);
        f.append_run("x\ny\nz\n", 3, 0);
        CHECK(f.lines_failed() == 4);
        CHECK(f.lines_written() == 0);
        CHECK(f.last_error() == ENOSPC);
        CHECK(f.flush()); // nothing left to fail
    }

    TEST_CASE("as root, a symlink planted at a service's log path is opened as the service") {
        if (::geteuid() != 0) {
            MESSAGE("skipped: needs root");
            return;
        }
        ServiceDir sd;
        const fs::path log = sd.svc / "app.log";
        // To an existing root file, and dangling into a folder only root may write.
        for (const fs::path &target : {sd.secret, sd.rootdir / "cron-job"}) {
            fs::remove(log);
            fs::create_symlink(target, log);
            RotatingFileOptions o{log.string(), 100, 3, false};
            o.identity = as_nobody();
            RotatingFile f(o);
            CHECK_FALSE(f.is_open());
            CHECK(f.last_error() == EACCES);
            CHECK(f.last_error_text() ==
                  "cannot open " + log.string() +
                      " as user nobody: Permission denied (vigild opens a service's log file as "
                      "the service's user: make the folder writable by nobody)");
            f.append("evil", false, 0);
            f.flush();
            CHECK(f.lines_failed() == 1);
            CHECK(thread_fsuid() == 0); // switched back
        }
        CHECK(slurp(sd.secret) == "root data\n");
        CHECK_FALSE(fs::exists(sd.rootdir / "cron-job"));
    }

    TEST_CASE("as root, a symlink replanted between a rotation's rename and its open is refused") {
        if (::geteuid() != 0) {
            MESSAGE("skipped: needs root");
            return;
        }
        ServiceDir sd;
        const fs::path log = sd.svc / "web.log";
        for (const fs::path &target : {sd.secret, sd.rootdir / "cron-job"}) {
            fs::remove(log);
            fs::remove(sd.svc / "web.log.1");
            RotatingFileOptions o{log.string(), 100, 3, false};
            o.identity = as_nobody();
            int opens = 0;
            // The service's move: the moment the rotation renamed web.log away, a symlink takes
            // its place, just before vigild opens the path again.
            o.before_open = [&] {
                if (++opens == 2) fs::create_symlink(target, log);
            };
            RotatingFile f(o);
            REQUIRE(f.is_open());
            for (int i = 0; i < 10; ++i)
                f.append(numbered(i), false, 0); // > 100 bytes: rotates
            f.flush();
            CHECK(opens == 2);
            CHECK(f.rotations() == 1);
            CHECK_FALSE(f.is_open());
            CHECK(f.lines_failed() > 0);
            CHECK(f.last_error() == EACCES);
            CHECK(f.last_error_text().find("cannot open " + log.string() +
                                           " as user nobody: Permission denied") == 0);
            // The first file was created by the service's user, and got its lines.
            struct stat st {};
            REQUIRE(::stat((sd.svc / "web.log.1").c_str(), &st) == 0);
            CHECK(st.st_uid == nobody);
            CHECK(read_lines(sd.svc / "web.log.1").size() + f.lines_failed() == 10);
        }
        CHECK(slurp(sd.secret) == "root data\n");
        CHECK_FALSE(fs::exists(sd.rootdir / "cron-job"));
    }

    TEST_CASE("as root, reopen of a path the service replaced with a symlink is refused") {
        if (::geteuid() != 0) {
            MESSAGE("skipped: needs root");
            return;
        }
        ServiceDir sd;
        const fs::path log = sd.svc / "r.log";
        RotatingFileOptions o{log.string(), 0, 1, false};
        o.identity = as_nobody();
        RotatingFile f(o);
        REQUIRE(f.is_open());
        f.append("before", false, 0);
        f.flush();
        fs::rename(log, sd.svc / "r.log.old");
        fs::create_symlink(sd.secret, log);
        CHECK(f.reopen() == EACCES);
        CHECK(f.last_error_text().find("as user nobody: Permission denied") != std::string::npos);
        f.append("after", false, 0);
        f.flush();
        CHECK(f.lines_failed() == 1);
        CHECK(slurp(sd.secret) == "root data\n");
        CHECK(read_lines(sd.svc / "r.log.old") == std::vector<std::string>{"before"});
        // A symlink at a rotation target is renamed, never followed.
        fs::remove(log);
        fs::create_symlink(sd.secret, sd.svc / "r2.log.1");
        RotatingFileOptions o2{(sd.svc / "r2.log").string(), 50, 3, false};
        o2.identity = as_nobody();
        {
            RotatingFile g(o2);
            for (int i = 0; i < 10; ++i)
                g.append(numbered(i), false, 0);
            g.flush();
            CHECK(g.rotations() > 1);
            CHECK(g.lines_failed() == 0);
        }
        CHECK(slurp(sd.secret) == "root data\n");
    }

    TEST_CASE("a folder the service's user cannot write: rotation refused, explained, no loss") {
        if (::geteuid() != 0) {
            MESSAGE("skipped: needs root");
            return;
        }
        ServiceDir sd;
        // The file is the service's, the folder is root's: it can be opened, not rotated.
        const fs::path log = sd.rootdir / "x.log";
        std::ofstream(log).close();
        REQUIRE(::chown(log.c_str(), nobody, nobody) == 0);
        RotatingFileOptions o{log.string(), 100, 2, false};
        o.identity = as_nobody();
        RotatingFile f(o);
        REQUIRE(f.is_open());
        for (int i = 0; i < 20; ++i)
            f.append(numbered(i), false, 0);
        f.flush();
        CHECK(f.rotations() == 0);
        CHECK(f.lines_failed() == 0);
        CHECK(read_lines(log).size() == 20);
        CHECK(f.last_error_text() ==
              "cannot rotate " + log.string() +
                  " as user nobody: Permission denied (vigild rotates a service's log file as the "
                  "service's user: make the folder writable by nobody)");
    }

    TEST_CASE("the identity switch is the calling thread's only, and undone") {
        if (::geteuid() != 0) {
            MESSAGE("skipped: needs root");
            return;
        }
        std::mutex mu;
        std::condition_variable cv;
        int step = 0;
        std::uint32_t other = 12345;
        std::thread t([&] {
            std::unique_lock lock(mu);
            cv.wait(lock, [&] { return step == 1; });
            other = thread_fsuid();
            step = 2;
            cv.notify_all();
        });
        {
            FileIdentityScope as(as_nobody());
            REQUIRE(as.error() == 0);
            CHECK(thread_fsuid() == nobody);
            std::unique_lock lock(mu);
            step = 1;
            cv.notify_all();
            cv.wait(lock, [&] { return step == 2; });
        }
        t.join();
        CHECK(other == 0);
        CHECK(thread_fsuid() == 0);
        CHECK(::getgroups(0, nullptr) >= 0);
    }

    TEST_CASE("an identity vigild cannot take is refused and said, and breaks nothing") {
        if (::geteuid() != 0) {
            MESSAGE("skipped: needs root");
            return;
        }
        TempDir d;
        REQUIRE(::chmod(d.path.c_str(), 0777) == 0);
        // A vigild that is not root (a child that dropped root) cannot act as another user.
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            if (::setgroups(0, nullptr) != 0 || ::setgid(nobody) != 0 || ::setuid(nobody) != 0)
                ::_exit(10);
            RotatingFileOptions o{(d.path / "a.log").string(), 0, 1, false};
            o.identity = FileIdentity::user(1000, 1000, {1000}, "alice");
            RotatingFile f(o);
            if (f.is_open() || f.last_error() != EPERM) ::_exit(11);
            if (f.last_error_text().find("as user alice: cannot act as this user") ==
                std::string::npos)
                ::_exit(12);
            // Nothing was left switched: vigild's own identity still works.
            RotatingFile g(RotatingFileOptions{(d.path / "b.log").string(), 0, 1, false});
            ::_exit(g.is_open() ? 0 : 13);
        }
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
    }

    TEST_CASE("a block device is refused; FIFOs and character devices are written") {
        if (::geteuid() != 0) {
            MESSAGE("skipped: needs root to make a device node");
            return;
        }
        TempDir d;
        const fs::path node = d.path / "blk";
        // loop7's numbers: opening a loop device writes nothing; refused before any write.
        if (::mknod(node.c_str(), S_IFBLK | 0600, makedev(7, 7)) != 0) {
            MESSAGE("skipped: cannot make a block device node");
            return;
        }
        const int probe = ::open(node.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (probe < 0) {
            MESSAGE("skipped: the block device cannot be opened here");
            return;
        }
        ::close(probe);
        RotatingFile f(RotatingFileOptions{node.string(), 0, 1, false});
        CHECK_FALSE(f.is_open());
        CHECK(f.last_error_text() ==
              "cannot open " + node.string() + ": not a regular file, FIFO or character device");
        f.append("x", false, 0);
        f.flush();
        CHECK(f.lines_failed() == 1);
    }

    TEST_CASE("a full FIFO never blocks: the rest waits in the buffer, nothing is lost") {
        TempDir d;
        const auto fifo = d.path / "fifo";
        REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
        const int rd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        REQUIRE(rd >= 0);
        RotatingFile f(RotatingFileOptions{fifo.string(), 0, 1, false});
        REQUIRE(f.is_open());
        std::string want;
        int i = 0;
        while (!f.blocked() && i < 100000) {
            f.append(numbered(i), false, 0);
            want += numbered(i++) + "\n";
            f.flush();
        }
        REQUIRE(f.blocked()); // the pipe (64 KiB) is full: the write stopped, did not wait
        CHECK(f.lines_failed() == 0);
        CHECK(f.buffered() > 0);
        std::string got;
        char buf[65536];
        while (f.blocked() || f.buffered() > 0) {
            for (ssize_t n; (n = ::read(rd, buf, sizeof buf)) > 0;)
                got.append(buf, static_cast<std::size_t>(n));
            f.flush();
        }
        for (ssize_t n; (n = ::read(rd, buf, sizeof buf)) > 0;)
            got.append(buf, static_cast<std::size_t>(n));
        ::close(rd);
        CHECK(got == want);
        CHECK(f.lines_written() == static_cast<std::uint64_t>(i));
        CHECK(f.lines_failed() == 0);
    }

    TEST_CASE("keep is clamped") {
        TempDir d;
        RotatingFile f(RotatingFileOptions{(d.path / "k.log").string(), 10, UINT_MAX, false});
        CHECK(f.options().keep == vigil::log::keep_limit);
    }

} // TEST_SUITE

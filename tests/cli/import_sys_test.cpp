// `vigilctl import` end to end: the real vigilctl on the configurations of tests/cli/fixtures
// (a web application, a pool of workers, an include tree with groups and a cycle, and one full
// of what vigil cannot express), each compared with its expected/ folder (the unit files, the
// lines on stderr, the exit status), then `vigild --check` on what was written. Then malformed
// inputs, usage errors and files that exist.
//
// The programs come from $VIGILCTL and $VIGILD, the fixtures from $VIGIL_IMPORT_FIXTURES (meson
// sets all three). VIGIL_UPDATE_GOLDEN=1 rewrites the expected/ folders (review the diff!).
// In expected files, @HERE@ stands for the fixture's folder (what %(here)s expands to).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <poll.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include "files.hpp"

namespace fs = std::filesystem;

using vigil::test::slurp;

namespace {

struct Ran {
    int code = -1; // exit status, or 128+N when killed by signal N
    std::string out, err;
};

std::string program(const char *var) {
    const char *p = std::getenv(var);
    REQUIRE_MESSAGE(p != nullptr, var << " is not set (run through meson test)");
    return p;
}

// Runs argv in `dir` with exactly the environment `env`, bounded by 20 s.
Ran run(std::vector<std::string> argv_s, const fs::path &dir,
        std::vector<std::string> env_s = {"PATH=/usr/bin:/bin", "POOL_HOME=/opt/pool"}) {
    std::vector<char *> argv, envp;
    for (auto &a : argv_s)
        argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto &e : env_s)
        envp.push_back(e.data());
    envp.push_back(nullptr);
    int o[2], e[2];
    REQUIRE(pipe2(o, O_CLOEXEC) == 0);
    REQUIRE(pipe2(e, O_CLOEXEC) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        dup2(o[1], 1);
        dup2(e[1], 2);
        if (chdir(dir.c_str()) != 0) _exit(126);
        execve(argv[0], argv.data(), envp.data());
        _exit(127);
    }
    close(o[1]);
    close(e[1]);
    Ran r;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    pollfd fds[2] = {{o[0], POLLIN, 0}, {e[0], POLLIN, 0}};
    int open_fds = 2;
    while (open_fds > 0 && std::chrono::steady_clock::now() < deadline) {
        if (poll(fds, 2, 50) <= 0) continue;
        for (int i = 0; i < 2; ++i) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
            char buf[4096];
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                --open_fds;
            } else {
                (i == 0 ? r.out : r.err).append(buf, static_cast<std::size_t>(n));
            }
        }
    }
    for (auto &f : fds)
        if (f.fd >= 0) close(f.fd);
    int status = 0;
    if (open_fds > 0) kill(pid, SIGKILL); // it overran the bound: the test fails below
    waitpid(pid, &status, 0);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return r;
}

Ran import(const fs::path &dir, std::vector<std::string> args) {
    args.insert(args.begin(), {program("VIGILCTL"), "import"});
    return run(args, dir);
}

Ran check(const fs::path &units) {
    return run({program("VIGILD"), "--check", "--units", units.string()}, units);
}

void spill(const fs::path &p, const std::string &text) {
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
}

std::string replace_all(std::string s, const std::string &from, const std::string &to) {
    for (std::size_t at = 0; (at = s.find(from, at)) != std::string::npos; at += to.size())
        s.replace(at, from.size(), to);
    return s;
}

bool has(const std::string &text, const std::string &part) {
    return text.find(part) != std::string::npos;
}

class TempDir {
public:
    TempDir() {
        const char *tmp = std::getenv("TMPDIR");
        std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/vigil-import-sys.XXXXXX";
        REQUIRE(mkdtemp(templ.data()) != nullptr);
        path_ = templ;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;
    const fs::path &path() const { return path_; }

private:
    fs::path path_;
};

fs::path fixtures() {
    return program("VIGIL_IMPORT_FIXTURES");
}

// Imports fixtures/<name>/supervisord.conf and compares the result with its expected/ folder;
// then vigild --check must accept what was written.
void golden(const std::string &name) {
    CAPTURE(name);
    // Canonical: vigilctl runs there, and %(here)s comes from its working directory.
    fs::path dir = fs::canonical(fixtures() / name), expected = dir / "expected";
    TempDir t;
    fs::path out = t.path() / "units";
    Ran r = import(dir, {"supervisord.conf", "--out", out.string()});
    auto normal = [&](const std::string &s) {
        return replace_all(replace_all(s, dir.string(), "@HERE@"), out.string(), "@OUT@");
    };
    std::map<std::string, std::string> got;
    if (fs::exists(out))
        for (const auto &e : fs::directory_iterator(out))
            got[e.path().filename().string()] = normal(slurp(e.path()));
    got["stderr"] = normal(r.err);
    got["status"] = std::to_string(r.code) + "\n";

    if (const char *u = std::getenv("VIGIL_UPDATE_GOLDEN"); u && std::string(u) == "1") {
        fs::remove_all(expected);
        for (const auto &[file, text] : got)
            spill(expected / file, text);
        MESSAGE("rewrote " << expected.string());
    }
    std::map<std::string, std::string> want;
    for (const auto &e : fs::directory_iterator(expected))
        want[e.path().filename().string()] = slurp(e.path());
    // Named, not structured bindings: clang 14 cannot capture one (CAPTURE's lambda).
    for (const auto &entry : want) {
        const std::string &file = entry.first, &text = entry.second;
        CAPTURE(file);
        REQUIRE(got.contains(file));
        CHECK(got[file] == text);
    }
    for (const auto &entry : got) {
        const std::string &file = entry.first;
        CAPTURE(file);
        CHECK(want.contains(file));
    }
    CHECK(has(r.out, "check them with `vigild --check --units " + out.string() + "`"));

    Ran c = check(out);
    INFO("vigild --check: " << c.err << c.out);
    CHECK(c.code == 0);
}

} // namespace

TEST_SUITE("vigilctl import") {

    TEST_CASE("a web application: nginx, gunicorn, celery workers and beat (everything converts)") {
        golden("webapp");
    }

    TEST_CASE("a pool of identical workers: instances, priorities, ENV_ from the environment") {
        golden("pool");
    }

    TEST_CASE("an include tree with groups, a nested include and a cycle") {
        golden("include_tree");
    }

    TEST_CASE("what vigil cannot express is listed, and the rest still runs") {
        golden("unsupported");
    }

    TEST_CASE("a malformed file: file:line errors, exit 1, nothing written") {
        TempDir t;
        spill(t.path() / "bad.conf", "[program:a]\ncommand=a\nno equals sign here\n"
                                     "[program:b]\ncommand=b\n= orphan value\n");
        Ran r = import(t.path(), {"bad.conf", "--out", "units"});
        CHECK(r.code == 1);
        CHECK(r.err == "bad.conf:3: error: neither a [section] header nor a key = value line: "
                       "\"no equals sign here\"\n"
                       "bad.conf:6: error: a value without a key: \"= orphan value\"\n"
                       "vigilctl: import: nothing was written\n");
        CHECK_FALSE(fs::exists(t.path() / "units"));
    }

    TEST_CASE("binary input and a missing file") {
        TempDir t;
        std::string binary = "[program:a]\ncommand=\x7f"
                             "ELF";
        binary += std::string(3, '\0') + "\n";
        spill(t.path() / "bin.conf", binary);
        Ran r = import(t.path(), {"bin.conf"});
        CHECK(r.code == 1);
        CHECK(has(r.err, "bin.conf:2: error: a NUL byte"));
        Ran m = import(t.path(), {"nope.conf"});
        CHECK(m.code == 1);
        CHECK(has(m.err, "nope.conf: error: No such file or directory"));
        CHECK_FALSE(fs::exists(t.path() / "units"));
    }

    TEST_CASE("at most 1000 findings are printed, then how many more") {
        TempDir t;
        std::string text;
        for (int k = 0; k < 1500; ++k)
            text += "[unknown" + std::to_string(k) + "]\n";
        spill(t.path() / "s.conf", text);
        Ran r = import(t.path(), {"s.conf"});
        CHECK(r.code == 0); // notes only
        CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1001);
        CHECK(has(r.err, "s.conf:1000: [unknown999]: note: unknown section"));
        CHECK(has(r.err, "vigilctl: import: 500 more findings not shown\n"));
    }

    TEST_CASE("a folder name that is not UTF-8 is reported, not a crash") {
        TempDir t;
        spill(t.path() / "main.conf", "[include]\nfiles=conf*/*.conf\n");
        spill(t.path() / "conf\xff/a.conf", "[program:a]\ncommand=%(here)s/a\n");
        Ran r = import(t.path(), {"main.conf"});
        CHECK(r.code == 1);
        CHECK(has(r.err, "main.conf:2: [include] files: not converted: cannot read "));
        CHECK(has(r.err, "is not UTF-8"));
    }

    TEST_CASE("files that exist are not overwritten without --force") {
        TempDir t;
        spill(t.path() / "s.conf", "[program:a]\ncommand=/bin/true\n");
        REQUIRE(import(t.path(), {"s.conf"}).code == 0);
        spill(t.path() / "units/a.json", "{\"command\": [\"mine\"]}\n");
        Ran again = import(t.path(), {"s.conf"});
        CHECK(again.code == 1);
        CHECK(has(again.err,
                  "units/a.json and 1 more exist (--force replaces them, or choose another "
                  "--out)\nvigilctl: import: nothing was written\n"));
        CHECK(slurp(t.path() / "units/a.json") == "{\"command\": [\"mine\"]}\n");
        Ran forced = import(t.path(), {"s.conf", "--force"});
        CHECK(forced.code == 0);
        CHECK(has(slurp(t.path() / "units/a.json"), "/bin/true"));
        CHECK(check(t.path() / "units").code == 0);
    }

    TEST_CASE("usage errors exit 2") {
        TempDir t;
        CHECK(import(t.path(), {}).code == 2);
        CHECK(import(t.path(), {"a.conf", "b.conf"}).code == 2);
        CHECK(import(t.path(), {"a.conf", "--bogus"}).code == 2);
        Ran h = import(t.path(), {"--help"});
        CHECK(h.code == 0);
        CHECK(has(h.out, "--out"));
        CHECK(has(h.out, "--force"));
    }
}

// The units directory as hostile input: FIFOs, sockets and symlinks in place of unit files,
// oversized files, too many files. Each is refused with a diagnostic, and nothing blocks: the
// loader runs while vigild supervises (reload), so a FIFO that stalled it would stall vigild.
#include <chrono>
#include <cstring>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "temp_units.hpp"
#include "vigil/unit/bounds.hpp"
#include "vigil/unit/unit.hpp"

using namespace vigil;
using namespace vigil::unit;
using vigil::unit::test::diagnostics_text;
using vigil::unit::test::TempUnits;
namespace fs = std::filesystem;

namespace {

const char *const service_json = R"({"command": ["true"]})";

// load_dir() on a thread, bounded: a loader that blocks (on a FIFO) fails the test instead of
// hanging it. `unblock` opens the FIFO for writing, which releases a reader stuck in open().
LoadResult load_bounded(const TempUnits &t, const fs::path &fifo = {}) {
    auto job = std::async(std::launch::async, [&t] { return t.load(); });
    if (job.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
        if (!fifo.empty()) {
            int fd = open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
            if (fd >= 0) close(fd);
        }
        FAIL("load_dir blocked on the units directory");
    }
    return job.get();
}

// The one diagnostic about `file`, formatted ("" when there is none).
std::string about(const LoadResult &r, const TempUnits &t, const std::string &file) {
    std::string out;
    for (const auto &d : r.diagnostics)
        if (d.file == (t.dir() / file).string()) out += format(d);
    return out;
}

void write_size(const fs::path &p, std::uint64_t bytes, const std::string &head) {
    int fd = open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    REQUIRE(write(fd, head.data(), head.size()) == static_cast<ssize_t>(head.size()));
    // The rest is spaces, so the file is valid JSON of exactly `bytes` bytes.
    std::string pad(bytes - head.size(), ' ');
    REQUIRE(write(fd, pad.data(), pad.size()) == static_cast<ssize_t>(pad.size()));
    close(fd);
}

} // namespace

TEST_SUITE("unit") {

    TEST_CASE("a FIFO named like a unit file is refused at once, and the others load") {
        TempUnits t;
        t.write("db.json", service_json);
        fs::path fifo = t.dir() / "web.json";
        REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
        LoadResult r = load_bounded(t, fifo);
        CHECK(about(r, t, "web.json") ==
              fifo.string() + ": not a regular file (a FIFO); a unit file must be a regular file");
        CHECK(about(r, t, "db.json") == "");
        CHECK(r.diagnostics.size() == 1);
    }

    TEST_CASE("a socket named like a unit file is refused") {
        TempUnits t;
        fs::path path = t.dir() / "web.json";
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        REQUIRE(path.string().size() < sizeof sa.sun_path);
        std::memcpy(sa.sun_path, path.c_str(), path.string().size());
        REQUIRE(bind(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0);
        LoadResult r = load_bounded(t);
        close(fd);
        CHECK(about(r, t, "web.json") == path.string() +
                                             ": not a regular file (a socket); a unit file "
                                             "must be a regular file");
    }

    TEST_CASE("a symlinked unit file is refused, saying why and what to do") {
        TempUnits t;
        std::ofstream(t.outside() / "web.json") << service_json;
        fs::create_symlink(t.outside() / "web.json", t.dir() / "web.json");
        fs::create_symlink(t.outside() / "web.json", t.dir() / "root.json");
        t.write("db.json", service_json);
        LoadResult r = load_bounded(t);
        for (const char *name : {"web.json", "root.json"}) {
            CAPTURE(name);
            CHECK(about(r, t, name) ==
                  (t.dir() / name).string() +
                      ": is a symbolic link; symlinks are not followed in the units directory "
                      "(copy the file in instead)");
        }
        CHECK(r.diagnostics.size() == 2);
    }

    TEST_CASE("a symlink to a FIFO is refused without opening it") {
        TempUnits t;
        fs::path fifo = t.outside() / "fifo";
        REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
        fs::create_symlink(fifo, t.dir() / "web.json");
        LoadResult r = load_bounded(t, fifo);
        CHECK(about(r, t, "web.json").find(": is a symbolic link;") != std::string::npos);
    }

    TEST_CASE("a file name with control characters is shown escaped") {
        TempUnits t;
        t.write("\x1b[2J.json", service_json);
        LoadResult r = load_bounded(t);
        REQUIRE(r.diagnostics.size() == 1);
        std::string text = format(r.diagnostics[0]);
        CHECK(text.find('\x1b') == std::string::npos);
        CHECK(text == "\"" + t.dir().string() + "/\\u001b[2J.json\": unit name \"\\u001b[2J\" " +
                          "(the file name without .json) must match [a-z0-9][a-z0-9._@-]*");
    }

    TEST_CASE("a subdirectory named like a unit file is ignored, as before") {
        TempUnits t;
        fs::create_directory(t.dir() / "web.json");
        t.write("db.json", service_json);
        LoadResult r = load_bounded(t);
        CHECK_MESSAGE(r.ok(), diagnostics_text(r));
        CHECK(r.tree.nodes.size() == 2);
    }

    TEST_CASE("a unit file of more than 1MiB is refused without being parsed") {
        TempUnits t;
        write_size(t.dir() / "web.json", bounds::max_file_bytes, service_json);
        LoadResult ok = load_bounded(t);
        CHECK_MESSAGE(ok.ok(), diagnostics_text(ok));
        write_size(t.dir() / "web.json", bounds::max_file_bytes + 1, service_json);
        LoadResult bad = load_bounded(t);
        REQUIRE(bad.diagnostics.size() == 1);
        CHECK(format(bad.diagnostics[0]) ==
              (t.dir() / "web.json").string() +
                  ": is 1048577 bytes long; a unit file may have at most 1MiB");
    }

    TEST_CASE("more than 20000 unit files: one diagnostic, and no file is read") {
        TempUnits t;
        // Invalid names: counted like any *.json, then refused by name without being opened,
        // which keeps the test fast. Other files do not count.
        for (std::size_t i = 0; i < bounds::max_unit_files; ++i) {
            int fd = open((t.dir() / ("X" + std::to_string(i) + ".json")).c_str(),
                          O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            REQUIRE(fd >= 0);
            close(fd);
        }
        t.write("notes.txt", "not a unit");
        LoadResult at = load_bounded(t);
        // One per bad name, of which the first 1000 are shown.
        REQUIRE(at.diagnostics.size() == bounds::max_diagnostics + 1);
        CHECK(at.problems == 20000);
        CHECK(format(at.diagnostics.back()) == "19000 more problems not shown (the first 1000 "
                                               "are): fix these and check again");
        CHECK(diagnostics_text(at).find("more than") == std::string::npos);
        t.write("web.json", service_json);
        LoadResult past = load_bounded(t);
        REQUIRE(past.diagnostics.size() == 1);
        CHECK(format(past.diagnostics[0]) ==
              "more than 20000 unit files (*.json) in \"" + t.dir().string() +
                  "\"; vigil reads at most 20000 and read none of them (merge units, or use "
                  "\"instances\")");
    }

    TEST_CASE("unit files of more than 64MiB in all: the load stops there") {
        TempUnits t;
        // 64 files of 1MiB each: exactly the bound. Sparse files of NULs, refused by the parser
        // at their first byte, so that the test reads 64MiB but parses nothing.
        for (int i = 0; i < 64; ++i) {
            fs::path p = t.dir() / ("u" + std::to_string(100 + i) + ".json");
            int fd = open(p.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            REQUIRE(fd >= 0);
            REQUIRE(ftruncate(fd, static_cast<off_t>(bounds::max_file_bytes)) == 0);
            close(fd);
        }
        LoadResult at = load_bounded(t);
        CHECK(at.diagnostics.size() == 64); // each a syntax error
        CHECK(diagnostics_text(at).find("64MiB") == std::string::npos);
        t.write("z.json", service_json);
        LoadResult past = load_bounded(t);
        REQUIRE(past.diagnostics.size() == 65);
        CHECK(diagnostics_text(past).find(
                  "the unit files in \"" + t.dir().string() +
                  "\" take more than 64MiB together; vigil stopped reading at \"z.json\"") !=
              std::string::npos);
    }

} // TEST_SUITE

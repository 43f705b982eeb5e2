// Forwarder: record format, colour rules, and back-pressure that pauses captures without loss.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <fcntl.h>
#include <pty.h>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "loop_util.hpp"
#include "vigil/log/capture.hpp"
#include "vigil/log/forwarder.hpp"

using namespace vigil::log;
using vigil::Duration;
using vigil::log::test::close_loop;
using vigil::log::test::run_for;
using vigil::log::test::run_until;

namespace {

std::string read_available(int fd) {
    std::string s;
    char buf[65536];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
        s.append(buf, static_cast<std::size_t>(n));
    return s;
}

void write_all(int fd, std::string_view s) {
    while (!s.empty()) {
        const ssize_t n = ::write(fd, s.data(), s.size());
        if (n < 0 && errno == EINTR) continue;
        REQUIRE(n > 0);
        s.remove_prefix(static_cast<std::size_t>(n));
    }
}

} // namespace

TEST_SUITE("log") {

    TEST_CASE("forwarder record format: stdout, stderr, continued, timestamps") {
        uv_loop_t loop;
        uv_loop_init(&loop);
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
        {
            Forwarder fw(&loop, ForwarderOptions{fds[1], false, 1 << 20, 1 << 16});
            CHECK_FALSE(fw.colour());
            const auto p = fw.prefix("web");
            fw.line(p, Stream::Stdout, "hello", false);
            fw.line(p, Stream::Stderr, "oops", false);
            fw.line(p, Stream::Stdout, "long", true);
            fw.line(p, Stream::Stdout, "tail", false, 1'764'149'889'123);
            CHECK(fw.queued() > 0);
            CHECK(run_until(&loop, [&] { return fw.queued() == 0; }));
            CHECK(read_available(fds[0]) ==
                  "web | hello\nweb ! oops\nweb | long\\\nweb | 2025-11-26T09:38:09.123Z tail\n");
            CHECK(fw.lines() == 4);
            bool closed = false;
            fw.close([&] { closed = true; });
            CHECK(run_until(&loop, [&] { return closed; }));
        }
        ::close(fds[0]);
        ::close(fds[1]);
        CHECK(close_loop(&loop) == 0);
    }

    TEST_CASE("forwarder colours on a TTY unless NO_COLOR is set; the colour is stable") {
        uv_loop_t loop;
        uv_loop_init(&loop);
        int master = -1, slave = -1;
        REQUIRE(::openpty(&master, &slave, nullptr, nullptr, nullptr) == 0);
        ::unsetenv("NO_COLOR");
        {
            Forwarder fw(&loop, ForwarderOptions{slave, std::nullopt, 1 << 20, 1 << 16});
            CHECK(fw.colour());
            const auto a = fw.prefix("db");
            CHECK(a.out.starts_with("\x1b["));
            CHECK(a.out.find("db |") != std::string::npos);
            CHECK(a.err.find("db !") != std::string::npos);
            CHECK(fw.prefix("db").out == a.out); // stable
            fw.close(nullptr);
        }
        ::setenv("NO_COLOR", "1", 1);
        {
            Forwarder fw(&loop, ForwarderOptions{slave, std::nullopt, 1 << 20, 1 << 16});
            CHECK_FALSE(fw.colour());
            CHECK(fw.prefix("db").out == "db | ");
            fw.close(nullptr);
        }
        ::unsetenv("NO_COLOR");
        CHECK(close_loop(&loop) == 0);
        ::close(master);
        ::close(slave);
    }

    TEST_CASE("forwarder to /dev/null and to a regular file") {
        uv_loop_t loop;
        uv_loop_init(&loop);
        const int null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
        char path[] = "/tmp/vigil-fw-XXXXXX";
        const int file_fd = ::mkstemp(path);
        REQUIRE(null_fd >= 0);
        REQUIRE(file_fd >= 0);
        for (const int fd : {null_fd, file_fd}) {
            Forwarder fw(&loop, ForwarderOptions{fd, false, 1 << 20, 1 << 16});
            const auto p = fw.prefix("x");
            for (int i = 0; i < 1000; ++i)
                fw.line(p, Stream::Stdout, "some line", false);
            CHECK(run_until(&loop, [&] { return fw.queued() == 0; }));
            CHECK(fw.lines_failed() == 0);
            fw.close(nullptr);
        }
        CHECK(::lseek(file_fd, 0, SEEK_END) == 1000 * 14);
        ::close(null_fd);
        ::close(file_fd);
        ::unlink(path);
        CHECK(close_loop(&loop) == 0);
    }

    TEST_CASE(
        "back-pressure: a stdout nobody reads pauses the capture; draining resumes it, no loss") {
        uv_loop_t loop;
        uv_loop_init(&loop);
        int outp[2], inp[2];
        REQUIRE(::pipe2(outp, O_CLOEXEC) == 0); // forwarder -> test (vigild's stdout)
        REQUIRE(::pipe2(inp, O_CLOEXEC) == 0);  // child -> capture
        REQUIRE(::fcntl(inp[0], F_SETFL, O_NONBLOCK) == 0);
        const std::size_t high = 64u << 10, low = 16u << 10;
        Forwarder fw(&loop, ForwarderOptions{outp[1], false, high, low});
        const auto prefix = fw.prefix("svc");
        std::size_t max_queued = 0;
        bool eof = false;
        Capture cap(&loop, inp[0], -1, CaptureOptions{},
                    Capture::Callbacks{[&](Stream s, std::string_view l, bool c) {
                                           fw.line(prefix, s, l, c);
                                           max_queued = std::max(max_queued, fw.queued());
                                       },
                                       nullptr, [&] { eof = true; }});
        int pauses = 0, resumes = 0;
        fw.on_pressure([&](bool congested) {
            if (congested) {
                ++pauses;
                cap.pause();
            } else {
                ++resumes;
                cap.resume();
            }
        });
        REQUIRE(cap.start() == 0);
        const int n = 100000; // ~1.5 MB of records: far more than the pipes and the queue hold
        std::atomic<bool> writer_done{false};
        std::thread writer([&] {
            std::string buf;
            for (int i = 0; i < n; ++i) {
                buf += "record " + std::to_string(i) + "\n";
                if (buf.size() > 4096) {
                    write_all(inp[1], buf);
                    buf.clear();
                }
            }
            write_all(inp[1], buf);
            ::close(inp[1]);
            writer_done = true;
        });
        // Nobody reads outp[0]: once its pipe is full the queue cannot drain below low water
        // and the capture stays paused (before that it may pause and resume a few times).
        // Steady state: paused, and nothing read for 100 ms.
        bool steady = false;
        for (int attempt = 0; attempt < 50 && !steady; ++attempt) {
            if (!run_until(&loop, [&] { return cap.paused(); })) break;
            const std::uint64_t before = cap.bytes();
            run_for(&loop, 100);
            steady = cap.paused() && cap.bytes() == before;
        }
        INFO("bytes read ", cap.bytes(), ", queued ", fw.queued(), ", pauses ", pauses,
             ", resumes ", resumes);
        CHECK(steady);
        CHECK(cap.paused());
        CHECK(fw.congested());
        run_for(&loop, 100);
        const std::uint64_t read_while_paused = cap.bytes();
        run_for(&loop, 100);
        CHECK(cap.bytes() == read_while_paused); // stays paused: the child blocks, vigild waits
        CHECK_FALSE(writer_done.load());
        // At most one more read beyond high water; its records are longer than the bytes read
        // ("svc | " per line), hence twice a read buffer.
        CHECK(max_queued <= high + 2 * (64u << 10));
        CHECK(fw.lines_failed() == 0);

        // Start draining: the queue falls under low water, the capture resumes, everything arrives.
        std::string got;
        std::atomic<bool> stop_reader{false};
        std::thread reader([&] {
            char buf[65536];
            while (!stop_reader.load()) {
                const ssize_t r = ::read(outp[0], buf, sizeof buf);
                if (r > 0) got.append(buf, static_cast<std::size_t>(r));
                if (r == 0) break;
            }
        });
        CHECK(run_until(
            &loop, [&] { return eof && fw.queued() == 0; }, 30000));
        writer.join();
        CHECK(fw.flush_blocking(Duration{1000}));
        bool closed = false;
        fw.close(nullptr);
        cap.close([&] { closed = true; });
        CHECK(run_until(&loop, [&] { return closed; }));
        ::close(outp[1]); // reader sees EOF
        reader.join();
        ::close(outp[0]);
        CHECK(pauses >= 1);
        CHECK(resumes >= 1);
        std::string want;
        for (int i = 0; i < n; ++i)
            want += "svc | record " + std::to_string(i) + "\n";
        CHECK(got.size() == want.size());
        CHECK(got == want);
        CHECK(close_loop(&loop) == 0);
    }

} // TEST_SUITE

// Forwarder: record format, colour rules, a stuck stdout that drops (counted, with a marker)
// instead of pausing anyone, and vigild's own lines that share the stream and are not lost.
#include <doctest/doctest.h>

#include <atomic>
#include <cstdlib>
#include <fcntl.h>
#include <pty.h>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "files.hpp"
#include "loop_util.hpp"
#include "vigil/log/capture.hpp"
#include "vigil/log/forwarder.hpp"
#include "vigil/log/unit_log.hpp"

using namespace vigil::log;
using vigil::at_ms;
using vigil::Duration;
using vigil::log::test::close_loop;
using vigil::log::test::run_until;

using vigil::test::write_all;

namespace {

std::string read_available(int fd) {
    std::string s;
    char buf[65536];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;)
        s.append(buf, static_cast<std::size_t>(n));
    return s;
}

std::vector<std::string> split_lines(const std::string &s) {
    std::vector<std::string> out;
    std::size_t p = 0;
    while (p < s.size()) {
        const std::size_t nl = s.find('\n', p);
        if (nl == std::string::npos) break;
        out.push_back(s.substr(p, nl - p));
        p = nl + 1;
    }
    return out;
}

bool nonblocking(int fd) {
    return (::fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
}

// Reads `fd` (made non-blocking for the reader's sake: the read end is ours alone) on the loop
// until pred() holds.
bool drain_until(uv_loop_t *loop, int fd, std::string &got, const std::function<bool()> &pred) {
    return run_until(
        loop,
        [&] {
            got += read_available(fd);
            return pred();
        },
        20000);
}

} // namespace

TEST_SUITE("log") {

    TEST_CASE("forwarder record format: stdout, stderr, continued, timestamps, raw") {
        uv_loop_t loop;
        uv_loop_init(&loop);
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
        {
            Forwarder fw(&loop, ForwarderOptions{fds[1], false});
            CHECK_FALSE(fw.colour());
            const auto p = fw.prefix("web");
            CHECK(fw.line(p, Stream::Stdout, "hello", false));
            CHECK(fw.line(p, Stream::Stderr, "oops", false));
            CHECK(fw.line(p, Stream::Stdout, "long", true));
            CHECK(fw.line(p, Stream::Stdout, "tail", false, 1'764'149'889'123));
            CHECK(fw.raw("2025-11-26T09:38:09.123Z vigild: own"));
            std::string got;
            CHECK(drain_until(&loop, fds[0], got, [&] { return fw.queued() == 0; }));
            got += read_available(fds[0]);
            CHECK(got == "web | hello\nweb ! oops\nweb | long\\\n"
                         "web | 2025-11-26T09:38:09.123Z tail\n"
                         "2025-11-26T09:38:09.123Z vigild: own\n");
            CHECK(fw.lines() == 5);
            CHECK(fw.dropped_lines() == 0);
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
            Forwarder fw(&loop, ForwarderOptions{slave});
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
            Forwarder fw(&loop, ForwarderOptions{slave});
            CHECK_FALSE(fw.colour());
            CHECK(fw.prefix("db").out == "db | ");
            fw.close(nullptr);
        }
        ::unsetenv("NO_COLOR");
        CHECK(close_loop(&loop) == 0);
        ::close(master);
        ::close(slave);
    }

    TEST_CASE("forwarder to /dev/null and to a regular file; the fd's flags are never touched") {
        uv_loop_t loop;
        uv_loop_init(&loop);
        const int null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
        char path[] = "/tmp/vigil-fw-XXXXXX";
        const int file_fd = ::mkstemp(path);
        REQUIRE(null_fd >= 0);
        REQUIRE(file_fd >= 0);
        for (const int fd : {null_fd, file_fd}) {
            const int flags = ::fcntl(fd, F_GETFL);
            Forwarder fw(&loop, ForwarderOptions{fd, false});
            const auto p = fw.prefix("x");
            for (int i = 0; i < 1000; ++i)
                fw.line(p, Stream::Stdout, "some line", false);
            CHECK(run_until(&loop, [&] { return fw.queued() == 0; }));
            CHECK(fw.lines_failed() == 0);
            CHECK(::fcntl(fd, F_GETFL) == flags);
            fw.close(nullptr);
        }
        CHECK(::lseek(file_fd, 0, SEEK_END) == 1000 * 14);
        ::close(null_fd);
        ::close(file_fd);
        ::unlink(path);
        CHECK(close_loop(&loop) == 0);
    }

    TEST_CASE("a stuck stdout drops and counts forwarded lines, never pauses a capture, and says "
              "so with one marker once drained") {
        uv_loop_t loop;
        uv_loop_init(&loop);
        int outp[2], inp[2];
        REQUIRE(::pipe2(outp, O_CLOEXEC) == 0); // vigild's stdout: nobody reads it for now
        REQUIRE(::pipe2(inp, O_CLOEXEC) == 0);  // child -> capture
        REQUIRE(::fcntl(inp[0], F_SETFL, O_NONBLOCK) == 0);
        ForwarderOptions fo{outp[1], false};
        fo.max_queue = 256u << 10;
        fo.resume_below = 64u << 10;
        Forwarder fw(&loop, fo);
        vigil::unit::LogSpec spec;
        spec.forward = true;
        SeqCounter seq;
        UnitLog ul("svc", spec, FileIdentity{}, PatternSet{}, UnitLogSinks{&fw, {}}, seq);
        bool eof = false;
        Capture cap(&loop, inp[0], -1, CaptureOptions{},
                    Capture::Callbacks{
                        [&](Stream s, std::string_view l, bool c) { ul.line(s, l, c, at_ms(0)); },
                        [&] { (void)ul.flush(at_ms(0)); }, [&] { eof = true; }});
        REQUIRE(cap.start() == 0);
        const int n = 100000; // ~1.9 MB of records: far more than the pipe and the queue hold
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
        });
        // Nobody reads vigild's stdout, yet the service's output is read to its end.
        CHECK(run_until(
            &loop, [&] { return eof; }, 30000));
        writer.join();
        CHECK_FALSE(cap.paused());
        CHECK(ul.ring().last_seq() == static_cast<std::uint64_t>(n)); // the ring got every line
        const std::uint64_t dropped = fw.dropped_lines();
        CHECK(dropped > 0);
        CHECK(ul.counters().forward_dropped == dropped);
        CHECK(fw.queued() <= fo.max_queue);
        CHECK(fw.lines_failed() == 0);

        // Drain: what was queued arrives, then the marker, then forwarding resumes.
        REQUIRE(::fcntl(outp[0], F_SETFL, O_NONBLOCK) == 0);
        std::string got;
        const std::string marker =
            "vigil | " + std::to_string(dropped) + " lines dropped: standard output was blocked\n";
        CHECK(drain_until(&loop, outp[0], got,
                          [&] { return got.find(marker) != std::string::npos; }));
        ul.line(Stream::Stdout, "after", false, at_ms(1));
        CHECK(drain_until(&loop, outp[0], got, [&] { return got.ends_with("svc | after\n"); }));
        const auto lines = split_lines(got);
        REQUIRE(lines.size() >= 3);
        const std::size_t kept = lines.size() - 2;
        for (std::size_t i = 0; i < kept; ++i)
            CHECK(lines[i] == "svc | record " + std::to_string(i)); // in order, none twice
        CHECK(lines[kept] + "\n" == marker);
        CHECK(kept + dropped == static_cast<std::uint64_t>(n)); // every line: written or counted
        CHECK(fw.dropped_lines() == dropped);
        fw.close(nullptr);
        cap.close(nullptr);
        CHECK(close_loop(&loop) == 0);
        for (int fd : {outp[0], outp[1], inp[0]})
            ::close(fd);
    }

    TEST_CASE("fd 1 and fd 2 on the same full pipe: vigild's own lines wait, in order, none lost") {
        uv_loop_t loop;
        uv_loop_init(&loop);
        int p[2];
        REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
        const int err_fd = ::dup(p[1]); // `2>&1`: another descriptor, the same pipe
        REQUIRE(err_fd >= 0);
        {
            StandardStreams ss = open_standard_streams(&loop, {p[1], err_fd, false});
            REQUIRE(ss.shared());
            CHECK(ss.err_owner == nullptr);
            CHECK_FALSE(nonblocking(p[1])); // never made O_NONBLOCK: others' writes still wait
            const auto pre = ss.out->prefix("svc");
            // Fill the pipe and the forwarded queue until forwarded lines are dropped.
            int i = 0;
            while (ss.out->dropped_lines() == 0 && i < 1'000'000) {
                ss.out->line(pre, Stream::Stdout, "line " + std::to_string(i++), false);
                if (i % 1000 == 0) uv_run(&loop, UV_RUN_NOWAIT);
            }
            REQUIRE(ss.out->dropped_lines() > 0);
            for (int k = 0; k < 100; ++k)
                CHECK(ss.err->raw("vigild: own line " + std::to_string(k)));
            CHECK(ss.err->dropped_own_lines() == 0);
            CHECK_FALSE(ss.out->line(pre, Stream::Stdout, "dropped too", false));

            REQUIRE(::fcntl(p[0], F_SETFL, O_NONBLOCK) == 0);
            std::string got;
            CHECK(drain_until(&loop, p[0], got,
                              [&] { return got.find("blocked\n") != std::string::npos; }));
            const auto lines = split_lines(got);
            std::vector<std::string> own;
            std::size_t first_own = 0, forwarded = 0;
            for (std::size_t k = 0; k < lines.size(); ++k) {
                if (lines[k].starts_with("vigild: ")) {
                    if (own.empty()) first_own = k;
                    own.push_back(lines[k]);
                } else if (lines[k].starts_with("svc | ")) {
                    CHECK(own.empty()); // the forwarded lines accepted before them come first
                    ++forwarded;
                }
            }
            REQUIRE(own.size() == 100);
            for (int k = 0; k < 100; ++k)
                CHECK(own[static_cast<std::size_t>(k)] == "vigild: own line " + std::to_string(k));
            CHECK(first_own == forwarded);
            CHECK(lines.back() == "vigil | " + std::to_string(ss.out->dropped_lines()) +
                                      " lines dropped: standard output and error was blocked");
            CHECK(forwarded + ss.out->dropped_lines() == static_cast<std::uint64_t>(i) + 1);
            ss.out->close(nullptr);
        }
        CHECK(close_loop(&loop) == 0);
        for (int fd : {p[0], p[1], err_fd})
            ::close(fd);
    }

    TEST_CASE("separate stdout and stderr: two queues; a blocked stdout does not hold vigild's "
              "lines back") {
        uv_loop_t loop;
        uv_loop_init(&loop);
        int out[2], err[2];
        REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
        REQUIRE(::pipe2(err, O_CLOEXEC | O_NONBLOCK) == 0);
        {
            StandardStreams ss = open_standard_streams(&loop, {out[1], err[1], false});
            REQUIRE_FALSE(ss.shared());
            const auto pre = ss.out->prefix("svc");
            for (int i = 0; i < 1000000 && ss.out->dropped_lines() == 0; ++i)
                ss.out->line(pre, Stream::Stdout, "x", false);
            CHECK(ss.out->dropped_lines() > 0);
            CHECK(ss.err->raw("vigild: still heard"));
            std::string got;
            CHECK(drain_until(&loop, err[0], got, [&] { return got == "vigild: still heard\n"; }));
            ss.out->close(nullptr);
            ss.err->close(nullptr);
            // Let stdout's thread finish before the pipes go: drain it.
            REQUIRE(::fcntl(out[0], F_SETFL, O_NONBLOCK) == 0);
            std::string rest;
            CHECK(drain_until(&loop, out[0], rest, [&] { return ss.out->queued() == 0; }));
        }
        CHECK(close_loop(&loop) == 0);
        for (int fd : {out[0], out[1], err[0], err[1]})
            ::close(fd);
    }

    TEST_CASE("vigild's own lines beyond their bound are dropped, counted and told") {
        uv_loop_t loop;
        uv_loop_init(&loop);
        int p[2];
        REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
        {
            ForwarderOptions o{p[1], false};
            o.max_queue = 4096;
            o.max_own_queue = 16384;
            o.resume_below = 1024;
            Forwarder fw(&loop, o);
            int own = 0;
            while (fw.dropped_own_lines() == 0 && own < 1'000'000)
                fw.raw("own " + std::to_string(own++));
            const std::uint64_t dropped = fw.dropped_own_lines();
            CHECK(dropped == 1);
            CHECK(fw.queued() <= o.max_own_queue);
            REQUIRE(::fcntl(p[0], F_SETFL, O_NONBLOCK) == 0);
            std::string got;
            CHECK(drain_until(&loop, p[0], got, [&] {
                return got.find("vigil | 1 lines dropped (1 of them vigild's own): standard "
                                "output was blocked\n") != std::string::npos;
            }));
            CHECK(split_lines(got).size() == static_cast<std::size_t>(own)); // own-1 + marker
            fw.close(nullptr);
        }
        CHECK(close_loop(&loop) == 0);
        ::close(p[0]);
        ::close(p[1]);
    }

    TEST_CASE("a write error loses only what was being written, counted") {
        uv_loop_t loop;
        uv_loop_init(&loop);
        int p[2];
        REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
        ::close(p[0]); // nobody will ever read: EPIPE (the thread blocks SIGPIPE)
        {
            Forwarder fw(&loop, ForwarderOptions{p[1], false});
            const auto pre = fw.prefix("x");
            for (int i = 0; i < 10; ++i)
                fw.line(pre, Stream::Stdout, "lost", false);
            CHECK(run_until(&loop, [&] { return fw.lines_failed() == 10; }));
            CHECK(fw.last_error() == EPIPE);
            CHECK(fw.flush_blocking(Duration{1000}));
            fw.close(nullptr);
        }
        CHECK(close_loop(&loop) == 0);
        ::close(p[1]);
    }

    TEST_CASE("a record bigger than the whole queue is dropped, told, and forwarding goes on") {
        uv_loop_t loop;
        uv_loop_init(&loop);
        int p[2];
        REQUIRE(::pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
        {
            ForwarderOptions o{p[1], false};
            o.max_queue = 64;
            o.resume_below = 64;
            Forwarder fw(&loop, o);
            const auto pre = fw.prefix("big");
            CHECK_FALSE(fw.line(pre, Stream::Stdout, std::string(100, 'x'), false));
            std::string got;
            const std::string marker = "vigil | 1 lines dropped: standard output was blocked\n";
            CHECK(drain_until(&loop, p[0], got, [&] { return got == marker; }));
            CHECK(fw.line(pre, Stream::Stdout, "small", false));
            CHECK(drain_until(&loop, p[0], got, [&] { return got == marker + "big | small\n"; }));
            fw.close(nullptr);
        }
        CHECK(close_loop(&loop) == 0);
        ::close(p[0]);
        ::close(p[1]);
    }

} // TEST_SUITE

// Capture on real pipes with a real loop: EOF drains everything, pause/resume, lines written
// just before SIGKILL, handle lifetime.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <fcntl.h>
#include <memory>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "files.hpp"
#include "loop_util.hpp"
#include "vigil/log/capture.hpp"

using namespace vigil::log;
using vigil::log::test::close_loop;
using vigil::log::test::run_for;
using vigil::log::test::run_until;

using vigil::test::write_all;

namespace {

// A pipe whose read end is non-blocking (as the spawner gives it) and write end blocking.
struct Pipe {
    int rd = -1, wr = -1;
    Pipe() {
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        rd = fds[0];
        wr = fds[1];
        REQUIRE(::fcntl(rd, F_SETFL, ::fcntl(rd, F_GETFL) | O_NONBLOCK) == 0);
    }
    void close_wr() {
        if (wr >= 0) ::close(wr);
        wr = -1;
    }
    ~Pipe() { close_wr(); } // rd belongs to the Capture
};

struct Collected {
    std::vector<std::string> out, err;
    std::vector<bool> out_cont;
    int eofs = 0;
    int batches = 0;
    Capture::Callbacks callbacks() {
        return Capture::Callbacks{[this](Stream s, std::string_view l, bool c) {
                                      if (s == Stream::Stderr) {
                                          err.emplace_back(l);
                                      } else {
                                          out.emplace_back(l);
                                          out_cont.push_back(c);
                                      }
                                  },
                                  [this] { ++batches; }, [this] { ++eofs; }};
    }
};

} // namespace

TEST_SUITE("log") {

    TEST_CASE("capture delivers every line of both streams, the final partial one, then EOF once") {
        uv_loop_t loop;
        uv_loop_init(&loop);
        Pipe out, err;
        Collected got;
        {
            Capture cap(&loop, out.rd, err.rd, CaptureOptions{8, 65536, 0}, got.callbacks());
            write_all(out.wr, "one\ntwo\n0123456789ab\npartial");
            write_all(err.wr, "e1\ne2");
            out.close_wr();
            REQUIRE(cap.start() == 0);
            CHECK(run_until(&loop, [&] { return got.out.size() >= 3 && got.err.size() >= 1; }));
            CHECK(got.eofs == 0); // stderr still open
            err.close_wr();
            CHECK(run_until(&loop, [&] { return got.eofs == 1; }));
            CHECK(cap.eof());
            CHECK(got.out == std::vector<std::string>{"one", "two", "01234567", "89ab", "partial"});
            CHECK(got.out_cont == std::vector<bool>{false, false, true, false, false});
            CHECK(got.err == std::vector<std::string>{"e1", "e2"});
            CHECK(got.batches > 0);
            CHECK(cap.bytes() == 33);
            CHECK(cap.lines() == 7);
            bool closed = false;
            cap.close([&] { closed = true; });
            CHECK(run_until(&loop, [&] { return closed; }));
        }
        run_for(&loop, 10);
        CHECK(got.eofs == 1);
        CHECK(close_loop(&loop) == 0);
    }

    TEST_CASE("capture of a large stream from a writer thread loses and reorders nothing") {
        uv_loop_t loop;
        uv_loop_init(&loop);
        Pipe out;
        std::uint64_t next = 0;
        bool ok = true;
        bool eof = false;
        const std::uint64_t n = 200000;
        Capture cap(&loop, out.rd, -1, CaptureOptions{},
                    Capture::Callbacks{[&](Stream, std::string_view l, bool) {
                                           if (l != "seq " + std::to_string(next)) ok = false;
                                           ++next;
                                       },
                                       nullptr, [&] { eof = true; }});
        REQUIRE(cap.start() == 0);
        std::thread writer([&] {
            std::string buf;
            for (std::uint64_t i = 0; i < n; ++i) {
                buf += "seq " + std::to_string(i) + "\n";
                if (buf.size() > 10000) {
                    write_all(out.wr, buf);
                    buf.clear();
                }
            }
            write_all(out.wr, buf);
            out.close_wr();
        });
        CHECK(run_until(
            &loop, [&] { return eof; }, 30000));
        writer.join();
        CHECK(ok);
        CHECK(next == n);
        cap.close(nullptr);
        CHECK(close_loop(&loop) == 0);
    }

    TEST_CASE("capture pause stops reading (the writer blocks), resume delivers everything") {
        uv_loop_t loop;
        uv_loop_init(&loop);
        Pipe out;
        std::vector<std::string> lines;
        bool eof = false;
        Capture cap(
            &loop, out.rd, -1, CaptureOptions{},
            Capture::Callbacks{[&](Stream, std::string_view l, bool) { lines.emplace_back(l); },
                               nullptr, [&] { eof = true; }});
        cap.pause(); // paused before start: nothing is read at all
        REQUIRE(cap.start() == 0);
        write_all(out.wr, "first\n");
        run_for(&loop, 50);
        CHECK(lines.empty());
        CHECK(cap.paused());
        cap.resume();
        CHECK(run_until(&loop, [&] { return lines.size() == 1; }));

        // Fill the pipe while paused: the writer is stuck (EAGAIN), nothing is read or lost.
        cap.pause();
        const std::uint64_t before = cap.bytes();
        REQUIRE(::fcntl(out.wr, F_SETFL, ::fcntl(out.wr, F_GETFL) | O_NONBLOCK) == 0);
        std::uint64_t written = 0, k = 0;
        std::string pending;
        for (;;) {
            if (pending.empty()) pending = "line " + std::to_string(k++) + "\n";
            const ssize_t w = ::write(out.wr, pending.data(), pending.size());
            if (w < 0) {
                REQUIRE(errno == EAGAIN);
                break;
            }
            written += static_cast<std::uint64_t>(w);
            pending.erase(0, static_cast<std::size_t>(w));
        }
        run_for(&loop, 50);
        CHECK(cap.bytes() == before);
        cap.resume();
        CHECK(run_until(&loop, [&] { return cap.bytes() > before; }));
        // The pipe has room again: finish the line cut by EAGAIN.
        REQUIRE(::fcntl(out.wr, F_SETFL, ::fcntl(out.wr, F_GETFL) & ~O_NONBLOCK) == 0);
        write_all(out.wr, pending);
        out.close_wr();
        CHECK(run_until(&loop, [&] { return eof; }));
        REQUIRE(lines.size() == k + 1);
        for (std::uint64_t i = 0; i < k; ++i)
            CHECK(lines[i + 1] == "line " + std::to_string(i));
        CHECK(written > 0);
        cap.close(nullptr);
        CHECK(close_loop(&loop) == 0);
    }

    TEST_CASE("lines written just before SIGKILL are delivered before EOF") {
        uv_loop_t loop;
        uv_loop_init(&loop);
        Pipe out, err;
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            // Child: async-signal-safe calls only.
            ::close(out.rd);
            ::close(err.rd);
            char line[32];
            for (int i = 0; i < 5000; ++i) {
                int len = 0;
                char digits[12];
                int v = i, d = 0;
                do {
                    digits[d++] = static_cast<char>('0' + v % 10);
                    v /= 10;
                } while (v > 0);
                line[len++] = 'n';
                while (d > 0)
                    line[len++] = digits[--d];
                line[len++] = '\n';
                (void)!::write(out.wr, line, static_cast<std::size_t>(len));
            }
            (void)!::write(err.wr, "dying without newline", 21);
            ::kill(::getpid(), SIGKILL);
            ::_exit(1);
        }
        out.close_wr();
        err.close_wr();
        Collected got;
        Capture cap(&loop, out.rd, err.rd, CaptureOptions{}, got.callbacks());
        REQUIRE(cap.start() == 0);
        CHECK(run_until(
            &loop, [&] { return got.eofs == 1; }, 20000));
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        CHECK(WIFSIGNALED(status));
        REQUIRE(got.out.size() == 5000);
        for (int i = 0; i < 5000; ++i)
            CHECK(got.out[static_cast<std::size_t>(i)] == "n" + std::to_string(i));
        CHECK(got.err == std::vector<std::string>{"dying without newline"});
        cap.close(nullptr);
        CHECK(close_loop(&loop) == 0);
    }

    TEST_CASE("capture may be destroyed from its own callbacks, before or after close") {
        uv_loop_t loop;
        uv_loop_init(&loop);
        {
            Pipe out;
            std::unique_ptr<Capture> cap;
            int lines = 0;
            cap = std::make_unique<Capture>(
                &loop, out.rd, -1, CaptureOptions{},
                Capture::Callbacks{[&](Stream, std::string_view, bool) {
                                       ++lines;
                                       cap.reset(); // destroyed mid-read: later lines are dropped
                                   },
                                   nullptr, nullptr});
            write_all(out.wr, "a\nb\nc\n");
            REQUIRE(cap->start() == 0);
            CHECK(run_until(&loop, [&] { return cap == nullptr; }));
            CHECK(lines == 1);
        }
        {
            Pipe out;
            auto cap = std::make_unique<Capture>(&loop, out.rd, -1, CaptureOptions{},
                                                 Capture::Callbacks{});
            bool closed = false;
            cap->close([&] {
                closed = true;
                cap.reset(); // the usual pattern: free the owner in the close callback
            });
            CHECK(run_until(&loop, [&] { return closed; }));
            CHECK(cap == nullptr);
        }
        {
            Pipe out; // never started: the destructor closes the fd
            auto cap = std::make_unique<Capture>(&loop, out.rd, -1, CaptureOptions{},
                                                 Capture::Callbacks{});
            cap.reset();
        }
        {
            bool eof = false; // no fds at all: EOF at once
            Capture cap(&loop, -1, -1, CaptureOptions{},
                        Capture::Callbacks{nullptr, nullptr, [&] { eof = true; }});
            CHECK(cap.start() == 0);
            CHECK(eof);
        }
        CHECK(close_loop(&loop) == 0);
    }

    TEST_CASE("capture with on_lines: runs and single lines carry every line once, in order") {
        // Numbered lines, some over-long (split into pieces), written by a thread in odd chunk
        // sizes: runs go to on_lines, the rest to on_line, and together they are the stream.
        uv_loop_t loop;
        uv_loop_init(&loop);
        Pipe out;
        const std::size_t max_line = 64;
        std::string expected_text; // the stream as records: line + ('\\' if continued) + '\n'
        std::string got_text;
        std::uint64_t runs = 0, run_lines = 0, singles = 0;
        bool eof = false;
        CaptureOptions opts{max_line, 1u << 20, 0, 1u << 20};
        Capture cap(&loop, out.rd, -1, opts,
                    Capture::Callbacks{[&](Stream, std::string_view l, bool c) {
                                           ++singles;
                                           got_text.append(l);
                                           got_text += c ? "\\\n" : "\n";
                                       },
                                       nullptr, [&] { eof = true; },
                                       [&](Stream, std::string_view run, std::size_t count) {
                                           ++runs;
                                           run_lines += count;
                                           for_each_line(run, [&](std::string_view l) {
                                               CHECK(l.size() <= max_line);
                                               got_text.append(l);
                                               got_text += "\n";
                                           });
                                       }});
        std::string input;
        for (int i = 0; i < 100000; ++i) {
            std::string l = "seq " + std::to_string(i);
            if (i % 1000 == 7) l += std::string(150, 'L'); // 3 pieces
            input += l + "\n";
            while (l.size() > max_line) {
                expected_text += l.substr(0, max_line) + "\\\n";
                l.erase(0, max_line);
            }
            expected_text += l + "\n";
        }
        REQUIRE(cap.start() == 0);
        std::thread writer([&] {
            std::size_t i = 0, k = 0;
            while (i < input.size()) {
                const std::size_t n =
                    std::min<std::size_t>(1 + (k++ * 7919) % 40000, input.size() - i);
                write_all(out.wr, std::string_view(input).substr(i, n));
                i += n;
            }
            out.close_wr();
        });
        CHECK(run_until(
            &loop, [&] { return eof; }, 30000));
        writer.join();
        CHECK(got_text == expected_text);
        CHECK(runs > 0);
        CHECK(singles >= 100 * 2); // at least the continued pieces
        CHECK(cap.lines() == run_lines + singles);
        cap.close(nullptr);
        CHECK(close_loop(&loop) == 0);
    }

    TEST_CASE("capture grows the pipe of a writer that fills it, only when asked to") {
        for (const std::size_t grow : {std::size_t{0}, std::size_t{1} << 20}) {
            uv_loop_t loop;
            uv_loop_init(&loop);
            Pipe out;
            const int before = ::fcntl(out.wr, F_GETPIPE_SZ);
            REQUIRE(before == 65536);
            // A full pipe before the first read: the writer is fast.
            write_all(out.wr, std::string(65535, 'x') + "\n");
            std::size_t lines = 0;
            CaptureOptions opts{1u << 20, 1u << 20, 0, grow};
            Capture cap(&loop, out.rd, -1, opts,
                        Capture::Callbacks{[&](Stream, std::string_view, bool) { ++lines; },
                                           nullptr, nullptr});
            REQUIRE(cap.start() == 0);
            CHECK(run_until(&loop, [&] { return lines == 1; }));
            CHECK(::fcntl(out.wr, F_GETPIPE_SZ) == (grow == 0 ? before : static_cast<int>(grow)));
            cap.close(nullptr);
            CHECK(close_loop(&loop) == 0);
        }
    }

    TEST_CASE("capture_options: big reads and pipes only for output that is not forwarded") {
        vigil::unit::LogSpec spec;
        spec.max_line = 1234;
        const CaptureOptions fwd = capture_options(spec);
        CHECK(fwd.max_line == 1234);
        CHECK(fwd.read_buffer == 64u << 10);
        CHECK(fwd.grow_pipe == 0);
        CHECK(fwd.pipe_size == 0);
        spec.forward = false;
        const CaptureOptions quiet = capture_options(spec);
        CHECK(quiet.max_line == 1234);
        CHECK(quiet.read_buffer == 1u << 20);
        CHECK(quiet.grow_pipe == 1u << 20);
    }

} // TEST_SUITE

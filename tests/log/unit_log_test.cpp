// UnitLog: one line reaches ring, file, forwarder and patterns; flush returns the hits. The log
// writer thread: back-pressure from a blocked FIFO without stopping the loop, identity, reopen.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "files.hpp"
#include "loop_util.hpp"
#include "vigil/log/capture.hpp"
#include "vigil/log/unit_log.hpp"
#include "vigil/log/wiring.hpp"

namespace fs = std::filesystem;
using namespace vigil;
using namespace vigil::log;
using vigil::log::test::close_loop;
using vigil::log::test::run_for;
using vigil::log::test::run_until;

using vigil::test::slurp;

namespace {

int wall_reads = 0;
WallMs fake_wall() noexcept {
    ++wall_reads;
    return 1'764'149'889'000 + wall_reads;
}

// A wall clock the test sets: two unit logs read the same time.
WallMs set_wall = 0;
WallMs read_set_wall() noexcept {
    return set_wall;
}

unit::PatternSpec pat(std::string m, unit::PatternAction a, unit::Stream s = unit::Stream::Both) {
    unit::PatternSpec p;
    p.match = std::move(m);
    p.action = a;
    p.stream = s;
    return p;
}

std::vector<std::string> sorted_hits(std::span<const PatternHit> hits) {
    std::vector<std::string> v;
    for (const auto &h : hits)
        v.push_back(h.pattern + ": " + h.line);
    std::sort(v.begin(), v.end());
    return v;
}

// The usual loop-and-writer pair of these tests; the writer is closed before the loop.
struct Writer {
    uv_loop_t loop{};
    std::unique_ptr<LogWriter> writer;
    Writer() {
        uv_loop_init(&loop);
        writer = std::make_unique<LogWriter>(&loop);
    }
    ~Writer() {
        writer->close(nullptr);
        writer.reset();
        CHECK(close_loop(&loop) == 0);
    }
    bool flush() { return writer->flush_blocking(Duration{10000}); }
    UnitLogSinks sinks(Forwarder *fw = nullptr) { return UnitLogSinks{fw, writer->factory()}; }
};

} // namespace

TEST_SUITE("log") {

    TEST_CASE("unit log feeds every sink and reports pattern hits on flush") {
        Writer w;
        uv_loop_t &loop = w.loop;
        char dir[] = "/tmp/vigil-unitlog-XXXXXX";
        REQUIRE(::mkdtemp(dir) != nullptr);
        const fs::path file = fs::path(dir) / "web.log";
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
        {
            Forwarder fw(&loop, ForwarderOptions{fds[1], false});
            unit::LogSpec spec;
            spec.file = file.string();
            spec.timestamps = true;
            spec.ring = 1024;
            auto pats = PatternSet::compile(
                {pat("OutOfMemoryError", unit::PatternAction::Restart),
                 pat("^warn", unit::PatternAction::Event, unit::Stream::Stderr)});
            REQUIRE(pats);
            SeqCounter seq;
            seq.next = 100;
            wall_reads = 0;
            UnitLog ul("web", spec, FileIdentity{}, std::move(*pats), w.sinks(&fw), seq, fake_wall);
            ul.line(Stream::Stdout, "starting", false, at_ms(10));
            ul.line(Stream::Stderr, "warn: low disk", false, at_ms(10));
            ul.line(Stream::Stdout, "java.lang.OutOfMemoryError: heap", false, at_ms(10));
            ul.line(Stream::Stdout, "warn: not stderr", false, at_ms(11));
            CHECK(wall_reads == 2); // one read per distinct `now`
            const auto hits = ul.flush(at_ms(11));
            REQUIRE(hits.size() == 2);
            CHECK(sorted_hits(hits) ==
                  std::vector<std::string>{"OutOfMemoryError: java.lang.OutOfMemoryError: heap",
                                           "^warn: warn: low disk"});
            for (const auto &h : hits) {
                if (h.pattern == "OutOfMemoryError") {
                    CHECK(h.action == unit::PatternAction::Restart);
                    CHECK(h.line == "java.lang.OutOfMemoryError: heap");
                }
            }
            CHECK(ul.flush(at_ms(12)).empty());

            const auto ring = ul.ring().last(10);
            REQUIRE(ring.size() == 4);
            CHECK(ring[0].seq == 100);
            CHECK(ring[3].seq == 103);
            CHECK(ring[1].stream == Stream::Stderr);
            CHECK(ring[3].wall == 1'764'149'889'002);
            CHECK(seq.next == 104);

            const auto c = ul.counters();
            CHECK(c.lines == 4);
            CHECK(c.bytes == 8 + 14 + 32 + 16);
            CHECK(c.lines_failed == 0);
            CHECK(c.pattern_hits == 2);

            CHECK(w.flush());
            CHECK(slurp(file) == "2025-11-26T09:38:09.001Z starting\n"
                                 "2025-11-26T09:38:09.001Z warn: low disk\n"
                                 "2025-11-26T09:38:09.001Z java.lang.OutOfMemoryError: heap\n"
                                 "2025-11-26T09:38:09.002Z warn: not stderr\n");
            CHECK(run_until(&loop, [&] { return fw.queued() == 0; }));
            std::string got;
            char buf[4096];
            for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;)
                got.append(buf, static_cast<std::size_t>(n));
            CHECK(got == "web | 2025-11-26T09:38:09.001Z starting\n"
                         "web ! 2025-11-26T09:38:09.001Z warn: low disk\n"
                         "web | 2025-11-26T09:38:09.001Z java.lang.OutOfMemoryError: heap\n"
                         "web | 2025-11-26T09:38:09.002Z warn: not stderr\n");
            int reopened = -1;
            ul.reopen([&](int err, const std::string &) { reopened = err; });
            CHECK(run_until(&loop, [&] { return reopened == 0; }));
            fw.close(nullptr);
        }
        ::close(fds[0]);
        ::close(fds[1]);
        fs::remove_all(dir);
    }

    TEST_CASE("unit log without file, forwarder or patterns keeps the ring only") {
        unit::LogSpec spec;
        spec.forward = true; // but no forwarder given
        spec.ring = 16;
        SeqCounter seq;
        UnitLog ul("quiet", spec, FileIdentity{}, PatternSet{}, UnitLogSinks{}, seq, fake_wall);
        for (int i = 0; i < 100; ++i)
            ul.line(Stream::Stdout, "0123456", false, at_ms(i));
        CHECK(ul.flush(at_ms(100)).empty());
        CHECK(ul.file() == nullptr);
        CHECK(ul.ring().size() == 2);
        CHECK(ul.ring().last_seq() == 100);
        CHECK(ul.counters().lines == 100);
        int reopened = -1;
        ul.reopen([&](int err, const std::string &) { reopened = err; });
        CHECK(reopened == 0);
    }

    TEST_CASE("unit log counts file write failures, and tells the loop") {
        Writer w;
        unit::LogSpec spec;
        spec.file = "/dev/full";
        SeqCounter seq;
        UnitLog ul("full", spec, FileIdentity{}, PatternSet{}, w.sinks(), seq, fake_wall);
        int failures = 0;
        ul.set_file_events(FileSinkEvents{nullptr, [&] { ++failures; }});
        for (int i = 0; i < 3; ++i)
            ul.line(Stream::Stdout, "x", false, at_ms(0));
        (void)ul.flush(at_ms(0));
        CHECK(w.flush());
        CHECK(ul.counters().lines_failed == 3);
        CHECK(ul.file()->counters().last_error == ENOSPC);
        CHECK(ul.file()->counters().last_error_text ==
              "cannot write /dev/full: No space left on device");
        CHECK(run_until(&w.loop, [&] { return failures > 0; }));
    }

    TEST_CASE("a unit with a file but no writer counts every line as failed") {
        unit::LogSpec spec;
        spec.file = "/tmp/never-written.log";
        SeqCounter seq;
        UnitLog ul("nofile", spec, FileIdentity{}, PatternSet{}, UnitLogSinks{}, seq, fake_wall);
        ul.line(Stream::Stdout, "x", false, at_ms(0));
        ul.lines(Stream::Stdout, "a\nb\n", 2, at_ms(0));
        CHECK(ul.counters().lines_failed == 3);
        int err = 0;
        ul.reopen([&](int e, const std::string &) { err = e; });
        CHECK(err == ECANCELED);
    }

    TEST_CASE(
        "wiring: capture -> unit log, ready.log once, hits per batch, EOF after the last flush") {
        Writer w;
        uv_loop_t &loop = w.loop;
        char dir[] = "/tmp/vigil-wiring-XXXXXX";
        REQUIRE(::mkdtemp(dir) != nullptr);
        const fs::path file = fs::path(dir) / "svc.log";
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
        REQUIRE(::fcntl(fds[0], F_SETFL, O_NONBLOCK) == 0);
        {
            unit::LogSpec spec;
            spec.file = file.string();
            auto pats = PatternSet::compile({pat("FATAL", unit::PatternAction::Stop)});
            REQUIRE(pats);
            SeqCounter seq;
            UnitLog ul("svc", spec, FileIdentity{}, std::move(*pats), w.sinks(), seq);
            auto ready = Regex::compile("^listening on :\\d+$");
            REQUIRE(ready);
            int readies = 0, eofs = 0, batches = 0;
            std::vector<std::string> hit_lines;
            std::string file_at_eof;
            Capture cap(&loop, fds[0], -1, CaptureOptions{},
                        wire(ul, &loop,
                             Wiring{[&](std::span<const PatternHit> hits) {
                                        for (const auto &h : hits)
                                            hit_lines.push_back(h.line);
                                    },
                                    [&] {
                                        ++eofs;
                                        // Everything was handed over: once written, all of it.
                                        CHECK(w.flush());
                                        file_at_eof = slurp(file);
                                    },
                                    &*ready, [&] { ++readies; }, [&] { ++batches; }}));
            REQUIRE(cap.start() == 0);
            const std::string text =
                "booting\nlistening on :8080\nlistening on :8080\nFATAL: x\nlast";
            REQUIRE(::write(fds[1], text.data(), text.size()) == static_cast<ssize_t>(text.size()));
            ::close(fds[1]);
            CHECK(run_until(&loop, [&] { return eofs == 1; }));
            CHECK(readies == 1);
            CHECK(batches >= 2); // at least the data and the EOF
            CHECK(hit_lines == std::vector<std::string>{"FATAL: x"});
            CHECK(file_at_eof == text + "\n"); // everything, the final partial line included
            CHECK(ul.ring().size() == 5);
            cap.close(nullptr);
        }
        fs::remove_all(dir);
    }

    TEST_CASE("unit log reconfigure: new patterns, new file, resized ring keeps the newest lines") {
        Writer w;
        char dir[] = "/tmp/vigil-reconf-XXXXXX";
        REQUIRE(::mkdtemp(dir) != nullptr);
        unit::LogSpec spec;
        spec.ring = 1000;
        spec.file = (fs::path(dir) / "a.log").string();
        SeqCounter seq;
        auto p1 = PatternSet::compile({pat("old", unit::PatternAction::Event)});
        REQUIRE(p1);
        UnitLog ul("r", spec, FileIdentity{}, std::move(*p1), w.sinks(), seq, fake_wall);
        for (int i = 0; i < 10; ++i)
            ul.line(Stream::Stdout, "line " + std::to_string(i), false, at_ms(0));
        ul.line(Stream::Stdout, "old", false, at_ms(0)); // staged, not yet matched
        auto p2 = PatternSet::compile({pat("new", unit::PatternAction::Stop)});
        REQUIRE(p2);
        unit::LogSpec spec2 = spec;
        spec2.ring = 16;
        spec2.file = (fs::path(dir) / "b.log").string();
        ul.reconfigure(spec2, FileIdentity{}, std::move(*p2), at_ms(1));
        ul.line(Stream::Stdout, "new", false, at_ms(2));
        ul.line(Stream::Stdout, "old", false, at_ms(2));
        const auto hits = ul.flush(at_ms(2));
        // "old" by the old set (staged before the reload), "new" by the new one: each hit names
        // its own pattern and action, though the old pattern is in no list any more.
        CHECK(sorted_hits(hits) == std::vector<std::string>{"new: new", "old: old"});
        for (const auto &h : hits)
            CHECK(h.action ==
                  (h.pattern == "old" ? unit::PatternAction::Event : unit::PatternAction::Stop));
        CHECK(ul.patterns().size() == 1);
        CHECK(w.flush());
        CHECK(slurp(fs::path(dir) / "a.log").starts_with("line 0\n"));
        CHECK(slurp(fs::path(dir) / "a.log").ends_with("old\n"));
        CHECK(slurp(fs::path(dir) / "b.log") == "new\nold\n");
        const auto ring = ul.ring().last(SIZE_MAX);
        REQUIRE(!ring.empty());
        CHECK(ul.ring().used() <= 16);
        CHECK(ring.back().text == "old");
        CHECK(ring.back().seq == 13);
        fs::remove_all(dir);
    }

    TEST_CASE("unit log lines(): a run has the effect of line() per line on every sink") {
        // Two unit logs with every sink, one fed line by line and one with runs (small ones,
        // staged for the patterns, and big ones, matched in place and written without a copy):
        // same ring, same file, same forwarded output, same pattern hits, same counters.
        // A pattern's budget on a block (Regex::budget_ns) is thread CPU time: under a sanitizer
        // on a busy machine it can run out, and the two then give up on different lines. The
        // hits are compared in a run where neither gave up on any; such a run is tried 5 times.
        for (const bool ts : {false, true}) {
            bool compared = false;
            for (int attempt = 0; attempt < 5 && !compared; ++attempt) {
                Writer w;
                uv_loop_t &loop = w.loop;
                char dir[] = "/tmp/vigil-runs-XXXXXX";
                REQUIRE(::mkdtemp(dir) != nullptr);
                int fa[2], fb[2];
                REQUIRE(::pipe2(fa, O_CLOEXEC | O_NONBLOCK) == 0);
                REQUIRE(::pipe2(fb, O_CLOEXEC | O_NONBLOCK) == 0);
                REQUIRE(::fcntl(fa[1], F_SETPIPE_SZ, 1 << 20) > 0);
                REQUIRE(::fcntl(fb[1], F_SETPIPE_SZ, 1 << 20) > 0);
                {
                    Forwarder fwa(&loop, ForwarderOptions{fa[1], false});
                    Forwarder fwb(&loop, ForwarderOptions{fb[1], false});
                    auto make = [&](const char *file, Forwarder &fw, SeqCounter &seq) {
                        unit::LogSpec spec;
                        spec.file = (fs::path(dir) / file).string();
                        spec.max_size = 5000;
                        spec.keep = 100;
                        spec.timestamps = ts;
                        spec.ring = 3000;
                        auto pats = PatternSet::compile(
                            {pat("boom [0-9]+$", unit::PatternAction::Event),
                             pat("^err", unit::PatternAction::Restart, unit::Stream::Stderr)});
                        REQUIRE(pats);
                        return std::make_unique<UnitLog>("u", spec, FileIdentity{},
                                                         std::move(*pats), w.sinks(&fw), seq,
                                                         read_set_wall);
                    };
                    SeqCounter sa, sb;
                    auto a = make("a.log", fwa, sa);
                    auto b = make("b.log", fwb, sb);
                    std::vector<std::string> hits_a, hits_b;
                    auto collect = [](std::span<const PatternHit> hits,
                                      std::vector<std::string> &to) {
                        for (const auto &h : hits)
                            to.push_back(h.pattern + " " + h.line);
                    };
                    int n = 0;
                    for (int round = 0; round < 40; ++round) {
                        const Stream stream = round % 3 == 2 ? Stream::Stderr : Stream::Stdout;
                        set_wall = 1'764'149'889'000 + round * 377;
                        const int count = round % 4 == 0 ? 400 : 1 + round % 5; // big or small
                        std::string run;
                        for (int k = 0; k < count; ++k, ++n) {
                            const std::string l = (n % 7 == 0 ? "err " : "ok ") +
                                                  std::to_string(n) +
                                                  (n % 50 == 0 ? " boom " + std::to_string(n) : "");
                            a->line(stream, l, false, at_ms(round));
                            run += l + "\n";
                        }
                        b->lines(stream, run, static_cast<std::size_t>(count), at_ms(round));
                        if (round % 3 == 0) {
                            collect(a->flush(at_ms(round)), hits_a);
                            collect(b->flush(at_ms(round)), hits_b);
                        }
                    }
                    collect(a->flush(at_ms(99)), hits_a);
                    collect(b->flush(at_ms(99)), hits_b);
                    std::sort(hits_a.begin(), hits_a.end());
                    std::sort(hits_b.begin(), hits_b.end());
                    CHECK(sa.next == sb.next);
                    const auto ca = a->counters(), cb = b->counters();
                    CHECK(ca.lines == cb.lines);
                    CHECK(ca.bytes == cb.bytes);
                    if (ca.pattern_limited == 0 && cb.pattern_limited == 0) {
                        compared = true;
                        CHECK(hits_a.size() > 10);
                        CHECK(hits_a == hits_b);
                        CHECK(ca.pattern_hits == cb.pattern_hits);
                    } else {
                        MESSAGE("attempt " << attempt << ": a pattern's budget ran out ("
                                           << ca.pattern_limited << " and " << cb.pattern_limited
                                           << " lines not tried)");
                    }
                    CHECK(cb.lines_failed == 0);
                    CHECK(w.flush());
                    CHECK(a->file()->counters().rotations == b->file()->counters().rotations);
                    CHECK(b->file()->counters().rotations > 3);
                    // The rings: the newest lines of both, same text, numbers and times (how many
                    // fit differs a little: the lines are laid out at other offsets).
                    const auto ra = a->ring().last(SIZE_MAX), rb = b->ring().last(SIZE_MAX);
                    REQUIRE(ra.size() > 10);
                    REQUIRE(rb.size() > 10);
                    for (std::size_t k = 1; k <= std::min(ra.size(), rb.size()); ++k) {
                        const auto &x = ra[ra.size() - k], &y = rb[rb.size() - k];
                        CHECK(x.seq == y.seq);
                        CHECK(x.wall == y.wall);
                        CHECK(x.stream == y.stream);
                        CHECK(x.text == y.text);
                    }
                    a.reset(); // hands over the rest; the writer closes the files
                    b.reset();
                    CHECK(w.flush());
                    for (int k = 0; k <= 100; ++k) {
                        const std::string sfx = k == 0 ? "" : "." + std::to_string(k);
                        const fs::path pa = fs::path(dir) / ("a.log" + sfx);
                        const fs::path pb = fs::path(dir) / ("b.log" + sfx);
                        CHECK(fs::exists(pa) == fs::exists(pb));
                        if (fs::exists(pa)) CHECK(slurp(pa) == slurp(pb));
                    }
                    CHECK(run_until(&loop, [&] { return fwa.queued() == 0 && fwb.queued() == 0; }));
                    auto drain = [](int fd) {
                        std::string got;
                        char buf[65536];
                        for (ssize_t r; (r = ::read(fd, buf, sizeof buf)) > 0;)
                            got.append(buf, static_cast<std::size_t>(r));
                        return got;
                    };
                    const std::string fa_out = drain(fa[0]);
                    CHECK(fa_out.size() > 10000);
                    CHECK(fa_out == drain(fb[0]));
                    fwa.close(nullptr);
                    fwb.close(nullptr);
                }
                for (int fd : {fa[0], fa[1], fb[0], fb[1]})
                    ::close(fd);
                fs::remove_all(dir);
            }
            CHECK(compared);
        }
    }

    TEST_CASE("a FIFO whose reader stops: pressure on, the loop runs on, every line arrives once") {
        Writer w;
        char dir[] = "/tmp/vigil-fifo-XXXXXX";
        REQUIRE(::mkdtemp(dir) != nullptr);
        const fs::path fifo = fs::path(dir) / "out";
        REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
        const int rd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        REQUIRE(rd >= 0);
        FileSinkOptions o;
        o.path = fifo.string();
        o.high_water = 64u << 10;
        o.low_water = 16u << 10;
        auto sink = w.writer->open(o);
        std::vector<bool> pressure;
        sink->set_events(FileSinkEvents{[&](bool c) { pressure.push_back(c); }, nullptr});
        // The reader reads nothing: the pipe fills, the writer stops on it, then the queue
        // grows past high water and stays there. (Before the pipe is full the pressure may come
        // and go: the pipe takes what was queued. Twice the pipe's size over high water is
        // more than the pipe can take away.)
        const auto pipe_size = static_cast<std::size_t>(::fcntl(rd, F_GETPIPE_SZ));
        std::string want;
        int i = 0;
        while (!(sink->congested() && sink->counters().queued >= o.high_water + 2 * pipe_size) &&
               i < 1'000'000) {
            const std::string l = "line " + std::to_string(i++) + " of the FIFO test";
            sink->append(l, false, 0);
            want += l + "\n";
            if (i % 100 == 0) {
                sink->flush();
                uv_run(&w.loop, UV_RUN_NOWAIT);
            }
        }
        REQUIRE(sink->congested());
        REQUIRE(!pressure.empty());
        CHECK(pressure.back());
        // Meanwhile the loop is free: a 10 ms timer keeps its schedule.
        uv_timer_t timer;
        uv_timer_init(&w.loop, &timer);
        int ticks = 0;
        timer.data = &ticks;
        uv_timer_start(
            &timer, [](uv_timer_t *t) { ++*static_cast<int *>(t->data); }, 10, 10);
        const auto t0 = std::chrono::steady_clock::now();
        run_for(&w.loop, 300);
        const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::steady_clock::now() - t0)
                                 .count();
        CHECK(ticks >= elapsed / 10 / 2); // at least half the ticks (a loaded machine)
        CHECK(ticks >= 10);
        INFO("queued ", sink->counters().queued, " written ", sink->counters().lines_written,
             " of ", i);
        CHECK(sink->congested()); // still: nothing was read
        const std::size_t events = pressure.size();
        CHECK(sink->counters().lines_failed == 0);
        // The reader drains: the pressure goes away and every line arrives, once, in order.
        std::string got;
        std::thread reader([&] {
            char buf[65536];
            const auto deadline =
                std::chrono::steady_clock::now() + vigil::log::test::scaled(20000);
            while (got.size() < want.size() && std::chrono::steady_clock::now() < deadline) {
                const ssize_t n = ::read(rd, buf, sizeof buf);
                if (n > 0)
                    got.append(buf, static_cast<std::size_t>(n));
                else
                    std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
        });
        CHECK(run_until(
            &w.loop, [&] { return pressure.size() > events; }, 20000));
        CHECK(pressure.size() == events + 1);
        CHECK_FALSE(pressure.back());
        CHECK(w.flush());
        reader.join();
        CHECK(got.size() == want.size());
        if (got != want) {
            std::size_t k = 0;
            while (k < got.size() && k < want.size() && got[k] == want[k])
                ++k;
            INFO("first difference at ", k, ": got '", got.substr(k > 40 ? k - 40 : 0, 120),
                 "' want '", want.substr(k > 40 ? k - 40 : 0, 120), "'");
            CHECK(got == want);
        }
        const auto c = sink->counters();
        CHECK(c.lines_written == static_cast<std::uint64_t>(i));
        CHECK(c.lines_failed == 0);
        CHECK_FALSE(c.rotates);
        CHECK_FALSE(sink->congested());
        uv_close(reinterpret_cast<uv_handle_t *>(&timer), nullptr);
        sink.reset();
        ::close(rd);
        fs::remove_all(dir);
    }

    TEST_CASE("unit log passes its file's events on, also to the sink a reload makes") {
        std::vector<MemoryFileSink *> made;
        FileSinkFactory memory = [&](FileSinkOptions o) {
            auto s = std::make_unique<MemoryFileSink>(std::move(o));
            made.push_back(s.get());
            return s;
        };
        unit::LogSpec spec;
        spec.file = "/logs/a.log";
        spec.timestamps = true;
        SeqCounter seq;
        set_wall = 1'764'149'889'123;
        UnitLog ul("m", spec, FileIdentity{}, PatternSet{}, UnitLogSinks{nullptr, memory}, seq,
                   read_set_wall);
        REQUIRE(made.size() == 1);
        std::vector<bool> pressure;
        ul.set_file_events(FileSinkEvents{[&](bool c) { pressure.push_back(c); }, nullptr});
        ul.line(Stream::Stdout, "one", false, at_ms(0));
        ul.lines(Stream::Stdout, "two\nthree\n", 2, at_ms(0));
        (void)ul.flush(at_ms(0));
        CHECK(made[0]->contents() == "2025-11-26T09:38:09.123Z one\n"
                                     "2025-11-26T09:38:09.123Z two\n"
                                     "2025-11-26T09:38:09.123Z three\n");
        made[0]->set_congested(true);
        CHECK(ul.congested());
        made[0]->set_congested(false);
        int reopened = -1;
        ul.reopen([&](int err, const std::string &) { reopened = err; });
        CHECK(reopened == 0);
        CHECK(made[0]->reopens() == 1);
        made[0]->fail(2, ENOSPC, "cannot write /logs/a.log: No space left on device");
        CHECK(ul.counters().lines_failed == 2);
        // A reload that changes the identity makes a new sink, with the same events.
        const FileIdentity other = FileIdentity::user(1000, 1000, {1000}, "alice");
        ul.reconfigure(spec, other, PatternSet{}, at_ms(1));
        REQUIRE(made.size() == 2);
        CHECK(made[1]->options().identity == other);
        CHECK(made[1]->options().path == "/logs/a.log");
        CHECK(ul.counters().lines_failed == 2); // the old file's failures stay counted
        made[1]->set_congested(true);
        CHECK(pressure == std::vector<bool>{true, false, true});
        // The same settings again: the sink stays.
        ul.reconfigure(spec, other, PatternSet{}, at_ms(2));
        CHECK(made.size() == 2);
        // A congested sink replaced by a reload: the pressure ends with it (the Captures it
        // paused would wait for ever otherwise).
        unit::LogSpec moved = spec;
        moved.file = "/logs/b.log";
        ul.reconfigure(moved, other, PatternSet{}, at_ms(3));
        REQUIRE(made.size() == 3);
        CHECK_FALSE(ul.congested());
        CHECK(pressure == std::vector<bool>{true, false, true, false});
    }

    TEST_CASE("as root, the writer thread opens a service's file as the service") {
        if (::geteuid() != 0) {
            MESSAGE("skipped: needs root");
            return;
        }
        Writer w;
        char dir[] = "/tmp/vigil-ident-XXXXXX";
        REQUIRE(::mkdtemp(dir) != nullptr);
        REQUIRE(::chmod(dir, 0755) == 0);
        const fs::path svc = fs::path(dir) / "svc", secret = fs::path(dir) / "secret";
        fs::create_directory(svc);
        REQUIRE(::chown(svc.c_str(), 65534, 65534) == 0);
        std::ofstream(secret) << "root data\n";
        fs::create_symlink(secret, svc / "app.log");
        unit::LogSpec spec;
        spec.file = (svc / "app.log").string();
        SeqCounter seq;
        UnitLog ul("svc", spec, FileIdentity::user(65534, 65534, {65534}, "nobody"), PatternSet{},
                   w.sinks(), seq, fake_wall);
        ul.line(Stream::Stdout, "* * * * * root evil", false, at_ms(0));
        (void)ul.flush(at_ms(0));
        CHECK(w.flush());
        const auto c = ul.file()->counters();
        CHECK(c.lines_failed == 1);
        CHECK_FALSE(c.open);
        CHECK(c.last_error_text.find("as user nobody: Permission denied (vigild opens a "
                                     "service's log file as the service's user") !=
              std::string::npos);
        CHECK(slurp(secret) == "root data\n");
        // A reopen that fails answers with the reason.
        std::string message;
        int err = 0;
        ul.reopen([&](int e, const std::string &m) {
            err = e;
            message = m;
        });
        CHECK(run_until(&w.loop, [&] { return err != 0; }));
        CHECK(err == EACCES);
        CHECK(message.find("as user nobody") != std::string::npos);
        fs::remove_all(dir);
    }

    TEST_CASE("sizes from a unit file are clamped: a 1 TiB ring is 64 MiB, allocated when used") {
        unit::LogSpec spec;
        spec.ring = 1ull << 40;
        spec.max_line = 4ull << 30;
        SeqCounter seq;
        UnitLog ul("big", spec, FileIdentity{}, PatternSet{}, UnitLogSinks{}, seq, fake_wall);
        CHECK(ul.ring().capacity() == ring_limit);
        ul.line(Stream::Stdout, "first", false, at_ms(0));
        CHECK(ul.ring().size() == 1);
        CHECK(capture_options(spec).max_line == max_line_limit);
    }

} // TEST_SUITE

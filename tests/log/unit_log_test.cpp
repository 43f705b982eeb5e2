// UnitLog: one line reaches ring, file, forwarder and patterns; flush returns the hits.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

#include "loop_util.hpp"
#include "vigil/log/unit_log.hpp"
#include "vigil/log/wiring.hpp"

namespace fs = std::filesystem;
using namespace vigil;
using namespace vigil::log;
using vigil::log::test::close_loop;
using vigil::log::test::run_until;

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

std::string slurp(const fs::path &p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

} // namespace

TEST_SUITE("log") {

    TEST_CASE("unit log feeds every sink and reports pattern hits on flush") {
        uv_loop_t loop;
        uv_loop_init(&loop);
        char dir[] = "/tmp/vigil-unitlog-XXXXXX";
        REQUIRE(::mkdtemp(dir) != nullptr);
        const fs::path file = fs::path(dir) / "web.log";
        int fds[2];
        REQUIRE(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
        {
            Forwarder fw(&loop, ForwarderOptions{fds[1], false, 1 << 20, 1 << 16});
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
            UnitLog ul("web", spec, std::move(*pats), &fw, seq, fake_wall);
            ul.line(Stream::Stdout, "starting", false, at_ms(10));
            ul.line(Stream::Stderr, "warn: low disk", false, at_ms(10));
            ul.line(Stream::Stdout, "java.lang.OutOfMemoryError: heap", false, at_ms(10));
            ul.line(Stream::Stdout, "warn: not stderr", false, at_ms(11));
            CHECK(wall_reads == 2); // one read per distinct `now`
            const auto hits = ul.flush(at_ms(11));
            REQUIRE(hits.size() == 2);
            std::vector<std::string> which{hits[0].pattern, hits[1].pattern};
            std::sort(which.begin(), which.end());
            CHECK(which == std::vector<std::string>{"OutOfMemoryError", "^warn"});
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

            CHECK(slurp(file) == "2025-11-26T09:38:09.001Z starting\n"
                                 "2025-11-26T09:38:09.001Z warn: low disk\n"
                                 "2025-11-26T09:38:09.001Z java.lang.OutOfMemoryError: heap\n"
                                 "2025-11-26T09:38:09.002Z warn: not stderr\n");
            CHECK(run_until(&loop, [&] { return fw.queued() == 0; }));
            char buf[4096];
            const ssize_t n = ::read(fds[0], buf, sizeof buf);
            REQUIRE(n > 0);
            CHECK(std::string(buf, static_cast<std::size_t>(n)) ==
                  "web | 2025-11-26T09:38:09.001Z starting\n"
                  "web ! 2025-11-26T09:38:09.001Z warn: low disk\n"
                  "web | 2025-11-26T09:38:09.001Z java.lang.OutOfMemoryError: heap\n"
                  "web | 2025-11-26T09:38:09.002Z warn: not stderr\n");
            CHECK(ul.reopen() == 0);
            fw.close(nullptr);
        }
        ::close(fds[0]);
        ::close(fds[1]);
        fs::remove_all(dir);
        CHECK(close_loop(&loop) == 0);
    }

    TEST_CASE("unit log without file, forwarder or patterns keeps the ring only") {
        unit::LogSpec spec;
        spec.forward = true; // but no forwarder given
        spec.ring = 16;
        SeqCounter seq;
        UnitLog ul("quiet", spec, PatternSet{}, nullptr, seq, fake_wall);
        for (int i = 0; i < 100; ++i)
            ul.line(Stream::Stdout, "0123456", false, at_ms(i));
        CHECK(ul.flush(at_ms(100)).empty());
        CHECK(ul.file() == nullptr);
        CHECK(ul.ring().size() == 2);
        CHECK(ul.ring().last_seq() == 100);
        CHECK(ul.counters().lines == 100);
        CHECK(ul.reopen() == 0);
    }

    TEST_CASE("unit log counts file write failures") {
        unit::LogSpec spec;
        spec.file = "/dev/full";
        SeqCounter seq;
        UnitLog ul("full", spec, PatternSet{}, nullptr, seq, fake_wall);
        for (int i = 0; i < 3; ++i)
            ul.line(Stream::Stdout, "x", false, at_ms(0));
        (void)ul.flush(at_ms(0));
        CHECK(ul.counters().lines_failed == 3);
        CHECK(ul.file()->last_error() == ENOSPC);
    }

    TEST_CASE(
        "wiring: capture -> unit log, ready.log once, hits per batch, EOF after the last flush") {
        uv_loop_t loop;
        uv_loop_init(&loop);
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
            UnitLog ul("svc", spec, std::move(*pats), nullptr, seq);
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
        CHECK(close_loop(&loop) == 0);
    }

    TEST_CASE("unit log reconfigure: new patterns, new file, resized ring keeps the newest lines") {
        char dir[] = "/tmp/vigil-reconf-XXXXXX";
        REQUIRE(::mkdtemp(dir) != nullptr);
        unit::LogSpec spec;
        spec.ring = 1000;
        spec.file = (fs::path(dir) / "a.log").string();
        SeqCounter seq;
        auto p1 = PatternSet::compile({pat("old", unit::PatternAction::Event)});
        REQUIRE(p1);
        UnitLog ul("r", spec, std::move(*p1), nullptr, seq, fake_wall);
        for (int i = 0; i < 10; ++i)
            ul.line(Stream::Stdout, "line " + std::to_string(i), false, at_ms(0));
        ul.line(Stream::Stdout, "old", false, at_ms(0)); // staged, not yet matched
        auto p2 = PatternSet::compile({pat("new", unit::PatternAction::Stop)});
        REQUIRE(p2);
        unit::LogSpec spec2 = spec;
        spec2.ring = 16;
        spec2.file = (fs::path(dir) / "b.log").string();
        ul.reconfigure(spec2, std::move(*p2), at_ms(1));
        ul.line(Stream::Stdout, "new", false, at_ms(2));
        ul.line(Stream::Stdout, "old", false, at_ms(2));
        const auto hits = ul.flush(at_ms(2));
        // "old" by the old set (staged before the reload), "new" by the new one: each hit names
        // its own pattern and action, though the old pattern is in no list any more.
        REQUIRE(hits.size() == 2);
        CHECK(((hits[0].line == "old" && hits[1].line == "new") ||
               (hits[0].line == "new" && hits[1].line == "old")));
        for (const auto &h : hits) {
            CHECK(h.pattern == h.line);
            CHECK(h.action ==
                  (h.pattern == "old" ? unit::PatternAction::Event : unit::PatternAction::Stop));
        }
        CHECK(ul.patterns().size() == 1);
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
        for (const bool ts : {false, true}) {
            uv_loop_t loop;
            uv_loop_init(&loop);
            char dir[] = "/tmp/vigil-runs-XXXXXX";
            REQUIRE(::mkdtemp(dir) != nullptr);
            int fa[2], fb[2];
            REQUIRE(::pipe2(fa, O_CLOEXEC | O_NONBLOCK) == 0);
            REQUIRE(::pipe2(fb, O_CLOEXEC | O_NONBLOCK) == 0);
            REQUIRE(::fcntl(fa[1], F_SETPIPE_SZ, 1 << 20) > 0);
            REQUIRE(::fcntl(fb[1], F_SETPIPE_SZ, 1 << 20) > 0);
            {
                Forwarder fwa(&loop, ForwarderOptions{fa[1], false, 4 << 20, 1 << 16});
                Forwarder fwb(&loop, ForwarderOptions{fb[1], false, 4 << 20, 1 << 16});
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
                    return std::make_unique<UnitLog>("u", spec, std::move(*pats), &fw, seq,
                                                     read_set_wall);
                };
                SeqCounter sa, sb;
                auto a = make("a.log", fwa, sa);
                auto b = make("b.log", fwb, sb);
                std::vector<std::string> hits_a, hits_b;
                auto collect = [](std::span<const PatternHit> hits, std::vector<std::string> &to) {
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
                        const std::string l = (n % 7 == 0 ? "err " : "ok ") + std::to_string(n) +
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
                CHECK(hits_a.size() > 10);
                CHECK(hits_a == hits_b);
                CHECK(sa.next == sb.next);
                const auto ca = a->counters(), cb = b->counters();
                CHECK(ca.lines == cb.lines);
                CHECK(ca.bytes == cb.bytes);
                CHECK(ca.pattern_hits == cb.pattern_hits);
                CHECK(cb.lines_failed == 0);
                CHECK(a->file()->rotations() == b->file()->rotations());
                CHECK(b->file()->rotations() > 3);
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
                a.reset(); // flushes and closes the files
                b.reset();
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
            CHECK(close_loop(&loop) == 0);
        }
    }

} // TEST_SUITE

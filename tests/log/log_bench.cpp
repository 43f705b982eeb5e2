// log_bench: throughput of the log path.
//
// A writer process pipes numbered lines into Capture -> UnitLog -> the log writer thread ->
// RotatingFile (in /tmp), like one service writing through vigild into a rotated file. At the end
// every line of every file is checked: sequence numbers 0..N-1, each exactly once, in order (0
// lost, duplicated or corrupted), and the pattern hits are counted against the lines injected to
// match.
//
//   log_bench [--mib N] [--patterns 0|10] [--line N] [--timestamps] [--pipe-size N]
//             [--read-buffer N] [--dir D] [--baseline] [--no-verify]
// --baseline measures the same pipe -> file copy with plain read(2)/write(2), for reference.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <memory>
#include <signal.h>
#include <string>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>
#include <vector>

#include "vigil/log/capture.hpp"
#include "vigil/log/file_sink.hpp"
#include "vigil/log/unit_log.hpp"
#include "vigil/log/wiring.hpp"

namespace fs = std::filesystem;
using namespace vigil;

namespace {

struct Options {
    std::uint64_t mib = 1024;
    int patterns = 0;
    std::size_t line = 100;
    bool timestamps = false;
    std::size_t pipe_size = 0;
    std::size_t read_buffer = 64u << 10;
    std::string dir = "/tmp/vigil-log-bench";
    bool baseline = false;
    bool verify = true;
};

// Every `inject_every` lines the writer emits a line that two of the patterns match.
constexpr std::uint64_t inject_every = 100000;

// Writes lines "<text ...> seq=000000000123\n" of `line` bytes until `total` bytes, in 64 KiB
// writes, then exits. Runs in a forked child.
[[noreturn]] void writer(int fd, std::uint64_t total, std::size_t line) {
    const std::string head = "2026-11-26T09:38:09.123Z INFO request handled method=GET "
                             "path=/api/v1/items status=200 duration_ms=12 ";
    const std::string err = "2026-11-26T09:38:09.123Z ERROR java.lang.OutOfMemoryError: heap ";
    const std::size_t tail = 17; // "seq=" + 12 digits + '\n'
    const std::size_t body = line > tail ? line - tail : 0;
    // Both line bodies prepared once: the writer must be much faster than the reader.
    std::string normal(body, 'x'), inject(body, 'x');
    normal.replace(0, std::min(body, head.size()), head.substr(0, body));
    inject.replace(0, std::min(body, err.size()), err.substr(0, body));
    std::vector<char> buf(1 << 16);
    std::size_t used = 0;
    std::uint64_t written = 0, seq = 0;
    char digits[12];
    std::memset(digits, '0', sizeof digits);
    while (written < total) {
        const std::string &text = seq % inject_every == inject_every - 1 ? inject : normal;
        if (used + body + tail > buf.size()) {
            for (std::size_t off = 0; off < used;) {
                const ssize_t n = ::write(fd, buf.data() + off, used - off);
                if (n < 0 && errno == EINTR) continue;
                if (n <= 0) ::_exit(2);
                off += static_cast<std::size_t>(n);
            }
            used = 0;
        }
        char *p = buf.data() + used;
        std::memcpy(p, text.data(), body);
        p += body;
        std::memcpy(p, "seq=", 4);
        std::memcpy(p + 4, digits, 12);
        p[16] = '\n';
        for (int d = 11; d >= 0 && ++digits[d] > '9'; --d)
            digits[d] = '0'; // seq + 1
        used += body + tail;
        written += body + tail;
        ++seq;
    }
    for (std::size_t off = 0; off < used;) {
        const ssize_t n = ::write(fd, buf.data() + off, used - off);
        if (n <= 0) ::_exit(2);
        off += static_cast<std::size_t>(n);
    }
    ::_exit(0);
}

std::vector<unit::PatternSpec> ten_patterns() {
    const char *ps[] = {
        "OutOfMemoryError",                    // literal (matches the injected lines)
        "Segmentation fault",                  // literal
        "panic: ",                             // literal
        "java\\.lang\\.\\w+Exception",         // prefilter
        "FATAL: .* shutting down",             // prefilter
        "timeout after \\d+ ?ms",              // prefilter
        "(?i)deadlock detected",               // block regex
        "^\\S+ ERROR\\b",                      // block regex (matches the injected lines)
        "connection (refused|reset) by peer",  // prefilter
        "(?:disk|filesystem) (full|read-only)" // block regex
    };
    std::vector<unit::PatternSpec> out;
    for (const char *p : ps) {
        unit::PatternSpec s;
        s.match = p;
        s.action = unit::PatternAction::Event;
        out.push_back(s);
    }
    return out;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Checks every file (oldest first). Returns the number of lines, or -1 on a sequence error.
long long verify(const fs::path &file, unsigned keep) {
    std::uint64_t expect = 0;
    std::vector<fs::path> files;
    for (unsigned k = keep; k >= 1; --k) {
        fs::path p = file.string() + "." + std::to_string(k);
        if (fs::exists(p)) files.push_back(p);
    }
    files.push_back(file);
    std::vector<char> buf(1 << 20);
    for (const auto &p : files) {
        const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return -1;
        std::string carry;
        for (ssize_t n; (n = ::read(fd, buf.data(), buf.size())) > 0;) {
            carry.append(buf.data(), static_cast<std::size_t>(n));
            std::size_t start = 0;
            for (std::size_t nl; (nl = carry.find('\n', start)) != std::string::npos;
                 start = nl + 1) {
                if (nl > start && carry[nl - 1] == '\\') continue; // a piece: more follows
                const auto at = carry.rfind("seq=", nl);
                if (at == std::string::npos || at < start || nl - at != 16) {
                    std::fprintf(stderr, "corrupt line in %s\n", p.c_str());
                    return -1;
                }
                const std::uint64_t got = std::strtoull(carry.c_str() + at + 4, nullptr, 10);
                if (got != expect) {
                    std::fprintf(stderr, "%s: expected seq %llu, got %llu\n", p.c_str(),
                                 static_cast<unsigned long long>(expect),
                                 static_cast<unsigned long long>(got));
                    return -1;
                }
                ++expect;
            }
            carry.erase(0, start);
        }
        ::close(fd);
        if (!carry.empty()) return -1;
    }
    return static_cast<long long>(expect);
}

} // namespace

int main(int argc, char **argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&] { return i + 1 < argc ? std::string(argv[++i]) : std::string(); };
        if (a == "--mib")
            o.mib = std::stoull(next());
        else if (a == "--patterns")
            o.patterns = std::stoi(next());
        else if (a == "--line")
            o.line = std::stoul(next());
        else if (a == "--timestamps")
            o.timestamps = true;
        else if (a == "--pipe-size")
            o.pipe_size = std::stoul(next());
        else if (a == "--dir")
            o.dir = next();
        else if (a == "--read-buffer")
            o.read_buffer = std::stoul(next());
        else if (a == "--baseline")
            o.baseline = true;
        else if (a == "--no-verify")
            o.verify = false;
        else {
            std::fprintf(stderr, "usage: log_bench [--mib N] [--patterns 0|10] [--line N] "
                                 "[--timestamps] [--pipe-size N] [--read-buffer N] [--dir D] "
                                 "[--baseline] [--no-verify]\n");
            return 2;
        }
    }
    if (o.line < 18) o.line = 18;
    fs::remove_all(o.dir);
    fs::create_directories(o.dir);
    const fs::path file = fs::path(o.dir) / "out.log";
    const std::uint64_t total = o.mib << 20;
    const std::uint64_t max_size = 64ull << 20;
    const unsigned keep = static_cast<unsigned>(total / max_size + 2); // keep all: verify all

    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return 1;
    if (o.pipe_size > 0) (void)::fcntl(fds[0], F_SETPIPE_SZ, static_cast<int>(o.pipe_size));
    const auto t0 = std::chrono::steady_clock::now();
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::close(fds[0]);
        writer(fds[1], total, o.line);
    }
    ::close(fds[1]);

    std::uint64_t bytes = 0, hits = 0;
    if (o.baseline) {
        const int out = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        std::vector<char> buf(1 << 16);
        for (ssize_t n; (n = ::read(fds[0], buf.data(), buf.size())) > 0;) {
            bytes += static_cast<std::uint64_t>(n);
            if (::write(out, buf.data(), static_cast<std::size_t>(n)) != n) return 1;
        }
        ::close(out);
        ::close(fds[0]);
    } else {
        (void)::fcntl(fds[0], F_SETFL, O_NONBLOCK);
        uv_loop_t loop;
        uv_loop_init(&loop);
        unit::LogSpec spec;
        spec.forward = false;
        spec.file = file.string();
        spec.max_size = max_size;
        spec.keep = keep;
        spec.timestamps = o.timestamps;
        auto pats = log::PatternSet::compile(o.patterns > 0 ? ten_patterns()
                                                            : std::vector<unit::PatternSpec>{});
        if (!pats) return 1;
        if (o.patterns > 0) {
            for (std::size_t i = 0; i < pats->size(); ++i)
                std::printf("pattern %zu: %s\n", i, std::string(pats->strategy(i)).c_str());
        }
        log::SeqCounter seq;
        // The daemon's sinks: the file is written by the log writer thread.
        log::LogWriter files(&loop);
        log::UnitLog ul("bench", spec, log::FileIdentity{}, std::move(*pats),
                        log::UnitLogSinks{nullptr, files.factory()}, seq);
        bool eof = false;
        // The daemon's wiring (vigil/log/wiring.hpp): the path measured is the real one.
        log::Capture cap(
            &loop, fds[0], -1, log::CaptureOptions{16u << 10, o.read_buffer, 0},
            log::wire(ul, &loop,
                      log::Wiring{[&](std::span<const log::PatternHit> h) { hits += h.size(); },
                                  [&] { eof = true; }, nullptr, nullptr}));
        // Back-pressure as in vigild: a congested file pauses its unit's capture.
        ul.set_file_events(log::FileSinkEvents{[&](bool congested) {
                                                   if (congested)
                                                       cap.pause();
                                                   else
                                                       cap.resume();
                                               },
                                               nullptr});
        if (cap.start() != 0) return 1;
        while (!eof)
            uv_run(&loop, UV_RUN_ONCE);
        if (!files.flush_blocking(Duration{60000})) std::printf("the writer did not finish\n");
        bytes = cap.bytes();
        const auto c = ul.counters();
        if (c.lines_failed != 0)
            std::printf("lines_failed: %llu\n", (unsigned long long)c.lines_failed);
        cap.close(nullptr);
        files.close(nullptr);
        uv_run(&loop, UV_RUN_DEFAULT);
        uv_loop_close(&loop);
    }
    const double secs = seconds_since(t0);
    // CPU time of this process only (the reader: what vigild would spend), not the writer's.
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    const double cpu = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                       static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    int status = 0;
    ::waitpid(pid, &status, 0);
    const long long lines = o.verify ? verify(file, keep) : -2;
    const std::uint64_t expect_lines = (total + o.line - 1) / o.line;
    // The injected text (64 bytes) must fit in the line for its two patterns to match.
    const std::uint64_t expect_hits =
        o.patterns > 0 && !o.baseline && o.line >= 64 + 17 ? 2 * (expect_lines / inject_every) : 0;
    std::printf(
        "%s: %.1f MiB in %.3f s = %.0f MB/s; reader CPU %.3f s = %.0f MB/CPU-s, "
        "%ld sleeps; patterns %d; line %zu B; lines %lld (expected %llu); hits %llu "
        "(expected %llu); %s\n",
        o.baseline ? "baseline read/write" : "capture+unit_log", bytes / 1048576.0, secs,
        bytes / secs / 1e6, cpu, bytes / cpu / 1e6, ru.ru_nvcsw, o.baseline ? 0 : o.patterns,
        o.line, lines, static_cast<unsigned long long>(expect_lines),
        static_cast<unsigned long long>(hits), static_cast<unsigned long long>(expect_hits),
        lines == static_cast<long long>(expect_lines) && hits == expect_hits ? "OK" : "MISMATCH");
    fs::remove_all(o.dir);
    return lines == static_cast<long long>(expect_lines) && hits == expect_hits ? 0 : 1;
}

// vigil-testsvc: the one argv-driven service the sys and integration tests run.
//
// It plays every kind of service a supervisor meets (one that exits, crashes, ignores SIGTERM,
// double-forks orphans, writes lines, signals readiness, serves /healthz) and reports what
// happened to it in a log file the tests read, so tests check the kernel's view instead of
// trusting vigild. Modes run left to right; see `usage` below. Everything a signal handler
// does is async-signal-safe (hand-rolled formatting, one write() per log line).
#include "vigil/core/names.hpp"
#include "vigil/proc/exit.hpp"

#include <arpa/inet.h>
#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <netinet/in.h>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace {

constexpr const char *usage =
    R"(usage: vigil-testsvc [--id ID] [--log FILE] [--fail-after N] MODE...

Modes run in order, left to right; after the last one the program exits 0 (or keeps serving
when `http` was given). Options may appear anywhere.

  start              no-op, for readability (the start line is always logged first)
  exit N             exit with status N now
  sleep [MS]         sleep MS milliseconds; without a number, sleep forever
  ignore-term        ignore SIGTERM from now on
  term-delay MS      on SIGTERM, wait MS milliseconds, then die of SIGTERM
  log-signals        log every catchable signal; only TERM and INT still end the process
  orphan N [MS]      fork N children that each fork a grandchild and exit at once; the
                     grandchildren (orphans, same process group, stdio on /dev/null) log
                     `orphan ID PID MS` and live MS milliseconds (default 200)
  lines N [PREFIX]   write N lines `PREFIX seq=<n>` (n = 1..N) to stdout, one write each
  stderr-lines N [PREFIX]  the same on stderr
  crash-after MS     after MS milliseconds, die of SIGSEGV
  abort-after MS     after MS milliseconds, abort() (SIGABRT)
  notify-ready       send READY=1 to $NOTIFY_SOCKET (datagram; '@' means abstract)
  notify TEXT        send TEXT (e.g. WATCHDOG=1) to $NOTIFY_SOCKET
  ready-fd N         write "\n" to fd N and close it
  mark TEXT          log `mark ID TEXT MS` (lets a test wait until earlier modes took effect,
                     e.g. `ignore-term mark armed sleep`)
  http PORT          serve 127.0.0.1:PORT in a thread: GET /healthz -> 200 "ok", else 404;
                     with --fail-after N, /healthz answers 500 after N requests. PORT 0 picks
                     a free port (logged as `http ID PORT MS`)

Options:
  --id ID            name used in log lines (default: testsvc); default PREFIX for lines
  --log FILE         append event lines to FILE (O_APPEND, one write per line):
                       start ID PID MS     at start-up
                       stop ID SIGNAME MS  before dying of a signal it caught
                       signal ID SIGNAME MS  each signal, with log-signals
                       exit ID CODE MS     on a normal exit
                       orphan ID PID MS    in each orphan, http ID PORT MS when listening
                       mark ID TEXT MS     for the mark mode
                     MS is CLOCK_MONOTONIC in milliseconds (comparable across processes).
  --fail-after N     see http
Exit status 2: bad usage.
)";

const char *g_id = "testsvc";
int g_log_fd = -1;
volatile sig_atomic_t g_ignore_term = 0;
volatile sig_atomic_t g_log_signals = 0;
volatile long g_term_delay_ms = 0;
long g_fail_after = -1;
bool g_http_running = false;

long mono_ms() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

// A tiny async-signal-safe line builder.
struct Line {
    char buf[512];
    std::size_t n = 0;
    Line &s(const char *str) {
        while (*str && n < sizeof buf - 1)
            buf[n++] = *str++;
        return *this;
    }
    Line &num(long v) {
        char tmp[24];
        int i = 0;
        bool neg = v < 0;
        unsigned long u = neg ? 0UL - static_cast<unsigned long>(v) : static_cast<unsigned long>(v);
        do {
            tmp[i++] = static_cast<char>('0' + u % 10);
            u /= 10;
        } while (u);
        if (neg) tmp[i++] = '-';
        while (i > 0 && n < sizeof buf - 1)
            buf[n++] = tmp[--i];
        return *this;
    }
    void write_to(int fd) {
        buf[n++] = '\n';
        ssize_t w;
        do {
            w = write(fd, buf, n);
        } while (w < 0 && errno == EINTR);
    }
};

void log_event(const char *kind, const char *what, long value, bool numeric) {
    if (g_log_fd < 0) return;
    Line l;
    l.s(kind).s(" ").s(g_id).s(" ");
    if (numeric)
        l.num(value);
    else
        l.s(what);
    l.s(" ").num(mono_ms()).write_to(g_log_fd);
}

// Signal names, built before any handler is installed: handlers only read them (a std::string
// made in a handler would allocate).
std::array<std::string, 65> g_sig_names;

const char *sig_name(int sig) {
    return sig > 0 && sig < 65 ? g_sig_names[static_cast<std::size_t>(sig)].c_str() : "SIG?";
}

void sleep_ms(long ms) {
    // Absolute deadline, so that handled signals (EINTR) do not stretch or cut the sleep.
    timespec until{};
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec += 1;
        until.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, nullptr) == EINTR) {
    }
}

[[noreturn]] void die_of(int sig) {
    log_event("stop", sig_name(sig), 0, false);
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    kill(getpid(), sig);
    // Not reached for fatal signals; be safe anyway.
    _exit(128 + sig);
}

// Signals whose default action ends the process and that we catch to log `stop`.
constexpr int fatal_signals[] = {SIGHUP,  SIGINT,  SIGQUIT, SIGTERM,
                                 SIGUSR1, SIGUSR2, SIGALRM, SIGPIPE};

bool is_fatal(int sig) {
    for (int s : fatal_signals)
        if (s == sig) return true;
    return false;
}

void on_signal(int sig) {
    int saved = errno;
    if (g_log_signals) log_event("signal", sig_name(sig), 0, false);
    if (sig == SIGTERM && g_ignore_term) {
        errno = saved;
        return;
    }
    bool ends = is_fatal(sig) && (!g_log_signals || sig == SIGTERM || sig == SIGINT);
    if (!ends) {
        errno = saved;
        return;
    }
    if (sig == SIGTERM && g_term_delay_ms > 0) sleep_ms(g_term_delay_ms);
    die_of(sig);
}

void install(int sig) {
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, nullptr);
}

[[noreturn]] void bad_usage(const std::string &msg) {
    std::fprintf(stderr, "vigil-testsvc: %s\n%s", msg.c_str(), usage);
    std::exit(2);
}

long to_num(const std::string &s, const char *what) {
    char *end = nullptr;
    errno = 0;
    long v = std::strtol(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || errno) bad_usage(std::string(what) + ": not a number: " + s);
    return v;
}

bool is_number(const std::string &s) {
    if (s.empty()) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

void send_notify(const std::string &text) {
    const char *path = std::getenv("NOTIFY_SOCKET");
    if (!path || !*path) {
        std::fprintf(stderr, "vigil-testsvc: NOTIFY_SOCKET is not set\n");
        std::exit(2);
    }
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::size_t len = std::strlen(path);
    if (len >= sizeof addr.sun_path) {
        std::fprintf(stderr, "vigil-testsvc: NOTIFY_SOCKET too long\n");
        std::exit(2);
    }
    std::memcpy(addr.sun_path, path, len);
    if (path[0] == '@') addr.sun_path[0] = '\0'; // abstract namespace
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    auto alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + len);
    if (fd < 0 ||
        sendto(fd, text.data(), text.size(), 0, reinterpret_cast<sockaddr *>(&addr), alen) < 0) {
        std::fprintf(stderr, "vigil-testsvc: notify %s: %s\n", path, std::strerror(errno));
        std::exit(1);
    }
    close(fd);
}

void write_lines(int fd, long n, const std::string &prefix) {
    for (long i = 1; i <= n; ++i) {
        Line l;
        l.s(prefix.c_str()).s(" seq=").num(i).write_to(fd);
    }
}

void orphans(long n, long ms) {
    for (long i = 0; i < n; ++i) {
        pid_t pid = fork();
        if (pid < 0) {
            std::perror("vigil-testsvc: fork");
            std::exit(1);
        }
        if (pid == 0) {
            pid_t grandchild = fork();
            if (grandchild == 0) {
                // The orphan: no stdio pipes held open (as a daemon would), default signals,
                // same process group (a group signal must reach it).
                for (int s : fatal_signals)
                    signal(s, SIG_DFL);
                int null = open("/dev/null", O_RDWR);
                if (null >= 0) {
                    dup2(null, 0);
                    dup2(null, 1);
                    dup2(null, 2);
                    if (null > 2) close(null);
                }
                log_event("orphan", nullptr, getpid(), true);
                sleep_ms(ms);
                _exit(0);
            }
            _exit(grandchild < 0 ? 1 : 0);
        }
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
    }
}

void serve_http(int lfd) {
    long requests = 0;
    for (;;) {
        int c = accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            return;
        }
        std::string req;
        char buf[1024];
        while (req.find("\r\n\r\n") == std::string::npos && req.size() < 8192) {
            ssize_t n = read(c, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            req.append(buf, static_cast<std::size_t>(n));
        }
        std::string_view r(req);
        std::string_view line = r.substr(0, r.find("\r\n"));
        const char *status = "404 Not Found";
        const char *body = "not found\n";
        if (line.starts_with("GET /healthz ") || line == "GET /healthz") {
            ++requests;
            if (g_fail_after >= 0 && requests > g_fail_after) {
                status = "500 Internal Server Error";
                body = "failing\n";
            } else {
                status = "200 OK";
                body = "ok\n";
            }
        }
        std::string resp = std::string("HTTP/1.1 ") + status +
                           "\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: " +
                           std::to_string(std::strlen(body)) + "\r\n\r\n" + body;
        std::size_t off = 0;
        while (off < resp.size()) {
            ssize_t n = write(c, resp.data() + off, resp.size() - off);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            off += static_cast<std::size_t>(n);
        }
        close(c);
    }
}

void start_http(long port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr) < 0 ||
        listen(fd, 64) < 0) {
        std::fprintf(stderr, "vigil-testsvc: http %ld: %s\n", port, std::strerror(errno));
        std::exit(1);
    }
    socklen_t alen = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &alen);
    log_event("http", nullptr, ntohs(addr.sin_port), true);
    std::thread(serve_http, fd).detach();
    g_http_running = true;
}

} // namespace

int main(int argc, char **argv) {
    for (int sig = 1; sig < 65; ++sig)
        g_sig_names[static_cast<std::size_t>(sig)] = vigil::core::signal_name(sig);
    std::vector<std::string> modes;
    std::string log_path;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) bad_usage(a + " needs a value");
            return argv[++i];
        };
        if (a == "--id") {
            value();
            g_id = argv[i]; // argv outlives main, so the handler may read it
        } else if (a == "--log") {
            log_path = value();
        } else if (a == "--fail-after") {
            g_fail_after = to_num(value(), "--fail-after");
        } else if (a == "--help" || a == "-h") {
            std::fputs(usage, stdout);
            return 0;
        } else {
            modes.push_back(std::move(a));
        }
    }
    if (!log_path.empty()) {
        g_log_fd = open(log_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (g_log_fd < 0) {
            std::fprintf(stderr, "vigil-testsvc: %s: %s\n", log_path.c_str(), std::strerror(errno));
            return 2;
        }
    }
    for (int s : fatal_signals)
        install(s);
    log_event("start", nullptr, getpid(), true);

    for (std::size_t i = 0; i < modes.size(); ++i) {
        const std::string &m = modes[i];
        auto has_next = [&] { return i + 1 < modes.size(); };
        auto arg = [&](const char *what) -> long {
            if (!has_next()) bad_usage(m + " needs " + what);
            return to_num(modes[++i], m.c_str());
        };
        // An optional argument: taken when it is not the name of a mode.
        auto optional_text = [&](const std::string &fallback) -> std::string {
            static const char *names[] = {
                "start",  "exit",     "sleep",        "ignore-term", "term-delay",  "log-signals",
                "orphan", "lines",    "stderr-lines", "crash-after", "abort-after", "notify-ready",
                "notify", "ready-fd", "http",         "mark"};
            if (!has_next()) return fallback;
            for (const char *n : names)
                if (modes[i + 1] == n) return fallback;
            return modes[++i];
        };
        if (m == "start") {
        } else if (m == "exit") {
            long code = arg("a status");
            log_event("exit", nullptr, code, true);
            std::fflush(nullptr);
            _exit(static_cast<int>(code));
        } else if (m == "sleep") {
            if (has_next() && is_number(modes[i + 1])) {
                sleep_ms(to_num(modes[++i], "sleep"));
            } else {
                for (;;)
                    pause();
            }
        } else if (m == "ignore-term") {
            g_ignore_term = 1;
            if (!g_log_signals) signal(SIGTERM, SIG_IGN);
        } else if (m == "term-delay") {
            g_term_delay_ms = arg("milliseconds");
            install(SIGTERM);
        } else if (m == "log-signals") {
            g_log_signals = 1;
            for (int s = 1; s < 32; ++s) {
                // Not the uncatchable ones, not SIGCHLD (our own orphans' parents), not the
                // synchronous faults.
                if (s == SIGKILL || s == SIGSTOP || s == SIGCHLD || s == SIGSEGV || s == SIGBUS ||
                    s == SIGFPE || s == SIGILL || s == SIGTRAP || s == SIGSYS || s == SIGABRT)
                    continue;
                install(s);
            }
        } else if (m == "orphan") {
            long n = arg("a count");
            long ms = 200;
            if (has_next() && is_number(modes[i + 1])) ms = to_num(modes[++i], "orphan");
            orphans(n, ms);
        } else if (m == "lines" || m == "stderr-lines") {
            long n = arg("a count");
            write_lines(m == "lines" ? 1 : 2, n, optional_text(g_id));
        } else if (m == "crash-after" || m == "abort-after") {
            long ms = arg("milliseconds");
            sleep_ms(ms);
            int sig = m == "crash-after" ? SIGSEGV : SIGABRT;
            log_event("stop", sig_name(sig), 0, false);
            signal(sig, SIG_DFL);
            if (sig == SIGABRT) std::abort();
            raise(SIGSEGV);
            _exit(128 + SIGSEGV);
        } else if (m == "notify-ready") {
            send_notify("READY=1");
        } else if (m == "notify") {
            if (!has_next()) bad_usage("notify needs a text");
            send_notify(modes[++i]);
        } else if (m == "ready-fd") {
            int fd = static_cast<int>(arg("an fd"));
            if (write(fd, "\n", 1) != 1) {
                std::fprintf(stderr, "vigil-testsvc: ready-fd %d: %s\n", fd, std::strerror(errno));
                return 1;
            }
            close(fd);
        } else if (m == "mark") {
            if (!has_next()) bad_usage("mark needs a text");
            log_event("mark", modes[++i].c_str(), 0, false);
        } else if (m == "http") {
            start_http(arg("a port"));
        } else {
            bad_usage("unknown mode: " + m);
        }
    }
    if (g_http_running) {
        for (;;)
            pause();
    }
    log_event("exit", nullptr, 0, true);
    return 0;
}

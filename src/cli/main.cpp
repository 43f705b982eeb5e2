// vigilctl: the command-line client of vigild's control socket (vigilctl(1)).
//
// One request a run: connect, send the request at once (without waiting for the hello, which
// saves a round trip), read the hello and the answer, render, exit with a status from
// exit_codes.hpp. Streams (`logs -f`, `events -f`) run until vigild ends them or the user
// interrupts.
//
// start, stop, restart, reload and shutdown then wait until the change is done (wait.hpp says
// when that is): vigilctl asks `status` of the units it waits for on the same connection,
// first after 10 ms, the interval doubling to 100 ms. Polling rather than following `events`:
// an open stream holds the connection's other answers back, so events would need a second
// connection and still a status to learn readiness and the states reached before the stream
// began; a poll is one small request (the units waited for, or all units when their names
// would not fit one request), at most ten a second, and whatever happened between two polls
// still shows in the status (the incarnation counts the runs). The before-status the rules
// need is asked in the same write as the command, just ahead of it: vigild answers requests
// in order, so it describes the units as they were when the command arrived. The whole
// command is bounded by --timeout (default wait_limit_s); Ctrl-C stops the waiting only (the
// change goes on in vigild), and restores the default action, so a second Ctrl-C ends
// vigilctl even in a read that --timeout 0 leaves unbounded.
//
// Start-up was most of a status query's cost (vigild's own work for it is well under 0.1 ms),
// so it is kept small (bench/README.md's target: `vigilctl status NAME` within 1.0 x
// `sv status`):
//  - parse_fast() reads the common `status` command lines by hand; building CLI11's parser for
//    11 commands costs ~0.4 M instructions, more than the rest of the run. Every other line
//    goes to parse_full() (CLI11). Both produce the same Invocation, which one Run carries out, so
//    the paths differ only in how argv is read. VIGILCTL_FULL_PARSER=1 in the environment
//    skips the fast path: the integration tests compare the two on many command lines.
//  - the binary is linked statically when static_deps (src/cli/meson.build): no dynamic
//    loader, no relocations of libc at start;
//  - CLI11 comes through cli11.hpp, which keeps <iostream>'s static initialiser out: the
//    standard streams are set up only when the full parser runs.
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <malloc.h>
#include <optional>
#include <poll.h>
#include <set>
#include <signal.h>
#include <string>
#include <string_view>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cli11.hpp"
#include "exit_codes.hpp"
#include "import.hpp"
#include "proc_figures.hpp"
#include "render.hpp"
#include "vigil/core/names.hpp"
#include "vigil/ctl/client.hpp"
#include "vigil/ctl/protocol.hpp"
#include "vigil/huge_heap.hpp"
#include "vigil/unit/values.hpp"
#include "wait.hpp"

using namespace vigil;
using vigil::cli::Exit;

namespace {

// The answer that ends the run, left for the process's exit to free: freeing its tree node by
// node is a measurable part of `vigilctl status` with 10,000 units (bench/README.md, "Status
// of all in brief"). Reachable from a static, so LeakSanitizer does not count it.
const ctl::Json &kept_to_exit(ctl::Json &&answer) {
    static ctl::Json *kept = new ctl::Json;
    *kept = std::move(answer);
    return *kept;
}

// The answer to a status of every unit is parsed into a tree of many small allocations in
// fresh memory: for that answer the heap grows ahead in huge pages (vigil/huge_heap.hpp; not
// for a small answer, which would pay for zeroing a whole huge page), and the answer's line
// buffer stays in the heap too.
void heap_in_huge_pages() {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    (void)heap_ahead_in_huge_pages(std::size_t{64} << 20);
}

struct Options {
    std::string socket;
    bool json = false;
    bool no_color = false;
    double timeout_s = 10.0;
    bool timeout_given = false; // else the default of the command (wait_limit_s or 10)
    bool no_wait = false;

    std::vector<std::string> units;
    std::string unit;
    std::string signal;
    bool follow = false;
    bool reopen = false;
    bool raw = false;  // logs: the lines only, without time, unit and stream
    std::string since; // logs, events: as parse_since reads it
    int lines = -1;
    std::string run;         // check --run UNIT/PROBE
    bool rolling = false;    // restart --rolling UNIT
    int max_unavailable = 0; // restart --rolling --max-unavailable N (0: the unit's)
};

void say(const std::string &msg) {
    std::fprintf(stderr, "vigilctl: %s\n", msg.c_str());
}

void out(const std::string &text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
}

std::string join(const std::vector<std::string> &words) {
    std::string s;
    for (const std::string &w : words)
        s += (s.empty() ? "" : " ") + w;
    return s;
}

bool use_color(const Options &o) {
    if (o.no_color || o.json) return false;
    if (const char *nc = std::getenv("NO_COLOR"); nc && *nc) return false;
    if (const char *term = std::getenv("TERM"); term && std::strcmp(term, "dumb") == 0)
        return false;
    return isatty(STDOUT_FILENO) == 1;
}

// The terminal's columns: its size, else $COLUMNS, else 80.
std::size_t terminal_width() {
    winsize ws{};
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    if (const char *c = std::getenv("COLUMNS"); c && *c) {
        char *end = nullptr;
        long n = std::strtol(c, &end, 10);
        if (*end == '\0' && n > 0 && n <= 10'000) return static_cast<std::size_t>(n);
    }
    return 80;
}

// The limit of a command that waits for its change when --timeout is not given.
constexpr double wait_limit_s = 90.0;
// The ids of the requests on the connection: the command, the status read before it, polls.
constexpr int command_id = 1;
constexpr int before_id = 2;
constexpr int first_poll_id = 3;
// `status NAME` (which does not wait, so it sends no status ahead and no polls): the requests
// for the unit's probes and its last log lines that follow the status request.
constexpr int detail_checks_id = 2;
constexpr int detail_logs_id = 3;
// A poll names the units it asks for unless that would make a long line; then it asks for all.
constexpr std::size_t max_poll_bytes = std::size_t{32} << 10;

volatile sig_atomic_t interrupted = 0;

void on_interrupt(int) {
    interrupted = 1;
}

// Ctrl-C sets `interrupted` once; the next one has its default action (SA_RESETHAND).
void catch_interrupt() {
    struct sigaction sa {};
    sa.sa_handler = on_interrupt;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);
}

long long now_ms() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

// The process has ended: no such process, or a zombie that its parent has not reaped yet.
bool process_gone(pid_t pid) {
    if (kill(pid, 0) != 0 && errno == ESRCH) return true;
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
    FILE *f = std::fopen(path, "re");
    if (!f) return errno == ENOENT;
    char buf[512];
    std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    std::string_view stat(buf, n);
    auto paren = stat.rfind(')'); // the name may hold anything; the state follows ") "
    if (paren == std::string_view::npos || paren + 2 >= stat.size()) return false;
    return stat[paren + 2] == 'Z' || stat[paren + 2] == 'X';
}

bool waits_for_change(ctl::Cmd cmd) {
    return cmd == ctl::Cmd::Start || cmd == ctl::Cmd::Stop || cmd == ctl::Cmd::Restart ||
           cmd == ctl::Cmd::Reload || cmd == ctl::Cmd::Shutdown;
}

std::int64_t wall_now_ms() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return std::int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
}

Exit exit_for_error(const std::string &code) {
    if (code == "not_found") return Exit::NotFound;
    return Exit::Error;
}

// What each command does with the answer.
struct Outcome {
    Exit exit = Exit::Ok;
};

// What one run does: the options and the request. Both parsers produce it.
struct Invocation {
    Options o;
    ctl::Cmd cmd = ctl::Cmd::Version;
    ctl::Json args = ctl::Json::object();
};

class Run {
public:
    Run(const Options &o, ctl::Cmd cmd, ctl::Json args) : o_(o), cmd_(cmd), args_(std::move(args)) {
        // `status NAME` (one name, not a glob) asks for the detail view; vigild's answer says
        // whether NAME is one service (then it is shown in detail) or stands for several.
        detail_ = cmd == ctl::Cmd::Status && o.units.size() == 1 &&
                  o.units[0].find_first_of("*?[") == std::string::npos;
        if (detail_) args_["detail"] = true;
        // The table asks only for what it shows (protocol.hpp, status's brief): fewer bytes for
        // vigild to write and for us to parse. --json shows it all.
        if (cmd == ctl::Cmd::Status && !detail_ && !o.json) args_["brief"] = true;
        if (cmd == ctl::Cmd::Status && o.units.empty()) heap_in_huge_pages();
        style_.color = use_color(o);
        tty_ = !o.json && isatty(STDOUT_FILENO) == 1;
        if (tty_) style_.width = terminal_width();
        waits_ = !o.no_wait && waits_for_change(cmd);
        limit_s_ = o.timeout_given                     ? o.timeout_s
                   : waits_ || cmd == ctl::Cmd::Reexec ? wait_limit_s
                                                       : 10.0;
        // CLI11 bounds --timeout below; above, 1e6 s (11 days) stands for "no limit": the
        // milliseconds fit an int.
        timeout_ms_ = limit_s_ <= 0 || limit_s_ > 1e6 ? -1 : static_cast<int>(limit_s_ * 1000.0);
        deadline_ = now_ms() + timeout_ms_;
    }

    int go() {
        path_ = o_.socket.empty() ? ctl::socket_path_from_env() : o_.socket;
        const std::string &path = path_;
        // The request is ready before the connect: vigild wakes on the connection, and the
        // sooner the request follows, the likelier it is read in that same wake-up.
        std::string request = before_request() + ctl::make_request(command_id, cmd_, args_);
        if (detail_ && !o_.json) request += detail_requests();
        ctl::Client &c = c_;
        if (int r = c.connect(path, budget()); r != 0) return cannot_connect(path, r);
        // A broken pipe is not the end: vigild may have answered with an error and hung up
        // before reading all of the request (a line over its limit, too many connections).
        // That answer is in our receive buffer and says more than EPIPE, so read on; only
        // when nothing came is the failed send what we report.
        sent_ms_ = now_ms();
        int sent = c.send_all(request, budget());
        if (sent != 0 && sent != -EPIPE && sent != -ECONNRESET) return lost(sent);
        bool streaming = cmd_ == ctl::Cmd::Logs || cmd_ == ctl::Cmd::Events;
        bool seen_hello = false;
        std::string line, err;
        for (;;) {
            // Once a follow stream has started, wait for ever: items come when they come.
            int wait = (o_.follow && seen_hello) ? -1 : budget();
            if (int r = c.read_line(line, wait); r != 0) {
                // vigild refused the status that went ahead of the command and hung up (a
                // forbidden peer): that refusal is the answer.
                if (before_error_) return failed(*before_error_);
                // A follow stream that ends without its end: vigild re-executed (or died).
                if (o_.follow && seen_hello && r == -ECONNRESET && follow_again(path)) {
                    seen_hello = false;
                    sent = 0;
                    continue;
                }
                return lost(sent != 0 ? sent : r);
            }
            auto m = ctl::parse_server_message(line, &err);
            if (!m) {
                say(err + "; is " + path + " vigild's socket?");
                return cli::code(Exit::Error);
            }
            using K = ctl::ServerMessage::Kind;
            if (detail_ && m->kind != K::Hello &&
                (m->id == detail_checks_id || m->id == detail_logs_id)) {
                if (auto done = detail_answer(*m)) return *done;
                continue;
            }
            switch (m->kind) {
            case K::Hello:
                if (m->version != ctl::protocol_version) {
                    say("vigild speaks protocol " + std::to_string(m->version) +
                        ", this vigilctl speaks " + std::to_string(ctl::protocol_version) +
                        ": use the vigilctl that came with vigild");
                    return cli::code(Exit::Error);
                }
                seen_hello = true;
                hello_ = m->body;
                continue;
            case K::Error:
                if (m->id == before_id) { // the command's own answer says more, if it comes
                    before_error_ = std::move(*m);
                    continue;
                }
                return failed(*m);
            case K::StreamItem:
                if (!streaming || seen_before(m->body)) continue;
                streamed_ = true;
                stream_item(m->body);
                continue;
            case K::End:
                return cli::code(Exit::Ok);
            case K::Reply:
                if (m->id == before_id) before_ = m->body;
                if (m->id != command_id) continue; // not the answer (or a server-level notice)
                if (detail_ && !o_.json) { // the answers to the probes and logs requests follow
                    status_ = std::move(m->body);
                    continue;
                }
                return replied(kept_to_exit(std::move(m->body)));
            }
        }
    }

private:
    int cannot_connect(const std::string &path, int r) {
        std::string why = std::strerror(-r);
        if (r == ctl::untrusted_server) {
            say("refusing to talk to " + path + ": the server there runs as uid " +
                std::to_string(c_.server_uid()) + ", neither root nor uid " +
                std::to_string(geteuid()) +
                " (you); another user may have made that socket. Check --socket, or remove the "
                "socket's folder and restart vigild");
            return cli::code(Exit::Untrusted);
        }
        if (r == -ENOENT || r == -ECONNREFUSED)
            say("cannot connect to " + path + ": " + why + ": is vigild running? see --socket");
        else if (r == -EACCES || r == -EPERM)
            say("cannot connect to " + path + ": " + why +
                ": control needs root, vigild's user, or its socket group");
        else if (r == -ETIMEDOUT)
            say("cannot connect to " + path +
                ": vigild is not accepting connections (busy?); "
                "try again or raise --timeout");
        else if (r == -ENAMETOOLONG)
            say("cannot connect to " + path + ": socket path too long; see --socket");
        else
            say("cannot connect to " + path + ": " + why + "; see --socket");
        return cli::code(Exit::Unreachable);
    }

    // A follow stream whose connection ended without the stream's end: vigild re-executed
    // (vigilctl reexec), or it died. The control socket survives a re-exec, so connecting
    // again (for up to 10 s) reaches the new vigild; the stream is asked for again with every
    // stored item, and what was already printed is skipped (seen_before), so the stream goes
    // on with nothing lost or doubled while the ring still holds the gap. A vigild that is gone
    // refuses the connection: the caller then says the stream was cut.
    bool follow_again(const std::string &path) {
        const std::int64_t until = now_ms() + 10'000;
        ctl::Json args = args_;
        args["lines"] = ctl::max_lines;
        args.erase("since");
        const std::string request = ctl::make_request(command_id, cmd_, args);
        for (;;) {
            c_.close();
            if (c_.connect(path, 1000) == 0 && c_.send_all(request, 1000) == 0) return true;
            if (now_ms() >= until) return false;
            ::usleep(50'000);
        }
    }

    // Items printed before the stream was asked for again: logs by their sequence number
    // (global, carried across a re-exec); events by their time, and at the last time printed by
    // their content.
    bool seen_before(const ctl::Json &item) {
        if (!item.is_object()) return false;
        if (cmd_ == ctl::Cmd::Logs) {
            const std::uint64_t seq = item.value("seq", std::uint64_t{0});
            if (seq != 0 && seq <= last_seq_) return true;
            last_seq_ = std::max(last_seq_, seq);
            return false;
        }
        const std::int64_t at = item.value("at_ms", std::int64_t{0});
        if (at < last_at_ms_) return true;
        std::string key = item.dump();
        if (at == last_at_ms_) return !at_last_ms_.insert(std::move(key)).second;
        last_at_ms_ = at;
        at_last_ms_.clear();
        at_last_ms_.insert(std::move(key));
        return false;
    }

    int lost(int r) {
        if (r == -ETIMEDOUT)
            say("no answer from vigild within " + format_timeout() + "; see --timeout");
        else if ((r == -ECONNRESET || r == -EPIPE) && streamed_)
            say("vigild closed the connection during the stream; is it shutting down?");
        else if (r == -ECONNRESET || r == -EPIPE)
            say("vigild closed the connection before answering; is it shutting down?");
        else
            say(std::string("connection to vigild failed: ") + std::strerror(-r));
        return cli::code(Exit::Unreachable);
    }

    std::string format_timeout() const {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g s", limit_s_);
        return buf;
    }

    int failed(const ctl::ServerMessage &m) {
        if (auto d = m.body.find("diagnostics"); d != m.body.end() && d->is_array())
            for (const auto &x : *d)
                std::fprintf(stderr, "%s\n",
                             x.is_string() ? x.get<std::string>().c_str() : x.dump().c_str());
        std::string msg = m.message.empty() ? m.code : m.message;
        if (m.code == "forbidden") msg += " (run as root or vigild's user)";
        // vigild gave up on us for not reading: its error says how much waited ("unread").
        if (m.body.contains("unread")) {
            bool stream = cmd_ == ctl::Cmd::Logs || cmd_ == ctl::Cmd::Events;
            msg += stream ? "; vigilctl's output was not read fast enough: read it faster (a "
                            "slow terminal or pipe holds it back), or ask for less (--lines N, "
                            "or without --follow)"
                          : "; vigilctl's output was not read fast enough";
        }
        say(msg);
        return cli::code(exit_for_error(m.code));
    }

    void stream_item(const ctl::Json &item) {
        if (o_.json) {
            out(item.dump(-1, ' ', false, ctl::Json::error_handler_t::replace) + "\n");
        } else if (cmd_ == ctl::Cmd::Logs) {
            // Each line says when, whose and which stream (not with --raw). A continued line of
            // one unit interrupted by another's is ended; its later pieces get no prefix.
            std::string unit;
            bool continued = false;
            if (item.is_object()) {
                if (auto it = item.find("unit"); it != item.end() && it->is_string()) unit = *it;
                if (auto it = item.find("continued"); it != item.end() && it->is_boolean())
                    continued = it->get<bool>();
            }
            bool piece = mid_line_ && unit == mid_line_unit_;
            if (mid_line_ && !piece) out("\n");
            out(cli::render_log(item, style_, !piece && !o_.raw));
            mid_line_ = continued;
            mid_line_unit_ = unit;
        } else {
            out(cli::render_event(item, style_));
        }
        if (o_.follow) std::fflush(stdout);
    }

    // "vigild re-executed (re-exec 2): 200 services kept, paused 14.2 ms"
    static std::string reexec_line(const ctl::Json &r) {
        char pause[32];
        std::snprintf(pause, sizeof pause, "%.1f", r.value("pause_ms", 0.0));
        return "vigild re-executed (re-exec " + std::to_string(r.value("generation", 0)) +
               "): " + std::to_string(r.value("services", 0)) + " services kept, paused " + pause +
               " ms\n";
    }

    int replied(const ctl::Json &result) {
        if (waits_) targets_ = cli::wait_targets(cmd_, result, before_);
        if (o_.json) {
            ctl::Json shown = result;
            if (cmd_ == ctl::Cmd::Version) shown["client"] = VIGIL_VERSION;
            if (const ctl::Json *u = one_service(shown))
                if (auto f = proc_of(*u))
                    shown["units"][0]["proc"] = {{"rss_bytes", f->rss_bytes},
                                                 {"cpu_ms", f->cpu_ms}};
            out(shown.dump(2, ' ', false, ctl::Json::error_handler_t::replace) + "\n");
        }
        switch (cmd_) {
        case ctl::Cmd::Status:
            return status(result);
        case ctl::Cmd::Start:
        case ctl::Cmd::Stop:
        case ctl::Cmd::Restart:
        case ctl::Cmd::Signal:
            return then_wait(results(result));
        case ctl::Cmd::Reload:
            if (!o_.json) out(cli::render_reload(result, style_));
            if (auto d = result.find("diagnostics"); d != result.end() && d->is_array())
                for (const auto &x : *d)
                    if (x.is_string()) std::fprintf(stderr, "%s\n", x.get<std::string>().c_str());
            return then_wait(cli::code(Exit::Ok));
        case ctl::Cmd::Tree:
            if (!o_.json) out(cli::render_tree(result, style_));
            return cli::code(Exit::Ok);
        case ctl::Cmd::Reexec:
            if (!o_.json) out(reexec_line(result));
            return cli::code(Exit::Ok);
        case ctl::Cmd::Shutdown:
            if (!o_.json) out("vigild is shutting down\n");
            return waits_ ? wait_for_exit() : cli::code(Exit::Ok);
        case ctl::Cmd::Version:
            if (!o_.json) {
                // "server" per the protocol; vigild 0.1 also says "version".
                std::string server = "?";
                for (const char *key : {"server", "version"})
                    if (result.is_object() && result.contains(key) && result[key].is_string()) {
                        server = result[key].get<std::string>();
                        break;
                    }
                out("vigilctl " VIGIL_VERSION "\nvigild " + server + " (protocol " +
                    std::to_string(hello_.value("version", 0)) + ")\n");
            }
            return cli::code(Exit::Ok);
        case ctl::Cmd::Logs:
            // `logs --reopen` is answered with a reply, not a stream.
            if (!o_.json && o_.reopen)
                out((o_.units.empty() ? std::string("every unit") : join(o_.units)) +
                    ": log files reopened\n");
            return cli::code(Exit::Ok);
        case ctl::Cmd::Events:
            return cli::code(Exit::Ok); // a reply instead of a stream: nothing to show
        case ctl::Cmd::Checks:
            if (!o_.json) out(cli::render_checks(result, style_, wall_now_ms()));
            return cli::code(Exit::Ok);
        case ctl::Cmd::Check:
            if (!o_.json) out(cli::render_check_run(result, style_));
            return cli::code(result.is_object() && result.value("ok", false) ? Exit::Ok
                                                                             : Exit::Error);
        }
        return cli::code(Exit::Ok);
    }

    // The two requests that follow `status NAME`'s (ids 2 and 3, answered in order after it):
    // the unit's probes and its last log lines. A vigild without `checks` answers
    // unknown_command, and the Probes line is left out.
    std::string detail_requests() const {
        const std::string &name = o_.units[0];
        return ctl::make_request(detail_checks_id, ctl::Cmd::Checks, {{"units", {name}}}) +
               ctl::make_request(detail_logs_id, ctl::Cmd::Logs,
                                 {{"unit", name}, {"lines", detail_log_lines}});
    }

    // An answer to one of those (the status's came first): the run ends with the end of the
    // log lines, or their error (shown without them).
    std::optional<int> detail_answer(ctl::ServerMessage &m) {
        using K = ctl::ServerMessage::Kind;
        if (m.id == detail_checks_id && m.kind == K::Reply) checks_ = std::move(m.body);
        if (m.id != detail_logs_id) return std::nullopt;
        if (m.kind == K::End || m.kind == K::Error) return status(status_);
        if (m.kind == K::StreamItem && log_.size() < detail_log_lines * 4)
            log_.push_back(std::move(m.body)); // pieces of long lines: a few per line
        return std::nullopt;
    }

    // The one status object of a detail request's answer when it is a service, else null (a
    // supervisor or an instanced unit's name stands for several units: the table).
    const ctl::Json *one_service(const ctl::Json &result) const {
        if (!detail_ || !result.is_object()) return nullptr;
        auto it = result.find("units");
        if (it == result.end() || !it->is_array() || it->size() != 1) return nullptr;
        const ctl::Json &u = (*it)[0];
        return u.is_object() && u.value("kind", "") == "service" ? &u : nullptr;
    }

    static std::optional<cli::ProcFigures> proc_of(const ctl::Json &u) {
        auto it = u.find("pid");
        auto ns = u.find("pid_namespace");
        if (it == u.end() || !it->is_number_integer() || ns == u.end() || !ns->is_string())
            return std::nullopt;
        return cli::read_proc_figures(it->get<long>(), ns->get<std::string>());
    }

    std::string detail_view(const ctl::Json &u) const {
        cli::Detail d;
        d.unit = u;
        d.checks = checks_;
        d.log = log_;
        if (auto f = proc_of(u)) {
            d.rss = static_cast<std::int64_t>(std::min<std::uint64_t>(f->rss_bytes, INT64_MAX));
            d.cpu = static_cast<std::int64_t>(std::min<std::uint64_t>(f->cpu_ms, INT64_MAX));
        }
        d.now_ms = wall_now_ms();
        return cli::render_status_detail(d, style_);
    }

    int status(const ctl::Json &result) {
        const ctl::Json empty = ctl::Json::array();
        const ctl::Json &units =
            result.is_object() && result.contains("units") ? result["units"] : empty;
        if (!o_.json) {
            const ctl::Json *one = one_service(result);
            out(one ? detail_view(*one) : cli::render_status(units, style_));
        }
        // LSB: status of named units that are not all running exits 3.
        if (!o_.units.empty())
            for (const auto &u : units)
                if (!u.is_object() || u.value("state", "") != "running")
                    return cli::code(Exit::NotRunning);
        return cli::code(Exit::Ok);
    }

    int results(const ctl::Json &result) {
        if (!o_.json) out(cli::render_results(tty_ ? unwaited(result) : result, style_));
        Exit worst = Exit::Ok;
        if (auto it = result.find("results"); it != result.end() && it->is_array()) {
            for (const auto &r : *it) {
                std::string outcome = r.is_object() ? r.value("outcome", "") : "";
                if (outcome == "not_found")
                    worst = Exit::NotFound;
                else if (outcome != "ok" && outcome != "already_running" &&
                         outcome != "already_stopped" && worst == Exit::Ok)
                    worst = Exit::Error;
            }
        }
        return cli::code(worst);
    }

    // The status read just before the command (see the file comment); empty when not waiting.
    std::string before_request() const {
        if (!waits_ || cmd_ == ctl::Cmd::Shutdown) return "";
        ctl::Json a = ctl::Json::object();
        if (args_.contains("units")) a["units"] = args_["units"];
        return ctl::make_request(before_id, ctl::Cmd::Status, a);
    }

    // Milliseconds a blocking call may take: --timeout for each call of a command that does not
    // wait (as before waiting existed), what is left of it for one that does; -1: no limit.
    int budget() const {
        if (!waits_ || timeout_ms_ < 0) return timeout_ms_;
        long long left = deadline_ - now_ms();
        return left > 0 ? static_cast<int>(left) : 0;
    }
    bool expired() const { return waits_ && timeout_ms_ >= 0 && now_ms() >= deadline_; }
    std::int64_t elapsed() const { return now_ms() - sent_ms_; }

    // Sleeps `ms` (less when time is up); Ctrl-C cuts it short.
    void pause(int ms) const {
        int left = budget();
        poll(nullptr, 0, left >= 0 && left < ms ? left : ms);
    }

    // The answer without the results of units waited for: on a terminal those get a line of
    // their own when they are done.
    ctl::Json unwaited(const ctl::Json &result) const {
        if (targets_.empty() || !result.contains("results") || !result["results"].is_array())
            return result;
        std::unordered_set<std::string_view> waited;
        for (const auto &t : targets_)
            waited.insert(t.unit);
        ctl::Json shown = result;
        ctl::Json &rs = shown["results"];
        rs = ctl::Json::array();
        for (const auto &r : result["results"])
            if (!r.is_object() || !r.contains("unit") || !r["unit"].is_string() ||
                !waited.contains(r["unit"].get_ref<const std::string &>()))
                rs.push_back(r);
        return shown;
    }

    int then_wait(int code) {
        if (!waits_) return code;
        int w = wait_units();
        return code != cli::code(Exit::Ok) ? code : w;
    }

    int stop_waiting() {
        say("interrupted: stopped waiting; vigild goes on with the change (see: vigilctl status)");
        return cli::code(Exit::Interrupted);
    }

    // Polls status until every target is done or failed, or time is up.
    int wait_units() {
        const std::size_t n = targets_.size();
        if (n == 0) return cli::code(Exit::Ok);
        catch_interrupt();
        std::vector<cli::Judgement> last(
            n, {cli::Verdict::Waiting, "changing", "no status from vigild yet"});
        std::vector<std::size_t> pending(n);
        for (std::size_t i = 0; i < n; ++i)
            pending[i] = i;
        bool failed = false;
        for (int interval = 10;; interval = std::min(interval * 2, 100)) {
            if (interrupted) return stop_waiting();
            std::unordered_map<std::string, ctl::Json> seen;
            int r = poll_status(pending, seen);
            if (r > 0) return r;
            if (r == 0) {
                std::vector<std::size_t> still;
                for (std::size_t i : pending) {
                    auto it = seen.find(targets_[i].unit);
                    if (targets_[i].want == cli::Want::Roll)
                        last[i] = cli::judge(targets_[i], instances(seen));
                    else
                        last[i] =
                            cli::judge(targets_[i], it == seen.end() ? ctl::Json() : it->second);
                    std::string line = cli::wait_line(targets_[i].unit, last[i], elapsed());
                    if (last[i].verdict == cli::Verdict::Waiting) {
                        still.push_back(i);
                    } else if (last[i].verdict == cli::Verdict::Failed) {
                        failed = true;
                        say(line);
                    } else if (tty_) {
                        out(line + "\n");
                        std::fflush(stdout);
                    }
                }
                pending = std::move(still);
                if (pending.empty()) return cli::code(failed ? Exit::Error : Exit::Ok);
            }
            if (r < 0 || expired()) return timed_out(pending, last);
            pause(interval);
        }
    }

    // A rolling restart's target is its unit's name; the status of that name lists its
    // instances, each with the roll's object (wait.hpp judges them together).
    static ctl::Json instances(const std::unordered_map<std::string, ctl::Json> &seen) {
        ctl::Json all = ctl::Json::array();
        for (const auto &[name, u] : seen)
            all.push_back(u);
        return all;
    }

    int timed_out(const std::vector<std::size_t> &pending,
                  const std::vector<cli::Judgement> &last) {
        for (std::size_t i : pending) // "after 30s": the limit, not the milliseconds past it
            say(cli::wait_line(targets_[i].unit, last[i], timeout_ms_));
        say("stopped waiting after " + format_timeout() +
            " (see --timeout); vigild goes on with the change");
        return cli::code(Exit::Error);
    }

    // One status request for the pending targets. Returns 0 with `seen` (name -> status),
    // -1 when time ran out, or an exit status when the connection failed.
    int poll_status(const std::vector<std::size_t> &pending,
                    std::unordered_map<std::string, ctl::Json> &seen) {
        ctl::Json args = ctl::Json::object();
        if (!poll_all_) {
            ctl::Json names = ctl::Json::array();
            std::size_t bytes = 0;
            for (std::size_t i : pending) {
                names.push_back(targets_[i].unit);
                bytes += targets_[i].unit.size() + 4;
            }
            if (names.size() <= ctl::max_units_per_request && bytes <= max_poll_bytes)
                args["units"] = std::move(names);
        }
        const std::int64_t id = poll_id_++;
        if (int r = c_.send_all(ctl::make_request(id, ctl::Cmd::Status, args), budget()); r != 0)
            return r == -ETIMEDOUT ? -1 : lost(r);
        std::string line, err;
        for (;;) {
            if (int r = c_.read_line(line, budget()); r != 0) return r == -ETIMEDOUT ? -1 : lost(r);
            auto m = ctl::parse_server_message(line, &err);
            if (!m || m->id != id) continue;
            if (m->kind == ctl::ServerMessage::Kind::Error) {
                // A unit waited for is gone (removed by a reload): ask for all from now on.
                if (m->code != "not_found" || poll_all_) return failed(*m);
                poll_all_ = true;
                return poll_status(pending, seen);
            }
            if (m->kind != ctl::ServerMessage::Kind::Reply) continue;
            if (auto it = m->body.find("units"); it != m->body.end() && it->is_array())
                for (auto &u : *it)
                    if (u.is_object() && u.contains("name") && u["name"].is_string())
                        seen.emplace(u["name"].get<std::string>(), std::move(u));
            return 0;
        }
    }

    // shutdown: vigild has exited when the connection ends and its process is gone (or, when
    // its pid is not visible here, its socket refuses connections).
    int wait_for_exit() {
        catch_interrupt();
        const pid_t pid = c_.server_pid();
        std::string line;
        for (;;) {
            if (interrupted) return stop_waiting();
            if (expired()) return exit_timed_out();
            int slice = budget() < 0 ? 100 : std::min(budget(), 100);
            int r = c_.read_line(line, slice);
            if (r != 0 && r != -ETIMEDOUT) break; // the connection ended
        }
        for (int interval = 10;; interval = std::min(interval * 2, 100)) {
            if (pid > 0 ? process_gone(pid) : refused()) break;
            if (interrupted) return stop_waiting();
            if (expired()) return exit_timed_out();
            pause(interval);
        }
        if (tty_) out("vigild: exited (" + cli::format_duration(elapsed()) + ")\n");
        return cli::code(Exit::Ok);
    }

    bool refused() const {
        ctl::Client probe;
        int r = probe.connect(path_, 100);
        return r == -ECONNREFUSED || r == -ENOENT;
    }

    int exit_timed_out() {
        say("vigild still running after " + format_timeout() +
            " (see --timeout); it goes on stopping its units");
        return cli::code(Exit::Error);
    }

    static constexpr int detail_log_lines = 10;

    const Options &o_;
    ctl::Client c_;
    std::uint64_t last_seq_ = 0;          // logs: the last line printed
    std::int64_t last_at_ms_ = INT64_MIN; // events: the last record's time printed
    std::set<std::string> at_last_ms_;    // and the records printed at that time
    ctl::Cmd cmd_;
    ctl::Json args_;
    cli::Style style_;
    bool tty_ = false;   // standard output is a terminal (and not --json)
    bool waits_ = false; // the command waits for its change
    double limit_s_ = 10.0;
    int timeout_ms_ = 10'000;
    long long deadline_ = 0; // when a command that waits must end (timeout_ms_ >= 0)
    long long sent_ms_ = 0;  // when the command was sent
    std::string path_;
    ctl::Json before_;                               // status before the command
    std::optional<ctl::ServerMessage> before_error_; // vigild's refusal of that status
    std::vector<cli::WaitTarget> targets_;           // what the command waits for
    bool poll_all_ = false;                          // polls ask for every unit
    std::int64_t poll_id_ = first_poll_id;
    ctl::Json hello_;
    bool streamed_ = false; // a stream item was shown
    bool mid_line_ = false; // logs: the last piece shown was "continued"
    std::string mid_line_unit_;
    bool detail_ = false; // `status NAME`: see the constructor
    ctl::Json status_;    // its answers, kept until the last one (the log lines) has come
    ctl::Json checks_;
    ctl::Json log_ = ctl::Json::array();
};

// The arguments of logs and events: one unit as "unit" (as every vigild of protocol 2 reads
// it), several as "units"; --since as milliseconds since the epoch.
std::optional<int> stream_args(const Options &o, const std::string &command, ctl::Json &args) {
    if (o.units.size() == 1)
        args["unit"] = o.units.front();
    else if (!o.units.empty())
        args["units"] = o.units;
    if (o.lines >= 0) args["lines"] = o.lines;
    if (o.follow) args["follow"] = true;
    if (!o.since.empty()) {
        auto since = cli::parse_since(o.since, wall_now_ms());
        if (!since) {
            say("--since '" + o.since +
                "': expected an age (10m, 1h30m), a time today (10:00), a date and time "
                "(2026-12-06 10:00) or @SECONDS since the epoch; see vigilctl " +
                command + " --help");
            return cli::code(Exit::Usage);
        }
        args["since"] = *since;
    }
    return std::nullopt;
}

// The fast path: `status` with unit names and the global options --json, --no-color and
// -s/--socket PATH (or --socket=PATH), in any order around the command (CLI11's fallthrough
// allows that too; like CLI11, it reads a command's name after `status` or after --socket as
// a unit or a path). Returns nothing for any other line, which parse_full() then reads: other
// commands, --timeout, --help, an option given twice, an argument that starts with '-', a
// socket path that is empty or starts with '-'. So this
// function never reports an error; it only recognises lines that both parsers read alike, and
// fills the Invocation as parse_full() would.
std::optional<Invocation> parse_fast(int argc, char **argv) {
    Invocation inv;
    bool seen_status = false, seen_socket = false, seen_json = false, seen_no_color = false;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "--json") {
            if (seen_json) return std::nullopt;
            seen_json = inv.o.json = true;
        } else if (a == "--no-color") {
            if (seen_no_color) return std::nullopt;
            seen_no_color = inv.o.no_color = true;
        } else if (a == "-s" || a == "--socket" || a.starts_with("--socket=")) {
            std::string_view path;
            if (a.starts_with("--socket=")) {
                path = a.substr(9);
            } else {
                if (i + 1 >= argc) return std::nullopt;
                path = argv[++i];
            }
            if (seen_socket || path.empty() || path[0] == '-') return std::nullopt;
            seen_socket = true;
            inv.o.socket = path;
        } else if (a.empty() || a[0] == '-') {
            return std::nullopt;
        } else if (!seen_status) {
            if (a != "status") return std::nullopt;
            seen_status = true;
        } else {
            inv.o.units.emplace_back(a);
        }
    }
    if (!seen_status) return std::nullopt;
    inv.cmd = ctl::Cmd::Status;
    if (!inv.o.units.empty()) inv.args["units"] = ctl::Json(inv.o.units);
    return inv; // no --socket: Run takes $VIGIL_SOCKET or the default, as after CLI11
}

// When no command was recognised: the first word that is neither an option nor an option's
// value, said to be an unknown command, with the closest command name (unit::closest, as
// vigild suggests unit names and the loader field names). Empty when there is no such word.
std::string unknown_command(CLI::App &app, int argc, char **argv) {
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "-s" || a == "--socket" || a == "--timeout") {
            ++i; // its value
            continue;
        }
        if (a.empty() || a[0] == '-') continue;
        std::vector<std::string> names;
        for (const CLI::App *sub : app.get_subcommands({}))
            names.push_back(sub->get_name());
        if (std::find(names.begin(), names.end(), a) != names.end()) return ""; // known
        std::string msg = "unknown command '" + std::string(a) + "'";
        std::vector<std::string_view> views(names.begin(), names.end());
        if (std::string near = unit::closest(a, views); !near.empty())
            msg += "; did you mean '" + near + "'?";
        else
            msg += "; see vigilctl --help";
        return msg;
    }
    return "";
}

constexpr char guard = '\x1f'; // see parse_full

// Takes the guard byte off a value (or out of a message).
void unguard(std::string &s) {
    std::erase(s, guard);
}

// The full command line, with CLI11. Returns an exit status when the run ends here (help,
// --version, a usage error), or nothing when `inv` holds the request to send.
std::optional<int> parse_full(int argc, char **argv, Invocation &inv) {
    cli::cli_streams();
    Options &o = inv.o;
    CLI::App app{"vigilctl: control vigild, the vigil process supervisor.\n"
                 "Unit arguments accept names, globs (\"web-*\") and supervisor names (their "
                 "subtree).",
                 "vigilctl"};
    app.set_version_flag("--version", "vigilctl " VIGIL_VERSION);
    app.require_subcommand(1);
    app.fallthrough(); // global options may also follow the command
    app.add_option("-s,--socket", o.socket,
                   "control socket (default: /run/vigil/control.sock for root, "
                   "$XDG_RUNTIME_DIR/vigil/control.sock otherwise)")
        ->envname("VIGIL_SOCKET");
    app.add_flag("--json", o.json, "print vigild's answer as JSON (streams: one object a line)");
    auto *timeout =
        app.add_option("--timeout", o.timeout_s,
                       "seconds to wait for vigild's answer (default 10); for start, stop, "
                       "restart, reload and shutdown: for the whole command, the change included "
                       "(default 90); 0: no limit")
            ->check(CLI::NonNegativeNumber);
    app.add_flag("--no-color", o.no_color, "no colour even on a terminal (also: NO_COLOR)");

    ctl::Cmd &cmd = inv.cmd;
    ctl::Json &args = inv.args;

    auto *status = app.add_subcommand("status", "show units: state, pid, uptime, restarts");
    status->add_option("units", o.units, "units, globs or supervisors (default: all)");
    auto *start = app.add_subcommand(
        "start", "start units (not counted as restarts); waits until they run and are ready");
    start->add_option("units", o.units, "units, globs or supervisors")->required();
    auto *stop = app.add_subcommand(
        "stop", "stop units; they stay stopped until started; waits until they have stopped");
    stop->add_option("units", o.units, "units, globs or supervisors")->required();
    auto *restart = app.add_subcommand(
        "restart", "stop then start units; waits until new runs of them are ready");
    restart->add_option("units", o.units, "units, globs or supervisors")->required();
    restart->add_flag("--rolling", o.rolling,
                      "replace one unit's instances a step at a time, each step once the new "
                      "ones are ready; stops at the first that fails");
    auto *max_unavailable =
        restart
            ->add_option("--max-unavailable", o.max_unavailable,
                         "how many instances --rolling may have down at once (default: the unit's "
                         "max_unavailable)")
            ->check(CLI::Range(1, static_cast<int>(ctl::max_rolling_width)));
    auto *sig = app.add_subcommand("signal", "send a signal to units' process groups");
    sig->add_option("signal", o.signal, "SIGTERM, HUP, 9, SIGRTMIN+1, ...")->required();
    sig->add_option("units", o.units, "units, globs or supervisors")->required();
    auto *reload = app.add_subcommand(
        "reload", "reread unit files and apply the differences; waits for the units it starts");
    auto *logs = app.add_subcommand("logs", "show units' recent output, merged in time order");
    logs->add_flag("-f,--follow", o.follow, "keep printing new lines");
    logs->add_option("-n,--lines", o.lines, "how many stored lines to show first")
        ->check(CLI::NonNegativeNumber);
    logs->add_option("--since", o.since,
                     "only lines from then on: 10m, 1h30m, 10:00, 2026-12-06 10:00");
    logs->add_flag("--raw", o.raw, "the lines only: no time, unit or stream");
    logs->add_flag("--reopen", o.reopen, "reopen the units' log files (after rotation)");
    logs->add_option("units", o.units, "units, globs or supervisors (default: all)");
    auto *tree = app.add_subcommand("tree", "draw the supervision tree with states");
    auto *events = app.add_subcommand("events", "show the history: what happened and why");
    events->add_flag("-f,--follow", o.follow, "keep printing new events");
    events->add_option("-n,--lines", o.lines, "how many stored events to show first")
        ->check(CLI::NonNegativeNumber);
    events->add_option("--since", o.since, "only events from then on: 10m, 10:00, 2026-12-06");
    events->add_option("units", o.units, "units, globs or supervisors (default: all)");
    auto *checks = app.add_subcommand("checks", "show units' probes and watchdogs: state, counts, "
                                                "last failure");
    checks->add_option("units", o.units, "units, globs or supervisors (default: all)");
    auto *check = app.add_subcommand("check", "run one probe of a unit now and show its result");
    check->add_option("--run", o.run, "the probe to run: UNIT/PROBE (e.g. web/liveness)")
        ->required();
    auto *shutdown =
        app.add_subcommand("shutdown", "stop every unit and end vigild; waits until it has ended");
    for (auto *sub : {start, stop, restart, reload, shutdown})
        sub->add_flag("--no-wait", o.no_wait, "return once vigild has accepted the command");
    auto *reexec = app.add_subcommand(
        "reexec", "execute vigild's binary again (an upgrade) keeping every service; waits for "
                  "the new vigild's answer");
    auto *version = app.add_subcommand("version", "show vigilctl's and vigild's versions");
    // import needs no vigild: it runs here, in the parser, and ends the run.
    cli::import::Options imp;
    auto *import = app.add_subcommand(
        "import", "convert a supervisord configuration into unit files (without vigild)");
    import->add_option("config", imp.config, "supervisord.conf (its [include]s are read too)")
        ->required();
    import->add_option("--out", imp.out, "folder for the unit files")->capture_default_str();
    import->add_flag("--force", imp.force, "replace unit files that exist");

    // CLI11 reads an argument "[x,y]" given to a list as the list x, y: the glob "[ab]" would
    // become the name "ab". Such arguments go through CLI11 behind a guard byte, taken off
    // every value (and message) afterwards, so each argument arrives as typed.
    std::vector<std::string> words(argv, argv + argc);
    std::vector<char *> guarded_argv;
    for (std::size_t i = 0; i < words.size(); ++i) {
        if (i > 0 && words[i].size() >= 2 && words[i].front() == '[' && words[i].back() == ']')
            words[i].insert(0, 1, guard);
        guarded_argv.push_back(words[i].data());
    }
    try {
        app.parse(argc, guarded_argv.data());
        for (std::string *v :
             {&o.socket, &o.unit, &o.signal, &o.since, &o.run, &imp.config, &imp.out})
            unguard(*v);
        for (std::string &u : o.units)
            unguard(u);
        o.timeout_given = timeout->count() > 0;
    } catch (const CLI::ParseError &e) {
        // Help and --version are "errors" with exit code 0 in CLI11; everything else is a
        // usage error: our code 2, not CLI11's 1xx codes.
        if (e.get_exit_code() == 0) return app.exit(e);
        std::string where;
        for (auto *sub : app.get_subcommands())
            where = " " + sub->get_name();
        if (where.empty())
            if (std::string msg = unknown_command(app, argc, argv); !msg.empty()) {
                say(msg);
                return cli::code(Exit::Usage);
            }
        std::string what = e.what();
        unguard(what);
        say(what + "; see vigilctl" + where + " --help");
        return cli::code(Exit::Usage);
    }

    if (import->parsed()) return cli::import::run(imp, cli::import::environment_of_process());

    auto units_json = [&] { return ctl::Json(o.units); };
    if (status->parsed()) {
        cmd = ctl::Cmd::Status;
        if (!o.units.empty()) args["units"] = units_json();
    } else if (start->parsed() || stop->parsed() || restart->parsed()) {
        cmd = start->parsed()  ? ctl::Cmd::Start
              : stop->parsed() ? ctl::Cmd::Stop
                               : ctl::Cmd::Restart;
        args["units"] = units_json();
        if (max_unavailable->count() > 0 && !o.rolling) {
            say("--max-unavailable needs --rolling (vigilctl restart --rolling "
                "--max-unavailable N UNIT)");
            return cli::code(Exit::Usage);
        }
        if (o.rolling) {
            if (o.units.size() != 1) {
                say("restart --rolling takes one unit: an instanced unit's name, e.g. web for "
                    "web@1..web@N");
                return cli::code(Exit::Usage);
            }
            args["rolling"] = true;
            if (max_unavailable->count() > 0) args["max_unavailable"] = o.max_unavailable;
        }
    } else if (sig->parsed()) {
        cmd = ctl::Cmd::Signal;
        auto n = core::parse_signal(o.signal);
        if (!n) {
            say("unknown signal '" + o.signal +
                "' (try SIGTERM, SIGHUP, SIGKILL, SIGUSR1 or a number)");
            return cli::code(Exit::Usage);
        }
        args["signal"] = *n;
        args["units"] = units_json();
    } else if (reload->parsed()) {
        cmd = ctl::Cmd::Reload;
    } else if (logs->parsed() || events->parsed()) {
        cmd = logs->parsed() ? ctl::Cmd::Logs : ctl::Cmd::Events;
        if (auto done = stream_args(o, ctl::to_string(cmd), args)) return done;
        if (o.reopen) args["reopen"] = true;
    } else if (tree->parsed()) {
        cmd = ctl::Cmd::Tree;
    } else if (checks->parsed()) {
        cmd = ctl::Cmd::Checks;
        if (!o.units.empty()) args["units"] = units_json();
    } else if (check->parsed()) {
        cmd = ctl::Cmd::Check;
        // UNIT/PROBE: a unit's name is a file name, so the last '/' separates them.
        const auto slash = o.run.rfind('/');
        if (slash == std::string::npos || slash == 0 || slash + 1 == o.run.size()) {
            say("--run takes UNIT/PROBE, e.g. web/liveness (not '" + o.run +
                "'); `vigilctl checks UNIT` lists a unit's probes");
            return cli::code(Exit::Usage);
        }
        args["unit"] = o.run.substr(0, slash);
        args["probe"] = o.run.substr(slash + 1);
        args["run"] = true;
    } else if (shutdown->parsed()) {
        cmd = ctl::Cmd::Shutdown;
    } else if (reexec->parsed()) {
        cmd = ctl::Cmd::Reexec;
    } else if (version->parsed()) {
        cmd = ctl::Cmd::Version;
    }
    return std::nullopt;
}

} // namespace

int main(int argc, char **argv) {
    std::optional<Invocation> inv;
    if (const char *full = std::getenv("VIGILCTL_FULL_PARSER"); !full || std::strcmp(full, "1"))
        inv = parse_fast(argc, argv);
    if (!inv) {
        inv.emplace();
        if (auto done = parse_full(argc, argv, *inv)) return *done;
    }
    return Run(inv->o, inv->cmd, std::move(inv->args)).go();
}

// vigilctl: the command-line client of vigild's control socket (vigilctl(1)).
//
// One request a run: connect, send the request at once (without waiting for the hello, which
// saves a round trip), read the hello and the answer, render, exit with a status from
// exit_codes.hpp. Streams (`logs -f`, `events -f`) run until vigild ends them or the user
// interrupts.
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
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <vector>

#include "cli11.hpp"
#include "exit_codes.hpp"
#include "import.hpp"
#include "proc_figures.hpp"
#include "render.hpp"
#include "vigil/core/names.hpp"
#include "vigil/ctl/client.hpp"
#include "vigil/ctl/protocol.hpp"
#include "vigil/unit/values.hpp"

using namespace vigil;
using vigil::cli::Exit;

namespace {

struct Options {
    std::string socket;
    bool json = false;
    bool no_color = false;
    double timeout_s = 10.0;

    std::vector<std::string> units;
    std::string unit;
    std::string signal;
    bool follow = false;
    bool reopen = false;
    int lines = -1;
};

void say(const std::string &msg) {
    std::fprintf(stderr, "vigilctl: %s\n", msg.c_str());
}

void out(const std::string &text) {
    std::fwrite(text.data(), 1, text.size(), stdout);
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
        style_.color = use_color(o);
        if (!o.json && isatty(STDOUT_FILENO) == 1) style_.width = terminal_width();
        timeout_ms_ = o.timeout_s <= 0 ? -1 : static_cast<int>(o.timeout_s * 1000.0);
    }

    int go() {
        std::string path = o_.socket.empty() ? ctl::socket_path_from_env() : o_.socket;
        // The request is ready before the connect: vigild wakes on the connection, and the
        // sooner the request follows, the likelier it is read in that same wake-up.
        std::string request = ctl::make_request(1, cmd_, args_);
        if (detail_ && !o_.json) request += detail_requests();
        ctl::Client &c = c_;
        if (int r = c.connect(path, timeout_ms_); r != 0) return cannot_connect(path, r);
        // A broken pipe is not the end: vigild may have answered with an error and hung up
        // before reading all of the request (a line over its limit, too many connections).
        // That answer is in our receive buffer and says more than EPIPE, so read on; only
        // when nothing came is the failed send what we report.
        int sent = c.send_all(request, timeout_ms_);
        if (sent != 0 && sent != -EPIPE && sent != -ECONNRESET) return lost(sent);
        bool streaming = cmd_ == ctl::Cmd::Logs || cmd_ == ctl::Cmd::Events;
        bool seen_hello = false;
        std::string line, err;
        for (;;) {
            // Once a follow stream has started, wait for ever: items come when they come.
            int wait = (o_.follow && seen_hello) ? -1 : timeout_ms_;
            if (int r = c.read_line(line, wait); r != 0) return lost(sent != 0 ? sent : r);
            auto m = ctl::parse_server_message(line, &err);
            if (!m) {
                say(err + "; is " + path + " vigild's socket?");
                return cli::code(Exit::Error);
            }
            using K = ctl::ServerMessage::Kind;
            if (detail_ && m->kind != K::Hello && (m->id == 2 || m->id == 3)) {
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
                return failed(*m);
            case K::StreamItem:
                if (!streaming) continue;
                streamed_ = true;
                stream_item(m->body);
                continue;
            case K::End:
                return cli::code(Exit::Ok);
            case K::Reply:
                if (m->id != 1) continue;  // not ours (a server-level notice)
                if (detail_ && !o_.json) { // the answers to the probes and logs requests follow
                    status_ = std::move(m->body);
                    continue;
                }
                return replied(m->body);
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
        std::snprintf(buf, sizeof buf, "%g s", o_.timeout_s);
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
            // Lines of a unit other than the one named (a glob's, an instanced unit's) say
            // whose they are. A continued line of one unit interrupted by another's is ended.
            std::string unit;
            bool continued = false;
            if (item.is_object()) {
                if (auto it = item.find("unit"); it != item.end() && it->is_string()) unit = *it;
                if (auto it = item.find("continued"); it != item.end() && it->is_boolean())
                    continued = it->get<bool>();
            }
            bool piece = mid_line_ && unit == mid_line_unit_;
            if (mid_line_ && !piece) out("\n");
            out(cli::render_log(item, style_, !piece && !unit.empty() && unit != o_.unit));
            mid_line_ = continued;
            mid_line_unit_ = unit;
        } else {
            out(cli::render_event(item, style_));
        }
        if (o_.follow) std::fflush(stdout);
    }

    int replied(const ctl::Json &result) {
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
            return results(result);
        case ctl::Cmd::Reload:
            if (!o_.json) out(cli::render_reload(result, style_));
            if (auto d = result.find("diagnostics"); d != result.end() && d->is_array())
                for (const auto &x : *d)
                    if (x.is_string()) std::fprintf(stderr, "%s\n", x.get<std::string>().c_str());
            return cli::code(Exit::Ok);
        case ctl::Cmd::Tree:
            if (!o_.json) out(cli::render_tree(result, style_));
            return cli::code(Exit::Ok);
        case ctl::Cmd::Shutdown:
            if (!o_.json) out("vigild is shutting down\n");
            return cli::code(Exit::Ok);
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
            if (!o_.json && o_.reopen) out(o_.unit + ": log file reopened\n");
            return cli::code(Exit::Ok);
        case ctl::Cmd::Events:
            return cli::code(Exit::Ok); // a reply instead of a stream: nothing to show
        }
        return cli::code(Exit::Ok);
    }

    // The two requests that follow `status NAME`'s (ids 2 and 3, answered in order after it):
    // the unit's probes and its last log lines. A vigild without `checks` answers
    // unknown_command, and the Probes line is left out.
    std::string detail_requests() const {
        const std::string &name = o_.units[0];
        ctl::Json checks{{"id", 2}, {"cmd", "checks"}, {"args", {{"units", {name}}}}};
        return checks.dump(-1, ' ', false, ctl::Json::error_handler_t::replace) + "\n" +
               ctl::make_request(3, ctl::Cmd::Logs, {{"unit", name}, {"lines", detail_log_lines}});
    }

    // An answer to one of those (the status's came first): the run ends with the end of the
    // log lines, or their error (shown without them).
    std::optional<int> detail_answer(ctl::ServerMessage &m) {
        using K = ctl::ServerMessage::Kind;
        if (m.id == 2 && m.kind == K::Reply) checks_ = std::move(m.body);
        if (m.id != 3) return std::nullopt;
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
        timespec ts{};
        clock_gettime(CLOCK_REALTIME, &ts);
        d.now_ms = static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
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
        if (!o_.json) out(cli::render_results(result, style_));
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

    static constexpr int detail_log_lines = 10;

    const Options &o_;
    ctl::Client c_;
    ctl::Cmd cmd_;
    ctl::Json args_;
    cli::Style style_;
    int timeout_ms_ = 10'000;
    ctl::Json hello_;
    bool streamed_ = false; // a stream item was shown
    bool mid_line_ = false; // logs: the last piece shown was "continued"
    std::string mid_line_unit_;
    bool detail_ = false; // `status NAME`: see the constructor
    ctl::Json status_;    // its answers, kept until the last one (the log lines) has come
    ctl::Json checks_;
    ctl::Json log_ = ctl::Json::array();
};

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
    app.add_option("--timeout", o.timeout_s, "seconds to wait for vigild (0: for ever)")
        ->capture_default_str()
        ->check(CLI::NonNegativeNumber);
    app.add_flag("--no-color", o.no_color, "no colour even on a terminal (also: NO_COLOR)");

    ctl::Cmd &cmd = inv.cmd;
    ctl::Json &args = inv.args;

    auto *status = app.add_subcommand("status", "show units: state, pid, uptime, restarts");
    status->add_option("units", o.units, "units, globs or supervisors (default: all)");
    auto *start = app.add_subcommand("start", "start units (not counted as restarts)");
    start->add_option("units", o.units, "units, globs or supervisors")->required();
    auto *stop = app.add_subcommand("stop", "stop units; they stay stopped until started");
    stop->add_option("units", o.units, "units, globs or supervisors")->required();
    auto *restart = app.add_subcommand("restart", "stop then start units");
    restart->add_option("units", o.units, "units, globs or supervisors")->required();
    auto *sig = app.add_subcommand("signal", "send a signal to units' process groups");
    sig->add_option("signal", o.signal, "SIGTERM, HUP, 9, SIGRTMIN+1, ...")->required();
    sig->add_option("units", o.units, "units, globs or supervisors")->required();
    auto *reload = app.add_subcommand("reload", "reread unit files and apply the differences");
    auto *logs = app.add_subcommand("logs", "show a unit's recent output");
    logs->add_flag("-f,--follow", o.follow, "keep printing new lines");
    logs->add_option("-n,--lines", o.lines, "how many stored lines to show first")
        ->check(CLI::NonNegativeNumber);
    logs->add_flag("--reopen", o.reopen, "reopen the unit's log file (after rotation)");
    logs->add_option("unit", o.unit, "the unit")->required();
    auto *tree = app.add_subcommand("tree", "draw the supervision tree with states");
    auto *events = app.add_subcommand("events", "show the history: what happened and why");
    events->add_flag("-f,--follow", o.follow, "keep printing new events");
    events->add_option("-n,--lines", o.lines, "how many stored events to show first")
        ->check(CLI::NonNegativeNumber);
    events->add_option("unit", o.unit, "only this unit");
    auto *shutdown = app.add_subcommand("shutdown", "stop every unit and end vigild");
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
        for (std::string *v : {&o.socket, &o.unit, &o.signal, &imp.config, &imp.out})
            unguard(*v);
        for (std::string &u : o.units)
            unguard(u);
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
    } else if (logs->parsed()) {
        cmd = ctl::Cmd::Logs;
        args["unit"] = o.unit;
        if (o.lines >= 0) args["lines"] = o.lines;
        if (o.follow) args["follow"] = true;
        if (o.reopen) args["reopen"] = true;
    } else if (tree->parsed()) {
        cmd = ctl::Cmd::Tree;
    } else if (events->parsed()) {
        cmd = ctl::Cmd::Events;
        if (!o.unit.empty()) args["unit"] = o.unit;
        if (o.lines >= 0) args["lines"] = o.lines;
        if (o.follow) args["follow"] = true;
    } else if (shutdown->parsed()) {
        cmd = ctl::Cmd::Shutdown;
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

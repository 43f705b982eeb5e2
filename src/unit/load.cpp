// load_dir(): unit files -> core::TreeSpec + per-node unit::Unit, with every diagnostic.
//
// Three passes, each of which reports everything it finds:
//  1. per file: read (safely: see "reading the directory"), parse with positions, validate
//     every field (types, enums, ranges and bounds, durations, sizes, regexes, kind-specific
//     fields), resolve users and groups, and fill the specs;
//  2. across files: parent and after references, parent and after cycles, parent kinds,
//     significance against the parent's auto_shutdown, instance name clashes, the size of the
//     tree once instances are expanded;
//  3. only when nothing was reported: lay out the tree (instances expanded, children in start
//     order) and compute fingerprints.
// A unit whose file could not be parsed still exists by name in pass 2, so that a syntax error
// in db.json does not also produce "unknown unit db" in every file that names it.
#include "vigil/core/names.hpp"
#include "vigil/unit/unit.hpp"

#include <algorithm>
#include <cerrno>
#include <dirent.h>
#include <fcntl.h>
#include <functional>
#include <queue>
#include <set>
#include <sys/resource.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

#include "checker.hpp"
#include "listen_parse.hpp"
#include "vigil/unit/json_positions.hpp"
#include "vigil/unit/values.hpp"

namespace vigil::unit {

std::string format(const Diagnostic &d) {
    std::string out;
    if (!d.file.empty()) {
        out += detail::printable(d.file);
        if (d.line > 0) out += ":" + std::to_string(d.line) + ":" + std::to_string(d.column);
        out += ": ";
    }
    if (!d.field.empty()) out += detail::printable(d.field) + ": ";
    out += d.message;
    return out;
}

namespace {

using namespace detail;
using core::AutoShutdown;
using core::Kind;
using core::Restart;
using core::Strategy;

// JSON spellings of the core's enums. Each table lists every enumerator once, in order; the
// static_asserts catch a new enumerator without a spelling.
constexpr std::array<EnumName<Kind>, 2> kind_names{
    {{"service", Kind::Service}, {"supervisor", Kind::Supervisor}}};
constexpr std::array<EnumName<Restart>, 3> restart_names{{{"permanent", Restart::Permanent},
                                                          {"transient", Restart::Transient},
                                                          {"temporary", Restart::Temporary}}};
constexpr std::array<EnumName<Strategy>, 3> strategy_names{
    {{"one_for_one", Strategy::OneForOne},
     {"one_for_all", Strategy::OneForAll},
     {"rest_for_one", Strategy::RestForOne}}};
constexpr std::array<EnumName<AutoShutdown>, 3> auto_shutdown_names{
    {{"never", AutoShutdown::Never},
     {"any_significant", AutoShutdown::AnySignificant},
     {"all_significant", AutoShutdown::AllSignificant}}};
constexpr std::array<EnumName<Stream>, 3> stream_names{
    {{"stdout", Stream::Stdout}, {"stderr", Stream::Stderr}, {"both", Stream::Both}}};
// logs.stderr: its own pipe, or into stdout's (LogSpec::merge_stderr).
constexpr std::array<EnumName<bool>, 2> stderr_names{{{"separate", false}, {"stdout", true}}};
constexpr std::array<EnumName<PatternAction>, 4> action_names{
    {{"restart", PatternAction::Restart},
     {"stop", PatternAction::Stop},
     {"unhealthy", PatternAction::Unhealthy},
     {"event", PatternAction::Event}}};
// update: what reload does with a changed unit's instances.
constexpr std::array<EnumName<core::Update>, 2> update_names{
    {{"restart", core::Update::Restart}, {"rolling", core::Update::Rolling}}};
static_assert(static_cast<std::size_t>(core::Update::Rolling) + 1 == update_names.size());
static_assert(static_cast<std::size_t>(Kind::Supervisor) + 1 == kind_names.size());
static_assert(static_cast<std::size_t>(Restart::Temporary) + 1 == restart_names.size());
static_assert(static_cast<std::size_t>(Strategy::RestForOne) + 1 == strategy_names.size());
static_assert(static_cast<std::size_t>(AutoShutdown::AllSignificant) + 1 ==
              auto_shutdown_names.size());
static_assert(static_cast<std::size_t>(Stream::Both) + 1 == stream_names.size());
static_assert(static_cast<std::size_t>(PatternAction::Event) + 1 == action_names.size());
template <class E, std::size_t N> constexpr bool in_order(const std::array<EnumName<E>, N> &t) {
    for (std::size_t i = 0; i < N; ++i)
        if (static_cast<std::size_t>(t[i].value) != i) return false;
    return true;
}
static_assert(in_order(kind_names) && in_order(restart_names) && in_order(strategy_names) &&
              in_order(auto_shutdown_names) && in_order(stream_names) && in_order(action_names));

const Fields common_fields{"$schema", "kind",    "description", "parent",
                           "after",   "restart", "significant", "stop"};
const Fields service_fields{"command",  "cwd",       "env",       "env_file",        "user",
                            "group",    "umask",     "limits",    "backoff",         "logs",
                            "ready",    "liveness",  "readiness", "startup",         "watchdog",
                            "patterns", "instances", "update",    "max_unavailable", "listen"};
const Fields supervisor_fields{"strategy", "intensity", "period", "auto_shutdown", "parallel"};
const Fields root_fields{"$schema",   "kind",   "description",   "strategy",
                         "intensity", "period", "auto_shutdown", "parallel"};
// Nested objects' fields (a unit's `stop`, `backoff`, `logs`, `ready`, a probe's `tcp` and `http`,
// a `patterns` item, a `limits` entry given as {soft, hard}).
const Fields stop_fields{"signal", "timeout", "drain"};
const Fields backoff_fields{"initial", "max", "factor", "jitter", "reset_after"};
const Fields logs_fields{"forward",    "file", "max_size", "keep",
                         "timestamps", "ring", "max_line", "stderr"};
const Fields ready_fields{"notify", "fd", "log", "probe", "timeout"};
const Fields tcp_fields{"host", "port"};
const Fields http_fields{"host", "port", "path", "headers"};
const Fields pattern_fields{"match", "stream", "action", "count", "within"};
const Fields limit_fields{"soft", "hard"};
const Fields probe_fields{"exec",
                          "tcp",
                          "http",
                          "initial_delay",
                          "period",
                          "timeout",
                          "failure_threshold",
                          "success_threshold"};

// [a-z0-9][a-z0-9._@-]*, at most bounds::max_name_bytes long: safe as a file name, a log
// prefix, a socket name and a vigilctl argument.
bool name_chars_ok(std::string_view n) {
    auto lower_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
    if (n.empty() || !lower_digit(n[0])) return false;
    return std::all_of(n.begin(), n.end(), [&](char c) {
        return lower_digit(c) || c == '.' || c == '_' || c == '@' || c == '-';
    });
}

bool valid_name(std::string_view n) {
    return n.size() <= bounds::max_name_bytes && name_chars_ok(n);
}

Fields concat(const Fields &a, const Fields &b) {
    Fields out = a;
    out.insert(out.end(), b.begin(), b.end());
    return out;
}

bool contains(const Fields &f, std::string_view k) {
    return std::find(f.begin(), f.end(), k) != f.end();
}

// Everything pass 1 learns about one file.
struct Raw {
    std::string name;
    std::string file;
    bool is_root = false;
    bool usable = false; // parsed into an object; false: exists by name only
    PositionedJson pj;
    core::ChildSpec spec;
    Unit unit;
    std::optional<std::string> parent; // as written
    std::vector<std::string> after;    // as written, index = /after/i
    int instances = 0;                 // 0: not given (one child, no suffix)
    std::uint64_t bytes = 0;           // the file's size: each instance holds a copy
    std::string canonical;             // canonical JSON for the fingerprint
};

// ---- pass 1: fields --------------------------------------------------------------------

// A command checked before its env is known.
const std::map<std::string, std::string> no_env;

std::string exec_bytes_message(std::size_t n) {
    return std::to_string(n) + " bytes of execve arguments; at most " +
           std::to_string(bounds::max_exec_bytes) +
           " are allowed (pass large data in a file instead)";
}

// An HTTP token (RFC 9110): what a header name may be.
bool http_token(std::string_view s) {
    static constexpr std::string_view extra = "!#$%&'*+-.^_`|~";
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               extra.find(ch) != std::string_view::npos;
    });
}

// A control character other than a tab (CR and LF would end the header or the request line);
// with `space_too`, a space or a tab as well (they would end a request line's path).
bool has_control(std::string_view s, bool space_too) {
    return std::any_of(s.begin(), s.end(), [&](char ch) {
        auto u = static_cast<unsigned char>(ch);
        return (u < 0x20 && u != '\t') || u == 0x7f || (space_too && (u == ' ' || u == '\t'));
    });
}

std::optional<ProbeSpec> parse_probe(Checker &c, const json &v, const std::string &ptr,
                                     bool single_success) {
    if (!c.expect_object(v, ptr)) return std::nullopt;
    c.check_keys(v, ptr, probe_fields);
    ProbeSpec p;
    bool ok = true;
    int methods = 0;
    std::string first_method;
    for (std::string_view m : {"exec", "tcp", "http"}) {
        if (!v.contains(m)) continue;
        std::string mp = pointer_append(ptr, m);
        if (++methods > 1) {
            c.error_at_key(mp, "only one of \"exec\", \"tcp\", \"http\" may be given (this "
                               "probe already has \"" +
                                   first_method + "\")");
            ok = false;
            continue;
        }
        first_method = m;
        const json &mv = v[std::string(m)];
        if (m == "exec") {
            p.kind = ProbeKind::Exec;
            auto cmd = c.string_array(mv, mp, true, bounds::max_argv, bounds::max_arg_bytes);
            if (cmd && (*cmd)[0].empty()) {
                c.error(pointer_append(mp, "0"), "must not be empty");
                cmd.reset();
            }
            if (cmd && bounds::exec_bytes(*cmd, no_env) > bounds::max_exec_bytes) {
                c.error(mp, "makes " + exec_bytes_message(bounds::exec_bytes(*cmd, no_env)));
                cmd.reset();
            }
            if (cmd)
                p.command = *cmd;
            else
                ok = false;
            continue;
        }
        p.kind = m == "tcp" ? ProbeKind::Tcp : ProbeKind::Http;
        if (!c.expect_object(mv, mp)) {
            ok = false;
            continue;
        }
        c.check_keys(mv, mp, m == "tcp" ? tcp_fields : http_fields);
        if (mv.contains("host")) {
            if (auto h =
                    c.string(mv["host"], pointer_append(mp, "host"), true, bounds::max_host_bytes))
                p.host = *h;
            else
                ok = false;
        }
        if (!mv.contains("port")) {
            c.error(mp, "missing field \"port\"");
            ok = false;
        } else if (auto port = c.integer(mv["port"], pointer_append(mp, "port"), 1, 65535)) {
            p.port = static_cast<int>(*port);
        } else {
            ok = false;
        }
        if (mv.contains("path")) {
            std::string pp = pointer_append(mp, "path");
            auto path = c.string(mv["path"], pp, false, bounds::max_url_path_bytes);
            if (path && !path->starts_with("/")) {
                c.error(pp, "must start with \"/\"; got " + describe(mv["path"]));
                path.reset();
            } else if (path && has_control(*path, true)) {
                c.error(pp, "must not contain spaces or control characters (percent-encode "
                            "them); got " +
                                describe(mv["path"]));
                path.reset();
            }
            if (path)
                p.path = *path;
            else
                ok = false;
        }
        if (mv.contains("headers")) {
            std::string hp = pointer_append(mp, "headers");
            auto h = c.string_map(mv["headers"], hp, bounds::max_headers,
                                  bounds::max_header_name_bytes, bounds::max_header_value_bytes);
            bool headers_ok = h.has_value();
            static const decltype(p.headers) none;
            for (const auto &[k, val] : h ? *h : none) {
                if (!http_token(k)) {
                    c.error_at_key(pointer_append(hp, k),
                                   "a header name is a token: letters, digits and "
                                   "!#$%&'*+-.^_`|~; got " +
                                       shown(k));
                    headers_ok = false;
                } else if (has_control(val, false)) {
                    c.error(pointer_append(hp, k),
                            "must not contain control characters (CR or LF would end the header)");
                    headers_ok = false;
                }
            }
            if (!headers_ok) h.reset();
            if (h)
                p.headers = *h;
            else
                ok = false;
        }
    }
    if (methods == 0) {
        c.error(ptr, "expected exactly one of \"exec\", \"tcp\", \"http\"; got none");
        ok = false;
    }
    auto dur = [&](const char *k, Duration &dst, Duration min) {
        if (!v.contains(k)) return;
        if (auto d =
                c.duration(v[k], pointer_append(ptr, k), false, min, bounds::max_field_duration))
            dst = **d;
        else
            ok = false;
    };
    dur("initial_delay", p.initial_delay, Duration{0});
    dur("period", p.period, Duration{1});
    dur("timeout", p.timeout, Duration{1});
    auto count = [&](const char *k, unsigned &dst) {
        if (!v.contains(k)) return;
        if (auto n = c.integer(v[k], pointer_append(ptr, k), 1, bounds::max_threshold))
            dst = static_cast<unsigned>(*n);
        else
            ok = false;
    };
    count("failure_threshold", p.failure_threshold);
    count("success_threshold", p.success_threshold);
    if (single_success && p.success_threshold != 1 && v.contains("success_threshold")) {
        c.error(pointer_append(ptr, "success_threshold"),
                "must be 1 for liveness and startup probes (as in Kubernetes); got " +
                    describe(v["success_threshold"]));
        ok = false;
    }
    if (!ok) return std::nullopt;
    return p;
}

void parse_stop(Checker &c, const json &v, Raw &r) {
    const std::string ptr = "/stop";
    if (!c.expect_object(v, ptr)) return;
    bool sup = r.spec.kind == Kind::Supervisor;
    c.check_keys(v, ptr, stop_fields);
    if (v.contains("signal")) {
        std::string sp = "/stop/signal";
        const json &s = v["signal"];
        if (sup) {
            c.error_at_key(sp, "a supervisor has no process of its own: \"signal\" applies to "
                               "services only (a supervisor stops its children, each with its "
                               "own stop signal)");
        } else {
            std::optional<int> sig;
            if (s.is_string())
                sig = core::parse_signal(s.get_ref<const std::string &>());
            else if (s.is_number_integer() && s.get<std::int64_t>() >= 1 &&
                     s.get<std::int64_t>() <= 64)
                sig = core::parse_signal(std::to_string(s.get<std::int64_t>()));
            if (sig)
                r.spec.stop.signal = *sig;
            else
                c.error(sp, "expected a signal name like \"SIGTERM\" or \"TERM\", or a signal "
                            "number; got " +
                                describe(s));
        }
    }
    if (v.contains("timeout")) {
        if (auto d = c.duration(v["timeout"], "/stop/timeout", true, Duration{0},
                                bounds::max_field_duration))
            r.spec.stop.timeout = *d;
    }
    if (v.contains("drain")) {
        if (sup)
            c.error_at_key("/stop/drain", "a supervisor serves nothing to drain: \"drain\" "
                                          "applies to services only (each child drains itself)");
        else if (auto d =
                     c.duration(v["drain"], "/stop/drain", false, Duration{0}, bounds::max_drain))
            r.spec.stop.drain = **d;
    }
}

// update and max_unavailable (after instances): a rolling restart never has more instances
// down than the unit has.
void parse_update(Checker &c, const json &j, Raw &r) {
    if (j.contains("update"))
        if (auto v = c.enumeration(j["update"], "/update", update_names)) r.spec.update = *v;
    if (!j.contains("max_unavailable")) return;
    auto n = c.integer(j["max_unavailable"], "/max_unavailable", 1, bounds::max_instances);
    if (!n) return;
    const int copies = r.instances == 0 ? 1 : r.instances;
    if (*n > copies) {
        c.error("/max_unavailable",
                std::to_string(*n) + " is more than the unit's " + std::to_string(copies) +
                    (copies == 1 ? " instance" : " instances") +
                    "; at most \"instances\" may be down at once (lower it, or add instances)");
        return;
    }
    r.spec.max_unavailable = static_cast<int>(*n);
}

void parse_limits(Checker &c, const json &v, Raw &r) {
    const std::string ptr = "/limits";
    if (!c.expect_object(v, ptr)) return;
    auto one = [&](const json &x, const std::string &p) -> std::optional<std::uint64_t> {
        if (x.is_string() && x.get_ref<const std::string &>() == "infinity") return RLIM_INFINITY;
        if (x.is_number_unsigned()) return x.get<std::uint64_t>();
        // Sizes read naturally for the byte-valued limits (stack, memlock, as...).
        if (x.is_string())
            if (auto n = parse_size(x.get_ref<const std::string &>())) return n;
        c.error(p, "expected a non-negative integer, a size like \"8MiB\" or \"infinity\"; got " +
                       describe(x));
        return std::nullopt;
    };
    for (const auto &[k, x] : v.items()) {
        std::string p = pointer_append(ptr, k);
        auto res = rlimit_resource(k);
        if (!res) {
            std::string msg = "unknown limit " + shown(k);
            if (auto near = closest(k, rlimit_names()); !near.empty())
                msg += "; did you mean \"" + near + "\"?";
            else
                msg += " (see setrlimit(2): nofile, nproc, core, memlock, as, ...)";
            c.error_at_key(p, msg);
            continue;
        }
        if (x.is_object()) {
            c.check_keys(x, p, limit_fields);
            std::optional<std::uint64_t> soft, hard;
            for (const char *k2 : {"soft", "hard"}) {
                if (!x.contains(k2)) {
                    c.error(p, std::string("missing field \"") + k2 + "\"");
                    continue;
                }
                auto val = one(x[k2], pointer_append(p, k2));
                (std::string_view(k2) == "soft" ? soft : hard) = val;
            }
            if (soft && hard) {
                if (*soft > *hard)
                    c.error(pointer_append(p, "soft"), "must not exceed \"hard\"");
                else
                    r.unit.spawn.limits.push_back({*res, *soft, *hard});
            }
        } else if (auto val = one(x, p)) {
            r.unit.spawn.limits.push_back({*res, *val, *val});
        }
    }
}

void parse_backoff(Checker &c, const json &v, Raw &r) {
    const std::string ptr = "/backoff";
    if (!c.expect_object(v, ptr)) return;
    c.check_keys(v, ptr, backoff_fields);
    auto &b = r.spec.backoff;
    bool max_ok = true;
    if (v.contains("initial")) {
        if (auto d = c.duration(v["initial"], "/backoff/initial", false, Duration{0},
                                bounds::max_field_duration))
            b.initial = **d;
        else
            max_ok = false;
    }
    if (v.contains("max")) {
        if (auto d = c.duration(v["max"], "/backoff/max", false, Duration{0},
                                bounds::max_field_duration))
            b.max = **d;
        else
            max_ok = false;
    }
    if (max_ok && b.max < b.initial)
        c.error(v.contains("max") ? "/backoff/max" : "/backoff/initial",
                "\"max\" (" + core::format_duration(b.max) +
                    ") must not be less than \"initial\" (" + core::format_duration(b.initial) +
                    ")");
    if (v.contains("factor"))
        if (auto f = c.number(v["factor"], "/backoff/factor", 1.0, 100.0)) b.factor = *f;
    if (v.contains("jitter"))
        if (auto j = c.number(v["jitter"], "/backoff/jitter", 0.0, 1.0)) b.jitter = *j;
    if (v.contains("reset_after"))
        if (auto d = c.duration(v["reset_after"], "/backoff/reset_after", false, Duration{1},
                                bounds::max_field_duration))
            b.reset_after = **d;
}

void parse_logs(Checker &c, const json &v, Raw &r) {
    const std::string ptr = "/logs";
    if (!c.expect_object(v, ptr)) return;
    c.check_keys(v, ptr, logs_fields);
    auto &l = r.unit.logs;
    if (v.contains("forward"))
        if (auto b = c.boolean(v["forward"], "/logs/forward")) l.forward = *b;
    if (v.contains("file"))
        if (auto s = c.string(v["file"], "/logs/file", true, bounds::max_path_bytes)) l.file = *s;
    if (v.contains("max_size"))
        if (auto s =
                c.size(v["max_size"], "/logs/max_size", bounds::min_log_size, bounds::max_log_size))
            l.max_size = *s;
    if (v.contains("keep"))
        if (auto n = c.integer(v["keep"], "/logs/keep", 0, bounds::max_keep))
            l.keep = static_cast<unsigned>(*n);
    if (v.contains("timestamps"))
        if (auto b = c.boolean(v["timestamps"], "/logs/timestamps")) l.timestamps = *b;
    if (v.contains("ring"))
        if (auto s = c.size(v["ring"], "/logs/ring", 0, bounds::max_ring)) l.ring = *s;
    if (v.contains("max_line"))
        if (auto s = c.size(v["max_line"], "/logs/max_line", bounds::min_line, bounds::max_line))
            l.max_line = *s;
    if (v.contains("stderr"))
        if (auto m = c.enumeration(v["stderr"], "/logs/stderr", stderr_names)) l.merge_stderr = *m;
}

void parse_ready(Checker &c, const json &v, Raw &r) {
    const std::string ptr = "/ready";
    if (!c.expect_object(v, ptr)) return;
    c.check_keys(v, ptr, ready_fields);
    auto &rd = r.unit.ready;
    if (v.contains("notify"))
        if (auto b = c.boolean(v["notify"], "/ready/notify")) rd.notify = *b;
    if (v.contains("fd"))
        if (auto n = c.integer(v["fd"], "/ready/fd", 3, 1023)) rd.fd = static_cast<int>(*n);
    if (v.contains("log"))
        if (auto s = c.regex(v["log"], "/ready/log")) rd.log = *s;
    if (v.contains("probe"))
        if (auto p = parse_probe(c, v["probe"], "/ready/probe", false)) rd.probe = *p;
    if (v.contains("timeout")) {
        if (auto d = c.duration(v["timeout"], "/ready/timeout", false, Duration{1},
                                bounds::max_field_duration))
            rd.timeout = **d;
        bool method =
            v.contains("notify") || v.contains("fd") || v.contains("log") || v.contains("probe");
        if (!method)
            c.error_at_key("/ready/timeout", "has no effect without a readiness method "
                                             "(\"notify\", \"fd\", \"log\" or \"probe\")");
    }
}

void parse_patterns(Checker &c, const json &v, Raw &r) {
    const std::string ptr = "/patterns";
    if (!v.is_array()) {
        c.error(ptr, "expected an array of objects; got " + describe(v));
        return;
    }
    if (v.size() > bounds::max_patterns) {
        c.error(ptr, "must have at most " + std::to_string(bounds::max_patterns) + " items; got " +
                         std::to_string(v.size()));
        return;
    }
    for (std::size_t i = 0; i < v.size(); ++i) {
        std::string p = pointer_append(ptr, std::to_string(i));
        const json &x = v[i];
        if (!c.expect_object(x, p)) continue;
        c.check_keys(x, p, pattern_fields);
        PatternSpec ps;
        bool ok = true;
        if (!x.contains("match")) {
            c.error(p, "missing field \"match\"");
            ok = false;
        } else {
            std::string mp = pointer_append(p, "match");
            if (auto s = c.regex(x["match"], mp)) {
                ps.match = *s;
                Pos pos = c.value_pos(mp);
                ps.line = pos.line;
                ps.column = pos.column;
            } else {
                ok = false;
            }
        }
        if (x.contains("stream")) {
            const std::string sp = pointer_append(p, "stream");
            if (auto s = c.enumeration(x["stream"], sp, stream_names)) {
                ps.stream = *s;
                if (ps.stream == Stream::Stderr && r.unit.logs.merge_stderr) {
                    c.error(sp, "there are no stderr lines to match: logs.stderr is \"stdout\" "
                                "(stderr goes into stdout); use \"stdout\" or \"both\"");
                    ok = false;
                }
            } else {
                ok = false;
            }
        }
        if (x.contains("action")) {
            if (auto a = c.enumeration(x["action"], pointer_append(p, "action"), action_names))
                ps.action = *a;
            else
                ok = false;
        }
        if (x.contains("count")) {
            if (auto n =
                    c.integer(x["count"], pointer_append(p, "count"), 1, bounds::max_pattern_count))
                ps.count = static_cast<unsigned>(*n);
            else
                ok = false;
        }
        if (x.contains("within")) {
            if (auto d = c.duration(x["within"], pointer_append(p, "within"), false, Duration{1},
                                    bounds::max_window))
                ps.within = **d;
            else
                ok = false;
        }
        if (ok) r.unit.patterns.push_back(std::move(ps));
    }
}

// proc::resolve_identity() results of one load, by (user, group): twenty thousand units that
// run as www-data cost one NSS lookup. It lives in one load_dir() call: the loader keeps no
// global state, so loads may run on any thread (getpwnam_r and co. are thread-safe).
class Identities {
public:
    const proc::IdentityResult &get(const std::optional<std::string> &user,
                                    const std::optional<std::string> &group) {
        auto key = std::make_pair(user, group);
        auto it = cache_.find(key);
        if (it == cache_.end()) it = cache_.emplace(key, proc::resolve_identity(user, group)).first;
        return it->second;
    }

private:
    std::map<std::pair<std::optional<std::string>, std::optional<std::string>>,
             proc::IdentityResult>
        cache_;
};

// The sockets of every unit file: no address in two files (vigild would hold one socket for
// both, or fail to bind the second), and at most bounds::max_held_sockets in all, counted as
// vigild holds them (a reuseport entry once per instance).
class HeldSockets {
public:
    void check(Checker &c, const std::vector<ListenSpec> &listen, int instances) {
        for (std::size_t i = 0; i < listen.size(); ++i) {
            const ListenSpec &l = listen[i];
            const std::string p = "/listen/" + std::to_string(l.item);
            auto [it, fresh] = owner_.emplace(l.key(), c.file());
            if (!fresh)
                c.error(p, l.describe() + " is also in " + it->second +
                               "; two unit files cannot listen on one address");
            held_ += l.reuseport ? static_cast<std::size_t>(std::max(instances, 1)) : 1;
            if (held_ > bounds::max_held_sockets && !reported_) {
                reported_ = true;
                c.error(p, "more than " + std::to_string(bounds::max_held_sockets) +
                               " listen sockets in the unit directory (reuseport counts one per "
                               "instance); vigild holds at most that many");
            }
        }
    }

private:
    std::map<std::string, std::string> owner_; // ListenSpec::key() -> its unit file
    std::size_t held_ = 0;
    bool reported_ = false;
};

// Resolves `user` and `group` now rather than at spawn time, so that a name that does not
// resolve is a diagnostic of this file, not a service that fails every start until its
// supervisor gives up and takes its siblings down. The group alone first, so that its problem
// is reported at /group.
void resolve_users(Checker &c, Identities &ids, proc::SpawnSpec &sp) {
    if (!sp.user && !sp.group) {
        sp.identity = proc::Identity{}; // run as vigild's own user: nothing to change
        return;
    }
    if (sp.group) {
        if (const auto &g = ids.get(std::nullopt, sp.group); !g.identity) {
            c.error("/group", "cannot run as " + g.error);
            return;
        }
    }
    const auto &both = ids.get(sp.user, sp.group);
    if (both.identity)
        sp.identity = *both.identity;
    else
        c.error(sp.user ? "/user" : "/group", "cannot run as " + both.error);
}

void parse_service_fields(Checker &c, const json &j, Raw &r, Identities &ids) {
    auto &sp = r.unit.spawn;
    if (!j.contains("command")) {
        c.error("", "missing field \"command\" (a service needs a command to run)");
    } else if (auto cmd = c.string_array(j["command"], "/command", true, bounds::max_argv,
                                         bounds::max_arg_bytes)) {
        if ((*cmd)[0].empty())
            c.error("/command/0", "must not be empty (argv[0] names the program)");
        else
            sp.argv = *cmd;
    }
    if (j.contains("cwd")) {
        if (auto s = c.string(j["cwd"], "/cwd", true, bounds::max_path_bytes)) {
            if (!s->starts_with("/"))
                c.error("/cwd", "must be an absolute path; got " + describe(j["cwd"]));
            else
                sp.cwd = *s;
        }
    }
    if (j.contains("env")) {
        if (auto m = c.string_map(j["env"], "/env", bounds::max_env, bounds::max_arg_bytes,
                                  bounds::max_arg_bytes)) {
            for (const auto &[k, val] : *m) {
                if (k.empty() || k.find('=') != std::string::npos)
                    c.error_at_key(pointer_append("/env", k),
                                   "an environment variable name must be non-empty and "
                                   "contain no \"=\"");
                else if (k.size() + 1 + val.size() > bounds::max_arg_bytes)
                    c.error(pointer_append("/env", k),
                            "NAME=value must be at most " + std::to_string(bounds::max_arg_bytes) +
                                " bytes long (execve's limit for one string); got " +
                                std::to_string(k.size() + 1 + val.size()) + " bytes");
                else
                    sp.env[k] = val;
            }
        }
    }
    if (j.contains("env_file")) {
        // The length bound applies to the path, after the "-" (the file bounds the string).
        if (auto s = c.string(j["env_file"], "/env_file", true, bounds::max_file_bytes)) {
            std::string path = *s;
            if (path.starts_with("-")) {
                sp.env_file_optional = true;
                path.erase(0, 1);
            }
            if (path.empty())
                c.error("/env_file", "expected a path after \"-\"");
            else if (path.size() > bounds::max_path_bytes)
                c.error("/env_file", "must be at most " + std::to_string(bounds::max_path_bytes) +
                                         " bytes long; got " + std::to_string(path.size()) +
                                         " bytes");
            else
                sp.env_file = path;
        }
    }
    if (std::size_t n = bounds::exec_bytes(sp.argv, sp.env); n > bounds::max_exec_bytes)
        c.error(j.contains("env") ? "/env" : "/command",
                "the command and env make " + exec_bytes_message(n));
    bool ids_ok = true;
    for (const char *k : {"user", "group"}) {
        if (!j.contains(k)) continue;
        std::string p = std::string("/") + k;
        std::optional<std::string> val;
        if (j[k].is_number_unsigned())
            val = std::to_string(j[k].get<std::uint64_t>());
        else if (j[k].is_string() && !j[k].get_ref<const std::string &>().empty())
            val = c.string(j[k], p, true, bounds::max_user_bytes);
        else
            c.error(p, "expected a name or a numeric id; got " + describe(j[k]));
        if (val)
            (std::string_view(k) == "user" ? sp.user : sp.group) = val;
        else
            ids_ok = false;
    }
    if (ids_ok) resolve_users(c, ids, sp);
    if (j.contains("umask")) {
        const json &u = j["umask"];
        if (const auto value = octal_mode(u))
            sp.umask = *value;
        else
            c.error("/umask", "expected an octal string like \"0022\"; got " + describe(u));
    }
    if (j.contains("limits")) parse_limits(c, j["limits"], r);
    if (j.contains("backoff")) parse_backoff(c, j["backoff"], r);
    if (j.contains("logs")) parse_logs(c, j["logs"], r);
    if (j.contains("ready")) parse_ready(c, j["ready"], r);
    if (j.contains("liveness")) r.unit.liveness = parse_probe(c, j["liveness"], "/liveness", true);
    if (j.contains("readiness"))
        r.unit.readiness = parse_probe(c, j["readiness"], "/readiness", false);
    if (j.contains("startup")) r.unit.startup = parse_probe(c, j["startup"], "/startup", true);
    if (j.contains("watchdog"))
        if (auto d = c.duration(j["watchdog"], "/watchdog", false, Duration{1},
                                bounds::max_field_duration))
            r.unit.watchdog = **d;
    if (j.contains("patterns")) parse_patterns(c, j["patterns"], r);
    if (j.contains("instances"))
        if (auto n = c.integer(j["instances"], "/instances", 1, bounds::max_instances))
            r.instances = static_cast<int>(*n);
    parse_update(c, j, r);
    if (j.contains("listen")) {
        parse_listen(c, j["listen"], r.name, r.unit.listen);
        // The sockets take fd 3.. in the child: the ready fd must not be one of them.
        const json &v = j["listen"];
        const auto n = static_cast<int>(v.is_array() ? std::min(v.size(), bounds::max_listen) : 0);
        if (r.unit.ready.fd && *r.unit.ready.fd < 3 + n)
            c.error("/ready/fd", "is one of the listen sockets' descriptors (3 to " +
                                     std::to_string(2 + n) + "); use " + std::to_string(3 + n) +
                                     " or above");
    }
}

void parse_supervisor_fields(Checker &c, const json &j, Raw &r) {
    auto &s = r.spec;
    if (j.contains("strategy"))
        if (auto v = c.enumeration(j["strategy"], "/strategy", strategy_names)) s.strategy = *v;
    if (j.contains("intensity"))
        if (auto v = c.integer(j["intensity"], "/intensity", 0, bounds::max_intensity))
            s.intensity = static_cast<int>(*v);
    if (j.contains("period"))
        if (auto d =
                c.duration(j["period"], "/period", false, Duration{1}, bounds::max_field_duration))
            s.period = **d;
    if (j.contains("auto_shutdown"))
        if (auto v = c.enumeration(j["auto_shutdown"], "/auto_shutdown", auto_shutdown_names))
            s.auto_shutdown = *v;
    if (j.contains("parallel"))
        if (auto v = c.boolean(j["parallel"], "/parallel")) s.parallel = *v;
}

// Validates one parsed file and fills r.spec / r.unit.
void parse_unit(Checker &c, Raw &r, Identities &ids) {
    const json &j = r.pj.value;
    if (!j.is_object()) {
        c.error("", "expected an object with the unit's fields; got " + describe(j));
        return;
    }
    r.usable = true;
    // Kind first: it decides which fields are allowed.
    r.spec.kind = r.is_root ? Kind::Supervisor : Kind::Service;
    if (j.contains("kind")) {
        if (auto k = c.enumeration(j["kind"], "/kind", kind_names)) {
            if (r.is_root && *k != Kind::Supervisor)
                c.error("/kind", "root.json configures the root supervisor: kind must be "
                                 "\"supervisor\"");
            else
                r.spec.kind = *k;
        }
    }
    const bool sup = r.spec.kind == Kind::Supervisor;
    // Supervisors wait for their whole subtree to stop (OTP: shutdown infinity for
    // supervisors); services get SIGTERM and 10s.
    if (sup) r.spec.stop.timeout = std::nullopt;

    Fields allowed =
        r.is_root ? root_fields : concat(common_fields, sup ? supervisor_fields : service_fields);
    c.check_keys(j, "", allowed, [&](const std::string &k) -> std::string {
        if (r.is_root && contains(common_fields, k))
            return "not allowed in root.json: the root supervisor has no parent and is never "
                   "restarted";
        if (sup && contains(service_fields, k))
            return "applies to services only; this unit is a supervisor";
        if (!sup && contains(supervisor_fields, k))
            return "applies to supervisors only; this unit is a service (set \"kind\": "
                   "\"supervisor\")";
        return "";
    });

    if (j.contains("description"))
        if (auto s =
                c.string(j["description"], "/description", false, bounds::max_description_bytes))
            r.unit.description = *s;
    // For editors: the JSON Schema a unit names is not vigil's business beyond being a string.
    if (j.contains("$schema")) c.string(j["$schema"], "/$schema");
    if (!r.is_root) {
        if (j.contains("parent")) {
            if (auto s = c.string(j["parent"], "/parent", true)) r.parent = *s;
        } else {
            r.parent = "root";
        }
        if (j.contains("after")) {
            if (auto a = c.string_array(j["after"], "/after", false, bounds::max_after,
                                        bounds::max_string_bytes)) {
                std::set<std::string> seen;
                for (std::size_t i = 0; i < a->size(); ++i) {
                    if (!seen.insert((*a)[i]).second)
                        c.error("/after/" + std::to_string(i), shown((*a)[i]) + " is listed twice");
                }
                r.after = *a;
            }
        }
        if (j.contains("restart"))
            if (auto v = c.enumeration(j["restart"], "/restart", restart_names))
                r.spec.restart = *v;
        if (j.contains("significant"))
            if (auto b = c.boolean(j["significant"], "/significant")) r.spec.significant = *b;
        if (j.contains("stop")) parse_stop(c, j["stop"], r);
        if (r.spec.significant && r.spec.restart == Restart::Permanent &&
            (!j.contains("restart") || j["restart"] == "permanent"))
            c.error("/significant", "a permanent unit cannot be significant (it is always "
                                    "restarted, so it never ends the supervisor); set \"restart\" "
                                    "to \"transient\" or \"temporary\"");
    }
    if (sup)
        parse_supervisor_fields(c, j, r);
    else
        parse_service_fields(c, j, r, ids);

    // Supervisors only wait for their subtree; a service waits for readiness when declared,
    // by a `ready` method or by a readiness probe ("a unit with readiness is started
    // only once ready").
    r.spec.wait_ready = r.unit.ready.any() || r.unit.readiness.has_value();
    if (r.spec.wait_ready) r.spec.start_timeout = r.unit.ready.timeout;

    json canon = j;
    // update and max_unavailable say how a change is rolled out: changing them alone restarts
    // nothing (the core updates them in place).
    for (const char *k :
         {"parent", "after", "instances", "description", "$schema", "update", "max_unavailable"})
        canon.erase(k);
    r.canonical = canon.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::uint64_t fnv1a(std::string_view s, std::uint64_t h = 0xcbf29ce484222325ULL) {
    for (unsigned char ch : s) {
        h ^= ch;
        h *= 0x100000001b3ULL;
    }
    return h;
}

// After pass 1 a file's parse is needed only for where pass 2 reports: `parent`, `after` and
// its items, `significant` and `instances`. Keeping only those positions bounds what a load holds
// across files by the specs, not by the parses (a 1 MiB file of small values parses into some
// 75 MB of values and positions).
void keep_pass2_positions(PositionedJson &pj) {
    PositionedJson kept;
    kept.syntax_ok = pj.syntax_ok;
    for (const auto &[ptr, pos] : pj.value_pos)
        if (ptr == "/parent" || ptr == "/significant" || ptr == "/instances" || ptr == "/after" ||
            ptr.starts_with("/after/"))
            kept.value_pos.emplace(ptr, pos);
    pj = std::move(kept);
}

// ---- pass 2: references -----------------------------------------------------------------

class Resolver {
public:
    Resolver(std::vector<Raw> &raws, Diagnostics &out) : raws_(raws), out_(out) {
        for (std::size_t i = 0; i < raws_.size(); ++i)
            by_name_[raws_[i].name] = i;
        for (const auto &r : raws_)
            names_.push_back(r.name);
        parent_.assign(raws_.size(), npos);
    }

    void run() {
        resolve_parents();
        find_parent_cycles();
        resolve_after();
        find_after_cycles();
        check_significance();
        check_instance_names();
        check_tree_size();
    }

    static constexpr std::size_t npos = static_cast<std::size_t>(-1);
    std::vector<std::size_t> parent_;                   // resolved parent index or npos
    std::vector<std::vector<std::size_t>> after_edges_; // i comes after each of these
    std::vector<bool> in_cycle_;

private:
    // At the value of `ptr`, one of those keep_pass2_positions() keeps.
    void error(const Raw &r, const std::string &ptr, std::string msg) {
        Pos p;
        if (auto it = r.pj.value_pos.find(ptr); it != r.pj.value_pos.end()) p = it->second;
        out_.add(Diagnostic{r.file, p.line, p.column, ptr, std::move(msg)});
    }

    std::string unknown(const std::string &name) const {
        std::string msg = "unknown unit " + shown(name);
        if (auto near = closest(name, names_); !near.empty())
            msg += "; did you mean \"" + near + "\"?";
        return msg;
    }

    void resolve_parents() {
        for (std::size_t i = 0; i < raws_.size(); ++i) {
            Raw &r = raws_[i];
            if (!r.usable || r.is_root || !r.parent) continue;
            auto it = by_name_.find(*r.parent);
            if (it == by_name_.end()) {
                error(r, "/parent", unknown(*r.parent));
                continue;
            }
            const Raw &p = raws_[it->second];
            if (!p.usable) continue; // its own diagnostics say why
            if (p.spec.kind != Kind::Supervisor) {
                error(r, "/parent",
                      "\"" + p.name +
                          "\" is a service; a parent must be a supervisor (\"kind\": "
                          "\"supervisor\")");
                continue;
            }
            parent_[i] = it->second;
        }
    }

    // Each unit has at most one parent, so a cycle is found by walking up from every unit.
    void find_parent_cycles() {
        in_cycle_.assign(raws_.size(), false);
        std::vector<int> state(raws_.size(), 0); // 0 new, 1 on the current walk, 2 done
        for (std::size_t start = 0; start < raws_.size(); ++start) {
            std::vector<std::size_t> walk;
            std::size_t i = start;
            while (i != npos && state[i] == 0) {
                state[i] = 1;
                walk.push_back(i);
                i = parent_[i];
            }
            if (i != npos && state[i] == 1) {
                auto from = std::find(walk.begin(), walk.end(), i);
                std::vector<std::size_t> cycle(from, walk.end());
                for (auto k : cycle)
                    in_cycle_[k] = true;
                report_cycle(cycle, "/parent", "parent cycle: ", [&](std::size_t, std::size_t) {
                    return std::string("/parent");
                });
            }
            for (auto k : walk)
                state[k] = 2;
        }
    }

    // Reports a cycle once, starting from its smallest name, at `ptr_of(first, next)`.
    template <class PtrOf>
    void report_cycle(std::vector<std::size_t> cycle, const std::string &, const char *what,
                      PtrOf ptr_of) {
        auto min = std::min_element(cycle.begin(), cycle.end(),
                                    [&](auto a, auto b) { return raws_[a].name < raws_[b].name; });
        std::rotate(cycle.begin(), min, cycle.end());
        std::string text;
        for (auto k : cycle)
            text += raws_[k].name + " -> ";
        text += raws_[cycle[0]].name;
        if (!reported_.insert(text).second) return;
        std::size_t next = cycle.size() > 1 ? cycle[1] : cycle[0];
        error(raws_[cycle[0]], ptr_of(cycle[0], next), what + text);
    }

    void resolve_after() {
        after_edges_.assign(raws_.size(), {});
        for (std::size_t i = 0; i < raws_.size(); ++i) {
            Raw &r = raws_[i];
            for (std::size_t a = 0; a < r.after.size(); ++a) {
                std::string ptr = "/after/" + std::to_string(a);
                auto it = by_name_.find(r.after[a]);
                if (it == by_name_.end()) {
                    error(r, ptr, unknown(r.after[a]));
                    continue;
                }
                std::size_t t = it->second;
                if (raws_[t].is_root) {
                    error(r, ptr, "\"root\" is every unit's ancestor; \"after\" names a sibling");
                    continue;
                }
                if (parent_[i] == npos || parent_[t] == npos) continue; // already reported
                if (parent_[i] != parent_[t]) {
                    error(
                        r, ptr,
                        "\"" + r.after[a] + "\" has parent \"" + raws_[parent_[t]].name +
                            "\", not \"" + raws_[parent_[i]].name +
                            "\": \"after\" orders siblings only (order their supervisors instead)");
                    continue;
                }
                if (std::find(after_edges_[i].begin(), after_edges_[i].end(), t) ==
                    after_edges_[i].end())
                    after_edges_[i].push_back(t);
            }
        }
    }

    void find_after_cycles() {
        std::vector<int> color(raws_.size(), 0);
        std::vector<std::size_t> path;
        std::function<void(std::size_t)> visit = [&](std::size_t u) {
            color[u] = 1;
            path.push_back(u);
            for (auto v : after_edges_[u]) {
                if (color[v] == 1) {
                    auto from = std::find(path.begin(), path.end(), v);
                    report_cycle(
                        std::vector<std::size_t>(from, path.end()), "/after",
                        "ordering cycle in \"after\": ", [&](std::size_t first, std::size_t next) {
                            const auto &af = raws_[first].after;
                            auto at = std::find(af.begin(), af.end(), raws_[next].name);
                            return "/after/" + std::to_string(at - af.begin());
                        });
                } else if (color[v] == 0) {
                    visit(v);
                }
            }
            path.pop_back();
            color[u] = 2;
        };
        for (std::size_t i = 0; i < raws_.size(); ++i)
            if (color[i] == 0) visit(i);
    }

    void check_significance() {
        for (std::size_t i = 0; i < raws_.size(); ++i) {
            const Raw &r = raws_[i];
            if (!r.usable || !r.spec.significant || parent_[i] == npos) continue;
            const Raw &p = raws_[parent_[i]];
            if (p.spec.auto_shutdown == AutoShutdown::Never)
                error(r, "/significant",
                      "parent \"" + p.name +
                          "\" has auto_shutdown \"never\", so a significant "
                          "child has no effect; set \"auto_shutdown\" in " +
                          (p.file.empty() ? std::string("a new root.json") : p.file));
        }
    }

    void check_instance_names() {
        for (const auto &r : raws_) {
            for (int k = 1; k <= r.instances; ++k) {
                std::string n = r.name + "@" + std::to_string(k);
                if (auto it = by_name_.find(n); it != by_name_.end())
                    error(r, "/instances",
                          "instance \"" + n + "\" has the same name as the unit in " +
                              raws_[it->second].file);
            }
        }
    }

    // The bounds of the tree once instances are expanded (bounds.hpp): its children, the unit
    // text its instances copy, its "after" edges. Each is reported once, at the unit that
    // contributes most, where a change helps most.
    void check_tree_size() {
        auto copies = [&](std::size_t i) -> std::uint64_t {
            return raws_[i].instances == 0 ? 1 : static_cast<std::uint64_t>(raws_[i].instances);
        };
        struct Total {
            std::uint64_t sum = 0, most = 0;
            std::size_t at = npos;
            void add(std::uint64_t n, std::size_t i) {
                sum += n;
                if (n > most) {
                    most = n;
                    at = i;
                }
            }
        } nodes, bytes, edges;
        for (std::size_t i = 0; i < raws_.size(); ++i) {
            if (raws_[i].is_root) continue;
            nodes.add(copies(i), i);
            bytes.add(copies(i) * raws_[i].bytes, i);
            std::uint64_t targets = 0;
            for (auto t : after_edges_[i])
                targets += copies(t);
            edges.add(copies(i) * targets, i);
        }
        if (nodes.sum > bounds::max_nodes)
            error(raws_[nodes.at], "/instances",
                  "with instances expanded the tree would have " + std::to_string(nodes.sum) +
                      " children; at most " + std::to_string(bounds::max_nodes) + " are allowed");
        if (bytes.sum > bounds::max_expanded_bytes)
            error(raws_[bytes.at], "/instances",
                  "with instances expanded the units would take " + std::to_string(bytes.sum) +
                      " bytes of unit text (" + std::to_string(copies(bytes.at)) +
                      " copies of this file's " + std::to_string(raws_[bytes.at].bytes) +
                      "); at most " + format_size(bounds::max_expanded_bytes) +
                      " are allowed (fewer instances, or a smaller file)");
        if (edges.sum > bounds::max_after_edges)
            error(raws_[edges.at], "/after",
                  "with instances expanded the tree would have " + std::to_string(edges.sum) +
                      " \"after\" edges (" + std::to_string(edges.most) +
                      " from this unit); at most " + std::to_string(bounds::max_after_edges) +
                      " are allowed");
    }

    std::vector<Raw> &raws_;
    Diagnostics &out_;
    std::map<std::string, std::size_t> by_name_;
    std::vector<std::string_view> names_;
    std::set<std::string> reported_;
};

// ---- pass 3: layout -----------------------------------------------------------------------

void lay_out(std::vector<Raw> &raws, const Resolver &res, std::size_t root, LoadResult &out) {
    std::vector<std::vector<std::size_t>> kids(raws.size());
    for (std::size_t i = 0; i < raws.size(); ++i)
        if (res.parent_[i] != Resolver::npos) kids[res.parent_[i]].push_back(i);

    // Start order among siblings: Kahn's algorithm, the smallest name first among the ready.
    auto start_order = [&](const std::vector<std::size_t> &sib) {
        std::map<std::size_t, int> pending;
        std::map<std::size_t, std::vector<std::size_t>> unlocks;
        for (auto s : sib) {
            pending[s] = static_cast<int>(res.after_edges_[s].size());
            for (auto t : res.after_edges_[s])
                unlocks[t].push_back(s);
        }
        auto later = [&](std::size_t a, std::size_t b) { return raws[a].name > raws[b].name; };
        std::priority_queue<std::size_t, std::vector<std::size_t>, decltype(later)> ready(later);
        for (auto s : sib)
            if (pending[s] == 0) ready.push(s);
        std::vector<std::size_t> order;
        while (!ready.empty()) {
            auto s = ready.top();
            ready.pop();
            order.push_back(s);
            for (auto u : unlocks[s])
                if (--pending[u] == 0) ready.push(u);
        }
        return order;
    };

    // Pre-order: a node's id is assigned before its children's, children in start order, so
    // the siblings a node is `after` have their ids (every instance's) when it gets its own.
    std::vector<std::vector<ChildId>> ids_of(raws.size());
    std::function<void(std::size_t, std::optional<ChildId>)> add =
        [&](std::size_t i, std::optional<ChildId> parent) {
            Raw &r = raws[i];
            int copies = r.instances == 0 ? 1 : r.instances;
            std::vector<ChildId> &ids = ids_of[i];
            std::vector<ChildId> after;
            for (auto t : res.after_edges_[i])
                after.insert(after.end(), ids_of[t].begin(), ids_of[t].end());
            const bool supervisor = r.spec.kind == Kind::Supervisor;
            for (int k = 1; k <= copies; ++k) {
                ChildId id{static_cast<std::uint32_t>(out.tree.nodes.size())};
                // The last (most often the only) copy takes the parsed unit as it is.
                core::ChildSpec spec = k == copies ? std::move(r.spec) : r.spec;
                Unit unit = k == copies ? std::move(r.unit) : r.unit;
                spec.parent = parent;
                spec.name = r.instances == 0 ? r.name : r.name + "@" + std::to_string(k);
                spec.unit = r.name;
                spec.instance = r.instances == 0 ? 0 : k;
                unit.name = spec.name;
                unit.file = r.file;
                unit.after = r.after;
                std::uint64_t h = fnv1a(r.canonical);
                if (r.instances != 0) {
                    // Each instance differs by VIGIL_INSTANCE; the unit's own env cannot
                    // override it, so the instance number is always trustworthy.
                    unit.spawn.env["VIGIL_INSTANCE"] = std::to_string(k);
                    h = fnv1a("\0instance=" + std::to_string(k), h);
                }
                spec.fingerprint = h;
                spec.after = after;
                out.tree.nodes.push_back(std::move(spec));
                out.units.push_back(std::move(unit));
                if (parent) out.tree.nodes[parent->value].children.push_back(id);
                ids.push_back(id);
            }
            if (supervisor)
                for (auto c : start_order(kids[i]))
                    add(c, ids[0]);
        };
    add(root, std::nullopt);
}

// ---- reading the directory ----------------------------------------------------------------
//
// The units directory may be writable by someone who must not control vigild, and a file in it
// may be swapped while a reload reads it. So nothing is opened that could block (a FIFO), lead
// elsewhere (a symlink) or be read without bound: every entry is checked by its type in the
// directory, opened with O_NOFOLLOW | O_NONBLOCK relative to the directory's descriptor, and
// checked again on the descriptor (regular files only), and at most max_file_bytes + 1 bytes
// are read. Subdirectories are ignored, as every other name that does not end in .json.

class Fd {
public:
    explicit Fd(int fd = -1) : fd_(fd) {}
    ~Fd() {
        if (fd_ >= 0) ::close(fd_);
    }
    Fd(const Fd &) = delete;
    Fd &operator=(const Fd &) = delete;
    int get() const { return fd_; }

private:
    int fd_;
};

std::string errno_text(int e) {
    return std::error_code(e, std::generic_category()).message();
}

// What a non-regular file is, for messages.
const char *file_type(mode_t mode) {
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISLNK(mode)) return "a symbolic link";
    return "of an unknown type";
}

const std::string symlink_message = "is a symbolic link; symlinks are not followed in the units "
                                    "directory (copy the file in instead)";

std::string not_regular(mode_t mode) {
    return std::string("not a regular file (") + file_type(mode) +
           "); a unit file must be a regular file";
}

struct Entry {
    std::string name;   // "web.json"
    unsigned char type; // d_type: DT_REG, DT_LNK, ... or DT_UNKNOWN
};

struct Listing {
    std::vector<Entry> entries; // sorted by name; at most max_unit_files + 1
    int error = 0;              // errno of opendir or readdir
};

// The *.json entries of the directory `dirfd`; it stops at one past max_unit_files.
Listing list_units(int dirfd) {
    Listing out;
    int fd = ::dup(dirfd); // closedir() closes it
    DIR *d = fd < 0 ? nullptr : ::fdopendir(fd);
    if (!d) {
        out.error = errno;
        if (fd >= 0) ::close(fd);
        return out;
    }
    for (;;) {
        errno = 0;
        const dirent *e = ::readdir(d);
        if (!e) {
            out.error = errno;
            break;
        }
        std::string_view name = e->d_name;
        // "x.json"; ".json" alone is a hidden file, not a unit (as std::filesystem's stem).
        if (name.size() <= 5 || !name.ends_with(".json")) continue;
        if (e->d_type == DT_DIR) continue;
        out.entries.push_back({std::string(name), e->d_type});
        if (out.entries.size() > bounds::max_unit_files) break;
    }
    ::closedir(d);
    std::sort(out.entries.begin(), out.entries.end(),
              [](const Entry &a, const Entry &b) { return a.name < b.name; });
    return out;
}

struct FileText {
    std::optional<std::string> text; // nullopt: not a unit (ignored) or refused (see error)
    std::string error;               // the diagnostic's message when refused
};

// Reads one unit file, or says why it is refused.
FileText read_unit(int dirfd, const Entry &e) {
    auto refused = [](std::string why) { return FileText{std::nullopt, std::move(why)}; };
    unsigned char type = e.type;
    if (type == DT_UNKNOWN) { // some file systems do not say: ask, without following
        struct stat st {};
        if (::fstatat(dirfd, e.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0)
            return refused("cannot read: " + errno_text(errno));
        type = IFTODT(st.st_mode);
    }
    if (type == DT_DIR) return {};
    if (type == DT_LNK) return refused(symlink_message);
    if (type != DT_REG) return refused(not_regular(DTTOIF(type)));
    // The entry may have been replaced since readdir(): the flags and fstat() below decide.
    Fd fd(
        ::openat(dirfd, e.name.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY));
    if (fd.get() < 0)
        return refused(errno == ELOOP ? symlink_message : "cannot read: " + errno_text(errno));
    struct stat st {};
    if (::fstat(fd.get(), &st) < 0) return refused("cannot read: " + errno_text(errno));
    if (S_ISDIR(st.st_mode)) return {};
    if (!S_ISREG(st.st_mode)) return refused(not_regular(st.st_mode));
    auto too_large = [](std::uint64_t n) {
        return "is " + std::to_string(n) + " bytes long; a unit file may have at most " +
               format_size(bounds::max_file_bytes);
    };
    if (static_cast<std::uint64_t>(st.st_size) > bounds::max_file_bytes)
        return refused(too_large(static_cast<std::uint64_t>(st.st_size)));
    // Read up to one byte past the bound: a file that grew since fstat() is still caught. The
    // buffer starts at the size fstat() gave and grows only for such a file: a unit file is a
    // few hundred bytes, and reload reads every one of them.
    constexpr std::size_t limit = static_cast<std::size_t>(bounds::max_file_bytes) + 1;
    std::string text(std::min(limit, static_cast<std::size_t>(st.st_size) + 1), '\0');
    std::size_t got = 0;
    for (;;) {
        if (got == text.size()) {
            if (text.size() == limit) break;
            text.resize(std::min(limit, text.size() * 2));
        }
        ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return refused("cannot read: " + errno_text(errno));
        if (n == 0) break;
        got += static_cast<std::size_t>(n);
    }
    if (got > bounds::max_file_bytes) return refused(too_large(got));
    text.resize(got);
    text.shrink_to_fit();
    return {std::move(text), {}};
}

} // namespace

std::string count_problems(std::size_t n) {
    return std::to_string(n) + (n == 1 ? " problem" : " problems");
}

LoadResult load_dir(const std::filesystem::path &dir) {
    LoadResult result;
    Diagnostics diags;
    // Sorted by place, and past max_diagnostics one more that says how many were not shown.
    auto finish = [&] {
        auto &out = result.diagnostics = std::move(diags.kept());
        result.problems = out.size() + diags.dropped();
        std::stable_sort(out.begin(), out.end(), [](const Diagnostic &a, const Diagnostic &b) {
            return std::tie(a.file, a.line, a.column) < std::tie(b.file, b.line, b.column);
        });
        if (diags.dropped() > 0)
            out.push_back({"", 0, 0, "",
                           std::to_string(diags.dropped()) +
                               (diags.dropped() == 1 ? " more problem" : " more problems") +
                               " not shown (the first " + std::to_string(bounds::max_diagnostics) +
                               " are): fix these and check again"});
        return result.diagnostics.empty();
    };

    // The directory itself may be a symlink (the operator's path); its entries may not.
    Fd dirfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dirfd.get() < 0) {
        diags.add({"", 0, 0, "",
                   "cannot read unit directory \"" + dir.string() + "\": " + errno_text(errno)});
        finish();
        return result;
    }
    Listing listing = list_units(dirfd.get());
    if (listing.entries.size() > bounds::max_unit_files) {
        diags.add({"", 0, 0, "",
                   "more than " + std::to_string(bounds::max_unit_files) +
                       " unit files (*.json) in \"" + dir.string() + "\"; vigil reads at most " +
                       std::to_string(bounds::max_unit_files) +
                       " and read none of them (merge units, or use \"instances\")"});
        finish();
        return result;
    }
    if (listing.error != 0)
        diags.add(
            {"", 0, 0, "",
             "cannot read unit directory \"" + dir.string() + "\": " + errno_text(listing.error)});

    std::vector<Raw> raws;
    raws.reserve(listing.entries.size() + 1); // a Raw is large: moved once, not at each growth
    std::optional<std::size_t> root;
    Identities ids;
    HeldSockets sockets;
    std::uint64_t dir_bytes = 0;
    bool stopped = false;
    for (const Entry &e : listing.entries) {
        Raw r;
        r.name = e.name.substr(0, e.name.size() - 5);
        r.file = (dir / e.name).string();
        if (!valid_name(r.name)) {
            std::string what = "unit name " + shown(r.name) + " (the file name without .json) ";
            diags.add({r.file, 0, 0, "",
                       name_chars_ok(r.name)
                           ? what + "is " + std::to_string(r.name.size()) +
                                 " bytes long; at most " + std::to_string(bounds::max_name_bytes) +
                                 " are allowed"
                           : what + "must match [a-z0-9][a-z0-9._@-]*"});
            continue;
        }
        r.is_root = r.name == "root";
        FileText f = read_unit(dirfd.get(), e);
        if (!f.text && f.error.empty()) continue; // a directory: ignored
        if (f.text && dir_bytes + f.text->size() > bounds::max_dir_bytes) {
            diags.add({"", 0, 0, "",
                       "the unit files in \"" + dir.string() + "\" take more than " +
                           format_size(bounds::max_dir_bytes) +
                           " together; vigil stopped reading at \"" + e.name +
                           "\" (a unit file takes a few KiB: look for large files)"});
            stopped = true;
            break;
        }
        if (!f.text) {
            diags.add({r.file, 0, 0, "", f.error});
        } else {
            dir_bytes += f.text->size();
            r.bytes = f.text->size();
            r.pj = parse_positioned(*f.text);
            for (const auto &pr : r.pj.problems)
                diags.add({r.file, pr.pos.line, pr.pos.column, pr.pointer, pr.message});
            if (r.pj.syntax_ok) {
                Checker c(r.file, r.pj, diags);
                parse_unit(c, r, ids);
                sockets.check(c, r.unit.listen, r.instances);
            }
            keep_pass2_positions(r.pj);
        }
        if (r.is_root) root = raws.size();
        raws.push_back(std::move(r));
    }
    if (!root) {
        Raw r; // the implicit root: a supervisor with every default
        r.name = "root";
        r.is_root = true;
        r.usable = true;
        r.spec.kind = Kind::Supervisor;
        r.spec.stop.timeout = std::nullopt;
        r.canonical = "{}";
        root = raws.size();
        raws.push_back(std::move(r));
    }

    // Past max_dir_bytes the other units are missing: checking references would only add noise.
    std::optional<Resolver> res;
    if (!stopped) {
        res.emplace(raws, diags);
        res->run();
    }

    if (!finish()) return result;
    lay_out(raws, *res, *root, result);
    return result;
}

namespace {
std::vector<std::string> strings(const Fields &f) {
    return {f.begin(), f.end()};
}
template <class E, std::size_t N>
std::vector<std::string> spellings(const std::array<EnumName<E>, N> &t) {
    std::vector<std::string> out;
    for (const auto &n : t)
        out.emplace_back(n.name);
    return out;
}
} // namespace

std::map<std::string, std::vector<std::string>> known_fields() {
    return {
        {"service", strings(concat(common_fields, service_fields))},
        {"supervisor", strings(concat(common_fields, supervisor_fields))},
        {"root", strings(root_fields)},
        {"stop", strings(stop_fields)},
        {"limits", strings(rlimit_names())},
        {"limit", strings(limit_fields)},
        {"backoff", strings(backoff_fields)},
        {"logs", strings(logs_fields)},
        {"ready", strings(ready_fields)},
        {"probe", strings(probe_fields)},
        {"tcp", strings(tcp_fields)},
        {"http", strings(http_fields)},
        {"pattern", strings(pattern_fields)},
        {"listen", strings(listen_fields)},
    };
}

std::map<std::string, std::vector<std::string>> known_values() {
    return {
        {"kind", spellings(kind_names)},         {"restart", spellings(restart_names)},
        {"strategy", spellings(strategy_names)}, {"auto_shutdown", spellings(auto_shutdown_names)},
        {"stream", spellings(stream_names)},     {"action", spellings(action_names)},
        {"update", spellings(update_names)},
    };
}

} // namespace vigil::unit

// render_tree(): the resolved tree as `vigild --check` prints it.
//
// One line per child, children in start order, every policy value shown with its effective
// value (defaults included) so that a reader never has to know the defaults by heart.
// Services get indented detail lines (command, start, backoff, logs, probes...).
#include <cstdio>
#include <sstream>

#include <nlohmann/json.hpp>

#include "checker.hpp"
#include "vigil/core/names.hpp"
#include "vigil/unit/unit.hpp"
#include "vigil/unit/values.hpp"

namespace vigil::unit {

namespace {

const char *name_of(core::Restart r) {
    switch (r) {
    case core::Restart::Permanent:
        return "permanent";
    case core::Restart::Transient:
        return "transient";
    case core::Restart::Temporary:
        return "temporary";
    }
    return "?";
}

const char *name_of(core::Strategy s) {
    switch (s) {
    case core::Strategy::OneForOne:
        return "one_for_one";
    case core::Strategy::OneForAll:
        return "one_for_all";
    case core::Strategy::RestForOne:
        return "rest_for_one";
    }
    return "?";
}

const char *name_of(core::AutoShutdown a) {
    switch (a) {
    case core::AutoShutdown::Never:
        return "never";
    case core::AutoShutdown::AnySignificant:
        return "any_significant";
    case core::AutoShutdown::AllSignificant:
        return "all_significant";
    }
    return "?";
}

const char *name_of(Stream s) {
    switch (s) {
    case Stream::Stdout:
        return "stdout";
    case Stream::Stderr:
        return "stderr";
    case Stream::Both:
        return "both";
    }
    return "?";
}

const char *name_of(PatternAction a) {
    switch (a) {
    case PatternAction::Restart:
        return "restart";
    case PatternAction::Stop:
        return "stop";
    case PatternAction::Unhealthy:
        return "unhealthy";
    case PatternAction::Event:
        return "event";
    }
    return "?";
}

std::string quote(const std::string &s) {
    return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string num(double d) {
    std::ostringstream os;
    os << d;
    return os.str();
}

std::string timeout(const std::optional<Duration> &d) {
    return d ? core::format_duration(*d) : "infinity";
}

std::string limit_value(std::uint64_t v) {
    return v == static_cast<std::uint64_t>(-1) ? "infinity" : std::to_string(v);
}

std::string probe(const ProbeSpec &p) {
    std::string out;
    switch (p.kind) {
    case ProbeKind::Exec:
        out = "exec " + nlohmann::json(p.command).dump();
        break;
    case ProbeKind::Tcp:
        out = "tcp " + detail::printable(p.host) + ":" + std::to_string(p.port);
        break;
    case ProbeKind::Http:
        out = "http " + detail::printable(p.host) + ":" + std::to_string(p.port) +
              detail::printable(p.path);
        for (const auto &[k, v] : p.headers)
            out += " " + k + "=" + quote(v);
        break;
    }
    out += " initial_delay=" + core::format_duration(p.initial_delay) +
           " period=" + core::format_duration(p.period) +
           " timeout=" + core::format_duration(p.timeout) +
           " failure_threshold=" + std::to_string(p.failure_threshold) +
           " success_threshold=" + std::to_string(p.success_threshold);
    return out;
}

std::string join(const std::vector<std::string> &v, const char *sep) {
    std::string out;
    for (std::size_t i = 0; i < v.size(); ++i)
        out += (i ? sep : "") + v[i];
    return out;
}

std::vector<std::string> details(const core::ChildSpec &c, const Unit &u) {
    std::vector<std::string> d;
    if (!u.description.empty()) d.push_back("description: " + detail::printable(u.description));
    if (c.kind == core::Kind::Supervisor) return d;
    const auto &s = u.spawn;
    d.push_back("command: " + nlohmann::json(s.argv).dump(
                                  -1, ' ', false, nlohmann::json::error_handler_t::replace));
    if (s.cwd) d.push_back("cwd: " + detail::printable(*s.cwd));
    if (s.user) d.push_back("user: " + detail::printable(*s.user));
    if (s.group) d.push_back("group: " + detail::printable(*s.group));
    if (s.umask) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "%04o", *s.umask);
        d.push_back(std::string("umask: ") + buf);
    }
    if (!s.env.empty()) {
        std::vector<std::string> kv;
        for (const auto &[k, v] : s.env)
            kv.push_back(detail::printable(k) + "=" + quote(v));
        d.push_back("env: " + join(kv, " "));
    }
    if (s.env_file)
        d.push_back("env_file: " + detail::printable(*s.env_file) +
                    (s.env_file_optional ? " (optional)" : ""));
    if (!s.limits.empty()) {
        std::vector<std::string> lv;
        for (const auto &l : s.limits) {
            std::string name = std::to_string(l.resource);
            for (auto n : rlimit_names())
                if (rlimit_resource(n) == l.resource) name = std::string(n);
            // Appended piece by piece: g++ 12 at -O3 reports a false -Wrestrict overlap for
            // the one-expression form `name + "=" + ... + (cond ? "" : ":" + ...)`.
            std::string item = name;
            item += '=';
            item += limit_value(l.soft);
            if (l.soft != l.hard) {
                item += ':';
                item += limit_value(l.hard);
            }
            lv.push_back(std::move(item));
        }
        d.push_back("limits: " + join(lv, " "));
    }
    std::string start = "start: ";
    if (c.wait_ready) {
        std::vector<std::string> how;
        if (u.ready.notify) how.push_back("notify");
        if (u.ready.fd) how.push_back("fd " + std::to_string(*u.ready.fd));
        if (u.ready.log) how.push_back("log " + quote(*u.ready.log));
        if (u.ready.probe) how.push_back("probe " + probe(*u.ready.probe));
        start += "when ready (" + join(how, ", ") + ") timeout=" + timeout(c.start_timeout);
    } else {
        start += "when spawned";
    }
    d.push_back(start);
    if (c.update == core::Update::Rolling)
        d.push_back("update: rolling max_unavailable=" + std::to_string(c.max_unavailable));
    d.push_back("backoff: initial=" + core::format_duration(c.backoff.initial) +
                " max=" + core::format_duration(c.backoff.max) +
                " factor=" + num(c.backoff.factor) + " jitter=" + num(c.backoff.jitter) +
                " reset_after=" + core::format_duration(c.backoff.reset_after));
    const auto &l = u.logs;
    d.push_back(std::string("logs: forward=") + (l.forward ? "yes" : "no") +
                " stderr=" + (l.merge_stderr ? "stdout" : "separate") +
                " file=" + (l.file ? detail::printable(*l.file) : "none") +
                " max_size=" + format_size(l.max_size) + " keep=" + std::to_string(l.keep) +
                " timestamps=" + (l.timestamps ? "yes" : "no") + " ring=" + format_size(l.ring) +
                " max_line=" + format_size(l.max_line));
    if (u.liveness) d.push_back("liveness: " + probe(*u.liveness));
    if (u.readiness) d.push_back("readiness: " + probe(*u.readiness));
    if (u.startup) d.push_back("startup: " + probe(*u.startup));
    if (u.watchdog) d.push_back("watchdog: " + core::format_duration(*u.watchdog));
    for (const auto &ls : u.listen) {
        std::string line =
            "listen: " + detail::printable(ls.describe()) + " name=" + detail::printable(ls.name);
        if (ls.kind != ListenKind::Udp) line += " backlog=" + std::to_string(ls.backlog);
        if (ls.kind != ListenKind::Unix) line += ls.reuseport ? " reuseport" : " shared";
        if (ls.kind == ListenKind::Unix) {
            char mode[8];
            std::snprintf(mode, sizeof mode, "%04o", ls.mode);
            line += std::string(" mode=") + mode;
            if (ls.owner) line += " owner=" + detail::printable(*ls.owner);
            if (ls.group) line += " group=" + detail::printable(*ls.group);
        }
        d.push_back(line);
    }
    for (const auto &p : u.patterns)
        d.push_back("pattern: " + quote(p.match) + " stream=" + name_of(p.stream) +
                    " action=" + name_of(p.action) + " count=" + std::to_string(p.count) +
                    " within=" + (p.within ? core::format_duration(*p.within) : "ever"));
    return d;
}

std::string header(const core::ChildSpec &c, const Unit &u) {
    std::string h = c.name;
    bool sup = c.kind == core::Kind::Supervisor;
    h += sup ? " (supervisor)" : " (service)";
    if (c.parent) {
        h += std::string(" restart=") + name_of(c.restart);
        if (c.significant) h += " significant";
        if (!sup && c.stop.signal == core::sig_kill) {
            h += " stop=SIGKILL (brutal kill)"; // no graceful phase, so no timeout
        } else {
            if (!sup) h += " stop=" + core::signal_name(c.stop.signal);
            h += " stop_timeout=" + timeout(c.stop.timeout);
        }
        if (!sup && c.stop.drain.count() > 0) h += " drain=" + core::format_duration(c.stop.drain);
        if (!u.after.empty()) h += " after=" + join(u.after, ",");
    }
    if (sup) {
        h += std::string(" strategy=") + name_of(c.strategy) +
             " intensity=" + std::to_string(c.intensity) +
             " period=" + core::format_duration(c.period) +
             " auto_shutdown=" + name_of(c.auto_shutdown);
    }
    return h;
}

void render(const LoadResult &r, std::size_t i, const std::string &head, const std::string &body,
            std::string &out) {
    const auto &c = r.tree.nodes[i];
    out += head + header(c, r.units[i]) + "\n";
    std::string detail_prefix = body + (c.children.empty() ? "    " : "│   ");
    for (const auto &line : details(c, r.units[i]))
        out += detail_prefix + line + "\n";
    for (std::size_t k = 0; k < c.children.size(); ++k) {
        bool last = k + 1 == c.children.size();
        render(r, c.children[k].value, body + (last ? "└── " : "├── "),
               body + (last ? "    " : "│   "), out);
    }
}

} // namespace

std::string render_tree(const LoadResult &r) {
    std::string out;
    if (r.tree.nodes.empty() || r.units.size() != r.tree.nodes.size()) return out;
    render(r, 0, "", "", out);
    return out;
}

} // namespace vigil::unit

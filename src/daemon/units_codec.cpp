// units_codec.cpp: see units_codec.hpp.
#include "units_codec.hpp"

#include <cstddef>

namespace vigil::daemon {

// How many members an aggregate has: the most initializers `T{...}` accepts, each of which
// converts to anything (never defined: only asked about at compile time; not in the unnamed
// namespace, where a declared and never defined function is an error of its own). A field
// added to one of the structures below fails the static_asserts until put and get carry it.
namespace codec_detail {
struct AnyField {
    template <class T> operator T() const; // NOLINT: converts to any member type
};
template <class T, class... A> constexpr std::size_t field_count() {
    if constexpr (requires { T{A{}..., AnyField{}}; })
        return field_count<T, A..., AnyField>();
    else
        return sizeof...(A);
}
} // namespace codec_detail

namespace {

using wire::Reader;
using wire::Refused;
using wire::Writer;

#define VIGIL_CARRIED(T, n)                                                                        \
    static_assert(codec_detail::field_count<T>() == (n),                                           \
                  #T " changed: carry its new field (units_codec.cpp)")
VIGIL_CARRIED(core::TreeSpec, 2);
VIGIL_CARRIED(core::ChildSpec, 23);
VIGIL_CARRIED(core::StopSpec, 3);
VIGIL_CARRIED(core::BackoffSpec, 5);
VIGIL_CARRIED(unit::Unit, 13);
VIGIL_CARRIED(proc::SpawnSpec, 10);
VIGIL_CARRIED(proc::Identity, 8);
VIGIL_CARRIED(proc::Limit, 3);
VIGIL_CARRIED(unit::LogSpec, 8);
VIGIL_CARRIED(unit::PatternSpec, 7);
VIGIL_CARRIED(unit::ProbeSpec, 11);
VIGIL_CARRIED(unit::ReadySpec, 5);
VIGIL_CARRIED(unit::ListenSpec, 13);
#undef VIGIL_CARRIED

// ---- small pieces ----------------------------------------------------------------------------

void put_ms(Writer &w, Duration d) {
    w.num(static_cast<std::int64_t>(d.count()));
}
Duration get_ms(Reader &r, const char *what) {
    return Duration{r.num<std::int64_t>(what)};
}
void put_opt_ms(Writer &w, const std::optional<Duration> &d) {
    w.flag(d.has_value());
    if (d) put_ms(w, *d);
}
std::optional<Duration> get_opt_ms(Reader &r, const char *what) {
    if (!r.flag(what)) return std::nullopt;
    return get_ms(r, what);
}
void put_opt_str(Writer &w, const std::optional<std::string> &s) {
    w.flag(s.has_value());
    if (s) w.str(*s);
}
std::optional<std::string> get_opt_str(Reader &r, const char *what) {
    if (!r.flag(what)) return std::nullopt;
    return r.str(what);
}
template <class T> void put_opt_num(Writer &w, const std::optional<T> &v) {
    w.flag(v.has_value());
    if (v) w.num(*v);
}
template <class T> std::optional<T> get_opt_num(Reader &r, const char *what) {
    if (!r.flag(what)) return std::nullopt;
    return r.num<T>(what);
}
void put_strings(Writer &w, const std::vector<std::string> &v) {
    w.list(v, [&](const std::string &s) { w.str(s); });
}
std::vector<std::string> get_strings(Reader &r, const char *what) {
    std::vector<std::string> v;
    for (std::uint32_t n = r.count(what); n > 0; --n)
        v.push_back(r.str(what));
    return v;
}
void put_map(Writer &w, const std::map<std::string, std::string> &m) {
    w.num(static_cast<std::uint32_t>(m.size()));
    for (const auto &[k, v] : m) {
        w.str(k);
        w.str(v);
    }
}
std::map<std::string, std::string> get_map(Reader &r, const char *what) {
    std::map<std::string, std::string> m;
    for (std::uint32_t n = r.count(what); n > 0; --n) {
        std::string k = r.str(what);
        m.insert_or_assign(std::move(k), r.str(what));
    }
    return m;
}
void put_ids(Writer &w, const std::vector<ChildId> &ids) {
    w.list(ids, [&](ChildId id) { w.num(id.value); });
}
std::vector<ChildId> get_ids(Reader &r, const char *what) {
    std::vector<ChildId> ids;
    for (std::uint32_t n = r.count(what); n > 0; --n)
        ids.push_back(ChildId{r.num<std::uint32_t>(what)});
    return ids;
}

// ---- the tree --------------------------------------------------------------------------------

void put_child(Writer &w, const core::ChildSpec &c) {
    w.str(c.name);
    w.str(c.unit);
    w.num(c.instance);
    w.enumerated(c.update);
    w.num(c.max_unavailable);
    w.enumerated(c.kind);
    w.flag(c.parent.has_value());
    if (c.parent) w.num(c.parent->value);
    put_ids(w, c.children);
    w.enumerated(c.restart);
    w.flag(c.significant);
    w.num(c.stop.signal);
    put_opt_ms(w, c.stop.timeout);
    put_ms(w, c.stop.drain);
    put_ms(w, c.backoff.initial);
    put_ms(w, c.backoff.max);
    w.num(c.backoff.factor);
    w.num(c.backoff.jitter);
    put_ms(w, c.backoff.reset_after);
    w.flag(c.wait_ready);
    put_opt_ms(w, c.start_timeout);
    w.flag(c.readiness_probe);
    put_opt_ms(w, c.watchdog);
    put_ids(w, c.after);
    w.flag(c.parallel);
    w.enumerated(c.strategy);
    w.num(c.intensity);
    put_ms(w, c.period);
    w.enumerated(c.auto_shutdown);
    w.num(c.fingerprint);
}

core::ChildSpec get_child(Reader &r) {
    core::ChildSpec c;
    c.name = r.str("node name");
    c.unit = r.str("node unit");
    c.instance = r.num<int>("node instance");
    c.update = r.enumerated(core::Update::Rolling, "node update");
    c.max_unavailable = r.num<int>("node max_unavailable");
    c.kind = r.enumerated(core::Kind::Supervisor, "node kind");
    if (r.flag("node parent")) c.parent = ChildId{r.num<std::uint32_t>("node parent")};
    c.children = get_ids(r, "node children");
    c.restart = r.enumerated(core::Restart::Temporary, "node restart");
    c.significant = r.flag("node significant");
    c.stop.signal = r.num<int>("node stop signal");
    c.stop.timeout = get_opt_ms(r, "node stop timeout");
    c.stop.drain = get_ms(r, "node stop drain");
    c.backoff.initial = get_ms(r, "node backoff");
    c.backoff.max = get_ms(r, "node backoff");
    c.backoff.factor = r.num<double>("node backoff factor");
    c.backoff.jitter = r.num<double>("node backoff jitter");
    c.backoff.reset_after = get_ms(r, "node backoff");
    c.wait_ready = r.flag("node wait_ready");
    c.start_timeout = get_opt_ms(r, "node start timeout");
    c.readiness_probe = r.flag("node readiness probe");
    c.watchdog = get_opt_ms(r, "node watchdog");
    c.after = get_ids(r, "node after");
    c.parallel = r.flag("node parallel");
    c.strategy = r.enumerated(core::Strategy::RestForOne, "node strategy");
    c.intensity = r.num<int>("node intensity");
    c.period = get_ms(r, "node period");
    c.auto_shutdown = r.enumerated(core::AutoShutdown::AllSignificant, "node auto_shutdown");
    c.fingerprint = r.num<std::uint64_t>("node fingerprint");
    return c;
}

// ---- a unit ----------------------------------------------------------------------------------

void put_probe(Writer &w, const Boxed<unit::ProbeSpec> &p) {
    w.flag(p.has_value());
    if (!p) return;
    w.enumerated(p->kind);
    put_strings(w, p->command);
    w.str(p->host);
    w.num(p->port);
    w.str(p->path);
    put_map(w, p->headers);
    put_ms(w, p->initial_delay);
    put_ms(w, p->period);
    put_ms(w, p->timeout);
    w.num(p->failure_threshold);
    w.num(p->success_threshold);
}

Boxed<unit::ProbeSpec> get_probe(Reader &r) {
    if (!r.flag("probe")) return {};
    unit::ProbeSpec p;
    p.kind = r.enumerated(unit::ProbeKind::Http, "probe kind");
    p.command = get_strings(r, "probe command");
    p.host = r.str("probe host");
    p.port = r.num<int>("probe port");
    p.path = r.str("probe path");
    p.headers = get_map(r, "probe headers");
    p.initial_delay = get_ms(r, "probe initial delay");
    p.period = get_ms(r, "probe period");
    p.timeout = get_ms(r, "probe timeout");
    p.failure_threshold = r.num<unsigned>("probe failure threshold");
    p.success_threshold = r.num<unsigned>("probe success threshold");
    return Boxed<unit::ProbeSpec>(std::move(p));
}

void put_spawn(Writer &w, const proc::SpawnSpec &s) {
    put_strings(w, s.argv);
    put_opt_str(w, s.cwd);
    put_map(w, s.env);
    put_opt_str(w, s.env_file);
    w.flag(s.env_file_optional);
    put_opt_str(w, s.user);
    put_opt_str(w, s.group);
    w.flag(s.identity.has_value());
    if (s.identity) {
        const proc::Identity &id = *s.identity;
        w.flag(id.set_uid);
        w.flag(id.set_gid);
        w.flag(id.set_groups);
        w.num(id.uid);
        w.num(id.gid);
        w.list(id.groups, [&](std::uint32_t g) { w.num(g); });
        w.str(id.user_name);
        w.str(id.home);
    }
    put_opt_num(w, s.umask);
    w.list(s.limits, [&](const proc::Limit &l) {
        w.num(l.resource);
        w.num(l.soft);
        w.num(l.hard);
    });
}

proc::SpawnSpec get_spawn(Reader &r) {
    proc::SpawnSpec s;
    s.argv = get_strings(r, "argv");
    s.cwd = get_opt_str(r, "cwd");
    s.env = get_map(r, "env");
    s.env_file = get_opt_str(r, "env_file");
    s.env_file_optional = r.flag("env_file optional");
    s.user = get_opt_str(r, "user");
    s.group = get_opt_str(r, "group");
    if (r.flag("identity")) {
        proc::Identity id;
        id.set_uid = r.flag("identity");
        id.set_gid = r.flag("identity");
        id.set_groups = r.flag("identity");
        id.uid = r.num<std::uint32_t>("identity uid");
        id.gid = r.num<std::uint32_t>("identity gid");
        for (std::uint32_t n = r.count("identity groups"); n > 0; --n)
            id.groups.push_back(r.num<std::uint32_t>("identity group"));
        id.user_name = r.str("identity user name");
        id.home = r.str("identity home");
        s.identity = std::move(id);
    }
    s.umask = get_opt_num<unsigned>(r, "umask");
    for (std::uint32_t n = r.count("limits"); n > 0; --n) {
        proc::Limit l{};
        l.resource = r.num<int>("limit resource");
        l.soft = r.num<std::uint64_t>("limit soft");
        l.hard = r.num<std::uint64_t>("limit hard");
        s.limits.push_back(l);
    }
    return s;
}

void put_unit_spec(Writer &w, const unit::Unit &u) {
    w.str(u.name);
    w.str(u.file);
    w.str(u.description);
    put_strings(w, u.after);
    put_spawn(w, u.spawn);
    const unit::LogSpec &l = u.logs;
    w.flag(l.forward);
    put_opt_str(w, l.file);
    w.num(l.max_size);
    w.num(l.keep);
    w.flag(l.timestamps);
    w.num(l.ring);
    w.num(l.max_line);
    w.flag(l.merge_stderr);
    w.flag(u.ready.notify);
    put_opt_num(w, u.ready.fd);
    put_opt_str(w, u.ready.log);
    put_probe(w, u.ready.probe);
    put_ms(w, u.ready.timeout);
    put_probe(w, u.liveness);
    put_probe(w, u.readiness);
    put_probe(w, u.startup);
    put_opt_ms(w, u.watchdog);
    w.list(u.patterns, [&](const unit::PatternSpec &p) {
        w.str(p.match);
        w.enumerated(p.stream);
        w.enumerated(p.action);
        w.num(p.count);
        put_opt_ms(w, p.within);
        w.num(p.line);
        w.num(p.column);
    });
    w.list(u.listen, [&](const unit::ListenSpec &s) {
        w.enumerated(s.kind);
        w.str(s.address);
        w.str(s.host);
        w.num(s.port);
        w.str(s.name);
        w.num(s.backlog);
        w.flag(s.reuseport);
        w.num(s.mode);
        put_opt_str(w, s.owner);
        put_opt_str(w, s.group);
        put_opt_num(w, s.uid);
        put_opt_num(w, s.gid);
        w.num(static_cast<std::uint64_t>(s.item));
    });
}

unit::Unit get_unit_spec(Reader &r) {
    unit::Unit u;
    u.name = r.str("unit name");
    u.file = r.str("unit file");
    u.description = r.str("unit description");
    u.after = get_strings(r, "unit after");
    u.spawn = get_spawn(r);
    unit::LogSpec &l = u.logs;
    l.forward = r.flag("logs forward");
    l.file = get_opt_str(r, "logs file");
    l.max_size = r.num<std::uint64_t>("logs max_size");
    l.keep = r.num<unsigned>("logs keep");
    l.timestamps = r.flag("logs timestamps");
    l.ring = r.num<std::uint64_t>("logs ring");
    l.max_line = r.num<std::uint64_t>("logs max_line");
    l.merge_stderr = r.flag("logs stderr");
    u.ready.notify = r.flag("ready notify");
    u.ready.fd = get_opt_num<int>(r, "ready fd");
    u.ready.log = get_opt_str(r, "ready log");
    u.ready.probe = get_probe(r);
    u.ready.timeout = get_ms(r, "ready timeout");
    u.liveness = get_probe(r);
    u.readiness = get_probe(r);
    u.startup = get_probe(r);
    u.watchdog = get_opt_ms(r, "watchdog");
    for (std::uint32_t n = r.count("patterns"); n > 0; --n) {
        unit::PatternSpec p;
        p.match = r.str("pattern");
        p.stream = r.enumerated(unit::Stream::Both, "pattern stream");
        p.action = r.enumerated(core::PatternAction::Event, "pattern action");
        p.count = r.num<unsigned>("pattern count");
        p.within = get_opt_ms(r, "pattern within");
        p.line = r.num<int>("pattern line");
        p.column = r.num<int>("pattern column");
        u.patterns.push_back(std::move(p));
    }
    for (std::uint32_t n = r.count("listen"); n > 0; --n) {
        unit::ListenSpec s;
        s.kind = r.enumerated(unit::ListenKind::Unix, "listen kind");
        s.address = r.str("listen address");
        s.host = r.str("listen host");
        s.port = r.num<int>("listen port");
        s.name = r.str("listen name");
        s.backlog = r.num<int>("listen backlog");
        s.reuseport = r.flag("listen reuseport");
        s.mode = r.num<unsigned>("listen mode");
        s.owner = get_opt_str(r, "listen owner");
        s.group = get_opt_str(r, "listen group");
        s.uid = get_opt_num<std::uint32_t>(r, "listen uid");
        s.gid = get_opt_num<std::uint32_t>(r, "listen gid");
        s.item = static_cast<std::size_t>(r.num<std::uint64_t>("listen item"));
        u.listen.push_back(std::move(s));
    }
    return u;
}

} // namespace

void put_loaded(Writer &w, const unit::LoadResult &loaded) {
    w.num(loaded.tree.seed);
    w.list(loaded.tree.nodes, [&](const core::ChildSpec &c) { put_child(w, c); });
    w.list(loaded.units, [&](const unit::Unit &u) { put_unit_spec(w, u); });
}

unit::LoadResult get_loaded(Reader &r) {
    unit::LoadResult out;
    out.tree.seed = r.num<std::uint64_t>("tree seed");
    for (std::uint32_t n = r.count_into(out.tree.nodes, "tree nodes", 16); n > 0; --n)
        out.tree.nodes.push_back(get_child(r));
    for (std::uint32_t n = r.count_into(out.units, "units", 32); n > 0; --n)
        out.units.push_back(get_unit_spec(r));
    // The shape the shell relies on: a root, one unit a node, ids within the tree.
    const std::size_t size = out.tree.nodes.size();
    if (size == 0 || out.units.size() != size)
        throw Refused("the units carried do not match their tree");
    for (std::size_t i = 0; i < size; ++i) {
        const core::ChildSpec &c = out.tree.nodes[i];
        if ((i == 0) != !c.parent || (c.parent && c.parent->value >= size))
            throw Refused("node " + c.name + ": a parent outside the tree");
        for (const auto *ids : {&c.children, &c.after})
            for (ChildId id : *ids)
                if (id.value >= size || id.value == i)
                    throw Refused("node " + c.name + ": a child or sibling outside the tree");
        if (c.name != out.units[i].name) throw Refused("node " + c.name + ": not its unit's");
    }
    return out;
}

} // namespace vigil::daemon

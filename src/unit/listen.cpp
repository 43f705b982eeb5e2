// listen.cpp: a service's `listen` entries (see listen_parse.hpp and vigil/unit/unit.hpp).
#include "listen_parse.hpp"

#include <arpa/inet.h>
#include <charconv>
#include <grp.h>
#include <pwd.h>
#include <set>

namespace vigil::unit {

std::string ListenSpec::key() const {
    switch (kind) {
    case ListenKind::Tcp:
        return "tcp " + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
               std::to_string(port);
    case ListenKind::Udp:
        return "udp " + (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
               std::to_string(port);
    case ListenKind::Unix:
        return "unix " + address;
    }
    return {};
}

std::string ListenSpec::describe() const {
    const char *k = kind == ListenKind::Tcp ? "tcp" : (kind == ListenKind::Udp ? "udp" : "unix");
    return std::string(k) + " " + address;
}

namespace detail {

const Fields listen_fields{"tcp",  "udp",   "unix",  "name",     "backlog",
                           "mode", "owner", "group", "reuseport"};

namespace {

// "HOST:PORT" with a numeric host: IPv4 dotted quad, or IPv6 in brackets. The host comes back
// in its canonical form (inet_ntop), so that "[0::0]:80" and "[::]:80" are one address.
std::string parse_host_port(const std::string &s, std::string &host, int &port) {
    const auto colon = s.rfind(':');
    if (colon == std::string::npos || colon == 0)
        return "expected \"HOST:PORT\" (\"0.0.0.0:8080\", \"[::]:8080\")";
    std::string h = s.substr(0, colon);
    const std::string p = s.substr(colon + 1);
    const bool v6 = h.size() >= 2 && h.front() == '[' && h.back() == ']';
    if (v6) h = h.substr(1, h.size() - 2);
    unsigned char buf[16];
    char text[INET6_ADDRSTRLEN];
    if (inet_pton(v6 ? AF_INET6 : AF_INET, h.c_str(), buf) != 1)
        return v6 || h.find(':') != std::string::npos
                   ? "expected a numeric IPv6 address in brackets (\"[::]:8080\")"
                   : "expected a numeric IPv4 address (\"0.0.0.0:8080\"; vigild resolves no "
                     "names), or an IPv6 one in brackets";
    inet_ntop(v6 ? AF_INET6 : AF_INET, buf, text, sizeof text);
    host = text;
    int n = 0;
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), n);
    if (p.empty() || ec != std::errc{} || end != p.data() + p.size() || n < 1 || n > 65535)
        return "expected a port from 1 to 65535 after the last ':'";
    port = n;
    return {};
}

std::string check_unix_path(const std::string &s) {
    if (!s.starts_with("/")) return "must be an absolute path";
    if (s.size() > bounds::max_socket_path_bytes)
        return "is " + std::to_string(s.size()) + " bytes long; a unix socket path holds at most " +
               std::to_string(bounds::max_socket_path_bytes) + " (sun_path)";
    if (s.back() == '/') return "names a directory; give the socket file's path";
    for (std::size_t i = 0; i < s.size();) {
        const auto next = s.find('/', i + 1);
        const std::string part = s.substr(i + 1, next == std::string::npos ? next : next - i - 1);
        if (part == "." || part == ".." || part.empty())
            return "must be a plain path (no \"//\", \".\" or \"..\" component)";
        if (next == std::string::npos) break;
        i = next;
    }
    return {};
}

bool fdname_ok(std::string_view n) {
    if (n.empty() || n.size() > bounds::max_fdname_bytes) return false;
    for (char ch : n) {
        const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                        (ch >= '0' && ch <= '9') || ch == '_' || ch == '.' || ch == '-';
        if (!ok) return false;
    }
    return true;
}

// A user or group as a name or a numeric id; the name is looked up (NSS) now.
std::optional<std::uint32_t> resolve_id(const json &v, bool user, std::string &error) {
    std::string s;
    if (v.is_number_unsigned()) {
        const auto n = v.get<std::uint64_t>();
        if (n >= UINT32_MAX) {
            error = "expected an id below 4294967295";
            return std::nullopt;
        }
        return static_cast<std::uint32_t>(n);
    }
    if (!v.is_string() || v.get_ref<const std::string &>().empty() ||
        v.get_ref<const std::string &>().size() > bounds::max_user_bytes) {
        error = "expected a name or a numeric id; got " + describe(v);
        return std::nullopt;
    }
    s = v.get<std::string>();
    std::string buf(16384, '\0');
    if (user) {
        passwd pw{}, *res = nullptr;
        if (getpwnam_r(s.c_str(), &pw, buf.data(), buf.size(), &res) == 0 && res) return pw.pw_uid;
    } else {
        group gr{}, *res = nullptr;
        if (getgrnam_r(s.c_str(), &gr, buf.data(), buf.size(), &res) == 0 && res) return gr.gr_gid;
    }
    error = std::string(user ? "no such user " : "no such group ") + shown(s);
    return std::nullopt;
}

// The address fields: exactly one of tcp, udp, unix.
bool parse_address(Checker &c, const json &x, const std::string &p, ListenSpec &l) {
    int n = 0;
    for (const char *k : {"tcp", "udp", "unix"})
        n += x.contains(k) ? 1 : 0;
    if (n != 1) {
        c.error(p, n == 0 ? "expected one of \"tcp\", \"udp\" or \"unix\" (the address)"
                          : "give exactly one of \"tcp\", \"udp\" and \"unix\" per entry");
        return false;
    }
    const char *k = x.contains("tcp") ? "tcp" : (x.contains("udp") ? "udp" : "unix");
    l.kind = x.contains("tcp") ? ListenKind::Tcp
                               : (x.contains("udp") ? ListenKind::Udp : ListenKind::Unix);
    const std::string ap = pointer_append(p, k);
    auto s = c.string(x[k], ap, true, bounds::max_path_bytes);
    if (!s) return false;
    l.address = *s;
    std::string why =
        l.kind == ListenKind::Unix ? check_unix_path(*s) : parse_host_port(*s, l.host, l.port);
    if (!why.empty()) c.error(ap, why + "; got " + describe(x[k]));
    return why.empty();
}

bool parse_options(Checker &c, const json &x, const std::string &p, ListenSpec &l) {
    bool ok = true;
    const bool unix_socket = l.kind == ListenKind::Unix;
    if (x.contains("name")) {
        auto s = c.string(x["name"], pointer_append(p, "name"), true, bounds::max_fdname_bytes);
        if (s && fdname_ok(*s))
            l.name = *s;
        else if (s)
            c.error(pointer_append(p, "name"),
                    "expected 1-255 characters of [A-Za-z0-9_.-] (LISTEN_FDNAMES separates names "
                    "with ':'); got " +
                        describe(x["name"]));
        ok = ok && s && fdname_ok(*s);
    }
    if (x.contains("backlog")) {
        if (l.kind == ListenKind::Udp)
            c.error_at_key(pointer_append(p, "backlog"), "a udp socket has no backlog");
        if (auto n = c.integer(x["backlog"], pointer_append(p, "backlog"), 1, bounds::max_backlog))
            l.backlog = static_cast<int>(*n);
        else
            ok = false;
    }
    if (x.contains("reuseport")) {
        if (unix_socket)
            c.error_at_key(pointer_append(p, "reuseport"),
                           "applies to tcp and udp only (a unix path has one socket)");
        if (auto b = c.boolean(x["reuseport"], pointer_append(p, "reuseport")))
            l.reuseport = *b;
        else
            ok = false;
    }
    for (const char *k : {"mode", "owner", "group"})
        if (x.contains(k) && !unix_socket) {
            c.error_at_key(pointer_append(p, k), "applies to unix sockets only");
            ok = false;
        }
    return ok;
}

bool parse_unix_access(Checker &c, const json &x, const std::string &p, ListenSpec &l) {
    bool ok = true;
    if (x.contains("mode")) {
        const json &m = x["mode"];
        if (const auto value = octal_mode(m)) {
            l.mode = *value;
        } else {
            c.error(pointer_append(p, "mode"),
                    "expected an octal string like \"0660\" (at most 0777); got " + describe(m));
            ok = false;
        }
    }
    for (const char *k : {"owner", "group"}) {
        if (!x.contains(k)) continue;
        std::string error;
        const bool user = std::string_view(k) == "owner";
        auto id = resolve_id(x[k], user, error);
        if (!id) {
            c.error(pointer_append(p, k), error);
            ok = false;
            continue;
        }
        (user ? l.owner : l.group) =
            x[k].is_string() ? x[k].get<std::string>() : std::to_string(*id);
        (user ? l.uid : l.gid) = *id;
    }
    return ok;
}

} // namespace

void parse_listen(Checker &c, const json &v, const std::string &file_stem,
                  std::vector<ListenSpec> &out) {
    const std::string ptr = "/listen";
    if (!v.is_array()) {
        c.error(ptr, "expected an array of objects; got " + describe(v));
        return;
    }
    if (v.size() > bounds::max_listen) {
        c.error(ptr, std::to_string(v.size()) + " entries; at most " +
                         std::to_string(bounds::max_listen) + " are allowed");
        return;
    }
    std::set<std::string> seen;
    for (std::size_t i = 0; i < v.size(); ++i) {
        const std::string p = ptr + "/" + std::to_string(i);
        const json &x = v[i];
        if (!c.expect_object(x, p)) continue;
        c.check_keys(x, p, listen_fields);
        ListenSpec l;
        l.name = file_stem;
        l.item = i;
        if (!parse_address(c, x, p, l)) continue;
        bool ok = parse_options(c, x, p, l);
        if (l.kind == ListenKind::Unix) ok = parse_unix_access(c, x, p, l) && ok;
        if (!seen.insert(l.key()).second) {
            c.error(pointer_append(p, l.kind == ListenKind::Tcp
                                          ? "tcp"
                                          : (l.kind == ListenKind::Udp ? "udp" : "unix")),
                    l.describe() + " is listed twice (one socket per address)");
            ok = false;
        }
        if (ok) out.push_back(std::move(l));
    }
}

} // namespace detail

} // namespace vigil::unit

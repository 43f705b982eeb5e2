// The control protocol codec: see include/vigil/ctl/protocol.hpp for the wire format.
#include "vigil/ctl/protocol.hpp"
#include "vigil/json_error.hpp"

#include "vigil/core/names.hpp"

#include <array>
#include <cstdlib>
#include <limits>
#include <unistd.h>

namespace vigil::ctl {

namespace {

struct CodeName {
    ErrorCode code;
    const char *name;
};
constexpr std::array<CodeName, 9> code_names{{
    {ErrorCode::BadJson, "bad_json"},
    {ErrorCode::BadRequest, "bad_request"},
    {ErrorCode::UnknownCommand, "unknown_command"},
    {ErrorCode::TooLong, "too_long"},
    {ErrorCode::NotFound, "not_found"},
    {ErrorCode::Forbidden, "forbidden"},
    {ErrorCode::Invalid, "invalid"},
    {ErrorCode::ShuttingDown, "shutting_down"},
    {ErrorCode::Internal, "internal"},
}};
static_assert(code_names.size() == static_cast<std::size_t>(ErrorCode::Internal) + 1);

struct CmdName {
    Cmd cmd;
    const char *name;
    bool read_only;
};
constexpr std::array<CmdName, 14> cmd_names{{
    {Cmd::Status, "status", true},
    {Cmd::Start, "start", false},
    {Cmd::Stop, "stop", false},
    {Cmd::Restart, "restart", false},
    {Cmd::Signal, "signal", false},
    {Cmd::Reload, "reload", false},
    {Cmd::Logs, "logs", true},
    {Cmd::Tree, "tree", true},
    {Cmd::Events, "events", true},
    {Cmd::Shutdown, "shutdown", false},
    {Cmd::Version, "version", true},
    {Cmd::Checks, "checks", true},
    {Cmd::Check, "check", false},
    {Cmd::Reexec, "reexec", false},
}};
static_assert(cmd_names.size() == static_cast<std::size_t>(Cmd::Reexec) + 1);

constexpr bool tables_in_order() {
    for (std::size_t i = 0; i < code_names.size(); ++i)
        if (static_cast<std::size_t>(code_names[i].code) != i) return false;
    for (std::size_t i = 0; i < cmd_names.size(); ++i)
        if (static_cast<std::size_t>(cmd_names[i].cmd) != i) return false;
    return true;
}
static_assert(tables_in_order(), "name tables must follow the enum order");

// Serialises without throwing on invalid UTF-8 (log lines are arbitrary bytes).
std::string line_of(const Json &j) {
    std::string s = j.dump(-1, ' ', false, Json::error_handler_t::replace);
    s.push_back('\n');
    return s;
}

// What a client sent, quoted for an error message: at most 64 bytes of it, so that an answer
// never echoes a whole line back.
std::string quote_input(std::string_view s) {
    constexpr std::size_t shown = 64;
    if (s.size() <= shown) return "\"" + std::string(s) + "\"";
    return "\"" + std::string(s.substr(0, shown)) + "...\" (" + std::to_string(s.size()) +
           " bytes)";
}

// The shape check that runs before the JSON parser: nesting depth and the number of values
// (array elements and object members), counted on the raw bytes. Structure inside strings is
// skipped; anything malformed is left for the parser to report. Returns an error message, or
// an empty string when the line may be parsed. Linear, no allocation.
std::string prescan(std::string_view line) {
    std::size_t depth = 0, values = 0;
    bool in_string = false, escaped = false, first = false; // first: just after [ or {
    for (char c : line) {
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
        // A container's first value counts when it starts; each later one at its comma.
        if (first && c != ']' && c != '}') ++values;
        first = false;
        switch (c) {
        case '"':
            in_string = true;
            break;
        case '[':
        case '{':
            if (++depth > max_request_depth)
                return "request nested deeper than " + std::to_string(max_request_depth) +
                       " levels";
            first = true;
            break;
        case ']':
        case '}':
            if (depth > 0) --depth;
            break;
        case ',':
            ++values;
            break;
        default:
            break;
        }
        if (values > max_request_values)
            return "request holds more than " + std::to_string(max_request_values) + " values";
    }
    return "";
}

// Argument validation. Each helper returns an error message, or an empty string when fine.
std::string want_name(const Json &v) {
    if (!v.is_string() || v.get_ref<const std::string &>().empty()) return "non-empty strings";
    if (v.get_ref<const std::string &>().size() > max_unit_name)
        return "names of at most " + std::to_string(max_unit_name) + " bytes";
    return "";
}

std::string want_units(const Json &args, const char *key, bool required,
                       std::vector<std::string> &out) {
    auto it = args.find(key);
    if (it == args.end()) return required ? std::string("missing \"") + key + "\"" : "";
    if (!it->is_array()) return std::string("\"") + key + "\" must be an array of unit names";
    if (it->size() > max_units_per_request)
        return std::string("\"") + key + "\" may name at most " +
               std::to_string(max_units_per_request) + " units (use a glob or a supervisor)";
    for (const auto &u : *it) {
        if (std::string why = want_name(u); !why.empty())
            return std::string("\"") + key + "\" must hold " + why;
        out.push_back(u.get<std::string>());
    }
    if (required && out.empty()) return std::string("\"") + key + "\" must name at least one unit";
    return "";
}

std::string want_bool(const Json &args, const char *key, bool &out) {
    auto it = args.find(key);
    if (it == args.end()) return "";
    if (!it->is_boolean()) return std::string("\"") + key + "\" must be true or false";
    out = it->get<bool>();
    return "";
}

std::string want_lines(const Json &args, std::optional<std::uint32_t> &out) {
    auto it = args.find("lines");
    if (it == args.end()) return "";
    const std::string msg = "\"lines\" must be an integer from 0 to " + std::to_string(max_lines);
    if (!it->is_number_integer()) return msg;
    if (!it->is_number_unsigned() && it->get<std::int64_t>() < 0) return msg;
    auto v = it->get<std::uint64_t>();
    if (v > max_lines) return msg;
    out = static_cast<std::uint32_t>(v);
    return "";
}

// restart's rolling and max_unavailable: a roll names one unit; a width only with a roll.
std::string want_rolling(const Json &args, Request &r) {
    if (std::string err = want_bool(args, "rolling", r.rolling); !err.empty()) return err;
    if (auto it = args.find("max_unavailable"); it != args.end()) {
        const std::string msg =
            "\"max_unavailable\" must be an integer from 1 to " + std::to_string(max_rolling_width);
        if (!it->is_number_integer()) return msg;
        if (!it->is_number_unsigned() && it->get<std::int64_t>() < 1) return msg;
        const auto v = it->get<std::uint64_t>();
        if (v < 1 || v > max_rolling_width) return msg;
        if (!r.rolling) return "\"max_unavailable\" needs \"rolling\": true";
        r.max_unavailable = static_cast<std::uint32_t>(v);
    }
    if (r.rolling && r.units.size() != 1)
        return "a rolling restart names one unit (an instanced unit's name, e.g. \"web\")";
    return "";
}

std::string want_unit(const Json &args, bool required, std::string &out) {
    auto it = args.find("unit");
    if (it == args.end()) return required ? "missing \"unit\"" : "";
    if (std::string why = want_name(*it); !why.empty()) return "\"unit\" must be a name: " + why;
    out = it->get<std::string>();
    return "";
}

// logs and events: "unit" (one pattern, as protocol 2 has always taken) and "units" (several),
// together at most max_units_per_request; r.units gets both, r.unit the first.
std::string want_stream_units(const Json &args, Request &r) {
    if (std::string err = want_unit(args, false, r.unit); !err.empty()) return err;
    if (std::string err = want_units(args, "units", false, r.units); !err.empty()) return err;
    if (!r.unit.empty()) {
        if (r.units.size() >= max_units_per_request)
            return "\"unit\" and \"units\" may name at most " +
                   std::to_string(max_units_per_request) + " units";
        r.units.insert(r.units.begin(), r.unit);
    }
    if (r.unit.empty() && !r.units.empty()) r.unit = r.units.front();
    return "";
}

std::string want_since(const Json &args, std::optional<std::int64_t> &out) {
    auto it = args.find("since");
    if (it == args.end()) return "";
    const std::string msg =
        "\"since\" must be milliseconds since the epoch, from 0 to " + std::to_string(max_since_ms);
    if (!it->is_number_integer()) return msg;
    if (!it->is_number_unsigned() && it->get<std::int64_t>() < 0) return msg;
    auto v = it->get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(max_since_ms)) return msg;
    out = static_cast<std::int64_t>(v);
    return "";
}

// Rejects keys the command does not take, so a typo in a script is an error, not a no-op.
std::string only_keys(const Json &args, std::initializer_list<const char *> keys) {
    for (const auto &[k, v] : args.items()) {
        bool known = false;
        for (const char *want : keys)
            if (k == want) known = true;
        if (!known) return "unknown argument " + quote_input(k);
    }
    return "";
}

// check {unit, probe, run:true}: run is the one action, and must be said.
std::string parse_check(const Json &a, Request &r) {
    std::string err = only_keys(a, {"unit", "probe", "run"});
    if (err.empty()) err = want_unit(a, true, r.unit);
    if (!err.empty()) return err;
    auto it = a.find("probe");
    if (it == a.end()) return "missing \"probe\"";
    if (std::string why = want_name(*it); !why.empty()) return "\"probe\" must be a name: " + why;
    r.probe = it->get<std::string>();
    err = want_bool(a, "run", r.run);
    if (err.empty() && !r.run) err = "\"run\" must be true (running the probe is what check does)";
    return err;
}

} // namespace

const char *to_string(ErrorCode c) noexcept {
    auto i = static_cast<std::size_t>(c);
    return i < code_names.size() ? code_names[i].name : "internal";
}

std::optional<ErrorCode> error_code_from_string(std::string_view s) noexcept {
    for (const auto &e : code_names)
        if (s == e.name) return e.code;
    return std::nullopt;
}

const char *to_string(Cmd c) noexcept {
    auto i = static_cast<std::size_t>(c);
    return i < cmd_names.size() ? cmd_names[i].name : "?";
}

std::optional<Cmd> cmd_from_string(std::string_view s) noexcept {
    for (const auto &e : cmd_names)
        if (s == e.name) return e.cmd;
    return std::nullopt;
}

bool is_read_only(const Request &r) noexcept {
    auto i = static_cast<std::size_t>(r.cmd);
    if (i >= cmd_names.size() || !cmd_names[i].read_only) return false;
    return !(r.cmd == Cmd::Logs && r.reopen); // reopening a file changes something
}

ParseResult parse_request(std::string_view line) noexcept {
    try {
        if (line.size() > max_request_line)
            return RequestError{nullptr, ErrorCode::TooLong,
                                "request line longer than " + std::to_string(max_request_line) +
                                    " bytes"};
        if (std::string why = prescan(line); !why.empty())
            return RequestError{nullptr, ErrorCode::BadRequest, why};
        Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (j.is_discarded()) {
            // Parse again with exceptions only to get nlohmann's message with its position.
            try {
                Json again = Json::parse(line);
                (void)again;
            } catch (const Json::exception &e) {
                return RequestError{nullptr, ErrorCode::BadJson,
                                    "invalid JSON: " + json_error_text(e.what(), true)};
            }
            return RequestError{nullptr, ErrorCode::BadJson, "invalid JSON"};
        }
        if (!j.is_object())
            return RequestError{nullptr, ErrorCode::BadRequest, "a request must be a JSON object"};

        Request r;
        if (auto it = j.find("id"); it != j.end()) {
            if ((!it->is_null() && !it->is_string() && !it->is_number_integer()) ||
                (it->is_string() && it->get_ref<const std::string &>().size() > max_id_length))
                return RequestError{nullptr, ErrorCode::BadRequest,
                                    "\"id\" must be an integer or a string of at most " +
                                        std::to_string(max_id_length) + " bytes"};
            r.id = *it;
        }
        for (const auto &[k, v] : j.items())
            if (k != "id" && k != "cmd" && k != "args")
                return RequestError{r.id, ErrorCode::BadRequest, "unknown key " + quote_input(k)};

        auto cit = j.find("cmd");
        if (cit == j.end()) return RequestError{r.id, ErrorCode::BadRequest, "missing \"cmd\""};
        if (!cit->is_string())
            return RequestError{r.id, ErrorCode::BadRequest, "\"cmd\" must be a string"};
        auto cmd = cmd_from_string(cit->get_ref<const std::string &>());
        if (!cmd)
            return RequestError{r.id, ErrorCode::UnknownCommand,
                                "unknown command " +
                                    quote_input(cit->get_ref<const std::string &>())};
        r.cmd = *cmd;

        if (auto ait = j.find("args"); ait != j.end() && !ait->is_null()) {
            if (!ait->is_object())
                return RequestError{r.id, ErrorCode::BadRequest, "\"args\" must be an object"};
            r.args = std::move(*ait);
        }
        const Json &a = r.args;
        std::string err;
        switch (r.cmd) {
        case Cmd::Check:
            err = parse_check(a, r);
            break;
        case Cmd::Checks:
        case Cmd::Status:
            err = r.cmd == Cmd::Status ? only_keys(a, {"units", "detail", "brief"})
                                       : only_keys(a, {"units", "detail"});
            if (err.empty()) err = want_units(a, "units", false, r.units);
            if (err.empty()) err = want_bool(a, "detail", r.detail);
            if (err.empty() && r.cmd == Cmd::Status) err = want_bool(a, "brief", r.brief);
            break;
        case Cmd::Start:
        case Cmd::Stop:
            err = only_keys(a, {"units"});
            if (err.empty()) err = want_units(a, "units", true, r.units);
            break;
        case Cmd::Restart:
            err = only_keys(a, {"units", "rolling", "max_unavailable"});
            if (err.empty()) err = want_units(a, "units", true, r.units);
            if (err.empty()) err = want_rolling(a, r);
            break;
        case Cmd::Signal: {
            err = only_keys(a, {"units", "signal"});
            if (err.empty()) err = want_units(a, "units", true, r.units);
            if (!err.empty()) break;
            auto sit = a.find("signal");
            if (sit == a.end()) {
                err = "missing \"signal\"";
            } else if (sit->is_number_integer()) {
                // Compared as a 64-bit value first: no narrowing can turn it into a signal.
                const bool negative = sit->is_number_integer() && !sit->is_number_unsigned() &&
                                      sit->get<std::int64_t>() < 0;
                const std::uint64_t n = negative ? 0 : sit->get<std::uint64_t>();
                if (negative || n > 64 || !core::valid_signal(static_cast<int>(n)))
                    return RequestError{r.id, ErrorCode::Invalid,
                                        "no signal number " + sit->dump()};
                r.signal = static_cast<int>(n);
            } else if (sit->is_string()) {
                auto n = core::parse_signal(sit->get_ref<const std::string &>());
                if (!n)
                    return RequestError{r.id, ErrorCode::Invalid,
                                        "unknown signal " +
                                            quote_input(sit->get_ref<const std::string &>())};
                r.signal = *n;
            } else {
                err = "\"signal\" must be a name (\"SIGTERM\") or a number";
            }
            break;
        }
        case Cmd::Logs:
            err = only_keys(a, {"unit", "units", "lines", "follow", "reopen", "since"});
            if (err.empty()) err = want_stream_units(a, r);
            if (err.empty()) err = want_lines(a, r.lines);
            if (err.empty()) err = want_bool(a, "follow", r.follow);
            if (err.empty()) err = want_bool(a, "reopen", r.reopen);
            if (err.empty()) err = want_since(a, r.since);
            break;
        case Cmd::Events:
            err = only_keys(a, {"unit", "units", "lines", "follow", "since"});
            if (err.empty()) err = want_stream_units(a, r);
            if (err.empty()) err = want_lines(a, r.lines);
            if (err.empty()) err = want_bool(a, "follow", r.follow);
            if (err.empty()) err = want_since(a, r.since);
            break;
        case Cmd::Reload:
        case Cmd::Tree:
        case Cmd::Shutdown:
        case Cmd::Version:
        case Cmd::Reexec:
            err = only_keys(a, {});
            break;
        }
        if (!err.empty())
            return RequestError{r.id, ErrorCode::BadRequest,
                                std::string(to_string(r.cmd)) + ": " + err};
        return r;
    } catch (const std::exception &e) {
        // Only allocation failures can get here; answer rather than take vigild down.
        return RequestError{nullptr, ErrorCode::Internal, std::string("internal: ") + e.what()};
    }
}

std::string make_hello(std::string_view server_version) {
    return line_of(
        Json{{"hello", "vigil"}, {"version", protocol_version}, {"server", server_version}});
}

std::string make_reply(const Json &id, const Json &result) {
    return line_of(Json{{"id", id}, {"ok", true}, {"result", result}});
}

// Sorted keys, as line_of() would write {"id": id, "ok": true, "result": result}.
std::string make_reply_line(const Json &id, std::string_view result_json) {
    std::string id_json = id.dump(-1, ' ', false, Json::error_handler_t::replace);
    std::string s;
    s.reserve(id_json.size() + result_json.size() + 32);
    s += "{\"id\":";
    s += id_json;
    s += ",\"ok\":true,\"result\":";
    s += result_json;
    s += "}\n";
    return s;
}

std::string make_error(const Json &id, ErrorCode code, std::string_view message,
                       const Json &extra) {
    Json err = Json::object();
    if (extra.is_object()) err = extra;
    err["code"] = to_string(code);
    err["message"] = message;
    return line_of(Json{{"id", id}, {"ok", false}, {"error", std::move(err)}});
}

std::string make_stream_item(const Json &id, const Json &item) {
    return make_stream_line(id, encode_item(item));
}

std::string encode_item(const Json &item) {
    return item.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// The keys in the order nlohmann's sorted objects dump them, so the line is the one line_of()
// would build from {"id": id, "stream": item}, without copying the item into a new Json.
std::string make_stream_line(const Json &id, std::string_view item_json) {
    std::string id_json = id.dump(-1, ' ', false, Json::error_handler_t::replace);
    std::string s;
    s.reserve(id_json.size() + item_json.size() + 20);
    s += "{\"id\":";
    s += id_json;
    s += ",\"stream\":";
    s += item_json;
    s += "}\n";
    return s;
}

std::string make_end(const Json &id) {
    return line_of(Json{{"id", id}, {"ok", true}, {"end", true}});
}

std::string make_request(const Json &id, Cmd cmd, const Json &args) {
    Json j{{"id", id}, {"cmd", to_string(cmd)}};
    if (args.is_object() && !args.empty()) j["args"] = args;
    return line_of(j);
}

std::optional<ServerMessage> parse_server_message(std::string_view line, std::string *error) {
    auto fail = [&](std::string msg) -> std::optional<ServerMessage> {
        if (error) *error = std::move(msg);
        return std::nullopt;
    };
    Json j = Json::parse(line, nullptr, false);
    if (j.is_discarded()) return fail("the server sent a line that is not JSON");
    if (!j.is_object()) return fail("the server sent a JSON value that is not an object");
    ServerMessage m;
    if (auto h = j.find("hello"); h != j.end()) {
        m.kind = ServerMessage::Kind::Hello;
        auto v = j.find("version");
        if (!h->is_string() || *h != "vigil" || v == j.end() || !v->is_number_integer())
            return fail("the server's hello is not vigil's");
        m.version = v->get<int>();
        m.body = std::move(j);
        return m;
    }
    if (auto id = j.find("id"); id != j.end()) m.id = *id;
    if (auto s = j.find("stream"); s != j.end()) {
        m.kind = ServerMessage::Kind::StreamItem;
        m.body = std::move(*s);
        return m;
    }
    auto ok = j.find("ok");
    if (ok == j.end() || !ok->is_boolean()) return fail("the server's answer has no \"ok\"");
    if (ok->get<bool>()) {
        if (auto e = j.find("end"); e != j.end() && e->is_boolean() && e->get<bool>()) {
            m.kind = ServerMessage::Kind::End;
            return m;
        }
        m.kind = ServerMessage::Kind::Reply;
        if (auto r = j.find("result"); r != j.end()) m.body = std::move(*r);
        return m;
    }
    m.kind = ServerMessage::Kind::Error;
    auto e = j.find("error");
    if (e == j.end() || !e->is_object()) return fail("the server's error has no \"error\" object");
    if (auto c = e->find("code"); c != e->end() && c->is_string()) m.code = c->get<std::string>();
    if (auto t = e->find("message"); t != e->end() && t->is_string())
        m.message = t->get<std::string>();
    m.body = std::move(*e);
    return m;
}

std::string socket_path_from_env() {
    if (const char *e = std::getenv("VIGIL_SOCKET"); e && *e) return e;
    return default_socket_path();
}

std::string default_socket_path() {
    if (geteuid() == 0) return "/run/vigil/control.sock";
    if (const char *x = std::getenv("XDG_RUNTIME_DIR"); x && *x)
        return std::string(x) + "/vigil/control.sock";
    return "/tmp/vigil-" + std::to_string(geteuid()) + "/control.sock";
}

} // namespace vigil::ctl

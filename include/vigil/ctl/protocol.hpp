// vigil/ctl/protocol.hpp: the control protocol between vigild and its clients (vigilctl).
//
// Transport: a Unix stream socket (default /run/vigil/control.sock for root,
// $XDG_RUNTIME_DIR/vigil/control.sock otherwise, VIGIL_SOCKET or --socket to override).
// Framing: newline-delimited JSON. Every message is one JSON object on one line, UTF-8,
// terminated by "\n" ("\r\n" is accepted from clients). Blank lines are ignored.
//
// On connect the server sends a hello before anything else:
//     {"hello":"vigil","version":2,"server":"0.1.0"}
// `version` is the protocol version; it changes only when a change would break a client.
// A client may send its first request without waiting for the hello (vigilctl does: it saves a
// round trip) and must skip the hello when it reads.
//
// Requests:  {"id":7,"cmd":"status","args":{"units":["web-*"]}}
//   id    optional; an integer (64-bit) or a string of at most 128 bytes, echoed in every
//         answer (null when absent).
//   cmd   one of the commands below.
//   args  optional object; unknown keys and wrong types are rejected (bad_request).
// Replies:   {"id":7,"ok":true,"result":{...}}
// Errors:    {"id":7,"ok":false,"error":{"code":"not_found","message":"no unit named 'x'"}}
//            (the error object may carry more keys, e.g. "diagnostics" for reload).
// Streams:   {"id":7,"stream":{...}} per item, then {"id":7,"ok":true,"end":true}.
//            `logs` and `events` always answer as a stream; without "follow" the end comes after
//            the stored items, with "follow" the stream lasts until the client disconnects.
// Requests on one connection are answered in order unless a stream is open; answers always
// carry the id of the request they answer. They are also carried out in the order they
// arrive: vigilctl sends a status request in the same write just ahead of start, stop,
// restart or reload, and its answer shows the units as that command found them (vigilctl then
// polls status until the change is done; --json prints the command's answer only).
//
// Commands and their args (R: allowed to read-only clients, i.e. socket-group members; the
// decision is per request, is_read_only(const Request &)):
//   status   R {units?:[pattern...], detail?:bool, brief?:bool} -> {units:[status...]}
//              (detail, when the patterns match one unit: its status object also carries the
//              unit's description, file, command, its supervisor's intensity window and who
//              caused its last exit; see shapes.hpp. brief, without detail: each status object
//              has only the keys a table shows, and of those only the ones not at their default
//              value: effective_goal, goal, kind, last_cause, name, restarts, since_ms and
//              state always; backoff_ms, drain_ms, last_exit, pid, roll and held_down_by
//              unless null; exiting, ready and removed when true; last_reason and status_text
//              unless empty; left_behind and waiting_for unless []. vigilctl's table asks for
//              it.)
//   tree     R {}                           -> {root:{status..., children:[...]}}
//   events   R {unit?:pattern, units?:[pattern...], lines?:N, follow?:bool, since?:ms}
//              -> stream of records
//   logs     R {unit?:pattern, units?:[pattern...], lines?:N, follow?:bool, since?:ms}
//              -> stream of log lines {unit, seq, stream:"stdout"|"stderr", time, line,
//              continued}. No unit and no units: every unit. The stored items of several units
//              are merged in the order they came (seq, which is global), the last N of the
//              merge; since: only items from that wall-clock time on (ms since the epoch).
//              Named patterns may match at most 4096 units (else invalid); every unit has no
//              such limit.
//   logs       {units..., reopen:true}  -> a reply: vigild reopens the units' log files, so
//              it is not read-only
//   version  R {}                           -> {server:"0.1.0", protocol:2, ...}
//   start      {units:[pattern...]}         -> {results:[{unit, outcome, message}]}
//   stop       {units:[pattern...]}         -> same
//   restart    {units:[pattern...]}         -> same
//   restart    {units:[unit], rolling:true, max_unavailable?:N}
//              -> {results:[{unit, outcome, message}], roll:{roll}|null}
//              A rolling restart (core::Core::roll) of one unit's instances: units names
//              exactly one unit, an instanced unit's name ("web" for web@1..web@N) or a unit
//              without instances; max_unavailable (1..its instances; default the unit's
//              "max_unavailable") only with rolling. roll: the roll's status object as status
//              shows it on the instances ("roll" in shapes.hpp), with its id, when outcome is
//              ok or already_running (the roll under way); null otherwise. An unknown unit is
//              not_found; max_unavailable above its instances is invalid. The answer comes at
//              once: clients follow the roll through status (the instances' "roll" with that
//              id: state "done" or "stopped").
//   signal     {signal:"SIGTERM"|"TERM"|15, units:[pattern...]} -> same
//              (names as core::parse_signal reads them; answers spell signals "SIGTERM")
//   reload     {}  -> {added:[..], removed:[..], restarted:[..], updated:[..], diagnostics:[..]}
//   shutdown   {}  -> {}
//   reexec     {}  -> {pid, generation, services, pause_ms, binary}
//              vigild executes its binary again (the file at the path it started from: a newer
//              one after an upgrade) with every service kept (vigild(8), "RE-EXECUTION"). The
//              reply comes from the new binary, on this connection, once it has taken the state
//              back: generation counts the re-execs, pause_ms is how long vigild answered
//              nobody. When it did not happen the old vigild answers an error (invalid: why;
//              it goes on as before); when the new binary could not read the state it answers
//              the error `internal` with why, having stopped the services and started the tree
//              afresh.
//   checks   R {units?:[pattern...]}        -> {checks:[check...]}, one per probe of each unit
//              and one for its watchdog (units with neither give none), in unit order:
//              {unit, probe:"startup"|"liveness"|"readiness"|"ready"|"watchdog",
//               kind:"http"|"tcp"|"exec"|"watchdog",
//               target:"http://127.0.0.1:8080/healthz"|"127.0.0.1:5432"|"/usr/bin/check --x"|null,
//               state:"passing"|"failing"|"pending"|"off", in_a_row:N, in_a_row_ok:bool,
//               successes:N, failures:N, last_failure:null|{time:ms since the epoch, message},
//               next_ms:N|null, period_ms:N|null, threshold:N}
//              "ready" is the probe of ready: {"probe": ...} where the unit has no readiness
//              probe. state: pending before the first verdict (or while a startup probe gates
//              the others), off while the unit does not run. in_a_row: the current run of
//              successes (in_a_row_ok) or failures; successes and failures count the current
//              incarnation's checks (zero while off); last_failure may come from an earlier
//              incarnation (message at most 256 bytes). next_ms: until the next check starts
//              (0: one runs now), null while off. The watchdog: target null, period_ms the
//              armed (else configured) interval, next_ms the time left before it fires,
//              successes the WATCHDOG=1 keep-alives, threshold 1.
//   check      {unit:name, probe:name, run:true} -> {unit, probe, ok:bool, message,
//              duration_ms}, once that check completes (within the probe's timeout). It counts
//              in the probe's thresholds like a scheduled check. A request while a check of the
//              probe is in flight gets that check's result (at most 8 wait; more: invalid). A
//              unit that is not running, or whose probe does not run now: invalid; a probe the
//              unit does not have: not_found (its probes are named).
// Patterns are unit names, fnmatch(3) globs ("web-*"), supervisor names (their subtree), or
// an instanced unit's name (its instances); see resolve_targets in vigil/ctl/shapes.hpp.
// Bounds (bad_request beyond them): at most 1024 patterns a request, a pattern or unit name of
// at most 255 bytes (a unit's name is its file name), lines at most 1,000,000.
// The shapes of status, record and result objects are built by vigil/ctl/shapes.hpp.
//
// Error codes: bad_json, bad_request, unknown_command, too_long (the connection is then
// closed), not_found, forbidden, invalid, shutting_down, internal.
//
// Limits of a request line, checked by parse_request(): a line is at most 64 KiB (the server
// answers too_long and disconnects); before the JSON is parsed, a cheap scan of the line
// refuses (bad_request) nesting deeper than 16 levels and more than 10,000 values (array
// elements and object members together), so that no line can make the parser build a large
// tree. 64 KiB holds ~5,000 short unit names; a request names at most 1024 patterns anyway.
// Limits of connections (deadlines, output caps, connection caps): vigil/ctl/server.hpp.
//
// This header and protocol.cpp depend on nlohmann_json only (no libuv), so vigilctl stays lean.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

namespace vigil::ctl {

using Json = nlohmann::json;

// 2: status says "incarnation" (was "inc"), "pid" is the main process and "spawned_pid" the
// spawned one, records carry structured fields, signals are spelled "SIGTERM".
inline constexpr int protocol_version = 2;
// The bounds of a request (see above). Every number a request holds fits the type it is read
// into: ids are int64/uint64 or short strings, lines a uint32.
inline constexpr std::size_t max_request_line = std::size_t{64} << 10; // 64 KiB, "\n" excluded
inline constexpr std::size_t max_request_depth = 16;      // nesting levels, the request object: 1
inline constexpr std::size_t max_request_values = 10'000; // array elements + object members
inline constexpr std::size_t max_id_length = 128;         // bytes of a string id
inline constexpr std::size_t max_units_per_request = 1024;
inline constexpr std::size_t max_unit_name = 255; // bytes of a unit name or pattern
inline constexpr std::uint32_t max_lines = 1'000'000;
inline constexpr std::int64_t max_since_ms = std::int64_t{1} << 53; // exact in a JSON double
// max_unavailable of a rolling restart: a unit's most instances (unit::bounds::max_instances).
inline constexpr std::uint32_t max_rolling_width = 10'000;

enum class ErrorCode : std::uint8_t {
    BadJson,        // the line is not valid JSON (the connection stays usable)
    BadRequest,     // valid JSON, wrong shape: not an object, bad id, wrong argument types
    UnknownCommand, // "cmd" names no command
    TooLong,        // the line passed max_request_line; the server then disconnects
    NotFound,       // a unit pattern matched nothing
    Forbidden,      // the peer's uid may not run this command
    Invalid,        // well-formed but unacceptable (unknown signal, broken unit files on reload)
    ShuttingDown,   // vigild is shutting down and starts nothing new
    Internal,       // a bug or resource exhaustion in vigild
};

const char *to_string(ErrorCode c) noexcept;
std::optional<ErrorCode> error_code_from_string(std::string_view s) noexcept;

enum class Cmd : std::uint8_t {
    Status,
    Start,
    Stop,
    Restart,
    Signal,
    Reload,
    Logs,
    Tree,
    Events,
    Shutdown,
    Version,
    Checks,
    Check,
    Reexec,
};

const char *to_string(Cmd c) noexcept;
std::optional<Cmd> cmd_from_string(std::string_view s) noexcept;

// A validated request. `args` is the original object (always an object, possibly empty); the
// typed fields below are filled from it for the command's known keys.
struct Request {
    Json id; // null, integer or string
    Cmd cmd = Cmd::Version;
    Json args = Json::object();

    std::vector<std::string> units;     // status (may be empty), start, stop, restart, signal,
                                        // logs and events ("unit" first; empty: every unit);
                                        // at most max_units_per_request, each <= max_unit_name
    std::string unit;                   // logs, events: the first pattern (empty: none)
    std::optional<std::uint32_t> lines; // logs, events: how many stored items to send first
                                        // (<= max_lines)
    bool follow = false;                // logs, events: keep streaming new items
    bool reopen = false;                // logs: reopen the log file (after external rotation)
    std::optional<std::int64_t> since;  // logs, events: only stored items from this wall time
                                        // on (ms since the epoch, <= max_since_ms)
    bool detail = false;                // status: add the detail fields (status_view.hpp)
    bool brief = false;                 // status: only a table's keys, defaults left out
    int signal = 0;                     // signal: the signal number (1..64)
    std::string probe;                  // check: the probe's name (<= max_unit_name)
    bool run = false;                   // check: run it now (required: true)
    bool rolling = false;               // restart: a rolling restart of units[0]
    std::optional<std::uint32_t> max_unavailable; // restart with rolling: 1..max_rolling_width
};

// Requests that change nothing: the ones socket-group members may run. Decided per request,
// not per command: `logs` is read-only, `logs` with reopen is not.
bool is_read_only(const Request &r) noexcept;

// Why a line was not a request; the server answers make_error(id, code, message).
struct RequestError {
    Json id; // the request's id if it could be read, else null
    ErrorCode code = ErrorCode::BadRequest;
    std::string message;
};

using ParseResult = std::variant<Request, RequestError>;

// Parses and validates one request line (without its "\n"). Never throws.
ParseResult parse_request(std::string_view line) noexcept;

// Builders for server lines. Each returns one complete line, "\n" included. Strings that are
// not valid UTF-8 (log lines can be anything) are written with U+FFFD replacements.
std::string make_hello(std::string_view server_version);
std::string make_reply(const Json &id, const Json &result);
// A result already encoded (as encode_item would): byte for byte make_reply(id, result).
std::string make_reply_line(const Json &id, std::string_view result_json);
// `extra` (an object or null) is merged into the error object, e.g. {"diagnostics":[...]}.
std::string make_error(const Json &id, ErrorCode code, std::string_view message,
                       const Json &extra = nullptr);
std::string make_stream_item(const Json &id, const Json &item);
// A stream item encoded once (encode_item) and sent to many followers: make_stream_line(id,
// encode_item(item)) is byte for byte make_stream_item(id, item).
std::string encode_item(const Json &item);
std::string make_stream_line(const Json &id, std::string_view item_json);
std::string make_end(const Json &id);

// Builds a request line ("\n" included) for clients.
std::string make_request(const Json &id, Cmd cmd, const Json &args);

// One line from the server, as a client sees it.
struct ServerMessage {
    enum class Kind : std::uint8_t { Hello, Reply, Error, StreamItem, End };
    Kind kind = Kind::Reply;
    Json id;
    Json body;           // Hello: the whole object; Reply: result; StreamItem: the item;
                         // Error: the error object (code, message, extra keys)
    std::string code;    // Error: the code as sent (may be one this client does not know)
    std::string message; // Error: the message
    int version = 0;     // Hello: protocol version
};

// Parses one server line. On malformed input returns nullopt and sets *error.
std::optional<ServerMessage> parse_server_message(std::string_view line, std::string *error);

// The socket path: $VIGIL_SOCKET if set and not empty, else default_socket_path().
std::string socket_path_from_env();
// /run/vigil/control.sock for root (euid 0); $XDG_RUNTIME_DIR/vigil/control.sock otherwise,
// or /tmp/vigil-<uid>/control.sock when XDG_RUNTIME_DIR is unset.
std::string default_socket_path();

} // namespace vigil::ctl

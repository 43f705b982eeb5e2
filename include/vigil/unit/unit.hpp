// vigil/unit/unit.hpp: a loaded unit directory, and the per-unit specs the shell consumes.
//
// The loader (src/unit/load.cpp) reads every `*.json` in a directory, one unit a file, the file
// stem being the unit's name ([a-z0-9][a-z0-9._@-]*). It never stops at the first problem: it
// collects every Diagnostic (file, line, column, JSON pointer, message) and returns them (up to
// bounds::max_diagnostics, then one that says how many more). A LoadResult with diagnostics must
// not be run: vigild refuses to start, reload keeps the running configuration.
//
// A unit directory is hostile input. What the loader accepts, every module can hold: each value
// is within the bounds of vigil/unit/bounds.hpp; unit files are read only when they are regular
// files (never through a symlink, never a FIFO: nothing blocks), with bounded sizes and counts;
// users and groups are resolved at load (SpawnSpec::identity), so a unit that names an unknown
// user is an error of its file, not a crash loop. load_dir() keeps no global state and may run
// on any thread (vigild reloads on a worker); it blocks on the file system and on NSS lookups,
// so never on the event loop.
//
// The result is split the way the program is: `tree` (core::TreeSpec) is the policy the pure core
// sees; `units[i]` (aligned with tree.nodes[i]) holds what the shell needs to run node i: how to
// spawn it, where its logs go, its probes, readiness and patterns.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "vigil/boxed.hpp"
#include "vigil/core/event.hpp"
#include "vigil/core/spec.hpp"
#include "vigil/proc/spawn.hpp"
#include "vigil/time.hpp"
#include "vigil/unit/bounds.hpp"

namespace vigil::unit {

struct Diagnostic {
    std::string file;    // path as given (e.g. "units/web.json"); empty for directory-level
    int line = 0;        // 1-based; 0 when not applicable
    int column = 0;      // 1-based
    std::string field;   // JSON pointer, e.g. "/restart"; empty for file-level problems
    std::string message; // e.g. expected one of "permanent", ...; got "always"
};
// "units/web.json:7:14: /restart: expected one of ...; got \"always\""
std::string format(const Diagnostic &d);

// Where a service's output goes. Every sink is active at once.
struct LogSpec {
    bool forward = true;                  // to vigild's stdout as "name | line"
    std::optional<std::string> file;      // rotated log file
    std::uint64_t max_size = 10ull << 20; // rotate when the file would exceed this
    unsigned keep = 5;                    // rotated files kept: file.1 ... file.keep
    bool timestamps = false;              // RFC 3339 with milliseconds, in file and forward
    std::uint64_t ring = 64ull << 10;     // bytes kept for `vigilctl logs`
    std::uint64_t max_line = 16ull << 10; // longer lines are split and marked, never dropped
    // "stderr": "stdout": stderr goes into the stdout pipe (supervisord's redirect_stderr).
    // One pipe, so one descriptor in vigild instead of two, and one order for both streams;
    // every line is then a stdout line. Default "separate": two pipes.
    bool merge_stderr = false;
};

enum class Stream : std::uint8_t { Stdout, Stderr, Both };
// What a fired pattern asks for: the core's vocabulary (it decides what each one means).
using PatternAction = core::PatternAction;

struct PatternSpec {
    std::string match; // PCRE2 syntax; validated (compiled) at load
    Stream stream = Stream::Both;
    PatternAction action = PatternAction::Event;
    unsigned count = 1;             // this many matches ...
    std::optional<Duration> within; // ... within this window (none: ever)
    int line = 0, column = 0;       // where `match` was written, for messages
};

enum class ProbeKind : std::uint8_t { Exec, Tcp, Http };

struct ProbeSpec {
    ProbeKind kind = ProbeKind::Exec;
    std::vector<std::string> command;           // exec
    std::string host = "127.0.0.1";             // tcp, http
    int port = 0;                               // tcp, http
    std::string path = "/";                     // http
    std::map<std::string, std::string> headers; // http
    Duration initial_delay{0};
    Duration period{10'000};
    Duration timeout{1'000};
    unsigned failure_threshold = 3;
    unsigned success_threshold = 1;
};

struct ReadySpec {
    bool notify = false;            // NOTIFY_SOCKET (sd_notify READY=1)
    std::optional<int> fd;          // s6/dinit: a newline written to this fd
    std::optional<std::string> log; // a line matching this regex
    Boxed<ProbeSpec> probe;         // a probe that succeeds
    Duration timeout{90'000};       // start timeout (also in core::ChildSpec::start_timeout)
    bool any() const { return notify || fd || log || probe; }
};

// One socket vigild opens and holds for a service (`listen`), passed to every incarnation of
// every instance by systemd's socket-activation protocol: fd 3.. in listed order, LISTEN_FDS,
// LISTEN_PID (the service's own pid) and LISTEN_FDNAMES. The loader checks everything that can be
// checked without binding: the address's syntax, the port (1..65535), a unix path's form and
// length (sun_path), no two entries of one unit, nor of two unit files, on the same address.
// Binding (and the unix directory's safety) is the daemon's (src/daemon/listen.hpp).
enum class ListenKind : std::uint8_t { Tcp, Udp, Unix };
struct ListenSpec {
    ListenKind kind = ListenKind::Tcp;
    // As written: "0.0.0.0:8080", "[::]:8080", "/run/web.sock". host without brackets, and port,
    // for tcp and udp (the host is a numeric IPv4 or IPv6 address: binding resolves no name).
    std::string address;
    std::string host;
    int port = 0;
    std::string name;       // the LISTEN_FDNAMES entry: 1-255 of [A-Za-z0-9_.-]; default the file's
    int backlog = 4096;     // tcp and unix: listen()'s backlog (the kernel caps it at somaxconn)
    bool reuseport = false; // each instance its own socket, bound with SO_REUSEPORT
    unsigned mode = 0666;   // unix: the socket file's permissions
    std::optional<std::string> owner, group; // unix: as written (names or ids) ...
    std::optional<std::uint32_t> uid, gid;   // ... and resolved at load
    std::size_t item = 0;                    // its index in the unit's `listen`, for messages
    // Identity of the socket: entries with the same key are one socket (the unit file's, or with
    // reuseport the instance's). Options that can change on a held socket (backlog) are not in it.
    std::string key() const;
    // "tcp 0.0.0.0:8080", "unix /run/web.sock": how messages name the entry.
    std::string describe() const;
};

// Everything about node i that is not supervision policy.
struct Unit {
    std::string name;
    std::string file; // the unit file, empty for an implicit root
    std::string description;
    std::vector<std::string> after; // sibling unit names as written (for render and reload)
    proc::SpawnSpec spawn;          // services only
    LogSpec logs;
    ReadySpec ready;
    Boxed<ProbeSpec> liveness, readiness, startup; // few units declare one: see boxed.hpp
    std::optional<Duration> watchdog;
    std::vector<PatternSpec> patterns;
    std::vector<ListenSpec> listen; // at most bounds::max_listen
};

struct LoadResult {
    core::TreeSpec tree;     // tree.nodes[0] is root
    std::vector<Unit> units; // aligned with tree.nodes
    std::vector<Diagnostic> diagnostics;
    // How many problems were found: diagnostics holds at most bounds::max_diagnostics of them,
    // and then one more line that says how many were not shown.
    std::size_t problems = 0;
    bool ok() const { return diagnostics.empty(); }
};

// "1 problem", "5171 problems".
std::string count_problems(std::size_t n);

// Loads every *.json file in `dir` (sorted by name, so diagnostics come in a stable order).
// `dir` itself may be a symlink; the files in it may not.
LoadResult load_dir(const std::filesystem::path &dir);

// The loader's vocabulary, for what must agree with it (the JSON Schema
// docs/vigil.unit.schema.json, checked by tests/unit/schema_test.cpp). These are the tables the
// loader validates against, not copies.
// known_fields(): object kind -> every field name the loader accepts in it. Kinds: "service",
// "supervisor", "root" (a unit file's top level, root.json's for "root"), "stop", "limits"
// (limit names), "limit" (a limit given as {soft, hard}), "backoff", "logs", "ready", "probe",
// "tcp", "http" (a probe's methods), "pattern" (an item of `patterns`) and "listen" (an item of
// `listen`). A supervisor's
// `stop` accepts the "stop" names but rejects "signal" with an explanation.
// known_values(): enumerated field -> its spellings: "kind", "restart", "strategy",
// "auto_shutdown", "stream" and "action" (the last two of a `patterns` item).
std::map<std::string, std::vector<std::string>> known_fields();
std::map<std::string, std::vector<std::string>> known_values();

// The resolved tree for `vigild --check`: supervisors with their children in start order and
// the effective values of every policy field (defaults included).
std::string render_tree(const LoadResult &r);

// Durations ("250ms", "10s", "5m", "1h", "1m30s"; at most bounds::max_duration, 365d) and
// sizes ("64KiB", "10MiB", "512", "1G"; at most 2^64-1 bytes). Each field has its own, lower
// bound (bounds.hpp), which the loader checks.
std::optional<Duration> parse_duration(std::string_view s);
std::optional<std::uint64_t> parse_size(std::string_view s);

} // namespace vigil::unit

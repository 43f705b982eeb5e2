// handover.hpp: what one vigild hands to the binary it executes (`vigilctl reexec`), so that
// the new binary carries on with every service keeping its pid, its pipes and its history.
//
// The state travels in a sealed memfd whose descriptor number is in the environment
// (VIGIL_REEXEC_STATE); the descriptors it names (services' pipes, notify sockets, ready fds,
// pidfds of MAINPID= processes, held `listen` sockets, the control and HTTP listeners, the
// cgroup folder's lock, the requesting client's connection) stay open across execve because
// the old binary cleared their close-on-exec flag just before it.
//
// Two layers, so that a binary that cannot read the state still does the right thing:
//  - the envelope, whose format never changes (handover_envelope_version stays 1): the
//    payload's version, every descriptor carried, every service's process group and cgroup,
//    and the requesting client. A binary that refuses the payload closes the descriptors,
//    stops those services (their process groups and cgroups: they are its children, but their
//    units are not known to it) and starts the tree cleanly, and tells the client why.
//  - the payload, versioned (handover_payload_version, bumped whenever its layout changes): the
//    core's snapshot (its own version inside), then the shell's tables. A reader refuses any
//    payload version but its own; nothing is adopted before the whole state has been read and
//    checked, so a state is never half adopted.
// Layout: native byte order (the bytes never leave the machine), fixed-width integers, strings
// as u32 length + bytes. Envelope: "VIGILRX\0", u32 envelope version, u32 payload version, i32
// requester fd, string requester id (JSON text), u32 n + i32 fds[n], u32 n + {i32 process
// group, string cgroup folder}[n], u64 payload length, u64 payload checksum, payload. Every
// count and length is bounded (handover_max_*); decode() refuses anything over a bound,
// truncated, trailing or inconsistent (a payload descriptor the envelope does not list, one
// listed twice) with an error that says what.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "vigil/probe/monitor.hpp"
#include "vigil/unit/unit.hpp"

namespace vigil::daemon {

inline constexpr std::uint32_t handover_envelope_version = 1;
inline constexpr std::uint32_t handover_payload_version = 3;
inline constexpr const char *handover_env = "VIGIL_REEXEC_STATE";
inline constexpr std::uint64_t handover_max_bytes = std::uint64_t{1} << 31;
inline constexpr std::uint32_t handover_max_count = 1u << 20; // units, fds, runs, groups
inline constexpr std::uint32_t handover_max_string = 64u << 20;

// One incarnation of a unit (UnitRuntime::run, or one of `past`).
struct HandoverRun {
    std::uint64_t incarnation = 0;
    std::int32_t pid = -1, main_pid = -1, main_pidfd = -1;
    bool reaped = false, drained = false, ready_sent = false, probes = false;
    std::int32_t out_fd = -1, err_fd = -1; // -1: at EOF (or never captured)
    std::string out_pending, err_pending;  // a partial line of each stream
    std::int32_t ready_fd = -1;            // still waiting for the service's newline
    std::uint64_t watchdog_pings = 0, watchdog_failures = 0;
    std::int64_t watchdog_kick_ms = 0;
    probe::MonitorState probe_state; // where its probes were, when `probes`
};

struct HandoverFailure {
    std::uint8_t slot = 0;
    std::int64_t wall_ms = 0;
    std::string message;
};

// A unit's runtime (runtime.hpp's UnitRuntime), by ChildId.
struct HandoverUnit {
    std::uint32_t id = 0;
    std::string name;
    bool has_log = false;
    std::string ring; // log::Ring::snapshot
    std::int32_t notify_fd = -1;
    std::string notify_path;
    std::string cgroup; // its folder, "" without one
    std::uint64_t probe_failures = 0, log_failures_reported = 0;
    std::vector<HandoverFailure> failures;
    std::vector<std::int32_t> recent_groups;
    bool has_run = false;
    std::vector<HandoverRun> runs; // the current one first when has_run, then `past`
};

struct HandoverProcess {
    std::int32_t pid = 0;
    std::uint32_t child = 0;
    std::uint64_t incarnation = 0;
};

struct HandoverSocket {
    std::string key; // the held socket's key (listening.cpp)
    std::int32_t fd = -1;
};

struct HandoverSession {
    std::int32_t fd = -1;
    std::string pending; // a request line sent in part
};

struct HandoverService {
    std::int32_t pgid = 0;
    std::string cgroup;
};

struct Handover {
    // ---- envelope ----
    std::uint32_t payload_version = handover_payload_version;
    std::int32_t requester_fd = -1;
    std::string requester_id = "null"; // the request's id, as JSON
    std::vector<std::int32_t> fds;     // every descriptor carried
    std::vector<HandoverService> services;
    // ---- payload ----
    std::uint64_t generation = 0;     // how many re-execs came before this one
    std::int64_t exec_started_ns = 0; // CLOCK_MONOTONIC when the old binary began the exec
    std::vector<std::uint8_t> core;   // core::Core::snapshot
    std::uint64_t log_seq_next = 1, orphans_reaped = 0;
    bool has_service_nofile = false;
    std::uint64_t service_nofile_cur = 0, service_nofile_max = 0;
    std::vector<HandoverUnit> units;
    std::vector<HandoverProcess> processes;
    std::vector<std::uint32_t> group_waits;
    std::vector<HandoverSocket> held;
    std::int32_t control_fd = -1, http_fd = -1;
    std::vector<HandoverSession> sessions; // control connections taken on as they are
    std::string cgroup_root;
    std::int32_t cgroup_lock_fd = -1;
    // The old binary's event loop (its epoll instance), carried only to be closed by the new
    // one once the clients that waited during the exec have their answers: closing it costs
    // the kernel a few microseconds per descriptor it watched, which would otherwise be paid
    // inside the exec, while nothing is answered.
    std::int32_t retired_fd = -1;
    // The old binary's build (its GNU build ID, hex; "" when it has none) and, when it has one,
    // the units as it loaded them for this re-exec (the unit files as they are, checked to be
    // what runs): a new binary of the same build takes them instead of reading the files
    // again, which would otherwise be most of the pause (units_codec.hpp).
    std::string build_id;
    bool has_loaded = false; // in the new binary, once run.cpp chose: the units were taken
    unit::LoadResult loaded;
};

// The state's bytes: handover_size() counts them, encode_handover_into() writes exactly that
// many into `buf` (into a mapping of the memfd the new binary reads: no copy on a heap);
// encode_handover() returns them as a string.
std::size_t handover_size(const Handover &h);
void encode_handover_into(const Handover &h, char *buf, std::size_t size);
std::string encode_handover(const Handover &h);

struct HandoverRead {
    // Whatever the envelope said (also when the payload was refused): what a binary that
    // cannot adopt the state still needs.
    bool envelope_read = false;
    Handover state;            // only the envelope's fields unless `adopted`
    bool payload_read = false; // the whole state was read and checked
    std::string error;         // "reexec state: <what was wrong>"
};
HandoverRead decode_handover(std::string_view bytes,
                             std::uint32_t payload_version = handover_payload_version);

} // namespace vigil::daemon

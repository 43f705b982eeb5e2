// handover.cpp: see handover.hpp.
#include "handover.hpp"

#include <cstring>
#include <set>
#include <stdexcept>

#include "../core/snapshot_format.hpp"
#include "units_codec.hpp"
#include "wire.hpp"

namespace vigil::daemon {

namespace {

using wire::Reader;
using wire::Refused;
using wire::Writer;

constexpr char magic[8] = {'V', 'I', 'G', 'I', 'L', 'R', 'X', '\0'};

void put_run(Writer &w, const HandoverRun &r) {
    w.num(r.incarnation);
    w.num(r.pid);
    w.num(r.main_pid);
    w.num(r.main_pidfd);
    w.flag(r.reaped);
    w.flag(r.drained);
    w.flag(r.ready_sent);
    w.flag(r.probes);
    w.num(r.out_fd);
    w.num(r.err_fd);
    w.str(r.out_pending);
    w.str(r.err_pending);
    w.num(r.ready_fd);
    w.num(r.watchdog_pings);
    w.num(r.watchdog_failures);
    w.num(r.watchdog_kick_ms);
    w.flag(r.probe_state.started);
    w.flag(r.probe_state.ready);
    for (const auto *p :
         {&r.probe_state.startup, &r.probe_state.liveness, &r.probe_state.readiness}) {
        w.flag(p->has_value());
        if (!*p) continue;
        const probe::ProberState &ps = **p;
        w.num(static_cast<std::uint32_t>(ps.failures));
        w.num(static_cast<std::uint32_t>(ps.successes));
        w.num(static_cast<std::uint8_t>(ps.verdict));
        w.num(ps.run);
        w.flag(ps.run_ok);
        w.num(ps.tally_successes);
        w.num(ps.tally_failures);
        w.num(ps.checks_total);
        w.num(ps.failures_total);
        w.num(ps.next_due_ms);
    }
}

HandoverRun get_run(Reader &r) {
    HandoverRun x;
    x.incarnation = r.num<std::uint64_t>("run incarnation");
    x.pid = r.num<std::int32_t>("run pid");
    x.main_pid = r.num<std::int32_t>("run main pid");
    x.main_pidfd = r.num<std::int32_t>("run main pidfd");
    x.reaped = r.flag("run reaped");
    x.drained = r.flag("run drained");
    x.ready_sent = r.flag("run ready");
    x.probes = r.flag("run probes");
    x.out_fd = r.num<std::int32_t>("run stdout");
    x.err_fd = r.num<std::int32_t>("run stderr");
    x.out_pending = r.str("run stdout partial line");
    x.err_pending = r.str("run stderr partial line");
    x.ready_fd = r.num<std::int32_t>("run ready fd");
    x.watchdog_pings = r.num<std::uint64_t>("run watchdog pings");
    x.watchdog_failures = r.num<std::uint64_t>("run watchdog failures");
    x.watchdog_kick_ms = r.num<std::int64_t>("run watchdog kick");
    x.probe_state.started = r.flag("probes started");
    x.probe_state.ready = r.flag("probes ready");
    for (auto *p : {&x.probe_state.startup, &x.probe_state.liveness, &x.probe_state.readiness}) {
        if (!r.flag("prober present")) continue;
        probe::ProberState ps;
        ps.failures = r.num<std::uint32_t>("prober failures");
        ps.successes = r.num<std::uint32_t>("prober successes");
        const auto verdict = r.num<std::uint8_t>("prober verdict");
        if (verdict > static_cast<std::uint8_t>(probe::Verdict::Failure))
            throw Refused("unknown prober verdict");
        ps.verdict = static_cast<probe::Verdict>(verdict);
        ps.run = r.num<std::uint32_t>("prober run");
        ps.run_ok = r.flag("prober run ok");
        ps.tally_successes = r.num<std::uint64_t>("prober successes");
        ps.tally_failures = r.num<std::uint64_t>("prober failures");
        ps.checks_total = r.num<std::uint64_t>("prober checks");
        ps.failures_total = r.num<std::uint64_t>("prober failed checks");
        ps.next_due_ms = r.num<std::uint64_t>("prober next check");
        *p = ps;
    }
    return x;
}

void put_unit(Writer &w, const HandoverUnit &u) {
    w.num(u.id);
    w.str(u.name);
    w.flag(u.has_log);
    w.str(u.ring);
    w.num(u.notify_fd);
    w.str(u.notify_path);
    w.str(u.cgroup);
    w.num(u.probe_failures);
    w.num(u.log_failures_reported);
    w.list(u.failures, [&](const HandoverFailure &f) {
        w.num(f.slot);
        w.num(f.wall_ms);
        w.str(f.message);
    });
    w.list(u.recent_groups, [&](std::int32_t g) { w.num(g); });
    w.flag(u.has_run);
    w.list(u.runs, [&](const HandoverRun &r) { put_run(w, r); });
}

HandoverUnit get_unit(Reader &r) {
    HandoverUnit u;
    u.id = r.num<std::uint32_t>("unit id");
    u.name = r.str("unit name");
    u.has_log = r.flag("unit log");
    u.ring = r.str("unit ring");
    u.notify_fd = r.num<std::int32_t>("unit notify fd");
    u.notify_path = r.str("unit notify path");
    u.cgroup = r.str("unit cgroup");
    u.probe_failures = r.num<std::uint64_t>("unit probe failures");
    u.log_failures_reported = r.num<std::uint64_t>("unit log failures");
    for (std::uint32_t n = r.count("unit check failures"); n > 0; --n) {
        HandoverFailure f;
        f.slot = r.num<std::uint8_t>("check failure slot");
        f.wall_ms = r.num<std::int64_t>("check failure time");
        f.message = r.str("check failure message");
        u.failures.push_back(std::move(f));
    }
    for (std::uint32_t n = r.count("unit recent groups"); n > 0; --n)
        u.recent_groups.push_back(r.num<std::int32_t>("recent group"));
    u.has_run = r.flag("unit has run");
    for (std::uint32_t n = r.count_into(u.runs, "unit runs", 16); n > 0; --n)
        u.runs.push_back(get_run(r));
    if (u.has_run && u.runs.empty()) throw Refused("unit " + u.name + ": a current run, no runs");
    return u;
}

void encode_payload(Writer &w, const Handover &h) {
    w.num(h.generation);
    w.num(h.exec_started_ns);
    w.str(std::string_view(reinterpret_cast<const char *>(h.core.data()), h.core.size()));
    w.num(h.log_seq_next);
    w.num(h.orphans_reaped);
    w.flag(h.has_service_nofile);
    w.num(h.service_nofile_cur);
    w.num(h.service_nofile_max);
    w.list(h.units, [&](const HandoverUnit &u) { put_unit(w, u); });
    w.list(h.processes, [&](const HandoverProcess &x) {
        w.num(x.pid);
        w.num(x.child);
        w.num(x.incarnation);
    });
    w.list(h.group_waits, [&](std::uint32_t g) { w.num(g); });
    w.list(h.held, [&](const HandoverSocket &s) {
        w.str(s.key);
        w.num(s.fd);
    });
    w.num(h.control_fd);
    w.num(h.http_fd);
    w.list(h.sessions, [&](const HandoverSession &s) {
        w.num(s.fd);
        w.str(s.pending);
    });
    w.str(h.cgroup_root);
    w.num(h.cgroup_lock_fd);
    w.num(h.retired_fd);
    w.str(h.build_id);
    w.flag(h.has_loaded);
    if (h.has_loaded) put_loaded(w, h.loaded);
}

void decode_payload(Reader &r, Handover &h) {
    h.generation = r.num<std::uint64_t>("generation");
    h.exec_started_ns = r.num<std::int64_t>("exec start");
    const std::string_view core = r.view("core snapshot");
    h.core.assign(core.begin(), core.end());
    h.log_seq_next = r.num<std::uint64_t>("log sequence");
    h.orphans_reaped = r.num<std::uint64_t>("orphans");
    h.has_service_nofile = r.flag("service nofile");
    h.service_nofile_cur = r.num<std::uint64_t>("service nofile");
    h.service_nofile_max = r.num<std::uint64_t>("service nofile");
    for (std::uint32_t n = r.count_into(h.units, "units", 16); n > 0; --n)
        h.units.push_back(get_unit(r));
    for (std::uint32_t n = r.count_into(h.processes, "processes", 16); n > 0; --n) {
        HandoverProcess x;
        x.pid = r.num<std::int32_t>("process pid");
        x.child = r.num<std::uint32_t>("process child");
        x.incarnation = r.num<std::uint64_t>("process incarnation");
        h.processes.push_back(x);
    }
    for (std::uint32_t n = r.count("group waits"); n > 0; --n)
        h.group_waits.push_back(r.num<std::uint32_t>("group wait"));
    for (std::uint32_t n = r.count("held sockets"); n > 0; --n) {
        HandoverSocket s;
        s.key = r.str("held socket key");
        s.fd = r.num<std::int32_t>("held socket fd");
        h.held.push_back(std::move(s));
    }
    h.control_fd = r.num<std::int32_t>("control fd");
    h.http_fd = r.num<std::int32_t>("http fd");
    for (std::uint32_t n = r.count("control connections"); n > 0; --n) {
        HandoverSession s;
        s.fd = r.num<std::int32_t>("control connection");
        s.pending = r.str("control connection input");
        h.sessions.push_back(std::move(s));
    }
    h.cgroup_root = r.str("cgroup root");
    h.cgroup_lock_fd = r.num<std::int32_t>("cgroup lock fd");
    h.retired_fd = r.num<std::int32_t>("retired loop fd");
    h.build_id = r.str("build id");
    h.has_loaded = r.flag("units carried");
    if (h.has_loaded) h.loaded = get_loaded(r);
    if (!r.done()) throw Refused("trailing bytes after the payload");
}

// Every descriptor the payload names is one the envelope lists, and none is named twice.
void check_fds(const Handover &h) {
    const std::set<std::int32_t> listed(h.fds.begin(), h.fds.end());
    if (listed.size() != h.fds.size()) throw Refused("a descriptor listed twice");
    std::set<std::int32_t> named;
    auto name = [&](std::int32_t fd, const char *what) {
        if (fd < 0) return;
        if (!listed.count(fd))
            throw Refused(std::string(what) + " " + std::to_string(fd) +
                          " is not among the descriptors carried");
        if (!named.insert(fd).second)
            throw Refused(std::string(what) + " " + std::to_string(fd) + " named twice");
    };
    for (const HandoverUnit &u : h.units) {
        name(u.notify_fd, "notify socket");
        for (const HandoverRun &r : u.runs) {
            name(r.main_pidfd, "pidfd");
            name(r.out_fd, "stdout pipe");
            name(r.err_fd, "stderr pipe");
            name(r.ready_fd, "ready fd");
        }
    }
    for (const HandoverSocket &s : h.held)
        name(s.fd, "held socket");
    name(h.control_fd, "control socket");
    name(h.http_fd, "HTTP socket");
    for (const HandoverSession &s : h.sessions)
        name(s.fd, "control connection");
    name(h.cgroup_lock_fd, "cgroup lock");
    name(h.retired_fd, "retired loop");
    name(h.requester_fd, "client connection");
}

} // namespace

namespace {

// The envelope, then the payload; the payload's length and checksum are left 0 (the caller
// fills them in). Returns where the length is (the checksum follows it, then the payload).
std::size_t put_handover(Writer &w, const Handover &h) {
    w.raw(std::string_view(magic, sizeof magic));
    w.num(handover_envelope_version);
    w.num(h.payload_version);
    w.num(h.requester_fd);
    w.str(h.requester_id);
    w.list(h.fds, [&](std::int32_t fd) { w.num(fd); });
    w.list(h.services, [&](const HandoverService &s) {
        w.num(s.pgid);
        w.str(s.cgroup);
    });
    const std::size_t length_at = w.size();
    w.num(std::uint64_t{0});
    w.num(std::uint64_t{0});
    encode_payload(w, h);
    return length_at;
}

} // namespace

std::size_t handover_size(const Handover &h) {
    Writer count;
    put_handover(count, h);
    return count.size();
}

void encode_handover_into(const Handover &h, char *buf, std::size_t size) {
    Writer w(buf, size);
    const std::size_t length_at = put_handover(w, h);
    if (w.size() != size) throw std::length_error("the state is not the size it was counted");
    const std::size_t payload_at = length_at + 2 * sizeof(std::uint64_t);
    const std::uint64_t length = size - payload_at;
    const std::uint64_t sum = core::snapshot_frame::checksum(
        reinterpret_cast<const std::uint8_t *>(buf + payload_at), length);
    std::memcpy(buf + length_at, &length, sizeof length);
    std::memcpy(buf + length_at + sizeof length, &sum, sizeof sum);
}

std::string encode_handover(const Handover &h) {
    std::string out(handover_size(h), '\0');
    encode_handover_into(h, out.data(), out.size());
    return out;
}

HandoverRead decode_handover(std::string_view bytes, std::uint32_t payload_version) {
    HandoverRead out;
    Handover &h = out.state;
    try {
        if (bytes.size() > handover_max_bytes) throw Refused("larger than its bound");
        Reader r(bytes);
        if (r.take(sizeof magic, "magic") != std::string_view(magic, sizeof magic))
            throw Refused("not a vigild state (bad magic)");
        if (r.num<std::uint32_t>("envelope version") != handover_envelope_version)
            throw Refused("unknown envelope version");
        h.payload_version = r.num<std::uint32_t>("payload version");
        h.requester_fd = r.num<std::int32_t>("client fd");
        h.requester_id = r.str("client request id");
        for (std::uint32_t n = r.count("descriptors"); n > 0; --n)
            h.fds.push_back(r.num<std::int32_t>("descriptor"));
        for (std::uint32_t n = r.count("services"); n > 0; --n) {
            HandoverService s;
            s.pgid = r.num<std::int32_t>("service group");
            s.cgroup = r.str("service cgroup");
            h.services.push_back(std::move(s));
        }
        const auto length = r.num<std::uint64_t>("payload length");
        const auto sum = r.num<std::uint64_t>("payload checksum");
        const std::string_view payload = r.take(length, "payload");
        if (!r.done()) throw Refused("trailing bytes after the payload");
        out.envelope_read = true;
        if (h.payload_version != payload_version)
            throw Refused("format version " + std::to_string(h.payload_version) +
                          ", this vigild reads version " + std::to_string(payload_version));
        if (core::snapshot_frame::checksum(reinterpret_cast<const std::uint8_t *>(payload.data()),
                                           payload.size()) != sum)
            throw Refused("checksum mismatch");
        Reader pr(payload);
        decode_payload(pr, h);
        check_fds(h);
        out.payload_read = true;
    } catch (const std::exception &e) {
        out.error = std::string("reexec state: ") + e.what();
    }
    return out;
}

} // namespace vigil::daemon

// reexec_test.cpp: a re-exec of vigild through the fake OS: the state's format (handover.hpp)
// and what the shell carries and takes back (reexec.cpp). The old shell's state goes to a
// second shell on a second fake OS that shares the first one's processes and clock, as the new
// binary shares the old one's kernel.
#include <doctest/doctest.h>

#include "fake_os.hpp"

using namespace vigil;
using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

const std::string slow = R"({"command": ["/bin/true"], "backoff": {"initial": "3s",
                             "jitter": 0}})";

daemon::Handover sample() {
    daemon::Handover h;
    h.requester_fd = 9;
    h.requester_id = "7";
    h.fds = {9, 10, 11, 12, 13, 14};
    h.services = {{100, "/sys/fs/cgroup/vigil.1/web"}, {101, ""}};
    h.generation = 3;
    h.core = {1, 2, 3, 4, 5};
    h.log_seq_next = 42;
    daemon::HandoverUnit u;
    u.id = 1;
    u.name = "web";
    u.has_log = true;
    u.ring = "ring bytes";
    u.notify_fd = 10;
    u.notify_path = "/run/vigil-notify/web.sock";
    u.failures = {{1, 1234, "status 500"}};
    u.recent_groups = {100};
    u.has_run = true;
    daemon::HandoverRun r;
    r.incarnation = 2;
    r.pid = r.main_pid = 100;
    r.out_fd = 11;
    r.err_fd = 12;
    r.out_pending = "half a li";
    u.runs.push_back(r);
    h.units.push_back(u);
    h.processes = {{100, 1, 2}};
    h.held = {{"tcp 0.0.0.0:80", 13}};
    h.retired_fd = 14;
    return h;
}

// Runs a re-exec in `h` up to the exec, which the fake refuses; the state it would have
// carried is in h.os.exec_handover. Returns why it "failed".
std::string reexec_until_exec(Harness &h, const std::map<std::string, std::string> &units) {
    std::string why;
    h.shell->reexec("test", {[] { return 9; }, "7"}, [&](const std::string &w) { why = w; });
    REQUIRE(h.os.loading());
    h.os.next_load = load_units(units);
    h.os.finish_load();
    if (!why.empty()) return why;
    REQUIRE(h.os.idle_waits.size() == 1);
    auto idle = std::move(h.os.idle_waits.front());
    h.os.idle_waits.clear();
    idle(true);
    return why;
}

// The new binary of a re-exec: a fake OS that shares `h`'s kernel (processes, clock) with new
// handles, and a shell made Adopting from `units` as the files give them (`loaded.tree` is
// what adopt() takes).
struct NewBinary {
    FakeOs os;
    unit::LoadResult loaded;
    std::unique_ptr<daemon::Shell> shell;
    NewBinary(Harness &h, const std::map<std::string, std::string> &units)
        : loaded(load_units(units)) {
        os.share_kernel(h.os);
        shell = std::make_unique<daemon::Shell>(os, h.opts, std::move(loaded.units), loaded.tree,
                                                daemon::Shell::Adopting{});
        os.shell = shell.get();
    }
    NewBinary(const NewBinary &) = delete;
    NewBinary &operator=(const NewBinary &) = delete;
    ~NewBinary() { os.shell = nullptr; }
};

} // namespace

TEST_SUITE("daemon") {

    TEST_CASE("the re-exec state reads back as it was written, and nothing else is taken") {
        const daemon::Handover h = sample();
        const std::string bytes = daemon::encode_handover(h);
        daemon::HandoverRead r = daemon::decode_handover(bytes);
        REQUIRE_MESSAGE(r.payload_read, r.error);
        CHECK(r.state.fds == h.fds);
        CHECK(r.state.generation == 3);
        REQUIRE(r.state.units.size() == 1);
        CHECK(r.state.units[0].runs[0].out_pending == "half a li");
        CHECK(r.state.units[0].failures[0].message == "status 500");
        CHECK(r.state.held[0].key == "tcp 0.0.0.0:80");
        CHECK(r.state.retired_fd == 14);
        CHECK(r.state.services[0].cgroup == "/sys/fs/cgroup/vigil.1/web");
        // Every truncation is refused.
        for (std::size_t n = 0; n < bytes.size(); ++n)
            CHECK_FALSE(daemon::decode_handover(std::string_view(bytes).substr(0, n)).payload_read);
        // A flipped byte in the payload: the envelope is read (the services can be stopped),
        // the payload is not.
        std::string flipped = bytes;
        flipped[bytes.size() - 3] ^= 0x40;
        daemon::HandoverRead f = daemon::decode_handover(flipped);
        CHECK(f.envelope_read);
        CHECK_FALSE(f.payload_read);
        CHECK(f.error.find("checksum") != std::string::npos);
        // Another format version: refused whole, the envelope still read.
        daemon::HandoverRead v =
            daemon::decode_handover(bytes, daemon::handover_payload_version + 1);
        CHECK(v.envelope_read);
        CHECK_FALSE(v.payload_read);
        CHECK(v.error.find("format version " + std::to_string(daemon::handover_payload_version)) !=
              std::string::npos);
        CHECK(v.state.services.size() == 2);
        CHECK(v.state.requester_fd == 9);
        // A descriptor the envelope does not list.
        daemon::Handover bad = h;
        bad.fds.pop_back();
        CHECK(daemon::decode_handover(daemon::encode_handover(bad))
                  .error.find("not among the descriptors") != std::string::npos);
        bad = h;
        bad.units[0].runs[0].err_fd = 11;
        CHECK(daemon::decode_handover(daemon::encode_handover(bad)).error.find("named twice") !=
              std::string::npos);
    }

    TEST_CASE("the units carried across a re-exec read back exactly as they were loaded") {
        // Every field the loader fills, with a value other than its default where it can have
        // one: the whole state is written again from what was read and must be the same bytes
        // (a field written but not read, or read into another, changes them).
        const std::map<std::string, std::string> files = {
            {"root", R"({"strategy": "one_for_all", "intensity": 7, "period": "45s",
                              "auto_shutdown": "any_significant"})"},
            {"web", R"({
              "description": "web front end", "command": ["python3", "-m", "http.server"],
              "cwd": "/srv", "env": {"A": "1", "B": "two"}, "env_file": "-/etc/default/web",
              "user": "nobody", "group": "nogroup", "umask": "0027",
              "limits": {"nofile": 4096, "core": {"soft": 0, "hard": "infinity"}},
              "restart": "transient", "significant": true,
              "backoff": {"initial": "250ms", "max": "1m", "factor": 1.5, "jitter": 0.1,
                          "reset_after": "5m"},
              "stop": {"signal": "SIGINT", "timeout": "30s"},
              "ready": {"notify": true, "log": "^Serving", "timeout": "20s"},
              "liveness": {"http": {"port": 8080, "path": "/healthz",
                                    "headers": {"Host": "localhost"}},
                           "initial_delay": "5s", "period": "10s", "timeout": "2s",
                           "failure_threshold": 4},
              "readiness": {"tcp": {"host": "::1", "port": 8080}, "success_threshold": 2},
              "startup": {"exec": ["true"], "failure_threshold": 30},
              "watchdog": "30s",
              "logs": {"forward": false, "file": "/var/log/web.log", "max_size": "1MiB",
                       "keep": 3, "timestamps": true, "ring": "128KiB", "max_line": "4KiB"},
              "patterns": [{"match": "OOM", "action": "restart"},
                           {"match": "slow \\d+", "stream": "stderr", "action": "unhealthy",
                            "count": 5, "within": "1m"}]})"},
            {"api", R"({
              "command": ["/bin/api"], "after": ["web"], "instances": 2, "update": "rolling",
              "max_unavailable": 2, "stop": {"drain": "2s"},
              "ready": {"fd": 7, "probe": {"tcp": {"port": 9000}}},
              "logs": {"stderr": "stdout"},
              "listen": [{"tcp": "[::]:8443", "name": "tls", "backlog": 128, "reuseport": true},
                         {"unix": "/run/api.sock", "mode": "0660", "owner": 0,
                          "group": "root"}]})"},
            {"jobs", R"({"kind": "supervisor", "strategy": "rest_for_one",
                              "parallel": true, "stop": {"timeout": "infinity"}})"},
            {"job", R"({"parent": "jobs", "command": ["true"], "restart": "temporary",
                             "stop": {"signal": "SIGKILL"}})"},
        };
        daemon::Handover h = sample();
        h.build_id = "0123abcd";
        h.has_loaded = true;
        h.loaded = load_units(files);
        REQUIRE_MESSAGE(h.loaded.ok(), h.loaded.diagnostics.front().message);
        const std::string bytes = daemon::encode_handover(h);
        daemon::HandoverRead r = daemon::decode_handover(bytes);
        REQUIRE_MESSAGE(r.payload_read, r.error);
        CHECK(r.state.build_id == "0123abcd");
        REQUIRE(r.state.has_loaded);
        CHECK(daemon::encode_handover(r.state) == bytes);
        CHECK(unit::render_tree(r.state.loaded) == unit::render_tree(h.loaded));
        REQUIRE(r.state.loaded.units.size() == h.loaded.units.size());
        for (std::size_t i = 0; i < h.loaded.units.size(); ++i)
            CHECK(r.state.loaded.tree.nodes[i].fingerprint == h.loaded.tree.nodes[i].fingerprint);
        // The fields that default to "none" were given: the test covers what it says.
        bool web = false;
        for (const unit::Unit &u : h.loaded.units)
            if (u.name == "web") {
                web = true;
                CHECK(u.spawn.identity.has_value());
                CHECK(u.liveness.has_value());
                CHECK(u.patterns.size() == 2);
            }
        CHECK(web);
        // A unit carried with a broken tree is refused, not adopted.
        daemon::Handover bad = h;
        bad.loaded.tree.nodes[1].parent = ChildId{999};
        CHECK(
            daemon::decode_handover(daemon::encode_handover(bad)).error.find("outside the tree") !=
            std::string::npos);
        bad = h;
        bad.loaded.units.pop_back();
        CHECK(daemon::decode_handover(daemon::encode_handover(bad))
                  .error.find("do not match their tree") != std::string::npos);
    }

    TEST_CASE("reexec is refused while it cannot carry everything, and vigild goes on") {
        const std::map<std::string, std::string> units{{"a", svc}, {"b", svc}};
        Harness h(units);
        const int pid = h.pid("a");
        // The unit files changed since they were loaded.
        auto changed = units;
        changed["b"] = R"({"command": ["/bin/false"]})";
        changed["c"] = svc;
        const std::string why = reexec_until_exec(h, changed);
        CHECK(why.find("b (changed)") != std::string::npos);
        CHECK(why.find("c (added)") != std::string::npos);
        CHECK(why.find("vigilctl reload") != std::string::npos);
        CHECK_FALSE(h.os.exec_handover);
        CHECK(h.os.exec_steps.empty()); // refused before the export: no stand-in either
        // A reload under way.
        h.shell->reload("test", nullptr);
        std::string during;
        h.shell->reexec("test", {}, [&](const std::string &w) { during = w; });
        CHECK(during.find("reload is under way") != std::string::npos);
        h.os.next_load = load_units(units);
        h.os.finish_load();
        // The exec itself fails: the reason comes back, and everything goes on; the stand-in
        // began before the export and gave its connections back.
        CHECK(reexec_until_exec(h, units).find("Exec format error") != std::string::npos);
        CHECK(h.os.exec_steps == std::vector<std::string>{"stand-in", "exec", "taken back"});
        CHECK(h.pid("a") == pid);
        CHECK(h.os.has_journal("reexec did not happen"));
        // Refused before: a second re-exec is allowed again.
        CHECK(reexec_until_exec(h, units).find("Exec format error") != std::string::npos);
    }

    TEST_CASE("a re-exec carries every service, its lines and partial line, and its deadlines") {
        const std::map<std::string, std::string> units{
            {"a", svc}, {"b", slow}, {"n", R"({"command": ["/bin/true"],
                                               "ready": {"notify": true}})"}};
        Harness h(units);
        const int a = h.pid("a");
        h.os.write(a, log::Stream::Stdout, "first");
        h.os.write(a, log::Stream::Stdout, "second");
        h.os.deliver();
        h.os.outputs[static_cast<std::size_t>(h.os.procs.at(a).output)].partial = "thi";
        h.os.exit(h.pid("b"), 1); // b waits 3 s in backoff
        h.os.advance(1s);
        const core::ChildStatus b_before = h.status("b");
        REQUIRE(b_before.backoff_until);
        h.os.notify("n", "READY=1", h.pid("n"));
        CHECK(reexec_until_exec(h, units).find("Exec format error") != std::string::npos);
        REQUIRE(h.os.exec_handover);
        daemon::Handover carried = *h.os.exec_handover;
        CHECK(carried.requester_fd == 9);
        CHECK(carried.generation == 1);

        NewBinary next(h, units);
        FakeOs &os2 = next.os;
        daemon::Shell &shell2 = *next.shell;
        CHECK(shell2.core().size() == 1); // the root alone until the restored core comes
        std::string error;
        REQUIRE_MESSAGE(shell2.adopt(carried, next.loaded.tree, error), error);
        shell2.resume(carried);
        CHECK(os2.spawns.empty()); // nothing was started again
        const core::Core &c2 = shell2.core();
        for (const char *name : {"a", "b", "n"}) {
            const core::ChildStatus s1 = h.status(name), s2 = c2.status(*c2.find(name));
            CHECK(s1.state == s2.state);
            CHECK(s1.incarnation == s2.incarnation);
            CHECK(s1.pid == s2.pid);
            CHECK(s1.ready == s2.ready);
            CHECK(s1.restarts == s2.restarts);
            CHECK(h.shell->core().history(h.id(name), 1000).size() ==
                  c2.history(*c2.find(name), 1000).size());
        }
        // The log ring and the partial line.
        const daemon::UnitRuntime *ra = shell2.runtime_if(*c2.find("a"));
        REQUIRE(ra);
        REQUIRE(ra->log);
        CHECK(ra->log->ring().last(10).size() == 2);
        CHECK(shell2.last_log_seq() == h.shell->last_log_seq());
        CHECK(os2.outputs[static_cast<std::size_t>(os2.procs.at(a).output)].partial == "thi");
        // The notify socket and the pipes were taken, not made again.
        CHECK(os2.notifies.count("n") == 1);
        CHECK(std::find(os2.adopted_fds.begin(), os2.adopted_fds.end(),
                        h.shell->runtime_if(h.id("a"))->run->output->carried_fd(
                            log::Stream::Stdout)) != os2.adopted_fds.end());
        // b's backoff ends when it would have: 2 s from now, not 3.
        os2.advance(1900ms);
        CHECK(os2.spawns.empty());
        os2.advance(200ms);
        CHECK(os2.spawns.size() == 1);
        // A process of the old binary that ends is known by the new one.
        os2.close_output(a);
        os2.exit(a, 0);
        CHECK(c2.status(*c2.find("a")).incarnation.value == 2);
        shell2.command(core::Command{core::CommandKind::Shutdown, root_id, 0, "test"});
        os2.settle();
    }

    TEST_CASE("a state the new binary refuses leaves it the units' core, which starts afresh") {
        const std::map<std::string, std::string> units{{"a", svc}, {"b", slow}};
        Harness h(units);
        CHECK(reexec_until_exec(h, units).find("Exec format error") != std::string::npos);
        REQUIRE(h.os.exec_handover);
        daemon::Handover carried = *h.os.exec_handover;
        REQUIRE_FALSE(carried.units.empty());
        carried.units.front().name = "not-a-unit"; // not the core's child of that id

        NewBinary next(h, units);
        FakeOs &os2 = next.os;
        daemon::Shell &shell2 = *next.shell;
        std::string error;
        CHECK_FALSE(shell2.adopt(carried, next.loaded.tree, error));
        CHECK(error.find("not-a-unit") != std::string::npos);
        // The core of every unit, as an ordinary start has it: start() starts them all.
        const core::Core &c2 = shell2.core();
        REQUIRE(c2.size() == 3);
        CHECK(c2.find("a"));
        CHECK(c2.find("b"));
        shell2.start();
        CHECK(os2.spawns.size() == 2);
        shell2.command(core::Command{core::CommandKind::Shutdown, root_id, 0, "test"});
        os2.settle();
    }
}

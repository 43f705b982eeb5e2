// manager_test.cpp: when vigild notifies its own service manager (src/daemon/manager.hpp),
// through the real Shell on the fake OS and a fake link: which datagram goes out at which
// turn of the shell, deterministically (the fake clock drives the watchdog's pings).
#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <csignal>

#include "fake_os.hpp"
#include "manager.hpp"
#include "vigil/notify/message.hpp"

using namespace vigil;
using namespace vigil::test;
using namespace std::chrono_literals;

namespace {

const std::string ready_fd_svc =
    R"({"command": ["/bin/true"], "backoff": {"initial": "0s"}, "ready": {"fd": 3}})";

// What the manager received, and when (the fake clock).
struct Sent {
    TimePoint at;
    std::string datagram;
};

struct Wire {
    std::vector<Sent> sent;
    int fail_with = 0;                          // the errno every send returns (0: success)
    std::function<void(std::string_view)> peek; // called at each send, before it is recorded
    std::uint64_t usec = 42'000'000;            // the link's CLOCK_MONOTONIC
    std::vector<std::string> heads() const {    // each datagram's first assignment
        std::vector<std::string> out;
        for (const Sent &s : sent)
            out.push_back(s.datagram.substr(0, s.datagram.find('\n')));
        return out;
    }
    std::vector<std::string> heads_but_pings() const {
        std::vector<std::string> out;
        for (const std::string &h : heads())
            if (h != "WATCHDOG=1") out.push_back(h);
        return out;
    }
};

class FakeLink final : public daemon::ManagerLink {
public:
    FakeLink(Wire &w, FakeOs &os) : w_(w), os_(os) {}
    int send(std::string_view datagram) override {
        if (w_.peek) w_.peek(datagram);
        if (w_.fail_with) return w_.fail_with;
        w_.sent.push_back(Sent{os_.now(), std::string(datagram)});
        return 0;
    }
    std::uint64_t monotonic_usec() override { return w_.usec; }

private:
    Wire &w_;
    FakeOs &os_;
};

// A Harness whose shell notifies `wire` (watchdog: WATCHDOG_USEC, or none).
struct ManagedHarness {
    ManagedHarness(const std::map<std::string, std::string> &units, bool auto_answer,
                   std::optional<std::uint64_t> watchdog_usec = std::nullopt)
        : h(units, auto_answer, {}, [this, watchdog_usec](daemon::Shell &shell) {
              shell.set_manager(std::make_unique<daemon::ManagerNotifier>(
                  h.os, shell.journal(), std::make_unique<FakeLink>(wire, h.os), "@manager",
                  watchdog_usec));
          }) {}
    Wire wire; // before h: the shell sends from h's constructor
    Harness h;
};

bool only_one(const std::vector<std::string> &v, const std::string &what) {
    return std::count(v.begin(), v.end(), what) == 1;
}

} // namespace

TEST_SUITE("manager") {

    TEST_CASE("READY=1 goes out once the whole tree started, readiness included, and once") {
        ManagedHarness m(
            {{"a", ready_fd_svc}, {"b", R"({"command": ["/bin/true"], "after": ["a"]})"}},
            /*auto_answer=*/false);
        Harness &h = m.h;
        CHECK(m.wire.sent.empty());
        h.os.answer(0); // a runs, not ready yet
        CHECK(m.wire.sent.empty());
        REQUIRE(h.os.ready_fds.size() == 1);
        h.os.ready_fds[0](); // a is ready: b starts
        CHECK(m.wire.sent.empty());
        REQUIRE(h.os.spawns.size() == 2);
        h.os.answer(1);
        REQUIRE(m.wire.sent.size() == 1);
        const notify::Message msg = notify::parse_message(m.wire.sent[0].datagram);
        CHECK(msg.ready);
        CHECK(msg.status == std::optional<std::string>("2 services running"));
        CHECK(msg.errors.empty());
        CHECK(h.shell->manager()->phase() == daemon::ManagerNotifier::Phase::Ready);
        // A crash and restart of a service is no news to the manager.
        h.os.exit(h.os.pid_of("b"), 1);
        CHECK(only_one(m.wire.heads(), "READY=1"));
    }

    TEST_CASE("a reload is RELOADING=1 (with MONOTONIC_USEC=) then READY=1 once it is done") {
        ManagedHarness m({{"a", svc}}, true);
        Harness &h = m.h;
        REQUIRE(m.wire.heads() == std::vector<std::string>{"READY=1"});
        m.wire.usec = 77'000'123;
        h.os.next_load = load_units({{"a", svc}, {"b", svc}});
        h.shell->on_signal(SIGHUP);
        REQUIRE(m.wire.sent.size() == 2);
        CHECK(m.wire.sent[1].datagram == "RELOADING=1\nMONOTONIC_USEC=77000123");
        CHECK(notify::parse_message(m.wire.sent[1].datagram).reloading);
        CHECK(h.os.loading()); // nothing more until the units are loaded
        CHECK(m.wire.sent.size() == 2);
        h.os.finish_load();
        REQUIRE(m.wire.sent.size() == 3);
        const notify::Message done = notify::parse_message(m.wire.sent[2].datagram);
        CHECK(done.ready);
        CHECK(done.status == std::optional<std::string>("2 services running"));
    }

    TEST_CASE("a refused reload is RELOADING=1 then READY=1 too, and the tree is kept") {
        ManagedHarness m({{"a", svc}}, true);
        Harness &h = m.h;
        unit::LoadResult broken;
        broken.diagnostics.push_back(
            unit::Diagnostic{"/fake/units/a.json", 1, 2, "command", "expected an array"});
        broken.problems = 1;
        h.os.next_load = broken;
        bool refused = false;
        h.shell->reload("test", [&](const daemon::Shell::ReloadOutcome &o) {
            refused = !o.diagnostics.empty();
        });
        h.os.finish_load();
        CHECK(refused);
        CHECK(m.wire.heads() == std::vector<std::string>{"READY=1", "RELOADING=1", "READY=1"});
    }

    TEST_CASE("reloads asked for while one runs end with one READY=1, after the last") {
        ManagedHarness m({{"a", svc}}, true);
        Harness &h = m.h;
        h.os.next_load = load_units({{"a", svc}});
        h.shell->reload("first", [](const daemon::Shell::ReloadOutcome &) {});
        h.shell->reload("second", [](const daemon::Shell::ReloadOutcome &) {});
        h.os.finish_load(); // the first; the second starts at once
        CHECK(h.os.loading());
        CHECK(m.wire.heads() == std::vector<std::string>{"READY=1", "RELOADING=1"});
        h.os.next_load = load_units({{"a", svc}});
        h.os.finish_load();
        CHECK(m.wire.heads() == std::vector<std::string>{"READY=1", "RELOADING=1", "READY=1"});
    }

    TEST_CASE("a reload before the tree is up says nothing: READY=1 waits for the tree") {
        ManagedHarness m({{"a", ready_fd_svc}}, false);
        Harness &h = m.h;
        h.os.next_load = load_units({{"a", ready_fd_svc}});
        h.shell->on_signal(SIGHUP);
        h.os.finish_load();
        CHECK(m.wire.sent.empty()); // neither RELOADING=1 nor a premature READY=1
        h.os.answer(0);
        REQUIRE_FALSE(h.os.ready_fds.empty());
        h.os.ready_fds.back()();
        CHECK(m.wire.heads() == std::vector<std::string>{"READY=1"});
    }

    TEST_CASE("STOPPING=1 goes out when shutdown begins, before any service is signalled") {
        ManagedHarness m({{"a", svc}, {"b", svc}}, true);
        Harness &h = m.h;
        const int a = h.os.pid_of("a"), b = h.os.pid_of("b");
        bool checked = false;
        m.wire.peek = [&](std::string_view d) {
            if (d.starts_with("STOPPING=1")) {
                CHECK(h.os.procs[a].signals.empty());
                CHECK(h.os.procs[b].signals.empty());
                checked = true;
            }
        };
        h.shell->on_signal(SIGTERM);
        CHECK(checked);
        CHECK(h.os.procs[b].signals == std::vector<int>{SIGTERM}); // the stop did begin
        h.shell->on_signal(SIGTERM); // a second one kills; no second STOPPING=1
        CHECK(only_one(m.wire.heads(), "STOPPING=1"));
        const notify::Message msg = notify::parse_message(m.wire.sent.back().datagram);
        CHECK(msg.stopping);
        CHECK(h.shell->manager()->phase() == daemon::ManagerNotifier::Phase::Stopping);
    }

    TEST_CASE("after STOPPING=1 a reload that completes sends no READY=1") {
        ManagedHarness m({{"a", svc}}, true);
        Harness &h = m.h;
        h.os.procs[h.os.pid_of("a")].ignores_term = true; // the shutdown takes a while
        h.os.next_load = load_units({{"a", svc}});
        h.shell->on_signal(SIGHUP);
        h.shell->on_signal(SIGTERM);
        h.os.finish_load();
        CHECK(m.wire.heads() == std::vector<std::string>{"READY=1", "RELOADING=1", "STOPPING=1"});
    }

    TEST_CASE("a tree that fails to start sends STOPPING=1 and never READY=1") {
        ManagedHarness m({{"a", svc}}, false);
        Harness &h = m.h;
        h.os.fail(0, "exec /bin/nope: No such file or directory");
        h.os.settle();
        REQUIRE(h.shell->exit_status());
        CHECK(m.wire.heads() == std::vector<std::string>{"STOPPING=1"});
    }

    TEST_CASE("WATCHDOG=1 at start and every WATCHDOG_USEC/2 from the loop's timer, until exit") {
        ManagedHarness m({{"a", svc}}, true, 1'000'000);
        Harness &h = m.h;
        CHECK(h.shell->manager()->ping_interval() == std::optional<Duration>(500ms));
        auto pings = [&] {
            std::vector<TimePoint> out;
            for (const Sent &s : m.wire.sent)
                if (s.datagram == "WATCHDOG=1") out.push_back(s.at);
            return out;
        };
        const TimePoint t0 = h.os.now();
        REQUIRE(pings().size() == 1);
        CHECK(pings()[0] == t0);
        h.os.advance(499ms);
        CHECK(pings().size() == 1);
        h.os.advance(1ms);
        REQUIRE(pings().size() == 2);
        CHECK(pings()[1] == t0 + 500ms);
        h.os.advance(2000ms);
        CHECK(pings().size() == 6);
        // The pings go on while the tree stops, and end with vigild's exit.
        h.shell->on_signal(SIGTERM);
        h.os.settle();
        REQUIRE(h.shell->exit_status());
        const std::size_t at_exit = pings().size();
        CHECK(h.os.timers.empty()); // nothing left to keep the loop alive
        h.os.advance(5000ms);
        CHECK(pings().size() == at_exit);
    }

    TEST_CASE("the ping interval is half of WATCHDOG_USEC, at least 1 ms") {
        Wire w;
        FakeOs os;
        daemon::Journal j(daemon::LogLevel::Debug, [](std::string_view) {});
        daemon::ManagerNotifier tiny(os, j, std::make_unique<FakeLink>(w, os), "@m", 1);
        CHECK(tiny.ping_interval() == std::optional<Duration>(1ms));
        daemon::ManagerNotifier big(os, j, std::make_unique<FakeLink>(w, os), "@m",
                                    notify::max_watchdog_usec * 4);
        CHECK(big.ping_interval() ==
              std::optional<Duration>(Duration{notify::max_watchdog_usec / 2000}));
        daemon::ManagerNotifier none(os, j, std::make_unique<FakeLink>(w, os), "@m", std::nullopt);
        CHECK_FALSE(none.ping_interval());
        none.start();
        CHECK(os.timers.empty());
        CHECK(w.sent.empty());
    }

    TEST_CASE("failed sends are counted and logged once; vigild goes on") {
        ManagedHarness m({{"a", svc}}, true, 1'000'000);
        Harness &h = m.h;
        m.wire.fail_with = ECONNREFUSED;
        h.os.advance(5000ms); // ten pings refused
        h.shell->on_signal(SIGHUP);
        h.os.next_load = load_units({{"a", svc}});
        h.os.finish_load();
        const daemon::ManagerNotifier &mn = *h.shell->manager();
        CHECK(mn.failed() == 12);
        CHECK(mn.sent() == 2); // READY=1 and the first ping, before the manager went away
        std::size_t lines = 0;
        for (const std::string &l : h.os.journal)
            if (l.find("cannot notify the service manager") != std::string::npos) {
                ++lines;
                CHECK(l.find("NOTIFY_SOCKET=@manager: WATCHDOG=1: Connection refused") !=
                      std::string::npos);
            }
        CHECK(lines == 1);
        CHECK(h.status("a").state == core::ChildState::Running);
        m.wire.fail_with = 0; // the manager is back: pings go out again
        h.os.advance(500ms);
        CHECK(m.wire.heads().back() == "WATCHDOG=1");
    }

    TEST_CASE("tree_summary counts services, not supervisors, and says how many run") {
        ManagedHarness m({{"grp", R"({"kind": "supervisor"})"},
                          {"a", svc},
                          {"b", R"({"command": ["/bin/true"], "parent": "grp"})"}},
                         true);
        Harness &h = m.h;
        CHECK(daemon::tree_summary(h.shell->core()) == "2 services running");
        h.shell->command(core::Command{core::CommandKind::Stop, h.id("a"), 0, "test"});
        h.os.settle();
        CHECK(daemon::tree_summary(h.shell->core()) == "1 of 2 services running");
        CHECK(m.wire.heads_but_pings() == std::vector<std::string>{"READY=1"});
    }
}

// control_api_test.cpp: what vigild answers on its control socket (src/daemon/control_api.cpp),
// driven through fake connections (ctl::Responder) on the fake OS: the answers' shapes, the
// commands reaching the core, followers and their bounds, reload answered after the off-loop
// load. The real socket, its caps and its framing are tested in tests/ctl and tests/integration.
#include <doctest/doctest.h>

#include <csignal>

#include "control_api.hpp"
#include "fake_os.hpp"

using namespace vigil;
using namespace vigil::test;
using namespace std::chrono_literals;
using ctl::Json;

namespace {

// A connection that records what vigild sends it. close() (or `closed = true`) makes every
// later call return false, as a closed connection does; close callbacks run on fire_close().
class FakePeer final : public ctl::Responder {
public:
    struct Line {
        std::string kind; // reply, error, stream, end
        Json id, body;
    };
    std::vector<Line> lines;
    bool closed = false;
    bool ro = false;
    int streams_left = -1; // >= 0: the connection closes (output cap) after that many items
    int stream_calls = 0;
    std::vector<std::function<void()>> close_cbs;

    bool reply(const Json &id, const Json &result) override { return add("reply", id, result); }
    bool error(const Json &id, ctl::ErrorCode code, std::string_view message,
               const Json &extra) override {
        Json b = {{"code", ctl::to_string(code)}, {"message", std::string(message)}};
        if (!extra.is_null()) b["extra"] = extra;
        return add("error", id, b);
    }
    bool stream_encoded(const Json &id, std::string_view item_json) override {
        ++stream_calls;
        if (streams_left == 0) closed = true;
        if (streams_left > 0) --streams_left;
        return add("stream", id, Json::parse(item_json));
    }
    bool end(const Json &id) override { return add("end", id, nullptr); }
    bool on_close(std::function<void()> cb) override {
        close_cbs.push_back(std::move(cb));
        return true;
    }
    bool open() const override { return !closed; }
    std::string who() const override { return "uid 0 pid 4242"; }
    uid_t uid() const override { return 0; }
    bool read_only() const override { return ro; }
    void close() override { closed = true; }

    void fire_close() {
        closed = true;
        auto cbs = std::move(close_cbs);
        for (auto &cb : cbs)
            cb();
    }
    std::size_t count(const std::string &kind) const {
        std::size_t n = 0;
        for (const Line &l : lines)
            n += l.kind == kind;
        return n;
    }
    const Line &last() const { return lines.back(); }

private:
    bool add(const char *kind, const Json &id, const Json &body) {
        if (closed) return false;
        lines.push_back({kind, id, body});
        return true;
    }
};

ctl::Request request(ctl::Cmd cmd, std::vector<std::string> units = {}, int id = 1) {
    ctl::Request q;
    q.id = id;
    q.cmd = cmd;
    q.units = std::move(units);
    return q;
}

ctl::Request follow(ctl::Cmd cmd, const std::string &unit, int id = 1) {
    ctl::Request q = request(cmd, {unit}, id);
    q.unit = unit;
    q.follow = true;
    q.lines = 0;
    return q;
}

} // namespace

TEST_SUITE("daemon") {

    TEST_CASE("control: status answers from the core, with the kernel's pid; a bad pattern is "
              "not_found") {
        Harness h({{"a", svc}, {"b", svc}});
        auto peer = std::make_shared<FakePeer>();
        h.shell->control().handle(peer, request(ctl::Cmd::Status, {"a"}));
        REQUIRE(peer->last().kind == "reply");
        const Json &units = peer->last().body["units"];
        REQUIRE(units.size() == 1);
        CHECK(units[0]["name"] == "a");
        CHECK(units[0]["state"] == "running");
        CHECK(units[0]["pid"] == h.os.pid_of("a"));
        CHECK(units[0]["incarnation"] == 1);
        h.shell->control().handle(peer, request(ctl::Cmd::Status, {"nope*"}, 2));
        CHECK(peer->last().kind == "error");
        CHECK(peer->last().id == 2);
        CHECK(peer->last().body["code"] == "not_found");
    }

    TEST_CASE("control: stop and start reach the core and say what each unit did") {
        Harness h({{"a", svc}, {"b", svc}});
        auto peer = std::make_shared<FakePeer>();
        h.shell->control().handle(peer, request(ctl::Cmd::Stop, {"a"}));
        REQUIRE(peer->last().kind == "reply");
        CHECK(peer->last().body["results"][0]["unit"] == "a");
        CHECK(peer->last().body["results"][0]["outcome"] == "ok");
        h.os.settle();
        CHECK(h.status("a").state == core::ChildState::Stopped);
        CHECK(h.os.procs[h.os.spawned_pid["a"]].signals.at(0) == SIGTERM);
        h.shell->control().handle(peer, request(ctl::Cmd::Stop, {"a"}, 2));
        CHECK(peer->last().body["results"][0]["outcome"] == "already_stopped");
        h.shell->control().handle(peer, request(ctl::Cmd::Start, {"a"}, 3));
        CHECK(peer->last().body["results"][0]["outcome"] == "ok");
        CHECK(h.status("a").state == core::ChildState::Running);
        CHECK(h.status("a").incarnation.value == 2);
    }

    TEST_CASE("control: an events follower gets each new record once, and is dropped when its "
              "connection closes") {
        Harness h({{"a", svc}});
        auto peer = std::make_shared<FakePeer>();
        h.shell->control().handle(peer, follow(ctl::Cmd::Events, "a"));
        CHECK(h.shell->control().followers() == 1);
        CHECK(peer->lines.empty()); // lines = 0: no history first
        h.os.exit(h.os.pid_of("a"), 3);
        h.os.settle();
        REQUIRE(peer->count("stream") >= 2);
        bool exited = false;
        for (const auto &l : peer->lines)
            if (l.body.value("kind", "") == "exited") {
                exited = true;
                CHECK(l.body["exit"] == Json{{"code", 3}});
                CHECK(l.body["unit"] == "a");
            }
        CHECK(exited);
        peer->fire_close();
        CHECK(h.shell->control().followers() == 0);
    }

    TEST_CASE("control: a logs follower gets each line once, in order; a unit removed by "
              "reload ends its stream") {
        Harness h({{"a", svc}, {"b", svc}});
        auto peer = std::make_shared<FakePeer>();
        h.shell->control().handle(peer, follow(ctl::Cmd::Logs, "a"));
        const int pid = h.os.pid_of("a");
        h.os.write(pid, log::Stream::Stdout, "one");
        h.os.write(pid, log::Stream::Stderr, "two");
        h.os.deliver();
        REQUIRE(peer->count("stream") == 2);
        CHECK(peer->lines[0].body["line"] == "one");
        CHECK(peer->lines[1].body["line"] == "two");
        CHECK(peer->lines[1].body["stream"] == "stderr");
        CHECK(peer->lines[0].body["seq"] < peer->lines[1].body["seq"]);
        h.os.next_load = load_units({{"b", svc}});
        h.shell->reload("test", [](const daemon::Shell::ReloadOutcome &) {});
        h.os.finish_load();
        h.os.settle();
        CHECK(peer->last().kind == "end");
        CHECK(h.shell->control().followers() == 0);
    }

    TEST_CASE("control: followers are bounded; the oldest is ended to make room") {
        Harness h({{"a", svc}});
        std::vector<std::shared_ptr<FakePeer>> peers;
        for (std::size_t i = 0; i <= daemon::ControlApi::max_followers; ++i) {
            peers.push_back(std::make_shared<FakePeer>());
            h.shell->control().handle(peers.back(), follow(ctl::Cmd::Events, "", int(i)));
        }
        CHECK(h.shell->control().followers() == daemon::ControlApi::max_followers);
        REQUIRE_FALSE(peers[0]->lines.empty());
        CHECK(peers[0]->last().kind == "end");
        CHECK(peers[1]->lines.empty());
    }

    TEST_CASE("control: a follower whose connection stops taking lines is dropped at once") {
        Harness h({{"a", svc}});
        auto slow = std::make_shared<FakePeer>();
        auto fine = std::make_shared<FakePeer>();
        h.shell->control().handle(slow, follow(ctl::Cmd::Logs, "a"));
        h.shell->control().handle(fine, follow(ctl::Cmd::Logs, "a", 2));
        slow->closed = true; // the server closed it (output cap), callbacks not yet run
        const int pid = h.os.pid_of("a");
        h.os.write(pid, log::Stream::Stdout, "x");
        h.os.deliver();
        CHECK(h.shell->control().followers() == 1);
        CHECK(fine->count("stream") == 1);
    }

    TEST_CASE("control: the stored lines and records stop at the first one a closing connection "
              "refuses; it is not made a follower") {
        Harness h({{"a", svc}});
        const int pid = h.os.pid_of("a");
        for (int i = 0; i < 20; ++i)
            h.os.write(pid, log::Stream::Stdout, "line " + std::to_string(i));
        h.os.deliver();
        for (auto [cmd, left] : {std::pair{ctl::Cmd::Logs, 3}, std::pair{ctl::Cmd::Events, 0}}) {
            auto peer = std::make_shared<FakePeer>();
            peer->streams_left = left;
            ctl::Request q = follow(cmd, "a");
            q.lines = 100;
            h.shell->control().handle(peer, q);
            CHECK(peer->count("stream") == std::size_t(left));
            CHECK(peer->stream_calls == left + 1); // the refused one, and nothing after it
            CHECK(h.shell->control().followers() == 0);
        }
    }

    TEST_CASE("control: reload is answered after the load, with the problems or the changes") {
        Harness h({{"a", svc}});
        auto peer = std::make_shared<FakePeer>();
        h.shell->control().handle(peer, request(ctl::Cmd::Reload));
        CHECK(peer->lines.empty()); // the load runs off the loop
        unit::LoadResult bad;
        for (int i = 0; i < 3; ++i)
            bad.diagnostics.push_back({"/fake/units/x.json", 1, 1, "", "broken"});
        bad.problems = 3;
        h.os.next_load = std::move(bad);
        h.os.finish_load();
        REQUIRE(peer->last().kind == "error");
        CHECK(peer->last().body["code"] == "invalid");
        CHECK(peer->last().body["message"] ==
              "3 problems in the unit files; the running configuration is kept");
        CHECK(h.status("a").state == core::ChildState::Running);
        h.shell->control().handle(peer, request(ctl::Cmd::Reload, {}, 2));
        h.os.next_load = load_units({{"a", svc}, {"n", svc}});
        h.os.finish_load();
        REQUIRE(peer->last().kind == "reply");
        CHECK(peer->last().body["added"] == Json::array({"n"}));
        CHECK(h.status("n").state == core::ChildState::Running);
    }

    TEST_CASE("control: version counts the units that exist, not the ids ever used") {
        Harness h({{"a", svc}});
        auto peer = std::make_shared<FakePeer>();
        for (int i = 0; i < 3; ++i) { // add and remove b: its id is freed and reused
            h.os.next_load = load_units({{"a", svc}, {"b", svc}});
            h.shell->reload("test", [](const daemon::Shell::ReloadOutcome &) {});
            h.os.finish_load();
            h.os.next_load = load_units({{"a", svc}});
            h.shell->reload("test", [](const daemon::Shell::ReloadOutcome &) {});
            h.os.finish_load();
            h.os.settle();
        }
        h.shell->control().handle(peer, request(ctl::Cmd::Version));
        REQUIRE(peer->last().kind == "reply");
        CHECK(peer->last().body["units"] == 1);
        CHECK(h.shell->core().size() <= 3); // root, a, and one id for every b
    }

    TEST_CASE("control: an instanced unit's name is its instances in every command; a unit "
              "file named like an instance is not one") {
        const std::string web = R"({"command": ["/bin/true"], "instances": 2})";
        Harness h({{"web", web}, {"web@3", svc}, {"worker", svc}});
        auto peer = std::make_shared<FakePeer>();
        auto names = [](const Json &arr, const char *key) {
            std::vector<std::string> v;
            for (const auto &x : arr)
                v.push_back(x[key].get<std::string>());
            return v;
        };
        using Names = std::vector<std::string>;
        h.shell->control().handle(peer, request(ctl::Cmd::Status, {"web"}));
        REQUIRE(peer->last().kind == "reply");
        CHECK(names(peer->last().body["units"], "name") == Names{"web@1", "web@2"});
        // A glob matches the unit's name too, and the children's names as before.
        h.shell->control().handle(peer, request(ctl::Cmd::Status, {"w?b"}, 2));
        CHECK(names(peer->last().body["units"], "name") == Names{"web@1", "web@2"});
        h.shell->control().handle(peer, request(ctl::Cmd::Status, {"web@*"}, 3));
        CHECK(names(peer->last().body["units"], "name") == Names{"web@1", "web@2", "web@3"});
        h.shell->control().handle(peer, request(ctl::Cmd::Stop, {"web"}, 4));
        REQUIRE(peer->last().kind == "reply");
        CHECK(names(peer->last().body["results"], "unit") == Names{"web@1", "web@2"});
        h.os.settle();
        CHECK(h.status("web@1").state == core::ChildState::Stopped);
        CHECK(h.status("web@3").state == core::ChildState::Running);
        h.shell->control().handle(peer, request(ctl::Cmd::Start, {"web@2"}, 5));
        CHECK(names(peer->last().body["results"], "unit") == Names{"web@2"});
    }

    TEST_CASE("control: a name that matches nothing is answered with the closest one") {
        const std::string web = R"({"command": ["/bin/true"], "instances": 2})";
        Harness h({{"web", web}, {"worker", svc}});
        auto peer = std::make_shared<FakePeer>();
        h.shell->control().handle(peer, request(ctl::Cmd::Status, {"wroker"}));
        REQUIRE(peer->last().kind == "error");
        CHECK(peer->last().body["code"] == "not_found");
        CHECK(peer->last().body["message"] == "no unit named 'wroker'; did you mean 'worker'?");
        h.shell->control().handle(peer, request(ctl::Cmd::Restart, {"worker", "wbe"}, 2));
        CHECK(peer->last().body["message"] == "no unit named 'wbe'; did you mean 'web'?");
        h.shell->control().handle(peer, follow(ctl::Cmd::Logs, "workr", 3));
        CHECK(peer->last().body["message"] == "no unit named 'workr'; did you mean 'worker'?");
        // Nothing close, or a glob: no suggestion.
        h.shell->control().handle(peer, request(ctl::Cmd::Status, {"database"}, 4));
        CHECK(peer->last().body["message"] == "no unit named 'database'");
        h.shell->control().handle(peer, request(ctl::Cmd::Status, {"wrk*"}, 5));
        CHECK(peer->last().body["message"] == "no unit matches 'wrk*'");
        CHECK(h.shell->control().followers() == 0);
    }

    TEST_CASE("control: logs and events of a glob or an instanced unit merge the units, "
              "each line naming its unit") {
        const std::string web = R"({"command": ["/bin/true"], "instances": 2})";
        Harness h({{"web", web}, {"db", svc}});
        const int p1 = h.os.pid_of("web@1"), p2 = h.os.pid_of("web@2"), pdb = h.os.pid_of("db");
        h.os.write(p1, log::Stream::Stdout, "one");
        h.os.deliver();
        h.os.write(p2, log::Stream::Stdout, "two");
        h.os.write(pdb, log::Stream::Stdout, "db line");
        h.os.deliver();
        auto peer = std::make_shared<FakePeer>();
        ctl::Request q = request(ctl::Cmd::Logs, {"web"});
        h.shell->control().handle(peer, q);
        REQUIRE(peer->count("stream") == 2);
        CHECK(peer->last().kind == "end");
        std::vector<std::string> got;
        for (const auto &l : peer->lines)
            if (l.kind == "stream")
                got.push_back(l.body["unit"].get<std::string>() + ":" +
                              l.body["line"].get<std::string>());
        CHECK(got == std::vector<std::string>{"web@1:one", "web@2:two"});

        // lines: the last n of the merge, not n per unit.
        auto last = std::make_shared<FakePeer>();
        q.lines = 1;
        h.shell->control().handle(last, q);
        REQUIRE(last->count("stream") == 1);
        CHECK(last->lines[0].body["line"] == "two");

        auto f = std::make_shared<FakePeer>();
        h.shell->control().handle(f, follow(ctl::Cmd::Logs, "web@*"));
        h.os.write(p2, log::Stream::Stdout, "three");
        h.os.write(pdb, log::Stream::Stdout, "not followed");
        h.os.write(p1, log::Stream::Stderr, "four");
        h.os.deliver();
        REQUIRE(f->count("stream") == 2);
        CHECK(f->count("end") == 0);

        // events: a glob's units; follow gets only theirs.
        auto ev = std::make_shared<FakePeer>();
        h.shell->control().handle(ev, follow(ctl::Cmd::Events, "web"));
        h.os.exit(pdb, 3);
        h.os.settle();
        CHECK(ev->count("stream") == 0);
        h.os.exit(h.os.pid_of("web@2"), 4);
        h.os.settle();
        REQUIRE(ev->count("stream") >= 1);
        for (const auto &l : ev->lines)
            CHECK(l.body["unit"] == "web@2");
        auto past = std::make_shared<FakePeer>();
        ctl::Request e = request(ctl::Cmd::Events, {"[dw]*"});
        h.shell->control().handle(past, e);
        bool db = false, web2 = false;
        for (const auto &l : past->lines)
            if (l.kind == "stream") {
                db = db || l.body["unit"] == "db";
                web2 = web2 || l.body["unit"] == "web@2";
            }
        CHECK(db);
        CHECK(web2);
    }

    TEST_CASE("control: a logs follower of several units ends when the last of them is removed") {
        Harness h({{"a1", svc}, {"a2", svc}, {"b", svc}});
        auto peer = std::make_shared<FakePeer>();
        h.shell->control().handle(peer, follow(ctl::Cmd::Logs, "a*"));
        h.os.next_load = load_units({{"a2", svc}, {"b", svc}});
        h.shell->reload("test", [](const daemon::Shell::ReloadOutcome &) {});
        h.os.finish_load();
        h.os.settle();
        CHECK(peer->count("end") == 0);
        CHECK(h.shell->control().followers() == 1);
        h.os.write(h.os.pid_of("a2"), log::Stream::Stdout, "still here");
        h.os.deliver();
        CHECK(peer->last().body["line"] == "still here");
        h.os.next_load = load_units({{"b", svc}});
        h.shell->reload("test", [](const daemon::Shell::ReloadOutcome &) {});
        h.os.finish_load();
        h.os.settle();
        CHECK(peer->last().kind == "end");
        CHECK(h.shell->control().followers() == 0);
    }

    TEST_CASE("control: logs and events read at most max_stream_units named units at once") {
        const std::string many = R"({"command": ["/bin/true"], "instances": 4097})";
        Harness h({{"web", many}});
        auto peer = std::make_shared<FakePeer>();
        h.shell->control().handle(peer, follow(ctl::Cmd::Logs, "web"));
        REQUIRE(peer->last().kind == "error");
        CHECK(peer->last().body["code"] == "invalid");
        CHECK(peer->last().body["message"] ==
              "the units named match 4097 units; logs reads at most 4096 named at once: name "
              "fewer, or none for every unit");
        h.shell->control().handle(peer, follow(ctl::Cmd::Events, "*", 2));
        CHECK(peer->last().kind == "error");
        h.shell->control().handle(peer, follow(ctl::Cmd::Events, "web@1*", 3)); // 1111 units
        CHECK(h.shell->control().followers() == 1);
        // None named: every unit, without a list.
        ctl::Request all = request(ctl::Cmd::Logs, {}, 4);
        all.follow = true;
        h.shell->control().handle(peer, all);
        CHECK(h.shell->control().followers() == 2);
    }

    TEST_CASE("control: logs of every unit merge in arrival order, from --since on, and follow "
              "units added later") {
        Harness h({{"a", svc}, {"b", svc}, {"c", svc}});
        h.os.write(h.os.pid_of("a"), log::Stream::Stdout, "a1");
        h.os.deliver();
        h.os.write(h.os.pid_of("b"), log::Stream::Stderr, "b1");
        h.os.deliver();
        h.os.write(h.os.pid_of("a"), log::Stream::Stdout, "a2");
        h.os.deliver();
        h.os.write(h.os.pid_of("c"), log::Stream::Stdout, "c1");
        h.os.deliver();
        auto lines_of = [](const FakePeer &p) {
            std::string got;
            for (const auto &l : p.lines)
                if (l.kind == "stream") got += l.body["line"].get<std::string>() + " ";
            return got;
        };
        auto peer = std::make_shared<FakePeer>();
        h.shell->control().handle(peer, request(ctl::Cmd::Logs));
        CHECK(lines_of(*peer) == "a1 b1 a2 c1 ");
        auto last = std::make_shared<FakePeer>();
        ctl::Request q = request(ctl::Cmd::Logs);
        q.lines = 2;
        h.shell->control().handle(last, q);
        CHECK(lines_of(*last) == "a2 c1 ");
        // since: only what came from then on (the lines carry the real wall clock's time).
        auto since = std::make_shared<FakePeer>();
        q.lines.reset();
        q.since = ctl::max_since_ms;
        h.shell->control().handle(since, q);
        CHECK(lines_of(*since).empty());
        q.since = 0;
        h.shell->control().handle(since, q);
        CHECK(lines_of(*since) == "a1 b1 a2 c1 ");

        auto every = std::make_shared<FakePeer>();
        ctl::Request f = request(ctl::Cmd::Logs);
        f.follow = true;
        h.shell->control().handle(every, f);
        CHECK(every->count("stream") == 4);
        h.os.next_load = load_units({{"a", svc}, {"b", svc}, {"c", svc}, {"d", svc}});
        h.shell->reload("test", [](const daemon::Shell::ReloadOutcome &) {});
        h.os.finish_load();
        h.os.settle();
        h.os.write(h.os.pid_of("d"), log::Stream::Stdout, "d1");
        h.os.write(h.os.pid_of("b"), log::Stream::Stdout, "b2");
        h.os.deliver();
        CHECK(every->count("stream") == 6);
        CHECK(every->last().body["unit"] != "");
        CHECK(every->count("end") == 0);
    }

    TEST_CASE("control: status says which `after` siblings a stopped unit waits for") {
        Harness h({{"a", R"({"command": ["/bin/true"], "ready": {"fd": 3}})"},
                   {"b", R"({"command": ["/bin/true"], "after": ["a"]})"}},
                  false);
        auto peer = std::make_shared<FakePeer>();
        h.shell->control().handle(peer, request(ctl::Cmd::Status, {"a", "b"}));
        REQUIRE(peer->last().kind == "reply");
        const Json &u = peer->last().body["units"];
        CHECK(u[0]["waiting_for"] == Json::array());
        CHECK(u[1]["state"] == "stopped");
        CHECK(u[1]["waiting_for"] == Json::array({"a"}));
        h.os.ready_fds.at(0)();
        h.os.answer(0);
        h.shell->control().handle(peer, request(ctl::Cmd::Status, {"b"}, 2));
        CHECK(peer->last().body["units"][0]["waiting_for"] == Json::array());
    }

    TEST_CASE("control: checks has a row per probe and one per watchdog; the last failure "
              "outlives its incarnation") {
        Harness h({{"p", R"({"command": ["/bin/true"], "backoff": {"initial": "0s"},
                             "liveness": {"tcp": {"port": 5432}, "period": "5s"},
                             "ready": {"probe": {"http": {"port": 8080, "path": "/healthz"}}}})"},
                   {"dog", R"({"command": ["/bin/true"], "backoff": {"initial": "0s"},
                             "watchdog": "2s"})"},
                   {"plain", svc}});
        auto peer = std::make_shared<FakePeer>();
        h.os.probes.at("p").cb.on_checked("liveness", {false, "connect: connection refused"});
        h.os.notify("dog", "WATCHDOG=1", h.pid("dog"));
        h.os.advance(500ms);
        h.shell->control().handle(peer, request(ctl::Cmd::Checks));
        REQUIRE(peer->last().kind == "reply");
        const Json rows = peer->last().body["checks"];
        REQUIRE(rows.size() == 3); // plain has no probe and no watchdog: no row
        // Units in id order: dog, p (plain has none).
        const Json &dog = rows[0];
        CHECK(rows[1]["unit"] == "p");
        CHECK(rows[1]["probe"] == "liveness");
        CHECK(rows[1]["kind"] == "tcp");
        CHECK(rows[1]["target"] == "127.0.0.1:5432");
        CHECK(rows[1]["state"] == "pending"); // the fake's Monitor never runs a check
        CHECK(rows[1]["period_ms"] == 5000);
        CHECK(rows[1]["threshold"] == 3);
        CHECK(rows[1]["last_failure"]["message"] == "connect: connection refused");
        CHECK(rows[1]["last_failure"]["time"] == h.os.wall_ms() - 500);
        CHECK(rows[2]["probe"] == "ready"); // ready: {"probe": ...} stands for readiness
        CHECK(rows[2]["target"] == "http://127.0.0.1:8080/healthz");
        CHECK(rows[2]["last_failure"].is_null());
        CHECK(dog["unit"] == "dog");
        CHECK(dog["kind"] == "watchdog");
        CHECK(dog["target"].is_null());
        CHECK(dog["state"] == "passing");
        CHECK(dog["successes"] == 1);
        CHECK(dog["period_ms"] == 2000);
        CHECK(dog["next_ms"] == 1500);

        // No keep-alive for 2 s: the watchdog fails, the unit restarts, and the new
        // incarnation's row starts again from zero with the failure's message kept.
        h.os.advance(1600ms);
        h.shell->control().handle(peer, request(ctl::Cmd::Checks, {"dog"}, 2));
        const Json &again = peer->last().body["checks"][0];
        CHECK(again["successes"] == 0);
        CHECK(again["last_failure"]["message"] == "watchdog failure: no WATCHDOG=1 within 2s");
        CHECK(h.status("dog").incarnation.value == 2);

        // Stopped: off, no next check, and no counts; the last failure stays.
        h.shell->control().handle(peer, request(ctl::Cmd::Stop, {"p"}, 3));
        h.os.settle();
        h.shell->control().handle(peer, request(ctl::Cmd::Checks, {"p"}, 4));
        const Json off = peer->last().body["checks"];
        CHECK(off[0]["state"] == "off");
        CHECK(off[0]["next_ms"].is_null());
        CHECK(off[0]["last_failure"]["message"] == "connect: connection refused");
    }

    TEST_CASE("control: check --run names the probes a unit has, and refuses when they do not "
              "run") {
        Harness h({{"p", R"({"command": ["/bin/true"],
                             "liveness": {"tcp": {"port": 5432}}})"},
                   {"plain", svc}});
        auto peer = std::make_shared<FakePeer>();
        auto check = [&](const std::string &unit, const std::string &probe) {
            ctl::Request q = request(ctl::Cmd::Check);
            q.unit = unit;
            q.probe = probe;
            q.run = true;
            h.shell->control().handle(peer, q);
            REQUIRE(peer->last().kind == "error");
            return peer->last().body;
        };
        Json e = check("p", "livenes");
        CHECK(e["code"] == "not_found");
        CHECK(e["message"] == "p has no probe 'livenes'; its probes: liveness; did you mean "
                              "'liveness'?");
        CHECK(check("plain", "liveness")["message"] == "plain has no probe 'liveness'; it has no "
                                                       "probes");
        CHECK(check("nope", "liveness")["code"] == "not_found");
        // The fake's Monitor is never started: its prober does not run.
        CHECK(check("p", "liveness")["message"] == "p's liveness probe does not run now");
        h.shell->control().handle(peer, request(ctl::Cmd::Stop, {"p"}, 3));
        h.os.settle();
        e = check("p", "liveness");
        CHECK(e["code"] == "invalid");
        CHECK(e["message"] == "p is not running: its probes do not run");
    }

    TEST_CASE("control: status with detail says the unit's file, command, its supervisor's "
              "intensity window and who caused its last exit") {
        const std::string web = R"({"description": "Example web server",
                                    "command": ["/bin/web", "--port", "8080"],
                                    "backoff": {"initial": "0s"}})";
        Harness h({{"web", web}});
        auto peer = std::make_shared<FakePeer>();
        ctl::Request q = request(ctl::Cmd::Status, {"web"});
        // Without detail: the table's fields only (what every row costs).
        h.shell->control().handle(peer, q);
        CHECK_FALSE(peer->last().body["units"][0].contains("description"));
        q.detail = true;
        h.shell->control().handle(peer, q);
        Json u = peer->last().body["units"][0];
        CHECK(u["description"] == "Example web server");
        CHECK(u["unit_file"].get<std::string>().starts_with("/"));
        CHECK(u["unit_file"].get<std::string>().ends_with("/web.json"));
        CHECK(u["command"] == Json::array({"/bin/web", "--port", "8080"}));
        CHECK(u["intensity"] == Json{{"max", 5}, {"period_ms", 10'000}, {"used", 0}});
        CHECK(u["last_exit_by"].is_null());
        CHECK(u["pid_namespace"].get<std::string>().starts_with("pid:["));
        // A crash is a restart its supervisor counts, while the window holds it.
        h.os.exit(h.pid("web"), 3);
        h.os.settle();
        h.shell->control().handle(peer, q);
        u = peer->last().body["units"][0];
        CHECK(u["intensity"]["used"] == 1);
        CHECK(u["last_exit_by"].is_null()); // it ended by itself
        h.os.advance(11s);
        h.shell->control().handle(peer, q);
        CHECK(peer->last().body["units"][0]["intensity"]["used"] == 0);
        // Killed by a signal someone sent: the requester is named.
        ctl::Request sig = request(ctl::Cmd::Signal, {"web"}, 2);
        sig.signal = SIGKILL;
        h.shell->control().handle(peer, sig);
        h.os.settle();
        h.shell->control().handle(peer, q);
        u = peer->last().body["units"][0];
        CHECK(u["last_exit"]["signal"] == "SIGKILL");
        CHECK(u["last_exit_by"] == Json{{"command", "signal"},
                                        {"signal", "SIGKILL"},
                                        {"by", "vigilctl (uid 0 pid 4242)"}});
        // The next incarnation ends by itself: the command is no longer its cause.
        h.os.exit(h.pid("web"), 1);
        h.os.settle();
        h.shell->control().handle(peer, q);
        CHECK(peer->last().body["units"][0]["last_exit_by"].is_null());
        // Several units: no detail (`status root` must not scan every unit's history).
        q.units = {"root"};
        h.shell->control().handle(peer, q);
        REQUIRE(peer->last().body["units"].size() == 2);
        CHECK_FALSE(peer->last().body["units"][0].contains("intensity"));
    }

    TEST_CASE("control: the root in detail has no supervisor, no file, no command") {
        Harness h({});
        auto peer = std::make_shared<FakePeer>();
        ctl::Request q = request(ctl::Cmd::Status, {"root"});
        q.detail = true;
        h.shell->control().handle(peer, q);
        REQUIRE(peer->last().body["units"].size() == 1);
        Json u = peer->last().body["units"][0];
        CHECK(u["intensity"].is_null());
        CHECK(u["command"] == Json::array());
        CHECK(u["unit_file"] == "");
    }

} // TEST_SUITE

// The rules of src/cli/wait.hpp: status before and now -> done, failed or waiting, and why.
#include <doctest/doctest.h>

#include "wait.hpp"

using namespace vigil;
using namespace vigil::cli;

namespace {

// A service's status object with the fields the rules read.
Json unit(const char *state, int inc, bool ready = false) {
    return Json{{"name", "web"},
                {"kind", "service"},
                {"state", state},
                {"incarnation", inc},
                {"ready", ready},
                {"exiting", false},
                {"effective_goal", "up"},
                {"held_down_by", nullptr},
                {"pid", std::string(state) == "stopped" ? Json() : Json(4242)},
                {"last_cause", "none"},
                {"last_reason", ""},
                {"waiting_for", Json::array()}};
}

Json with(Json u, const char *key, Json v) {
    u[key] = std::move(v);
    return u;
}

Json failed_spawn(int inc) {
    Json u = unit("backoff", inc);
    u["last_cause"] = "spawn_failed";
    u["last_reason"] = "exec pyhton3: No such file or directory";
    u["backoff_ms"] = 800;
    return u;
}

WaitTarget target(Want w, Json before, bool allow_down = false) {
    return {"web", w, std::move(before), allow_down};
}

} // namespace

TEST_SUITE("ctl") {

    TEST_CASE("wait: start is done when the unit runs and is ready, not before") {
        WaitTarget t = target(Want::Up, unit("stopped", 1));
        CHECK(judge(t, unit("stopped", 1)).verdict == Verdict::Waiting); // not started yet
        Judgement spawning = judge(t, with(unit("starting", 2), "pid", nullptr));
        CHECK(spawning.verdict == Verdict::Waiting);
        CHECK(spawning.detail == "state starting, being spawned");
        Judgement readiness = judge(t, unit("starting", 2));
        CHECK(readiness.what == "starting");
        CHECK(readiness.detail == "state starting, waiting for readiness");
        Judgement probe = judge(t, unit("running", 2, false));
        CHECK(probe.verdict == Verdict::Waiting);
        CHECK(probe.detail == "state running, readiness probe not passing");
        CHECK(judge(t, with(unit("running", 2, true), "exiting", true)).verdict ==
              Verdict::Waiting);
        Judgement done = judge(t, unit("running", 2, true));
        CHECK(done.verdict == Verdict::Done);
        CHECK(done.what == "running, ready");
        // A supervisor is done when it runs.
        CHECK(judge(t, with(unit("running", 2), "kind", "supervisor")).verdict == Verdict::Done);
        // A unit waiting for its `after` units says which.
        Judgement deps =
            judge(t, with(unit("stopped", 1), "waiting_for", Json::array({"db", "cache"})));
        CHECK(deps.detail == "state stopped, waiting for db, cache");
    }

    TEST_CASE("wait: a start fails only on what happened after the command") {
        // Stopped before, in backoff after a spawn error in the new run: failed, with vigild's
        // words.
        WaitTarget t = target(Want::Up, unit("stopped", 1));
        Judgement j = judge(t, failed_spawn(2));
        CHECK(j.verdict == Verdict::Failed);
        CHECK(j.what == "failed to start");
        CHECK(j.detail == "exec pyhton3: No such file or directory");
        // In backoff before (an old failure) and still in that run: the start has not acted yet.
        WaitTarget from_backoff = target(Want::Up, failed_spawn(2));
        CHECK(judge(from_backoff, failed_spawn(2)).verdict == Verdict::Waiting);
        CHECK(judge(from_backoff, failed_spawn(3)).verdict == Verdict::Failed);
        // Running before (already running) and ended since: failed.
        WaitTarget running = target(Want::Up, unit("starting", 4));
        Json ended = with(with(unit("backoff", 4), "last_cause", "start_timeout"), "last_reason",
                          "did not start within 5s");
        CHECK(judge(running, ended).verdict == Verdict::Failed);
        CHECK(judge(running, ended).detail == "did not start within 5s");
        // Two runs later, one ran and ended between two polls, even if the next is starting.
        CHECK(judge(t, unit("starting", 3)).verdict == Verdict::Failed);
        // A start of a stopping unit: the old run's end is expected.
        WaitTarget stopping = target(Want::Up, unit("stopping", 5));
        CHECK(judge(stopping, unit("stopped", 5)).verdict == Verdict::Waiting);
        CHECK(judge(stopping, unit("running", 6, true)).verdict == Verdict::Done);
        // No reason given: the cause, then the state.
        CHECK(judge(t, with(unit("backoff", 2), "last_cause", "start_failed")).detail ==
              "start failed");
        CHECK(judge(t, unit("backoff", 2)).detail == "state backoff");
    }

    TEST_CASE("wait: a task that ran and exited with status 0 is done; another exit fails") {
        WaitTarget t = target(Want::Up, unit("stopped", 1));
        Json ok =
            with(with(unit("stopped", 2), "last_cause", "exited"), "last_exit", Json{{"code", 0}});
        ok["effective_goal"] = "down"; // a transient unit that ended well stays down
        CHECK(judge(t, ok).verdict == Verdict::Done);
        Json bad = with(ok, "last_exit", Json{{"code", 3}});
        bad["last_reason"] = "exited with status 3";
        CHECK(judge(t, bad).verdict == Verdict::Failed);
        CHECK(judge(t, bad).detail == "exited with status 3");
    }

    TEST_CASE("wait: held down by a supervisor fails a start, and is fine for reload") {
        Json held = with(with(unit("stopped", 1), "effective_goal", "down"), "held_down_by", "app");
        Judgement j = judge(target(Want::Up, unit("stopped", 1)), held);
        CHECK(j.verdict == Verdict::Failed);
        CHECK(j.detail == "its supervisor app is stopped; start it: vigilctl start app");
        CHECK(judge(target(Want::Up, unit("stopped", 1), true), held).verdict == Verdict::Done);
        // Stopped again by someone else while starting.
        Json stopped = with(unit("stopping", 2), "effective_goal", "down");
        CHECK(judge(target(Want::Up, unit("stopped", 1)), stopped).verdict == Verdict::Failed);
    }

    TEST_CASE("wait: restart needs a newer run that is ready") {
        WaitTarget t = target(Want::NewUp, unit("running", 3, true));
        Judgement old = judge(t, unit("running", 3, true));
        CHECK(old.verdict == Verdict::Waiting); // the old run, still up: not restarted yet
        CHECK(old.what == "restarting");
        CHECK(old.detail == "state running, the old run has not been stopped yet");
        CHECK(judge(t, unit("stopping", 3)).detail == "state stopping, the old run is ending");
        // Between the old run's end and the new start (ordered restarts): not a failure.
        CHECK(judge(t, unit("stopped", 3)).verdict == Verdict::Waiting);
        CHECK(judge(t, unit("starting", 4)).verdict == Verdict::Waiting);
        CHECK(judge(t, unit("running", 4, true)).verdict == Verdict::Done);
        CHECK(judge(t, failed_spawn(4)).verdict == Verdict::Failed);
        CHECK(judge(t, unit("running", 5, true)).verdict == Verdict::Done);
        CHECK(judge(t, unit("starting", 5)).verdict == Verdict::Failed);
    }

    TEST_CASE("wait: stop is done when stopped and no longer exiting") {
        WaitTarget t = target(Want::Down, unit("running", 3, true));
        Judgement j = judge(t, unit("stopping", 3));
        CHECK(j.verdict == Verdict::Waiting);
        CHECK(j.what == "stopping");
        CHECK(j.detail == "state stopping, waiting for it to end");
        CHECK(judge(t, with(unit("stopping", 3), "exiting", true)).detail ==
              "state stopping, waiting for its output and leftover processes");
        CHECK(judge(t, with(unit("stopped", 3), "exiting", true)).verdict == Verdict::Waiting);
        CHECK(judge(t, unit("stopped", 3)).verdict == Verdict::Done);
        CHECK(judge(t, unit("stopped", 3)).what == "stopped");
        // Started again by someone else: failed.
        CHECK(judge(t, unit("starting", 4)).verdict == Verdict::Failed);
    }

    TEST_CASE("wait: a unit that is gone: a stop is done, a start failed") {
        CHECK(judge(target(Want::Down, unit("running", 1)), Json()).verdict == Verdict::Done);
        Judgement j = judge(target(Want::Up, unit("stopped", 1)), Json());
        CHECK(j.verdict == Verdict::Failed);
        CHECK(j.detail == "removed from the unit files");
        CHECK(judge(target(Want::Up, Json()), with(unit("running", 1, true), "removed", true))
                  .verdict == Verdict::Failed);
    }

    TEST_CASE("wait: hostile status objects are judged without throwing") {
        WaitTarget t = target(Want::Up, Json());
        for (const Json &now : {Json(42), Json::array(), Json::object(),
                                Json{{"state", 7}, {"incarnation", "x"}, {"ready", "yes"}},
                                Json{{"state", "running"}, {"incarnation", -5}, {"ready", true}},
                                Json{{"state", "backoff"}, {"last_reason", "a\x1b[2Jb\nc"}}}) {
            CAPTURE(now.dump());
            Judgement j = judge(t, now);
            CHECK(j.detail.find('\x1b') == std::string::npos);
            CHECK(j.detail.find('\n') == std::string::npos);
        }
        CHECK(judge(t, Json{{"state", "backoff"}, {"last_reason", "a\x1b[2Jb\nc"}}).detail ==
              "a?[2Jb c");
        // Unknown before: any run counts.
        CHECK(judge(t, unit("running", 9, true)).verdict == Verdict::Done);
    }

    TEST_CASE("wait: the targets of each command's answer") {
        Json before{{"units", {unit("running", 3, true), with(unit("stopped", 1), "name", "db")}}};
        Json results{{"results",
                      {{{"unit", "web"}, {"outcome", "already_running"}},
                       {{"unit", "db"}, {"outcome", "ok"}},
                       {{"unit", "x"}, {"outcome", "shutting_down"}},
                       {{"unit", 5}, {"outcome", "ok"}},
                       {{"outcome", "ok"}},
                       "junk"}}};
        auto start = wait_targets(ctl::Cmd::Start, results, before);
        REQUIRE(start.size() == 2);
        CHECK(start[0].unit == "web");
        CHECK(start[0].want == Want::Up);
        CHECK(start[0].before["incarnation"] == 3);
        CHECK(start[1].unit == "db");
        CHECK(start[1].before["state"] == "stopped");
        auto restart = wait_targets(ctl::Cmd::Restart, results, before);
        REQUIRE(restart.size() == 1); // already_running is no restart outcome
        CHECK(restart[0].unit == "db");
        CHECK(restart[0].want == Want::NewUp);
        Json stops{{"results",
                    {{{"unit", "web"}, {"outcome", "ok"}},
                     {{"unit", "db"}, {"outcome", "already_stopped"}},
                     {{"unit", "q"}, {"outcome", "not_found"}}}}};
        auto stop = wait_targets(ctl::Cmd::Stop, stops, Json());
        REQUIRE(stop.size() == 2);
        CHECK(stop[1].want == Want::Down);
        CHECK(stop[1].before.is_null());
        CHECK(wait_targets(ctl::Cmd::Signal, results, before).empty());
        CHECK(wait_targets(ctl::Cmd::Start, Json("x"), before).empty());
        // reload: added (a new child: run 0) and restarted; updated changed in place.
        Json reload{
            {"added", {"new"}}, {"removed", {"old"}}, {"restarted", {"web"}}, {"updated", {"db"}}};
        auto r = wait_targets(ctl::Cmd::Reload, reload, before);
        REQUIRE(r.size() == 2);
        CHECK(r[0].unit == "new");
        CHECK(r[0].want == Want::Up);
        CHECK(r[0].allow_down);
        CHECK(r[0].before["incarnation"] == 0);
        CHECK(r[1].unit == "web");
        CHECK(r[1].want == Want::NewUp);
        CHECK(r[1].before["incarnation"] == 3);
    }

    TEST_CASE("wait: lines for people") {
        CHECK(wait_line("web", {Verdict::Done, "running, ready", ""}, 2100) ==
              "web: running, ready (2s100ms)");
        CHECK(wait_line("web",
                        {Verdict::Waiting, "starting", "state starting, waiting for readiness"},
                        30'000) ==
              "web: still starting after 30s (state starting, waiting for readiness)");
        CHECK(wait_line(
                  "web",
                  {Verdict::Failed, "failed to start", "exec pyhton3: No such file or directory"},
                  50) == "web: failed to start: exec pyhton3: No such file or directory; "
                         "see: vigilctl status web; vigilctl logs web");
    }

    // An instance's status object with the roll of unit "web".
    Json roll_of(const char *name, std::uint64_t id, const char *state, int done, bool in_step,
                 const char *at = nullptr, const char *reason = "") {
        Json u = unit("running", 2, true);
        u["name"] = name;
        u["roll"] = Json{{"id", id},           {"unit", "web"},
                         {"state", state},     {"done", done},
                         {"total", 3},         {"max_unavailable", 1},
                         {"in_step", in_step}, {"at", at ? Json(at) : Json()},
                         {"reason", reason}};
        return u;
    }

    TEST_CASE("wait: a rolling restart waits for its roll, by id") {
        Json answer{{"results", Json::array({{{"unit", "web"}, {"outcome", "ok"}}})},
                    {"roll", {{"id", 5}, {"unit", "web"}, {"state", "running"}}}};
        auto ts = wait_targets(ctl::Cmd::Restart, answer, Json());
        REQUIRE(ts.size() == 1);
        CHECK(ts[0].unit == "web");
        CHECK(ts[0].want == Want::Roll);
        CHECK(ts[0].roll_id == 5);
        // Without a roll (refused, or a plain restart): the usual targets.
        answer["roll"] = nullptr;
        auto plain = wait_targets(ctl::Cmd::Restart, answer, Json());
        REQUIRE(plain.size() == 1);
        CHECK(plain[0].want == Want::NewUp);

        const WaitTarget &t = ts[0];
        Judgement j = judge(t, Json::array({roll_of("web@1", 5, "running", 1, false),
                                            roll_of("web@2", 5, "running", 1, true),
                                            roll_of("web@3", 5, "running", 1, false)}));
        CHECK(j.verdict == Verdict::Waiting);
        CHECK(j.what == "rolling restart 1/3");
        CHECK(j.detail == "replacing web@2");
        j = judge(t, Json::array({roll_of("web@1", 5, "done", 3, false)}));
        CHECK(j.verdict == Verdict::Done);
        CHECK(j.what == "rolling restart done 3/3");
        // An older roll's object on another instance does not count; another unit's neither.
        Json other = roll_of("api", 9, "running", 0, true);
        other["roll"]["unit"] = "api";
        CHECK(judge(t, Json::array({roll_of("web@1", 4, "done", 3, false),
                                    roll_of("web@2", 5, "done", 3, false), other}))
                  .verdict == Verdict::Done);
    }

    TEST_CASE("wait: a rolling restart fails when it stops, is replaced or is lost") {
        WaitTarget t{"web", Want::Roll, Json(), false, 5};
        Judgement j = judge(t, Json::array({roll_of("web@2", 5, "stopped", 1, false, "web@2",
                                                    "exited with status 1 before it was ready")}));
        CHECK(j.verdict == Verdict::Failed);
        CHECK(j.what == "rolling restart stopped at web@2 (1/3)");
        CHECK(j.detail == "exited with status 1 before it was ready; once fixed, run it again: "
                          "vigilctl restart --rolling web");
        j = judge(t, Json::array({roll_of("web@1", 6, "running", 0, true)}));
        CHECK(j.verdict == Verdict::Failed);
        CHECK(j.what == "rolling restart replaced");
        CHECK(judge(t, Json::array()).verdict == Verdict::Failed);
        CHECK(judge(t, Json()).what == "rolling restart lost");
        // Hostile fields: no crash, no verdict out of thin air.
        Json odd = roll_of("web@1", 5, "running", 0, true);
        odd["roll"]["done"] = "x";
        odd["roll"]["at"] = 7;
        CHECK(judge(t, Json::array({odd})).verdict == Verdict::Waiting);
    }

} // TEST_SUITE

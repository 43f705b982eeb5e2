// The loader against golden fixtures, plus the properties goldens cannot show (ids, parents,
// fingerprints, spawn specs).
//
// tests/unit/fixtures/bad/<case>/units/*.json must produce exactly the diagnostics in
// bad/<case>/expected; good/<case>/units/ must load cleanly and render as good/<case>/expected.
// The test chdirs into the case directory and loads "units", so paths in diagnostics read
// "units/web.json:7:14: ..." whatever the checkout's location. VIGIL_UPDATE_GOLDEN=1 rewrites
// the expected files instead of comparing (review the diff before committing).
#include <algorithm>
#include <cstdlib>
#include <doctest/doctest.h>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <pwd.h>
#include <unistd.h>

#include "files.hpp"
#include "temp_units.hpp"
#include "vigil/unit/unit.hpp"

using namespace vigil;
using namespace vigil::unit;
using vigil::unit::test::diagnostics_text;
using vigil::unit::test::TempUnits;
namespace fs = std::filesystem;

namespace {

const fs::path fixtures = VIGIL_UNIT_FIXTURES;

using vigil::test::slurp;

// Loads <case>/units from inside <case>, restoring the working directory afterwards.
LoadResult load_case(const fs::path &case_dir) {
    auto old = fs::current_path();
    fs::current_path(case_dir);
    LoadResult r = load_dir("units");
    fs::current_path(old);
    return r;
}

void compare_golden(const fs::path &case_dir, const std::string &actual) {
    fs::path golden = case_dir / "expected";
    if (std::getenv("VIGIL_UPDATE_GOLDEN")) {
        std::ofstream(golden) << actual;
        return;
    }
    REQUIRE_MESSAGE(fs::exists(golden), "missing golden file " << golden);
    CHECK(actual == slurp(golden));
}

std::vector<fs::path> cases(const char *kind) {
    std::vector<fs::path> out;
    for (const auto &e : fs::directory_iterator(fixtures / kind))
        if (e.is_directory()) out.push_back(e.path());
    std::sort(out.begin(), out.end());
    return out;
}

const core::ChildSpec &node(const LoadResult &r, const std::string &name) {
    for (const auto &n : r.tree.nodes)
        if (n.name == name) return n;
    FAIL("no node " << name);
    throw 0;
}

std::size_t index_of(const LoadResult &r, const std::string &name) {
    for (std::size_t i = 0; i < r.tree.nodes.size(); ++i)
        if (r.tree.nodes[i].name == name) return i;
    FAIL("no node " << name);
    return 0;
}

} // namespace

TEST_SUITE("unit") {

    TEST_CASE("bad fixtures: every problem reported, exactly as in the golden file") {
        auto all = cases("bad");
        CHECK(all.size() >= 30);
        for (const auto &c : all) {
            CAPTURE(c.filename().string());
            LoadResult r = load_case(c);
            CHECK_FALSE(r.ok());
            CHECK(r.tree.nodes.empty()); // a tree with errors is never handed out
            compare_golden(c, diagnostics_text(r));
        }
    }

    TEST_CASE("good fixtures: load cleanly and render as in the golden file") {
        auto all = cases("good");
        CHECK(all.size() >= 4);
        for (const auto &c : all) {
            CAPTURE(c.filename().string());
            LoadResult r = load_case(c);
            CHECK(diagnostics_text(r) == "");
            REQUIRE(r.ok());
            REQUIRE(r.units.size() == r.tree.nodes.size());
            compare_golden(c, render_tree(r));
        }
    }

    TEST_CASE("the demo units in units/ are valid") {
        LoadResult r = load_dir(fs::path(VIGIL_SOURCE_ROOT) / "units");
        CHECK(diagnostics_text(r) == "");
        CHECK(r.ok());
        CHECK(r.tree.nodes.size() >= 5);
    }

    TEST_CASE("a missing directory is one diagnostic, not a crash") {
        LoadResult r = load_dir(fixtures / "does-not-exist");
        REQUIRE(r.diagnostics.size() == 1);
        CHECK(r.diagnostics[0].file.empty());
        CHECK(format(r.diagnostics[0]).find("cannot read unit directory") == 0);
    }

    TEST_CASE("format() omits what a diagnostic does not have") {
        CHECK(format({"units/web.json", 7, 14, "/restart", "bad"}) ==
              "units/web.json:7:14: /restart: bad");
        CHECK(format({"units/web.json", 0, 0, "", "bad"}) == "units/web.json: bad");
        CHECK(format({"units/web.json", 1, 1, "", "bad"}) == "units/web.json:1:1: bad");
        CHECK(format({"", 0, 0, "", "bad"}) == "bad");
    }

    TEST_CASE("tree structure: root first, parents and children agree, start order from after") {
        LoadResult r = load_case(fixtures / "good" / "nested");
        REQUIRE(r.ok());
        const auto &nodes = r.tree.nodes;
        CHECK(nodes[0].name == "root");
        CHECK_FALSE(nodes[0].parent.has_value());
        CHECK(nodes[0].kind == core::Kind::Supervisor);
        for (std::size_t i = 0; i < nodes.size(); ++i) {
            CAPTURE(nodes[i].name);
            CHECK(r.units[i].name == nodes[i].name);
            for (auto c : nodes[i].children) {
                REQUIRE(c.value < nodes.size());
                CHECK(nodes[c.value].parent == ChildId{static_cast<std::uint32_t>(i)});
                CHECK(c.value > i); // pre-order: parents before children
            }
            if (i > 0) {
                REQUIRE(nodes[i].parent.has_value());
                const auto &sib = nodes[nodes[i].parent->value].children;
                CHECK(std::count(sib.begin(), sib.end(), ChildId{static_cast<std::uint32_t>(i)}) ==
                      1);
            }
        }
        // The pipeline supervisor starts producer before consumer (consumer is after producer).
        const auto &pipe = node(r, "pipeline");
        std::vector<std::string> order;
        for (auto c : pipe.children)
            order.push_back(nodes[c.value].name);
        CHECK(order == std::vector<std::string>{"source", "filter", "sink@1", "sink@2", "sink@3"});
    }

    TEST_CASE("instances expand with VIGIL_INSTANCE and distinct fingerprints") {
        LoadResult r = load_case(fixtures / "good" / "nested");
        REQUIRE(r.ok());
        std::set<std::uint64_t> fps;
        for (int k = 1; k <= 3; ++k) {
            std::string n = "sink@" + std::to_string(k);
            auto i = index_of(r, n);
            CHECK(r.units[i].spawn.env.at("VIGIL_INSTANCE") == std::to_string(k));
            CHECK(r.units[i].file == "units/sink.json");
            fps.insert(r.tree.nodes[i].fingerprint);
        }
        CHECK(fps.size() == 3);
    }

    TEST_CASE("readiness maps to wait_ready and start_timeout") {
        LoadResult r = load_case(fixtures / "good" / "full");
        REQUIRE(r.ok());
        const auto &web = node(r, "web");
        CHECK(web.wait_ready);
        REQUIRE(web.start_timeout.has_value());
        CHECK(*web.start_timeout == Duration{20'000});
        LoadResult d = load_case(fixtures / "good" / "defaults");
        REQUIRE(d.ok());
        const auto &app = node(d, "app");
        CHECK_FALSE(app.wait_ready);
        CHECK_FALSE(app.start_timeout.has_value());
        CHECK(app.restart == core::Restart::Permanent);
        CHECK(app.stop.signal == 15);
        CHECK(app.stop.timeout == Duration{10'000});
        CHECK(d.tree.nodes[0].intensity == 5);
        CHECK(d.tree.nodes[0].period == Duration{10'000});
        CHECK_FALSE(d.tree.nodes[0].stop.timeout.has_value()); // supervisors: infinity
    }

    TEST_CASE("spawn spec carries argv, env, limits and umask") {
        LoadResult r = load_case(fixtures / "good" / "full");
        REQUIRE(r.ok());
        const auto &u = r.units[index_of(r, "web")];
        CHECK(u.spawn.argv == std::vector<std::string>{"python3", "-m", "http.server", "8080"});
        CHECK(u.spawn.cwd == "/srv/www");
        CHECK(u.spawn.env.at("PYTHONUNBUFFERED") == "1");
        CHECK(u.spawn.env_file == "/etc/default/web");
        CHECK(u.spawn.env_file_optional);
        CHECK(u.spawn.user == "www-data");
        CHECK(u.spawn.group == "33");
        CHECK(u.spawn.umask == 027u);
        CHECK(u.spawn.limits.size() == 3);
        REQUIRE(u.patterns.size() == 2);
        CHECK(u.patterns[0].line > 0);
        CHECK(u.patterns[0].column > 0);
    }

    TEST_CASE("logs.stderr: \"stdout\" sends stderr into stdout's pipe; a stderr pattern is then "
              "refused") {
        TempUnits t;
        t.write("one.json", R"({"command": ["true"], "logs": {"stderr": "stdout"}})");
        t.write("two.json", R"({"command": ["true"], "logs": {"stderr": "separate"}})");
        t.write("three.json", R"({"command": ["true"]})");
        LoadResult r = t.load();
        REQUIRE_MESSAGE(r.ok(), diagnostics_text(r));
        CHECK(r.units[index_of(r, "one")].logs.merge_stderr);
        CHECK_FALSE(r.units[index_of(r, "two")].logs.merge_stderr);
        CHECK_FALSE(r.units[index_of(r, "three")].logs.merge_stderr);
        CHECK(r.tree.nodes[index_of(r, "one")].fingerprint !=
              r.tree.nodes[index_of(r, "two")].fingerprint);

        TempUnits bad;
        bad.write("p.json", R"({"command": ["true"], "logs": {"stderr": "stdout"},
 "patterns": [{"match": "x", "stream": "stderr"}]})");
        bad.write("q.json", R"({"command": ["true"], "logs": {"stderr": "both"}})");
        LoadResult b = bad.load();
        REQUIRE_FALSE(b.ok());
        const std::string text = diagnostics_text(b);
        CHECK(text.find("/patterns/0/stream: there are no stderr lines to match") !=
              std::string::npos);
        CHECK(text.find("/logs/stderr: expected one of \"separate\", \"stdout\"") !=
              std::string::npos);
    }

    TEST_CASE("users and groups are resolved when units are loaded") {
        TempUnits t;
        t.write("web.json", R"({"command": ["true"], "user": "nobody"})");
        t.write("plain.json", R"({"command": ["true"]})");
        t.write("ids.json", R"({"command": ["true"], "user": 4000000000, "group": "4000000001"})");
        LoadResult r = t.load();
        REQUIRE_MESSAGE(r.ok(), diagnostics_text(r));
        const passwd *pw = getpwnam("nobody");
        REQUIRE(pw != nullptr);
        const auto &web = r.units[index_of(r, "web")].spawn.identity;
        REQUIRE(web.has_value());
        CHECK(web->uid == pw->pw_uid);
        CHECK(web->gid == pw->pw_gid); // the user's primary group
        CHECK(web->user_name == "nobody");
        CHECK(web->set_uid == (geteuid() != pw->pw_uid || getegid() != pw->pw_gid));
        // No user and no group: an identity that changes nothing, so spawn() looks nothing up.
        const auto &plain = r.units[index_of(r, "plain")].spawn.identity;
        REQUIRE(plain.has_value());
        CHECK_FALSE(plain->set_uid);
        CHECK_FALSE(plain->set_gid);
        CHECK_FALSE(plain->set_groups);
        // A numeric uid without a passwd entry runs with the group it is given.
        const auto &ids = r.units[index_of(r, "ids")].spawn.identity;
        REQUIRE(ids.has_value());
        CHECK(ids->uid == 4000000000u);
        CHECK(ids->gid == 4000000001u);
        CHECK(ids->groups == std::vector<std::uint32_t>{4000000001u});
    }

    TEST_CASE("instances share their unit's resolved identity") {
        TempUnits t;
        t.write("pool.json", R"({"command": ["true"], "user": "nobody", "instances": 3})");
        LoadResult r = t.load();
        REQUIRE_MESSAGE(r.ok(), diagnostics_text(r));
        for (const char *n : {"pool@1", "pool@2", "pool@3"}) {
            CAPTURE(n);
            const auto &id = r.units[index_of(r, n)].spawn.identity;
            REQUIRE(id.has_value());
            CHECK(id->user_name == "nobody");
        }
    }

    TEST_CASE("update, max_unavailable and stop.drain; instances know their unit") {
        TempUnits t;
        t.write("web.json", R"({"command": ["true"], "instances": 3, "update": "rolling",
                                "max_unavailable": 2, "stop": {"drain": "5s"}})");
        t.write("api.json", R"({"command": ["true"]})");
        LoadResult r = t.load();
        REQUIRE_MESSAGE(r.ok(), diagnostics_text(r));
        for (int k = 1; k <= 3; ++k) {
            const auto &w = node(r, "web@" + std::to_string(k));
            CHECK(w.unit == "web");
            CHECK(w.instance == k);
            CHECK(w.update == core::Update::Rolling);
            CHECK(w.max_unavailable == 2);
            CHECK(w.stop.drain == Duration{5'000});
        }
        const auto &api = node(r, "api");
        CHECK(api.unit == "api");
        CHECK(api.instance == 0);
        CHECK(api.update == core::Update::Restart);
        CHECK(api.max_unavailable == 1);
        CHECK(api.stop.drain == Duration{0});
        const std::string text = render_tree(r);
        CHECK(text.find("update: rolling max_unavailable=2") != std::string::npos);
        CHECK(text.find("stop_timeout=10s drain=5s") != std::string::npos);
    }

    TEST_CASE("how a change is rolled out does not restart: update and max_unavailable are not "
              "in the fingerprint") {
        TempUnits t;
        t.write("web.json", R"({"command": ["true"], "instances": 2})");
        LoadResult a = t.load();
        t.write("web.json", R"({"command": ["true"], "instances": 2, "update": "rolling",
                                "max_unavailable": 2})");
        LoadResult b = t.load();
        REQUIRE(a.ok());
        REQUIRE(b.ok());
        CHECK(node(a, "web@1").fingerprint == node(b, "web@1").fingerprint);
    }

    TEST_CASE("render_tree shows strings with control characters quoted") {
        TempUnits t;
        t.write("web.json", R"({"command": ["true"], "description": "a\u001b[2Jb",
                               "cwd": "/srv/\u001b]0;x\u0007", "logs": {"file": "/var/log/w"}})");
        LoadResult r = t.load();
        REQUIRE_MESSAGE(r.ok(), diagnostics_text(r));
        std::string text = render_tree(r);
        CHECK(text.find('\x1b') == std::string::npos);
        CHECK(text.find("description: \"a\\u001b[2Jb\"") != std::string::npos);
        CHECK(text.find("cwd: \"/srv/\\u001b]0;x\\u0007\"") != std::string::npos);
        CHECK(text.find("file=/var/log/w ") != std::string::npos); // plain strings stay plain
    }

    TEST_CASE("fingerprints ignore tree structure and description, and see everything else") {
        LoadResult a = load_case(fixtures / "fingerprint" / "a");
        LoadResult b = load_case(fixtures / "fingerprint" / "b");
        REQUIRE(a.ok());
        REQUIRE(b.ok());
        // moved: different parent, after and description; same command.
        CHECK(node(a, "moved").fingerprint == node(b, "moved").fingerprint);
        // edited: a different argument.
        CHECK(node(a, "edited").fingerprint != node(b, "edited").fingerprint);
        // Loading twice gives the same values (no addresses or iteration order leak in).
        LoadResult a2 = load_case(fixtures / "fingerprint" / "a");
        for (std::size_t i = 0; i < a.tree.nodes.size(); ++i)
            CHECK(a.tree.nodes[i].fingerprint == a2.tree.nodes[i].fingerprint);
    }

} // TEST_SUITE

// snapshot_refusal_test.cpp: Core::restore refuses bad bytes and a tree that differs, whole,
// with an error that says what was wrong; what it accepts it reproduces exactly.
#include <doctest/doctest.h>

#include <cstring>

#include "sim.hpp"
#include "snapshot_format.hpp"

using namespace vigil;
using namespace vigil::core;
using namespace vigil::test;
using namespace std::chrono_literals;

namespace frame = vigil::core::snapshot_frame;

namespace {

using Bytes = std::vector<std::uint8_t>;

TreeSpec small_tree() {
    return root(Strategy::OneForOne,
                {service("a"),
                 service("b",
                         [](ChildSpec &s) {
                             s.backoff = {Duration{100}, Duration{1000}, 2.0, 0.2, 10s};
                             s.watchdog = Duration{500};
                         }),
                 supervisor("g", Strategy::OneForAll, {service("c", wait_ready()), service("d")})});
}

// A small core in the middle of things: b in backoff, c waiting for readiness.
Bytes busy_snapshot(Sim &sim) {
    sim.start_all();
    sim.advance(100ms);
    sim.exit("b", 1);
    sim.exit("b", 1);
    REQUIRE(sim.state("b") == ChildState::Backoff);
    REQUIRE(sim.state("c") == ChildState::Starting);
    const SnapshotResult s = sim.core.snapshot();
    REQUIRE(s.error.empty());
    return s.bytes;
}

void set_u32(Bytes &b, std::size_t at, std::uint32_t v) {
    std::memcpy(b.data() + at, &v, 4);
}

std::string refused(const TreeSpec &loaded, const Bytes &b) {
    RestoreResult r = Core::restore(loaded, b);
    CHECK(!r.core);
    CHECK(r.error.rfind("restore: ", 0) == 0);
    return r.error;
}

// An accepted snapshot must come back byte for byte, and the core must take inputs.
void exercise(Core &c, const Bytes &b) {
    const SnapshotResult again = c.snapshot();
    REQUIRE(again.error.empty());
    CHECK(again.bytes == b);
    std::vector<Action> out;
    c.command(Command{CommandKind::Shutdown, root_id, 0, "test"}, at_ms(5000), out);
    c.handle(DeadlineReached{}, at_ms(100'000), out);
    c.command(Command{CommandKind::Shutdown, root_id, 0, "test"}, at_ms(100'001), out);
}

// The payload offset of the root's first child id: the core's fields (42 bytes), the node count,
// the root's name ("root"), kind, no parent, its children count.
constexpr std::size_t root_first_child = frame::header_bytes + 42 + 4 + 4 + 4 + 1 + 1 + 4;
constexpr std::size_t node_count_at = frame::header_bytes + 42;

} // namespace

TEST_SUITE("core") {

    TEST_CASE("snapshot: restore reproduces the core exactly (round trip)") {
        Sim sim(small_tree());
        const Bytes b = busy_snapshot(sim);
        RestoreResult r = Core::restore(small_tree(), b);
        REQUIRE_MESSAGE(r.core, r.error);
        CHECK(r.core->status(sim.id("b")).state == ChildState::Backoff);
        CHECK(r.core->next_deadline() == sim.core.next_deadline());
        CHECK(r.core->find("d") == std::optional<ChildId>(sim.id("d")));
        exercise(*r.core, b);
    }

    TEST_CASE("snapshot: restore refuses a format version it does not know") {
        Sim sim(small_tree());
        Bytes b = busy_snapshot(sim);
        set_u32(b, frame::version_at, snapshot_format_version + 1);
        CHECK(refused(small_tree(), b).find("format version 2 is not known") != std::string::npos);
        b[0] = 'X';
        CHECK(refused(small_tree(), b).find("bad magic") != std::string::npos);
        CHECK(refused(small_tree(), {}).find("less than a header") != std::string::npos);
    }

    TEST_CASE("snapshot: restore refuses the bytes cut at every length") {
        Sim sim(small_tree());
        const Bytes b = busy_snapshot(sim);
        for (std::size_t n = 0; n < b.size(); ++n) {
            CAPTURE(n);
            Bytes cut(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n));
            CHECK(!refused(small_tree(), cut).empty());
            // The same cut with a header that agrees: the payload itself is short.
            if (n < frame::header_bytes) continue;
            const std::uint64_t length = n - frame::header_bytes;
            std::memcpy(cut.data() + frame::length_at, &length, 8);
            frame::seal(cut.data(), cut.size());
            const std::string e = refused(small_tree(), cut);
            CHECK((e.find("truncated") != std::string::npos ||
                   e.find("no root supervisor") != std::string::npos));
        }
    }

    TEST_CASE("snapshot: a flipped byte is refused, or with a checksum that agrees, read safely") {
        Sim sim(small_tree());
        const Bytes b = busy_snapshot(sim);
        int accepted = 0;
        for (std::size_t i = 0; i < b.size(); ++i) {
            CAPTURE(i);
            for (std::uint8_t mask : {std::uint8_t{0x01}, std::uint8_t{0xff}}) {
                Bytes f = b;
                f[i] ^= mask;
                CHECK(!refused(small_tree(), f).empty());
                if (i < frame::header_bytes) continue;
                frame::seal(f.data(), f.size()); // past the checksum: the reader's own checks
                RestoreResult r = Core::restore(small_tree(), f);
                if (!r.core) {
                    CHECK(r.error.rfind("restore: ", 0) == 0);
                    continue;
                }
                ++accepted; // a value that is still valid (a time, a string's byte...)
                exercise(*r.core, f);
            }
        }
        CHECK(accepted > 0);
    }

    TEST_CASE("snapshot: restore refuses ids out of range, impossible states and counts over "
              "bounds") {
        Sim sim(small_tree());
        const Bytes b = busy_snapshot(sim);

        Bytes bad_id = b;
        set_u32(bad_id, root_first_child, 999);
        frame::seal(bad_id.data(), bad_id.size());
        CHECK(refused(small_tree(), bad_id).find("child id out of range (999)") !=
              std::string::npos);

        Bytes many = b;
        set_u32(many, node_count_at, max_snapshot_nodes + 1);
        frame::seal(many.data(), many.size());
        CHECK(refused(small_tree(), many).find("over the bound") != std::string::npos);

        // a runs with pid p: its state, 5 bytes before its pid, says Stopped.
        const std::int32_t pid = sim.pid("a").value;
        std::uint8_t pattern[10] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0};
        std::memcpy(pattern + 1, &pid, 4);
        std::memcpy(pattern + 6, &pid, 4);
        const auto at = std::search(b.begin(), b.end(), pattern, pattern + 10);
        REQUIRE(at != b.end());
        const auto state_at = static_cast<std::size_t>(at - b.begin()) - 5;
        REQUIRE(b[state_at] == static_cast<std::uint8_t>(ChildState::Running));
        Bytes stopped = b;
        stopped[state_at] = static_cast<std::uint8_t>(ChildState::Stopped);
        frame::seal(stopped.data(), stopped.size());
        CHECK(refused(small_tree(), stopped).find("a process while it is stopped") !=
              std::string::npos);
        stopped[state_at] = 9;
        frame::seal(stopped.data(), stopped.size());
        CHECK(refused(small_tree(), stopped).find("bad value 9 for state") != std::string::npos);

        Bytes longer = b;
        longer.push_back(0);
        set_u32(longer, frame::length_at, static_cast<std::uint32_t>(longer.size() - 32));
        frame::seal(longer.data(), longer.size());
        CHECK(refused(small_tree(), longer).find("1 bytes after the end") != std::string::npos);
    }

    TEST_CASE("snapshot: restore refuses a loaded tree that differs from the snapshot's") {
        Sim sim(small_tree());
        const Bytes b = busy_snapshot(sim);

        TreeSpec added = small_tree();
        added.nodes[0].children.push_back(ChildId{static_cast<std::uint32_t>(added.nodes.size())});
        added.nodes.push_back(service("e").spec);
        added.nodes.back().parent = root_id;
        CHECK(refused(added, b).find("the loaded tree has 6 units, the snapshot 5") !=
              std::string::npos);

        TreeSpec renamed = small_tree();
        renamed.nodes[1].name = "z";
        CHECK(refused(renamed, b).find("unit \"z\" is not in the snapshot") != std::string::npos);

        TreeSpec kind = small_tree();
        kind.nodes[1].kind = Kind::Supervisor;
        CHECK(refused(kind, b).find("unit \"a\" changed its kind or its supervisor") !=
              std::string::npos);

        // d moves from g to the root.
        TreeSpec moved = small_tree();
        const auto d = *sim.core.find("d");
        const auto g = *sim.core.find("g");
        std::erase(moved.nodes[g.value].children, d);
        moved.nodes[0].children.push_back(d);
        moved.nodes[d.value].parent = root_id;
        CHECK(refused(moved, b).find("unit \"d\" changed its kind or its supervisor") !=
              std::string::npos);

        TreeSpec invalid = small_tree();
        invalid.nodes[2].name = "a";
        CHECK(refused(invalid, b).find("not a valid tree") != std::string::npos);
    }

    TEST_CASE("snapshot: a value over a bound fails the snapshot, which changes nothing") {
        Sim sim(small_tree());
        sim.start_all();
        const Pid pid = sim.pid("a");
        sim.inject(
            StatusText{sim.id("a"), Incarnation{1}, std::string(max_snapshot_string + 1, 'x')});
        const SnapshotResult s = sim.core.snapshot();
        CHECK(s.bytes.empty());
        CHECK(s.error.find("a string of") != std::string::npos);
        CHECK(sim.pid("a") == pid);
        sim.inject(StatusText{sim.id("a"), Incarnation{1}, "fine"});
        CHECK(sim.core.snapshot().error.empty());
    }
}

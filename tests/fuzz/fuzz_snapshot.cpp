// tests/fuzz/fuzz_snapshot.cpp: libFuzzer target for Core::restore (the core's snapshot reader).
//
// The target builds four cores in known states with the simulated shell (tests/support/sim):
// all running; busy (a child in backoff, one waiting for readiness with a start timeout, one
// stopping with its stop timeout running, leftovers, a sweep); after a reload that removed a
// unit still going down; finished. Their snapshots are the bases. The first input byte picks
// what to restore:
//   byte0 & 0x80     base 3, patched (below);
//   byte0 % 5 == 0   the rest of the input is the snapshot, as it is (the frame's checks);
//   byte0 % 5 == 1   the same with its length and checksum made to agree (the reader's checks);
//   otherwise        base (byte0 % 5 - 2), patched by the rest of the input, three bytes a
//                    patch: a 16-bit offset into the payload (modulo its size) and the byte to
//                    write there; then the checksum is made to agree. Patches reach every
//                    field of a real snapshot at once.
// Restored against the tree each base was loaded with (raw input: each in turn), invariants:
//  - a refusal has an error and no core; an accepted snapshot has no error;
//  - an accepted snapshot comes back byte for byte from the restored core's snapshot();
//  - the restored core takes events, commands, a reload and time without breaking, and its
//    snapshot after that is accepted again.
// VIGIL_FUZZ_SEEDS=DIR writes the four bases to DIR as raw-mode inputs (the committed seeds in
// corpus/snapshot came from it).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "sim.hpp"
#include "snapshot_format.hpp"
#include "vigil/core/core.hpp"

namespace {

using namespace vigil;
using namespace vigil::core;
using namespace vigil::test;
using namespace std::chrono_literals;
namespace frame = vigil::core::snapshot_frame;

void check(bool ok, const char *what) {
    if (ok) return;
    std::fprintf(stderr, "fuzz_snapshot: invariant broken: %s\n", what);
    std::abort();
}

TreeSpec tree(bool with_b = true) {
    std::vector<NodeDef> kids;
    kids.push_back(service("a", [](ChildSpec &s) {
        s.backoff = {Duration{100}, Duration{1000}, 2.0, 0.2, 10s};
        s.watchdog = Duration{500};
    }));
    if (with_b) kids.push_back(service("b", [](ChildSpec &s) { s.stop.timeout = 2s; }));
    kids.push_back(service("c", [](ChildSpec &s) {
        s.wait_ready = true;
        s.start_timeout = 1s;
    }));
    kids.push_back(supervisor("g", Strategy::RestForOne,
                              {service("g1"), service("g2"), service("g3", temporary())}));
    TreeSpec t = root(Strategy::OneForOne, std::move(kids));
    t.seed = 42;
    return t;
}

struct Base {
    std::vector<std::uint8_t> bytes;
    TreeSpec loaded;
};

std::vector<std::uint8_t> snap(Sim &sim) {
    const SnapshotResult s = sim.core.snapshot();
    check(s.error.empty(), "the bases can be snapshot");
    return s.bytes;
}

std::vector<Base> make_bases() {
    std::vector<Base> bases;
    Sim sim(tree());
    sim.on_signal("b", OnSignal::Ignore);
    sim.start_all();
    sim.ready("c");
    bases.push_back({snap(sim), tree()});
    sim.advance(200ms);
    sim.exit("a", 1);
    sim.exit("a", 1); // backoff
    sim.command(CommandKind::Restart, "c");
    sim.command(CommandKind::Stop, "b"); // stopping, its timeout running
    sim.linger("g2", true);
    sim.exit("g2", 0); // leftovers: a sweep waits for g2's end
    sim.inject(LeftBehind{sim.id("g1"), {Pid{7001}}});
    bases.push_back({snap(sim), tree()});
    sim.reload(tree(false)); // b removed while it is still going down
    bases.push_back({snap(sim), tree(false)});
    sim.command(CommandKind::Shutdown, "root");
    sim.command(CommandKind::Shutdown, "root");
    sim.advance(10s);
    check(sim.exit_status.has_value(), "the last base has exited");
    bases.push_back({snap(sim), tree(false)});
    return bases;
}

const std::vector<Base> &bases() {
    static const std::vector<Base> b = [] {
        std::vector<Base> made = make_bases();
        if (const char *dir = std::getenv("VIGIL_FUZZ_SEEDS"))
            for (std::size_t i = 0; i < made.size(); ++i) {
                std::ofstream f(std::string(dir) + "/base-" + std::to_string(i), std::ios::binary);
                f.put(0);
                f.write(reinterpret_cast<const char *>(made[i].bytes.data()),
                        static_cast<std::streamsize>(made[i].bytes.size()));
            }
        return made;
    }();
    return b;
}

void exercise(Core &core, const TreeSpec &loaded) {
    std::vector<Action> out;
    TimePoint now = at_ms(1'000'000);
    for (std::uint32_t i = 0; i < core.size(); ++i) {
        const ChildStatus s = core.status(ChildId{i});
        core.handle(Exited{s.id, s.incarnation, s.pid.value_or(Pid{1}), ExitStatus::exited(1)}, now,
                    out);
        core.handle(Drained{s.id, s.incarnation}, now, out);
        core.command(Command{CommandKind::Restart, s.id, 0, "fuzz"}, now, out);
    }
    core.reconfigure(loaded, now, out);
    for (int i = 0; i < 20 && core.next_deadline(); ++i) {
        now = std::max(now, *core.next_deadline());
        core.handle(DeadlineReached{}, now, out);
    }
    core.command(Command{CommandKind::Shutdown, root_id, 0, "fuzz"}, now, out);
    const SnapshotResult again = core.snapshot();
    if (again.error.empty())
        check(Core::restore(loaded, again.bytes).core != nullptr,
              "a restored core's later snapshot is accepted");
}

void try_restore(const std::vector<std::uint8_t> &bytes, const TreeSpec &loaded) {
    RestoreResult r = Core::restore(loaded, bytes);
    check((r.core == nullptr) != r.error.empty(), "a refusal has an error, a success none");
    if (!r.core) return;
    const SnapshotResult s = r.core->snapshot();
    check(s.error.empty() && s.bytes == bytes, "an accepted snapshot comes back byte for byte");
    exercise(*r.core, loaded);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    if (size < 1) return 0;
    const std::vector<Base> &b = bases();
    const std::uint8_t mode = data[0];
    std::vector<std::uint8_t> bytes;
    if (!(mode & 0x80) && mode % 5 <= 1) {
        bytes.assign(data + 1, data + size);
        if (mode % 5 == 1 && bytes.size() >= frame::header_bytes) {
            const std::uint64_t length = bytes.size() - frame::header_bytes;
            std::memcpy(bytes.data() + frame::length_at, &length, 8);
            frame::seal(bytes.data(), bytes.size());
        }
        for (const Base &base : b)
            try_restore(bytes, base.loaded);
        return 0;
    }
    const Base &base = b[(mode & 0x80) ? 3 : mode % 5 - 2];
    bytes = base.bytes;
    const std::size_t payload = bytes.size() - frame::header_bytes;
    for (std::size_t i = 1; i + 3 <= size; i += 3) {
        const std::size_t at = (std::size_t{data[i]} << 8 | data[i + 1]) % payload;
        bytes[frame::header_bytes + at] = data[i + 2];
    }
    frame::seal(bytes.data(), bytes.size());
    try_restore(bytes, base.loaded);
    return 0;
}

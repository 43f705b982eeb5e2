// core_bench.cpp: throughput of the supervision core (the scale of docs/DESIGN.md §7).
//
// One cycle = a child exits with status 1 (the core decides and counts a restart and asks for
// a spawn) + the shell answers Spawned (the core marks it running): two events, each with its
// history records and Publish actions, exactly what vigild does per crash. Children are crashed
// round robin so every cycle touches a different child. If the cost of one cycle grew with the
// number of children, the events/s column would fall with n; it stays flat.
//
// Variants: flat (n services under the root, one_for_one), nested (sqrt(n) supervisors of
// sqrt(n) services), and backoff (flat, with a 1 ms restart delay, so every restart also goes
// through the deadline heap and a DeadlineReached event).
//
// Snapshots (Core::snapshot and Core::restore, what a re-exec of vigild costs the core): the
// flat tree right after its start (short histories) and after every child crashed 16 times
// (every history ring full), CPU time of the best of 5.
//
// Run: build-dir/bench/core_bench [cycles [n]]   (prints markdown tables)
//      build-dir/bench/core_bench snapshot [n crashes]   (only the snapshot table, or a row)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <malloc.h>
#include <string>
#include <vector>

#include "vigil/core/core.hpp"

using namespace vigil;
using namespace vigil::core;

namespace {

ChildSpec service(std::string name, Duration backoff) {
    ChildSpec s;
    s.name = std::move(name);
    s.backoff.initial = backoff;
    s.backoff.jitter = 0.1;
    return s;
}

ChildSpec supervisor(std::string name) {
    ChildSpec s;
    s.name = std::move(name);
    s.kind = Kind::Supervisor;
    s.intensity = 1'000'000'000; // never give up during the benchmark
    s.period = Duration{1000};
    s.stop.timeout.reset();
    return s;
}

TreeSpec flat(std::size_t n, Duration backoff) {
    TreeSpec t;
    t.nodes.push_back(supervisor("root"));
    for (std::size_t i = 0; i < n; ++i) {
        t.nodes[0].children.push_back(ChildId{static_cast<std::uint32_t>(t.nodes.size())});
        t.nodes.push_back(service("svc" + std::to_string(i), backoff));
    }
    return t;
}

TreeSpec nested(std::size_t n) {
    TreeSpec t;
    t.nodes.push_back(supervisor("root"));
    const auto groups = static_cast<std::size_t>(std::ceil(std::sqrt(static_cast<double>(n))));
    std::size_t made = 0;
    for (std::size_t g = 0; g < groups && made < n; ++g) {
        const ChildId sup{static_cast<std::uint32_t>(t.nodes.size())};
        t.nodes[0].children.push_back(sup);
        t.nodes.push_back(supervisor("sup" + std::to_string(g)));
        for (std::size_t i = 0; i < groups && made < n; ++i, ++made) {
            t.nodes[sup.value].children.push_back(
                ChildId{static_cast<std::uint32_t>(t.nodes.size())});
            t.nodes.push_back(service("svc" + std::to_string(made), Duration{0}));
        }
    }
    return t;
}

// A minimal shell: answers every Spawn at once, remembers pids and incarnations.
struct Shell {
    Core &core;
    std::vector<Pid> pid;
    std::vector<Incarnation> inc;
    std::vector<Action> out, more;
    std::int32_t next_pid = 100;
    std::uint64_t events = 0;

    void apply(TimePoint now) {
        while (!out.empty()) {
            more.clear();
            for (const Action &a : out) {
                if (const auto *sp = std::get_if<Spawn>(&a)) {
                    const Pid p{next_pid++};
                    pid[sp->child.value] = p;
                    inc[sp->child.value] = sp->incarnation;
                    core.handle(Spawned{sp->child, sp->incarnation, p}, now, more);
                    ++events;
                }
            }
            out.swap(more);
        }
    }
};

struct Result {
    double events_per_s;
    double cycles_per_s;
    double boot_ms;
    double kib_per_child; // heap held by the core (and the shell's tables) per child, at the end
};

// Heap bytes in use (glibc mallinfo2): what the core holds, unlike RSS, which keeps what a
// previous variant freed.
std::size_t heap_in_use() {
    const struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}

Result run(TreeSpec spec, std::size_t cycles) {
    std::vector<ChildId> services;
    for (std::size_t i = 0; i < spec.nodes.size(); ++i)
        if (spec.nodes[i].kind == Kind::Service)
            services.push_back(ChildId{static_cast<std::uint32_t>(i)});
    const std::size_t size = spec.nodes.size();
    const std::size_t heap0 = heap_in_use();
    Core core{std::move(spec)};
    Shell sh{core, std::vector<Pid>(size), std::vector<Incarnation>(size), {}, {}};
    TimePoint now = at_ms(1'000'000);

    // CPU time, not wall time: the machine may be shared, and the core never waits.
    const std::clock_t t0 = std::clock();
    core.start(now, sh.out);
    sh.apply(now);
    const std::clock_t t1 = std::clock();
    sh.events = 0;

    for (std::size_t i = 0; i < cycles; ++i) {
        const ChildId c = services[i % services.size()];
        // A process's end is two facts for the core: its output drained, and it was reaped.
        core.handle(Drained{c, sh.inc[c.value]}, now, sh.out);
        core.handle(Exited{c, sh.inc[c.value], sh.pid[c.value], ExitStatus::exited(1)}, now,
                    sh.out);
        sh.events += 2;
        sh.apply(now);
        if (auto d = core.next_deadline()) { // backoff variant: let the delay pass
            now = *d;
            core.handle(DeadlineReached{}, now, sh.out);
            ++sh.events;
            sh.apply(now);
        }
        if (i % 64 == 0) now += Duration{1};
    }
    const std::clock_t t2 = std::clock();
    const double secs = static_cast<double>(t2 - t1) / CLOCKS_PER_SEC;
    const auto st = core.status(services.front());
    if (st.state != ChildState::Running) {
        std::fprintf(stderr, "benchmark broke: %s is %s\n", std::string(st.name).c_str(),
                     to_string(st.state));
        std::exit(1);
    }
    return {static_cast<double>(sh.events) / secs, static_cast<double>(cycles) / secs,
            1000.0 * static_cast<double>(t1 - t0) / CLOCKS_PER_SEC,
            static_cast<double>(heap_in_use() - heap0) / 1024.0 /
                static_cast<double>(services.size())};
}

double cpu_ms(std::clock_t from, std::clock_t to) {
    return 1000.0 * static_cast<double>(to - from) / CLOCKS_PER_SEC;
}

// One row of the snapshot table: `crashes` crash cycles per child, then snapshot and restore.
void snapshot_row(std::size_t n, std::size_t crashes) {
    TreeSpec spec = flat(n, Duration{0});
    const TreeSpec loaded = spec;
    Core core{std::move(spec)};
    Shell sh{core, std::vector<Pid>(n + 1), std::vector<Incarnation>(n + 1), {}, {}};
    TimePoint now = at_ms(1'000'000);
    core.start(now, sh.out);
    sh.apply(now);
    for (std::size_t i = 0; i < crashes * n; ++i) {
        const ChildId c{static_cast<std::uint32_t>(1 + i % n)};
        core.handle(Drained{c, sh.inc[c.value]}, now, sh.out);
        core.handle(Exited{c, sh.inc[c.value], sh.pid[c.value], ExitStatus::exited(1)}, now,
                    sh.out);
        sh.apply(now);
        sh.out.clear();
        now += Duration{1};
    }
    double snap_ms = 1e9, restore_ms = 1e9;
    std::size_t bytes = 0;
    for (int round = 0; round < 5; ++round) {
        const std::clock_t t0 = std::clock();
        const SnapshotResult s = core.snapshot();
        const std::clock_t t1 = std::clock();
        const RestoreResult r = Core::restore(loaded, s.bytes);
        const std::clock_t t2 = std::clock();
        if (!r.core) {
            std::fprintf(stderr, "benchmark broke: %s%s\n", s.error.c_str(), r.error.c_str());
            std::exit(1);
        }
        snap_ms = std::min(snap_ms, cpu_ms(t0, t1));
        restore_ms = std::min(restore_ms, cpu_ms(t1, t2));
        bytes = s.bytes.size();
    }
    std::printf("| %zu | %zu | %.1f | %.2f | %.2f | %.2f |\n", n,
                core.history(ChildId{1}, 1000).size(), static_cast<double>(bytes) / 1048576.0,
                snap_ms, restore_ms, snap_ms + restore_ms);
}

// n, crashes: one row only (0: all).
void snapshot_table(std::size_t only_n = 0, std::size_t only_crashes = 0) {
    std::printf("\n| children | records/child | snapshot (MiB) | snapshot (ms) | restore (ms) | "
                "total (ms) |\n");
    std::printf("|---:|---:|---:|---:|---:|---:|\n");
    for (std::size_t n : {1'000u, 10'000u})
        for (std::size_t crashes : {0u, 16u})
            if ((only_n == 0 || n == only_n) && (only_n == 0 || crashes == only_crashes))
                snapshot_row(n, crashes);
}

} // namespace

int main(int argc, char **argv) {
    if (argc > 1 && std::string(argv[1]) == "snapshot") {
        snapshot_table(argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 0,
                       argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 0);
        return 0;
    }
    const std::size_t cycles = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 200'000;
    run(flat(1000, Duration{0}), cycles / 4); // warm-up: page faults, allocator
    std::printf("| variant | children | boot (ms) | restart cycles/s | events/s | KiB/child |\n");
    std::printf("|---|---:|---:|---:|---:|---:|\n");
    const std::size_t only = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 0;
    for (std::size_t n : {100u, 1'000u, 10'000u}) {
        if (only != 0 && n != only) continue;
        struct V {
            const char *name;
            TreeSpec spec;
        };
        V variants[] = {{"flat one_for_one", flat(n, Duration{0})},
                        {"nested (sqrt n supervisors)", nested(n)},
                        {"flat + 1ms backoff (deadline heap)", flat(n, Duration{1})}};
        for (auto &v : variants) {
            const Result r = run(std::move(v.spec), cycles);
            std::printf("| %s | %zu | %.1f | %.0f | %.0f | %.1f |\n", v.name, n, r.boot_ms,
                        r.cycles_per_s, r.events_per_s, r.kib_per_child);
        }
    }
    snapshot_table();
    return 0;
}

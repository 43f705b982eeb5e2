// spawner_bench: spawn latency of proc::spawn vs Spawner::spawn in a process that holds many
// descriptors, as vigild does with thousands of services (not a test).
//
// usage: proc_spawner_bench [FDS] [N]   (default 20000 descriptors, N = 200)
// Starts the Spawner first (as vigild does), opens FDS close-on-exec descriptors, then times N
// spawn()+waitpid() of /bin/true with pipes each way and prints the median, p90 and p99 in
// microseconds. The time to spawn() alone (until the child exec'd) is shown too.
#include "vigil/proc/spawner.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <functional>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace {

void report(const char *what, std::vector<double> us) {
    std::sort(us.begin(), us.end());
    auto at = [&](double q) {
        return us[static_cast<std::size_t>(q * static_cast<double>(us.size() - 1))];
    };
    std::printf("%-34s n=%zu median=%.1fus p90=%.1fus p99=%.1fus\n", what, us.size(), at(0.5),
                at(0.9), at(0.99));
}

using SpawnFn = std::function<vigil::proc::SpawnResult()>;

void measure(const char *what, int n, const SpawnFn &fn) {
    std::vector<double> total, returned;
    for (int i = 0; i < n; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        vigil::proc::SpawnResult r = fn();
        auto t1 = std::chrono::steady_clock::now();
        if (!r.ok) {
            std::fprintf(stderr, "%s: spawn %d failed: %s\n", what, i,
                         r.error ? r.error->message().c_str() : "?");
            std::exit(1);
        }
        close(r.ok->stdout_fd);
        close(r.ok->stderr_fd);
        int st = 0;
        if (waitpid(r.ok->pid, &st, 0) != r.ok->pid || st != 0) {
            std::fprintf(stderr, "%s: child %d failed\n", what, i);
            std::exit(1);
        }
        auto t2 = std::chrono::steady_clock::now();
        total.push_back(std::chrono::duration<double, std::micro>(t2 - t0).count());
        returned.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    std::string a = std::string(what) + " spawn+reap";
    std::string b = std::string(what) + " spawn() alone";
    report(a.c_str(), total);
    report(b.c_str(), returned);
}

} // namespace

int main(int argc, char **argv) {
    long fds = argc > 1 ? std::atol(argv[1]) : 20000;
    int n = argc > 2 ? std::atoi(argv[2]) : 200;

    vigil::proc::Spawner spawner;
    if (int e = spawner.start()) {
        std::fprintf(stderr, "Spawner::start: errno %d\n", e);
        return 1;
    }
    rlimit lim{};
    getrlimit(RLIMIT_NOFILE, &lim);
    if (lim.rlim_cur < static_cast<rlim_t>(fds) + 64) {
        lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, static_cast<rlim_t>(fds) + 64);
        setrlimit(RLIMIT_NOFILE, &lim);
    }
    // Leave room for the pipes of the spawns themselves.
    if (lim.rlim_cur != RLIM_INFINITY && static_cast<rlim_t>(fds) + 64 > lim.rlim_cur)
        fds = static_cast<long>(lim.rlim_cur) - 64;
    long opened = 0;
    for (; opened < fds; ++opened) {
        if (open("/dev/null", O_RDONLY | O_CLOEXEC) < 0) {
            std::perror("open");
            break;
        }
    }
    std::printf("descriptors held: %ld, N=%d\n", opened, n);

    vigil::proc::SpawnSpec spec;
    spec.argv = {"/bin/true"};
    vigil::proc::SpawnExtras extras;
    measure("proc::spawn", n, [&] { return vigil::proc::spawn(spec, extras); });
    measure("Spawner::spawn", n, [&] { return spawner.spawn(spec, extras); });
    if (std::string w = spawner.take_warning(); !w.empty()) std::printf("warning: %s\n", w.c_str());
    return 0;
}

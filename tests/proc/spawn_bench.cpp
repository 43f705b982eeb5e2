// spawn_bench: spawn latency, median of N spawn()+waitpid() of /bin/true (not a test).
//
// usage: proc_spawn_bench [N] [pipes|inherit]
// Prints the median, p90 and p99 in microseconds, and the same for fork()+execve() and
// posix_spawn() as a reference, measured in the same run.
#include "vigil/proc/spawn.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

extern char **environ;

namespace {

void report(const char *what, std::vector<double> us) {
    std::sort(us.begin(), us.end());
    auto at = [&](double q) {
        return us[static_cast<std::size_t>(q * static_cast<double>(us.size() - 1))];
    };
    std::printf("%-28s n=%zu median=%.1fus p90=%.1fus p99=%.1fus\n", what, us.size(), at(0.5),
                at(0.9), at(0.99));
}

// Times once()+waitpid() N times; `returned` (if given) gets the time until once() returned.
std::vector<double> measure(int n, const std::function<int()> &once,
                            std::vector<double> *returned = nullptr) {
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
        auto t0 = std::chrono::steady_clock::now();
        int pid = once();
        if (returned)
            returned->push_back(
                std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                    .count());
        int st = 0;
        if (pid <= 0 || waitpid(pid, &st, 0) != pid || st != 0) {
            std::fprintf(stderr, "spawn %d failed\n", i);
            std::exit(1);
        }
        auto t1 = std::chrono::steady_clock::now();
        us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    return us;
}

} // namespace

int main(int argc, char **argv) {
    int n = argc > 1 ? std::atoi(argv[1]) : 1000;
    bool pipes = !(argc > 2 && std::strcmp(argv[2], "inherit") == 0);
    vigil::proc::SpawnSpec spec;
    spec.argv = {"/bin/true"};
    vigil::proc::SpawnExtras extras;
    extras.stdio = pipes ? vigil::proc::Stdio::Pipes : vigil::proc::Stdio::Inherit;

    std::vector<double> returned;
    auto once = [&] {
        auto r = vigil::proc::spawn(spec, extras);
        if (!r.ok) return -1;
        if (r.ok->stdout_fd >= 0) close(r.ok->stdout_fd);
        if (r.ok->stderr_fd >= 0) close(r.ok->stderr_fd);
        return r.ok->pid;
    };
    std::vector<double> total = measure(n, once, &returned);
    report(pipes ? "vigil spawn+reap (pipes)" : "vigil spawn+reap (inherit)", total);
    report("  spawn() alone (to exec)", returned);
    char *targv[] = {const_cast<char *>("/bin/true"), nullptr};
    report("fork+execve (reference)", measure(n, [&] {
               pid_t pid = fork();
               if (pid == 0) {
                   execve("/bin/true", targv, environ);
                   _exit(127);
               }
               return pid;
           }));
    report("posix_spawn (reference)", measure(n, [&] {
               pid_t pid = -1;
               return posix_spawn(&pid, "/bin/true", nullptr, nullptr, targv, environ) == 0 ? pid
                                                                                            : -1;
           }));
    return 0;
}

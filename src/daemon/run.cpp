// run.cpp: see run.hpp.
#include "run.hpp"

#include <algorithm>
#include <cstdio>
#include <sys/resource.h>

#include "shell.hpp"
#include "uv_os.hpp"

namespace vigil::daemon {

namespace {

// Each service costs vigild a few descriptors (its stdout and stderr pipes, a notify socket or
// ready pipe when declared) and a few kilobytes. 10,000 services need more than the usual soft
// limit of 1024, so vigild raises its own soft limit up to the hard one (and the hard one too
// when it may: CAP_SYS_RESOURCE, up to fs.nr_open), and says what to do when that is still too
// low. Services get the original limit back (Options::service_nofile). The sockets held for
// `listen` count once each (`held`, at most bounds::max_held_sockets).
void raise_fd_limit(Options &opts, std::size_t units, std::size_t held, std::string &warning) {
    rlimit original{};
    ::getrlimit(RLIMIT_NOFILE, &original);
    opts.service_nofile = std::make_pair(static_cast<std::uint64_t>(original.rlim_cur),
                                         static_cast<std::uint64_t>(original.rlim_max));
    const rlim_t needed = 3 * static_cast<rlim_t>(units) + static_cast<rlim_t>(held) + 256;
    rlimit want = original;
    if (want.rlim_cur >= needed) return;
    const rlim_t target = std::max(needed, rlim_t{65536});
    want.rlim_cur = std::min(original.rlim_max, target);
    if (::setrlimit(RLIMIT_NOFILE, &want) != 0) want = original;
    if (want.rlim_cur < needed) {
        rlim_t nr_open = 1024 * 1024;
        if (std::FILE *f = std::fopen("/proc/sys/fs/nr_open", "r")) {
            unsigned long long v = 0;
            if (std::fscanf(f, "%llu", &v) == 1) nr_open = static_cast<rlim_t>(v);
            std::fclose(f);
        }
        const rlim_t both = std::min(target, nr_open);
        rlimit higher{both, std::max(both, original.rlim_max)};
        if (both > want.rlim_cur && ::setrlimit(RLIMIT_NOFILE, &higher) == 0) want = higher;
    }
    if (want.rlim_cur < needed)
        warning = "file descriptor limit " + std::to_string(want.rlim_cur) + " is below the " +
                  std::to_string(needed) + " that " + std::to_string(units) +
                  " units may need; raise it (ulimit -Hn, or LimitNOFILE= for systemd, or "
                  "--ulimit nofile= for docker)";
}

} // namespace

int run_shell(Options opts, unit::LoadResult loaded) {
    std::string fd_warning;
    std::size_t held = 0; // an upper bound: instances share most of them
    for (const unit::Unit &u : loaded.units)
        held += u.listen.size();
    raise_fd_limit(opts, loaded.units.size(), std::min(held, unit::bounds::max_held_sockets),
                   fd_warning);
    UvOs os(opts);
    // First, while vigild holds almost no descriptors: services are spawned from this small
    // helper, so that no spawn copies vigild's thousands of descriptors (vigil/proc/spawner.hpp).
    os.start_spawner();
    Shell shell(os, opts, std::move(loaded));
    if (!fd_warning.empty()) shell.journal().say(LogLevel::Warn, fd_warning);
    // The services' sockets, before anything starts: one that cannot be bound is a
    // configuration vigild refuses to run.
    if (std::string error; !shell.bind_listen(error)) {
        std::fprintf(stderr, "vigild: %s\nvigild: nothing was started\n", error.c_str());
        os.close_handles();
        return 1;
    }
    if (!os.attach(shell)) {
        os.close_handles();
        return 1;
    }
    shell.start();
    os.run();
    return shell.exit_status().value_or(1);
}

} // namespace vigil::daemon

// run.cpp: see run.hpp.
#include "run.hpp"

#include <algorithm>
#include <cstdio>
#include <sys/resource.h>

#include "shell.hpp"
#include "uv_os.hpp"

namespace vigil::daemon {

namespace {

// The descriptors the tree's services hold in vigild while they run: the output pipes (one
// with logs.stderr "stdout", else two), a notify socket with ready.notify or a watchdog, and a
// ready pipe with ready.fd; the sockets held for `listen` (an upper bound: instances share
// most of them; at most bounds::max_held_sockets); plus 256 for vigild itself, its clients and
// probes.
rlim_t descriptors_needed(const unit::LoadResult &loaded) {
    rlim_t n = 256;
    std::size_t held = 0;
    for (const unit::Unit &u : loaded.units)
        held += u.listen.size();
    n += static_cast<rlim_t>(std::min(held, unit::bounds::max_held_sockets));
    for (std::size_t i = 0; i < loaded.units.size() && i < loaded.tree.nodes.size(); ++i) {
        if (loaded.tree.nodes[i].kind != core::Kind::Service) continue;
        const unit::Unit &u = loaded.units[i];
        n += u.logs.merge_stderr ? 1 : 2;
        if (u.ready.notify || u.watchdog) ++n;
        if (u.ready.fd) ++n;
    }
    return n;
}

// 10,000 services need more than the usual soft limit of 1024, so vigild raises its own soft
// limit up to the hard one (and the hard one too when it may: CAP_SYS_RESOURCE, up to
// fs.nr_open), and says what to do when that is still too low. Services get the original
// limit back (Options::service_nofile).
void raise_fd_limit(Options &opts, const unit::LoadResult &loaded, std::string &warning) {
    rlimit original{};
    ::getrlimit(RLIMIT_NOFILE, &original);
    opts.service_nofile = std::make_pair(static_cast<std::uint64_t>(original.rlim_cur),
                                         static_cast<std::uint64_t>(original.rlim_max));
    const rlim_t needed = descriptors_needed(loaded);
    const std::size_t units = loaded.units.size();
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
                  "--ulimit nofile= for docker), or give services \"logs\": {\"stderr\": "
                  "\"stdout\"} (one descriptor each instead of two)";
}

// vigild's own service manager, when it gave NOTIFY_SOCKET (manager.hpp); what it gave that
// cannot be used goes to the journal.
void attach_manager(Shell &shell, UvOs &os, notify::ManagerEnv env) {
    for (const std::string &p : env.problems)
        shell.journal().say(LogLevel::Warn, p);
    if (!env.address) return;
    std::string error;
    auto link = open_manager_link(*env.address, &error);
    if (!link) {
        shell.journal().say(LogLevel::Warn, error + "; not notifying the service manager");
        return;
    }
    shell.set_manager(std::make_unique<ManagerNotifier>(os, shell.journal(), std::move(link),
                                                        env.socket, env.watchdog_usec));
}

} // namespace

int run_shell(Options opts, const std::function<std::optional<unit::LoadResult>()> &load) {
    // First of all, while vigild runs one thread and before the spawner helper forks: the
    // manager's variables leave vigild's environment, so no service inherits them.
    notify::ManagerEnv manager = notify::take_manager_env();
    // Then, while vigild holds almost no descriptors and little memory: services are spawned
    // from this small helper (forked by UvOs), so that no spawn copies vigild's thousands of
    // descriptors (vigil/proc/spawner.hpp), and the helper shares vigild's pages as they were
    // before the units were read.
    UvOs os(opts);
    std::optional<unit::LoadResult> loaded = load();
    if (!loaded) return 1;
    std::string fd_warning;
    raise_fd_limit(opts, *loaded, fd_warning);
    os.start_spawner();
    Shell shell(os, opts, std::move(*loaded));
    if (!fd_warning.empty()) shell.journal().say(LogLevel::Warn, fd_warning);
    attach_manager(shell, os, std::move(manager));
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

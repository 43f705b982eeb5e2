// run.cpp: see run.hpp.
#include "run.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <linux/close_range.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "build_id.hpp"
#include "shell.hpp"
#include "uv_os.hpp"
#include "vigil/ctl/protocol.hpp"
#include "vigil/huge_heap.hpp"

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

// The descriptor of the state a re-exec carried (handover.hpp), when VIGIL_REEXEC_STATE names
// one; the variable leaves the environment (before the spawner helper forks: no service sees
// it). nullopt for an ordinary start; fd -1 when the variable names no state.
// Every descriptor from 3 up is close-on-exec again, with one close_range() call while vigild
// runs one thread (the carried ones are thousands, and an fcntl() each is slow once threads
// share the table: bench/README.md, "Where the pause goes"), and so is any that vigild's own
// parent left open, which vigild never hands on (a service gets exactly the descriptors its
// unit names). A kernel without CLOSE_RANGE_CLOEXEC (before 5.11): read_handover() sets each
// carried one.
struct HandoverFd {
    int fd = -1;
    bool all_cloexec = false;
};
std::optional<HandoverFd> take_handover_fd() {
    const char *v = std::getenv(handover_env);
    if (!v) return std::nullopt;
    char *end = nullptr;
    errno = 0;
    const long fd = std::strtol(v, &end, 10);
    const bool ok = errno == 0 && end && *end == '\0' && fd >= 0 && fd <= 1 << 24;
    ::unsetenv(handover_env);
    HandoverFd out;
    out.all_cloexec = ::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0;
    if (!ok) return out;
    out.fd = static_cast<int>(fd);
    if (!out.all_cloexec) (void)::fcntl(out.fd, F_SETFD, FD_CLOEXEC);
    return out;
}

// The state in `h.fd` (take_handover_fd()), read.
HandoverRead read_handover(HandoverFd h, std::uint32_t version) {
    const int fd = h.fd;
    HandoverRead out;
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0 ||
        static_cast<std::uint64_t>(st.st_size) > handover_max_bytes) {
        out.error = "reexec state: " + std::string(handover_env) + " names no state";
        if (fd >= 0) ::close(fd);
        return out;
    }
    // Mapped, not read: no copy of the state is made on a heap that would first have to grow
    // (each new page of a fresh image is a page fault). The old binary sealed it, so that it
    // can neither shrink under the mapping nor change while it is read.
    const auto size = static_cast<std::size_t>(st.st_size);
    constexpr int seals = F_SEAL_SHRINK | F_SEAL_WRITE;
    void *map = MAP_FAILED;
    if (size > 0 && (::fcntl(fd, F_GET_SEALS) & seals) == seals)
        map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    ::close(fd);
    if (map == MAP_FAILED) {
        out.error = "reexec state: " + std::string(handover_env) + " names no sealed state";
        return out;
    }
    out = decode_handover(std::string_view(static_cast<const char *>(map), size), version);
    ::munmap(map, size);
    if (!h.all_cloexec)
        for (std::int32_t f : out.state.fds)
            (void)::fcntl(f, F_SETFD, FD_CLOEXEC);
    return out;
}

// A re-exec whose state this binary cannot take: the old services are stopped (their units'
// longest stop timeout, at least 10 s) and the tree starts afresh; the client hears why.
void abandon(const HandoverRead &carried, const std::string &why, const core::TreeSpec *tree) {
    std::fprintf(stderr,
                 "vigild: %s; stopping the services the old vigild ran and starting "
                 "the tree afresh\n",
                 why.c_str());
    Duration grace{10'000};
    if (tree)
        for (const core::ChildSpec &n : tree->nodes)
            grace = std::max(grace,
                             std::min(n.stop.timeout.value_or(Duration{60'000}), Duration{60'000}));
    if (carried.envelope_read) abandon_handover(carried.state, grace);
}

void answer_refusal(const HandoverRead &carried, const std::string &why, bool started) {
    if (!carried.envelope_read || carried.state.requester_fd < 0) return;
    answer_client(carried.state.requester_fd, carried.state.requester_id,
                  ctl::make_error(nullptr, ctl::ErrorCode::Internal,
                                  why + (started ? "; the services were stopped and the tree "
                                                   "started afresh"
                                                 : "; the new vigild could not start")));
}

} // namespace

int run_shell(Options opts, const std::function<std::optional<unit::LoadResult>()> &load) {
    // The service manager's variables, kept for a re-exec (the new binary takes them again).
    for (const char *name : {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"})
        if (const char *v = std::getenv(name))
            opts.manager_env.push_back(std::string(name) + "=" + v);
    // First of all, while vigild runs one thread and before the spawner helper forks: the
    // manager's variables leave vigild's environment, so no service inherits them; so does a
    // re-exec's state.
    notify::ManagerEnv manager = notify::take_manager_env();
    const std::optional<HandoverFd> handover_fd = take_handover_fd();
    const std::optional<StandInEnv> stand_in = take_stand_in_env();
    std::vector<int> leftovers = take_leftovers_env();
    // Then, while vigild holds little memory: services are spawned from this small helper
    // (forked by UvOs; it closes every descriptor it does not need), so that no spawn copies
    // vigild's thousands of descriptors (vigil/proc/spawner.hpp), and the helper shares
    // vigild's pages as they were before the units were read.
    UvOs os(opts);
    if (stand_in) os.expect_stand_in(*stand_in);
    os.expect_leftovers(std::move(leftovers));
    // A re-exec's state is read and adopted into a heap that is new, every page of it a fault
    // inside the pause: until the services are adopted the heap grows ahead in huge pages
    // (vigil/huge_heap.hpp). After the spawner helper's fork: the helper's heap stays small.
    HugeHeap adoption_heap;
    const bool heap_ahead = handover_fd.has_value();
    if (heap_ahead) adoption_heap = heap_ahead_in_huge_pages(std::size_t{64} << 20);
    // What a re-exec carried, then the unit files (one after the other: bench/README.md,
    // "Where the pause goes", says why not on two threads).
    std::optional<HandoverRead> carried;
    if (handover_fd) carried = read_handover(*handover_fd, opts.handover_version);
    // The old binary's units when it is this very build (the files were checked to be what
    // runs just before the exec): reading and checking them again would be most of the pause.
    std::optional<unit::LoadResult> loaded;
    if (carried && carried->payload_read && carried->state.has_loaded &&
        carried->state.build_id == own_build_id()) {
        loaded = std::move(carried->state.loaded);
        carried->state.loaded = {};
    } else {
        loaded = load();
        if (carried) carried->state.has_loaded = false; // what resume() reports: read, not taken
    }
    if (!loaded) {
        if (carried) {
            abandon(*carried, "the unit files do not load", nullptr);
            answer_refusal(*carried, "reexec: the unit files do not load", false);
        }
        return 1;
    }
    std::string fd_warning;
    raise_fd_limit(opts, *loaded, fd_warning);
    const bool adopting = carried && carried->payload_read;
    if (adopting && carried->state.has_service_nofile)
        opts.service_nofile =
            std::make_pair(carried->state.service_nofile_cur, carried->state.service_nofile_max);
    os.start_spawner();
    // Adopting, the shell takes the units and builds no core from the tree (adopt() puts the
    // restored one in): the tree stays here for adopt().
    std::optional<core::TreeSpec> adopt_tree;
    if (adopting) adopt_tree = std::move(loaded->tree);
    Shell shell = adopting
                      ? Shell(os, opts, std::move(loaded->units), *adopt_tree, Shell::Adopting{})
                      : Shell(os, opts, std::move(*loaded));
    if (!fd_warning.empty()) shell.journal().say(LogLevel::Warn, fd_warning);
    attach_manager(shell, os, std::move(manager));
    std::string refused = carried ? carried->error : std::string();
    bool adopted = false;
    if (adopting) adopted = shell.adopt(carried->state, *adopt_tree, refused);
    if (carried && !adopted) abandon(*carried, refused, adopt_tree ? &*adopt_tree : nullptr);
    if (adopted) os.adopt_listeners(carried->state);
    // The services' sockets, before anything starts: one that cannot be bound is a
    // configuration vigild refuses to run.
    if (std::string error; !shell.bind_listen(error)) {
        std::fprintf(stderr, "vigild: %s\nvigild: nothing was started\n", error.c_str());
        if (carried && !adopted) answer_refusal(*carried, refused, false);
        os.close_handles();
        return 1;
    }
    if (!os.attach(shell)) {
        os.close_handles();
        return 1;
    }
    if (heap_ahead) heap_back_to_small_pages(adoption_heap);
    if (adopted) {
        shell.resume(carried->state);
        os.reap_now(); // what ended during the exec
    } else {
        shell.start();
        if (carried) {
            shell.journal().say(LogLevel::Error,
                                refused +
                                    "; the old services were stopped and the tree started afresh");
            answer_refusal(*carried, refused, true);
        }
    }
    // The state read across a re-exec (the core's bytes, every ring's copy) and the tree's copy
    // are no longer needed; the heap they took goes back to the kernel, not at some later
    // trim, so that vigild after a re-exec is the size it was before. Not before the loop ran
    // a while: the clients that waited in the sockets' backlog during the exec come first.
    // The old binary's loop goes then too (handover.hpp: retired_fd).
    std::unique_ptr<Running> release;
    if (carried) {
        if (!adopted) carried->state.retired_fd = -1; // closed with the rest by abandon()
        auto state = std::make_shared<std::optional<HandoverRead>>(std::move(carried));
        auto tree = std::make_shared<std::optional<core::TreeSpec>>(std::move(adopt_tree));
        release = os.after(Duration{200}, [state, tree, &os] {
            if ((*state)->state.retired_fd >= 0) os.close_fd((*state)->state.retired_fd);
            state->reset();
            tree->reset();
            malloc_trim(0);
        });
    }
    os.run();
    return shell.exit_status().value_or(1);
}

} // namespace vigil::daemon

// os.hpp: the seam under vigild's shell. Everything the shell asks of the operating system goes
// through `Os`, and everything the OS tells the shell comes back through the callbacks it gave or
// through the Shell's on_*() methods. The real implementation (uv_os.hpp) sits on libuv, the
// Spawner, the log writer, notify sockets and probes; tests/daemon/fake_os.hpp is a fake with a
// fake clock and a fake process table, which drives the real Shell with no process, no socket and
// no sleep.
//
// Rules of the seam:
//  - Nothing here blocks: a spawn, a unit-directory load, a log file's writes are answered later,
//    through the callback they were given.
//  - A callback is never called from inside the call that registered it (the shell's state is
//    always consistent when one arrives), and never after the handle it belongs to is destroyed.
//  - Handles are owned by the shell (std::unique_ptr); destroying one stops what it does.
//  - Descriptors handed to the shell (a spawn's pipes and pidfd) belong to it from then on.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "handover.hpp"
#include "listen.hpp"
#include "vigil/log/capture.hpp"
#include "vigil/log/file_sink.hpp"
#include "vigil/log/forwarder.hpp"
#include "vigil/notify/message.hpp"
#include "vigil/notify/notify_socket.hpp"
#include "vigil/probe/monitor.hpp"
#include "vigil/proc/spawn.hpp"
#include "vigil/proc/spawner.hpp"
#include "vigil/time.hpp"
#include "vigil/unit/unit.hpp"

namespace vigil::daemon {

// The answer to Os::spawn() (proc::SpawnCompletion: the result, a pidfd, and the wait status
// when the process already ended and was reaped before the answer came).
using SpawnDone = std::function<void(proc::SpawnCompletion)>;

// One incarnation's stdout and stderr being read (log::Capture).
class OutputChannel {
public:
    virtual ~OutputChannel() = default;
    virtual void pause() = 0;
    virtual void resume() = 0;
    virtual bool paused() const = 0;
    virtual bool eof() const = 0;
    // Reads what the pipes hold now, up to EOF or until they would block, and delivers it
    // (lines, batch, EOF) through the callbacks before returning: the shell calls it when the
    // incarnation's main process is reaped, so that its last lines and its EOF come first.
    virtual void read_now() = 0;
    // For a re-exec of vigild (reexec.cpp): a stream's read end (-1 at EOF) and the bytes of
    // the partial line read from it.
    virtual int carried_fd(log::Stream s) const = 0;
    virtual std::string_view pending(log::Stream s) const = 0;
};

// A unit's NOTIFY_SOCKET (notify::NotifySocket).
class NotifyChannel {
public:
    virtual ~NotifyChannel() = default;
    virtual const std::string &path() const = 0;
    // Reads the datagrams waiting now (before a main process's exit is acted on).
    virtual void receive_now() = 0;
    virtual int fd() const = 0; // for a re-exec
};

// The s6-style ready fd of one incarnation (notify::ReadyFd).
class ReadyChannel {
public:
    virtual ~ReadyChannel() = default;
    virtual int child_end() const = 0;
    virtual void close_child_end() = 0;
    // The read end while vigild still waits for the newline (-1 after): for a re-exec.
    virtual int read_fd() const = 0;
};

// Something running until destroyed: an incarnation's probes (probe::Monitor), the watch on a
// main process that is not vigild's child (a pidfd poll).
class Running {
public:
    virtual ~Running() = default;
};

// An incarnation's probes while they run (probe::Monitor, started); destroying it stops them.
class ProbesChannel : public Running {
public:
    // For `vigilctl checks` (each prober's state) and `check --run` (Prober::run_now).
    virtual probe::Monitor &monitor() = 0;
};

// A service's cgroup (cgroup v2), where vigild may make one: every process the service starts
// stays in it, setsid() or not, so a stop reaches them all.
class Cgroup {
public:
    virtual ~Cgroup() = default;
    // A descriptor the child writes "0" to (proc::SpawnExtras::cgroup_procs_fd), opened for
    // one spawn: the caller closes it after Os::spawn(). -1 when it cannot be opened.
    virtual int open_procs() = 0;
    // Signals every process in it, and with `then_cont` sends SIGCONT after it; SIGKILL goes
    // through cgroup.kill. 0 or an errno.
    virtual int signal(int sig, bool then_cont) = 0;
    virtual bool empty() const = 0;
    // `cb` runs once, later, from the loop, when the cgroup is empty (at once if it is).
    virtual void on_empty(std::function<void()> cb) = 0;
    virtual const std::string &dir() const = 0; // its folder, for a re-exec
};

class Os {
public:
    virtual ~Os() = default;

    // ---- time ---------------------------------------------------------------------------
    // The monotonic clock (milliseconds), read now.
    virtual TimePoint now() = 0;
    // The loop's time of this iteration: for per-line work, where a clock read per line cost.
    virtual TimePoint loop_time() = 0;
    // Milliseconds since the Unix epoch.
    virtual std::int64_t wall_ms() = 0;
    // Arms the one timer of the core's deadlines (nullopt: none); Shell::on_deadline() runs
    // when it passes.
    virtual void arm_deadline(std::optional<TimePoint> when) = 0;
    // Runs `f` once from the loop after `d`, unless the returned handle is destroyed first. For
    // what the shell times on its own (how long a log file has pushed back); supervision's
    // deadlines are the core's (arm_deadline).
    virtual std::unique_ptr<Running> after(Duration d, std::function<void()> f) = 0;

    // ---- processes ----------------------------------------------------------------------
    // Starts a process; `done` gets the answer later. The descriptors in `extras` are the
    // caller's: they are duplicated (or used) before spawn() returns, so the caller may close
    // its copies right away.
    virtual void spawn(proc::SpawnSpec spec, proc::SpawnExtras extras, SpawnDone done) = 0;
    // vigild's own pid (1 as PID 1).
    virtual int self_pid() = 0;
    // A pidfd for `pid` (which must not have been reaped yet), or -1 with errno's reason.
    virtual int pidfd_open(int pid, std::string *error) = 0;
    // kill(-pgid, sig): 0 or an errno (ESRCH: the group is gone).
    virtual int signal_group(int pgid, int sig) = 0;
    // Whether the process group has a process (zombies count, until reaped).
    virtual bool group_alive(int pgid) = 0;
    // pidfd_send_signal: 0 or an errno (ESRCH: the process has ended).
    virtual int signal_pidfd(int pidfd, int sig) = 0;
    virtual void close_fd(int fd) = 0;
    // /proc/PID/stat: its parent, group, session, state; nullopt when it is gone.
    virtual std::optional<notify::ProcIds> proc_ids(int pid) = 0;
    // Watches the end of a process that is not vigild's child (a pidfd); `ended` gets its wait
    // status when it can be read (a zombie's /proc entry), nullopt otherwise.
    virtual std::unique_ptr<Running>
    watch_exit(int pid, std::function<void(std::optional<int>)> ended, std::string *error) = 0;
    // A cgroup for `unit`, or nullptr where vigild cannot or must not make one (no writable
    // cgroup v2, --no-cgroups); `error` is set only when making it failed.
    virtual std::unique_ptr<Cgroup> make_cgroup(const std::string &unit, std::string *error) = 0;
    // For each of `units`, the live processes whose environment says VIGIL_UNIT=<unit> (every
    // process a service starts inherits it), at most `max` per unit: what a service without a
    // cgroup left behind. /proc is read off the loop (a process's environment can take its
    // memory lock); `done` is called from the loop.
    using ProcessesFound = std::map<std::string, std::vector<int>>;
    virtual void find_processes(std::vector<std::string> units, std::size_t max,
                                std::function<void(ProcessesFound)> done) = 0;

    // The longest time the loop has spent between two waits for events (every callback of one
    // turn), since start-up, in microseconds: what a client or a signal may wait at worst.
    // 0 where it is not measured (the fake OS).
    virtual std::int64_t loop_stall_max_us() { return 0; }

    // ---- output, notification, readiness, probes ----------------------------------------
    virtual std::unique_ptr<OutputChannel> read_output(int stdout_fd, int stderr_fd,
                                                       log::CaptureOptions options,
                                                       log::Capture::Callbacks callbacks) = 0;
    virtual std::unique_ptr<NotifyChannel> open_notify(const std::string &unit,
                                                       notify::NotifySocket::Callbacks callbacks,
                                                       std::string *error) = 0;
    virtual std::unique_ptr<ReadyChannel> open_ready_fd(std::function<void()> on_ready,
                                                        std::string *error) = 0;
    // `exec` runs exec probes through the service's spawn path (the unit's SpawnSpec).
    // `from`: where the probes of the incarnation were when a re-exec carried them.
    virtual std::unique_ptr<ProbesChannel>
    start_probes(const std::string &unit, probe::MonitorSpecs specs,
                 probe::Monitor::Callbacks callbacks, probe::ExecSpawn exec,
                 const std::optional<probe::MonitorState> &from) = 0;

    // ---- logs ---------------------------------------------------------------------------
    // Where forwarded output goes (vigild's stdout); may be null (tests without forwarding).
    virtual log::Forwarder *forwarder() = 0;
    // Makes the sinks of units' log files.
    virtual log::FileSinkFactory file_sinks() = 0;
    // One of vigild's own lines (the journal), without its newline.
    virtual void say(std::string_view line) = 0;

    // ---- sockets held for services (listen.hpp) -------------------------------------------
    // Binds each of `specs`, in order: one BoundSocket each. Blocks (a unix socket's file
    // system): only at start-up, before the loop runs.
    virtual std::vector<BoundSocket>
    bind_sockets_now(const std::vector<unit::ListenSpec> &specs) = 0;
    // The same, off the loop (reload); `done` gets the answer on it.
    virtual void bind_sockets(std::vector<unit::ListenSpec> specs,
                              std::function<void(std::vector<BoundSocket>)> done) = 0;
    // listen() again on a held stream socket whose backlog changed: 0 or an errno.
    virtual int relisten(int fd, int backlog) = 0;

    // ---- continuity across an exec of vigild (reexec.cpp, handover.hpp) --------------------
    // `done(true)` once no spawn is pending (at once, from the loop, if none is), or
    // done(false) when spawns were still pending after `limit`.
    virtual void when_spawns_idle(Duration limit, std::function<void(bool idle)> done) = 0;
    // Adds the Os's own descriptors to `h` (control and HTTP listeners, the cgroup folder's
    // lock), writes out what vigild's log writers hold (bounded), and executes vigild's binary
    // with `h`. Returns only when that failed, with why; then everything is as it was.
    virtual std::string exec_self(Handover &h) = 0;
    // A stand-in for the pause (uv_standin.cpp): from before the state is exported until the
    // new binary has adopted it, a copy of vigild answers the control requests that only read
    // (as things were when it began) and holds the others for the new binary. exec_self()
    // hands it on; end_stand_in() takes its connections back when the exec did not happen.
    // The fake Os has none.
    virtual void begin_stand_in() {}
    virtual void end_stand_in() {}
    // True in the stand-in: `version` says who answers.
    virtual bool standing_in() const { return false; }
    // What the new binary takes back from a Handover, as the channels above.
    virtual std::unique_ptr<OutputChannel> adopt_output(int stdout_fd, int stderr_fd,
                                                        std::string_view stdout_pending,
                                                        std::string_view stderr_pending,
                                                        log::CaptureOptions options,
                                                        log::Capture::Callbacks callbacks) = 0;
    virtual std::unique_ptr<NotifyChannel> adopt_notify(std::string path, int fd,
                                                        notify::NotifySocket::Callbacks cb) = 0;
    virtual std::unique_ptr<ReadyChannel> adopt_ready_fd(int fd,
                                                         std::function<void()> on_ready) = 0;
    virtual std::unique_ptr<Cgroup> adopt_cgroup(std::string dir) = 0;

    // ---- units --------------------------------------------------------------------------
    // Loads the unit directory off the loop (NSS lookups, a hung file system) and hands the
    // result back on it.
    virtual void load_units(const std::string &dir, std::function<void(unit::LoadResult)> done) = 0;
};

} // namespace vigil::daemon

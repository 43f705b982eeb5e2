// tests/daemon/fake_os.cpp: see fake_os.hpp.
#include "fake_os.hpp"

#include <cerrno>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>
#include <uv.h>

namespace vigil::test {

using namespace vigil;
namespace fs = std::filesystem;

namespace {

constexpr int loop_cap = 100'000;

int exited_status(int code) {
    return (code & 0xff) << 8;
}

class FakeOutputChannel : public daemon::OutputChannel {
public:
    FakeOutputChannel(FakeOs &os, std::size_t i) : os_(os), i_(i) {}
    ~FakeOutputChannel() override { os_.outputs[i_].alive = false; }
    void pause() override {
        if (!os_.outputs[i_].paused) ++os_.outputs[i_].pauses;
        os_.outputs[i_].paused = true;
    }
    void resume() override { os_.outputs[i_].paused = false; }
    bool paused() const override { return os_.outputs[i_].paused; }
    bool eof() const override { return os_.outputs[i_].eof; }
    void read_now() override; // delivers this pipe's pending lines, even when paused
    // Fake descriptors: 7000 + 2i for stdout, + 1 for stderr (-1 once at EOF).
    int carried_fd(log::Stream s) const override {
        if (os_.outputs[i_].eof) return -1;
        return 7000 + static_cast<int>(2 * i_) + (s == log::Stream::Stdout ? 0 : 1);
    }
    std::string_view pending(log::Stream s) const override {
        return s == log::Stream::Stdout ? os_.outputs[i_].partial : std::string_view{};
    }

private:
    FakeOs &os_;
    std::size_t i_;
};

// Delivers output `i`'s pending lines (and its EOF once closed): one batch, as a read would.
void deliver_one(FakeOs &os, std::size_t i) {
    if (!os.outputs[i].alive || os.outputs[i].eof) return;
    bool any = false;
    while (os.outputs[i].alive && !os.outputs[i].pending.empty()) {
        auto [stream, line] = os.outputs[i].pending.front();
        os.outputs[i].pending.pop_front();
        auto cb = os.outputs[i].cb.on_line;
        any = true;
        if (cb) cb(stream, line, false);
    }
    if (!os.outputs[i].alive) return;
    if (any && os.outputs[i].cb.on_batch) {
        auto cb = os.outputs[i].cb.on_batch;
        cb();
    }
    if (!os.outputs[i].alive || !os.outputs[i].closing || os.outputs[i].eof) return;
    os.outputs[i].eof = true;
    auto cb = os.outputs[i].cb.on_eof;
    if (cb) cb();
}

void FakeOutputChannel::read_now() {
    deliver_one(os_, i_);
}

class FakeNotifyChannel : public daemon::NotifyChannel {
public:
    FakeNotifyChannel(FakeOs &os, std::string unit) : os_(os), unit_(std::move(unit)) {}
    ~FakeNotifyChannel() override { os_.notifies[unit_].alive = false; }
    const std::string &path() const override { return os_.notifies.at(unit_).path; }
    void receive_now() override {}
    int fd() const override { return 6000 + static_cast<int>(os_.notifies.at(unit_).path.size()); }

private:
    FakeOs &os_;
    std::string unit_;
};

class FakeReady : public daemon::ReadyChannel {
public:
    explicit FakeReady(int fd) : fd_(fd) {}
    int child_end() const override { return fd_; }
    void close_child_end() override {}
    int read_fd() const override { return fd_ + 1000; }

private:
    int fd_;
};

// Runs `on_destroy` when the shell lets go of the handle.
class FakeRunning : public daemon::Running {
public:
    explicit FakeRunning(std::function<void()> on_destroy) : f_(std::move(on_destroy)) {}
    ~FakeRunning() override {
        if (f_) f_();
    }

private:
    std::function<void()> f_;
};

class FakeProbesChannel : public daemon::ProbesChannel {
public:
    FakeProbesChannel(std::unique_ptr<probe::Monitor> m, std::function<void()> on_destroy)
        : m_(std::move(m)), f_(std::move(on_destroy)) {}
    ~FakeProbesChannel() override {
        if (f_) f_();
    }
    probe::Monitor &monitor() override { return *m_; }

private:
    std::unique_ptr<probe::Monitor> m_;
    std::function<void()> f_;
};

} // namespace

FakeOs::FakeOs() = default;

FakeOs::~FakeOs() {
    if (forwarder_) {
        forwarder_->close(nullptr);
        uv_run(loop_, UV_RUN_DEFAULT);
        forwarder_.reset();
    }
    if (loop_) {
        uv_loop_close(loop_);
        delete loop_;
    }
    for (int fd : stdout_pipe_)
        if (fd >= 0) ::close(fd);
}

// The core's deadline and the shell's timers, in time order (the deadline first at a tie).
void FakeOs::advance(Duration d) {
    const TimePoint target = clock + d;
    for (int i = 0;; ++i) {
        if (i > loop_cap) throw std::runtime_error("FakeOs::advance: livelock");
        auto t = std::min_element(timers.begin(), timers.end(), [](const auto &a, const auto &b) {
            return a.second.when < b.second.when;
        });
        const bool timer_due = t != timers.end() && t->second.when <= target;
        const bool deadline_due = armed && *armed <= target;
        if (!timer_due && !deadline_due) break;
        if (deadline_due && (!timer_due || *armed <= t->second.when)) {
            if (*armed > clock) clock = *armed;
            armed.reset();
            if (shell) shell->on_deadline();
        } else {
            if (t->second.when > clock) clock = t->second.when;
            auto f = std::move(t->second.f);
            timers.erase(t);
            f();
        }
        settle();
    }
    clock = target;
}

std::unique_ptr<daemon::Running> FakeOs::after(Duration d, std::function<void()> f) {
    const int key = next_timer_++;
    timers[key] = FakeTimer{clock + d, std::move(f)};
    return std::make_unique<FakeRunning>([this, key] { timers.erase(key); });
}

void FakeOs::find_processes(std::vector<std::string> units, std::size_t max,
                            std::function<void(ProcessesFound)> done) {
    finds.push_back(PendingFind{std::move(units), max, std::move(done)});
}

void FakeOs::settle() {
    for (int i = 0;; ++i) {
        if (i > loop_cap) throw std::runtime_error("FakeOs::settle: livelock");
        while (!finds.empty()) {
            auto todo = std::move(finds);
            finds.clear();
            for (auto &f : todo) {
                ProcessesFound found;
                for (const auto &u : f.units) {
                    auto &pids = found[u];
                    for (const auto &[pid, p] : procs)
                        if (p.alive && !p.zombie && p.unit == u && pids.size() < f.max)
                            pids.push_back(pid);
                }
                ++scans;
                f.done(std::move(found));
            }
        }
        deliver();
        if (answer_cgroup_waits()) continue;
        int zombie = -1;
        for (const auto &[pid, p] : procs)
            if (p.zombie) {
                zombie = pid;
                break;
            }
        if (zombie < 0) return;
        reap(zombie);
    }
}

void FakeOs::spawn(proc::SpawnSpec spec, proc::SpawnExtras extras, daemon::SpawnDone done) {
    std::string cgroup;
    if (auto it = procs_fds_.find(extras.cgroup_procs_fd); it != procs_fds_.end())
        cgroup = it->second;
    spawns.push_back(
        PendingSpawn{std::move(spec), std::move(extras), std::move(done), false, cgroup});
    if (auto_answer) answer(spawns.size() - 1);
}

int FakeOs::answer(std::size_t i) {
    PendingSpawn &s = spawns.at(i);
    if (s.answered) throw std::runtime_error("FakeOs::answer: answered already");
    s.answered = true;
    const int pid = next_pid_++;
    FakeProc p;
    p.pid = p.pgrp = p.session = pid;
    p.cgroup = s.cgroup;
    outputs.push_back(FakeOutput{});
    p.output = static_cast<int>(outputs.size() - 1);
    procs[pid] = p;
    for (const auto &[k, v] : s.extras.env)
        if (k == "VIGIL_UNIT") {
            spawned_pid[v] = pid;
            procs[pid].unit = v;
        }
    proc::SpawnCompletion c;
    c.result.ok = proc::Spawned{pid, next_fd_++, next_fd_++};
    c.pidfd = next_fd_++;
    pidfds_[c.pidfd] = pid;
    auto done = s.done;
    done(std::move(c));
    return pid;
}

void FakeOs::fail(std::size_t i, const std::string &error) {
    PendingSpawn &s = spawns.at(i);
    s.answered = true;
    proc::SpawnCompletion c;
    c.result.error = proc::SpawnError{proc::ExecStage::Prepare, 0, "", error};
    auto done = s.done;
    done(std::move(c));
}

int FakeOs::pidfd_open(int pid, std::string *error) {
    if (!procs.count(pid)) {
        if (error) *error = "pidfd_open " + std::to_string(pid) + ": No such process";
        return -1;
    }
    const int fd = next_fd_++;
    pidfds_[fd] = pid;
    return fd;
}

void FakeOs::write(int pid, log::Stream stream, const std::string &line) {
    outputs.at(static_cast<std::size_t>(procs.at(pid).output)).pending.emplace_back(stream, line);
}

void FakeOs::deliver() {
    for (std::size_t i = 0; i < outputs.size(); ++i)
        if (!outputs[i].paused) deliver_one(*this, i);
}

void FakeOs::close_output(int pid) {
    outputs.at(static_cast<std::size_t>(procs.at(pid).output)).closing = true;
    deliver();
}

// A process that ends closes its copies of the pipes: when no process holding them is left,
// the reader sees EOF (after what is still in them), at its next read.
void FakeOs::die(int pid, int wstatus) {
    FakeProc &p = procs.at(pid);
    if (!p.alive) return;
    p.alive = false;
    p.zombie = true;
    p.wstatus = wstatus;
    if (p.output < 0) return;
    for (const auto &[other, q] : procs)
        if (q.alive && q.output == p.output) return;
    outputs[static_cast<std::size_t>(p.output)].closing = true;
}

void FakeOs::end(int pid, int wstatus) {
    die(pid, wstatus);
}

void FakeOs::reap(int pid) {
    FakeProc &p = procs.at(pid);
    if (!p.zombie) return;
    p.zombie = false;
    const int ws = *p.wstatus;
    if (shell && !shell->on_reaped(pid, ws)) shell->orphan_reaped();
    // A pidfd watch sees the end too: here after the reaper (for real, in either order).
    if (auto w = watches.find(pid); w != watches.end()) {
        auto ended = std::move(w->second);
        watches.erase(w);
        ended(ws);
    }
}

void FakeOs::exit(int pid, int status) {
    die(pid, exited_status(status));
    reap(pid);
}

void FakeOs::kill(int pid, int signal) {
    die(pid, signal);
    reap(pid);
}

int FakeOs::fork(int parent, bool setsid) {
    const FakeProc &pp = procs.at(parent);
    FakeProc c;
    c.pid = next_pid_++;
    c.ppid = parent;
    c.pgrp = setsid ? c.pid : pp.pgrp;
    c.session = setsid ? c.pid : pp.session;
    c.output = pp.output; // inherits the pipes
    c.unit = pp.unit;     // and the environment
    c.cgroup = pp.cgroup; // and the cgroup
    procs[c.pid] = c;
    return c.pid;
}

int FakeOs::signal_group(int pgid, int sig) {
    bool any = false;
    std::vector<int> dying;
    for (auto &[pid, p] : procs) {
        if (!p.alive || p.pgrp != pgid) continue;
        any = true;
        p.signals.push_back(sig);
        if (sig == SIGKILL || (sig != SIGCONT && !(sig == SIGTERM && p.ignores_term)))
            dying.push_back(pid);
    }
    for (int pid : dying)
        die(pid, sig);
    return any ? 0 : ESRCH;
}

bool FakeOs::group_alive(int pgid) {
    for (const auto &[pid, p] : procs)
        if ((p.alive || p.zombie) && p.pgrp == pgid) return true;
    return false;
}

int FakeOs::signal_pidfd(int pidfd, int sig) {
    auto it = pidfds_.find(pidfd);
    if (it == pidfds_.end()) return EBADF;
    FakeProc &p = procs.at(it->second);
    if (!p.alive && !p.zombie) return ESRCH;
    p.signals.push_back(sig);
    if (p.alive && (sig == SIGKILL || (sig != SIGCONT && !(sig == SIGTERM && p.ignores_term))))
        die(p.pid, sig);
    return 0;
}

void FakeOs::close_fd(int fd) {
    ++closed_fds;
    sockets.erase(fd);
    pidfds_.erase(fd);
    procs_fds_.erase(fd);
}

namespace {
class FakeCgroup final : public daemon::Cgroup {
public:
    FakeCgroup(FakeOs &os, std::string unit)
        : os_(os), unit_(std::move(unit)), dir_("/fake/cgroup/" + unit_) {
        os_.cgroup_states[unit_] = FakeCgroupState{};
    }
    ~FakeCgroup() override { os_.cgroup_states[unit_].exists = false; }
    int open_procs() override { return os_.open_cgroup_procs(unit_); }
    int signal(int sig, bool then_cont) override {
        return os_.signal_cgroup(unit_, sig, then_cont);
    }
    bool empty() const override {
        ++os_.cgroup_states[unit_].events_reads;
        return !os_.cgroup_populated(unit_);
    }
    void on_empty(std::function<void()> cb) override {
        FakeCgroupState &s = os_.cgroup_states[unit_];
        ++s.waits;
        s.when_empty = std::move(cb);
    }
    const std::string &dir() const override { return dir_; }

private:
    FakeOs &os_;
    std::string unit_;
    std::string dir_;
};
} // namespace

std::unique_ptr<daemon::Cgroup> FakeOs::make_cgroup(const std::string &unit, std::string *) {
    if (!cgroups) return nullptr;
    return std::make_unique<FakeCgroup>(*this, unit);
}

std::unique_ptr<daemon::Cgroup> FakeOs::adopt_cgroup(std::string dir) {
    const std::string prefix = "/fake/cgroup/";
    if (!cgroups || !dir.starts_with(prefix)) return nullptr;
    return std::make_unique<FakeCgroup>(*this, dir.substr(prefix.size()));
}

bool FakeOs::cgroup_populated(const std::string &unit) const {
    for (const auto &[pid, p] : procs)
        if (p.alive && p.cgroup == unit) return true;
    return false;
}

int FakeOs::open_cgroup_procs(const std::string &unit) {
    const int fd = next_fd_++;
    procs_fds_[fd] = unit;
    return fd;
}

// As the kernel's: every process in it gets the signal (and SIGCONT after it), SIGKILL
// through cgroup.kill; an empty cgroup is no error.
int FakeOs::signal_cgroup(const std::string &unit, int sig, bool then_cont) {
    std::vector<int> dying;
    for (auto &[pid, p] : procs) {
        if (!p.alive || p.cgroup != unit) continue;
        p.signals.push_back(sig);
        if (then_cont && sig != SIGKILL) p.signals.push_back(SIGCONT);
        if (sig == SIGKILL || (sig != SIGCONT && !(sig == SIGTERM && p.ignores_term)))
            dying.push_back(pid);
    }
    for (int pid : dying)
        die(pid, sig);
    return 0;
}

// The waits for a cgroup to empty whose cgroup is empty now, answered from the "loop".
bool FakeOs::answer_cgroup_waits() {
    for (auto &[unit, s] : cgroup_states) {
        if (!s.exists || !s.when_empty || cgroup_populated(unit)) continue;
        auto cb = std::exchange(s.when_empty, nullptr);
        cb();
        return true;
    }
    return false;
}

std::optional<notify::ProcIds> FakeOs::proc_ids(int pid) {
    auto it = procs.find(pid);
    if (it == procs.end() || (!it->second.alive && !it->second.zombie)) return std::nullopt;
    notify::ProcIds ids{};
    ids.ppid = it->second.ppid;
    ids.pgrp = it->second.pgrp;
    ids.session = it->second.session;
    ids.state = it->second.alive ? 'S' : 'Z';
    return ids;
}

std::unique_ptr<daemon::Running>
FakeOs::watch_exit(int pid, std::function<void(std::optional<int>)> ended, std::string *) {
    watches[pid] = std::move(ended);
    return std::make_unique<FakeRunning>([this, pid] { watches.erase(pid); });
}

std::unique_ptr<daemon::OutputChannel> FakeOs::read_output(int, int, log::CaptureOptions,
                                                           log::Capture::Callbacks callbacks) {
    // The output of the process spawned last (the shell reads it right after the answer).
    const std::size_t i = outputs.size() - 1;
    outputs[i].cb = std::move(callbacks);
    return std::make_unique<FakeOutputChannel>(*this, i);
}

std::unique_ptr<daemon::OutputChannel> FakeOs::adopt_output(int stdout_fd, int stderr_fd,
                                                            std::string_view stdout_pending,
                                                            std::string_view, log::CaptureOptions,
                                                            log::Capture::Callbacks callbacks) {
    FakeOutput o;
    o.cb = std::move(callbacks);
    o.partial = std::string(stdout_pending);
    o.eof = stdout_fd < 0 && stderr_fd < 0;
    outputs.push_back(std::move(o));
    // The processes (shared with the old binary's fake) write to this channel from now on: the
    // descriptor says which of the old fake's channels it was (7000 + 2i).
    const int old = stdout_fd >= 7000 ? (stdout_fd - 7000) / 2 : -1;
    for (auto &[pid, p] : procs)
        if (p.output == old && !remapped_.count(pid)) {
            p.output = static_cast<int>(outputs.size() - 1);
            remapped_.insert(pid);
        }
    adopted_fds.push_back(stdout_fd);
    adopted_fds.push_back(stderr_fd);
    return std::make_unique<FakeOutputChannel>(*this, outputs.size() - 1);
}

std::unique_ptr<daemon::NotifyChannel>
FakeOs::adopt_notify(std::string path, int fd, notify::NotifySocket::Callbacks callbacks) {
    std::string unit = path.substr(path.rfind('/') + 1);
    unit = unit.substr(0, unit.rfind(".sock"));
    notifies[unit] = FakeNotify{std::move(callbacks), std::move(path), true};
    adopted_fds.push_back(fd);
    return std::make_unique<FakeNotifyChannel>(*this, unit);
}

std::unique_ptr<daemon::ReadyChannel> FakeOs::adopt_ready_fd(int fd,
                                                             std::function<void()> on_ready) {
    ready_fds.push_back(std::move(on_ready));
    adopted_fds.push_back(fd);
    return std::make_unique<FakeReady>(fd - 1000);
}

void FakeOs::when_spawns_idle(Duration, std::function<void(bool)> done) {
    idle_waits.push_back(std::move(done));
}

std::string FakeOs::exec_self(daemon::Handover &h) {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts); // what vigild measures its pause from
    h.exec_started_ns = static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
    exec_handover = h;
    exec_steps.push_back("exec");
    return exec_failure;
}

std::unique_ptr<daemon::NotifyChannel>
FakeOs::open_notify(const std::string &unit, notify::NotifySocket::Callbacks callbacks,
                    std::string *) {
    notifies[unit] = FakeNotify{std::move(callbacks), "/fake/notify/" + unit + ".sock", true};
    return std::make_unique<FakeNotifyChannel>(*this, unit);
}

std::unique_ptr<daemon::ReadyChannel> FakeOs::open_ready_fd(std::function<void()> on_ready,
                                                            std::string *) {
    ready_fds.push_back(std::move(on_ready));
    return std::make_unique<FakeReady>(static_cast<int>(ready_fds.size()) + 999);
}

std::unique_ptr<daemon::ProbesChannel>
FakeOs::start_probes(const std::string &unit, probe::MonitorSpecs specs,
                     probe::Monitor::Callbacks cb, probe::ExecSpawn exec,
                     const std::optional<probe::MonitorState> &) {
    auto m = std::make_unique<probe::Monitor>(nullptr, probe_registry, specs,
                                              probe::Monitor::Callbacks{});
    probes[unit] = FakeProbes{std::move(specs), std::move(cb), std::move(exec), true};
    return std::make_unique<FakeProbesChannel>(std::move(m),
                                               [this, unit] { probes[unit].alive = false; });
}

void FakeOs::notify(const std::string &unit, const std::string &datagram, int sender) {
    FakeNotify &n = notifies.at(unit);
    if (!n.alive) throw std::runtime_error("FakeOs::notify: no socket for " + unit);
    auto cb = n.cb;
    notify::Message m = notify::parse_message(datagram);
    if (!cb.owns || !cb.owns(sender)) {
        if (cb.refused)
            cb.refused(sender,
                       "sender pid " + std::to_string(sender) + " is not part of the service");
        return;
    }
    if (cb.message) cb.message(m, sender);
}

void FakeOs::probe_ready(const std::string &unit, bool ok) {
    auto cb = probes.at(unit).cb.on_ready;
    if (cb) cb(ok);
}

void FakeOs::probe_failed(const std::string &unit, core::FailureCause cause,
                          const std::string &detail) {
    auto cb = probes.at(unit).cb.on_failed;
    if (cb) cb(cause, detail);
}

log::FileSinkFactory FakeOs::file_sinks() {
    return [this](log::FileSinkOptions opts) -> std::unique_ptr<log::FileSink> {
        auto sink = std::make_unique<log::MemoryFileSink>(std::move(opts));
        files.push_back(sink.get());
        return sink;
    };
}

void FakeOs::load_units(const std::string &, std::function<void(unit::LoadResult)> done) {
    load_done_ = std::move(done);
}

std::vector<daemon::BoundSocket>
FakeOs::bind_sockets_now(const std::vector<unit::ListenSpec> &specs) {
    std::vector<daemon::BoundSocket> out;
    for (const unit::ListenSpec &s : specs) {
        if (refuse_bind.contains(s.describe())) {
            out.push_back({-1, "listen " + s.describe() + ": bind: Address already in use"});
            continue;
        }
        ++binds;
        sockets[next_socket_] = s.describe();
        out.push_back({next_socket_++, ""});
    }
    return out;
}

void FakeOs::bind_sockets(std::vector<unit::ListenSpec> specs,
                          std::function<void(std::vector<daemon::BoundSocket>)> done) {
    bind_specs_ = std::move(specs);
    bind_done_ = std::move(done);
}

void FakeOs::finish_bind() {
    if (!bind_done_) throw std::runtime_error("FakeOs::finish_bind: nothing to do");
    auto done = std::move(bind_done_);
    bind_done_ = nullptr;
    done(bind_sockets_now(bind_specs_));
}

void FakeOs::finish_load() {
    if (!load_done_ || !next_load) throw std::runtime_error("FakeOs::finish_load: nothing to do");
    auto done = std::move(load_done_);
    load_done_ = nullptr;
    unit::LoadResult r = std::move(*next_load);
    next_load.reset();
    done(std::move(r));
}

void FakeOs::block_stdout() {
    if (::pipe2(stdout_pipe_, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    loop_ = new uv_loop_t;
    uv_loop_init(loop_);
    log::ForwarderOptions o;
    o.fd = stdout_pipe_[1];
    o.colour = false;
    forwarder_ = std::make_unique<log::Forwarder>(loop_, o);
}

bool FakeOs::has_journal(const std::string &fragment) const {
    for (const auto &l : journal)
        if (l.find(fragment) != std::string::npos) return true;
    return false;
}

int FakeOs::pid_of(const std::string &unit) const {
    auto it = spawned_pid.find(unit);
    return it == spawned_pid.end() ? -1 : it->second;
}

// ---- units and the harness ----------------------------------------------------------------

unit::LoadResult load_units(const std::map<std::string, std::string> &units) {
    char tmpl[] = "/tmp/vigil-daemon-test.XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp");
    const fs::path dir = tmpl;
    for (const auto &[name, json] : units)
        std::ofstream(dir / (name + ".json")) << json;
    unit::LoadResult r = unit::load_dir(dir);
    fs::remove_all(dir);
    if (!r.ok()) throw std::runtime_error("units: " + unit::format(r.diagnostics.front()));
    return r;
}

Harness::Harness(const std::map<std::string, std::string> &units, bool auto_answer,
                 const std::function<void(FakeOs &)> &setup,
                 const std::function<void(daemon::Shell &)> &before_start) {
    os.auto_answer = auto_answer;
    if (setup) setup(os);
    opts.units = "/fake/units";
    opts.log_level = daemon::LogLevel::Debug;
    shell = std::make_unique<daemon::Shell>(os, opts, load_units(units));
    os.shell = shell.get();
    if (before_start) before_start(*shell);
    shell->start();
}

Harness::~Harness() {
    shell.reset();
    os.shell = nullptr;
}

ChildId Harness::id(const std::string &unit) const {
    auto c = shell->core().find(unit);
    if (!c) throw std::runtime_error("no unit " + unit);
    return *c;
}

core::ChildStatus Harness::status(const std::string &unit) const {
    return shell->core().status(id(unit));
}

int Harness::pid(const std::string &unit) const {
    auto s = status(unit);
    return s.main_pid ? s.main_pid->value : -1;
}

} // namespace vigil::test

// vigil/notify/process_watch.hpp: learns when a process that is not vigild's child ends.
//
// A service may hand its main role to another of its processes (MAINPID=, the forking-daemon
// pattern). vigild hears of a process's end through SIGCHLD only for its own children: the
// new main process becomes one when its parent exits (vigild is PID 1 or a child subreaper),
// but while its parent runs, or when vigild could not become a subreaper, its end is seen
// only through a pidfd. ProcessWatch polls a pidfd (pidfd_open(2), Linux 5.3), which becomes
// readable once the process has exited; `on_exit` then fires once. The watch reads nothing:
// whoever reaps the process gets its status; ended_status() reads it from /proc while the
// process is a zombie, which is the best a non-parent can do. No timer: polling a pidfd costs
// nothing while the process runs. The callback may destroy the watch.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

struct uv_loop_s;
struct uv_poll_s;

namespace vigil::notify {

class ProcessWatch {
public:
    struct OpenResult {
        std::unique_ptr<ProcessWatch> watch;
        std::string error; // "pidfd_open 4242: No such process"
    };
    static OpenResult open(uv_loop_s *loop, int pid, std::function<void()> on_exit);
    ~ProcessWatch();
    ProcessWatch(const ProcessWatch &) = delete;
    ProcessWatch &operator=(const ProcessWatch &) = delete;

    int pid() const noexcept { return pid_; }

private:
    ProcessWatch(uv_loop_s *loop, int pid, int pidfd, std::function<void()> on_exit);
    void stop() noexcept;

    int pid_, pidfd_;
    std::function<void()> on_exit_;
    uv_poll_s *poll_ = nullptr;
};

// The wait status (as waitpid(2) returns it) of `pid` if it is a zombie (/proc/<pid>/stat field
// 52); nullopt when it runs or is gone (its parent reaped it). A reader not allowed to ptrace
// the process reads 0 there; vigild as root, or as the service's user, reads the status.
std::optional<int> ended_status(int pid);

} // namespace vigil::notify

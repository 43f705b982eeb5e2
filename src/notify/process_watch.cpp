// The end of a process that is not vigild's child: see vigil/notify/process_watch.hpp.
#include "vigil/notify/process_watch.hpp"

#include <cerrno>
#include <cstring>
#include <sys/syscall.h>
#include <unistd.h>

#include <uv.h>

#include "vigil/notify/notify_socket.hpp"

namespace vigil::notify {

ProcessWatch::OpenResult ProcessWatch::open(uv_loop_s *loop, int pid,
                                            std::function<void()> on_exit) {
    OpenResult r;
    // The raw syscall: glibc's wrapper (2.36) is newer than some of the systems vigil targets.
    long fd = ::syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) {
        r.error = "pidfd_open " + std::to_string(pid) + ": " + std::strerror(errno);
        return r;
    }
    // pidfd_open(2) returns a close-on-exec descriptor, so no service inherits it.
    r.watch.reset(new ProcessWatch(loop, pid, static_cast<int>(fd), std::move(on_exit)));
    return r;
}

ProcessWatch::ProcessWatch(uv_loop_s *loop, int pid, int pidfd, std::function<void()> on_exit)
    : pid_(pid), pidfd_(pidfd), on_exit_(std::move(on_exit)) {
    auto *p = new uv_poll_t;
    uv_poll_init(loop, p, pidfd_);
    p->data = this;
    uv_poll_start(p, UV_READABLE, [](uv_poll_t *h, int, int) {
        // Readable (or an error, which can only mean the same): the process has exited. Stop
        // first, so that the callback fires once, then call it last: it may destroy us.
        auto *self = static_cast<ProcessWatch *>(h->data);
        self->stop();
        if (self->on_exit_) {
            auto cb = std::move(self->on_exit_);
            self->on_exit_ = nullptr;
            cb();
        }
    });
    poll_ = reinterpret_cast<uv_poll_s *>(p);
}

ProcessWatch::~ProcessWatch() {
    stop();
}

void ProcessWatch::stop() noexcept {
    if (poll_) {
        uv_close(reinterpret_cast<uv_handle_t *>(poll_),
                 [](uv_handle_t *h) { delete reinterpret_cast<uv_poll_t *>(h); });
        poll_ = nullptr;
    }
    if (pidfd_ >= 0) {
        ::close(pidfd_);
        pidfd_ = -1;
    }
}

std::optional<int> ended_status(int pid) {
    auto ids = proc_ids(pid);
    if (!ids || ids->state != 'Z') return std::nullopt;
    return ids->exit_code;
}

} // namespace vigil::notify

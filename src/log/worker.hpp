// worker.hpp (private to src/log): the threads of the log module (the Forwarder's writer and the
// log writer) are started and ended the same way.
//
//  - A worker thread runs with every signal blocked: process-directed signals (SIGCHLD,
//    SIGTERM, ...) keep going to the loop thread, which handles them, and a write to a pipe or
//    FIFO whose reader left fails with EPIPE instead of raising SIGPIPE in a thread that may not
//    ignore it (the pending, blocked SIGPIPE is discarded with the thread).
//  - Starting one is an error value, never an exception (std::system_error is caught).
//  - Ending one is bounded: the thread is detached at start; its owner asks it to stop and waits
//    a little for it to say it exited, and goes on without it if it did not (a write(2) that
//    never returns: a reader that never reads, a hung network file system). The thread's state
//    is shared with it (std::shared_ptr), so a thread left behind never touches freed memory.
#pragma once

#include <cerrno>
#include <csignal>
#include <functional>
#include <pthread.h>
#include <system_error>
#include <thread>

namespace vigil::log::detail {

// Starts `body` on a detached thread with every signal blocked. Returns 0 or an errno.
inline int start_detached(std::function<void()> body) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); // inherited by the new thread
    int err = 0;
    try {
        std::thread(std::move(body)).detach();
    } catch (const std::system_error &e) {
        err = e.code().value() != 0 ? e.code().value() : EAGAIN;
    } catch (...) {
        err = ENOMEM;
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return err;
}

} // namespace vigil::log::detail

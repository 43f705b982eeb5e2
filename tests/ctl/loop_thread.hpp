// tests/ctl/loop_thread.hpp: a libuv loop on a thread, for tests whose clients block.
//
// The test thread plays blocking clients (ctl::Client, or a vigilctl process) while the
// server under test runs on the loop thread; call() runs code on the loop thread and waits,
// bounded, for it. stop() requires every handle to be closed: uv_loop_close() must return 0.
// SIGPIPE is ignored, as in vigild: libuv writes to a client that hung up with write(2).
#pragma once

#include <csignal>
#include <cstdlib>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>
#include <uv.h>

namespace vigil::test {

// A timeout in milliseconds scaled by VIGIL_TEST_TIMEOUT_MULTIPLIER (slow or ASan builds).
inline int scaled(int ms) {
    const char *m = std::getenv("VIGIL_TEST_TIMEOUT_MULTIPLIER");
    int k = m ? std::atoi(m) : 1;
    return ms * (k > 0 ? k : 1);
}

class LoopThread {
public:
    LoopThread() {
        std::signal(SIGPIPE, SIG_IGN);
        REQUIRE(uv_loop_init(&loop_) == 0);
        uv_async_init(&loop_, &wake_, &LoopThread::on_wake);
        wake_.data = this;
    }
    ~LoopThread() {
        if (!stopped_) stop();
    }
    uv_loop_t *loop() { return &loop_; }
    void start() {
        thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
    }
    void post(std::function<void()> fn) {
        {
            std::lock_guard lock(mu_);
            tasks_.push_back(std::move(fn));
        }
        uv_async_send(&wake_);
    }
    // Runs fn on the loop thread and waits (bounded) for its result.
    template <class F> auto call(F fn) -> decltype(fn()) {
        using R = decltype(fn());
        auto p = std::make_shared<std::promise<R>>();
        auto f = p->get_future();
        post([p, fn]() mutable {
            if constexpr (std::is_void_v<R>) {
                fn();
                p->set_value();
            } else {
                p->set_value(fn());
            }
        });
        REQUIRE(f.wait_for(std::chrono::milliseconds(scaled(5000))) == std::future_status::ready);
        return f.get();
    }
    // Closes the wake-up handle after `before` and joins; the loop must end with no handle
    // left open (uv_loop_close() == 0: libuv's MAKE_VALGRIND_HAPPY).
    // Without a thread (never started), runs the loop here until it ends.
    void stop(std::function<void(std::function<void()>)> before = {}) {
        auto finish = [this, before] {
            auto close_wake = [this] {
                uv_close(reinterpret_cast<uv_handle_t *>(&wake_), nullptr);
            };
            if (before)
                before(close_wake);
            else
                close_wake();
        };
        if (thread_.joinable()) {
            post(finish);
            thread_.join();
        } else {
            finish();
            uv_run(&loop_, UV_RUN_DEFAULT);
        }
        CHECK(uv_loop_close(&loop_) == 0);
        stopped_ = true;
    }

private:
    static void on_wake(uv_async_t *a) {
        auto *self = static_cast<LoopThread *>(a->data);
        std::vector<std::function<void()>> tasks;
        {
            std::lock_guard lock(self->mu_);
            tasks.swap(self->tasks_);
        }
        for (auto &t : tasks)
            t();
    }

    uv_loop_t loop_{};
    uv_async_t wake_{};
    std::mutex mu_;
    std::vector<std::function<void()>> tasks_;
    std::thread thread_;
    bool stopped_ = false;
};

} // namespace vigil::test

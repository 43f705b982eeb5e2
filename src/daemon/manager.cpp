// manager.cpp: see manager.hpp.
#include "manager.hpp"

#include <algorithm>
#include <cstring>

namespace vigil::daemon {

namespace {

class SocketLink final : public ManagerLink {
public:
    explicit SocketLink(notify::ManagerSocket s) : s_(std::move(s)) {}
    int send(std::string_view datagram) override { return s_.send(datagram); }
    std::uint64_t monotonic_usec() override { return notify::monotonic_usec(); }

private:
    notify::ManagerSocket s_;
};

// The first words of a datagram, for the one line a failure logs ("READY=1").
std::string_view first_line(std::string_view datagram) {
    return datagram.substr(0, datagram.find('\n'));
}

} // namespace

std::unique_ptr<ManagerLink> open_manager_link(const notify::ManagerAddress &to,
                                               std::string *error) {
    auto s = notify::ManagerSocket::open(to, error);
    if (!s) return nullptr;
    return std::make_unique<SocketLink>(std::move(*s));
}

ManagerNotifier::ManagerNotifier(Os &os, Journal &journal, std::unique_ptr<ManagerLink> link,
                                 std::string target, std::optional<std::uint64_t> watchdog_usec)
    : os_(os), journal_(journal), link_(std::move(link)), target_(std::move(target)) {
    if (watchdog_usec) {
        const std::uint64_t half_ms = std::min(*watchdog_usec, notify::max_watchdog_usec) / 2000;
        ping_interval_ = Duration{static_cast<std::int64_t>(std::max<std::uint64_t>(half_ms, 1))};
    }
}

void ManagerNotifier::start() {
    if (ping_interval_ && !ping_timer_ && !closed_) ping();
}

// Each ping arms the next from the loop's timer: a loop that does not turn sends none.
void ManagerNotifier::ping() {
    if (closed_) return;
    send(notify::watchdog_message());
    ping_timer_ = os_.after(*ping_interval_, [this] { ping(); });
}

void ManagerNotifier::tree_started(std::string_view status) {
    switch (phase_) {
    case Phase::Starting:
        phase_ = Phase::Ready;
        send(notify::ready_message(status));
        return;
    case Phase::Ready: // the root started again: only what the manager shows changes
        send(notify::status_message(status));
        return;
    case Phase::Reloading: // READY=1 ends the reload
    case Phase::Stopping:
        return;
    }
}

void ManagerNotifier::reload_begun() {
    if (phase_ != Phase::Ready) return;
    phase_ = Phase::Reloading;
    send(notify::reloading_message(link_->monotonic_usec()));
}

void ManagerNotifier::reload_done(std::string_view status) {
    if (phase_ != Phase::Reloading) return;
    phase_ = Phase::Ready;
    send(notify::ready_message(status));
}

void ManagerNotifier::stopping() {
    if (phase_ == Phase::Stopping) return;
    phase_ = Phase::Stopping;
    send(notify::stopping_message("shutting down"));
}

void ManagerNotifier::main_pid(int pid) {
    send(notify::main_pid_message(pid));
}

void ManagerNotifier::close() {
    closed_ = true;
    ping_timer_.reset();
}

void ManagerNotifier::send(const std::string &datagram) {
    const int err = link_->send(datagram);
    if (err == 0) {
        ++sent_;
        return;
    }
    if (failed_++ > 0) return; // counted; said once
    journal_.say(LogLevel::Warn, "cannot notify the service manager: NOTIFY_SOCKET=" + target_ +
                                     ": " + std::string(first_line(datagram)) + ": " +
                                     std::strerror(err) +
                                     "; vigild goes on (later failures are counted, not logged)");
}

std::string tree_summary(const core::Core &core) {
    std::size_t services = 0, running = 0;
    for (std::uint32_t i = 1; i < core.size(); ++i) {
        const core::ChildStatus s = core.status(ChildId{i});
        if (s.removed || s.kind != core::Kind::Service) continue;
        ++services;
        if (s.state == core::ChildState::Running) ++running;
    }
    const std::string noun = services == 1 ? " service" : " services";
    if (running == services) return std::to_string(services) + noun + " running";
    return std::to_string(running) + " of " + std::to_string(services) + noun + " running";
}

} // namespace vigil::daemon

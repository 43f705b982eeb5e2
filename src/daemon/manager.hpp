// manager.hpp: when vigild tells its own service manager (systemd, Type=notify) what it does:
// the sd_notify datagrams of vigil/notify/manager.hpp, sent at the shell's turning points.
//
//   READY=1, STATUS=      once the tree is up: the root supervisor started, which is once every
//                         service started, and is ready where it waits for readiness
//                         ("12 services running"). A later start of the tree (a restart of
//                         the root) sends STATUS= alone.
//   RELOADING=1,          when a reload starts (SIGHUP, vigilctl reload): the manager shows
//   MONOTONIC_USEC=       "reloading" until READY=1 (systemd 253+ wants MONOTONIC_USEC=, older
//                         ones ignore it);
//   READY=1, STATUS=      when it is done, applied or refused. Reloads asked for while one
//                         runs are carried out after it within the same RELOADING=1 .. READY=1.
//   STOPPING=1, STATUS=   once, when shutdown begins: a shutdown command (SIGTERM, SIGINT,
//                         SIGQUIT, vigilctl shutdown), the root giving up, failing to start or
//                         shutting itself down, or, at the latest, vigild's exit.
//   WATCHDOG=1            with WATCHDOG_USEC (meant for vigild's pid): at start, then every
//                         WATCHDOG_USEC/2 from a timer of the loop (Os::after), so a loop that
//                         is stuck stops the pings and the manager acts. The pings go on while
//                         the tree stops, and end with vigild's teardown.
//   MAINPID=              for a later re-exec (main_pid); not sent today.
//
// Order of phases: Starting -> Ready <-> Reloading, then Stopping from any of them, for good.
// Nothing is sent about a reload before the first READY=1 (it would tell the manager that
// vigild is ready while the tree is still starting), and nothing but pings after STOPPING=1.
//
// Failures: a send that fails (EAGAIN, ECONNREFUSED, no manager) is counted; the first one is
// logged, with the address and the reason, and vigild goes on: a manager that does not listen
// never blocks or ends vigild.
//
// The seam: ManagerLink (the socket and the clock MONOTONIC_USEC= is read against) and the
// shell's Os (the watchdog's timer), so tests/daemon checks with a fake link and a fake clock
// when each message goes out.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "journal.hpp"
#include "os.hpp"
#include "vigil/core/core.hpp"
#include "vigil/notify/manager.hpp"
#include "vigil/time.hpp"

namespace vigil::daemon {

// Where vigild's notifications go (notify::ManagerSocket, or a test's fake).
class ManagerLink {
public:
    virtual ~ManagerLink() = default;
    // Sends one datagram without blocking: 0, or an errno.
    virtual int send(std::string_view datagram) = 0;
    // CLOCK_MONOTONIC in microseconds (MONOTONIC_USEC=).
    virtual std::uint64_t monotonic_usec() = 0;
};

// The real link: notify::ManagerSocket and notify::monotonic_usec(). nullptr, with `error`
// set, when no socket can be made.
std::unique_ptr<ManagerLink> open_manager_link(const notify::ManagerAddress &to,
                                               std::string *error);

class ManagerNotifier {
public:
    enum class Phase : std::uint8_t { Starting, Ready, Reloading, Stopping };

    // `target` names the manager's socket in messages (NOTIFY_SOCKET's value). `watchdog`:
    // WATCHDOG_USEC in microseconds (nullopt: no pings).
    ManagerNotifier(Os &os, Journal &journal, std::unique_ptr<ManagerLink> link, std::string target,
                    std::optional<std::uint64_t> watchdog_usec);
    ManagerNotifier(const ManagerNotifier &) = delete;
    ManagerNotifier &operator=(const ManagerNotifier &) = delete;

    // vigild starts: the first WATCHDOG=1, and the timer of the next.
    void start();
    // The root supervisor started; `status` is the tree's summary (tree_summary).
    void tree_started(std::string_view status);
    // A reload starts (idempotent while one runs).
    void reload_begun();
    // The reload (and those asked for while it ran) is done, applied or refused.
    void reload_done(std::string_view status);
    // Shutdown begins (idempotent).
    void stopping();
    // MAINPID=pid: for a re-exec, where the pid the manager watches changes. Unused today.
    void main_pid(int pid);
    // Teardown: no more pings (the loop can end).
    void close();

    Phase phase() const { return phase_; }
    // WATCHDOG=1 every interval (WATCHDOG_USEC/2, at least 1 ms); nullopt: no watchdog.
    std::optional<Duration> ping_interval() const { return ping_interval_; }
    std::uint64_t sent() const { return sent_; }     // datagrams the manager took
    std::uint64_t failed() const { return failed_; } // datagrams that could not be sent

private:
    void send(const std::string &datagram);
    void ping();

    Os &os_;
    Journal &journal_;
    std::unique_ptr<ManagerLink> link_;
    std::string target_;
    std::optional<Duration> ping_interval_;
    std::unique_ptr<Running> ping_timer_;
    Phase phase_ = Phase::Starting;
    bool closed_ = false;
    std::uint64_t sent_ = 0, failed_ = 0;
};

// "12 services running", "11 of 12 services running": services (not supervisors) in view
// (not removed) and how many of them run.
std::string tree_summary(const core::Core &core);

} // namespace vigil::daemon

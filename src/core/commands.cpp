// commands.cpp: what people ask for (vigilctl, signals to vigild): OTP's restart_child,
// terminate_child, a manual restart, signals, and the shutdown of the whole tree (items 49-50).
#include "impl.hpp"

#include <map>

#include "vigil/core/names.hpp"

namespace vigil::core {

namespace {
CommandResult result(CommandOutcome o, std::string msg) {
    return {o, std::move(msg)};
}
std::string who(const Command &cmd) {
    return cmd.who.empty() ? "unknown" : cmd.who;
}
} // namespace

CommandResult Core::Impl::command(const Command &cmd) {
    if (cmd.kind == CommandKind::Shutdown) return shutdown(cmd);
    if (!valid(cmd.child) || node(cmd.child).gone)
        return result(CommandOutcome::NotFound, "no such child");
    switch (cmd.kind) {
    case CommandKind::Start:
        return start_command(cmd.child, cmd);
    case CommandKind::Stop:
        return stop_command(cmd.child, cmd);
    case CommandKind::Restart:
        return restart_command(cmd.child, cmd);
    case CommandKind::Signal:
        return signal_command(cmd.child, cmd);
    case CommandKind::Shutdown:
        break;
    }
    return result(CommandOutcome::Ok, "");
}

CommandResult Core::Impl::start_command(ChildId c, const Command &cmd) {
    Node &n = node(c);
    publish(c, RecordKind::Command, "start requested by " + who(cmd), command_facts(cmd));
    if (tree_shutting_down()) return result(CommandOutcome::ShuttingDown, "shutting down");
    n.held_down = false;
    switch (n.state) {
    case ChildState::Starting:
    case ChildState::Running:
        return result(CommandOutcome::AlreadyRunning, "running");
    case ChildState::Stopping:
        n.goal = Goal::Up;
        if (n.stop_cause == StopCause::Manual) n.stop_cause = StopCause::ManualRestart;
        return result(CommandOutcome::Ok, "starts again once stopped");
    case ChildState::Backoff:
    case ChildState::Stopped:
        return manual_start(c);
    }
    return result(CommandOutcome::Ok, "");
}

CommandResult Core::Impl::stop_command(ChildId c, const Command &cmd) {
    Node &n = node(c);
    publish(c, RecordKind::Command, "stop requested by " + who(cmd), command_facts(cmd));
    if (!rolls.empty()) roll_member_stopped(c, who(cmd));
    // Inside a running sweep's range, the sweep must not bring it back (begin_sweep_start).
    if (n.spec.parent && plan_stops(*n.spec.parent, n.index)) n.held_down = true;
    n.in_set = false; // a set restart under way must not start it again
    n.goal = Goal::Down;
    switch (n.state) {
    case ChildState::Stopped:
        if (n.spec.restart == Restart::Temporary && n.spec.parent) drop(c, "stopped by command");
        return result(CommandOutcome::AlreadyStopped, "stopped");
    case ChildState::Backoff:
        stop_child(c, StopCause::Manual);
        if (n.spec.restart == Restart::Temporary) drop(c, "stopped by command");
        if (n.spec.parent) schedule(*n.spec.parent);
        return result(CommandOutcome::Ok, "stopped");
    case ChildState::Stopping:
        n.stop_cause = stronger(n.stop_cause, StopCause::Manual);
        return result(CommandOutcome::Ok, "stopping");
    case ChildState::Starting:
    case ChildState::Running:
        stop_child(c, StopCause::Manual);
        return result(CommandOutcome::Ok, "stopping");
    }
    return result(CommandOutcome::Ok, "");
}

CommandResult Core::Impl::restart_command(ChildId c, const Command &cmd) {
    Node &n = node(c);
    publish(c, RecordKind::Command, "restart requested by " + who(cmd), command_facts(cmd));
    if (tree_shutting_down()) return result(CommandOutcome::ShuttingDown, "shutting down");
    n.held_down = false;
    switch (n.state) {
    case ChildState::Starting:
    case ChildState::Running:
        n.goal = Goal::Up;
        stop_child(c, StopCause::ManualRestart);
        return result(CommandOutcome::Ok, "restarting");
    case ChildState::Stopping:
        n.goal = Goal::Up;
        if (n.stop_cause == StopCause::Manual) n.stop_cause = StopCause::ManualRestart;
        return result(CommandOutcome::Ok, "starts again once stopped");
    case ChildState::Backoff:
    case ChildState::Stopped:
        return manual_start(c);
    }
    return result(CommandOutcome::Ok, "");
}

// Core::restart: siblings restarted together go through their parent's sequences (a set plan);
// a child alone, or one whose parent is busy with a sequence of its own, is restarted as the
// single command would.
std::vector<CommandResult> Core::Impl::restart_set(std::span<const ChildId> children,
                                                   const std::string &who_) {
    std::vector<CommandResult> res(children.size());
    std::map<ChildId, std::vector<std::size_t>> by_parent; // parent -> positions in `children`
    const Command cmd{CommandKind::Restart, root_id, 0, who_};
    for (std::size_t i = 0; i < children.size(); ++i) {
        const ChildId c = children[i];
        if (!valid(c) || node(c).gone)
            res[i] = result(CommandOutcome::NotFound, "no such child");
        else if (node(c).spec.parent)
            by_parent[*node(c).spec.parent].push_back(i);
        else
            res[i] = restart_command(c, Command{CommandKind::Restart, c, 0, who_});
    }
    for (auto &[p, at] : by_parent) {
        std::vector<ChildId> kids;
        for (std::size_t i : at)
            kids.push_back(children[i]);
        if (restart_siblings(p, kids, cmd, res, at)) continue;
        for (std::size_t i : at)
            res[i] =
                restart_command(children[i], Command{CommandKind::Restart, children[i], 0, who_});
    }
    return res;
}

// Several children of one running supervisor whose sequences are idle: each is marked, and one
// set plan stops the marked ones in reverse start order and starts them in start order, waiting
// as the supervisor's own sequences do. False (nothing done) when that does not apply.
bool Core::Impl::restart_siblings(ChildId parent, const std::vector<ChildId> &kids,
                                  const Command &cmd, std::vector<CommandResult> &res,
                                  const std::vector<std::size_t> &at) {
    Node &par = node(parent);
    if (kids.size() < 2 || par.state != ChildState::Running || par.plan.phase != Phase::Idle ||
        tree_shutting_down())
        return false;
    std::size_t lo = par.spec.children.size();
    for (std::size_t i = 0; i < kids.size(); ++i) {
        publish(kids[i], RecordKind::Command, "restart requested by " + who(cmd),
                command_facts(cmd));
        res[at[i]] = join_set(kids[i]);
        lo = std::min(lo, node(kids[i]).index);
    }
    const std::size_t count = par.spec.children.size();
    par.plan = Plan{Phase::Stopping, false, lo, lo, count - 1, true};
    schedule(parent);
    return true;
}

// One child joins a set restart: it is wanted up, and stopped first if it runs.
CommandResult Core::Impl::join_set(ChildId c) {
    Node &n = node(c);
    n.held_down = false;
    n.goal = Goal::Up;
    n.in_set = true;
    n.dropped = false;
    n.retrying = false;
    switch (n.state) {
    case ChildState::Starting:
    case ChildState::Running:
        return result(CommandOutcome::Ok, "restarting");
    case ChildState::Stopping:
        if (n.stop_cause == StopCause::Manual) n.stop_cause = StopCause::ManualRestart;
        return result(CommandOutcome::Ok, "starts again once stopped");
    case ChildState::Backoff:
        stop_child(c, StopCause::ManualRestart); // the delay is cancelled: it starts in order
        break;
    case ChildState::Stopped:
        break;
    }
    if (n.spec.kind == Kind::Service) n.manual_start = true;
    return result(CommandOutcome::Ok, "starting");
}

// Depth first in start order, so a supervisor's subtree is signalled predictably.
CommandResult Core::Impl::signal_command(ChildId c, const Command &cmd) {
    publish(c, RecordKind::Command,
            "signal " + signal_name(cmd.signal) + " requested by " + who(cmd), command_facts(cmd));
    std::size_t sent = 0;
    std::vector<ChildId> stack{c};
    while (!stack.empty()) {
        const ChildId k = stack.back();
        stack.pop_back();
        const Node &kn = node(k);
        if (kn.spec.kind == Kind::Service) {
            if (kn.pid && !kn.main_exit) {
                signal_group(k, cmd.signal);
                ++sent;
            }
            continue;
        }
        for (auto it = kn.spec.children.rbegin(); it != kn.spec.children.rend(); ++it)
            stack.push_back(*it);
    }
    if (sent == 0) return result(CommandOutcome::NotRunning, "no running process");
    return result(CommandOutcome::Ok, "sent " + signal_name(cmd.signal));
}

// A second Shutdown: the person is not willing to wait. SIGKILL every live process at once, in
// id order; the stop sequences still run to completion (they now only collect exits), so the tree
// is still torn down child by child and the exit status still says what happened.
void Core::Impl::kill_everything() {
    kill_all = true;
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        const ChildId c{static_cast<std::uint32_t>(i)};
        if (is_service(c)) kill_now(c, "second shutdown request; sent SIGKILL");
    }
}

CommandResult Core::Impl::shutdown(const Command &cmd) {
    Node &root = node(root_id);
    publish(root_id, RecordKind::Command, "shutdown requested by " + who(cmd), command_facts(cmd));
    switch (root.state) {
    case ChildState::Stopped:
        finish_root(StopCause::Shutdown);
        return result(CommandOutcome::Ok, "tree already stopped; exiting");
    case ChildState::Stopping:
        if (root.stop_cause == StopCause::Manual || root.stop_cause == StopCause::ManualRestart ||
            root.stop_cause == StopCause::Reload) {
            root.stop_cause = StopCause::Shutdown;
            return result(CommandOutcome::Ok, "shutting down");
        }
        kill_everything();
        return result(CommandOutcome::Ok, "already shutting down; killing what is left");
    case ChildState::Starting:
    case ChildState::Running:
    case ChildState::Backoff:
        root.goal = Goal::Down;
        end_supervisor(root_id, StopCause::Shutdown);
        return result(CommandOutcome::Ok, "shutting down");
    }
    return result(CommandOutcome::Ok, "");
}

bool Core::Impl::tree_shutting_down() const {
    const Node &root = node(root_id);
    const StopCause c = root.stop_cause;
    return root.state == ChildState::Stopping &&
           precedence(c) >= precedence(StopCause::StartFailed) && c != StopCause::Manual &&
           c != StopCause::ManualRestart && c != StopCause::Reload;
}

// Start a stopped child (or one waiting for backoff) on request. OTP's restart_child. A child
// whose parent is not running cannot be started on its own (start the parent: that is its init).
// When the parent's start sequence has not reached the child yet, the sequence starts it, so the
// start order holds even for commands.
CommandResult Core::Impl::manual_start(ChildId c) {
    Node &n = node(c);
    if (!n.spec.parent) {
        start_child(c);
        return result(CommandOutcome::Ok, "starting");
    }
    const ChildId p = *n.spec.parent;
    switch (node(p).state) {
    case ChildState::Running:
    case ChildState::Starting:
        break;
    case ChildState::Stopping:
        return result(CommandOutcome::ShuttingDown,
                      "supervisor " + std::string(name(p)) + " is stopping");
    case ChildState::Stopped:
    case ChildState::Backoff:
        return result(CommandOutcome::NotRunning,
                      "supervisor " + std::string(name(p)) + " is not running; start it");
    }
    n.goal = Goal::Up;
    n.dropped = false;  // a temporary child that ended starts again when asked (item 9)
    n.retrying = false; // a new start, which the sequence waits for
    if (n.spec.kind == Kind::Service) n.manual_start = true;
    if (plan_starts(p, n.index)) {
        if (n.state == ChildState::Backoff) n.backoff_until = now;
        schedule(p);
    } else if (waits_for_predecessor(n)) {
        request_start(p, n.index);
    } else {
        start_child(c);
    }
    return result(CommandOutcome::Ok, "starting");
}

} // namespace vigil::core

// daemon/wrapper.hpp: wrapper mode, `vigild [OPTIONS] -- CMD [ARGS...]`.
//
// vigild runs CMD as its single child the way tini does, and is fit to be a container's PID 1:
//  - The child keeps vigild's stdin, stdout and stderr (a terminal stays a terminal). It runs in
//    its own process group; when vigild's group owns the controlling terminal, the child's group
//    is made the terminal's foreground group, so ^C at the terminal reaches the child.
//  - The child starts with default signal dispositions and an empty signal mask. It inherits
//    vigild's environment as it is, and every descriptor that vigild inherited without
//    FD_CLOEXEC (socket activation, `docker run --preserve-fds`), as with tini: nothing is
//    closed, and vigild's own descriptors are all close-on-exec.
//  - Every catchable signal except SIGCHLD and the synchronous ones (SIGFPE, SIGILL, SIGSEGV,
//    SIGBUS, SIGABRT, SIGTRAP, SIGSYS) is forwarded to the child, or to its process group with
//    WrapperOptions::group, whether it comes from outside the PID namespace or from inside it.
//    SIGTSTP, SIGTTIN and SIGTTOU are forwarded too and never stop or wedge vigild.
//  - Every zombie is reaped, re-parented orphans included. When not PID 1, vigild registers as a
//    child subreaper so that orphans are re-parented to it, and warns when it cannot.
//  - vigild returns as soon as the child ends, even while orphans still run, with the child's
//    exit status, or 128+N when signal N killed it. Only the child's own pid decides this: an
//    orphan's exit is reaped and otherwise ignored.
//  - A command that cannot be started gives a prompt error on stderr,
//    "vigild: exec CMD: No such file or directory", and status 127 (not found) or 126 (found but
//    not executable), as sh and tini do; 1 when no process could be created (fork: EAGAIN).
//  - On success vigild prints nothing of its own; WrapperOptions::verbose adds one stderr line
//    per spawn, forwarded signal and exit.
//
// Cost: wrapper mode must start no slower than catatonit, so it does nothing before exec'ing
// the child that tini or catatonit do not do (bench/README.md has the figures). main() decides
// on it before any option parser exists (parse_wrapper_fast), the command is argv itself and
// the environment is `environ`, both passed on without a copy, and the child is started with
// glibc's posix_spawnp() (clone(CLONE_VM|CLONE_VFORK): no page tables are copied, and exec
// errors come back as the return value). Hence, unlike services, which go through
// proc::spawn, no environment is rebuilt, no descriptor is closed or listed, no allocation is
// made on the way to exec, and the C++ runtime (iostream, exceptions) is never used.
//
// Mechanism (why not uv_signal_t): all forwarded signals are *blocked* and collected with
// sigwaitinfo(), as tini does but without its 1 s timeout, so nothing wakes vigild until a
// signal arrives. Blocking, rather than catching, is what the two hard cases need:
//  - The kernel drops a signal sent to a PID namespace's init when its disposition is SIG_DFL,
//    but never drops a blocked signal: it stays pending until sigwaitinfo() takes it.
//  - A background process that writes to its terminal with TOSTOP set gets SIGTTOU; when the
//    signal is caught (libuv installs SA_RESTART handlers) the write is restarted, raises SIGTTOU
//    again, and vigild spins forever. When SIGTTOU is blocked the kernel lets the write through
//    and sends nothing, so vigild can still print its error lines after the child took the
//    terminal, and a SIGTTOU/SIGTTIN/SIGTSTP sent to vigild is merely forwarded. For the same
//    reason the child's tcsetpgrp(), done between clone and exec with every signal still
//    blocked, cannot stop it.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace vigil::daemon {

struct WrapperOptions {
    bool group = false;   // forward signals to the child's process group (-g)
    bool verbose = false; // one stderr line per spawn, forwarded signal and exit
};

// A wrapper invocation recognised by parse_wrapper_fast.
struct WrapperCall {
    WrapperOptions options;
    char **command = nullptr; // CMD ARGS..., null-terminated: points into main()'s argv
};

// The fast path's command line, read by hand before CLI11 exists. Recognises exactly
//     vigild [-g | --group]... [--log-level LEVEL | --log-level=LEVEL] -- CMD [ARGS...]
// with LEVEL one of error, warn, info, debug (debug sets WrapperOptions::verbose), at most one
// --log-level, and a non-empty CMD; everything after the first "--" belongs to CMD, untouched.
// Anything else (another option, a bad or repeated level, "--" with no command, no "--" at
// all) returns nullopt, and the full parser (parse_options) then decides, with its own
// messages: so a command line means the same and fails with the same words on either path.
// Reads argv only; no allocation.
std::optional<WrapperCall> parse_wrapper_fast(int argc, char **argv) noexcept;

// Runs cmd (null-terminated; cmd[0] is looked up in PATH when it has no '/') as vigild's single
// child until it ends, forwarding signals and reaping zombies meanwhile. Returns vigild's exit
// status: the child's status, 128+N when signal N killed it, 127/126 when cmd cannot be
// executed, 1 for other start failures and 2 when cmd is empty. Blocks signals in the calling
// thread and leaves them blocked: call it from main() right before exiting. Allocates nothing
// unless opts.verbose.
int run_wrapper(const WrapperOptions &opts, char *const *cmd) noexcept;

// The same for the full parser's result (Options::command).
int run_wrapper(const WrapperOptions &opts, const std::vector<std::string> &cmd);

} // namespace vigil::daemon

// listen.hpp: the sockets vigild opens and holds for services (a unit's `listen`), bound here.
//
// vigild binds every socket of every unit at start-up (before the tree starts; a failure makes
// vigild refuse to run) and, on reload, those the new units add (off the loop: a unix socket
// touches the file system). It holds them across restarts and passes them to every incarnation
// of every instance by systemd's socket-activation protocol (fd 3.., LISTEN_FDS, LISTEN_PID,
// LISTEN_FDNAMES; Shell::prepare_extras). One socket per entry of a unit file, shared by all
// its instances (held_key()), or with `reuseport` one per instance, each bound with
// SO_REUSEPORT so the kernel spreads connections over them.
//
// What bind_socket() guarantees (vigild is root and a service may own directories):
//  - The descriptor is close-on-exec in vigild and never O_NONBLOCK: the open file description
//    is shared with the services, which expect sd_listen_fds()'s default, blocking. It reaches
//    a service only as one of its fds 3.. (exec probes and the Spawner's helper never get it).
//  - tcp: SO_REUSEADDR (a restarted vigild binds again over TIME_WAIT connections); udp too.
//    The backlog is the entry's (the kernel caps it at net.core.somaxconn).
//  - unix: the path's directories are opened one by one from "/" and each must be owned by
//    root or by vigild's user and not writable by its group or others, except that a directory
//    above the socket's own may be writable by all when it has the sticky bit (as /tmp: nobody
//    can rename or remove what another user put there). The socket's own directory may never
//    be writable by anyone but its owner (root or vigild): whoever can write it could swap the
//    socket for a symlink between bind and chmod. Otherwise the entry is refused, saying why.
//    A file already at the path is removed only when lstat says it is a socket (a stale one,
//    say from a vigild that was killed); anything else is an error. The mode and owner are
//    set on the socket file through an O_PATH|O_NOFOLLOW descriptor of it (fchownat with
//    AT_EMPTY_PATH, chmod of /proc/self/fd/N), never through a path that could be a symlink;
//    until then the file has vigild's umask's mode, which gives nobody but root write (connect)
//    access unless vigild's umask is unusually open.
//  - Blocking: a unix bind blocks on the file system; call it before the loop runs or off it.
#pragma once

#include <string>

#include "vigil/unit/unit.hpp"

namespace vigil::daemon {

struct BoundSocket {
    int fd = -1;       // owned by the receiver; -1 with `error`
    std::string error; // "listen tcp 0.0.0.0:80: bind: Address already in use; ..."
};

// Opens, binds and (stream sockets) listens. Blocking (see above).
BoundSocket bind_socket(const unit::ListenSpec &spec);

// Which held socket an instance's entry uses: one per entry of the unit file (ListenSpec::key()),
// or with reuseport one per instance. A unix entry's mode and owner are part of it (changed,
// the socket is bound anew at its path); a backlog is not (changed, the socket listens again).
std::string held_key(const unit::ListenSpec &spec, const std::string &unit_name);

// Checks the directories of a unix socket path as described above; "" when they are safe,
// else why not ("directory /srv/app is writable by uid 1000 ...").
std::string check_socket_dirs(const std::string &path);

} // namespace vigil::daemon

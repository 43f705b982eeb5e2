// src/unit/listen_parse.hpp: a service's `listen` entries (unit::ListenSpec), for the loader.
//
// Everything that can be checked without binding is checked here, each problem at its value:
// exactly one of "tcp", "udp", "unix"; a numeric host (IPv4, or IPv6 in brackets: binding
// resolves no name, so no DNS at start-up) and a port of 1..65535; an absolute unix path that
// fits sun_path and has no "." or ".." component; a name that LISTEN_FDNAMES can carry (no ':');
// backlog 1..65535; a mode as an octal string; owner and group only for unix sockets, resolved
// (NSS) at load like a service's user; no two entries on the same address. Entries across unit
// files are compared by load_dir() (ListenSpec::key()).
#pragma once

#include <string>
#include <vector>

#include "checker.hpp"
#include "vigil/unit/unit.hpp"

namespace vigil::unit::detail {

// The fields of one `listen` item (known_fields()["listen"]).
extern const Fields listen_fields;

// Parses `v` (the value of "listen") into `out`; `file_stem` is the default name of every entry.
void parse_listen(Checker &c, const json &v, const std::string &file_stem,
                  std::vector<ListenSpec> &out);

} // namespace vigil::unit::detail

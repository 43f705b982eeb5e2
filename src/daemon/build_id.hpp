// build_id.hpp: which build of vigild this is.
#pragma once

#include <string>

namespace vigil::daemon {

// The running program's GNU build ID (the linker's NT_GNU_BUILD_ID note) in hex, "" when it was
// linked without one. Two binaries with the same ID are the same build: a re-exec to the same
// build may take what the old one computed (units_codec.hpp).
const std::string &own_build_id();

} // namespace vigil::daemon

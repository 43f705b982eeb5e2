// units_codec.hpp: the units as loaded (unit::LoadResult: the tree and every unit), carried
// across a re-exec to the same binary so that it need not read and check the unit files again
// while nothing is answered (reexec.cpp says when they are carried, run.cpp when taken).
// The format is the re-exec state's (wire.hpp); every field of every structure is carried,
// which units_codec.cpp checks at compile time against the structures' field counts.
#pragma once

#include "vigil/unit/unit.hpp"
#include "wire.hpp"

namespace vigil::daemon {

// The tree and the units of `loaded` (its diagnostics are not carried: a state is exported
// only for units that loaded without any).
void put_loaded(wire::Writer &w, const unit::LoadResult &loaded);
// What put_loaded wrote, checked as far as the bytes can be (enumerators, ids within the tree,
// the tree's shape); throws wire::Refused.
unit::LoadResult get_loaded(wire::Reader &r);

} // namespace vigil::daemon

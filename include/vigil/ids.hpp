// vigil/ids.hpp: strong types for the identifiers that cross module boundaries.
//
// A bare int never carries a pid, and a child index can never be confused with one.
//  - ChildId: a dense index into the tree's node table (0 is always the root supervisor).
//    Dense indices let the core keep vectors, not maps, which is what scales to 10k children.
//  - Pid: a process id as the kernel reports it.
//  - Incarnation: one run of a child; every (re)start makes a new one. Process events carry
//    it so that an event from an old run (a late SIGCHLD, a reused pid) is recognised and dropped.
#pragma once

#include <compare>
#include <cstdint>

namespace vigil {

struct ChildId {
    std::uint32_t value = 0;
    friend constexpr auto operator<=>(ChildId, ChildId) = default;
};

struct Pid {
    std::int32_t value = 0;
    friend constexpr auto operator<=>(Pid, Pid) = default;
};

struct Incarnation {
    std::uint64_t value = 0;
    friend constexpr auto operator<=>(Incarnation, Incarnation) = default;
};

inline constexpr ChildId root_id{0};

} // namespace vigil

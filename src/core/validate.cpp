// validate.cpp: the checks on a TreeSpec that its types cannot express (OTP item 13).
//
// The unit loader rejects what JSON can get wrong (unknown strategies, restart types, fields);
// this checks the rest, so a core built from any TreeSpec (tests, reload) refuses nonsense the
// way an OTP supervisor refuses a bad child spec list: before starting anything.
#include <map>
#include <string>
#include <string_view>

#include "vigil/core/core.hpp"

namespace vigil::core {

namespace {

// A supervisor's own parameters, and the significant flags of its children (items 13, 43).
void check_supervisor(const TreeSpec &spec, const ChildSpec &n, std::vector<std::string> &errors) {
    const std::string who = "\"" + n.name + "\"";
    if (n.intensity < 0) errors.push_back(who + ": intensity must be >= 0");
    if (n.period.count() <= 0) errors.push_back(who + ": period must be > 0");
    for (ChildId k : n.children) {
        if (k.value >= spec.nodes.size()) continue;
        const ChildSpec &c = spec.nodes[k.value];
        if (!c.significant) continue;
        if (c.restart == Restart::Permanent)
            errors.push_back("\"" + c.name +
                             "\": significant requires restart transient or temporary");
        if (n.auto_shutdown == AutoShutdown::Never)
            errors.push_back("\"" + c.name + "\": significant requires auto_shutdown of " + who +
                             " other than never");
    }
}

// `after` orders siblings only, and only earlier ones (the children lists are in start order),
// so a parallel supervisor can never wait in a cycle.
void check_after(const TreeSpec &spec, const std::vector<int> &parents,
                 const std::vector<std::size_t> &parent_of, std::vector<std::string> &errors) {
    const auto &nodes = spec.nodes;
    for (std::size_t i = 1; i < nodes.size(); ++i) {
        if (parents[i] != 1) continue;
        const auto &sibs = nodes[parent_of[i]].children;
        const auto pos = [&](std::size_t id) {
            for (std::size_t j = 0; j < sibs.size(); ++j)
                if (sibs[j].value == id) return j;
            return sibs.size();
        };
        for (ChildId a : nodes[i].after)
            if (a.value >= nodes.size() || pos(a.value) >= pos(i))
                errors.push_back("\"" + nodes[i].name +
                                 "\": \"after\" names a child that is not an earlier sibling");
    }
}

} // namespace

std::vector<std::string> validate(const TreeSpec &spec) {
    std::vector<std::string> errors;
    const auto &nodes = spec.nodes;
    if (nodes.empty()) return {"the tree has no root supervisor"};
    if (nodes[0].kind != Kind::Supervisor)
        errors.push_back("node 0 (the root) is not a supervisor");
    std::map<std::string_view, std::size_t> names;
    std::vector<int> parents(nodes.size(), 0);
    std::vector<std::size_t> parent_of(nodes.size(), 0); // from the children lists
    for (std::size_t i = 0; i < nodes.size(); ++i) {
        const ChildSpec &n = nodes[i];
        const std::string who = "\"" + n.name + "\"";
        if (!names.emplace(n.name, i).second)
            errors.push_back("two children share the name " + who);
        if (n.kind == Kind::Service && !n.children.empty())
            errors.push_back(who + ": a service cannot have children");
        for (ChildId k : n.children) {
            if (k.value >= nodes.size() || k.value == 0) {
                errors.push_back(who + ": child id " + std::to_string(k.value) + " out of range");
                continue;
            }
            parents[k.value]++;
            parent_of[k.value] = i;
        }
        if (n.kind == Kind::Supervisor) check_supervisor(spec, n, errors);
        if (n.stop.timeout && n.stop.timeout->count() < 0)
            errors.push_back(who + ": stop timeout must be >= 0");
        if (n.start_timeout && n.start_timeout->count() < 0)
            errors.push_back(who + ": start timeout must be >= 0");
    }
    for (std::size_t i = 1; i < nodes.size(); ++i)
        if (parents[i] != 1)
            errors.push_back("\"" + nodes[i].name + "\" is listed by " +
                             std::to_string(parents[i]) + " supervisors (must be exactly 1)");
    check_after(spec, parents, parent_of, errors);
    return errors;
}

} // namespace vigil::core

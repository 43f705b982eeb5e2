// docs/vigil.unit.schema.json against the loader: the same fields in every kind of object, the
// same enum spellings, and defaults equal to the ones the code applies.
//
// The field names come from the loader's own tables (known_fields(), known_values()), so a
// field added to the loader without the schema, or the other way round, fails here. The
// validation side (examples, fixtures, values the loader rejects) is tests/docs/test_schema.py.
#include <algorithm>
#include <doctest/doctest.h>
#include <fstream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "vigil/core/spec.hpp"
#include "vigil/unit/bounds.hpp"
#include "vigil/unit/json_positions.hpp"
#include "vigil/unit/unit.hpp"
#include "vigil/unit/values.hpp"

using namespace vigil;
using namespace vigil::unit;
using nlohmann::json;

namespace {

json load_schema() {
    std::ifstream in(std::string(VIGIL_SOURCE_ROOT) + "/docs/vigil.unit.schema.json");
    REQUIRE_MESSAGE(in.good(), "cannot open docs/vigil.unit.schema.json");
    return json::parse(in);
}

const json &at(const json &schema, const std::string &ptr) {
    json::json_pointer p(ptr);
    REQUIRE_MESSAGE(schema.contains(p), "the schema has no " << ptr);
    return schema.at(p);
}

std::set<std::string> keys(const json &properties) {
    std::set<std::string> out;
    for (const auto &[k, v] : properties.items())
        out.insert(k);
    return out;
}

std::set<std::string> as_set(const std::vector<std::string> &v) {
    return {v.begin(), v.end()};
}

// "schema lacks: a b; loader lacks: c", for failure messages.
std::string difference(const std::set<std::string> &schema, const std::set<std::string> &loader) {
    std::string out = "schema lacks:";
    for (const auto &k : loader)
        if (!schema.contains(k)) out += " " + k;
    out += "; loader lacks:";
    for (const auto &k : schema)
        if (!loader.contains(k)) out += " " + k;
    return out;
}

#define CHECK_SAME(schema_set, loader_set)                                                         \
    do {                                                                                           \
        const std::set<std::string> s_ = (schema_set), l_ = (loader_set);                          \
        CHECK_MESSAGE(s_ == l_, difference(s_, l_));                                               \
    } while (0)

// Where each kind of object the loader knows is described in the schema.
const std::map<std::string, std::string> property_tables{
    {"service", "/$defs/service/properties"},
    {"supervisor", "/$defs/supervisor/properties"},
    {"root", "/$defs/root/properties"},
    {"stop", "/$defs/service/properties/stop/properties"},
    {"limits", "/$defs/service/properties/limits/properties"},
    {"limit", "/$defs/limit/anyOf/1/properties"},
    {"backoff", "/$defs/service/properties/backoff/properties"},
    {"logs", "/$defs/service/properties/logs/properties"},
    {"ready", "/$defs/service/properties/ready/properties"},
    {"probe", "/$defs/probe/properties"},
    {"tcp", "/$defs/probe/properties/tcp/properties"},
    {"http", "/$defs/probe/properties/http/properties"},
    {"pattern", "/$defs/service/properties/patterns/items/properties"},
    {"listen", "/$defs/service/properties/listen/items/properties"},
};

// Every `properties` object of the schema outside conditions (if/then/else, dependentSchemas,
// which only constrain fields declared elsewhere), by JSON pointer.
void find_property_tables(const json &j, const std::string &ptr, std::set<std::string> &out) {
    if (j.is_array()) {
        for (std::size_t i = 0; i < j.size(); ++i)
            find_property_tables(j[i], ptr + "/" + std::to_string(i), out);
        return;
    }
    if (!j.is_object()) return;
    for (const auto &[k, v] : j.items()) {
        if (k == "if" || k == "then" || k == "else" || k == "dependentSchemas") continue;
        std::string p = pointer_append(ptr, k);
        if (k == "properties" && v.is_object()) {
            out.insert(p);
            for (const auto &[name, sub] : v.items())
                find_property_tables(sub, pointer_append(p, name), out);
        } else {
            find_property_tables(v, p, out);
        }
    }
}

std::string default_string(const json &schema, const std::string &ptr) {
    const json &d = at(schema, ptr + "/default");
    REQUIRE(d.is_string());
    return d.get<std::string>();
}

Duration default_duration(const json &schema, const std::string &ptr) {
    auto d = parse_duration(default_string(schema, ptr));
    REQUIRE_MESSAGE(d.has_value(), ptr << "'s default is not a duration");
    return *d;
}

std::uint64_t default_size(const json &schema, const std::string &ptr) {
    auto n = parse_size(default_string(schema, ptr));
    REQUIRE_MESSAGE(n.has_value(), ptr << "'s default is not a size");
    return *n;
}

} // namespace

TEST_SUITE("unit schema") {
    TEST_CASE("every kind of object has the loader's field names, no more, no fewer") {
        json schema = load_schema();
        auto fields = known_fields();
        std::set<std::string> kinds, mapped;
        for (const auto &[kind, names] : fields)
            kinds.insert(kind);
        for (const auto &[kind, ptr] : property_tables)
            mapped.insert(kind);
        CHECK_SAME(mapped, kinds); // a new kind of object in the loader needs a line above
        for (const auto &entry : property_tables) {
            // Named, not a structured binding: clang 14 cannot capture one (CAPTURE's lambda).
            const std::string &kind = entry.first, &ptr = entry.second;
            if (!fields.contains(kind)) continue;
            CAPTURE(kind);
            CHECK_SAME(keys(at(schema, ptr)), as_set(fields.at(kind)));
            // Unknown fields are errors for the loader, so for the schema too.
            const std::string object =
                ptr.substr(0, ptr.size() - std::string("/properties").size());
            CHECK(at(schema, object + "/additionalProperties") == json(false));
        }
    }

    TEST_CASE("a supervisor's stop has the service's fields but signal and drain") {
        json schema = load_schema();
        auto stop = as_set(known_fields().at("stop"));
        stop.erase("signal");
        stop.erase("drain"); // a supervisor has nothing to drain
        CHECK_SAME(keys(at(schema, "/$defs/supervisor/properties/stop/properties")), stop);
        CHECK(at(schema, "/$defs/supervisor/properties/stop/additionalProperties") == json(false));
    }

    TEST_CASE("no object in the schema escapes the comparison") {
        json schema = load_schema();
        std::set<std::string> found;
        find_property_tables(schema, "", found);
        std::set<std::string> expected;
        for (const auto &[kind, ptr] : property_tables)
            expected.insert(ptr);
        expected.insert("/$defs/supervisor/properties/stop/properties"); // checked above
        // Only narrows success_threshold of the probe it refers to ($ref).
        expected.insert("/$defs/single_success_probe/properties");
        CHECK_SAME(found, expected);
        CHECK(keys(at(schema, "/$defs/single_success_probe/properties")) ==
              std::set<std::string>{"success_threshold"});
        CHECK(at(schema, "/$defs/single_success_probe/$ref") == json("#/$defs/probe"));
    }

    TEST_CASE("enumerated fields have the loader's spellings") {
        json schema = load_schema();
        auto values = known_values();
        auto enum_at = [&](const std::string &ptr) {
            std::set<std::string> out;
            for (const auto &v : at(schema, ptr))
                out.insert(v.get<std::string>());
            return out;
        };
        CHECK_SAME((std::set<std::string>{
                       at(schema, "/$defs/service/properties/kind/const").get<std::string>(),
                       at(schema, "/$defs/supervisor/properties/kind/const").get<std::string>()}),
                   as_set(values.at("kind")));
        for (const char *def : {"service", "supervisor"})
            CHECK_SAME(enum_at(std::string("/$defs/") + def + "/properties/restart/enum"),
                       as_set(values.at("restart")));
        for (const char *def : {"supervisor", "root"}) {
            CAPTURE(def);
            CHECK_SAME(enum_at(std::string("/$defs/") + def + "/properties/strategy/enum"),
                       as_set(values.at("strategy")));
            CHECK_SAME(enum_at(std::string("/$defs/") + def + "/properties/auto_shutdown/enum"),
                       as_set(values.at("auto_shutdown")));
        }
        const std::string pattern = "/$defs/service/properties/patterns/items/properties";
        CHECK_SAME(enum_at(pattern + "/stream/enum"), as_set(values.at("stream")));
        CHECK_SAME(enum_at(pattern + "/action/enum"), as_set(values.at("action")));
        CHECK_SAME(enum_at("/$defs/service/properties/update/enum"), as_set(values.at("update")));
        std::set<std::string> enumerated;
        for (const auto &[field, spellings] : values)
            enumerated.insert(field);
        CHECK(enumerated == std::set<std::string>{"kind", "restart", "strategy", "auto_shutdown",
                                                  "stream", "action", "update"});
    }

    TEST_CASE("defaults in the schema are the ones the code applies") {
        json schema = load_schema();
        const core::ChildSpec child;
        const core::BackoffSpec backoff;
        const LogSpec logs;
        const ProbeSpec probe;
        const ReadySpec ready;
        const std::string svc = "/$defs/service/properties";
        const std::string sup = "/$defs/supervisor/properties";

        CHECK(default_string(schema, svc + "/kind") == "service");
        CHECK(default_string(schema, svc + "/parent") == "root");
        CHECK(default_string(schema, svc + "/restart") == "permanent");
        CHECK(child.restart == core::Restart::Permanent);
        CHECK(at(schema, svc + "/significant/default") == json(child.significant));
        CHECK(core::parse_signal(default_string(schema, svc + "/stop/properties/signal")) ==
              child.stop.signal);
        CHECK(default_duration(schema, svc + "/stop/properties/timeout") == child.stop.timeout);
        CHECK(default_string(schema, sup + "/stop/properties/timeout") == "infinity");

        const std::string b = svc + "/backoff/properties";
        CHECK(default_duration(schema, b + "/initial") == backoff.initial);
        CHECK(default_duration(schema, b + "/max") == backoff.max);
        CHECK(at(schema, b + "/factor/default").get<double>() == backoff.factor);
        CHECK(at(schema, b + "/jitter/default").get<double>() == backoff.jitter);
        CHECK(default_duration(schema, b + "/reset_after") == backoff.reset_after);

        for (const std::string &def : {sup, std::string("/$defs/root/properties")}) {
            CAPTURE(def);
            CHECK(default_string(schema, def + "/strategy") == "one_for_one");
            CHECK(child.strategy == core::Strategy::OneForOne);
            CHECK(at(schema, def + "/intensity/default") == json(child.intensity));
            CHECK(default_duration(schema, def + "/period") == child.period);
            CHECK(default_string(schema, def + "/auto_shutdown") == "never");
            CHECK(child.auto_shutdown == core::AutoShutdown::Never);
            CHECK(at(schema, def + "/parallel/default") == json(child.parallel));
        }

        const std::string l = svc + "/logs/properties";
        CHECK(at(schema, l + "/forward/default") == json(logs.forward));
        CHECK_FALSE(logs.file.has_value());
        CHECK_FALSE(at(schema, l + "/file").contains("default"));
        CHECK(default_size(schema, l + "/max_size") == logs.max_size);
        CHECK(at(schema, l + "/keep/default") == json(logs.keep));
        CHECK(at(schema, l + "/timestamps/default") == json(logs.timestamps));
        CHECK(default_size(schema, l + "/ring") == logs.ring);
        CHECK(default_size(schema, l + "/max_line") == logs.max_line);
        CHECK(at(schema, l + "/stderr/default") == json(logs.merge_stderr ? "stdout" : "separate"));

        const std::string r = svc + "/ready/properties";
        CHECK(at(schema, r + "/notify/default") == json(ready.notify));
        CHECK(default_duration(schema, r + "/timeout") == ready.timeout);

        const std::string p = "/$defs/probe/properties";
        CHECK(default_duration(schema, p + "/initial_delay") == probe.initial_delay);
        CHECK(default_duration(schema, p + "/period") == probe.period);
        CHECK(default_duration(schema, p + "/timeout") == probe.timeout);
        CHECK(at(schema, p + "/failure_threshold/default") == json(probe.failure_threshold));
        CHECK(at(schema, p + "/success_threshold/default") == json(probe.success_threshold));
        for (const char *method : {"tcp", "http"})
            CHECK(default_string(schema, p + "/" + method + "/properties/host") == probe.host);
        CHECK(default_string(schema, p + "/http/properties/path") == probe.path);

        const PatternSpec pattern;
        const std::string pt = svc + "/patterns/items/properties";
        CHECK(default_string(schema, pt + "/stream") == "both");
        CHECK(pattern.stream == Stream::Both);
        CHECK(default_string(schema, pt + "/action") == "event");
        CHECK(pattern.action == PatternAction::Event);
        CHECK(at(schema, pt + "/count/default") == json(pattern.count));
    }

    TEST_CASE("the schema's maxima are the loader's (bounds.hpp)") {
        namespace b = vigil::unit::bounds;
        json schema = load_schema();
        const std::string svc = "/$defs/service/properties";
        const std::string probe = "/$defs/probe/properties";
        // (JSON pointer of a keyword in the schema, the loader's bound)
        const std::vector<std::pair<std::string, std::uint64_t>> same{
            {svc + "/logs/properties/ring/maximum", b::max_ring},
            {svc + "/logs/properties/max_line/minimum", b::min_line},
            {svc + "/logs/properties/max_line/maximum", b::max_line},
            {svc + "/logs/properties/max_size/minimum", b::min_log_size},
            {svc + "/logs/properties/max_size/maximum", b::max_log_size},
            {svc + "/logs/properties/keep/maximum", b::max_keep},
            {svc + "/logs/properties/file/maxLength", b::max_path_bytes},
            {svc + "/instances/maximum", b::max_instances},
            {svc + "/max_unavailable/maximum", b::max_instances},
            {svc + "/listen/maxItems", b::max_listen},
            {svc + "/listen/items/properties/backlog/maximum", b::max_backlog},
            {svc + "/listen/items/properties/name/maxLength", b::max_fdname_bytes},
            {svc + "/listen/items/properties/unix/maxLength", b::max_socket_path_bytes},
            {"/$defs/supervisor/properties/intensity/maximum", b::max_intensity},
            {"/$defs/root/properties/intensity/maximum", b::max_intensity},
            {probe + "/failure_threshold/maximum", b::max_threshold},
            {probe + "/success_threshold/maximum", b::max_threshold},
            {svc + "/patterns/maxItems", b::max_patterns},
            {svc + "/patterns/items/properties/count/maximum", b::max_pattern_count},
            {svc + "/after/maxItems", b::max_after},
            {"/$defs/supervisor/properties/after/maxItems", b::max_after},
            {"/$defs/unit_name/maxLength", b::max_name_bytes},
            {svc + "/command/maxItems", b::max_argv},
            {svc + "/command/items/maxLength", b::max_arg_bytes},
            {probe + "/exec/maxItems", b::max_argv},
            {probe + "/exec/items/maxLength", b::max_arg_bytes},
            {svc + "/env/maxProperties", b::max_env},
            {svc + "/env/propertyNames/maxLength", b::max_arg_bytes},
            {svc + "/env/additionalProperties/maxLength", b::max_arg_bytes},
            {svc + "/cwd/maxLength", b::max_path_bytes},
            {svc + "/user/oneOf/0/maxLength", b::max_user_bytes},
            {svc + "/group/oneOf/0/maxLength", b::max_user_bytes},
            {probe + "/tcp/properties/host/maxLength", b::max_host_bytes},
            {probe + "/http/properties/host/maxLength", b::max_host_bytes},
            {probe + "/http/properties/path/maxLength", b::max_url_path_bytes},
            {probe + "/http/properties/headers/maxProperties", b::max_headers},
            {probe + "/http/properties/headers/propertyNames/maxLength", b::max_header_name_bytes},
            {probe + "/http/properties/headers/additionalProperties/maxLength",
             b::max_header_value_bytes},
            {"/$defs/regex/maxLength", b::max_regex_bytes},
        };
        for (const auto &entry : same) {
            const auto &ptr = entry.first; // not a binding: CAPTURE (above)
            const auto bound = entry.second;
            CAPTURE(ptr);
            CHECK(at(schema, ptr).get<std::uint64_t>() == bound);
        }
        for (const char *def : {"service", "supervisor", "root"}) {
            CAPTURE(def);
            const std::string d = std::string("/$defs/") + def + "/properties";
            CHECK(at(schema, d + "/description/maxLength").get<std::uint64_t>() ==
                  b::max_description_bytes);
            CHECK(at(schema, d + "/$schema/maxLength").get<std::uint64_t>() == b::max_string_bytes);
        }
    }
}

// Thresholds and failure messages (pure).
#include <doctest/doctest.h>

#include "vigil/probe/monitor.hpp"
#include "vigil/probe/prober.hpp"
#include "vigil/probe/thresholds.hpp"

using vigil::probe::ExecRegistry;
using vigil::probe::Prober;
using vigil::probe::Thresholds;
using vigil::probe::Verdict;

TEST_SUITE("probe") {
    TEST_CASE("failure verdict after exactly failure_threshold consecutive failures") {
        Thresholds t{3, 1};
        CHECK(t.verdict() == Verdict::Unknown);
        CHECK_FALSE(t.record(false));
        CHECK_FALSE(t.record(false));
        auto v = t.record(false);
        REQUIRE(v);
        CHECK(*v == Verdict::Failure);
        CHECK(t.consecutive_failures() == 3);
        // Reported once: more failures do not repeat the transition.
        CHECK_FALSE(t.record(false));
        CHECK(t.consecutive_failures() == 4);
    }

    TEST_CASE("a success in between resets the failure count") {
        Thresholds t{3, 1};
        t.record(false);
        t.record(false);
        CHECK(t.record(true) == Verdict::Success);
        CHECK(t.consecutive_failures() == 0);
        CHECK_FALSE(t.record(false));
        CHECK_FALSE(t.record(false));
        CHECK(t.record(false) == Verdict::Failure);
    }

    TEST_CASE("success_threshold consecutive successes needed to recover") {
        Thresholds t{1, 3};
        CHECK(t.record(false) == Verdict::Failure);
        CHECK_FALSE(t.record(true));
        CHECK_FALSE(t.record(true));
        CHECK_FALSE(t.record(false)); // still Failure, success count reset
        CHECK(t.consecutive_successes() == 0);
        CHECK_FALSE(t.record(true));
        CHECK_FALSE(t.record(true));
        CHECK(t.record(true) == Verdict::Success);
        CHECK_FALSE(t.record(true));
    }

    TEST_CASE("zero thresholds are read as one; reset returns to unknown") {
        Thresholds t{0, 0};
        CHECK(t.failure_threshold() == 1);
        CHECK(t.success_threshold() == 1);
        CHECK(t.record(true) == Verdict::Success);
        t.reset();
        CHECK(t.verdict() == Verdict::Unknown);
        CHECK(t.consecutive_successes() == 0);
        CHECK(t.record(true) == Verdict::Success);
    }

    TEST_CASE("failure message names role, target, last detail and count") {
        CHECK(Prober::failure_message("liveness", "http 127.0.0.1:8080/healthz", "status 503", 3) ==
              "liveness http 127.0.0.1:8080/healthz: status 503, 3 times");
        CHECK(Prober::failure_message("startup", "tcp [::1]:5432", "connect: connection refused",
                                      1) ==
              "startup tcp [::1]:5432: connect: connection refused, once");
    }

    TEST_CASE("exec registry claims only its pids, once") {
        ExecRegistry r;
        int seen = -1;
        r.add(42, [&](int ws) { seen = ws; });
        r.add(43, [&](int) { FAIL("forgotten callback ran"); });
        r.forget(43);
        CHECK(r.pending() == 2);
        CHECK_FALSE(r.on_reaped(41, 0));
        CHECK(r.on_reaped(42, 7 << 8));
        CHECK(seen == (7 << 8));
        CHECK_FALSE(r.on_reaped(42, 0));
        CHECK(r.on_reaped(43, 9)); // still claimed after forget(): it was ours
        CHECK(r.pending() == 0);
    }

    TEST_CASE("target descriptions") {
        vigil::unit::ProbeSpec s;
        s.kind = vigil::unit::ProbeKind::Http;
        s.port = 8080;
        s.path = "healthz";
        ExecRegistry r;
        Prober p{nullptr, r, "liveness", s, {}};
        CHECK(p.target() == "http 127.0.0.1:8080/healthz");
        s.kind = vigil::unit::ProbeKind::Exec;
        s.command = {"pg_isready", "-q"};
        Prober q{nullptr, r, "readiness", s, {}};
        CHECK(q.target() == "exec pg_isready -q");
    }

    TEST_CASE("a unit's monitor specs: ready.probe stands in for a missing readiness probe") {
        vigil::unit::Unit u;
        vigil::unit::ProbeSpec a, b;
        a.port = 1;
        b.port = 2;
        u.ready.probe = a;
        auto s = vigil::probe::specs_for(u);
        CHECK(s.readiness->port == 1);
        CHECK_FALSE(s.liveness);
        CHECK_FALSE(s.empty());
        u.readiness = b;
        u.liveness = a;
        s = vigil::probe::specs_for(u);
        CHECK(s.readiness->port == 2);
        CHECK(s.liveness->port == 1);
        CHECK(vigil::probe::specs_for(vigil::unit::Unit{}).empty());
    }
    TEST_CASE("output summaries") {
        CHECK(Prober::summarize_output("") == "");
        CHECK(Prober::summarize_output("  a\n\n\tb  c\r\n") == "a b c");
    }
    TEST_CASE("check tally: the current run of one outcome, and the totals") {
        vigil::probe::CheckTally t;
        CHECK(t.in_a_row() == 0);
        t.record(true);
        t.record(true);
        t.record(true);
        CHECK(t.in_a_row() == 3); // not capped at a success threshold
        t.record(false);
        CHECK(t.in_a_row() == -1);
        t.record(false);
        CHECK(t.in_a_row() == -2);
        t.record(true);
        CHECK(t.in_a_row() == 1);
        CHECK(t.successes() == 4);
        CHECK(t.failures() == 2);
    }
}

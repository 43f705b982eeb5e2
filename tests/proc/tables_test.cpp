// tables_test.cpp: rlimit names, exec stage names and SpawnError messages (suite unit).
#include "vigil/proc/spawn.hpp"

#include <doctest/doctest.h>

#include <cerrno>
#include <sys/resource.h>

using namespace vigil::proc;

TEST_SUITE("proc") {

    TEST_CASE("rlimit_by_name knows every unit-file name, case-insensitively") {
        CHECK(rlimit_by_name("nofile") == RLIMIT_NOFILE);
        CHECK(rlimit_by_name("NOFILE") == RLIMIT_NOFILE);
        CHECK(rlimit_by_name("RLIMIT_NOFILE") == RLIMIT_NOFILE);
        CHECK(rlimit_by_name("nproc") == RLIMIT_NPROC);
        CHECK(rlimit_by_name("core") == RLIMIT_CORE);
        CHECK(rlimit_by_name("memlock") == RLIMIT_MEMLOCK);
        CHECK(rlimit_by_name("as") == RLIMIT_AS);
        CHECK(rlimit_by_name("cpu") == RLIMIT_CPU);
        CHECK(rlimit_by_name("fsize") == RLIMIT_FSIZE);
        CHECK(rlimit_by_name("stack") == RLIMIT_STACK);
        CHECK_FALSE(rlimit_by_name("files"));
        CHECK_FALSE(rlimit_by_name(""));
        CHECK_FALSE(rlimit_by_name("rlimit_"));
        CHECK(rlimit_names().size() == RLIMIT_NLIMITS);
        for (std::string_view n : rlimit_names())
            CHECK(rlimit_by_name(n).has_value());
    }

    TEST_CASE("exec stages have names") {
        CHECK(std::string(to_string(ExecStage::Exec)) == "exec");
        CHECK(std::string(to_string(ExecStage::Chdir)) == "chdir");
        CHECK(std::string(to_string(ExecStage::Setuid)) == "setuid");
        CHECK(std::string(to_string(ExecStage::Rlimit)) == "setrlimit");
        CHECK(std::string(to_string(ExecStage::Prepare)) == "prepare");
    }

    TEST_CASE("SpawnError::message reads as `<stage> <object>: <reason>`") {
        CHECK(SpawnError{ExecStage::Exec, ENOENT, "/usr/bin/pyhton3", {}}.message() ==
              "exec /usr/bin/pyhton3: No such file or directory");
        CHECK(SpawnError{ExecStage::Setuid, EPERM, "nobody", {}}.message() ==
              "setuid nobody: Operation not permitted");
        CHECK(SpawnError{ExecStage::Chdir, ENOENT, "/nope", {}}.message() ==
              "chdir /nope: No such file or directory");
        CHECK(SpawnError{ExecStage::Prepare, 0, "user bogus", "no such user"}.message() ==
              "user bogus: no such user");
        CHECK(SpawnError{ExecStage::Setsid, EPERM, "", {}}.message() ==
              "setsid: Operation not permitted");
    }

} // TEST_SUITE

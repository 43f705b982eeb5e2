// env_file_test.cpp: systemd EnvironmentFile syntax (suite unit).
#include "vigil/proc/spawn.hpp"

#include <doctest/doctest.h>

using namespace vigil::proc;
using Vars = std::vector<std::pair<std::string, std::string>>;
using Errors = std::vector<std::string>;

namespace {
Vars vars(std::string_view text) {
    EnvFileResult r = parse_env_file(text);
    CHECK_MESSAGE(r.errors.empty(), (r.errors.empty() ? "" : r.errors.front()));
    return r.vars;
}
Errors errors(std::string_view text) {
    return parse_env_file(text).errors;
}
} // namespace

TEST_SUITE("proc") {

    TEST_CASE("plain KEY=VALUE lines, blank lines and comments") {
        CHECK(vars("") == Vars{});
        CHECK(vars("A=1\nB=two words\n") == Vars{{"A", "1"}, {"B", "two words"}});
        CHECK(vars("A=1") == Vars{{"A", "1"}}); // no final newline
        CHECK(vars("\n\n# comment\n; also comment\n  # indented comment\nA=1\n") ==
              Vars{{"A", "1"}});
        CHECK(vars("   A=1\n\tB=2\n") == Vars{{"A", "1"}, {"B", "2"}});
        CHECK(vars("A=\nB=\n") == Vars{{"A", ""}, {"B", ""}});
        CHECK(vars("A = 1 \n") == Vars{{"A", "1"}});
        CHECK(vars("A=1\r\nB=2\r\n") == Vars{{"A", "1"}, {"B", "2"}});
        CHECK(vars("A=x#y\n") == Vars{{"A", "x#y"}}); // '#' only starts a comment at line start
        CHECK(vars("A=1\nA=2\n") == Vars{{"A", "1"}, {"A", "2"}}); // the caller lets later win
    }

    TEST_CASE("unquoted values: trailing blanks dropped, backslash escapes and continuations") {
        CHECK(vars("A=  lead and trail  \n") == Vars{{"A", "lead and trail"}});
        CHECK(vars("A=a\\ b\n") == Vars{{"A", "a b"}});
        CHECK(vars("A=x\\ \n") == Vars{{"A", "x "}}); // an escaped blank is kept
        CHECK(vars("A=one \\\ntwo\n") == Vars{{"A", "one two"}});
        CHECK(vars("A=c:\\\\dir\n") == Vars{{"A", "c:\\dir"}});
        CHECK(vars("A=end\\") == Vars{{"A", "end"}});
    }

    TEST_CASE("quotes") {
        CHECK(vars("A='single $x \\n'\n") == Vars{{"A", "single $x \\n"}});
        CHECK(vars("A=\"double \\\"q\\\" \\\\ \\$HOME \\n\"\n") ==
              Vars{{"A", "double \"q\" \\ $HOME \\n"}});
        CHECK(vars("A=\"  keep  \"\n") == Vars{{"A", "  keep  "}});
        CHECK(vars("A=a\"b c\"d\n") == Vars{{"A", "ab cd"}});
        CHECK(vars("A=\"line1\nline2\"\nB=3\n") == Vars{{"A", "line1\nline2"}, {"B", "3"}});
        CHECK(vars("A=\"joined \\\nhere\"\n") == Vars{{"A", "joined here"}});
        CHECK(vars("A='x' \n") == Vars{{"A", "x"}});
        CHECK(vars("A=''\n") == Vars{{"A", ""}});
    }

    TEST_CASE("export prefix is tolerated") {
        CHECK(vars("export A=1\nexport  B='2'\n") == Vars{{"A", "1"}, {"B", "2"}});
        CHECK(vars("export=1\n") == Vars{{"export", "1"}});
    }

    TEST_CASE("errors name the line and parsing continues") {
        CHECK(errors("A=1\nno equals here\nB=2\n") == Errors{"line 2: expected '=' after 'no'"});
        CHECK(errors("justakey\n") == Errors{"line 1: expected KEY=VALUE"});
        CHECK(errors("justakey") == Errors{"line 1: expected KEY=VALUE"});
        CHECK(errors("=1\n") == Errors{"line 1: expected KEY=VALUE, got an empty name"});
        CHECK(errors("1A=x\nA-B=y\n") ==
              Errors{"line 1: invalid variable name '1A'", "line 2: invalid variable name 'A-B'"});
        CHECK(errors("A=1\nB=\"open\nstill open\n") == Errors{"line 2: unterminated quote"});
        CHECK(errors("A='open") == Errors{"line 1: unterminated quote"});
        EnvFileResult r = parse_env_file("bad\nA=1\n# c\nalso bad\nB=2\n");
        CHECK(r.vars == Vars{{"A", "1"}, {"B", "2"}});
        CHECK(r.errors ==
              Errors{"line 1: expected KEY=VALUE", "line 4: expected '=' after 'also'"});
        // Line numbers count continuation lines.
        CHECK(errors("A=one \\\ntwo\nbad\n") == Errors{"line 3: expected KEY=VALUE"});
    }

} // TEST_SUITE

// tests/fuzz/fuzz_framer.cpp: libFuzzer target for the log line framer.
//
// The first byte chooses max_line (1..64, small so that cutting happens a lot), the next eight
// bytes choose chunk sizes (0..63, used in turn, 0 meaning "1"); the rest is the byte stream,
// fed in those chunks and then flushed. Invariants (vigil/log/framer.hpp):
//  - no byte is lost or added: the pieces, each complete line followed by '\n', concatenate to
//    the stream (the flushed tail has no '\n');
//  - no piece is longer than max_line, a continued piece is exactly max_line, no piece holds a
//    '\n';
//  - pending() never exceeds max_line, and is 0 after flush().
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "vigil/log/framer.hpp"

namespace {

void check(bool ok, const char *what) {
    if (ok) return;
    std::fprintf(stderr, "fuzz_framer: invariant broken: %s\n", what);
    std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    constexpr std::size_t header = 9;
    if (size < header) return 0;
    const std::size_t max_line = data[0] % 64 + 1;
    std::size_t chunks[8];
    for (std::size_t i = 0; i < 8; ++i)
        chunks[i] = data[1 + i] % 64 == 0 ? 1 : data[1 + i] % 64;
    std::string_view stream(reinterpret_cast<const char *>(data + header), size - header);

    vigil::log::Framer f(max_line);
    std::string out;
    bool flushing = false, flushed_line = false;
    auto on_line = [&](std::string_view piece, bool continued) {
        check(piece.size() <= max_line, "no piece is longer than max_line");
        check(!continued || piece.size() == max_line, "a continued piece is exactly max_line");
        check(piece.find('\n') == std::string_view::npos, "no piece holds a newline");
        check(!flushing || !continued, "the flushed tail is not continued");
        out.append(piece);
        if (flushing)
            flushed_line = true;
        else if (!continued)
            out += '\n';
    };
    std::string_view rest = stream;
    for (std::size_t i = 0; !rest.empty(); ++i) {
        std::size_t n = chunks[i % 8] < rest.size() ? chunks[i % 8] : rest.size();
        f.feed(rest.substr(0, n), on_line);
        rest.remove_prefix(n);
        check(f.pending() <= max_line, "pending() stays within max_line");
    }
    flushing = true;
    f.flush(on_line);
    check(f.pending() == 0, "nothing is pending after flush()");
    check(!flushed_line || (!stream.empty() && stream.back() != '\n'),
          "flush() emits only a tail without its newline");
    check(out == stream, "the pieces and newlines concatenate to the stream");
    return 0;
}

// Capture -> UnitLog wiring: see vigil/log/wiring.hpp.
#include "vigil/log/wiring.hpp"

#include <memory>
#include <uv.h>

namespace vigil::log {

Capture::Callbacks wire(UnitLog &log, uv_loop_s *loop, Wiring w) {
    struct Shared {
        UnitLog &log;
        uv_loop_t *loop;
        Wiring w;
        bool ready_seen = false;
        TimePoint now() const { return at_ms(static_cast<std::int64_t>(uv_now(loop))); }
        void flush() {
            const auto hits = log.flush(now());
            if (!hits.empty() && w.on_hits) w.on_hits(hits);
            if (w.on_batch) w.on_batch();
        }
    };
    auto s = std::make_shared<Shared>(Shared{log, loop, std::move(w)});
    return Capture::Callbacks{[s](Stream stream, std::string_view line, bool continued) {
                                  s->log.line(stream, line, continued, s->now());
                                  if (s->w.ready != nullptr && !s->ready_seen &&
                                      s->w.ready->match(line)) {
                                      s->ready_seen = true;
                                      if (s->w.on_ready) s->w.on_ready();
                                  }
                              },
                              [s] { s->flush(); },
                              [s] {
                                  s->flush();
                                  if (s->w.on_eof) s->w.on_eof();
                              },
                              [s](Stream stream, std::string_view run, std::size_t count) {
                                  s->log.lines(stream, run, count, s->now());
                                  if (s->w.ready == nullptr || s->ready_seen) return;
                                  // Line by line within a CPU budget (a ready.log pattern can
                                  // backtrack as badly as any other): see Regex::first_line.
                                  if (!s->w.ready->first_line(run)) return;
                                  s->ready_seen = true;
                                  if (s->w.on_ready) s->w.on_ready();
                              }};
}

} // namespace vigil::log

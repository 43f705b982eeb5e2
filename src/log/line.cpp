// Wall clock, RFC 3339 timestamps and the record format of the log module.
#include "vigil/log/line.hpp"

#include <algorithm>
#include <ctime>

namespace vigil::log {

WallMs wall_now() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<WallMs>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

namespace {
void put2(char *p, int v) {
    p[0] = static_cast<char>('0' + v / 10);
    p[1] = static_cast<char>('0' + v % 10);
}
} // namespace

void TimestampFormatter::format(WallMs t, char *out) noexcept {
    // Floor division, so times before 1970 still format (tests use small values).
    std::int64_t sec = t / 1000;
    std::int64_t ms = t % 1000;
    if (ms < 0) {
        ms += 1000;
        sec -= 1;
    }
    if (sec != cached_sec_) {
        const auto tt = static_cast<std::time_t>(sec);
        std::tm tm{};
        ::gmtime_r(&tt, &tm); // no time zone lookup: UTC only
        const int year = tm.tm_year + 1900;
        cached_[0] = static_cast<char>('0' + (year / 1000) % 10);
        cached_[1] = static_cast<char>('0' + (year / 100) % 10);
        put2(cached_ + 2, year % 100);
        cached_[4] = '-';
        put2(cached_ + 5, tm.tm_mon + 1);
        cached_[7] = '-';
        put2(cached_ + 8, tm.tm_mday);
        cached_[10] = 'T';
        put2(cached_ + 11, tm.tm_hour);
        cached_[13] = ':';
        put2(cached_ + 14, tm.tm_min);
        cached_[16] = ':';
        put2(cached_ + 17, tm.tm_sec);
        cached_[19] = '.';
        cached_[23] = 'Z';
        cached_sec_ = sec;
    }
    const int m = static_cast<int>(ms);
    cached_[20] = static_cast<char>('0' + m / 100);
    cached_[21] = static_cast<char>('0' + (m / 10) % 10);
    cached_[22] = static_cast<char>('0' + m % 10);
    for (std::size_t i = 0; i < timestamp_len; ++i)
        out[i] = cached_[i];
}

void RecordWriter::append(std::string &out, std::string_view prefix, std::optional<WallMs> wall,
                          std::string_view text, bool continued) {
    const std::size_t at = out.size();
    out.resize(at + size(prefix.size(), wall.has_value(), text.size(), continued));
    char *p = out.data() + at;
    if (!prefix.empty()) p = std::copy(prefix.begin(), prefix.end(), p);
    if (wall) {
        ts_.format(*wall, p);
        p += timestamp_len;
        *p++ = ' ';
    }
    if (!text.empty()) p = std::copy(text.begin(), text.end(), p);
    if (continued) *p++ = '\\';
    *p = '\n';
}

} // namespace vigil::log

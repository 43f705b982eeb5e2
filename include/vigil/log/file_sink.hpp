// vigil/log/file_sink.hpp: a unit's log file as the event loop sees it: records go in, the
// writing happens elsewhere, and what happened comes back as counters and events.
//
// FileSink is the interface UnitLog holds. The real one comes from a LogWriter: one thread per
// vigild, shared by every unit's file, that opens, writes, rotates and reopens them with
// RotatingFile (vigil/log/rotating_file.hpp, as the service's user: vigil/log/file_identity.hpp).
// The loop never makes a file syscall for a unit's log: a file whose write blocks (a FIFO with a
// slow reader, a hung network file system) stops the writer thread, never supervision.
// MemoryFileSink (below) keeps the records in memory, without threads, for tests.
//
// Contract of a FileSink (all calls on the loop thread):
//  - append()/append_run() build the records (vigil/log/line.hpp's one format) at once, on the
//    loop, into a staging buffer; flush() hands them to the writer (UnitLog::flush does it after
//    every batch; the staging buffer also goes over by itself past 256 KiB).
//  - Back-pressure, never loss: each sink has a bounded queue of bytes handed over and not yet
//    written. When it passes `high_water` (1 MiB), on_pressure(true) runs (from flush()): the
//    daemon pauses the Captures of this unit only, and its service blocks on its full pipe. When
//    the writer has brought it below `low_water` (256 KiB), on_pressure(false) runs (from the
//    loop, via a uv_async_t) and the daemon resumes them. A Capture delivers at most one more
//    read after the pause, so the queue holds at most high_water plus one read's records.
//  - Counters (FileSinkCounters) are kept by the writer and read from the loop at any time.
//    Nothing is lost silently: a record that could not be written (disk full, file refused, the
//    writer gone) is counted in lines_failed, with the errno and the message of the last failure.
//    on_failure runs (from the loop) when lines_failed grew or a new failure happened.
//  - reopen(done): the writer reopens the path (after writing what was handed over before);
//    done(err, message) runs on the loop with 0 or the errno and message of the failure. A sink
//    destroyed first never calls done.
//  - Destroying a sink hands over what is staged; the writer finishes writing it and closes the
//    file (a FIFO that stays full is given 5 s, then what it did not take counts as failed).
//
// LogWriter: one per vigild (its thread serves every sink; the writer's own writes to FIFOs and
// devices are non-blocking and polled, so one full FIFO never holds back the other files; a
// regular file's write that blocks, such as a hung network file system, does hold back every
// file until it returns, their services then block on their pipes: back-pressure, no loss).
// At shutdown: flush_blocking(timeout) waits until every sink's queue is written (bounded),
// then close(cb) stops the thread (a thread stuck in a write is left behind) and closes its loop
// handle.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "vigil/log/file_identity.hpp"
#include "vigil/log/line.hpp"
#include "vigil/time.hpp"
#include "vigil/unit/unit.hpp"

struct uv_loop_s;

namespace vigil::log {

struct FileSinkOptions {
    std::string path;
    std::uint64_t max_size = 10ull << 20; // see RotatingFileOptions
    unsigned keep = 5;
    bool timestamps = false;
    FileIdentity identity;              // who opens, rotates and reopens the path
    std::size_t high_water = 1u << 20;  // queued bytes above which the sink is congested
    std::size_t low_water = 256u << 10; // ... and below which it is not any more

    // The options of a unit's `logs` (spec.file must be set).
    static FileSinkOptions from(const unit::LogSpec &spec, FileIdentity identity);
};

struct FileSinkCounters {
    std::uint64_t lines_written = 0; // records the file took
    std::uint64_t lines_failed = 0;  // records that could not be written
    std::uint64_t rotations = 0;
    int last_error = 0;          // errno of the last failure, 0 if none
    std::string last_error_text; // its message, "" if none
    std::size_t queued = 0;      // bytes not yet written (staged included)
    bool open = false;           // the file is open (false until the writer first opened it)
    bool rotates = false;        // a regular file (FIFOs and devices are never rotated)
};

struct FileSinkEvents {
    std::function<void(bool congested)> on_pressure; // may be empty
    std::function<void()> on_failure;                // may be empty
};

class FileSink {
public:
    using ReopenDone = std::function<void(int err, const std::string &message)>;

    virtual ~FileSink() = default;
    virtual void append(std::string_view line, bool continued, WallMs wall) = 0;
    // The `count` lines of a run (Framer::feed_runs: each ends with '\n', none is continued).
    virtual void append_run(std::string_view run, std::size_t count, WallMs wall) = 0;
    virtual void flush() = 0;
    virtual void reopen(ReopenDone done) = 0;
    virtual FileSinkCounters counters() const = 0;
    // on_pressure(true) ran and on_pressure(false) did not yet.
    virtual bool congested() const = 0;
    virtual void set_events(FileSinkEvents events) = 0;
    virtual const FileSinkOptions &options() const = 0;
};

using FileSinkFactory = std::function<std::unique_ptr<FileSink>(FileSinkOptions)>;

class LogWriter {
public:
    // Starts the thread. If it cannot start, every sink counts its lines as failed and says why.
    explicit LogWriter(uv_loop_s *loop);
    ~LogWriter(); // calls close() if needed
    LogWriter(const LogWriter &) = delete;
    LogWriter &operator=(const LogWriter &) = delete;

    // A sink for `opts.path`; the file is opened by the thread, soon after.
    std::unique_ptr<FileSink> open(FileSinkOptions opts);
    // A factory for UnitLog: open() of this writer (which must outlive the UnitLogs).
    FileSinkFactory factory();

    // Hands over every sink's staged records and waits until everything is written, at most
    // `timeout` (blocks the loop: for shutdown and tests). True if all was written.
    bool flush_blocking(Duration timeout);
    // Stops the thread (without flushing: call flush_blocking first) and closes the loop handle;
    // cb (may be empty) runs once libuv released it. Sinks keep working as sinks whose lines
    // all fail.
    void close(std::function<void()> cb);

    struct Core;    // the shared state and the thread, in file_sink.cpp
    struct Handles; // the loop handle, in file_sink.cpp

private:
    std::shared_ptr<Core> core_;
    Handles *h_ = nullptr;
};

// A FileSink that keeps its records in memory: for tests of UnitLog's users, no thread, no file.
// Records reach contents() on flush(); reopen() succeeds at once; congestion is set by hand.
class MemoryFileSink : public FileSink {
public:
    explicit MemoryFileSink(FileSinkOptions opts) : opts_(std::move(opts)) {}

    void append(std::string_view line, bool continued, WallMs wall) override;
    void append_run(std::string_view run, std::size_t count, WallMs wall) override;
    void flush() override;
    void reopen(ReopenDone done) override;
    FileSinkCounters counters() const override;
    bool congested() const override { return congested_; }
    void set_events(FileSinkEvents events) override { events_ = std::move(events); }
    const FileSinkOptions &options() const override { return opts_; }

    // The records flushed so far.
    const std::string &contents() const { return contents_; }
    unsigned reopens() const { return reopens_; }
    // Sets the congestion and runs on_pressure if it changed.
    void set_congested(bool congested);
    // Counts `lines` failed with this error and runs on_failure.
    void fail(std::uint64_t lines, int err, std::string text);

private:
    FileSinkOptions opts_;
    FileSinkEvents events_;
    RecordWriter records_;
    std::string staged_, contents_;
    std::uint64_t staged_lines_ = 0, lines_ = 0;
    FileSinkCounters failures_;
    unsigned reopens_ = 0;
    bool congested_ = false;
};

} // namespace vigil::log

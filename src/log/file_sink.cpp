// Log files written by one thread, fed by the loop: see vigil/log/file_sink.hpp.
//
// Threads and data: Core::mu guards the list of files and, in each FileState, the fields marked
// "guarded". The loop stages records in its ThreadedSink and hands them over in one piece (a
// swap when the file's queue is empty, an append otherwise). The writer thread takes a file's
// whole queue at once, writes it with RotatingFile without holding the mutex, then publishes
// counters and events. RotatingFile objects are created, used and destroyed on the writer
// thread only (their syscalls can block). The thread sleeps in poll(2) on an eventfd (the loop
// writes it when there is work and the thread sleeps) and on the descriptors of full FIFOs and
// devices (POLLOUT). Events go back to the loop through a uv_async_t.
#include "vigil/log/file_sink.hpp"

#include "vigil/log/framer.hpp"
#include "vigil/log/rotating_file.hpp"
#include "worker.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <utility>
#include <uv.h>
#include <vector>

namespace vigil::log {

namespace {

// Staged records go over to the writer by themselves past this size (UnitLog::flush hands them
// over after every batch anyway).
constexpr std::size_t stage_limit = 256u << 10;
// A staging buffer that grew past this is released after it was handed over (an idle unit then
// holds no buffer).
constexpr std::size_t keep_capacity = 64u << 10;
// How long the writer keeps trying a full FIFO of a sink that was destroyed.
constexpr std::chrono::milliseconds detached_grace{5000};
// How long close() and the destructor wait for the thread to leave.
constexpr std::chrono::milliseconds exit_wait{200};

} // namespace

// A file's state shared by its sink (on the loop) and the writer thread: a named namespace, as
// LogWriter::Core holds these (a class with linkage must not hold a type of an unnamed one).
namespace writer_detail {

class ThreadedSink;

struct FileState {
    explicit FileState(FileSinkOptions o) : opts(std::move(o)) {}
    const FileSinkOptions opts;

    // Guarded by Core::mu.
    std::string queue;           // records handed over, not taken by the thread yet
    std::size_t queue_lines = 0; // records in `queue`
    std::size_t pending = 0;     // bytes handed over and not written (queue + the file's buffer)
    bool congested = false;      // set by the loop above high water, cleared by the thread
    bool detached = false;       // the sink is gone: finish and close
    unsigned reopen_asked = 0;   // reopen() calls
    std::deque<std::pair<int, std::string>> reopen_results; // for the loop, in order
    FileSinkCounters counters;    // published by the thread (queued: see ThreadedSink)
    bool notify = false;          // something for the loop
    bool failure_changed = false; // lines_failed grew or a new failure: on_failure

    // The writer thread's only.
    std::unique_ptr<RotatingFile> file;
    std::string work;
    unsigned reopen_taken = 0;
    bool writable = false; // poll(2) said the full descriptor can take more
    std::chrono::steady_clock::time_point give_up{};

    // The loop's only.
    ThreadedSink *owner = nullptr;
};

} // namespace writer_detail

using writer_detail::FileState;
using writer_detail::ThreadedSink;

struct LogWriter::Core {
    std::mutex mu;
    std::condition_variable drained; // the thread finished a round or exited
    // Guarded by mu.
    std::vector<std::shared_ptr<FileState>> files;
    bool sleeping = false; // in poll(2): the loop writes wake_fd
    bool stop = false;
    bool running = false; // the thread started and did not exit
    bool exited = false;
    int start_error = 0;
    uv_async_t *async = nullptr; // null once closed: the thread no longer sends

    int wake_fd = -1;

    ~Core() {
        if (wake_fd >= 0) ::close(wake_fd);
    }
    void wake() const {
        const std::uint64_t one = 1;
        (void)!::write(wake_fd, &one, sizeof one);
    }
    void run();
    // One round of work on `f`; true if it was detached and is now finished.
    bool process(FileState &f);
};

struct LogWriter::Handles {
    uv_async_t async{};
    std::shared_ptr<Core> core;
    std::function<void()> on_closed;
};

namespace writer_detail {

class ThreadedSink final : public FileSink {
public:
    ThreadedSink(std::shared_ptr<LogWriter::Core> core, std::shared_ptr<FileState> st)
        : core_(std::move(core)), st_(std::move(st)) {
        st_->owner = this;
    }
    ~ThreadedSink() override {
        events_ = {}; // nobody to tell any more: the owner is going away
        flush();
        bool wake = false;
        {
            const std::lock_guard g(core_->mu);
            st_->detached = true;
            st_->owner = nullptr;
            wake = std::exchange(core_->sleeping, false);
        }
        if (wake) core_->wake();
    }
    ThreadedSink(const ThreadedSink &) = delete;
    ThreadedSink &operator=(const ThreadedSink &) = delete;

    void append(std::string_view line, bool continued, WallMs wall) override {
        records_.append(stage_, {}, ts(wall), line, continued);
        ++stage_lines_;
        if (stage_.size() >= stage_limit) flush();
    }

    void append_run(std::string_view run, std::size_t count, WallMs wall) override {
        if (st_->opts.timestamps) {
            for_each_line(run,
                          [&](std::string_view l) { records_.append(stage_, {}, wall, l, false); });
        } else {
            stage_.append(run); // a line of a run is its own record
        }
        stage_lines_ += count;
        if (stage_.size() >= stage_limit) flush();
    }

    void flush() override {
        if (stage_.empty()) return;
        const std::size_t bytes = stage_.size();
        bool wake = false, fire = false, dead = false;
        {
            const std::lock_guard g(core_->mu);
            FileState &st = *st_;
            dead = !core_->running || core_->stop;
            if (dead) {
                // Nobody will write them: counted, and said why.
                st.counters.lines_failed += stage_lines_;
                const int err = core_->start_error != 0 ? core_->start_error : ECANCELED;
                st.counters.last_error = err;
                st.counters.last_error_text = "cannot write " + st.opts.path +
                                              ": the log writer thread is not running (" +
                                              std::strerror(err) + ")";
            } else {
                if (st.queue.empty())
                    st.queue.swap(stage_);
                else
                    st.queue.append(stage_);
                st.queue_lines += stage_lines_;
                st.pending += bytes;
                if (st.pending > st.opts.high_water) st.congested = true;
                fire = st.congested && !congested_;
                wake = std::exchange(core_->sleeping, false);
            }
        }
        stage_.clear();
        stage_lines_ = 0;
        // Swapped with an empty string: assigning one would keep the buffer.
        if (stage_.capacity() > keep_capacity) std::string().swap(stage_);
        if (wake) core_->wake();
        if (fire) {
            congested_ = true;
            if (events_.on_pressure) events_.on_pressure(true);
        } else if (dead && events_.on_failure) {
            events_.on_failure();
        }
    }

    void reopen(ReopenDone done) override {
        flush(); // what was given before the reopen goes to the old file
        bool wake = false, dead = false;
        {
            const std::lock_guard g(core_->mu);
            dead = !core_->running || core_->stop;
            if (!dead) {
                ++st_->reopen_asked;
                wake = std::exchange(core_->sleeping, false);
            }
        }
        if (dead) {
            if (done)
                done(ECANCELED,
                     "cannot reopen " + st_->opts.path + ": the log writer thread is not running");
            return;
        }
        reopen_done_.push_back(std::move(done));
        if (wake) core_->wake();
    }

    FileSinkCounters counters() const override {
        const std::lock_guard g(core_->mu);
        FileSinkCounters c = st_->counters;
        c.queued = st_->pending + stage_.size();
        return c;
    }

    bool congested() const override { return congested_; }
    void set_events(FileSinkEvents events) override { events_ = std::move(events); }
    const FileSinkOptions &options() const override { return st_->opts; }

    // From the loop's async callback: what the writer published for this sink. Everything is
    // gathered first, then the callbacks run: any of them may destroy this sink.
    void deliver() {
        bool relieved = false, failed = false;
        std::deque<std::pair<int, std::string>> results;
        {
            const std::lock_guard g(core_->mu);
            relieved = congested_ && !st_->congested;
            failed = std::exchange(st_->failure_changed, false);
            results.swap(st_->reopen_results);
        }
        std::vector<std::pair<ReopenDone, std::pair<int, std::string>>> done;
        for (auto &r : results) {
            if (reopen_done_.empty()) break;
            done.emplace_back(std::move(reopen_done_.front()), std::move(r));
            reopen_done_.pop_front();
        }
        if (relieved) congested_ = false;
        const FileSinkEvents events = events_;
        for (auto &[cb, r] : done)
            if (cb) cb(r.first, r.second);
        if (failed && events.on_failure) events.on_failure();
        if (relieved && events.on_pressure) events.on_pressure(false);
    }

private:
    std::optional<WallMs> ts(WallMs wall) const {
        return st_->opts.timestamps ? std::optional<WallMs>(wall) : std::nullopt;
    }

    std::shared_ptr<LogWriter::Core> core_;
    std::shared_ptr<FileState> st_;
    RecordWriter records_;
    std::string stage_;
    std::size_t stage_lines_ = 0;
    FileSinkEvents events_;
    bool congested_ = false;
    std::deque<ReopenDone> reopen_done_;
};

} // namespace writer_detail

namespace {

void on_async(uv_async_t *async) {
    auto *h = static_cast<LogWriter::Handles *>(async->data);
    const std::shared_ptr<LogWriter::Core> core = h->core;
    std::vector<std::shared_ptr<FileState>> ready;
    {
        const std::lock_guard g(core->mu);
        for (const auto &f : core->files)
            if (std::exchange(f->notify, false)) ready.push_back(f);
    }
    // A callback may destroy other sinks: their owner is cleared, checked before each call.
    for (const auto &f : ready)
        if (f->owner != nullptr) f->owner->deliver();
}

void on_writer_closed(uv_handle_t *handle) {
    auto *h = static_cast<LogWriter::Handles *>(handle->data);
    auto cb = std::move(h->on_closed);
    delete h;
    if (cb) cb();
}

} // namespace

FileSinkOptions FileSinkOptions::from(const unit::LogSpec &spec, FileIdentity identity) {
    FileSinkOptions o;
    o.path = spec.file.value_or("");
    o.max_size = spec.max_size;
    o.keep = spec.keep;
    o.timestamps = spec.timestamps;
    o.identity = std::move(identity);
    return o;
}

// ---------------------------------------------------------------------------------------------
// The writer thread

bool LogWriter::Core::process(FileState &f) {
    if (!f.file) {
        // Records arrive ready-made (timestamps included): the file writes them as they are.
        RotatingFileOptions ro;
        ro.path = f.opts.path;
        ro.max_size = f.opts.max_size;
        ro.keep = f.opts.keep;
        ro.identity = f.opts.identity;
        f.file = std::make_unique<RotatingFile>(std::move(ro));
    }
    RotatingFile &file = *f.file;
    f.writable = false;
    if (file.blocked()) file.flush();
    std::size_t lines = 0;
    unsigned reopens = 0;
    bool detached = false;
    {
        const std::lock_guard g(mu);
        if (!file.blocked()) {
            f.work.swap(f.queue);
            lines = std::exchange(f.queue_lines, 0);
        }
        reopens = f.reopen_asked - f.reopen_taken;
        f.reopen_taken = f.reopen_asked;
        detached = f.detached;
    }
    if (!f.work.empty()) {
        file.append_records(f.work, lines);
        file.flush();
        f.work = std::string(); // a burst's buffer is not kept (see keep_capacity)
    }
    int reopen_err = 0;
    if (reopens > 0) reopen_err = file.reopen(); // several requests, one reopen: same answer
    const auto now = std::chrono::steady_clock::now();
    if (detached && f.give_up == std::chrono::steady_clock::time_point{})
        f.give_up = now + detached_grace;
    bool finished = false;
    {
        const std::lock_guard g(mu);
        f.pending = f.queue.size() + file.buffered();
        if (f.congested && f.pending < f.opts.low_water) {
            f.congested = false;
            f.notify = true;
        }
        FileSinkCounters &c = f.counters;
        if (file.lines_failed() != c.lines_failed || file.last_error_text() != c.last_error_text) {
            f.failure_changed = true;
            f.notify = true;
        }
        c.lines_written = file.lines_written();
        c.lines_failed = file.lines_failed();
        c.rotations = file.rotations();
        c.last_error = file.last_error();
        c.last_error_text = file.last_error_text();
        c.open = file.is_open();
        c.rotates = file.rotates();
        for (unsigned i = 0; i < reopens; ++i) {
            f.reopen_results.emplace_back(reopen_err,
                                          reopen_err != 0 ? file.last_error_text() : std::string());
            f.notify = true;
        }
        finished = f.detached && f.queue.empty() && f.reopen_asked == f.reopen_taken &&
                   (!file.blocked() || now >= f.give_up);
    }
    return finished;
}

void LogWriter::Core::run() {
    std::vector<std::shared_ptr<FileState>> work, done;
    std::vector<pollfd> fds;
    std::vector<FileState *> polled;
    std::unique_lock lock(mu);
    while (!stop) {
        const auto now = std::chrono::steady_clock::now();
        work.clear();
        for (const auto &f : files) {
            bool has;
            if (!f->file || f->reopen_asked != f->reopen_taken)
                has = true;
            else if (f->file->blocked())
                has = f->writable || (f->detached && now >= f->give_up);
            else
                has = !f->queue.empty() || f->detached;
            if (has) work.push_back(f);
        }
        if (work.empty()) {
            // Sleep until the loop has work (wake_fd) or a full descriptor can take more.
            fds.assign(1, pollfd{wake_fd, POLLIN, 0});
            polled.clear();
            int timeout = -1; // no detached FIFO waiting for its grace to end: no timeout
            for (const auto &f : files) {
                if (!f->file || !f->file->blocked()) continue;
                fds.push_back(pollfd{f->file->fd(), POLLOUT, 0});
                polled.push_back(f.get());
                if (!f->detached) continue;
                const auto left =
                    std::chrono::duration_cast<std::chrono::milliseconds>(f->give_up - now).count();
                const int ms = static_cast<int>(std::clamp<std::int64_t>(left + 1, 0, 60'000));
                timeout = timeout < 0 ? ms : std::min(timeout, ms);
            }
            sleeping = true;
            drained.notify_all();
            lock.unlock();
            (void)::poll(fds.data(), fds.size(), timeout);
            std::uint64_t count = 0;
            (void)!::read(wake_fd, &count, sizeof count);
            lock.lock();
            sleeping = false;
            for (std::size_t i = 0; i < polled.size(); ++i)
                if (fds[i + 1].revents != 0) polled[i]->writable = true;
            continue;
        }
        lock.unlock();
        done.clear();
        for (const auto &f : work)
            if (process(*f)) done.push_back(f);
        for (const auto &f : done)
            f->file.reset(); // closes it here, on this thread: close(2) may block too
        lock.lock();
        for (const auto &f : done)
            std::erase(files, f);
        bool any = false;
        for (const auto &f : work)
            any = any || f->notify;
        if (any && async != nullptr) uv_async_send(async);
        drained.notify_all();
    }
    // Leaving: the files are closed here (their destructors write and close).
    std::vector<std::shared_ptr<FileState>> left;
    left.swap(files);
    lock.unlock();
    for (const auto &f : left)
        f->file.reset();
    lock.lock();
    running = false;
    exited = true;
    drained.notify_all();
}

// ---------------------------------------------------------------------------------------------
// LogWriter

LogWriter::LogWriter(uv_loop_s *loop) : core_(std::make_shared<Core>()) {
    h_ = new Handles;
    h_->core = core_;
    uv_async_init(loop, &h_->async, on_async);
    h_->async.data = h_;
    core_->async = &h_->async;
    core_->wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int err = core_->wake_fd < 0 ? errno : 0;
    if (err == 0) {
        core_->running = true; // before the thread can exit
        err = detail::start_detached([c = core_] { c->run(); });
    }
    if (err != 0) {
        const std::lock_guard g(core_->mu);
        core_->running = false;
        core_->exited = true;
        core_->start_error = err;
    }
}

LogWriter::~LogWriter() {
    close(nullptr);
}

std::unique_ptr<FileSink> LogWriter::open(FileSinkOptions opts) {
    auto st = std::make_shared<FileState>(std::move(opts));
    bool wake = false;
    {
        const std::lock_guard g(core_->mu);
        if (core_->running && !core_->stop) {
            core_->files.push_back(st);
            wake = std::exchange(core_->sleeping, false);
        } else {
            const int err = core_->start_error != 0 ? core_->start_error : ECANCELED;
            st->counters.last_error = err;
            st->counters.last_error_text = "cannot open " + st->opts.path +
                                           ": the log writer thread is not running (" +
                                           std::strerror(err) + ")";
        }
    }
    if (wake) core_->wake();
    return std::make_unique<ThreadedSink>(core_, std::move(st));
}

FileSinkFactory LogWriter::factory() {
    return [this](FileSinkOptions opts) { return open(std::move(opts)); };
}

bool LogWriter::flush_blocking(Duration timeout) {
    std::vector<ThreadedSink *> owners;
    {
        const std::lock_guard g(core_->mu);
        for (const auto &f : core_->files)
            if (f->owner != nullptr) owners.push_back(f->owner);
    }
    for (ThreadedSink *s : owners)
        s->flush(); // none of them can be destroyed meanwhile: this is the loop thread
    std::unique_lock lock(core_->mu);
    if (core_->sleeping) {
        core_->sleeping = false;
        core_->wake();
    }
    auto idle = [&] {
        if (core_->exited) return true;
        for (const auto &f : core_->files)
            if (f->pending != 0 || !f->queue.empty() || f->reopen_asked != f->reopen_taken)
                return false;
        return true;
    };
    // After the thread exited nothing more will be written: "all written" cannot be promised.
    return core_->drained.wait_for(lock, timeout, idle) && !core_->exited;
}

void LogWriter::close(std::function<void()> cb) {
    if (h_ == nullptr) return;
    {
        std::unique_lock lock(core_->mu);
        core_->stop = true;
        core_->async = nullptr; // the thread sends nothing more
        if (core_->running) {
            core_->wake();
            core_->drained.wait_for(lock, exit_wait, [&] { return core_->exited; });
        }
    }
    h_->on_closed = std::move(cb);
    uv_close(reinterpret_cast<uv_handle_t *>(&h_->async), on_writer_closed);
    h_ = nullptr; // freed by on_writer_closed
}

// ---------------------------------------------------------------------------------------------
// MemoryFileSink

void MemoryFileSink::append(std::string_view line, bool continued, WallMs wall) {
    records_.append(staged_, {}, opts_.timestamps ? std::optional<WallMs>(wall) : std::nullopt,
                    line, continued);
    ++staged_lines_;
}

void MemoryFileSink::append_run(std::string_view run, std::size_t count, WallMs wall) {
    for_each_line(run, [&](std::string_view l) { append(l, false, wall); });
    (void)count;
}

void MemoryFileSink::flush() {
    contents_ += staged_;
    lines_ += staged_lines_;
    staged_.clear();
    staged_lines_ = 0;
}

void MemoryFileSink::reopen(ReopenDone done) {
    flush();
    ++reopens_;
    if (done) done(0, {});
}

FileSinkCounters MemoryFileSink::counters() const {
    FileSinkCounters c = failures_;
    c.lines_written = lines_;
    c.queued = staged_.size();
    c.open = true;
    return c;
}

void MemoryFileSink::set_congested(bool congested) {
    if (congested == congested_) return;
    congested_ = congested;
    if (events_.on_pressure) events_.on_pressure(congested);
}

void MemoryFileSink::fail(std::uint64_t lines, int err, std::string text) {
    failures_.lines_failed += lines;
    failures_.last_error = err;
    failures_.last_error_text = std::move(text);
    if (events_.on_failure) events_.on_failure();
}

} // namespace vigil::log

// The probes of one incarnation: see vigil/probe/monitor.hpp.
#include "vigil/probe/monitor.hpp"

#include <utility>

namespace vigil::probe {

MonitorSpecs specs_for(const unit::Unit &u) {
    MonitorSpecs s;
    s.startup = u.startup.optional();
    s.liveness = u.liveness.optional();
    s.readiness = u.readiness ? u.readiness.optional() : u.ready.probe.optional();
    return s;
}

Monitor::Monitor(uv_loop_s *loop, ExecRegistry &registry, MonitorSpecs specs, Callbacks callbacks,
                 ExecSpawn exec)
    : cb_(std::move(callbacks)) {
    if (specs.startup) {
        auto c = callbacks_for("startup");
        c.failed = [this](const std::string &d) { fail(core::FailureCause::StartupProbe, d); };
        c.succeeded = [this] { on_startup_succeeded(); };
        startup_ = std::make_unique<Prober>(loop, registry, "startup", *specs.startup, c, exec);
    }
    if (specs.liveness) {
        auto c = callbacks_for("liveness");
        c.failed = [this](const std::string &d) { fail(core::FailureCause::Liveness, d); };
        liveness_ = std::make_unique<Prober>(loop, registry, "liveness", *specs.liveness, c, exec);
    }
    if (specs.readiness) {
        auto c = callbacks_for("readiness");
        c.failed = [this](const std::string &) { set_ready(false); };
        c.succeeded = [this] { set_ready(true); };
        readiness_ =
            std::make_unique<Prober>(loop, registry, "readiness", *specs.readiness, c, exec);
    }
}

Prober::Callbacks Monitor::callbacks_for(const std::string &role) {
    Prober::Callbacks c;
    c.checked = [this, role](const CheckResult &r) {
        if (cb_.on_checked) {
            auto cb = cb_.on_checked; // a copy: the callback may destroy this Monitor
            cb(role, r);
        }
    };
    return c;
}

bool Monitor::decides_readiness() const noexcept {
    return readiness_ || startup_;
}

std::uint64_t Monitor::failures_total() const noexcept {
    std::uint64_t n = 0;
    for (const auto *p : {startup_.get(), liveness_.get(), readiness_.get()})
        if (p) n += p->failures_total();
    return n;
}

Prober *Monitor::prober(std::string_view role) noexcept {
    if (role == "startup") return startup_.get();
    if (role == "liveness") return liveness_.get();
    if (role == "readiness") return readiness_.get();
    return nullptr;
}

void Monitor::start() {
    if (running_) return;
    running_ = true;
    started_ = false;
    ready_ = false;
    if (startup_) {
        startup_->start();
        return;
    }
    started_ = true;
    if (liveness_) liveness_->start();
    if (readiness_) readiness_->start();
}

MonitorState Monitor::state() const {
    MonitorState s;
    s.started = started_;
    s.ready = ready_;
    auto of = [](const std::unique_ptr<Prober> &p) -> std::optional<ProberState> {
        if (!p || !p->running()) return std::nullopt;
        return p->state();
    };
    s.startup = of(startup_);
    s.liveness = of(liveness_);
    s.readiness = of(readiness_);
    return s;
}

void Monitor::resume(const MonitorState &s) {
    if (running_) return;
    running_ = true;
    started_ = s.started || !startup_;
    ready_ = s.ready;
    auto go = [](const std::unique_ptr<Prober> &p, const std::optional<ProberState> &ps) {
        if (!p) return;
        if (ps)
            p->resume(*ps);
        else
            p->start();
    };
    if (!started_) {
        go(startup_, s.startup);
        return;
    }
    go(liveness_, s.liveness);
    go(readiness_, s.readiness);
}

void Monitor::stop() {
    running_ = false;
    for (auto *p : {startup_.get(), liveness_.get(), readiness_.get()})
        if (p) p->stop();
}

void Monitor::on_startup_succeeded() {
    if (!running_) return;
    startup_->stop();
    started_ = true;
    if (liveness_) liveness_->start();
    if (readiness_)
        readiness_->start();
    else
        set_ready(true);
}

void Monitor::fail(core::FailureCause cause, const std::string &detail) {
    if (!running_) return;
    stop();
    if (cb_.on_failed) {
        auto cb = cb_.on_failed; // a copy: the callback may destroy this Monitor
        cb(cause, detail);
    }
}

void Monitor::set_ready(bool r) {
    if (!running_ || r == ready_) return;
    ready_ = r;
    if (cb_.on_ready) {
        auto cb = cb_.on_ready; // a copy: the callback may destroy this Monitor
        cb(r);
    }
}

} // namespace vigil::probe

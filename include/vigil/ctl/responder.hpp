// vigil/ctl/responder.hpp: what the daemon sees of one control connection.
//
// The control server (vigil/ctl/server.hpp) hands every valid, permitted request to the daemon's
// Handler together with a Responder, through which the daemon answers, at once or later
// (streams). The server's connections implement it; a daemon test implements it with a fake
// that records the answers, without sockets or libuv (this header needs only the protocol).
//
// Contract of every implementation:
//  - reply/error/end finish the request `id`; stream/stream_encoded send one item of it and
//    finish nothing.
//    Each returns true when the line was queued, false (doing nothing) once the connection is
//    closed or closing: a follower is dropped the first time stream() returns false.
//  - None of them throws: a failure (even bad_alloc) closes the connection and returns false.
//  - on_close(cb): cb runs once, later, from the loop (never from inside a Responder call)
//    after the connection has closed for any reason; the daemon drops the connection's
//    subscriptions there. Returns false, and drops cb, when the close callbacks already ran.
//  - A Responder may be kept (ResponderPtr) for as long as the daemon likes; once closed it is
//    a harmless no-op.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <sys/types.h>

#include "vigil/ctl/protocol.hpp"

namespace vigil::ctl {

class Responder {
public:
    virtual ~Responder() = default;

    virtual bool reply(const Json &id, const Json &result) = 0;
    // A result encoded already (encode_item's bytes): the same line as reply(id, parsed
    // result). The default parses it back (test fakes); the server writes it as it is.
    virtual bool reply_encoded(const Json &id, std::string_view result_json) {
        try {
            Json result = Json::parse(result_json, nullptr, false);
            return !result.is_discarded() && reply(id, result);
        } catch (...) {
            return false;
        }
    }
    virtual bool error(const Json &id, ErrorCode code, std::string_view message,
                       const Json &extra = nullptr) = 0;
    // One item: stream(id, item) encodes it; a daemon that sends the same item to many
    // followers encodes it once (encode_item, protocol.hpp) and calls stream_encoded.
    bool stream(const Json &id, const Json &item) { return stream_encoded(id, encode_item(item)); }
    virtual bool stream_encoded(const Json &id, std::string_view item_json) = 0;
    virtual bool end(const Json &id) = 0;
    virtual bool on_close(std::function<void()> cb) = 0;

    virtual bool open() const = 0;
    // "uid 1000 pid 4242": for history records (core::Command::who) and log lines.
    virtual std::string who() const = 0;
    virtual uid_t uid() const = 0;
    // A socket-group member: the server lets through only requests for which
    // is_read_only(request) holds.
    virtual bool read_only() const = 0;
    // Closes the connection after the queued output has been written (bounded in time).
    virtual void close() = 0;
    // The connection's socket, for the one case where vigild hands it on: the client that
    // asked for a re-exec gets its answer from the new binary. -1 where there is none.
    virtual int fd() const { return -1; }
};

using ResponderPtr = std::shared_ptr<Responder>;

// Called for every valid request the connection may run. The handler answers through the
// Responder (now or later) and may keep the ResponderPtr. An exception escaping it becomes an
// `internal` error reply; it never reaches the event loop.
using Handler = std::function<void(const ResponderPtr &, const Request &)>;

} // namespace vigil::ctl

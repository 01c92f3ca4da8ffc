#!/usr/bin/env python3
"""Runs two rust-peer instances on loopback and checks what they report, per the peer contract.

Usage: loopback-check.py BINARY STACK [--b OTHER_BINARY] [--samples]
STACK is tcp-noise, tcp-tls, tcp-offer, tcp-offer-tls or quic. Peer a runs BINARY, peer b runs OTHER_BINARY
(default: BINARY too; any contract peer, e.g. the go peer). Exits non-zero on the first failed
check. With --samples, prints one line of each event type seen.

tcp-offer gives both peers both security protocols in opposite orders (`offer`: a tls,noise,
b noise,tls): the connection b dials must be noise, b's first choice, on both ends.
tcp-offer-tls swaps the two lists (a noise,tls with `muxer` only, b tls,noise): it must be tls.
"""

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time

TOPIC = "meshgate"
STACKS = {
    "tcp-noise": {"transport": "tcp", "security": "noise", "muxer": "yamux"},
    "tcp-tls": {"transport": "tcp", "security": "tls", "muxer": "yamux"},
    "quic": {"transport": "quic-v1"},
    # `security` / `muxer` stay the first entries, for peers that do not know `offer`.
    "tcp-offer": {"transport": "tcp", "security": "tls", "muxer": "yamux"},
    "tcp-offer-tls": {"transport": "tcp", "security": "noise", "muxer": "yamux"},
}
OFFERS = {
    "tcp-offer": ({"security": ["tls", "noise"], "muxer": ["yamux"]},
                  {"security": ["noise", "tls"], "muxer": ["yamux"]}),
    "tcp-offer-tls": ({"security": ["noise", "tls"]}, {"security": ["tls", "noise"]}),
}
# What a connection b dials must negotiate, on both ends: (security, muxer).
NEGOTIATED = {
    "tcp-noise": ("noise", "yamux"),
    "tcp-tls": ("tls", "yamux"),
    "tcp-offer": ("noise", "yamux"),
    "tcp-offer-tls": ("tls", "yamux"),
    "quic": ("tls", "quic-v1"),
}
FEATURES = {"dial-mode-new", "drop-protocol", "open-streams", "security-tls", "security-noise",
            "muxer-yamux", "muxer-mplex", "transport-tcp", "transport-quic-v1"}


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Peer:
    def __init__(self, binary, name, seed, stack, offer=None):
        self.name = name
        self.commands = 0
        udp = STACKS[stack]["transport"] == "quic-v1"
        self.port = free_port(socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        config = dict(STACKS[stack], seed=seed, listen_port=self.port,
                      gossipsub={"topics": [TOPIC], "heartbeat_ms": 200},
                      streams_interval_ms=500)
        if offer:
            config["offer"] = offer
        env = dict(os.environ, MESHGATE_PEER_CONFIG=json.dumps(config), RUST_LOG="info")
        self.stderr = open(f"/tmp/loopback-{name}.stderr", "w")
        self.proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=env, text=True)
        self.events = []
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        started = self.wait(lambda e: e["event"] == "started", "started")
        self.id = started["peer"]
        self.implementation = started["implementation"]
        self.features = started.get("features")
        proto = "udp" if udp else "tcp"
        suffix = "/quic-v1" if udp else ""
        self.addr = f"/ip4/127.0.0.1/{proto}/{self.port}{suffix}/p2p/{self.id}"

    def _read(self):
        for number, line in enumerate(self.proc.stdout, 1):
            try:
                event = json.loads(line)
                assert isinstance(event["ts"], int) and event["ts"] > 1_600_000_000_000_000
                assert isinstance(event["peer"], str) and isinstance(event["event"], str)
            except Exception as e:  # a non-event line is a contract violation
                self.lines.put(("bad", f"{self.name} stdout line {number} {line!r}: {e}"))
                continue
            self.lines.put(("ok", event))
        self.lines.put(("eof", None))

    def send(self, **command):
        """Sends a command with a fresh cmd_id (unique in the run) and returns the id."""
        self.commands += 1
        cmd_id = f"{self.name}-c{self.commands}"
        self.proc.stdin.write(json.dumps(dict(command, cmd_id=cmd_id)) + "\n")
        self.proc.stdin.flush()
        return cmd_id

    def wait(self, predicate, what, timeout=10.0):
        """Returns the first event (seen before or arriving later) matching predicate."""
        for event in self.events:
            if predicate(event):
                return event
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                kind, event = self.lines.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                errors = [e for e in self.events if e["event"] == "error"]
                fail(f"{self.name}: timed out waiting for {what} (errors so far: {errors})")
            if kind == "bad":
                fail(event)
            if kind == "eof":
                fail(f"{self.name}: stdout closed while waiting for {what}")
            self.events.append(event)
            if predicate(event):
                return event

    def drain(self, seconds):
        """Collects events for a while."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                kind, event = self.lines.get(timeout=remaining)
            except queue.Empty:
                return
            if kind != "ok":
                fail(f"{self.name}: {event or 'stdout closed'}")
            self.events.append(event)

    def count(self, predicate):
        return sum(1 for e in self.events if predicate(e))


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)
    print(f"ok: {message}")


def main():
    binary, stack = sys.argv[1], sys.argv[2]
    samples = "--samples" in sys.argv
    other = sys.argv[sys.argv.index("--b") + 1] if "--b" in sys.argv else binary
    offer_a, offer_b = OFFERS.get(stack, (None, None))
    a = Peer(binary, f"{stack}-a", 1, stack, offer_a)
    b = Peer(other, f"{stack}-b", 2, stack, offer_b)
    try:
        run(a, b, stack)
        if samples:
            seen = {}
            for e in a.events + b.events:
                seen.setdefault(e["event"], e)
            for e in seen.values():
                print(json.dumps(e, separators=(",", ":")))
    finally:
        for p in (a, b):
            if p.proc.poll() is None:
                p.proc.kill()


def run(a, b, stack):
    for p in (a, b):
        f = p.features
        check(isinstance(f, list) and f == sorted(f) and set(f) <= FEATURES,
              f"{p.name} started lists its features: {f}")
        if p.implementation == "rust-libp2p":
            check("dial-mode-new" in f and "drop-protocol" not in f and "muxer-mplex" not in f,
                  f"{p.name} rust-libp2p features")
        if p.implementation == "go-libp2p":
            check("dial-mode-new" not in f and "drop-protocol" in f and "muxer-mplex" not in f,
                  f"{p.name} go-libp2p features")
    for p in (a, b):
        p.wait(lambda e: e["event"] == "listening" and any(str(p.port) in x for x in e["addrs"]),
               "listening")

    b.send(cmd="dial", addr=a.addr, mode="dedup")
    opened_b = b.wait(lambda e: e["event"] == "connection_opened" and e["remote"] == a.id,
                      "connection_opened")
    check(opened_b["direction"] == "outbound", "dialer sees an outbound connection")
    opened_a = a.wait(lambda e: e["event"] == "connection_opened" and e["remote"] == b.id,
                      "connection_opened")
    check(opened_a["direction"] == "inbound", "listener sees an inbound connection")
    want = NEGOTIATED[stack]
    for p, opened in ((b, opened_b), (a, opened_a)):
        got = (opened.get("security"), opened.get("muxer"))
        check(got == want, f"{p.name} ({p.implementation}) connection negotiated {got}, "
                           f"expected {want}")

    for p, other in ((a, b), (b, a)):
        ident = p.wait(lambda e: e["event"] == "identify" and e["remote"] == other.id, "identify")
        protos = ident["protocols"]
        check(protos == sorted(protos) and any(x.startswith("/meshsub/1.") for x in protos),
              f"{p.name} identify lists meshsub: {protos}")
        if other.implementation == "rust-libp2p":
            check(ident["protocol_version"] == "ipfs/0.1.0",
                  f"{p.name} identify protocol_version {ident['protocol_version']!r}")
        if p.implementation == "rust-libp2p":
            check(ident["conn_id"] is not None, f"{p.name} identify has conn_id")

    for p in (a, b):
        p.send(cmd="subscribe", topic=TOPIC)
    for p, other in ((a, b), (b, a)):
        p.wait(lambda e: e["event"] == "subscribed" and e["remote"] == other.id
               and e["topic"] == TOPIC, "subscribed")
        p.wait(lambda e: e["event"] == "mesh" and e["topic"] == TOPIC and other.id in e["peers"],
               "mesh with the other peer")
        print(f"ok: {p.name} saw subscribed and mesh")

    a.send(cmd="publish", topic=TOPIC, id="a-1", size=256)
    a.wait(lambda e: e["event"] == "published" and e["id"] == "a-1" and e["size"] == 256,
           "published")
    msg = b.wait(lambda e: e["event"] == "message" and e["id"] == "a-1", "message a-1")
    check(msg["source"] == a.id and msg["from"] == a.id and msg["size"] == 256
          and msg["topic"] == TOPIC and 0 < msg["ts"] - msg["sent_us"] < 5_000_000,
          f"message delivered with source/from/size/latency {msg['ts'] - msg['sent_us']}us")
    b.send(cmd="publish", topic=TOPIC, id="b-1", size=10)
    msg = a.wait(lambda e: e["event"] == "message" and e["id"] == "b-1", "message b-1")
    check(msg["size"] > 10, "a size below the header gives header + newline only")

    for p, other in ((a, b), (b, a)):
        s = p.wait(lambda e: e["event"] == "streams" and e["remote"] == other.id
                   and e["inbound"] >= 1 and e["outbound"] >= 1, "streams with gossipsub")
        check(s["inbound"] < 10 and s["outbound"] < 10, f"{p.name} streams sane: {s}")
    # Periodic sampling: several streams events for the same connection over 1.2 s at 500 ms.
    before = a.count(lambda e: e["event"] == "streams")
    a.drain(1.2)
    check(a.count(lambda e: e["event"] == "streams") - before >= 2, "streams sampled periodically")

    check_open_streams(a, b)

    # dedup while connected does nothing; new opens another connection each time.
    b.send(cmd="dial", addr=a.addr, mode="dedup")
    b.send(cmd="dial", addr=a.addr, mode="new")
    b.send(cmd="dial", addr=a.addr, mode="new")
    b.drain(1.5)
    opened = b.count(lambda e: e["event"] == "connection_opened" and e["remote"] == a.id)
    no_new = b.count(lambda e: e["event"] == "unsupported" and e["feature"] == "dial-mode-new")
    expected = 1 if no_new else 3
    check(opened == expected, f"dedup + 2x new gives {expected} connection(s), got {opened}")
    conns = {e["conn_id"] for e in b.events if e["event"] == "connection_opened"}
    for conn in conns:
        b.wait(lambda e: e["event"] == "streams" and e["conn_id"] == conn, f"streams for {conn}")
    check(True, f"streams reported for each of {sorted(conns)}")

    new_ids = [e.get("cmd_id") for e in b.events
               if e["event"] == "unsupported" and e["feature"] == "dial-mode-new"]
    check(all(i is not None and i.startswith(b.name) for i in new_ids),
          f"unsupported dial-mode-new answers with the dials' cmd_ids: {new_ids}")

    if b.implementation == "rust-libp2p":  # go-libp2p publishes to nobody without complaint
        cmd_id = b.send(cmd="publish", topic="nobody-here", id="b-2", size=10)
        err = b.wait(lambda e: e["event"] == "error" and e["cmd"] == "publish", "publish error")
        check(err["cmd_id"] == cmd_id, f"publish error carries its cmd_id {cmd_id}")
        # gossipsub 0.49 (libp2p 0.56) on; older releases call it InsufficientPeers.
        check(any(name in err["message"] for name in ("NoPeersSubscribedToTopic",
                                                       "InsufficientPeers")),
              f"publish without subscribers fails: {err['message']}")
    cmd_id = b.send(cmd="frobnicate")
    err = b.wait(lambda e: e["event"] == "error" and e["cmd"] == "frobnicate", "unknown cmd")
    check(err["cmd_id"] == cmd_id, f"unknown command answered with its cmd_id: {err}")
    if stack != "quic":  # a refused TCP connect fails at once; a QUIC dial only times out
        # The peer id of seed 0: nobody runs it, and nothing listens on the port.
        nobody = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
        port = free_port(socket.SOCK_STREAM)
        cmd_id = b.send(cmd="dial", addr=f"/ip4/127.0.0.1/tcp/{port}/p2p/{nobody}", mode="dedup")
        err = b.wait(lambda e: e["event"] == "error" and e.get("cmd_id") == cmd_id, "dial error")
        check(err["cmd"] == "dial", f"a failed dial answers later with its cmd_id: {err['message']}")
    for p in (a, b):
        check(all("cmd_id" in e for e in p.events if e["event"] in ("error", "unsupported")),
              f"{p.name} every error and unsupported has cmd_id")

    b.send(cmd="unsubscribe", topic=TOPIC)
    a.wait(lambda e: e["event"] == "unsubscribed" and e["remote"] == b.id, "unsubscribed")
    b.wait(lambda e: e["event"] == "mesh" and e["peers"] == [], "empty mesh after unsubscribe")
    check(True, "unsubscribe seen by the other side and own mesh emptied")

    b.send(cmd="disconnect", peer=a.id)
    for p, other in ((a, b), (b, a)):
        p.wait(lambda e: p.count(lambda x: x["event"] == "connection_closed"
                                 and x["remote"] == other.id) >= expected, "all closed")
    closed = next(e for e in b.events if e["event"] == "connection_closed")
    check(True, f"disconnect closed all {expected} connection(s) (reason {closed['reason']!r})")

    a.send(cmd="stop")
    a.wait(lambda e: e["event"] == "stopped", "stopped")
    check(a.proc.wait(timeout=5) == 0, "stop exits 0")
    b.proc.stdin.close()
    b.wait(lambda e: e["event"] == "stopped", "stopped on end of stdin")
    check(b.proc.wait(timeout=5) == 0, "end of stdin exits 0")
    for p in (a, b):
        p.stderr.flush()
        with open(p.stderr.name) as f:
            check("panicked at" not in f.read(), f"{p.name} did not panic")


def failed_opens(p):
    """How many streams p reported as failed to open (`... (k of n streams)`)."""
    failed = 0
    for e in p.events:
        if e["event"] == "error" and e["cmd"] == "open_streams":
            m = re.search(r"\((\d+) of \d+ streams\)$", e["message"])
            failed += int(m.group(1)) if m else 0
    return failed


def check_open_streams(a, b, count=8):
    """open_streams both ways on the one connection: the opener's outbound and the other side's
    inbound counts rise by count on top of gossipsub's stream, and stay up past the 10 s
    negotiation timeouts (the streams are negotiated, not merely opened). A rust-libp2p receiver
    (libp2p-stream) may drop a few streams of a burst; the opener must then report them."""
    def latest(p, other):
        streams = [e for e in p.events if e["event"] == "streams" and e["remote"] == other.id]
        return streams[-1] if streams else None

    for opener, other in ((a, b), (b, a)):
        opener.send(cmd="open_streams", peer=other.id, count=count)
        s = opener.wait(lambda e: e["event"] == "streams" and e["remote"] == other.id
                        and e["outbound"] >= count + 1 - failed_opens(opener),
                        f"{count} more outbound streams")
        r = other.wait(lambda e: e["event"] == "streams" and e["remote"] == opener.id
                       and e["inbound"] >= count + 1 - failed_opens(opener),
                       f"{count} more inbound streams")
        check(failed_opens(opener) <= count // 2,
              f"{opener.name} open_streams {count}: outbound {s['outbound']}, "
              f"{other.name} inbound {r['inbound']}, {failed_opens(opener)} failed")
    a.drain(11)
    b.drain(0.1)
    for p, other in ((a, b), (b, a)):
        s = latest(p, other)
        expected_in = count + 1 - failed_opens(other)
        expected_out = count + 1 - failed_opens(p)
        check(s["inbound"] >= expected_in and s["outbound"] >= expected_out,
              f"{p.name} still holds them after 11 s: in {s['inbound']} >= {expected_in}, "
              f"out {s['outbound']} >= {expected_out}")
    cmd_id = a.send(cmd="open_streams", peer=a.id, count=1)
    err = a.wait(lambda e: e["event"] == "error" and e["cmd"] == "open_streams"
                 and "not connected" in e["message"], "open_streams error")
    check(err["cmd_id"] == cmd_id,
          f"open_streams to an unconnected peer fails, with its cmd_id: {err['message']}")


if __name__ == "__main__":
    main()

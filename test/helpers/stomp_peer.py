#!/usr/bin/python3
"""A STOMP 1.2 peer made of Debian's python3-stomp (8.x), the way an oVirt engine uses one.

Driven by a JSON plan (argv[1]); prints one JSON line per event worth seeing while it runs
("ready" once its subscriptions are known to be in place) and a final JSON summary line.
Plan keys (all optional but host/port):
  host, port, tls {cert, key, ca}, command "CONNECT"|"STOMP", heartbeats [cx, cy],
  subscribe_first (SUBSCRIBE frames before CONNECT), subscriptions [{destination, id}],
  requests [{destination, reply_to, body}], expect_responses N, expect_events N,
  sends [{destination, body, headers}], hold_seconds S, disconnect_receipt R, timeout S,
  go_silent (stop sending heart-beats after "ready"), clients N (N such sessions at once in threads; "{i}" in the plan becomes each one's number).
"""
import json
import logging
import os
import sys
import threading
import time

import stomp
import stomp.transport
from stomp.protocol import Protocol12

# python-stomp probes a TLS server's certificate expiry with a second connection that carries
# no client certificate; a mutual-TLS server (VDSM's, ours) refuses it, and the refusal's alert
# sometimes fails the probe and with it the real connection. The engine makes no such probe.
stomp.transport.OpenSSL = None

EVENTS = "jms.queue.events"


def out(obj):
    print(json.dumps(obj), flush=True)


class Recorder(stomp.ConnectionListener):
    def __init__(self):
        self.lock = threading.Condition()
        self.connected = None
        self.messages = []
        self.errors = []
        self.receipts = []
        self.heartbeats = 0
        self.disconnected = False

    def _note(self, fn):
        with self.lock:
            fn()
            self.lock.notify_all()

    def on_connected(self, frame):
        self._note(lambda: setattr(self, "connected", dict(frame.headers)))

    def on_message(self, frame):
        self._note(lambda: self.messages.append({"headers": dict(frame.headers), "body": frame.body}))

    def on_error(self, frame):
        self._note(lambda: self.errors.append({"headers": dict(frame.headers), "body": frame.body}))

    def on_receipt(self, frame):
        self._note(lambda: self.receipts.append(frame.headers.get("receipt-id")))

    def on_heartbeat(self):
        self._note(lambda: setattr(self, "heartbeats", self.heartbeats + 1))

    def on_disconnected(self):
        self._note(lambda: setattr(self, "disconnected", True))

    def wait(self, pred, timeout):
        end = time.monotonic() + timeout
        with self.lock:
            while not pred():
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.lock.wait(left)
            return True


def run_session(plan, announce, after_ready=lambda: None):
    """One connection through the plan; returns its summary. `announce` prints progress lines."""
    timeout = plan.get("timeout", 10)
    hb = tuple(plan.get("heartbeats", [0, 0]))
    conn = stomp.Connection12([(plan["host"], plan["port"])], heartbeats=hb, reconnect_attempts_max=1)
    if plan.get("tls"):
        t = plan["tls"]
        conn.set_ssl(for_hosts=[(plan["host"], plan["port"])], key_file=t["key"], cert_file=t["cert"], ca_certs=t["ca"])
    rec = Recorder()
    conn.set_listener("recorder", rec)
    subs = plan.get("subscriptions", [])
    connect_command = plan.get("command", "CONNECT") == "CONNECT"

    def subscribe_all():
        for s in subs:
            conn.subscribe(destination=s["destination"], id=s["id"], ack="auto")

    conn.transport.start()
    if plan.get("tls"):
        # python-stomp reads its SSL socket in one thread and writes it from another; a write
        # racing the reader's first SSL_read (which takes in the server's TLS 1.3 session
        # tickets) is sometimes lost inside the client. Let the reader take them in first.
        time.sleep(0.3)
    if plan.get("subscribe_first"):
        # SUBSCRIBEs on the wire, and only then CONNECT: what the engine does over TCP.
        subscribe_all()
        Protocol12.connect(conn, wait=True, with_connect_command=connect_command)
    else:
        Protocol12.connect(conn, wait=True, with_connect_command=connect_command)
        subscribe_all()
    announce({"connected": rec.connected})

    # A receipt proves every earlier frame (the SUBSCRIBEs) was processed.
    conn.send(destination="jms.topic.vdsm_requests", body='{"jsonrpc":"2.0","method":"Host.ping2"}', headers={"receipt": "subscribed"})
    rec.wait(lambda: "subscribed" in rec.receipts, timeout)
    announce({"ready": True})
    after_ready()

    for r in plan.get("requests", []):
        headers = {"reply-to": r["reply_to"]} if r.get("reply_to") else {}
        conn.send(destination=r.get("destination", "jms.topic.vdsm_requests"), body=r["body"], headers=headers)
    for s in plan.get("sends", []):
        conn.send(destination=s["destination"], body=s.get("body", ""), headers=s.get("headers", {}))

    def count_events():
        return sum(1 for m in rec.messages if m["headers"].get("destination") == EVENTS)

    def count_responses():
        return sum(1 for m in rec.messages if m["headers"].get("destination") != EVENTS)

    rec.wait(lambda: count_responses() >= plan.get("expect_responses", 0), timeout)
    rec.wait(lambda: count_events() >= plan.get("expect_events", 0), timeout)
    rec.wait(lambda: len(rec.errors) >= plan.get("expect_errors", 0), timeout)
    if plan.get("go_silent"):
        # Stop python-stomp's heart-beat loop: the client keeps its socket but sends nothing more.
        conn.heartbeat_terminate_event.set()
    hold = plan.get("hold_seconds", 0)
    if hold:
        rec.wait(lambda: rec.disconnected, hold)

    still_connected = conn.is_connected()
    receipt = plan.get("disconnect_receipt")
    if still_connected:
        if receipt:
            conn.disconnect(receipt=receipt)
        else:
            conn.disconnect()
    with rec.lock:
        return {
            "connected": rec.connected,
            "messages": rec.messages,
            "errors": rec.errors,
            "receipts": rec.receipts,
            "heartbeats": rec.heartbeats,
            "dropped": not still_connected,
        }


def run_many(plan):
    """`clients` sessions at once, in threads of this one process; `{i}` in ids and bodies is the
    client's number. Returns their summaries in order (null for one that failed)."""
    n = plan["clients"]
    results = [None] * n
    # Every session is connected and subscribed before any sends: n connections at once.
    all_ready = threading.Barrier(n, timeout=plan.get("timeout", 10))

    def one(i):
        text = json.dumps({k: v for k, v in plan.items() if k != "clients"}).replace("{i}", str(i))
        try:
            results[i] = run_session(json.loads(text), lambda _line: None, all_ready.wait)
        except Exception as e:  # reported as a missing summary for that client
            out({"client": i, "failed": repr(e)})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def main():
    if os.environ.get("STOMP_PEER_DEBUG"):
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, format="%(relativeCreated)d %(threadName)s %(message)s")
    plan = json.loads(sys.argv[1])
    if plan.get("clients"):
        out({"summary": True, "clients": run_many(plan)})
    else:
        out({"summary": True, **run_session(plan, out)})


if __name__ == "__main__":
    main()

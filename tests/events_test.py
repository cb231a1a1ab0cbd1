#!/usr/bin/env python3
"""Tests of the dashboard's server side: the event stream GET /__admin/events
(entries pushed within a second, resuming after an id, filters, the token as
a query parameter, heartbeats, the bound on streams, a gap when a stream falls
behind, streams ending at SIGTERM), the embedded page, and the routes only the
dashboard uses (GET /__admin/fixtures, GET /__admin/reload). Each test starts
its own server on 127.0.0.1 port 0 and always stops it. Prints TAP."""
import http.client
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time

import cli_test
from cli_test import CLIENT, ROOT, login, procs, request, start, stop

TOKEN = "events-test-token"
ADMIN = {"Authorization": "Bearer " + TOKEN}


class Stream:
    """An EventSource of our own: reads `event:`/`id:`/`data:` blocks."""

    def __init__(self, port, query="", headers=None, timeout=5):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.conn.request("GET", "/__admin/events" + query, headers=headers or {})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = dict(self.resp.getheaders())
        self.comments = 0

    def next(self, timeout=5):
        """The next event as (event, id, data), or None after `timeout`."""
        self.conn.sock.settimeout(timeout)
        event, eid, data = "message", None, []
        end = time.monotonic() + timeout
        try:
            while time.monotonic() < end:
                line = self.resp.readline()
                if not line:
                    return None
                line = line.decode().rstrip("\n")
                if line == "":
                    if data:
                        return event, eid, "\n".join(data)
                    event, eid, data = "message", None, []
                elif line.startswith(":"):
                    self.comments += 1
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("id: "):
                    eid = int(line[4:])
                elif line.startswith("data: "):
                    data.append(line[6:])
        except (socket.timeout, TimeoutError):
            return None
        return None

    def requests(self, n, timeout=5):
        """The next n `request` events' entries (other events skipped)."""
        out = []
        end = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < end:
            ev = self.next(end - time.monotonic())
            if ev is None:
                break
            if ev[0] == "request":
                entry = json.loads(ev[2])
                assert entry["id"] == ev[1], ev
                out.append(entry)
        return out

    def close(self):
        self.conn.close()


def test_entries_arrive_within_a_second_in_order():
    p, port = start()
    s = Stream(port)
    try:
        assert s.status == 200
        assert s.headers["Content-Type"].startswith("text/event-stream")
        assert s.headers["Cache-Control"].startswith("no-cache")
        hello = s.next()
        assert hello[0] == "hello", hello
        assert json.loads(hello[2])["journal"] is True
        t0 = time.monotonic()
        login(port, "mfa.sms@example.com", uid="ev1")
        login(port, "mfa.sms@example.com", uid="ev1", mfaCode="123456")
        got = s.requests(2)
        took = time.monotonic() - t0
        assert [e["stateTo"] for e in got] == ["code", "password"], got
        assert got[0]["id"] < got[1]["id"]
        assert took < 1.0, took
        # Exactly what the journal lists.
        status, _, data = request(port, "GET", "/__admin/requests?limit=2", headers={})
        listed = json.loads(data)["requests"]
        assert list(reversed(listed)) == got
        # Secrets stay masked on the stream as in the journal.
        assert got[0]["body"]["password"] == "***"
    finally:
        s.close()
        stop(p)


def test_resumes_after_an_id_and_filters():
    p, port = start()
    try:
        for i in range(5):
            login(port, "ok@example.com", uid=f"r{i}", ns="a" if i % 2 else "b")
        # ?after=2: entries 3, 4 and 5, at once.
        s = Stream(port, "?after=2")
        assert [e["id"] for e in s.requests(3)] == [3, 4, 5]
        s.close()
        # Last-Event-ID, as an EventSource sends it when it reconnects.
        s = Stream(port, headers={"Last-Event-ID": "4"})
        assert [e["id"] for e in s.requests(1)] == [5]
        s.close()
        # A namespace filter, and one past the newest id starts at the next.
        s = Stream(port, "?namespace=a&after=0")
        assert [e["namespace"] for e in s.requests(2)] == ["a", "a"]
        login(port, "ok@example.com", uid="x", ns="b")
        login(port, "ok@example.com", uid="y", ns="a")
        assert [e["user"] for e in s.requests(1)] == ["y"]
        s.close()
        s = Stream(port, "?after=999")
        assert json.loads(s.next()[2])["after"] == 7
        s.close()
    finally:
        stop(p)


def test_a_stream_that_fell_behind_gets_the_newest_and_a_gap():
    p, port = start()
    try:
        cli_test.post_many(port, 250, json.dumps({"type": "robinhood", "username": "ok@example.com",
                                                  "password": "pass123"}))
        s = Stream(port, "?after=0")
        events = [s.next() for _ in range(3)]
        assert events[0][0] == "hello"
        assert events[1][0] == "gap", events[1]
        gap = json.loads(events[1][2])
        assert gap == {"after": 0, "before": 151}, gap
        assert events[2][0] == "request" and events[2][1] == 151
        rest = s.requests(99)
        assert [e["id"] for e in rest] == list(range(152, 251))
        s.close()
    finally:
        stop(p)


def test_the_token_comes_as_a_header_or_a_query_parameter_and_is_never_logged():
    p, port = start("--admin-token", TOKEN, quiet=False)
    try:
        assert Stream(port).status == 401
        assert Stream(port, "?token=wrong").status == 401
        s = Stream(port, headers=ADMIN)
        assert s.status == 200 and s.next()[0] == "hello"
        s.close()
        s = Stream(port, "?token=" + TOKEN)
        assert s.status == 200 and s.next()[0] == "hello"
        s.close()
        # Only the stream takes it from the query.
        status, _, _ = request(port, "GET", "/__admin/requests?token=" + TOKEN, headers={})
        assert status == 401
        time.sleep(0.2)
    finally:
        stop(p)
    log = p.stderr.read()
    assert "/__admin/events" in log, log
    assert TOKEN not in log, log


def test_heartbeats_keep_an_idle_stream_open():
    # With a 3 s idle timeout the heartbeat comes every second.
    p, port = start("--connection-timeout", "3")
    s = Stream(port, timeout=10)
    try:
        assert json.loads(s.next()[2])["heartbeatSeconds"] == 1
        time.sleep(4.5)
        login(port, "ok@example.com", uid="late")
        assert [e["user"] for e in s.requests(1)] == ["late"], "the stream outlived the timeout"
        assert s.comments >= 3, s.comments
    finally:
        s.close()
        stop(p)


def test_streams_are_bounded_and_closed_ones_give_their_places_up():
    p, port = start("--connection-timeout", "3")
    streams = []
    try:
        for _ in range(16):
            streams.append(Stream(port))
            assert streams[-1].status == 200
        extra = Stream(port)
        assert extra.status == 503, extra.status
        assert extra.headers.get("Retry-After") == "2"
        extra.close()
        # The API is served meanwhile.
        status, _ = login(port, "ok@example.com", uid="busy")
        assert status == 200
        # Two tabs close: their places free up within a heartbeat or two.
        for s in streams[:2]:
            s.conn.sock.shutdown(socket.SHUT_RDWR)
            s.close()
        end = time.monotonic() + 6
        while True:
            again = Stream(port)
            if again.status == 200:
                break
            again.close()
            assert time.monotonic() < end, "no place came free"
            time.sleep(0.5)
        again.close()
    finally:
        for s in streams:
            s.close()
        stop(p)


def test_streams_come_and_go_under_load_and_the_api_keeps_up():
    # Browsers opening and dropping streams (some mid-event) while requests
    # flow, then SIGTERM with streams open: every request answered, a clean
    # exit (in the sanitizer build: no leak, no race reported at exit).
    p, port = start()
    stop_at = time.monotonic() + 4
    errors = []

    def browser():
        try:
            while time.monotonic() < stop_at:
                s = Stream(port, "?after=0")
                if s.status == 200:
                    s.requests(3, timeout=0.5)
                s.conn.sock.shutdown(socket.SHUT_RDWR)
                s.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=browser) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        body = json.dumps({"type": "robinhood", "username": "ok@example.com", "password": "pass123"})
        n = 0
        while time.monotonic() < stop_at:
            cli_test.post_many(port, 50, body)
            n += 50
        for t in threads:
            t.join()
        assert not errors, errors
        # The dropped streams give their places up within a tick or two.
        time.sleep(0.5)
        held = [Stream(port) for _ in range(16)]
        assert [s.status for s in held] == [200] * 16
        status, _, data = request(port, "GET", "/__admin/requests/count", headers={})
        assert json.loads(data)["count"] == n, (data, n)
    finally:
        assert stop(p) == 0


def test_sigterm_ends_open_streams_at_once():
    p, port = start()
    streams = [Stream(port) for _ in range(3)]
    for s in streams:
        assert s.next()[0] == "hello"
    t0 = time.monotonic()
    assert stop(p) == 0
    took = time.monotonic() - t0
    for s in streams:
        assert s.next(timeout=2) is None  # the stream ended
        s.close()
    assert took < 8, took


def test_the_page_and_its_assets():
    p, port = start("--admin-token", TOKEN)
    try:
        status, h, body = request(port, "GET", "/__admin/ui", headers={})
        assert status == 200, status  # the page holds no data: no token needed
        assert h["Content-Type"] == "text/html; charset=utf-8"
        assert "default-src 'self'" in h["Content-Security-Policy"]
        assert b"/__admin/ui/app.js" in body
        total = len(body)
        for name, ctype in (("app.js", "text/javascript"), ("app.css", "text/css")):
            status, h, data = request(port, "GET", "/__admin/ui/" + name, headers={})
            assert status == 200 and h["Content-Type"].startswith(ctype), (name, status, h)
            with open(os.path.join(ROOT, "server", "ui", name), "rb") as f:
                assert data == f.read(), name
            total += len(data)
        assert total < 150 * 1024, total
        status, _, _ = request(port, "GET", "/__admin/ui/../admin.c", headers={})
        assert status == 404
        status, _, _ = request(port, "GET", "/__admin/ui/nothing.js", headers={})
        assert status == 404
    finally:
        stop(p)


def test_fixtures_and_the_last_reload():
    tmp = tempfile.mkdtemp()
    try:
        shutil.copytree(os.path.join(ROOT, "scenarios"), os.path.join(tmp, "s"))
        p, port = start("--admin-token", TOKEN, "--scenarios", os.path.join(tmp, "s"))
        status, _, _ = request(port, "GET", "/__admin/fixtures", headers={})
        assert status == 401
        status, _, data = request(port, "GET", "/__admin/fixtures", headers=ADMIN)
        fx = json.loads(data)
        assert fx["mesh"]["clients"][0]["clientId"] == "test-client-id"
        assert {"type": "robinhood", "name": "Robinhood", "schemeType": "usernamePassword"} \
            in fx["mesh"]["integrations"]
        assert {"username": "multi@example.com", "accounts": 3} in fx["mesh"]["users"]
        tfa = [u for u in fx["onlyoffice"]["users"] if u["email"] == "tfa.app@example.com"][0]
        assert tfa["totpSecret"] == "abcdefghij"
        status, _, data = request(port, "GET", "/__admin/reload", headers=ADMIN)
        r = json.loads(data)
        assert r["at"] is None and r["refused"] is False and r["problems"] == [], r
        assert r["directory"] == os.path.join(tmp, "s")
        bad = os.path.join(tmp, "s", "mesh", "bad.json")
        with open(bad, "w") as f:
            f.write('{"name": "bad", "api": "mesh", "initial": "x", "states": {"x": [{"next": "y"}]}}')
        for _ in range(50):
            r = json.loads(request(port, "GET", "/__admin/reload", headers=ADMIN)[2])
            if r["at"]:
                break
            time.sleep(0.1)
        assert r["refused"] is True, r
        assert any(x.startswith(bad + ": $.states.x[0]") for x in r["problems"]), r
        os.remove(bad)
        for _ in range(50):
            r = json.loads(request(port, "GET", "/__admin/reload", headers=ADMIN)[2])
            if not r["refused"]:
                break
            time.sleep(0.1)
        assert r["refused"] is False and r["problems"] == [] and r["loaded"] > 30, r
    finally:
        shutil.rmtree(tmp)


TESTS = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_")]

if __name__ == "__main__":
    try:
        sys.exit(cli_test.main(TESTS))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()

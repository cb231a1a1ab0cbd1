#!/usr/bin/env python3
"""Tests of the transport's edges as an attacker or a crowded shared instance
meets them: slow requests (--request-timeout), many connections
(--max-connections and the open-file limit), and oversized request lines,
header blocks and parameter lists. Each test starts its own server on
127.0.0.1 port 0 and always stops it; each is bounded in time. Prints TAP."""
import json
import os
import re
import resource
import selectors
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import cli_test
from cli_test import BIN, procs, request, start, stop

# The tests open over a thousand sockets.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))

HEALTH = b"GET /__admin/health HTTP/1.1\r\nHost: x\r\n\r\n"


def read_reply(sock, timeout):
    """Everything the server sends until it closes or `timeout` passes."""
    sock.settimeout(timeout)
    out = b""
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                head, _, body = out.partition(b"\r\n\r\n")
                m = re.search(rb"Content-Length: (\d+)", head, re.I)
                if m and len(body) >= int(m.group(1)):
                    break
    except (socket.timeout, ConnectionResetError):
        pass
    return out


def status_of(reply):
    m = re.match(rb"HTTP/1\.1 (\d{3})", reply)
    return int(m.group(1)) if m else None


def body_of(reply):
    return reply.partition(b"\r\n\r\n")[2]


def fresh_client_served(port, within):
    """Whether a new connection gets a health answer within `within` seconds."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            s.sendall(HEALTH)
            ok = status_of(read_reply(s, 1)) == 200
            s.close()
            if ok:
                return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def journal(port):
    status, _, data = request(port, "GET", "/__admin/requests", headers={})
    assert status == 200, data
    return json.loads(data)


# ---- slow requests -----------------------------------------------------


def test_slowloris_connections_get_408_and_give_their_slots_back():
    # 1,100 clients each sending one header byte a second, against a limit
    # of 1,000 connections: within the 2 s deadline (plus the reaper's
    # quarter second) every accepted one is answered 408 and closed; the 100
    # that waited in the listen backlog are accepted then and get their own
    # 2 s; a fresh client is served again.
    p, port = start("--request-timeout", "2", "--max-connections", "1000")
    sel = selectors.DefaultSelector()
    socks = []
    line = b"GET /__admin/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 64
    try:
        for _ in range(1100):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        t0 = time.monotonic()
        sent = {s: 0 for s in socks}
        replies = {s: b"" for s in socks}
        closed = set()
        first_thousand = None
        time.sleep(0.2)
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        next_byte = time.monotonic()
        while len(closed) < len(socks) and time.monotonic() - t0 < 8:
            if time.monotonic() >= next_byte:
                for s in socks:
                    if s not in closed:
                        try:
                            s.send(line[sent[s]:sent[s] + 1])
                            sent[s] += 1
                        except OSError:
                            pass
                next_byte += 1.0
            for key, _ in sel.select(timeout=0.1):
                s = key.fileobj
                try:
                    chunk = s.recv(4096)
                except OSError:
                    chunk = b""
                replies[s] += chunk
                if not chunk:
                    closed.add(s)
                    sel.unregister(s)
                    if len(closed) == 1000:
                        first_thousand = time.monotonic() - t0
        elapsed = time.monotonic() - t0
        got_408 = sum(1 for s in socks if status_of(replies[s]) == 408)
        assert len(closed) == len(socks), f"{len(socks) - len(closed)} still open after {elapsed:.1f}s"
        assert got_408 == len(socks), f"only {got_408} answered 408"
        assert first_thousand < 4.0, f"the first thousand took {first_thousand:.1f}s"
        assert elapsed < 7.5, f"took {elapsed:.1f}s"
        some = next(s for s in socks if status_of(replies[s]) == 408)
        assert b"--request-timeout" in body_of(replies[some])
        assert fresh_client_served(port, 5.0)
    finally:
        for s in socks:
            s.close()
        stop(p)


def test_a_slow_body_gets_408_and_the_journal_and_log_tell():
    p, port = start("--request-timeout", "1", quiet=False)
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"POST /api/v1/authenticate HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
        t0 = time.monotonic()
        reply = b""
        s.settimeout(0.3)
        while time.monotonic() - t0 < 3:
            try:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
            except socket.timeout:
                s.sendall(b" ")  # a byte every 0.3 s: never idle, never done
        elapsed = time.monotonic() - t0
        assert status_of(reply) == 408, reply
        assert 1.0 <= elapsed < 2.5, elapsed
        assert json.loads(body_of(reply))["error"].startswith("request timeout")
        # The reaper answers on the socket; the entry is journaled when
        # libmicrohttpd then closes the request, a moment later.
        for _ in range(50):
            entries = journal(port)
            if any(e["method"] == "POST" and e["path"] == "/api/v1/authenticate"
                   and e["status"] == 408 for e in entries["requests"]):
                break
            time.sleep(0.1)
        else:
            assert False, entries
    finally:
        stop(p)
    assert re.search(r"POST /api/v1/authenticate 408 ", p.stderr.read())


def test_a_trickled_request_on_a_kept_alive_connection_gets_408():
    p, port = start("--request-timeout", "1")
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(HEALTH)
        assert status_of(read_reply(s, 2)) == 200
        time.sleep(1.5)  # idle longer than the request timeout: not a slow request
        s.sendall(b"G")
        t0 = time.monotonic()
        reply = b""
        s.settimeout(0.3)
        for byte in b"ET /__admin/health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaa":
            try:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
            except socket.timeout:
                s.sendall(bytes([byte]))
        elapsed = time.monotonic() - t0
        assert status_of(reply) == 408, reply
        assert 1.0 <= elapsed < 2.5, elapsed
    finally:
        stop(p)


def test_idle_keep_alive_and_steady_requests_are_not_slow_requests():
    p, port = start("--request-timeout", "1")
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(HEALTH)
        assert status_of(read_reply(s, 2)) == 200
        time.sleep(1.6)
        s.sendall(HEALTH)
        assert status_of(read_reply(s, 2)) == 200
        # A request sent in pieces that arrives whole inside the deadline.
        for piece in (b"GET /__admin/health HT", b"TP/1.1\r\nHost: x\r\n", b"\r\n"):
            s.sendall(piece)
            time.sleep(0.25)
        assert status_of(read_reply(s, 2)) == 200
        s.close()
    finally:
        stop(p)


def test_a_slow_request_over_tls_is_closed():
    if not shutil.which("openssl"):
        return "skip openssl not installed"
    d = tempfile.mkdtemp()
    try:
        cert, key = cli_test.self_signed(d)
        p, port = start("--tls-cert", cert, "--tls-key", key, "--request-timeout", "1")
        try:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)))
            s.sendall(b"GET /__admin/health HTTP/1.1\r\nHost: x\r\n")
            t0 = time.monotonic()
            s.settimeout(3)
            try:
                data = s.recv(4096)
            except (ssl.SSLError, ConnectionResetError):
                data = b""
            elapsed = time.monotonic() - t0
            assert data == b"" and 1.0 <= elapsed < 2.5, (data, elapsed)
        finally:
            stop(p)
    finally:
        shutil.rmtree(d)


# ---- many connections -----------------------------------------------------


def test_idle_clients_beyond_the_old_limit_do_not_lock_others_out():
    # Started with a soft open-file limit of 1,024, the server raises it and
    # by default accepts far more than 1,024 connections.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard < 2400:
        return f"skip the hard open-file limit is {hard}"

    def low_soft_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    proc = subprocess.Popen([BIN, "--port", "0", "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, preexec_fn=low_soft_limit)
    procs.append(proc)
    port = int(re.search(r":(\d+) ", proc.stdout.readline()).group(1))
    idle = []
    try:
        for _ in range(1100):
            idle.append(socket.create_connection(("127.0.0.1", port)))
        for s in idle[:100]:
            s.sendall(HEALTH)  # kept alive after an answer
        for s in idle[:100]:
            assert status_of(read_reply(s, 2)) == 200
        assert fresh_client_served(port, 5.0)
        with open(f"/proc/{proc.pid}/limits") as f:
            soft = int(re.search(r"Max open files\s+(\d+)", f.read()).group(1))
        assert soft == hard, soft
    finally:
        for s in idle:
            s.close()
        stop(proc)


def test_max_connections_beyond_the_file_limit_is_refused():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    r = subprocess.run([BIN, "--port", "0", "--max-connections", str(min(hard, 999000) + 1)],
                       capture_output=True, text=True, timeout=10)
    if hard >= 999000:
        return f"skip the hard open-file limit is {hard}"
    assert r.returncode == 1 and "open-file limit" in r.stderr, r.stderr
    r = subprocess.run([BIN, "--port", "0", "--max-connections", "0"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 2 and "--max-connections" in r.stderr, r.stderr
    r = subprocess.run([BIN, "--request-timeout", "0"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2 and "--request-timeout" in r.stderr, r.stderr


# ---- oversized requests -------------------------------------------------


def ask(port, raw):
    s = socket.create_connection(("127.0.0.1", port))
    t0 = time.monotonic()
    try:
        s.sendall(raw)
    except OSError:
        pass
    reply = read_reply(s, 3)
    s.close()
    return reply, time.monotonic() - t0


def test_oversized_lines_headers_and_parameter_lists_are_answered_at_once():
    p, port = start(quiet=False)
    try:
        query = "&".join(f"a{i}=1" for i in range(500))
        cases = [
            ("500 query parameters", f"GET /__admin/health?{query} HTTP/1.1\r\nHost: x\r\n\r\n",
             414, b"query parameters"),
            ("500 parameters on a POST", f"POST /api/v1/authenticate?{query} HTTP/1.1\r\n"
             "Host: x\r\nContent-Length: 2\r\n\r\n{}", 414, b"query parameters"),
            ("a 9,000-byte target", f"GET /__admin/health?{'x' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n",
             414, b"8192 bytes"),
            ("a 40,000-byte target",
             f"GET /__admin/health?{'x' * 40000} HTTP/1.1\r\nHost: x\r\n\r\n", 414, b""),
            ("101 header fields", "GET /__admin/health HTTP/1.1\r\nHost: x\r\n"
             + "".join(f"X-H{i}: a\r\n" for i in range(100)) + "\r\n", 431, b"100 header fields"),
            ("a 40 KB header block", "GET /__admin/health HTTP/1.1\r\nHost: x\r\n"
             + "".join(f"X-H{i}: {'v' * 400}\r\n" for i in range(99)) + "\r\n", 431, b""),
            ("600 cookies", "GET /__admin/health HTTP/1.1\r\nHost: x\r\nCookie: "
             + "; ".join(f"c{i}=1" for i in range(600)) + "\r\n\r\n", 431, b""),
        ]
        for name, raw, want, says in cases:
            reply, took = ask(port, raw.encode())
            assert status_of(reply) == want, (name, reply[:200])
            assert says in body_of(reply), (name, reply[:300])
            assert took < 1.0, (name, took)
        # 128 parameters are still fine.
        query = "&".join(f"a{i}=1" for i in range(128))
        reply, _ = ask(port, f"GET /__admin/health?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert status_of(reply) == 200, reply[:200]
    finally:
        stop(p)
    log = p.stderr.read()
    assert re.search(r"GET /__admin/health 414 ", log), log[-2000:]
    assert re.search(r"GET /__admin/health 431 ", log), log[-2000:]


# ---- what reaches the log ------------------------------------------------


def test_log_lines_stay_one_line_of_utf8_whatever_the_request():
    # A decoded %0A would start a forged line, %FF would make the log
    # invalid UTF-8, %20 would split a field.
    for fmt in ("text", "json"):
        p, port = start("--log-format", fmt, quiet=False)
        try:
            ask(port, b"GET /nope/%FF%0A2026-01-01T00:00:00Z%20error%20forged HTTP/1.1\r\n"
                      b"Host: x\r\n\r\n")
            ask(port, b"GET /__admin/health?q=%0Aforged HTTP/1.1\r\nHost: x\r\n"
                      b"X-Authmock-Namespace: a b\r\n\r\n")
        finally:
            stop(p)
        text = p.stderr.read()  # a text stream: invalid UTF-8 raises here
        lines = [l for l in text.splitlines() if "nope" in l or "health" in l]
        assert len(lines) == 2, text
        assert not any(l.startswith("2026-01-01") or l.startswith("forged") for l in text.splitlines())
        if fmt == "json":
            for l in lines:
                json.loads(l)
        else:
            # Each line is written when its request completes, on its own thread.
            nope = next(l for l in lines if "/nope/" in l)
            assert "/nope/%FF%0A2026-01-01T00:00:00Z%20error%20forged 404" in nope, lines
            words = nope.split()
            assert words[3:5] == ["/nope/%FF%0A2026-01-01T00:00:00Z%20error%20forged", "404"], nope


TESTS = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_")]

if __name__ == "__main__":
    try:
        sys.exit(cli_test.main(TESTS))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()

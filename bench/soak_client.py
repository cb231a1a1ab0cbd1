#!/usr/bin/env python3
"""The load of scripts/soak: CLIENTS keep-alive clients, each in its own
namespace (X-Authmock-Namespace: soak-N), looping the MFA flows of both APIs
against an authmock that scripts/soak started, checking every answer, and
printing one line per interval: requests, requests/s, p50/p99 latency,
errors, the server's resident memory (VmRSS of --pid) and CPU. Exits 0 when
no request failed and the memory stayed flat, 1 otherwise.

A loop of one client: the mesh SMS login with token refresh and rotation, the
mesh TOTP login with a wrong code first, a challenge answered in time and one
answered after the namespace's clock moved 301 s, the onlyoffice TOTP login
(the code computed at the namespace's mock clock) and SMS login (the code
from the admin outbox), each with logout; every --reset-every loops (and
first) the namespace is reset and tfa.setup connects its app again. Each loop
logs in new mesh userIds, so the identities and tokens stay at their bounds.

Python threads share one interpreter lock, so the clients are spread over a
few processes (--procs, default: the number of CPUs), each running its share
as threads. Every client speaks HTTP/1.1 over its own socket with a minimal
parser (status line, headers, Content-Length body): http.client parses headers
with the email package and would cost several times the server's work per
request. The clients connect before the clock starts. Latencies are measured
by the client, from the first byte sent to the last byte read, so they
include the client's own scheduling.

SOAK_ADMIN_TOKEN, when set, is sent on the admin calls. Standard library only.
"""
import argparse
import array
import bisect
import collections
import hashlib
import heapq
import hmac
import json
import multiprocessing
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse

MESH = (b"X-Client-Id: test-client-id\r\nX-Client-Secret: test-client-secret\r\n"
        b"Content-Type: application/json\r\n")
JSON = b"Content-Type: application/json\r\n"
OO = "/api/2.0/authentication"
TOTP_APP = b"abcdefghij"    # tfa.app@example.com, connected
TOTP_SETUP = b"klmnopqrst"  # tfa.setup@example.com, connected by its first code
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
ONLYOFFICE_TOKEN = re.compile(r"^[A-Za-z0-9+/]{171}=$")
SLOWEST = 5  # the slowest requests of the run, named in the summary


class Stop(Exception):
    """The run is over: leave the flow between two requests."""


class Wrong(Exception):
    """An answer that is not the one the flow expects."""

    def __init__(self, what, status=None, body=b""):
        super().__init__(what)
        self.what, self.status, self.body = what, status, body


class Conn:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:port."""

    def __init__(self, port, ns, timeout):
        self.port, self.timeout = port, timeout
        self.host = b"Host: 127.0.0.1:%d\r\nX-Authmock-Namespace: %s\r\n" % (port, ns.encode())
        token = os.environ.get("SOAK_ADMIN_TOKEN", "")
        self.admin = b"Authorization: Bearer %s\r\n" % token.encode() if token else b""
        self.sock, self.buf = None, b""
        self.connects = 0

    def close(self):
        if self.sock:
            self.sock.close()
        self.sock, self.buf = None, b""

    def _recv(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    def request(self, method, path, headers=b"", body=b""):
        """Sends one request, returns (status, {lower-case name: [values]}, body)."""
        req = b"%s %s HTTP/1.1\r\n%s%sContent-Length: %d\r\n\r\n%s" % (
            method, path.encode(), self.host, headers, len(body), body)
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.connects += 1
        self.sock.sendall(req)
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            self._recv()
        head, self.buf = self.buf[:end].decode("latin-1"), self.buf[end + 4:]
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or parts[0] != "HTTP/1.1" or not parts[1].isdigit():
            raise ConnectionError(f"bad status line {lines[0]!r}")
        hdrs = collections.defaultdict(list)
        for line in lines[1:]:
            name, _, value = line.partition(":")
            hdrs[name.strip().lower()].append(value.strip())
        if "content-length" not in hdrs:
            raise ConnectionError(f"no Content-Length in the answer: {head!r}")
        n = int(hdrs["content-length"][0])
        while len(self.buf) < n:
            self._recv()
        data, self.buf = self.buf[:n], self.buf[n:]
        if "close" in ",".join(hdrs.get("connection", [])).lower():
            self.close()
        return int(parts[1]), hdrs, data


def totp(secret, t):
    """RFC 6238: HMAC-SHA1, 30 s steps, 6 digits."""
    mac = hmac.new(secret, struct.pack(">Q", int(t // 30)), hashlib.sha1).digest()
    o = mac[-1] & 15
    return "%06d" % ((struct.unpack(">I", mac[o:o + 4])[0] & 0x7FFFFFFF) % 1000000)


def dig(doc, path):
    """doc at a dotted path ("content.accountTokens.0.refreshToken"), or None."""
    for key in path.split("."):
        if isinstance(doc, list) and key.isdigit() and int(key) < len(doc):
            doc = doc[int(key)]
        elif isinstance(doc, dict):
            doc = doc.get(key)
        else:
            return None
    return doc


def cookie(hdrs, name):
    """The value a Set-Cookie header of the answer gives `name`, or None."""
    for c in hdrs.get("set-cookie", []):
        if c.startswith(name + "="):
            return c[len(name) + 1:].split(";", 1)[0]
    return None


class Stats:
    """One process's figures since the last report; threads add under a lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.requests, self.errors = 0, 0
        self.lat = array.array("d")  # milliseconds
        self.slowest = []  # min-heap of the SLOWEST slowest requests: (ms, step)
        self.kinds = collections.Counter()
        self.flows = collections.Counter()

    def add(self, ms, what):
        with self.lock:
            self.requests += 1
            self.lat.append(ms)
            if len(self.slowest) < SLOWEST:
                heapq.heappush(self.slowest, (ms, what))
            elif ms > self.slowest[0][0]:
                heapq.heapreplace(self.slowest, (ms, what))

    def take(self):
        with self.lock:
            out = (self.requests, self.errors, self.lat.tobytes(), self.slowest,
                   dict(self.kinds), dict(self.flows))
            self.reset()
        return out


class Client:
    """One client: a namespace, a connection and the flows, looped."""

    def __init__(self, n, args, stats, stop, shown):
        self.n, self.args, self.stats, self.stop, self.shown = n, args, stats, stop, shown
        self.ns = f"soak-{n}"
        self.conn = Conn(args.port, self.ns, args.timeout)
        self.offset = 0.0  # the namespace's mock clock minus real time
        self.flow = ""

    # ---- requests and checks ---------------------------------------------

    def call(self, what, method, path, headers=b"", body=None, status=200):
        """One request; the answer must have `status` and, when it says JSON, be JSON."""
        if self.stop.is_set():
            raise Stop()
        raw = b"" if body is None else json.dumps(body).encode()
        t0 = time.perf_counter()
        try:
            got, hdrs, data = self.conn.request(method, path, headers, raw)
        except (OSError, ValueError) as e:  # ConnectionError and timeouts are OSErrors
            self.conn.close()
            with self.stats.lock:
                self.stats.requests += 1
            raise Wrong(f"{what}: {type(e).__name__}: {e}")
        self.stats.add((time.perf_counter() - t0) * 1000, what)
        if got != status:
            raise Wrong(f"{what}: HTTP {got}, expected {status}", got, data)
        doc = None
        if data and "json" in ",".join(hdrs.get("content-type", [])):
            try:
                doc = json.loads(data)
            except ValueError as e:
                raise Wrong(f"{what}: body is not JSON ({e})", got, data)
        return hdrs, doc, data

    def expect(self, what, doc, path, want):
        got = dig(doc, path) if path else doc
        ok = want(got) if callable(want) else got == want
        if not ok:
            shown = "a check" if callable(want) else repr(want)
            raise Wrong(f"{what}: {path or 'body'} is {got!r}, expected {shown}", 200,
                        json.dumps(doc).encode())

    def mesh(self, what, uid, body, status=200, path="/api/v1/authenticate"):
        url = f"{path}?userId={uid}" if uid else path
        _, doc, _ = self.call(what, b"POST", url, MESH, body, status)
        return doc

    def mesh_status(self, what, doc, want):
        self.expect(what, doc, "status", "ok")
        self.expect(what, doc, "content.status", want)

    def oo(self, what, path, body=None, headers=b"", status=200, method=b"POST"):
        return self.call(what, method, OO + path, (JSON if body is not None else b"") + headers,
                         body, status)

    def oo_ok(self, what, doc):
        self.expect(what, doc, "status", 0)
        self.expect(what, doc, "statusCode", 200)

    def admin(self, what, method, path, body=None):
        sep = "&" if "?" in path else "?"
        _, doc, _ = self.call(what, method, f"/__admin{path}{sep}namespace={self.ns}",
                              (JSON if body is not None else b"") + self.conn.admin, body)
        return doc

    def code(self, secret):
        return totp(secret, time.time() + self.offset)

    # ---- mesh flows ----------------------------------------------------------

    def mesh_sms_refresh(self, i):
        """mfa.sms: password, mfaRequired (phone), the code, succeeded; then the
        refresh token rotates: the new one works, the old one is refused."""
        uid = f"u{i}-sms"
        d = self.mesh("sms password", uid, {"type": "robinhood", "username": "mfa.sms@example.com",
                                            "password": "pass123"})
        self.mesh_status("sms password", d, "mfaRequired")
        self.expect("sms password", d, "content.mfaType", "phone")
        d = self.mesh("sms code", uid,
                      {"type": "robinhood", "mfaCode": "123456", "mfaType": "phone"})
        self.mesh_status("sms code", d, "succeeded")
        rt = dig(d, "content.accountTokens.0.refreshToken")
        self.expect("sms code", d, "content.accountTokens.0.accessToken",
                    lambda v: isinstance(v, str) and len(v) >= 16)
        self.expect("sms code", d, "content.accountTokens.0.refreshToken",
                    lambda v: isinstance(v, str) and len(v) >= 16)
        refresh = "/api/v1/token/refresh"
        d = self.mesh("refresh", None, {"type": "robinhood", "refreshToken": rt}, path=refresh)
        self.mesh_status("refresh", d, "succeeded")
        rt2 = dig(d, "content.brokerAccountTokens.0.refreshToken")
        self.expect("refresh", d, "content.brokerAccountTokens.0.refreshToken",
                    lambda v: isinstance(v, str) and len(v) >= 16 and v != rt)
        d = self.mesh("refresh with the old token", None, {"type": "robinhood", "refreshToken": rt},
                      status=400, path=refresh)
        self.expect("refresh with the old token", d, "message", "Unauthorized token")
        d = self.mesh("refresh with the new token", None,
                      {"type": "robinhood", "refreshToken": rt2}, path=refresh)
        self.mesh_status("refresh with the new token", d, "succeeded")

    def mesh_totp(self, i):
        """The README's walk-through: mfa.totp, a wrong code, then the right one."""
        uid = f"u{i}-totp"
        d = self.mesh("totp password", uid,
                      {"type": "robinhood", "username": "mfa.totp@example.com",
                       "password": "pass123"})
        self.mesh_status("totp password", d, "mfaRequired")
        self.expect("totp password", d, "content.mfaType", "totp")
        self.expect("totp password", d, "content.authFlowStep", "mfaFlow")
        d = self.mesh("totp wrong code", uid, {"type": "robinhood", "mfaCode": "000000",
                                               "mfaType": "totp"})
        self.mesh_status("totp wrong code", d, "challengeFailed")
        self.expect("totp wrong code", d, "content.errorMessage", "Invalid code")
        d = self.mesh("totp code", uid,
                      {"type": "robinhood", "mfaCode": "123456", "mfaType": "totp"})
        self.mesh_status("totp code", d, "succeeded")
        self.expect("totp code", d, "content.accountTokens.0.account.accountId", "robinhood-1")

    def mesh_challenge(self, i):
        """challenge@: challengeIssued, answered in time: succeeded."""
        uid = f"u{i}-ch"
        d = self.mesh("challenge", uid, {"type": "robinhood", "username": "challenge@example.com",
                                         "password": "pass123"})
        self.mesh_status("challenge", d, "challengeIssued")
        self.expect("challenge", d, "content.challengeExpiresInSeconds", 300)
        cid = dig(d, "content.challengeId")
        self.expect("challenge", d, "content.challengeId", lambda v: bool(UUID.match(str(v))))
        d = self.mesh("challenge answer", uid, {"type": "robinhood", "challengeId": cid,
                                                "challengeCode": "123456"})
        self.mesh_status("challenge answer", d, "succeeded")

    def mesh_challenge_expired(self, i):
        """challenge@, then the namespace's clock moves 301 s: challengeFailed."""
        uid = f"u{i}-exp"
        d = self.mesh("challenge", uid, {"type": "robinhood", "username": "challenge@example.com",
                                         "password": "pass123"})
        self.mesh_status("challenge", d, "challengeIssued")
        cid = dig(d, "content.challengeId")
        d = self.admin("clock +301 s", b"POST", "/clock", {"advanceSeconds": 301})
        self.expect("clock +301 s", d, "namespace", self.ns)
        self.expect("clock +301 s", d, "offsetSeconds", lambda v: isinstance(v, (int, float)))
        self.offset = float(d["offsetSeconds"])
        d = self.mesh("expired challenge answer", uid, {"type": "robinhood", "challengeId": cid,
                                                        "challengeCode": "123456"})
        self.mesh_status("expired challenge answer", d, "challengeFailed")
        self.expect("expired challenge answer", d, "content.errorMessage",
                    "The challenge has expired")

    # ---- onlyoffice flows ----------------------------------------------------

    def oo_logged_in(self, what, key, token, want):
        """GET /authentication with the cookie (key) or the token: `want`."""
        h = b"Cookie: asc_auth_key=%s\r\n" % key.encode() if key else \
            b"Authorization: %s\r\n" % token.encode()
        _, d, _ = self.oo(what, "", method=b"GET", headers=h)
        self.oo_ok(what, d)
        self.expect(what, d, "response", want)

    def oo_token(self, what, hdrs, d):
        """A token answer: the token, and the same token in the asc_auth_key cookie."""
        self.oo_ok(what, d)
        token = dig(d, "response.token")
        self.expect(what, d, "response.token", lambda v: bool(ONLYOFFICE_TOKEN.match(str(v))))
        key = cookie(hdrs, "asc_auth_key")
        if not key or urllib.parse.unquote(key) != token:
            raise Wrong(f"{what}: Set-Cookie asc_auth_key is {key!r}, not the token", 200,
                        repr(hdrs.get("set-cookie")).encode())
        return token, key

    def oo_logout(self, what, key, token):
        hdrs, d, _ = self.oo(what, "/logout", headers=b"Cookie: asc_auth_key=%s\r\n" % key.encode())
        self.oo_ok(what, d)
        self.expect(what, d, "count", 0)
        if cookie(hdrs, "asc_auth_key") != "":
            raise Wrong(f"{what}: the asc_auth_key cookie was not cleared", 200,
                        repr(hdrs.get("set-cookie")).encode())
        self.oo_logged_in(f"{what}, then the token", None, token, False)

    def oo_totp(self, i):
        """tfa.app: password, tfa:true with a TfaAuth confirmUrl, the TOTP code at
        the namespace's mock clock, logged in, logout, the token is revoked."""
        user = "tfa.app@example.com"
        hdrs, d, _ = self.oo("tfa password", "", {"userName": user, "password": "pass123"})
        self.oo_ok("tfa password", d)
        self.expect("tfa password", d, "response.tfa", True)
        self.expect("tfa password", d, "response.confirmUrl",
                    lambda v: isinstance(v, str) and "/confirm/TfaAuth?" in v)
        if cookie(hdrs, "asc_confirm_key_TfaAuth") is None:
            raise Wrong("tfa password: no asc_confirm_key_TfaAuth cookie", 200, b"")
        code = self.code(TOTP_APP)
        hdrs, d, _ = self.oo("tfa code", f"/{code}", {"userName": user, "password": "pass123",
                                                      "code": code})
        token, key = self.oo_token("tfa code", hdrs, d)
        self.expect("tfa code", d, "response.tfa", True)
        self.oo_logged_in("tfa logged in", key, None, True)
        self.oo_logout("tfa logout", key, token)

    def oo_sms(self, i):
        """sms@: password, sms:true with phoneNoise, the code from the outbox, logout."""
        user = "sms@example.com"
        _, d, _ = self.oo("sms password", "", {"userName": user, "password": "pass123"})
        self.oo_ok("sms password", d)
        self.expect("sms password", d, "response.sms", True)
        self.expect("sms password", d, "response.phoneNoise", "+1555***4567")
        box = self.admin("sms outbox", b"GET", "/onlyoffice/sms")
        self.expect("sms outbox", box, "0.phone", "+15551234567")
        self.expect("sms outbox", box, "0.namespace", self.ns)
        code = box[0]["code"]
        hdrs, d, _ = self.oo("sms code", f"/{code}", {"userName": user, "password": "pass123",
                                                      "code": code})
        token, key = self.oo_token("sms code", hdrs, d)
        self.expect("sms code", d, "response.sms", True)
        self.oo_logout("sms logout", key, token)

    def oo_setup_after_reset(self, i):
        """Forget the namespace, then tfa.setup connects its app again: tfaKey and
        TfaActivation, the first code logs in, the next login is TfaAuth."""
        d = self.admin("namespace reset", b"POST", "/reset")
        self.expect("namespace reset", d, "namespace", self.ns)
        self.offset = 0.0  # a reset puts the namespace's clock back with the shared one
        user = "tfa.setup@example.com"
        _, d, _ = self.oo("setup password", "", {"userName": user, "password": "pass123"})
        self.oo_ok("setup password", d)
        self.expect("setup password", d, "response.tfaKey", "NNWG23TPOBYXE43U")
        self.expect("setup password", d, "response.confirmUrl",
                    lambda v: isinstance(v, str) and "/confirm/TfaActivation?" in v)
        code = self.code(TOTP_SETUP)
        hdrs, d, _ = self.oo("setup code", "/x", {"userName": user, "password": "pass123",
                                                  "code": code})
        token, key = self.oo_token("setup code", hdrs, d)
        _, d, _ = self.oo("setup connected", "", {"userName": user, "password": "pass123"})
        self.oo_ok("setup connected", d)
        self.expect("setup connected", d, "response.tfaKey", None)
        self.expect("setup connected", d, "response.confirmUrl",
                    lambda v: isinstance(v, str) and "/confirm/TfaAuth?" in v)
        self.oo_logout("setup logout", key, token)

    FLOWS = ["mesh_sms_refresh", "mesh_totp", "mesh_challenge", "mesh_challenge_expired",
             "oo_totp", "oo_sms"]

    # ---- the loop --------------------------------------------------------------

    def error(self, e):
        kind = e.what.split(":", 1)[0]
        with self.stats.lock:
            self.stats.errors += 1
            self.stats.kinds[f"{self.flow}: {kind}"] += 1
        with self.shown.get_lock():
            show = self.shown.value < self.args.show_errors
            self.shown.value += 1
        if show:
            body = e.body[:600].decode("utf-8", "replace") if e.body else ""
            line = f"soak: error: {self.ns} {self.flow}: {e.what}\n"
            if body:
                line += f"    body: {body}\n"
            os.write(1, line.encode())  # one write: the processes share stdout

    def warm(self, ready, go):
        """Connects before the clock starts, so the first minute does not time
        32 threads starting and connecting at once; then waits for `go`."""
        try:
            self.conn.request(b"GET", "/__admin/health", self.conn.admin)
        except (OSError, ValueError) as e:
            self.conn.close()
            self.flow = "connect"
            self.error(Wrong(f"GET /__admin/health before the start: {type(e).__name__}: {e}"))
        ready.release()
        go.wait()

    def run(self, ready, go):
        self.warm(ready, go)
        i = 0
        while not self.stop.is_set():
            i += 1
            reset = i % self.args.reset_every == 1 or self.args.reset_every == 1
            flows = (["oo_setup_after_reset"] if reset else []) + self.FLOWS
            for name in flows:
                self.flow = name
                try:
                    getattr(self, name)(i)
                    with self.stats.lock:
                        self.stats.flows[name] += 1
                except Stop:
                    break
                except Wrong as e:
                    self.error(e)
                except Exception as e:  # a bug here, or an answer of an unexpected shape
                    self.error(Wrong(f"{type(e).__name__}: {e}"))
        self.conn.close()


def worker(indices, args, pipe, go, stop, shown):
    """One process: its clients as threads. Says "ready" on `pipe` once they
    are connected, then answers each report request with the figures since
    the last one."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the run
    sys.setswitchinterval(0.001)
    stats = Stats()
    clients = [Client(n, args, stats, stop, shown) for n in indices]
    ready = threading.Semaphore(0)
    threads = [threading.Thread(target=c.run, args=(ready, go), daemon=True) for c in clients]
    for t in threads:
        t.start()
    for _ in threads:
        ready.acquire()
    pipe.send("ready")
    while True:
        msg = pipe.recv()
        if msg == "stop":
            for t in threads:
                t.join(args.timeout + 5)
            pipe.send(stats.take() + (sum(c.conn.connects for c in clients),))
            return
        pipe.send(stats.take() + (sum(c.conn.connects for c in clients),))


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def cpu_seconds(pid):
    """User plus system CPU time of the process so far, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def pct(sorted_ms, p):
    if not sorted_ms:
        return float("nan")
    return sorted_ms[min(len(sorted_ms) - 1, int(p / 100 * len(sorted_ms)))]


class Histogram:
    """Latencies of the whole run in buckets 1 % wide (0.01 ms to 100 s):
    keeping every sample of a long run would take hundreds of megabytes."""

    BOUNDS = [0.01 * 1.01 ** i for i in range(1621)]

    def __init__(self):
        self.counts = [0] * (len(self.BOUNDS) + 1)
        self.n = 0

    def add_sorted(self, lat):
        prev = 0
        for i, b in enumerate(self.BOUNDS):
            j = bisect.bisect_right(lat, b, prev)
            self.counts[i] += j - prev
            prev = j
        self.counts[-1] += len(lat) - prev
        self.n += len(lat)

    def pct(self, p):
        want, seen = p / 100 * self.n, 0
        for i, c in enumerate(self.counts):
            seen += c
            if c and seen > want:
                return self.BOUNDS[min(i, len(self.BOUNDS) - 1)]
        return float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True, help="the server's pid, for VmRSS")
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--interval", type=float, default=60, help="seconds per line")
    ap.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=10, help="seconds a request may take")
    ap.add_argument("--show-errors", type=int, default=20, help="errors printed in full")
    ap.add_argument("--reset-every", type=int, default=200,
                    help="loops between a client's namespace resets")
    ap.add_argument("--rss-check", choices=["on", "off"], default="on")
    args = ap.parse_args()

    go, stop = multiprocessing.Event(), multiprocessing.Event()
    shown = multiprocessing.Value("i", 0)
    procs = max(1, min(args.procs, args.clients))
    pipes, workers = [], []
    for p in range(procs):
        mine, theirs = multiprocessing.Pipe()
        w = multiprocessing.Process(target=worker, daemon=True,
                                    args=(list(range(p + 1, args.clients + 1, procs)), args, theirs,
                                          go, stop, shown))
        w.start()
        pipes.append(mine)
        workers.append(w)

    def collect(msg):
        """The figures of every process since the last call."""
        n = err = connects = 0
        lat = array.array("d")
        kinds, flows = collections.Counter(), collections.Counter()
        for p in pipes:
            p.send(msg)
        for p in pipes:
            r, e, lb, sl, k, f, c = p.recv()
            n, err, connects = n + r, err + e, connects + c
            lat.frombytes(lb)
            slowest.extend(sl)
            kinds.update(k)
            flows.update(f)
        slowest[:] = heapq.nlargest(SLOWEST, slowest)
        return n, err, sorted(lat), kinds, flows, connects

    print(f"soak: {args.clients} clients in {procs} process{'es' if procs > 1 else ''} for "
          f"{args.minutes:g} min, a line every {args.interval:g} s; server pid {args.pid}, port "
          f"{args.port}", flush=True)
    print(f"{'minute':>7} {'requests':>10} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'errors':>6} {'RSS MB':>7} {'server CPU':>10}", flush=True)
    for p in pipes:
        if not p.poll(60) or p.recv() != "ready":
            print("soak: load: FAIL: the clients did not start within 60 s")
            return 1
    go.set()
    t0 = time.monotonic()
    end = t0 + args.minutes * 60
    rows, hist, slowest = [], Histogram(), []
    kinds, flows = collections.Counter(), collections.Counter()
    died = interrupted = False
    k, last, connects = 0, t0, 0
    cpu_last = cpu_seconds(args.pid)
    try:
        while True:
            k += 1
            due = min(t0 + k * args.interval, end)
            while time.monotonic() < due and not died:
                time.sleep(min(0.5, max(0.0, due - time.monotonic())))
                died = not alive(args.pid)
            final = died or due >= end
            if final:
                stop.set()
            n, err, lat, kd, fl, connects = collect("stop" if final else "report")
            now = time.monotonic()
            rss, cpu = rss_mb(args.pid), cpu_seconds(args.pid)
            load = "" if None in (cpu, cpu_last) else f"{(cpu - cpu_last) / (now - last):9.0%}"
            cpu_last = cpu
            kinds.update(kd)
            flows.update(fl)
            hist.add_sorted(lat)
            rows.append((n, err, rss, now - last, due - t0))
            print(f"{(due - t0) / 60:7.2f} {n:10,d} {n / (now - last):8,.0f} {pct(lat, 50):7.2f} "
                  f"{pct(lat, 99):7.2f} {err:6d} "
                  f"{rss if rss is not None else float('nan'):7.1f} {load:>10}", flush=True)
            last = now
            if final:
                break
    except KeyboardInterrupt:
        interrupted = True
        stop.set()
        print("soak: interrupted", file=sys.stderr)
    for w in workers:
        w.join(args.timeout + 10)
        if w.is_alive():
            w.terminate()

    requests = sum(r[0] for r in rows)
    errors = sum(r[1] for r in rows)
    secs = sum(r[3] for r in rows)
    print(f"{'all':>7} {requests:10,d} {requests / secs if secs else 0:8,.0f} "
          f"{hist.pct(50):7.2f} {hist.pct(99):7.2f} {errors:6d}")
    print("soak: flows completed: " + ", ".join(f"{f} {flows[f]:,d}" for f in
                                                 ["oo_setup_after_reset"] + Client.FLOWS))
    print(f"soak: connections opened: {connects} for {args.clients} clients")
    print("soak: slowest requests: " + ", ".join(f"{ms:.1f} ms ({what})" for ms, what in slowest))
    if kinds:
        print("soak: errors by flow and step:")
        for kind, c in kinds.most_common(20):
            print(f"    {c:8,d}  {kind}")
    fail = []
    if errors:
        fail.append(f"{errors:,d} errors")
    if died:
        fail.append("the server died")
    if interrupted:
        fail.append("interrupted")
    if requests == 0:
        fail.append("no request was answered")
    # The baseline is the first line at 5 minutes (half the run, if shorter).
    # The bounds fill within the first minute, but glibc gives each worker
    # thread its own arena, and memory one thread allocated and another freed
    # stays in the first one's: on a busy machine the arenas take a few
    # minutes to reach their high-water marks, while the bytes in use stay
    # level. Growth after that would be a leak.
    rss = [r[2] for r in rows]
    base = next((i for i, r in enumerate(rows) if r[4] >= min(300, args.minutes * 30) - 1e-6),
                len(rows) - 1)
    compared = base < len(rows) - 1
    if not rss or None in (rss[base], rss[-1]):
        print("soak: RSS: unknown (the server is gone)")
        fail.append("no RSS")
    elif not compared:
        print(f"soak: RSS {rss[-1]:.1f} MB (no line after the baseline: nothing to compare)")
    else:
        limit = rss[base] * 1.10 + 2
        flat = rss[-1] <= limit
        print(f"soak: RSS at {rows[base][4] / 60:.2f} min {rss[base]:.1f} MB, at the end "
              f"{rss[-1]:.1f} MB, peak {max(r for r in rss if r is not None):.1f} MB; flat means "
              f"the end <= {rss[base]:.1f} x 1.10 + 2 MB = {limit:.1f} MB: "
              f"{'flat' if flat else 'GREW'}"
              + ("" if args.rss_check == "on" else " (not checked: --rss-check off)"))
        if not flat and args.rss_check == "on":
            fail.append(f"RSS grew from {rss[base]:.1f} to {rss[-1]:.1f} MB")
    if fail:
        print("soak: load: FAIL: " + "; ".join(fail))
        return 1
    print(f"soak: load: {requests:,d} requests, 0 errors"
          + (", flat RSS" if compared and args.rss_check == "on" else ""))
    return 0

if __name__ == "__main__":
    sys.exit(main())

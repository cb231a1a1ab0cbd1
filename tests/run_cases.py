#!/usr/bin/env python3
"""Replays authmock's data-driven HTTP test cases and prints TAP.

Each file in the cases directory describes one server (extra command-line
arguments) and a list of cases. The runner starts the real `authmock` on
127.0.0.1 port 0 for each file, resets it before each case, and replays the
steps: what the client sends and what must come back (status, headers, a JSON
subset, saved values reused by later steps). See tests/cases/README.md.
"""
import argparse
import base64
import concurrent.futures
import hashlib
import hmac
import struct
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Failure(Exception):
    pass


class Server:
    def __init__(self, binary, args):
        self.proc = subprocess.Popen(
            [binary, "--port", "0", "--bind", "127.0.0.1"] + args,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"listening on https?://127\.0\.0\.1:(\d+)", line)
        if not m:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.stop()
            raise Failure(f"authmock did not start: {line!r} {err!r}")
        self.port = int(m.group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def lookup(doc, path):
    """Follows a dotted path ("content.accountTokens.0.refreshToken")."""
    cur = doc
    for part in path.split(".") if path else []:
        if isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        elif isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            raise KeyError(path)
    return cur


def totp(secret, t):
    """RFC 6238 (HMAC-SHA1, 30 s, 6 digits) over the secret's UTF-8 bytes."""
    mac = hmac.new(secret.encode(), struct.pack(">Q", int(t // 30)), hashlib.sha1).digest()
    off = mac[-1] & 15
    return "%06d" % ((struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000)


def substitute(value, saved):
    if isinstance(value, str):
        whole = re.fullmatch(r"\$\{([A-Za-z0-9_.:+-]+)\}", value)
        if whole and whole.group(1) in saved:
            return saved[whole.group(1)]  # keeps numbers and booleans as they are
        def repl(m):
            name = m.group(1)
            if name not in saved:
                raise Failure(f"no saved value named {name!r}")
            return str(saved[name])
        return re.sub(r"\$\{([A-Za-z0-9_.:+-]+)\}", repl, value)
    if isinstance(value, list):
        return [substitute(v, saved) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, saved) for k, v in value.items()}
    return value


def match(expected, actual, where):
    """Subset match with a few markers: "$any", "$absent" (as a dict value),
    "$string", "$number", "$uuid", "$base64", "$regex:<re>"."""
    if isinstance(expected, str) and expected.startswith("$"):
        if expected == "$any":
            return
        if expected == "$string" and isinstance(actual, str):
            return
        if expected == "$number" and isinstance(actual, (int, float)) and not isinstance(actual, bool):
            return
        if expected == "$uuid" and isinstance(actual, str) and UUID_RE.match(actual):
            return
        if expected == "$base64" and isinstance(actual, str):
            try:
                base64.b64decode(actual, validate=True)
                return
            except Exception:
                pass
        if expected.startswith("$regex:") and isinstance(actual, str) and re.search(expected[7:], actual):
            return
        if expected.startswith("$len:") and isinstance(actual, list) and len(actual) == int(expected[5:]):
            return
        raise Failure(f"{where}: expected {expected}, got {json.dumps(actual)[:200]}")
    if isinstance(expected, dict) and list(expected) == ["$contains"]:
        if not isinstance(actual, list):
            raise Failure(f"{where}: expected a list, got {json.dumps(actual)[:200]}")
        for want in expected["$contains"]:
            for item in actual:
                try:
                    match(want, item, where)
                    break
                except Failure:
                    pass
            else:
                raise Failure(f"{where}: no element matches {json.dumps(want)[:200]}")
        return
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            raise Failure(f"{where}: expected an object, got {json.dumps(actual)[:200]}")
        for k, v in expected.items():
            if v == "$absent":
                if k in actual:
                    raise Failure(f"{where}.{k}: expected absent, got {json.dumps(actual[k])[:200]}")
                continue
            if k not in actual:
                raise Failure(f"{where}.{k}: missing (have {sorted(actual)})")
            match(v, actual[k], f"{where}.{k}")
        return
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            raise Failure(f"{where}: expected a list of {len(expected)}, got {json.dumps(actual)[:200]}")
        for i, (e, a) in enumerate(zip(expected, actual)):
            match(e, a, f"{where}[{i}]")
        return
    if expected != actual or type(expected) is not type(actual):
        raise Failure(f"{where}: expected {json.dumps(expected)}, got {json.dumps(actual)[:300]}")


def send(port, req, timeout=10):
    """Sends one request; returns (status, headers dict lower-cased, body bytes)
    or raises ConnectionError-like exceptions for transport faults."""
    method = req.get("method", "GET")
    path = req.get("path", "/")
    headers = dict(req.get("headers", {}))
    body = None
    if "json" in req:
        body = json.dumps(req["json"]).encode()
        headers.setdefault("Content-Type", "application/json")
    elif "body" in req:
        body = req["body"].encode()
    elif "bodySize" in req:
        body = b"{" + b" " * (req["bodySize"] - 2) + b"}"
        headers.setdefault("Content-Type", "application/json")
    chunked = False
    if "chunked" in req:
        size = req["chunked"]
        body = (b"x" * min(4096, size - i) for i in range(0, size, 4096))
        headers.setdefault("Content-Type", "application/json")
        chunked = True
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        try:
            conn.request(method, path, body=body, headers=headers, encode_chunked=chunked)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer (413) and close before the body is sent
        resp = conn.getresponse()
        data = resp.read()
        hdrs = {}
        for k, v in resp.getheaders():
            hdrs.setdefault(k.lower(), []).append(v)
        return resp.status, hdrs, data
    finally:
        conn.close()


def check(expect, status, headers, data, where, saved, save):
    if "status" in expect and status != expect["status"]:
        raise Failure(f"{where}: expected HTTP {expect['status']}, got {status}: {data[:300]!r}")
    for name, want in expect.get("headers", {}).items():
        got = headers.get(name.lower())
        if want == "$absent":
            if got is not None:
                raise Failure(f"{where}: header {name} should be absent, got {got}")
            continue
        if got is None:
            raise Failure(f"{where}: header {name} missing (have {sorted(headers)})")
        values = want if isinstance(want, list) else [want]
        for w in values:
            if not any((w.startswith("$regex:") and re.search(w[7:], g)) or g == w for g in got):
                raise Failure(f"{where}: header {name}: expected {w!r}, got {got}")
    doc = None
    if "bodyIsJson" in expect:
        try:
            json.loads(data)
            is_json = True
        except ValueError:
            is_json = False
        if is_json != expect["bodyIsJson"]:
            raise Failure(f"{where}: body should {'' if expect['bodyIsJson'] else 'not '}be JSON: {data[:200]!r}")
    if "json" in expect or save:
        try:
            doc = json.loads(data)
        except ValueError:
            raise Failure(f"{where}: body is not JSON: {data[:300]!r}")
    if "json" in expect:
        match(expect["json"], doc, where + " body")
    if "bodyContains" in expect and expect["bodyContains"].encode() not in data:
        raise Failure(f"{where}: body lacks {expect['bodyContains']!r}: {data[:300]!r}")
    for lack in expect.get("bodyLacks", []):
        if str(lack).encode() in data:
            raise Failure(f"{where}: body holds {lack!r}, which must not appear: {data[:300]!r}")
    if "bodyLength" in expect and len(data) != expect["bodyLength"]:
        raise Failure(f"{where}: body length {len(data)} != {expect['bodyLength']}")
    for name, (path, pattern) in (save or {}).get("$regex", {}).items():
        try:
            m = re.search(pattern, str(lookup(doc, path)))
        except KeyError:
            m = None
        if not m:
            raise Failure(f"{where}: cannot save {name}: {pattern!r} not in {path}")
        saved[name] = m.group(1)
    for name, path in (save or {}).items():
        if name == "$regex":
            continue
        try:
            saved[name] = lookup(doc, path)
        except KeyError:
            raise Failure(f"{where}: cannot save {name}: no {path} in {json.dumps(doc)[:300]}")


def resolve_totp(port, step, saved, admin_headers):
    """${totp:SECRET} or ${totp:SECRET:OFFSET} is the code at the server's mock
    time (plus OFFSET seconds), read from GET /__admin/clock."""
    names = set(re.findall(r"\$\{(totp:[^}]+)\}", json.dumps(step)))
    if not names:
        return
    _, _, data = send(port, {"method": "GET", "path": "/__admin/clock", "headers": admin_headers})
    now = json.loads(data)["epochSeconds"]
    for name in names:
        parts = name.split(":")
        saved[name] = totp(parts[1], now + (int(parts[2]) if len(parts) > 2 else 0))


def take_cookies(jar, headers):
    for line in headers.get("set-cookie", []):
        name, _, rest = line.partition("=")
        value = rest.split(";", 1)[0]
        if "expires=thu, 01 jan 1970" in line.lower() or value == "":
            jar.pop(name.strip(), None)
        else:
            jar[name.strip()] = value


def run_step(port, step, saved, where, defaults, jar):
    resolve_totp(port, step, saved, defaults.get("adminHeaders", {}))
    req = substitute(step.get("send", {}), saved)
    hdrs = dict(defaults.get("headers", {}))
    if req.get("noDefaultHeaders"):
        hdrs = {}
    if jar and not req.get("noCookies"):
        hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
    hdrs.update(req.get("headers", {}))
    req["headers"] = hdrs
    expect = substitute(step.get("expect", {}), saved)
    for i in range(step.get("repeat", 1)):
        w = f"{where} (repeat {i + 1})" if step.get("repeat") else where
        if "parallel" in step:
            run_parallel(port, req, step, w)
            continue
        started = time.monotonic()
        try:
            status, headers, data = send(port, req, timeout=step.get("timeout", 10))
        except (http.client.HTTPException, ConnectionError, socket.timeout) as e:
            if expect.get("transportError"):
                continue
            raise Failure(f"{w}: transport error {type(e).__name__}: {e}")
        if expect.get("transportError"):
            raise Failure(f"{w}: expected a transport error, got HTTP {status} {data[:200]!r}")
        elapsed = time.monotonic() - started
        take_cookies(jar, headers)
        if "minSeconds" in expect and elapsed < expect["minSeconds"]:
            raise Failure(f"{w}: answered after {elapsed:.3f}s, expected at least {expect['minSeconds']}s")
        check(expect, status, headers, data, w, saved, step.get("save"))


def run_parallel(port, req, step, where):
    n = step["parallel"]
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(lambda _: send(port, req), range(n)))
    tally = {}
    path = step["tally"]["path"]
    for status, _, data in results:
        try:
            key = str(lookup(json.loads(data), path))
        except (ValueError, KeyError):
            key = f"HTTP {status}"
        tally[key] = tally.get(key, 0) + 1
    if tally != step["tally"]["counts"]:
        raise Failure(f"{where}: tally of {path} over {n} parallel requests: {tally}, "
                      f"expected {step['tally']['counts']}")


def run_file(binary, path, counter):
    with open(path) as f:
        spec = json.load(f)
    results = []
    for variant in spec.get("variants", [{}]):
        one = dict(spec)
        one["args"] = spec.get("args", []) + variant.get("args", [])
        one["vars"] = variant.get("vars", {})
        label = os.path.basename(path) + (f" [{variant['name']}]" if "name" in variant else "")
        results += run_variant(binary, path, one, label, counter)
    return results


def run_variant(binary, path, spec, name, counter):
    results = []
    server = None
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(os.path.dirname(path))))
        server = Server(binary, [a.replace("${root}", root) for a in spec.get("args", [])])
    except Failure as e:
        for case in spec["cases"]:
            counter[0] += 1
            print(f"not ok {counter[0]} - {name}: {case['name']}\n  # {e}", flush=True)
            results.append(False)
        return results
    try:
        for case in spec["cases"]:
            counter[0] += 1
            saved = dict(spec.get("vars", {}))
            jar = {}
            defaults = dict(spec.get("defaults", {}), adminHeaders=spec.get("adminHeaders", {}))
            try:
                send(server.port, {"method": "POST", "path": "/__admin/reset",
                                   "headers": spec.get("adminHeaders", {})})
                for i, step in enumerate(case["steps"]):
                    run_step(server.port, step, saved, f"step {i + 1}", defaults, jar)
                print(f"ok {counter[0]} - {name}: {case['name']}", flush=True)
                results.append(True)
            except Failure as e:
                print(f"not ok {counter[0]} - {name}: {case['name']}\n  # {e}", flush=True)
                results.append(False)
    finally:
        rc = server.stop()
        if rc != 0:
            counter[0] += 1
            print(f"not ok {counter[0]} - {name}: authmock exited {rc} on SIGTERM "
                  f"(stderr: {server.proc.stderr.read()[-500:]!r})", flush=True)
            results.append(False)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--authmock", required=True)
    ap.add_argument("--cases", required=True)
    ap.add_argument("only", nargs="*", help="case files to run (default: all)")
    opts = ap.parse_args()
    files = sorted(os.path.join(opts.cases, f) for f in os.listdir(opts.cases) if f.endswith(".json"))
    if opts.only:
        files = [f for f in files if os.path.basename(f) in opts.only]
    print("TAP version 13", flush=True)
    counter = [0]
    results = []
    for f in files:
        results += run_file(opts.authmock, f, counter)
    print(f"1..{counter[0]}")
    failed = results.count(False)
    print(f"# {results.count(True)} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

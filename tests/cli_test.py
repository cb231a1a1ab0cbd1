#!/usr/bin/env python3
"""Process-level tests of authmock: command line, start-up errors, `check`,
graceful shutdown, --db persistence, connection timeouts, determinism, logs,
CORS and TLS. Each test starts its own server on 127.0.0.1 port 0 and always
stops it. Prints TAP."""
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

BIN = os.path.abspath(sys.argv[1])
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT = {"X-Client-Id": "test-client-id", "X-Client-Secret": "test-client-secret",
          "Content-Type": "application/json"}
procs = []


def start(*args, env=None, quiet=True):
    cmd = [BIN, "--port", "0", "--bind", "127.0.0.1"] + (["--quiet"] if quiet else []) + list(args)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, **(env or {})})
    procs.append(p)
    line = p.stdout.readline()
    m = re.search(r"listening on (https?)://(127\.0\.0\.1|\[[0-9a-f:.]+\]):(\d+)", line)
    assert m, f"no listening line: {line!r} {p.stderr.read() if p.poll() is not None else ''}"
    return p, int(m.group(3))


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return p.returncode


def request(port, method, path, body=None, headers=None, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers=headers if headers is not None else CLIENT)
        r = c.getresponse()
        data = r.read()
        return r.status, dict(r.getheaders()), data
    finally:
        c.close()


def login(port, user, pw="pass123", uid="u1", ns=None, **extra):
    h = dict(CLIENT)
    if ns:
        h["X-Authmock-Namespace"] = ns
    status, _, data = request(port, "POST", f"/api/v1/authenticate?userId={uid}",
                              {"type": "robinhood", "username": user, "password": pw, **extra}, h)
    return status, json.loads(data)


def run(*args, env=None):
    return subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=30,
                          env={**os.environ, **(env or {})})


# ---- tests --------------------------------------------------------------

def test_help_lists_every_option():
    r = run("--help")
    assert r.returncode == 0
    for opt in ["--bind", "--port", "--db", "--fixtures", "--scenarios", "--profile", "--seed",
                "--admin-token", "--log-format", "--quiet", "--journal-max", "--journal-max-bytes",
                "AUTHMOCK_JOURNAL_MAX_BYTES", "--cors",
                "--tls-cert", "--tls-key", "AUTHMOCK_PORT", "check"]:
        assert opt in r.stdout, opt
    v = run("--version")
    assert v.returncode == 0 and re.match(r"authmock \d+\.\d+\.\d+", v.stdout)


def test_bad_options_exit_2_with_one_line_each():
    r = run("--bogus")
    assert r.returncode == 2 and "--bogus" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = run("--profile", "nope")
    assert r.returncode == 2 and "(allowed: documented or server)" in r.stderr, r.stderr
    r = run(env={"AUTHMOCK_PORT": "x"})
    assert r.returncode == 2 and "AUTHMOCK_PORT: 'x' is not a whole number (allowed: 0 to 65535)" in r.stderr, r.stderr
    # Every bad option at once, each with its range or its likely meaning; nothing served.
    r = run("--port", "70000", "--threads", "0", "--prot", "9000", "--log-format", "xml",
            env={"AUTHMOCK_JOURNAL_MAX": "-1"})
    assert r.returncode == 2 and r.stdout == "", r.stdout
    assert r.stderr.splitlines() == [
        "authmock: --port: 70000 is out of range (allowed: 0 to 65535)",
        "authmock: --threads: 0 is out of range (allowed: 1 to 256)",
        "authmock: unknown option '--prot'; did you mean --port?",
        "authmock: --log-format: 'xml' is not a log format (allowed: text or json)",
        "authmock: AUTHMOCK_JOURNAL_MAX: -1 is out of range (allowed: 0 to 100000000)",
    ], r.stderr
    # A variable the command line overrides does not matter.
    r = run("--port", "1", "check", os.path.join(ROOT, "scenarios"), env={"AUTHMOCK_PORT": "x"})
    assert r.returncode == 0, r.stderr
    r = run("health", "--treads", "2")
    assert r.returncode == 2 and r.stderr == "authmock: unknown option '--treads'; did you mean --threads?\n", r.stderr


def test_invalid_scenario_dir_refuses_to_start():
    d = tempfile.mkdtemp()
    try:
        open(os.path.join(d, "a.json"), "w").write('{"name": "a", "api": "mesh", "initial": "s", '
                                                   '"states": {"s": [{"reply": {}, "next": "t"}]}}')
        open(os.path.join(d, "b.json"), "w").write('{"name": ')
        r = run("--port", "0", "--scenarios", d)
        assert r.returncode != 0 and "listening" not in r.stdout
        assert re.search(r"a\.json: \$\.states\.s\[0\]\.next: must name a state", r.stderr), r.stderr
        assert re.search(r"b\.json: \$ \(byte \d+\): not valid JSON", r.stderr), r.stderr
    finally:
        shutil.rmtree(d)


def test_many_scenario_files_report_problems_in_name_order():
    # Enough files that they are parsed on several threads: the problems still
    # come out in file-name order, twins name the first file, and start-up
    # reports exactly what `authmock check` reports, run after run.
    d = tempfile.mkdtemp()
    try:
        for i in range(200):
            name = {20: "s019", 199: "s005"}.get(i, f"s{i:03d}")
            doc = {"name": name, "api": "mesh", "initial": "s",
                   "bind": {"username": f"u{i}@example.com"},
                   "states": {"s": [{"reply": {"outcome": "succeeded"}}]}}
            if i == 100:
                doc["extra"] = 1
            text = json.dumps(doc, indent=2)
            if i in (10, 150):
                text = text[:40]
            open(os.path.join(d, f"f{i:03d}.json"), "w").write(text)
        want = run("check", d)
        assert want.returncode == 1
        lines = [l for l in want.stderr.splitlines() if not l.startswith("authmock check:")]
        files = [l.split(": ")[0] for l in lines]
        assert files == [os.path.join(d, f"f{i:03d}.json") for i in (10, 20, 100, 150, 199)], lines
        assert "'s019' is also the name of " + os.path.join(d, "f019.json") in lines[1], lines
        for _ in range(3):
            r = run("--port", "0", "--scenarios", d)
            assert r.returncode != 0 and "listening" not in r.stdout
            got = [l for l in r.stderr.splitlines() if not l.startswith("authmock: not starting")]
            assert got == lines, (got, lines)
    finally:
        shutil.rmtree(d)


def test_links_and_odd_entries_in_the_scenario_tree_are_problems():
    # A link loop was followed down to the path length limit (41,361 lines of
    # twins); a dangling *.json link was skipped without a word; a JSON array
    # was a "misplaced fixture" to check and "not an object" to start-up.
    d = tempfile.mkdtemp()
    try:
        tree = os.path.join(d, "s")
        shutil.copytree(os.path.join(ROOT, "scenarios"), tree)
        os.symlink("..", os.path.join(tree, "up"))
        os.symlink("nowhere.json", os.path.join(tree, "dangling.json"))
        os.mkdir(os.path.join(tree, "dir.json"))  # a directory is walked, not read
        open(os.path.join(tree, "array.json"), "w").write("[]")
        want = run("check", tree)
        assert want.returncode == 1
        lines = [l for l in want.stderr.splitlines() if not l.startswith("authmock check:")]
        assert lines == [
            f"{tree}/array.json: $: a scenario must be a JSON object",
            f"{tree}/dangling.json: $: cannot be read: No such file or directory",
            f"{tree}/up/s: $: leads back to a directory it is in (a link loop), "
            "so it is not read again"], lines
        r = run("--port", "0", "--bind", "127.0.0.1", "--scenarios", tree)
        assert r.returncode == 1 and "listening" not in r.stdout
        got = [l for l in r.stderr.splitlines() if not l.startswith("authmock: not starting")]
        assert got == lines, (got, lines)
        # A loop below the top is caught where it closes, once.
        shutil.rmtree(tree)
        os.makedirs(os.path.join(tree, "a", "b"))
        os.symlink(os.path.join(tree, "a"), os.path.join(tree, "a", "b", "back"))
        r = run("check", tree)
        assert r.returncode == 1 and r.stderr.count("link loop") == 1, r.stderr
    finally:
        shutil.rmtree(d)


def test_unreadable_dirs_refuse_to_start():
    r = run("--port", "0", "--fixtures", "/nonexistent/dir")
    assert r.returncode != 0 and "/nonexistent/dir" in r.stderr
    r = run("--port", "0", "--scenarios", "/nonexistent/dir")
    assert r.returncode != 0 and "/nonexistent/dir" in r.stderr


def test_check_command():
    r = run("check", os.path.join(ROOT, "scenarios"), os.path.join(ROOT, "fixtures"))
    assert r.returncode == 0, r.stderr
    d = tempfile.mkdtemp()
    try:
        bad = os.path.join(d, "bad.json")
        open(bad, "w").write('{"name": "x", "api": "mesh", "initial": "s", "states": {"s": '
                             '[{"reply": {"content": {"status": "wonderful"}}}]}}')
        r = run("check", bad)
        assert r.returncode == 1
        assert f"{bad}: $.states.s[0].reply.content.status: must be one of: failed," in r.stderr, r.stderr
        os.makedirs(os.path.join(d, "mesh"))
        fx = os.path.join(d, "mesh", "clients.json")
        open(fx, "w").write('{"clients": [{"clientId": 5}]}')
        r = run("check", fx)
        assert r.returncode == 1 and f"{fx}: $.clients[0].clientId: must be a string" in r.stderr, r.stderr
        # A file refused for more than syntax says why, scenario or fixture.
        deep = os.path.join(d, "deep.json")
        open(deep, "w").write('{"a":' * 70 + "1" + "}" * 70)
        open(fx, "w").write('{"clients": "\x01"}')
        r = run("check", deep, fx)
        assert f"{deep}: $ (byte 320): not valid JSON: it is nested deeper than the maximum " \
            "depth of 64" in r.stderr, r.stderr
        assert f"{fx}: $ (byte 13): not valid JSON: it has a control character" in r.stderr, r.stderr
    finally:
        shutil.rmtree(d)


def test_port_in_use_exits_nonzero():
    p, port = start()
    try:
        r = run("--port", str(port), "--bind", "127.0.0.1")
        assert r.returncode != 0 and str(port) in r.stderr and "listening" not in r.stdout
    finally:
        stop(p)


def test_sigterm_drains_in_flight_requests():
    p, port = start()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            fut = pool.submit(login, port, "slow@example.com")
            time.sleep(0.5)
            p.send_signal(signal.SIGTERM)
            status, body = fut.result(timeout=10)
        assert status == 200 and body["content"]["status"] == "succeeded"
        assert p.wait(timeout=10) == 0
        # It stopped accepting.
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            raise AssertionError("still accepting after SIGTERM")
        except OSError:
            pass
    finally:
        stop(p)


def test_delays_do_not_hold_up_other_requests():
    p, port = start("--threads", "2")
    try:
        with concurrent.futures.ThreadPoolExecutor(9) as pool:
            slow = [pool.submit(login, port, "slow@example.com", uid=f"s{i}") for i in range(8)]
            time.sleep(0.3)
            t0 = time.monotonic()
            status, body = login(port, "ok@example.com")
            fast = time.monotonic() - t0
            assert status == 200 and fast < 1.0, f"a fast request waited {fast:.2f}s behind delays"
            assert all(f.result(timeout=10)[0] == 200 for f in slow)
    finally:
        stop(p)


def test_db_file_keeps_state_across_restart():
    d = tempfile.mkdtemp()
    db = os.path.join(d, "state.db")
    try:
        p, port = start("--db", db)
        status, body = login(port, "mfa.totp@example.com")
        assert body["content"]["status"] == "mfaRequired"
        status, body = login(port, "ok@example.com", uid="u2")
        rt = body["content"]["accountTokens"][0]["refreshToken"]
        assert stop(p) == 0
        p, port = start("--db", db)
        status, _, data = request(port, "POST", "/api/v1/authenticate?userId=u1",
                                  {"type": "robinhood", "mfaCode": "123456"})
        assert json.loads(data)["content"]["status"] == "succeeded", data
        status, _, data = request(port, "POST", "/api/v1/token/refresh",
                                  {"type": "robinhood", "refreshToken": rt})
        assert status == 200, data
        stop(p)
    finally:
        shutil.rmtree(d)


def test_idle_and_slow_connections_time_out():
    p, port = start("--connection-timeout", "1")
    try:
        idle = socket.create_connection(("127.0.0.1", port))
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"POST /api/v1/authenticate HTTP/1.1\r\nHost: x\r\n")
        idle.settimeout(5)
        slow.settimeout(5)
        t0 = time.monotonic()
        assert idle.recv(100) == b""
        assert slow.recv(100) in (b"",) or True
        assert time.monotonic() - t0 < 4.5
        idle.close()
        slow.close()
        status, _ = login(port, "ok@example.com")
        assert status == 200
    finally:
        stop(p)


def test_seed_makes_tokens_deterministic():
    tokens = []
    for _ in range(2):
        p, port = start("--seed", "42")
        try:
            _, body = login(port, "ok@example.com")
            tokens.append(body["content"]["accountTokens"][0]["accessToken"])
        finally:
            stop(p)
    assert tokens[0] == tokens[1]
    p, port = start("--seed", "43")
    try:
        _, body = login(port, "ok@example.com")
        assert body["content"]["accountTokens"][0]["accessToken"] != tokens[0]
    finally:
        stop(p)


def test_request_log_has_no_secrets():
    for fmt in ["text", "json"]:
        p, port = start("--log-format", fmt, quiet=False)
        try:
            _, body = login(port, "ok@example.com")
            at = body["content"]["accountTokens"][0]["accessToken"]
            login(port, "mfa.totp@example.com", uid="u2")
            request(port, "POST", "/api/v1/authenticate?userId=u2&password=leak", {"type": "robinhood", "mfaCode": "123456"})
        finally:
            stop(p)
        err = p.stderr.read()
        lines = [l for l in err.splitlines() if "/api/v1/authenticate" in l]
        assert len(lines) == 3, err
        for secret in ["pass123", "123456", at, "test-client-secret", "leak"]:
            assert secret not in err, f"{secret} in log: {err}"
        if fmt == "json":
            for l in err.splitlines():
                json.loads(l)
            assert json.loads(lines[0])["status"] == 200


def test_log_and_journal_show_the_query_as_received():
    raw = "userId=user+1&a=%26b&pass%77ord=leak"
    for fmt in ["text", "json"]:
        p, port = start("--log-format", fmt, quiet=False)
        try:
            status, _, _ = request(port, "POST", f"/api/v1/authenticate?{raw}",
                                   {"type": "robinhood", "username": "ok@example.com", "password": "pass123"})
            assert status == 200
            entry = journal(port, "limit=1")[0]
            assert entry["query"] == "userId=user+1&a=%26b&pass%77ord=***", entry
            assert entry["user"] == "user 1", entry
        finally:
            stop(p)
        err = p.stderr.read()
        assert "leak" not in err, err
        line = next(l for l in err.splitlines() if "/api/v1/authenticate" in l)
        if fmt == "json":
            assert json.loads(line)["query"] == "userId=user+1&a=%26b&pass%77ord=***", line
        else:
            # One whitespace-free word for the target, then the status.
            words = line.split()
            assert words[3:5] == ["/api/v1/authenticate?userId=user+1&a=%26b&pass%77ord=***", "200"], line


def test_client_401_is_explained_in_the_log_without_the_secret():
    p, port = start(quiet=False)
    try:
        status, _, data = request(port, "GET", "/api/v1/status",
                                  headers={"X-Client-Id": "test-client-id", "X-Client-Secret": "s3cr3t-typo"})
        assert status == 401 and b"s3cr3t-typo" not in data, data
        status, _, _ = request(port, "GET", "/api/v1/status", headers={"X-Client-Id": "test-client-id",
                                                                       "X-Client-Secert": "test-client-secret"})
        assert status == 401
    finally:
        stop(p)
    err = p.stderr.read()
    assert "s3cr3t-typo" not in err and "test-client-secret" not in err, err
    assert "mesh: 401 for GET /api/v1/status: The X-Client-Secret is unknown for client 'test-client-id'." in err, err
    assert "mesh: 401 for GET /api/v1/status: The X-Client-Secret header is missing." in err, err


def test_log_lines_name_the_outcome():
    """code->password after three wrong codes and after a success: the outcome tells them apart."""
    for fmt in ["text", "json"]:
        p, port = start("--log-format", fmt, quiet=False)
        try:
            login(port, "mfa.totp@example.com", uid="o1")
            for _ in range(3):
                request(port, "POST", "/api/v1/authenticate?userId=o1", {"type": "robinhood", "mfaCode": "000000"})
            login(port, "mfa.totp@example.com", uid="o1")
            request(port, "POST", "/api/v1/authenticate?userId=o1", {"type": "robinhood", "mfaCode": "123456"})
            request(port, "POST", "/api/v1/authenticate?userId=o1", {"username": "no type"})
            request(port, "GET", "/__admin/health", headers={})
        finally:
            stop(p)
        lines = [l for l in p.stderr.read().splitlines() if "/api/v1/authenticate" in l or "/__admin" in l]
        # A line is written once its answer is sent, so lines of requests a
        # client sent one after another may come out in either order.
        if fmt == "text":
            got = sorted(re.search(r"(state=\S+ )?outcome=(\S+)$", l).group(0) if "outcome=" in l
                         else "admin" for l in lines)
        else:
            docs = [json.loads(l) for l in lines]
            got = sorted((f"state={d['stateFrom']}->{d['stateTo']} " if d["stateFrom"] else "")
                         + f"outcome={d['outcome']}" if d["outcome"] else "admin" for d in docs)
        assert got == sorted([
            "state=password->code outcome=mfaRequired", "state=code->code outcome=challengeFailed",
            "state=code->code outcome=challengeFailed", "state=code->password outcome=challengeFailed",
            "state=password->code outcome=mfaRequired", "state=code->password outcome=succeeded",
            "outcome=error", "admin"]), got


def test_check_rejects_bad_header_conditions():
    d = tempfile.mkdtemp()
    try:
        bad = os.path.join(d, "headers.json")
        open(bad, "w").write(json.dumps({
            "name": "h", "api": "mesh", "bind": {"headers": {"Bad Name": "x", "X-Ok": {"present": True}}},
            "initial": "s", "states": {"s": [
                {"when": {"headers": {"X-A": 5, "X-B": {"regex": "("}, "X-C": {"oneOf": ["a", 1]}}},
                 "reply": {"content": {"status": "failed"}}},
                {"when": {"headers": []}, "reply": {"content": {"status": "failed"}}}]}}))
        r = run("check", bad)
        assert r.returncode == 1, r.stderr
        for line in [f"{bad}: $.bind.headers.Bad Name: must be a header name",
                     f"{bad}: $.states.s[0].when.headers.X-A: a header's value is text",
                     f"{bad}: $.states.s[0].when.headers.X-B.regex: invalid regular expression",
                     f"{bad}: $.states.s[0].when.headers.X-C: a header's value is text",
                     f"{bad}: $.states.s[1].when.headers: must be an object of header names to conditions"]:
            assert line in r.stderr, (line, r.stderr)
        assert "5 problems" in r.stderr, r.stderr
        r = run("check", os.path.join(ROOT, "tests", "scenarios-explain"))
        assert r.returncode == 0, r.stderr
    finally:
        shutil.rmtree(d)


def test_totp_route_is_rfc_6238_at_the_moved_clock():
    """The admin TOTP code equals RFC 6238 (HMAC-SHA1, 30 s, 6 digits) over the
    fixture secret at the shared and at a namespace's moved mock clock."""
    import hashlib, hmac, struct

    def rfc6238(secret, t):
        mac = hmac.new(secret, struct.pack(">Q", int(t) // 30), hashlib.sha1).digest()
        off = mac[-1] & 15
        return "%06d" % ((struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000)

    # RFC 6238 appendix B, SHA-1, 8 digits there: the low 6 digits here.
    assert rfc6238(b"12345678901234567890", 59) == "287082"
    p, port = start()
    try:
        j = {"Content-Type": "application/json"}
        for path, body in [("/__admin/clock", {"set": "2031-06-01T12:00:07Z"}),
                           ("/__admin/clock?namespace=far", {"advanceSeconds": 86400 * 400 + 30})]:
            status, _, _ = request(port, "POST", path, body, j)
            assert status == 200
        for ns in [None, "far"]:
            q = f"&namespace={ns}" if ns else ""
            _, _, data = request(port, "GET", f"/__admin/onlyoffice/totp?user=tfa.app@example.com{q}", headers={})
            got = json.loads(data)
            _, _, data = request(port, "GET", "/__admin/clock" + (f"?namespace={ns}" if ns else ""), headers={})
            now = json.loads(data)["epochSeconds"]
            assert got["code"] == rfc6238(b"abcdefghij", now), (got, now)
            assert got["nextCode"] == rfc6238(b"abcdefghij", now + 30)
            assert got["namespace"] == (ns or "") and 0 < got["secondsRemaining"] <= 30
        assert got["validFrom"].startswith("2032-07-05T12:00:30")
    finally:
        stop(p)


def test_onlyoffice_secrets_stay_out_of_the_log():
    p, port = start(quiet=False)
    try:
        base = "/api/2.0/authentication"
        h = {"Content-Type": "application/json"}
        request(port, "POST", base, {"userName": "sms@example.com", "password": "pass123"}, h)
        _, _, data = request(port, "GET", "/__admin/onlyoffice/sms", headers={})
        code = json.loads(data)[0]["code"]
        status, headers, data = request(port, "POST", f"{base}/{code}",
                                        {"userName": "sms@example.com", "password": "pass123", "code": code}, h)
        assert status == 200, data
        token = json.loads(data)["response"]["token"]
        request(port, "GET", base, headers={"Authorization": token})
    finally:
        stop(p)
    err = p.stderr.read()
    assert f"{base}/{{code}}" in err, err
    for secret in ["pass123", code, token, token[:40]]:
        assert secret not in err, f"{secret} in log: {err}"


def test_live_scenarios_reload_and_refuse_invalid_files():
    d = tempfile.mkdtemp()
    try:
        shutil.copytree(os.path.join(ROOT, "scenarios"), os.path.join(d, "s"))
        sdir = os.path.join(d, "s")
        p, port = start("--scenarios", sdir, quiet=False)
        captcha = os.path.join(sdir, "mesh", "mesh-captcha.json")

        def status():
            return login(port, "captcha@example.com")[1]["content"]["status"]

        def wait_for(want):
            for _ in range(50):
                if status() == want:
                    return
                time.sleep(0.1)
            raise AssertionError(f"status never became {want}")

        assert status() == "captchaChallenge"
        text = open(captcha).read()
        open(captcha, "w").write(text.replace("captchaChallenge", "bindMfaRequired"))
        wait_for("bindMfaRequired")
        # An invalid file is refused whole; the previous scenarios keep serving.
        open(os.path.join(sdir, "mesh", "zz-broken.json"), "w").write('{"name": ')
        open(captcha, "w").write(text.replace("captchaChallenge", "delayed"))
        time.sleep(1.0)
        assert status() == "bindMfaRequired"
        # Scenarios added through the admin API survive a reload.
        status_code, _, _ = request(port, "POST", "/__admin/scenarios",
                                    {"name": "extra", "api": "mesh", "bind": {"username": "extra@example.com"},
                                     "initial": "a", "states": {"a": [{"reply": {"content": {"status": "delayed"}}}]}},
                                    {"Content-Type": "application/json"})
        assert status_code == 201
        os.remove(os.path.join(sdir, "mesh", "zz-broken.json"))
        wait_for("delayed")
        assert login(port, "extra@example.com")[1]["content"]["status"] == "delayed"
    finally:
        stop(p)
        shutil.rmtree(d)
    err = p.stderr.read()
    assert "zz-broken.json: $ (byte" in err and "previous ones keep serving" in err, err
    assert "reloaded" in err


def wait_for_log(p, text, timeout=5):
    """Reads p's stderr (unbuffered, from its descriptor) until text appears;
    returns what was read."""
    import select
    seen = ""
    fd = p.stderr.fileno()
    deadline = time.monotonic() + timeout
    while text not in seen and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            seen += chunk.decode(errors="replace")
    assert text in seen, f"never logged {text!r}: {seen}"
    return seen


def test_live_reload_messages():
    """One scenario is "1 scenario"; a file that takes a served name is blamed,
    not the file that served it, even when the newcomer sorts first."""
    d = tempfile.mkdtemp()
    try:
        sdir = os.path.join(d, "s")
        os.makedirs(sdir)
        doc = {"name": "only", "api": "mesh", "bind": {"username": "only@example.com"},
               "initial": "a", "states": {"a": [{"reply": {"content": {"status": "delayed"}}}]}}
        served = os.path.join(sdir, "m-only.json")
        open(served, "w").write(json.dumps(doc))
        p, port = start("--scenarios", sdir, quiet=False)
        open(served, "w").write(json.dumps(dict(doc, description="changed")))
        wait_for_log(p, f"reloaded 1 scenario from {sdir}\n")
        newcomer = os.path.join(sdir, "a-copy.json")
        open(newcomer, "w").write(json.dumps(doc))
        err = wait_for_log(p, "not reloaded")
        assert f"scenario refused: {newcomer}: $.name: 'only' is also the name of {served}\n" in err, err
        assert login(port, "only@example.com")[1]["content"]["status"] == "delayed"
    finally:
        stop(p)
        shutil.rmtree(d)


def totp_now(port, secret):
    import hashlib, hmac, struct
    _, _, data = request(port, "GET", "/__admin/clock", headers={})
    t = json.loads(data)["epochSeconds"]
    mac = hmac.new(secret.encode(), struct.pack(">Q", t // 30), hashlib.sha1).digest()
    off = mac[-1] & 15
    return "%06d" % ((struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1000000)


def test_no_secret_reaches_the_journal_or_the_log():
    """Every bundled flow with its secrets, then a search of the journal and the log for them."""
    p, port = start(quiet=False)
    secrets = {"pass123", "test-api-secret", "123456", "Kq7-Zr2xW9", "test-client-secret"}
    try:
        j = {"Content-Type": "application/json"}
        for user in ["mfa.totp@example.com", "challenge@example.com", "question@example.com"]:
            login(port, user)
        login(port, "", mfaCode="123456", uid="u1")
        request(port, "POST", "/api/v1/authenticate?userId=u1",
                {"type": "robinhood", "challengeAnswer": "blue", "challengeCode": "123456"})
        request(port, "POST", "/api/v1/authenticate?userId=k",
                {"type": "binanceInternational", "username": "test-api-key", "password": "test-api-secret"})
        _, body = login(port, "ok@example.com", uid="t")
        tok = body["content"]["accountTokens"][0]
        secrets |= {tok["accessToken"], tok["refreshToken"]}
        request(port, "POST", "/api/v1/token/refresh", {"type": "robinhood", "refreshToken": tok["refreshToken"]})
        request(port, "DELETE", "/api/v1/account", {"type": "robinhood", "authToken": tok["accessToken"]})
        base = "/api/2.0/authentication"
        request(port, "POST", base, {"userName": "sms@example.com", "password": "pass123"}, j)
        _, _, data = request(port, "GET", "/__admin/onlyoffice/sms", headers={})
        sms = json.loads(data)[0]["code"]
        code = totp_now(port, "abcdefghij")
        secrets |= {sms, code}
        request(port, "POST", f"{base}/{sms}", {"userName": "sms@example.com", "password": "pass123", "code": sms}, j)
        _, _, data = request(port, "POST", f"{base}/{code}",
                             {"userName": "tfa.app@example.com", "password": "pass123", "code": code}, j)
        token = json.loads(data)["response"]["token"]
        secrets.add(token)
        request(port, "POST", f"{base}/x", {"userName": "tfa.app@example.com", "password": "pass123", "code": "Kq7-Zr2xW9"}, j)
        request(port, "GET", base, headers={"Authorization": token})
        request(port, "POST", base, {"userName": "jane@example.com", "passwordHash": "ab" * 32}, j)
        _, _, journal = request(port, "GET", "/__admin/requests?limit=1000", headers={})
        assert len(json.loads(journal)["requests"]) >= 15
    finally:
        stop(p)
    log = p.stderr.read()
    for where, text in [("journal", journal.decode()), ("log", log)]:
        for secret in secrets:
            assert secret not in text, f"{secret!r} appears in the {where}"
    assert "ab" * 32 not in journal.decode()


def test_namespaces_stay_apart_under_parallel_load():
    p, port = start("--threads", "2")
    try:
        def worker(i):
            ns = f"worker-{i}"
            h = dict(CLIENT, **{"X-Authmock-Namespace": ns})
            for _ in range(10):
                s1, b1, d1 = request(port, "POST", "/api/v1/authenticate?userId=same",
                                     {"type": "robinhood", "username": "mfa.totp@example.com", "password": "pass123"}, h)
                s2, b2, d2 = request(port, "POST", "/api/v1/authenticate?userId=same",
                                     {"type": "robinhood", "mfaCode": "123456"}, h)
                assert json.loads(d1)["content"]["status"] == "mfaRequired", d1
                assert json.loads(d2)["content"]["status"] == "succeeded", d2
            _, _, c = request(port, "GET", f"/__admin/requests/count?namespace={ns}", headers={})
            return json.loads(c)["count"]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            counts = list(pool.map(worker, range(8)))
        assert counts == [20] * 8, counts
        request(port, "POST", "/__admin/reset?namespace=worker-0", headers={})
        _, _, c = request(port, "GET", "/__admin/requests/count", headers={})
        assert json.loads(c)["count"] == 140
    finally:
        stop(p)


def upload_scenarios(port, names, statuses):
    """Uploads one small scenario per name over a kept-alive connection."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for name in names:
            doc = {"name": name, "api": "mesh", "bind": {"username": f"{name}@example.com"},
                   "initial": "a", "states": {"a": [{"reply": {"outcome": "succeeded"}}]}}
            c.request("POST", "/__admin/scenarios", body=json.dumps(doc),
                      headers={"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            statuses.append(r.status)
    finally:
        c.close()


def bundled_scenarios():
    return sum(1 for _, _, files in os.walk(os.path.join(ROOT, "scenarios"))
               for f in files if f.endswith(".json"))


def listed_scenarios(port):
    status, _, data = request(port, "GET", "/__admin/scenarios", headers={}, timeout=30)
    assert status == 200, status
    return {s["name"] for s in json.loads(data)}


def test_concurrent_uploads_and_reloads_all_land():
    d = tempfile.mkdtemp()
    p = None
    try:
        sdir = os.path.join(d, "s")
        shutil.copytree(os.path.join(ROOT, "scenarios"), sdir)
        p, port = start("--scenarios", sdir, "--threads", "4")
        captcha = os.path.join(sdir, "mesh", "mesh-captcha.json")
        text = open(captcha).read()
        done = []

        def touch():
            # Rewrites one watched file until the uploads finish; writes further apart
            # than the watcher's settling delay are one reload each.
            n = 0
            while not done and n < 400:
                open(captcha, "w").write(text if n % 2 else text.replace("captchaChallenge", "delayed"))
                n += 1
                time.sleep(0.2)
            open(captcha, "w").write(text)
            return n

        a, b = [], []
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            toucher = pool.submit(touch)
            ua = pool.submit(upload_scenarios, port, [f"conc-a-{i:03d}" for i in range(300)], a)
            ub = pool.submit(upload_scenarios, port, [f"conc-b-{i:03d}" for i in range(300)], b)
            ua.result(timeout=120)
            ub.result(timeout=120)
            done.append(1)
            assert toucher.result(timeout=30) > 0
        assert len(a) == len(b) == 300 and set(a + b) <= {200, 201}, (sorted(set(a + b)), len(a), len(b))
        time.sleep(0.5)  # the last reload settles
        assert p.poll() is None, p.stderr.read()
        names = listed_scenarios(port)
        want = {f"conc-{w}-{i:03d}" for w in "ab" for i in range(300)}
        assert want <= names, len(want - names)
        assert len(names) == 600 + bundled_scenarios(), len(names)
        assert login(port, "captcha@example.com")[1]["content"]["status"] == "captchaChallenge"
        assert stop(p) == 0, p.stderr.read()
    finally:
        if p:
            stop(p)
        shutil.rmtree(d)


def test_a_thousand_uploads_finish_in_bounded_time():
    p, port = start()
    try:
        statuses = []
        t = time.monotonic()
        upload_scenarios(port, [f"many-{i:04d}" for i in range(1000)], statuses)
        took = time.monotonic() - t
        # A hang guard, not a benchmark: a set-sized cost per upload made this minutes.
        assert took < 20, f"1000 uploads took {took:.1f} s"
        assert statuses == [201] * 1000, sorted(set(statuses))
        assert len(listed_scenarios(port)) == 1000 + bundled_scenarios()
        status, _, _ = request(port, "DELETE", "/__admin/scenarios/many-0500", headers={})
        assert status == 200
        assert len(listed_scenarios(port)) == 999 + bundled_scenarios()
    finally:
        stop(p)


def test_health_command():
    p, port = start("--admin-token", "tok")
    try:
        r = run("--port", str(port), "--admin-token", "tok", "health")
        assert r.returncode == 0 and r.stderr == "", r.stderr
        r = run("health", "--port", str(port), "--admin-token", "tok")
        assert r.returncode == 0, r.stderr
        r = run("--port", str(port), "health")
        assert r.returncode == 1 and r.stderr == "authmock health: 401: pass --admin-token or AUTHMOCK_ADMIN_TOKEN\n", r.stderr
        r = run("--port", str(port), "--admin-token", "nope", "health")
        assert r.returncode == 1 and r.stderr.startswith("authmock health: 401: the server refused this admin token"), r.stderr
        r = run("health", env={"AUTHMOCK_PORT": str(port), "AUTHMOCK_ADMIN_TOKEN": "tok", "AUTHMOCK_BIND": "0.0.0.0"})
        assert r.returncode == 0, r.stderr
        # A server on 127.0.0.1 is found from --bind :: too (::1 first, then 127.0.0.1).
        r = run("health", "--bind", "::", "--port", str(port), "--admin-token", "tok")
        assert r.returncode == 0, r.stderr
    finally:
        stop(p)
    r = run("--port", str(port), "health")
    assert r.returncode == 1 and r.stderr == f"authmock health: nothing listens on 127.0.0.1:{port}\n", r.stderr


def test_health_reports_an_unhealthy_answer_on_one_line():
    """The answer of a degraded server: its status and body, never the raw reply."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def answer():
        c, _ = srv.accept()
        c.recv(4096)
        c.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                  b"Connection: close\r\n\r\n{\"status\":\"degraded\",\r\n\"reason\":\"disk full\"}")
        c.close()
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            fut = pool.submit(answer)
            r = run("--port", str(port), "health")
            fut.result(timeout=10)
    finally:
        srv.close()
    assert r.returncode == 1, r
    assert r.stderr == 'authmock health: unhealthy: 503 {"status":"degraded",  "reason":"disk full"}\n', r.stderr


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_ipv6_binds_and_health():
    if not has_ipv6_loopback():
        return "skip no IPv6 loopback on this machine"
    p, port = start("--bind", "::1")
    try:
        with socket.create_connection(("::1", port), timeout=5):
            pass
        for bind in ["::1", "::"]:
            r = run("health", "--bind", bind, "--port", str(port))
            assert r.returncode == 0, (bind, r.stderr)
    finally:
        stop(p)
    r = run("health", "--bind", "::", "--port", str(port))
    assert r.returncode == 1 and r.stderr == f"authmock health: nothing listens on [::1]:{port} or 127.0.0.1:{port}\n", r.stderr
    # IPV6_V6ONLY is off, as `--bind ::` needs to serve IPv4 clients too: the
    # IPv4-mapped loopback can be bound and an IPv4 client reaches it (kept to
    # loopback: an any-address bind would expose the test server).
    p, port = start("--bind", "::ffff:127.0.0.1")
    try:
        status, _, data = request(port, "GET", "/__admin/health", headers={})
        assert status == 200, data
        r = run("health", "--bind", "::ffff:127.0.0.1", "--port", str(port))
        assert r.returncode == 0, r.stderr
    finally:
        stop(p)


def test_bind_failures_give_the_system_reason():
    p, port = start()
    try:
        r = run("--port", str(port), "--bind", "127.0.0.1")
        assert r.returncode == 1 and r.stderr == f"authmock: cannot listen on 127.0.0.1 port {port}: Address already in use\n", r.stderr
    finally:
        stop(p)
    # TEST-NET-1 (RFC 5737) is never a local address (unless the kernel lets
    # any address be bound).
    with open("/proc/sys/net/ipv4/ip_nonlocal_bind") as f:
        nonlocal_bind = f.read().strip() != "0"
    if not nonlocal_bind:
        r = run("--port", "0", "--bind", "192.0.2.1")
        assert r.returncode == 1 and r.stderr == "authmock: cannot listen on 192.0.2.1 port 0: Cannot assign requested address\n", r.stderr
    r = run("--port", "0", "--bind", "localhost")
    assert r.returncode == 1 and "--bind localhost: not an IPv4 or IPv6 address" in r.stderr, r.stderr


def test_cors():
    p, port = start("--cors", "http://app.test")
    try:
        status, headers, _ = request(port, "OPTIONS", "/api/v1/authenticate",
                                     headers={"Origin": "http://app.test",
                                              "Access-Control-Request-Method": "POST",
                                              "Access-Control-Request-Headers": "content-type,x-client-id"})
        assert status == 204 and headers["Access-Control-Allow-Origin"] == "http://app.test"
        assert "POST" in headers["Access-Control-Allow-Methods"]
        assert headers["Access-Control-Allow-Headers"] == "content-type,x-client-id"
        status, headers, _ = request(port, "GET", "/api/v1/status")
        assert headers["Access-Control-Allow-Origin"] == "http://app.test"
        assert headers["Access-Control-Allow-Credentials"] == "true" and headers["Vary"] == "Origin"
        # The journal lists the headers as sent, the CORS ones included.
        _, _, raw = request(port, "GET", "/__admin/requests?limit=1", headers={})
        sent = json.loads(raw)["requests"][0]["response"]["headers"]
        assert sent.get("Access-Control-Allow-Origin") == "http://app.test", sent
        assert sent.get("Access-Control-Allow-Credentials") == "true", sent
        assert sent.get("Vary") == "Origin", sent
    finally:
        stop(p)


def test_schemes_are_gzipped_for_clients_that_ask():
    import gzip
    p, port = start()
    try:
        path = "/api/v1/authenticationSchemes"
        status, headers, plain = request(port, "GET", path)
        assert status == 200 and "Content-Encoding" not in headers, headers
        assert headers["Vary"] == "Accept-Encoding", headers
        # What the official client sends (axios), and other forms that take gzip.
        for accept in ["gzip, compress, deflate, br", "GZIP", "br;q=1, x-gzip;q=0.5", "*",
                       "deflate, *;q=0.1"]:
            status, headers, body = request(port, "GET", path,
                                            headers={**CLIENT, "Accept-Encoding": accept})
            assert status == 200 and headers.get("Content-Encoding") == "gzip", (accept, headers)
            assert int(headers["Content-Length"]) == len(body) < len(plain) // 10, len(body)
            assert gzip.decompress(body) == plain, accept
        # Accept-Encoding sent twice is one list.
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.putrequest("GET", path)
        for k, v in CLIENT.items():
            c.putheader(k, v)
        c.putheader("Accept-Encoding", "identity")
        c.putheader("Accept-Encoding", "gzip")
        c.endheaders()
        r = c.getresponse()
        assert r.getheader("Content-Encoding") == "gzip" and gzip.decompress(r.read()) == plain
        c.close()
        # The journal keeps the gzipped answer readable, and says how it went out.
        _, _, raw = request(port, "GET", "/__admin/requests?limit=1", headers={})
        response = json.loads(raw)["requests"][0]["response"]
        assert '"brokerType"' in response["body"], response["body"][:200]
        assert response["headers"].get("Content-Encoding") == "gzip", response["headers"]
        # Forms that do not: plain bytes, as before.
        for accept in ["identity", "gzip;q=0, *", "br", "*;q=0", "gzip; q=0.000", "gzipx"]:
            status, headers, body = request(port, "GET", path,
                                            headers={**CLIENT, "Accept-Encoding": accept})
            assert status == 200 and "Content-Encoding" not in headers, (accept, headers)
            assert body == plain, accept
        # A new scenario set gets its own gzipped schemes.
        doc = {"name": "gz-extra", "api": "mesh", "bind": {"username": "gz@example.com"},
               "initial": "a", "states": {"a": [{"reply": {"outcome": "succeeded"}}]}}
        status, _, _ = request(port, "POST", "/__admin/scenarios", body=doc,
                               headers={"Content-Type": "application/json"})
        assert status in (200, 201), status
        _, _, plain2 = request(port, "GET", path)
        _, headers, body = request(port, "GET", path, headers={**CLIENT, "Accept-Encoding": "gzip"})
        assert headers.get("Content-Encoding") == "gzip" and gzip.decompress(body) == plain2
    finally:
        stop(p)


def self_signed(d):
    """A throwaway certificate and key for 127.0.0.1 in directory d: (cert, key)."""
    cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def test_tls():
    if not shutil.which("openssl"):
        return "skip openssl not installed"
    d = tempfile.mkdtemp()
    try:
        cert, key = self_signed(d)
        p, port = start("--tls-cert", cert, "--tls-key", key)
        try:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
            c.request("GET", "/__admin/health")
            r = c.getresponse()
            assert r.status == 200 and json.loads(r.read())["status"] == "ok"
            c.close()
        finally:
            stop(p)
        r = run("--port", "0", "--tls-cert", cert)
        assert r.returncode == 2 and "--tls-key" in r.stderr
    finally:
        shutil.rmtree(d)


def rss_kb(p):
    with open(f"/proc/{p.pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


def sanitized():
    """The ASan build keeps freed memory in quarantine, so its RSS says nothing."""
    with open(BIN, "rb") as f:
        return b"__asan_init" in f.read()


def post_many(port, n, body, ns=None):
    """n mesh logins over one keep-alive connection; each body is sent as is."""
    h = dict(CLIENT)
    if ns:
        h["X-Authmock-Namespace"] = ns
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for i in range(n):
            c.request("POST", f"/api/v1/authenticate?userId=u{i}", body=body, headers=h)
            r = c.getresponse()
            r.read()
            assert r.status == 200, r.status
    finally:
        c.close()


def journal(port, query="limit=1000"):
    _, _, data = request(port, "GET", f"/__admin/requests?{query}", headers={})
    return json.loads(data)["requests"]


def test_journal_max_bytes_keeps_the_newest_entries_within_the_bound():
    p, port = start("--journal-max-bytes", "20000")
    try:
        body = json.dumps({"type": "robinhood", "username": "ok@example.com",
                           "password": "pass123", "pad": "x" * 3000})
        post_many(port, 40, body)
        got = journal(port)
        # Each entry holds a 3 KB body, so 20000 bytes keep about six of the 40.
        assert 3 <= len(got) <= 6, len(got)
        assert sum(len(json.dumps(e["body"])) for e in got) <= 20000
        ids = [e["id"] for e in got]
        assert ids == list(range(40, 40 - len(got), -1)), ids
        assert got[0]["user"] == "u39" and got[0]["bodyTruncated"] is False
        _, _, data = request(port, "GET", "/__admin/requests/count", headers={})
        assert json.loads(data)["count"] == len(got)
        # Small entries after big ones: more of them fit (each still keeps about
        # 1 KB of headers, answer and explanation).
        post_many(port, 30, json.dumps({"type": "robinhood", "username": "ok@example.com"}))
        assert len(journal(port)) > 10
    finally:
        stop(p)


def test_journal_memory_stays_bounded_and_is_returned():
    """2,000 requests of 60 KB bodies at the default limits: the journal keeps
    their first 4 KiB up to 8 MiB, so the server stays under 64 MB; clearing
    the journal hands its memory back at once, and a second load ends where
    the first did instead of ratcheting up."""
    p, port = start()
    try:
        body = json.dumps({"type": "robinhood", "username": "ok@example.com",
                           "password": "pass123", "pad": "x" * 60000})
        post_many(port, 2000, body, ns="big")
        full = rss_kb(p)
        got = journal(port, "namespace=big&limit=1")
        assert got[0]["bodyTruncated"] is True and got[0]["bodyBytes"] == len(body)
        assert "pass123" not in json.dumps(got)
        _, _, data = request(port, "GET", "/__admin/requests/count", headers={})
        count = json.loads(data)["count"]
        # 8 MiB of entries of about 4.3 KB each: the byte bound, not the 10,000 entries, holds.
        assert 1000 < count < 2000, count
        status, _, _ = request(port, "DELETE", "/__admin/requests", headers={})
        assert status == 200
        deadline = time.monotonic() + 1
        cleared = rss_kb(p)
        while cleared > full - 4096 and time.monotonic() < deadline:
            time.sleep(0.05)
            cleared = rss_kb(p)
        _, _, data = request(port, "GET", "/__admin/requests/count", headers={})
        assert json.loads(data)["count"] == 0
        post_many(port, 2000, body, ns="big")
        again = rss_kb(p)
        if sanitized():
            return "skip RSS is not meaningful under AddressSanitizer"
        assert full < 64 * 1024, f"RSS {full} kB after 2,000 60 KB requests"
        # The journal's 8 MiB ring is dropped whole on DELETE.
        assert cleared <= full - 4096, f"RSS went from {full} to {cleared} kB within 1 s of DELETE"
        # The same load again refills the same ring: no ratchet.
        assert again <= full + 2048, f"RSS {again} kB after a second load, {full} kB after the first"
    finally:
        stop(p)


def test_journal_ring_wraps_and_keeps_every_entry_whole():
    """Entries of varying sizes through a 20,000-byte journal, so the ring wraps
    at many offsets: after each batch the journal lists the newest entries
    newest first, with consecutive ids, each body naming its own request."""
    p, port = start("--journal-max-bytes", "20000")
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        h = dict(CLIENT)
        sent = {}  # marker -> pad length
        first_id = None
        for i in range(300):
            pad = i * 7919 % 3500
            marker = f"m{i}"
            sent[marker] = pad
            body = json.dumps({"type": "robinhood", "username": "ok@example.com",
                               "password": "pass123", "marker": marker, "pad": "x" * pad})
            c.request("POST", f"/api/v1/authenticate?userId=w{i}", body=body, headers=h)
            r = c.getresponse()
            r.read()
            assert r.status == 200, r.status
            if i % 10 != 9:
                continue
            got = journal(port)
            if first_id is None:
                first_id = got[0]["id"] - i
            # Entries of at most 3.7 KB: however the ring wraps, four fit.
            assert len(got) >= 4, len(got)
            assert sum(len(json.dumps(e["body"])) for e in got) <= 20000
            ids = [e["id"] for e in got]
            assert ids == list(range(ids[0], ids[0] - len(got), -1)), ids
            assert ids[0] == first_id + i, (ids[0], first_id, i)
            for k, e in enumerate(got):
                n = i - k
                assert e["user"] == f"w{n}" and e["query"] == f"userId=w{n}", (n, e["user"])
                assert e["body"]["marker"] == f"m{n}", (n, e["body"].get("marker"))
                assert e["body"]["pad"] == "x" * sent[f"m{n}"], n
                assert e["body"]["password"] == "***" and e["bodyTruncated"] is False
        c.close()
    finally:
        stop(p)


def test_environment_variables_configure_the_server():
    p, port = start(env={"AUTHMOCK_ADMIN_TOKEN": "envtok", "AUTHMOCK_SEED": "5"})
    try:
        status, _, _ = request(port, "GET", "/__admin/health", headers={})
        assert status == 401
        status, _, _ = request(port, "GET", "/__admin/health", headers={"Authorization": "Bearer envtok"})
        assert status == 200
    finally:
        stop(p)


TESTS = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_")]


def main(tests=None):
    """Runs (name, function) pairs, by default this file's test_ functions, as TAP."""
    tests = TESTS if tests is None else tests
    print("TAP version 13")
    print(f"1..{len(tests)}")
    failed = 0
    for i, (name, fn) in enumerate(tests, 1):
        try:
            result = fn()
            if isinstance(result, str) and result.startswith("skip"):
                print(f"ok {i} - {name} # SKIP {result[5:]}")
            else:
                print(f"ok {i} - {name}")
        except Exception as e:
            failed += 1
            print(f"not ok {i} - {name}")
            for line in traceback.format_exc().splitlines():
                print(f"  # {line}")
        finally:
            for p in procs:
                stop(p)
            procs.clear()
        sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

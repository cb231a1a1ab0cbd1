#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora and dictionaries, from the test cases,
the bundled scenarios and fixtures and the server's string literals:

    fuzz/seeds.py OUT

OUT/<target>/ gets one file per seed and OUT/<target>.dict a libFuzzer
dictionary. Seeds are made afresh each run rather than committed; the few
hand-written ones live in fuzz/seeds/<target>/ and are copied in too.

- request: each case of tests/cases/*.json, its steps' `send` objects as
  request text (fuzz/fuzz_app.h), with the file's default headers; a value a
  case saved becomes ${member} of the answer it came from, the way the fuzz
  app fills it in. Cases longer than FUZZ_MAX_REQUESTS steps are split.
- scenario: every scenario file, bundled and of the fault tests.
- fixtures: every fixture file.
- json: every JSON file above and every JSON body the cases send.
"""
import glob
import hashlib
import json
import os
import re
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEPARATOR = "\n~~~\n"
MAX_REQUESTS = 16  # FUZZ_MAX_REQUESTS
MAX_BODY = 4096   # what a seed keeps of a padded body


def write(outdir, target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(outdir, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def saved_names(spec):
    """What each saved value is called in the fuzz app: the last member name
    of its path (a path's indexes dropped), and NAME? for a query regex."""
    names = {}
    for case in spec.get("cases", []):
        for step in case.get("steps", []):
            for name, path in (step.get("save") or {}).items():
                if name == "$regex":
                    for rname, (rpath, pattern) in path.items():
                        last = [p for p in rpath.split(".") if not p.isdigit()][-1]
                        names[rname] = last + "?" if pattern.startswith("\\?") else last
                    continue
                parts = [p for p in path.split(".") if not p.isdigit()]
                if parts:
                    names[name] = parts[-1]
    return names


def substitute(text, names, variables):
    def repl(m):
        name = m.group(1)
        if name in variables:
            return str(variables[name])
        if name in names:
            return "${" + names[name] + "}"
        return m.group(0)  # ${totp:...} and the like, which the fuzz app knows

    return re.sub(r"\$\{([^}]+)\}", repl, text)


def request_text(send, defaults):
    headers = {} if send.get("noDefaultHeaders") else dict(defaults)
    headers.update(send.get("headers", {}))
    body = ""
    if "json" in send:
        body = json.dumps(send["json"])
        headers.setdefault("Content-Type", "application/json")
    elif "body" in send:
        body = send["body"]
    elif "bodySize" in send:
        body = "{" + " " * (min(send["bodySize"], MAX_BODY) - 2) + "}"
        headers.setdefault("Content-Type", "application/json")
    elif "chunked" in send:
        body = "x" * min(send["chunked"], MAX_BODY)
        headers.setdefault("Content-Type", "application/json")
    lines = [f"{send.get('method', 'GET')} {send.get('path', '/')}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return "\n".join(lines) + "\n\n" + body, body


def case_seeds(outdir, bodies):
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "cases", "*.json"))):
        with open(path) as f:
            spec = json.load(f)
        names = saved_names(spec)
        variables = (spec.get("variants") or [{}])[0].get("vars", {})
        defaults = spec.get("defaults", {}).get("headers", {})
        for case in spec.get("cases", []):
            requests = []
            for step in case.get("steps", []):
                if "send" not in step:
                    continue
                text, body = request_text(step["send"], defaults)
                text = substitute(text, names, variables)
                if body:
                    bodies.append(substitute(body, names, variables))
                requests += [text] * min(step.get("repeat", 1), MAX_REQUESTS)
            for i in range(0, len(requests), MAX_REQUESTS):
                write(outdir, "request", SEPARATOR.join(requests[i:i + MAX_REQUESTS]))


def file_seeds(outdir, target, patterns, bodies):
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(ROOT, pattern), recursive=True)):
            with open(path, "rb") as f:
                data = f.read()
            write(outdir, target, data)
            bodies.append(data.decode())


def hand_seeds(outdir):
    for path in sorted(glob.glob(os.path.join(ROOT, "fuzz", "seeds", "*", "*"))):
        with open(path, "rb") as f:
            write(outdir, os.path.basename(os.path.dirname(path)), f.read())


def dict_entry(s):
    out = ""
    for b in s.encode():
        out += chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else "\\x%02x" % b
    return f'"{out}"'


def json_words(doc, words):
    if isinstance(doc, dict):
        for k, v in doc.items():
            words.add(k)
            json_words(v, words)
    elif isinstance(doc, list):
        for v in doc:
            json_words(v, words)
    elif isinstance(doc, str) and 1 < len(doc) <= 40:
        words.add(doc)


def dictionaries(outdir, bodies):
    """Literals of the server's source, and the names and short strings of
    every JSON seed: the words requests, scenarios and fixtures are made of."""
    words = set()
    for path in glob.glob(os.path.join(ROOT, "server", "*.c")):
        with open(path) as f:
            for m in re.finditer(r'"([A-Za-z0-9_.:/{}\-+ ]{2,40})"', f.read()):
                words.add(m.group(1))
    for body in bodies:
        try:
            json_words(json.loads(body), words)
        except (ValueError, RecursionError):
            pass  # the cases send bodies that are not JSON, or nested too deep
    request_words = set(words) | {
        "GET ", "POST ", "PUT ", "DELETE ", "OPTIONS ", "\n\n", SEPARATOR, "?userId=",
        "X-Client-Id: ", "X-Client-Secret: ", "Authorization: Bearer ", "Cookie: ",
        "Content-Type: application/json", "X-Authmock-Namespace: ", "X-Authmock-Scenario: ",
        "asc_auth_key=", "${refreshToken}", "${accessToken}", "${token}", "${challengeId}",
        "${code}", "${confirmUrl?}", "${totp:abcdefghij}", "${totp:klmnopqrst}", "%00", "%2F",
    }
    for target, ws in (("request", request_words), ("scenario", words), ("fixtures", words),
                       ("json", words | {"\\u0000", "\\ud800", "1e308", "-0"})):
        with open(os.path.join(outdir, target + ".dict"), "w") as f:
            for w in sorted(ws):
                f.write(dict_entry(w) + "\n")


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: fuzz/seeds.py OUT")
    outdir = argv[1]
    for target in ("request", "scenario", "fixtures", "json"):
        shutil.rmtree(os.path.join(outdir, target), ignore_errors=True)
    bodies = []
    case_seeds(outdir, bodies)
    file_seeds(outdir, "scenario", ["scenarios/**/*.json", "tests/scenarios-faults/*.json"], bodies)
    file_seeds(outdir, "fixtures", ["fixtures/**/*.json"], bodies)
    for body in bodies:
        write(outdir, "json", body)
    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "cases", "*.json"))):
        with open(path, "rb") as f:
            write(outdir, "json", f.read())
    hand_seeds(outdir)
    dictionaries(outdir, bodies)
    for target in ("request", "scenario", "fixtures", "json"):
        d = os.path.join(outdir, target)
        print(f"{target}: {len(os.listdir(d)) if os.path.isdir(d) else 0} seeds")


if __name__ == "__main__":
    main(sys.argv)

#!/usr/bin/env python3
"""Reads meson's testlog.json files and prints, last, "N passed, N failed".

Skipped cases count as neither: they are listed, with their number on a line
of their own, before that last line, which keeps exactly that form.

Test cases are counted from each test's TAP output ("ok N" / "not ok N",
SKIP and TODO directives counted as skipped) where it has some; a test
without TAP lines counts as one case. A test whose process failed without a
failing TAP line (a crash, a timeout, a sanitizer report at exit) adds one
failure, so nothing that went wrong is lost. Failing tests are listed first.
"""
import json
import re
import sys

TAP = re.compile(r"^(not ok|ok)\b[^#]*(#\s*(SKIP|TODO)\b)?", re.I)


def main(args):
    passed = failed = skipped = 0
    paths = []
    while args:
        arg = args.pop(0)
        if arg == "--extra":
            # --extra NAME=RC: one more case, from a step outside meson: rc 0
            # passes, 77 (meson's and automake's code for "skipped") skips.
            name, _, rc = args.pop(0).partition("=")
            if rc == "0":
                passed += 1
            elif rc == "77":
                skipped += 1
                print(f"SKIPPED: {name}")
            else:
                failed += 1
                print(f"FAILED: {name} (exit {rc})")
        else:
            paths.append(arg)
    for path in paths:
        with open(path) as f:
            entries = [json.loads(line) for line in f if line.strip()]
        for e in entries:
            result = e.get("result", "")
            lines = [TAP.match(l) for l in (e.get("stdout") or "").splitlines()]
            lines = [m for m in lines if m]
            t_pass = sum(1 for m in lines if m.group(1).lower() == "ok" and not m.group(3))
            t_skip = sum(1 for m in lines if m.group(3))
            t_fail = sum(1 for m in lines if m.group(1).lower() == "not ok" and not m.group(3))
            if not lines:
                t_pass, t_fail, t_skip = (result in ("OK", "EXPECTEDFAIL"), result in ("FAIL", "TIMEOUT", "ERROR", "UNEXPECTEDPASS"), result == "SKIP")
            elif result not in ("OK", "EXPECTEDFAIL", "SKIP") and t_fail == 0:
                t_fail = 1
            if t_fail:
                print(f"FAILED: {e.get('name')} in {path} ({result}): {t_fail} failing")
            passed += t_pass
            failed += t_fail
            skipped += t_skip
    if skipped:
        print(f"{skipped} skipped")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

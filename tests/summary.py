#!/usr/bin/env python3
"""Reads meson's testlog.json files and prints, last, "N passed, N failed".

Skipped cases count as neither: they are listed, with their number on a line
of their own, before that last line, which keeps exactly that form.

Test cases are counted from each test's TAP output ("ok N" / "not ok N",
SKIP and TODO directives counted as skipped) where it has some; a test
without TAP lines counts as one case. A test whose process failed without a
failing TAP line (a crash, a timeout, a sanitizer report at exit) adds one
failure, so nothing that went wrong is lost. Failures are listed first: each
failing case by name with what it printed (expected and actual), a failed
process with the end of its output.
"""
import json
import re
import sys

TAP = re.compile(r"^(not ok|ok)\b[^#]*(#\s*(SKIP|TODO)\b)?", re.I)
DETAIL_LINES = 25


def failing_cases(lines):
    """(name, detail lines) of each failing TAP case. The detail is what
    follows its "not ok" line, indented (the suites' "  # ..." lines, node's
    YAML block), after the unindented "# ..." lines node prints just before
    the case (a test file's own output)."""
    cases = []
    for i, line in enumerate(lines):
        m = TAP.match(line)
        if not m or m.group(1).lower() != "not ok" or m.group(3):
            continue
        before, k = [], i - 1
        if k >= 0 and lines[k].startswith("# Subtest:"):
            k -= 1
        while k >= 0 and lines[k].startswith("#") and not lines[k].startswith("# Subtest:"):
            before.insert(0, lines[k])
            k -= 1
        after, k = [], i + 1
        while k < len(lines) and lines[k][:1] in (" ", "\t"):
            after.append(lines[k])
            k += 1
        name = re.sub(r"^not ok\s*\d*\s*-?\s*", "", line, flags=re.I)
        cases.append((name, before + after))
    return cases


def show(title, detail, log):
    print(title)
    for line in detail[:DETAIL_LINES]:
        print("    " + line.strip())
    if len(detail) > DETAIL_LINES:
        print(f"    ... {len(detail) - DETAIL_LINES} more lines in {log}")


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
            build = path.split("/meson-logs/")[0]
            log = f"{build}/meson-logs/testlog.txt"
            cases = failing_cases((e.get("stdout") or "").splitlines())
            for name, detail in cases:
                show(f"FAILED: {e.get('name')} ({build}): {name}", detail, log)
            if t_fail > len(cases):
                # The process failed: its last words (a crash, a sanitizer report, a timeout).
                out = (e.get("stderr") or "").strip() or (e.get("stdout") or "").strip()
                show(f"FAILED: {e.get('name')} ({build}): the test program ended {result}, "
                     f"exit status {e.get('returncode')}", out.splitlines()[-DETAIL_LINES:], log)
            passed += t_pass
            failed += t_fail
            skipped += t_skip
    if skipped:
        print(f"{skipped} skipped")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

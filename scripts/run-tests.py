#!/usr/bin/python3
"""Run berth's test layers (unit, sanitizer unit + fuzz, system) and print one summary line."""
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def meson_tests(builddir, suites):
    """Run meson test for the suites; return (passed, failed, skipped)."""
    cmd = ["meson", "test", "-C", builddir, "--print-errorlogs", "--num-processes", "2"]
    for s in suites:
        cmd += ["--suite", s]
    print("+ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT)
    log = os.path.join(ROOT, builddir, "meson-logs", "testlog.json")
    p = f = s = 0
    if not os.path.exists(log):
        print(f"berth: {log} is missing: the tests did not run", flush=True)
        return 0, 1, 0
    with open(log) as fh:
        for line in fh:
            res = json.loads(line).get("result")
            if res in ("OK", "EXPECTEDFAIL"):
                p += 1
            elif res == "SKIP":
                s += 1
            else:
                f += 1
    return p, f, s


def pytest_tests():
    xml = os.path.join(ROOT, "build", "pytest.xml")
    cmd = ["/usr/bin/python3", "-m", "pytest", "-rs", "-q", f"--junitxml={xml}", "tests/system"]
    print("+ " + " ".join(cmd), flush=True)
    env = dict(os.environ, BERTH_BUILD=os.path.join(ROOT, "build"))
    subprocess.run(cmd, cwd=ROOT, env=env)
    if not os.path.exists(xml):
        return 0, 1, 0
    p = f = s = 0
    for case in ET.parse(xml).getroot().iter("testcase"):
        kinds = {c.tag for c in case}
        if kinds & {"failure", "error"}:
            f += 1
        elif "skipped" in kinds:
            s += 1
        else:
            p += 1
    return p, f, s


def main():
    totals = [0, 0, 0]
    layers = [("unit", lambda: meson_tests("build", ["unit"]))]
    if os.path.exists(os.path.join(ROOT, "build-asan", "build.ninja")):
        layers.append(("unit+fuzz (ASan/UBSan)", lambda: meson_tests("build-asan", ["unit", "fuzz"])))
    layers.append(("system", pytest_tests))
    for name, fn in layers:
        p, f, s = fn()
        print(f"berth: {name}: {p} passed, {f} failed, {s} skipped", flush=True)
        totals = [a + b for a, b in zip(totals, (p, f, s))]
    print(f"{totals[0]} passed, {totals[1]} failed, {totals[2]} skipped")
    return 1 if totals[1] else 0


if __name__ == "__main__":
    sys.exit(main())

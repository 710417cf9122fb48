#!/usr/bin/env python3
"""berthd API benchmark: with 1,000 VMs defined (through the API), GET /api/v1/vms latency (p50/p99)
and `berth vm list` wall time, on the unix socket and over HTTPS with a bearer token; /metrics with 20 VMs running (busy tickers, then guests idle in
HLT); starting 20 VMs (test guest, 64 MiB, ticker) at once vs one after another. Waits for a quiet
host (1-minute load below --max-load) and prints the load it measured at.

    ./scripts/build && sudo python3 bench/api.py [--vms 1000] [--starts 20] [--max-load 1.5]
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("BERTH_BUILD", "build"))
BERTHD = os.path.join(BUILD, "bin", "berthd")
BERTH = os.path.join(BUILD, "bin", "berth")
GUEST = os.path.join(BUILD, "guest", "berth-test-guest.elf")
V = "/api/v1"


class Conn(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=120)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(120)
        self.sock.connect(self.path)


def req(sock, method, path, body=None):
    c = Conn(sock)
    try:
        hdrs = {"Content-Type": "application/json"} if body is not None else {}
        c.request(method, path, json.dumps(body) if body is not None else None, hdrs)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def wait_quiet(max_load, tries, pause):
    for i in range(tries):
        load = os.getloadavg()[0]
        if load < max_load:
            return load
        print(f"load {load:.2f} >= {max_load}: waiting {pause} s ({i + 1}/{tries})", flush=True)
        time.sleep(pause)
    return None


def start_all(sock, names, parallel):
    """Seconds until every VM runs (?wait=true); parallel: one thread per VM."""
    errs = []

    def one(n):
        st, body = req(sock, "POST", f"{V}/vms/{n}/start?wait=true")
        op = json.loads(body)
        if st != 200 or op["state"] != "succeeded":
            errs.append((n, st, op))

    t0 = time.monotonic()
    if parallel:
        ts = [threading.Thread(target=one, args=(n,)) for n in names]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    else:
        for n in names:
            one(n)
    dt = time.monotonic() - t0
    assert not errs, errs
    return dt


def turn_off_all(sock, names):
    ts = [threading.Thread(target=req, args=(sock, "POST", f"{V}/vms/{n}/turn-off?wait=true"))
          for n in names]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--starts", type=int, default=20)
    ap.add_argument("--gets", type=int, default=200, help="GET /api/v1/vms requests timed")
    ap.add_argument("--max-load", type=float, default=1.5)
    ap.add_argument("--tries", type=int, default=10, help="load checks before giving up")
    ap.add_argument("--pause", type=int, default=30, help="seconds between load checks")
    a = ap.parse_args()
    for f in (BERTHD, BERTH, GUEST):
        if not os.path.exists(f):
            sys.exit(f"{f} is missing: ./scripts/build first")
    load = wait_quiet(a.max_load, a.tries, a.pause)
    if load is None:
        sys.exit(f"the host stayed busy (load >= {a.max_load}): not measured")
    print(f"1-minute load before the run: {load:.2f} ({os.cpu_count()} CPUs)", flush=True)

    os.makedirs("/work/scratch", exist_ok=True)
    d = tempfile.mkdtemp(prefix="bapi", dir="/work/scratch" if os.path.isdir("/work/scratch") else None)
    sock, run = os.path.join(d, "b.sock"), os.path.join(d, "r")
    log = open(os.path.join(d, "berthd.log"), "wb")
    # a self-signed certificate for the HTTPS listener on a free loopback port
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    os.chmod(key, 0o600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen([BERTHD, "--foreground", "--state-dir", os.path.join(d, "st"), "--socket",
                          sock, "--run-dir", run, "--listen", f"127.0.0.1:{port}", "--tls-cert", cert,
                          "--tls-key", key], stdout=log, stderr=log)
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        t0 = time.monotonic()
        for i in range(a.vms):
            st, body = req(sock, "POST", V + "/vms", {
                "name": f"vm{i:04d}", "memory_mib": 64, "auto_start": "nothing",
                "boot": {"kernel": GUEST, "cmdline": "test=ticker"}})
            assert st == 201, body
        print(f"defined {a.vms} VMs in {time.monotonic() - t0:.2f} s "
              f"({(time.monotonic() - t0) / a.vms * 1000:.2f} ms each)", flush=True)

        lat = []
        for _ in range(a.gets):
            t = time.monotonic()
            st, body = req(sock, "GET", V + "/vms")
            lat.append((time.monotonic() - t) * 1000)
            assert st == 200 and len(json.loads(body)["vms"]) == a.vms
        print(f"GET /api/v1/vms ({a.vms} VMs, {len(body) // 1024} KiB): p50 {pct(lat, 50):.2f} ms, "
              f"p99 {pct(lat, 99):.2f} ms, max {max(lat):.2f} ms (target p99 <= 20 ms)", flush=True)

        walls = []
        for _ in range(10):
            t = time.monotonic()
            out = subprocess.run([BERTH, "--socket", sock, "vm", "list"], capture_output=True,
                                 check=True)
            walls.append((time.monotonic() - t) * 1000)
        assert out.stdout.count(b"\n") >= a.vms
        print(f"berth vm list ({a.vms} VMs): median {statistics.median(walls):.1f} ms, "
              f"max {max(walls):.1f} ms", flush=True)

        # remote: HTTPS with a viewer token, a new TLS connection per request as a CLI makes
        st, body = req(sock, "POST", V + "/tokens", {"name": "bench", "role": "viewer"})
        assert st == 201, body
        token = json.loads(body)["token"]
        ctx = ssl.create_default_context(cafile=cert)
        lat = []
        for _ in range(a.gets):
            t = time.monotonic()
            c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=120)
            c.request("GET", V + "/vms", headers={"Authorization": f"Bearer {token}"})
            r = c.getresponse()
            body = r.read()
            c.close()
            lat.append((time.monotonic() - t) * 1000)
            assert r.status == 200 and len(json.loads(body)["vms"]) == a.vms
        print(f"GET /api/v1/vms over HTTPS with a token ({a.vms} VMs): p50 {pct(lat, 50):.2f} ms, "
              f"p99 {pct(lat, 99):.2f} ms, max {max(lat):.2f} ms", flush=True)
        walls = []
        for _ in range(10):
            t = time.monotonic()
            out = subprocess.run([BERTH, "--host", f"https://127.0.0.1:{port}", "--token", token,
                                  "--cacert", cert, "vm", "list"], capture_output=True, check=True)
            walls.append((time.monotonic() - t) * 1000)
        assert out.stdout.count(b"\n") >= a.vms
        print(f"berth --host https://... vm list ({a.vms} VMs): median {statistics.median(walls):.1f} ms, "
              f"max {max(walls):.1f} ms", flush=True)

        names = [f"vm{i:04d}" for i in range(a.starts)]
        load = os.getloadavg()[0]
        par = start_all(sock, names, True)
        mlat = []
        for _ in range(50):
            t = time.monotonic()
            st, text = req(sock, "GET", "/metrics")
            mlat.append((time.monotonic() - t) * 1000)
            assert st == 200
        errs = [l for l in text.decode().splitlines()
                if l.startswith("berth_daemon_scrape_errors_total ")][0].split()[1]
        print(f"GET /metrics ({a.vms} VMs, {a.starts} running): p50 {pct(mlat, 50):.2f} ms, "
              f"p99 {pct(mlat, 99):.2f} ms; VMMs that missed the 100 ms budget in 50 scrapes: "
              f"{errs}", flush=True)
        turn_off_all(sock, names)
        mlat = []
        for _ in range(50):
            t = time.monotonic()
            st, _ = req(sock, "GET", "/metrics")
            mlat.append((time.monotonic() - t) * 1000)
        print(f"GET /metrics ({a.vms} VMs, none running): p50 {pct(mlat, 50):.2f} ms, "
              f"p99 {pct(mlat, 99):.2f} ms", flush=True)
        # the ticker keeps a host CPU busy per VM; a guest waiting in HLT shows berthd's own cost
        idle = [f"vm{i:04d}" for i in range(a.starts, 2 * a.starts)]
        for n in idle:
            c = Conn(sock)
            c.request("PATCH", f"{V}/vms/{n}", json.dumps(
                {"boot": {"cmdline": "test=powerbutton button_secs=600"}}),
                {"Content-Type": "application/merge-patch+json"})
            assert c.getresponse().status == 200
            c.close()
        start_all(sock, idle, True)
        mlat = []
        for _ in range(50):
            t = time.monotonic()
            st, text = req(sock, "GET", "/metrics")
            mlat.append((time.monotonic() - t) * 1000)
        turn_off_all(sock, idle)
        errs2 = [l for l in text.decode().splitlines()
                 if l.startswith("berth_daemon_scrape_errors_total ")][0].split()[1]
        print(f"GET /metrics ({a.vms} VMs, {a.starts} idle guests running): p50 "
              f"{pct(mlat, 50):.2f} ms, p99 {pct(mlat, 99):.2f} ms; scrape errors in all: {errs2}",
              flush=True)
        seq = start_all(sock, names, False)
        turn_off_all(sock, names)
        print(f"start {a.starts} VMs at once: {par:.2f} s; one after another: {seq:.2f} s "
              f"({seq / a.starts * 1000:.0f} ms each); sequential / parallel = {seq / par:.2f}x "
              f"(load {load:.2f} before)", flush=True)
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()

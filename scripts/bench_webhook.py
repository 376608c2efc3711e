#!/usr/bin/env python3
"""Load test of the real HTTPS webhook (`hostguard serve --standalone`, release build).

Starts the server pinned to CPU 0 with a certificate generated here for
hostguard.hostguard.svc, drives POST /validate with a realistic ~3 KB Deployment review from
oha pinned to CPU 1 (keep-alive, HTTP/1.1 and HTTP/2, trusting only the generated CA and
connecting by the service name), and prints:

- maximum throughput at concurrency 1, 16 and 64 over HTTP/1.1, and over one HTTP/2
  connection with 64 concurrent streams;
- p50/p99/p99.9 latency at fixed rates of 1,000 and 5,000 reviews/s over HTTP/1.1 and HTTP/2,
  computed from oha's per-request records (--db-url) for the requests scheduled after the first
  second (oha falls behind during its first fraction of a second);
- peak RSS of the server (VmHWM) with the default policy, and with 100 policies and 1,000
  AIWorkloads loaded.

Each measurement runs three times; the median is reported. Usage:
    scripts/bench-webhook [--quick] [--out DIR]
Needs: oha (cargo install oha --locked), openssl, taskset, and 2 cores.
"""

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BODY = ROOT / "benches" / "fixtures" / "deployment-review.json"
NAME = "hostguard.hostguard.svc"
PORT = 18443
ADMIN = 18080
RUNS = 3


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def make_pki(d: Path):
    sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"), "-days", "2",
        "-subj", "/CN=hostguard bench CA"], capture_output=True)
    sh(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(d / "tls.key"), "-out", str(d / "tls.csr"), "-subj", f"/CN={NAME}"],
       capture_output=True)
    (d / "ext.cnf").write_text(f"subjectAltName=DNS:{NAME}\n")
    sh(["openssl", "x509", "-req", "-in", str(d / "tls.csr"), "-CA", str(d / "ca.crt"),
        "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-out", str(d / "tls.crt"), "-days", "2",
        "-extfile", str(d / "ext.cnf")], capture_output=True)


def make_big_bundle(path: Path):
    """100 HostingPolicies and 1,000 AIWorkloads, as a --policy file."""
    docs = []
    for i in range(100):
        docs.append(f"""apiVersion: hostguard.dev/v1alpha1
kind: HostingPolicy
metadata: {{name: policy-{i:03d}}}
spec:
  provider: {"openai" if i % 4 == 0 else f"provider-{i % 7}"}
  apiClasses: [{"stateless" if i % 2 == 0 else "stateful"}]
  action: {["Deny", "Warn", "Audit"][i % 3]}
  namespaceSelector: {{matchLabels: {{team: "t{i % 10}"}}}}
  excludedNamespaces: [kube-system, ns-{i}]
  endpoints:
    allowedHosts: ["*.openai.azure.com", "gw-{i}.example.com", "*.services.ai.azure.com"]
""")
    for i in range(1000):
        docs.append(f"""apiVersion: hostguard.dev/v1alpha1
kind: AIWorkload
metadata: {{name: aiw-{i:04d}, namespace: ns-{i % 50}}}
spec:
  selector: {{matchLabels: {{app: app-{i}}}}}
  provider: openai
  apiClass: {["stateless", "stateful", "mixed"][i % 3]}
""")
    path.write_text("---\n".join(docs))


class Server:
    def __init__(self, binary: Path, pki: Path, extra):
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", str(binary), "serve", "--standalone", "--cluster-provider", "azure",
             "--addr", f"127.0.0.1:{PORT}", "--admin-addr", f"127.0.0.1:{ADMIN}",
             "--tls-cert", str(pki / "tls.crt"), "--tls-key", str(pki / "tls.key"),
             "--log-format", "json", *extra],
            env={**os.environ, "HOSTGUARD_LOG": "warn"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise SystemExit("server did not become ready")

    def peak_rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return -1

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def oha(oha_bin, pki: Path, args, db=None):
    cmd = ["taskset", "-c", "1", oha_bin, "--no-tui", "--output-format", "json", "-w",
           "-m", "POST", "-T", "application/json", "-D", str(BODY),
           "--cacert", str(pki / "ca.crt"),
           "--connect-to", f"{NAME}:{PORT}:127.0.0.1:{PORT}", *args]
    if db:
        cmd += ["--db-url", str(db)]
    cmd.append(f"https://{NAME}:{PORT}/validate?timeout=10s")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def check_statuses(result, label):
    dist = result.get("statusCodeDistribution", {})
    bad = {k: v for k, v in dist.items() if k != "200"}
    # oha cuts the requests still open when the duration ends; those are not server errors.
    errors = {k: v for k, v in (result.get("errorDistribution") or {}).items()
              if k != "aborted due to deadline"}
    if bad or errors:
        raise SystemExit(f"{label}: non-200 answers {bad} errors {errors}")


def throughput(oha_bin, pki, label, args, seconds):
    values = []
    for _ in range(RUNS):
        r = oha(oha_bin, pki, [*args, "-z", f"{seconds}s"])
        check_statuses(r, label)
        values.append(r["summary"]["requestsPerSec"])
    return statistics.median(values), values


def percentiles_from_db(db: Path, skip_first_s: float):
    con = sqlite3.connect(db)
    rows = con.execute("select start, end from oha order by start").fetchall()
    con.close()
    if not rows:
        raise SystemExit(f"no rows recorded in {db}")
    t0 = rows[0][0]
    lat = sorted((end - start) for start, end in rows if start - t0 >= skip_first_s)

    def pct(p):
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000

    return {"n": len(lat), "p50": pct(50), "p99": pct(99), "p99.9": pct(99.9)}


def fixed_rate(oha_bin, pki, label, args, rate, seconds, workdir):
    runs = []
    for i in range(RUNS):
        db = workdir / f"{label}-{rate}-{i}.sqlite"
        if db.exists():
            db.unlink()
        r = oha(oha_bin, pki, [*args, "-q", str(rate), "-z", f"{seconds}s", "--latency-correction"], db=db)
        check_statuses(r, label)
        runs.append(percentiles_from_db(db, 1.0))
    return {k: statistics.median(r[k] for r in runs) for k in ("p50", "p99", "p99.9")}, runs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="short runs (smoke test of the script)")
    ap.add_argument("--out", default=str(ROOT / "target" / "bench-webhook"))
    a = ap.parse_args()
    oha_bin = shutil.which("oha") or str(Path.home() / ".cargo" / "bin" / "oha")
    if not Path(oha_bin).exists():
        raise SystemExit("oha not found: cargo install oha --locked")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sh(["cargo", "build", "--release", "--locked", "--quiet"], cwd=ROOT)
    binary = ROOT / "target" / "release" / "hostguard"
    tput_s, rate_s = (3, 3) if a.quick else (10, 15)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_pki(tmp)
        results = {"machine": {
            "cpu": subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"],
                                  capture_output=True, text=True).stdout.strip(),
            "cores": os.cpu_count(),
            "body_bytes": BODY.stat().st_size}}

        server = Server(binary, tmp, [])
        try:
            h1 = ["--http-version", "1.1"]
            for c in (1, 16, 64):
                med, runs = throughput(oha_bin, tmp, f"h1-c{c}", [*h1, "-c", str(c)], tput_s)
                results[f"throughput_http1_c{c}"] = {"median_rps": med, "runs": runs}
            med, runs = throughput(oha_bin, tmp, "h2-1conn-64streams",
                                   ["--http2", "-c", "1", "-p", "64"], tput_s)
            results["throughput_http2_1conn_64streams"] = {"median_rps": med, "runs": runs}
            for rate in (1000, 5000):
                med, runs = fixed_rate(oha_bin, tmp, "h1", [*h1, "-c", "64"], rate, rate_s, tmp)
                results[f"latency_http1_{rate}rps_ms"] = {"median": med, "runs": runs}
                med, runs = fixed_rate(oha_bin, tmp, "h2", ["--http2", "-c", "1", "-p", "64"],
                                       rate, rate_s, tmp)
                results[f"latency_http2_{rate}rps_ms"] = {"median": med, "runs": runs}
            results["peak_rss_kib_default_policy"] = server.peak_rss_kib()
        finally:
            server.stop()

        bundle = tmp / "big.yaml"
        make_big_bundle(bundle)
        server = Server(binary, tmp, ["--policy", str(bundle)])
        try:
            throughput(oha_bin, tmp, "h2-big", ["--http2", "-c", "1", "-p", "64"], tput_s)
            results["peak_rss_kib_100_policies_1000_aiworkloads"] = server.peak_rss_kib()
        finally:
            server.stop()

    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Load test of the real HTTPS webhook (`hostguard serve --standalone`, release build), beside
a no-op peer on the same stack.

Starts hostguard and the no-op webhook (`benches/tools/noop_webhook.rs`: rustls + hyper +
TCP_NODELAY, parses the body, echoes the uid, no policy), both pinned to CPU 0, with a
certificate generated here for hostguard.hostguard.svc, drives POST /validate with a realistic
~3.5 KB Deployment review from oha pinned to CPU 1 (keep-alive, HTTP/1.1 and HTTP/2, trusting
only the generated CA and connecting by the service name). Every measurement alternates between
the two servers (peer, hostguard, peer, hostguard, ...) so that both see the same moment of a
shared machine, and the summary gives hostguard's figure as a ratio of the peer's. It prints:

- maximum throughput at concurrency 1, 16 and 64 over HTTP/1.1, and over one HTTP/2
  connection with 64 concurrent streams;
- p50/p99/p99.9 latency at fixed rates of 1,000 and 5,000 reviews/s over HTTP/1.1 and HTTP/2,
  computed from oha's per-request records (--db-url) for the requests scheduled after the first
  second (oha falls behind during its first fraction of a second);
- peak RSS of the server (VmHWM) with the default policy, and with 1,000 policies and
  10,000 AIWorkloads loaded from a --policy file.

Each measurement runs three times; the median is reported. Usage:
    python3 scripts/bench_webhook.py [--quick] [--out DIR]
Needs: oha (cargo install oha --locked), openssl, taskset, and 2 cores.
"""

import argparse
import json
import os
import socket
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
NOOP_PORT = 18444
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


def make_big_bundle(path: Path, policies=1000, workloads=10000):
    """HostingPolicies and AIWorkloads, as a --policy file. Every policy governs openai (hostguard
    refuses providers it does not know) and allows the Azure OpenAI hosts, so the review stays
    allowed; their namespace selectors do not match the review's namespace."""
    docs = []
    for i in range(policies):
        docs.append(f"""apiVersion: hostguard.dev/v1alpha1
kind: HostingPolicy
metadata: {{name: policy-{i:04d}}}
spec:
  provider: openai
  apiClasses: [{"stateless" if i % 2 == 0 else "stateful"}]
  action: {["Deny", "Warn", "Audit"][i % 3]}
  namespaceSelector: {{matchLabels: {{team: "t{i % 10}"}}}}
  excludedNamespaces: [kube-system, ns-{i}]
  endpoints:
    allowedHosts: ["*.openai.azure.com", "gw-{i}.example.com", "*.services.ai.azure.com"]
""")
    for i in range(workloads):
        docs.append(f"""apiVersion: hostguard.dev/v1alpha1
kind: AIWorkload
metadata: {{name: aiw-{i:05d}, namespace: ns-{i % 50}}}
spec:
  selector: {{matchLabels: {{app: app-{i}}}}}
  provider: openai
  apiClass: {["stateless", "stateful", "mixed"][i % 3]}
""")
    path.write_text("---\n".join(docs))


class Server:
    """One server under test, pinned to CPU 0, ready when it accepts (and for hostguard, when
    /readyz says so)."""

    def __init__(self, cmd, port: int, admin=None):
        self.port = port
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", *cmd],
            env={**os.environ, "HOSTGUARD_LOG": "warn"},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{cmd[0]} exited with {self.proc.returncode}")
            try:
                if admin:
                    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1) as r:
                        if r.status == 200:
                            return
                else:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise SystemExit(f"{cmd[0]} did not become ready")

    @staticmethod
    def hostguard(binary: Path, pki: Path, extra):
        return Server([str(binary), "serve", "--standalone", "--cluster-provider", "azure",
                       "--addr", f"127.0.0.1:{PORT}", "--admin-addr", f"127.0.0.1:{ADMIN}",
                       "--tls-cert", str(pki / "tls.crt"), "--tls-key", str(pki / "tls.key"),
                       "--log-format", "json", *extra], PORT, admin=ADMIN)

    @staticmethod
    def noop(binary: Path, pki: Path):
        return Server([str(binary), "--addr", f"127.0.0.1:{NOOP_PORT}",
                       "--tls-cert", str(pki / "tls.crt"), "--tls-key", str(pki / "tls.key")],
                      NOOP_PORT)

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


def oha(oha_bin, pki: Path, port: int, args, db=None):
    cmd = ["taskset", "-c", "1", oha_bin, "--no-tui", "--output-format", "json", "-w",
           "-m", "POST", "-T", "application/json", "-D", str(BODY),
           "--cacert", str(pki / "ca.crt"),
           "--connect-to", f"{NAME}:{port}:127.0.0.1:{port}", *args]
    if db:
        cmd += ["--db-url", str(db)]
    cmd.append(f"https://{NAME}:{port}/validate?timeout=10s")
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


def throughput(oha_bin, pki, servers, label, args, seconds):
    """Maximum reviews/s of each server, alternating between them, RUNS times each."""
    values = {name: [] for name in servers}
    for _ in range(RUNS):
        for name, server in servers.items():
            r = oha(oha_bin, pki, server.port, [*args, "-z", f"{seconds}s"])
            check_statuses(r, f"{name} {label}")
            values[name].append(r["summary"]["requestsPerSec"])
    return {name: {"median_rps": statistics.median(v), "runs": v} for name, v in values.items()}


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


def fixed_rate(oha_bin, pki, servers, label, args, rate, seconds, workdir):
    """Latency percentiles of each server at a fixed rate, alternating, RUNS times each."""
    runs = {name: [] for name in servers}
    for i in range(RUNS):
        for name, server in servers.items():
            db = workdir / f"{name}-{label}-{rate}-{i}.sqlite"
            if db.exists():
                db.unlink()
            r = oha(oha_bin, pki, server.port,
                    [*args, "-q", str(rate), "-z", f"{seconds}s", "--latency-correction"], db=db)
            check_statuses(r, f"{name} {label}")
            runs[name].append(percentiles_from_db(db, 1.0))
    return {name: {"median": {k: statistics.median(r[k] for r in rs) for k in ("p50", "p99", "p99.9")},
                   "runs": rs}
            for name, rs in runs.items()}


def summary(results):
    """The table of the README: hostguard beside the peer, and the ratio."""
    rows = []
    for key, label in (("throughput_http2_1conn_64streams", "reviews/s, HTTP/2, 1 connection x 64 streams"),
                       ("throughput_http1_c64", "reviews/s, HTTP/1.1, 64 connections")):
        peer, hg = results[key]["noop"]["median_rps"], results[key]["hostguard"]["median_rps"]
        rows.append((label, f"{peer:,.0f}", f"{hg:,.0f}", f"{hg / peer:.2f}x"))
    for proto in ("http1", "http2"):
        for rate in (1000, 5000):
            m = results[f"latency_{proto}_{rate}rps_ms"]
            peer, hg = m["noop"]["median"]["p99"], m["hostguard"]["median"]["p99"]
            rows.append((f"p99 ms at {rate:,}/s, {proto.upper().replace('HTTP', 'HTTP/')}",
                         f"{peer:.2f}", f"{hg:.2f}", f"{hg / peer:.2f}x"))
    lines = ["| | no-op peer | hostguard | hostguard / peer |", "|---|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines.append(f"| peak RSS, default policy | | {results['peak_rss_kib_default_policy'] / 1024:.1f} MiB | |")
    lines.append(f"| peak RSS, 1,000 policies + 10,000 AIWorkloads | | "
                 f"{results['peak_rss_kib_1000_policies_10000_aiworkloads'] / 1024:.1f} MiB | |")
    return "\n".join(lines)


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
    sh(["cargo", "build", "--release", "--locked", "--quiet", "--bin", "hostguard",
        "--example", "noop-webhook"], cwd=ROOT)
    binary = ROOT / "target" / "release" / "hostguard"
    noop = ROOT / "target" / "release" / "examples" / "noop-webhook"
    tput_s, rate_s = (3, 3) if a.quick else (10, 15)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_pki(tmp)
        results = {"machine": {
            "cpu": subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"],
                                  capture_output=True, text=True).stdout.strip(),
            "cores": os.cpu_count(),
            "body_bytes": BODY.stat().st_size}}

        servers = {"noop": Server.noop(noop, tmp), "hostguard": Server.hostguard(binary, tmp, [])}
        try:
            h1 = ["--http-version", "1.1"]
            h2 = ["--http2", "-c", "1", "-p", "64"]
            results["throughput_http2_1conn_64streams"] = throughput(
                oha_bin, tmp, servers, "h2-1conn-64streams", h2, tput_s)
            for c in (1, 16, 64):
                results[f"throughput_http1_c{c}"] = throughput(
                    oha_bin, tmp, servers, f"h1-c{c}", [*h1, "-c", str(c)], tput_s)
            for rate in (1000, 5000):
                results[f"latency_http1_{rate}rps_ms"] = fixed_rate(
                    oha_bin, tmp, servers, "h1", [*h1, "-c", "64"], rate, rate_s, tmp)
                results[f"latency_http2_{rate}rps_ms"] = fixed_rate(
                    oha_bin, tmp, servers, "h2", h2, rate, rate_s, tmp)
            results["peak_rss_kib_default_policy"] = servers["hostguard"].peak_rss_kib()
            results["peak_rss_kib_noop"] = servers["noop"].peak_rss_kib()
        finally:
            for server in servers.values():
                server.stop()

        bundle = tmp / "big.yaml"
        make_big_bundle(bundle)
        server = Server.hostguard(binary, tmp, ["--policy", str(bundle)])
        try:
            throughput(oha_bin, tmp, {"hostguard": server}, "h2-big", h2, tput_s)
            results["peak_rss_kib_1000_policies_10000_aiworkloads"] = server.peak_rss_kib()
        finally:
            server.stop()

    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    table = summary(results)
    (out / "summary.md").write_text(table + "\n")
    print(f"\n{results['machine']['cpu']}, {results['machine']['cores']} cores, "
          f"{time.strftime('%Y-%m-%d')}\n{table}")


if __name__ == "__main__":
    sys.exit(main())

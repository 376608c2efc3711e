#!/usr/bin/env python3
"""Memory and time of `hostguard serve` in a large cluster (release build, not standalone),
against the mock API server `benches/tools/mock_cluster.rs`.

The mock generates a cluster from index numbers, by default the one of issue 17: 5,000
Namespaces, 5,000 AKS Nodes (with the status a kubelet writes), 1,000 HostingPolicies (each
governing a tenth of the namespaces), 10,000 AIWorkloads, 10,000 ConfigMaps, 50,000 Deployments
and 150,000 Pods (a web chart's OpenAI client whose endpoint is in a ConfigMap). hostguard
(pinned to CPU 0; the mock to CPU 1) lists and watches it, wins the Lease and audits every
Deployment and Pod once. The script reports:

- time from start to /readyz 200 (every watch listed, the first snapshot built);
- RSS once ready (VmRSS) and the peak until then (VmHWM), and how much of it is the heap and
  stacks (RssAnon) and how much the binary's pages (RssFile);
- the audit: its duration (hostguard_audit_duration_seconds), the objects it judged, the CPU
  time hostguard used from ready to the audit's end, and so CPU per object;
- the peak RSS through the audit (VmHWM at its end) and the RSS after it.

Usage: python3 scripts/bench_cluster.py [--namespaces N] [--nodes N] [--policies N]
       [--aiworkloads N] [--deployments N] [--pods N] [--aiworkload-status] [--out DIR]

--aiworkload-status gives each AIWorkload the status an earlier audit wrote, as in a cluster
where hostguard has run before (hostguard keeps each one to compare its next write against).
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MOCK_PORT = 18600
PORT = 18643
ADMIN = 18680
TICKS = os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"no {field} for pid {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def metrics() -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


def ready() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/readyz", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def wait_port(port: int, proc, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[2]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def mib(kib: int) -> float:
    return round(kib / 1024, 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sizes = {"namespaces": 5000, "nodes": 5000, "policies": 1000, "aiworkloads": 10000,
             "deployments": 50000, "pods": 150000}
    for k, v in sizes.items():
        ap.add_argument(f"--{k}", type=int, default=v)
    ap.add_argument("--aiworkload-status", action="store_true",
                    help="AIWorkloads carry the status an earlier audit wrote")
    ap.add_argument("--out", default="target/bench-cluster")
    ap.add_argument("--binary", help="this hostguard binary instead of a release build")
    ap.add_argument("--wrap", default="", help="a command to run hostguard under (a profiler)")
    ap.add_argument("--serve-log", help="keep hostguard's stderr in this file")
    ap.add_argument("--timeout", type=int, default=900, help="seconds to wait for the audit")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cargo", "build", "--release", "--locked", "--quiet", "--bin", "hostguard",
                    "--example", "mock-cluster"], cwd=ROOT, check=True)
    binary = Path(a.binary) if a.binary else ROOT / "target" / "release" / "hostguard"
    mock_bin = ROOT / "target" / "release" / "examples" / "mock-cluster"
    size_args = [x for k in sizes for x in (f"--{k}", str(getattr(a, k)))]
    size_args += ["--aiworkload-status", "1" if a.aiworkload_status else "0"]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(tmp / "tls.key"),
                        "-out", str(tmp / "tls.crt"), "-days", "2", "-subj", "/CN=localhost"],
                       check=True, capture_output=True)
        kubeconfig = tmp / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: mock\n  cluster:\n"
            f"    server: http://127.0.0.1:{MOCK_PORT}\nusers:\n- name: bench\n  user:\n"
            "    token: bench\ncontexts:\n- name: mock\n  context:\n    cluster: mock\n"
            "    user: bench\n    namespace: default\ncurrent-context: mock\n")
        mock_log = open(tmp / "mock.log", "w+")
        mock = subprocess.Popen(["taskset", "-c", "1", str(mock_bin), "--addr",
                                 f"127.0.0.1:{MOCK_PORT}", *size_args],
                                stdout=subprocess.DEVNULL, stderr=mock_log)
        hg = None
        try:
            wait_port(MOCK_PORT, mock)
            env = {k: v for k, v in os.environ.items()
                   if k not in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT",
                                "HOSTGUARD_STANDALONE")}
            env.update({"KUBECONFIG": str(kubeconfig), "POD_NAME": "hostguard-bench-0",
                        "HOSTGUARD_LEASE_NAMESPACE": "hostguard", "HOSTGUARD_LOG": "warn"})
            started = time.time()
            hg = subprocess.Popen(
                ["taskset", "-c", "0", *a.wrap.split(), str(binary), "serve", "--addr", f"127.0.0.1:{PORT}",
                 "--admin-addr", f"127.0.0.1:{ADMIN}", "--tls-cert", str(tmp / "tls.crt"),
                 "--tls-key", str(tmp / "tls.key"), "--log-format", "json"],
                env=env, stdout=subprocess.DEVNULL, start_new_session=True,
                stderr=open(a.serve_log or tmp / "serve.log", "w"))
            while not ready():
                if hg.poll() is not None:
                    raise SystemExit("hostguard exited:\n" + Path(a.serve_log or tmp / "serve.log").read_text())
                if time.time() - started > a.timeout:
                    raise SystemExit("hostguard did not become ready")
                time.sleep(0.02)
            r = {"sizes": {**{k: getattr(a, k) for k in sizes}, "aiworkload_status": a.aiworkload_status},
                 "ready_seconds": round(time.time() - started, 2),
                 "rss_ready_mib": mib(status_kib(hg.pid, "VmRSS")),
                 "rss_ready_anon_mib": mib(status_kib(hg.pid, "RssAnon")),
                 "rss_ready_file_mib": mib(status_kib(hg.pid, "RssFile")),
                 "peak_rss_ready_mib": mib(status_kib(hg.pid, "VmHWM"))}
            cpu_ready = cpu_seconds(hg.pid)
            while True:
                m = metrics()
                runs = sum(v for k, v in m.items() if k.startswith("hostguard_audit_runs_total"))
                if runs >= 1:
                    break
                if hg.poll() is not None:
                    raise SystemExit("hostguard exited:\n" + Path(a.serve_log or tmp / "serve.log").read_text())
                if time.time() - started > a.timeout:
                    raise SystemExit("no audit ended within the timeout")
                time.sleep(0.1)
            cpu = cpu_seconds(hg.pid) - cpu_ready
            objects = m.get("hostguard_audit_objects", 0)
            r.update({
                "audit_results": {k: v for k, v in m.items()
                                  if k.startswith("hostguard_audit_runs_total")},
                "audit_seconds": round(m.get("hostguard_audit_duration_seconds_sum", 0), 2),
                "audit_objects": objects,
                "audit_cpu_seconds": round(cpu, 2),
                "audit_cpu_ms_per_object": round(cpu * 1000 / objects, 3) if objects else None,
                "peak_rss_through_audit_mib": mib(status_kib(hg.pid, "VmHWM")),
                "rss_after_audit_mib": mib(status_kib(hg.pid, "VmRSS")),
                "rss_after_audit_anon_mib": mib(status_kib(hg.pid, "RssAnon")),
            })
        finally:
            # hostguard leads a session of its own, so that a --wrap command's children end too.
            if hg is not None and hg.poll() is None:
                os.killpg(hg.pid, 15)
            for p in (hg, mock):
                if p is not None:
                    p.terminate()
                    try:
                        p.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        p.kill()
        mock_log.seek(0)
        r["mock_requests"] = mock_log.read().strip().splitlines()
    r["machine"] = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"],
                                  capture_output=True, text=True).stdout.strip()
    (out / "results.json").write_text(json.dumps(r, indent=2))
    print(json.dumps(r, indent=2))


if __name__ == "__main__":
    sys.exit(main())

"""The real-client oracle of issue 9: does hostguard's verdict cover where every client sends?

For each generated environment (envgen.py) it writes a Deployment carrying that environment,
asks hostguard for its verdict on all of them in one `hostguard check` run, builds every real
client from the same environment (python/probe.py, node/probe.cjs) and records where each would
send its request, then judges:

- FAIL (a miss): some client sends stateless traffic to a host the default policy does not
  allow, and hostguard's verdict is not `deny`;
- over-denied (reported, not failing for now): at least one client sends, every client that
  sends reaches only allowed hosts, and hostguard denies;
- agreed (deny where a client leaves Azure; allow or warn where all stay on Azure; warn where
  the only non-allowed destinations are in-cluster hosts, as the default policy's
  `inCluster: Warn` says), and no-request (no client sends at all; hostguard's verdict is
  listed).

"Allowed" is judged here from the destination the client's own HTTP layer reports, independently
of hostguard's code: https, the default port, and a host under one of the default policy's
allowed hosts, label by label. The report is written as text and JSON; the exit code is 1 when
anything FAILs, 2 when the tool itself could not run (never a silent pass).

Run it through `tests/clients/run`, which installs the pinned clients first.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import envgen  # noqa: E402

HERE = Path(__file__).resolve().parent

# The default policy's allowed hosts, each meaning "*.SUFFIX" (design.md, README "What the
# default policy enforces"; src/policy/default.rs AZURE_OPENAI_HOSTS holds the same list).
ALLOWED_SUFFIXES = (
    "openai.azure.com",
    "cognitiveservices.azure.com",
    "services.ai.azure.com",
    "openai.azure.us",
    "cognitiveservices.azure.us",
)

# The token the workload-identity cases read from envgen.TOKEN_FILE (a JWT's shape, no secret).
WORKLOAD_TOKEN = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJvcmFjbGUifQ."


class ToolError(Exception):
    """The oracle itself could not run; exit 2 with this message."""


def judge_destination(request: dict) -> tuple[bool, str]:
    """Whether one recorded request goes to an allowed destination, and why not."""
    scheme = (request.get("scheme") or "").lower()
    if scheme != "https":
        return False, f"scheme {scheme or 'none'}"
    port = request.get("port")
    if port not in (None, 443):
        return False, f"port {port}"
    host = (request.get("host") or "").lower()
    if host.endswith("."):
        host = host[:-1]  # the same DNS name, fully qualified
    labels = host.split(".")
    if not host or any(label == "" for label in labels):
        return False, "no host"
    for suffix in ALLOWED_SUFFIXES:
        wanted = suffix.split(".")
        if len(labels) > len(wanted) and labels[-len(wanted):] == wanted:
            return True, "allowed"
    return False, "host not allowed"


def is_in_cluster_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    return "." not in host or host.endswith((".svc", ".svc.cluster.local", ".cluster.local"))


def deployment(case: dict) -> dict:
    name = case["id"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "oracle", "annotations": {"oracle/label": case["label"]}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "registry.example.com/ai/app:1.0",
                            "env": [{"name": k, "value": v} for k, v in case["env"].items()],
                        }
                    ]
                },
            },
        },
    }


def run_hostguard(binary: str, cases: list[dict], work: Path) -> dict[str, dict]:
    manifests = work / "manifests"
    manifests.mkdir()
    for case in cases:
        (manifests / f"{case['id']}.json").write_text(json.dumps(deployment(case), indent=1))
    command = [binary, "check", "-o", "json", "-f", str(manifests), "--cluster-provider", "azure"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as error:
        raise ToolError(f"hostguard binary not found: {binary} (set HOSTGUARD_BIN or run cargo build)") from error
    if done.returncode not in (0, 1):
        raise ToolError(f"`{' '.join(command)}` exited {done.returncode}: {done.stderr.strip()[:2000]}")
    try:
        report = json.loads(done.stdout)
    except ValueError as error:
        raise ToolError(f"hostguard check printed no JSON: {error}: {done.stdout[:500]!r}") from error
    (work / "hostguard.json").write_text(done.stdout)
    verdicts = {result["name"]: result for result in report["results"]}
    missing = [case["id"] for case in cases if case["id"] not in verdicts]
    if missing:
        raise ToolError(f"hostguard reported no verdict for {len(missing)} cases, e.g. {missing[:5]}")
    return verdicts


def sandboxed(command: list[str]) -> list[str]:
    """The probes run in a network namespace of their own (no interface but a loopback that is
    down) and a mount namespace whose /run carries the workload-identity token file."""
    token_dir = os.path.dirname(envgen.TOKEN_FILE).replace("/var/run/", "/run/", 1)
    setup = (
        "mount -t tmpfs oracle /run && "
        f"mkdir -p {token_dir} && printf %s '{WORKLOAD_TOKEN}' > {token_dir}/token && "
        'exec "$@"'
    )
    return ["unshare", "--net", "--mount", "--propagation", "private", "--", "sh", "-c", setup, "sh", *command]


def harness_env(home: Path, extra: dict) -> dict:
    env = {
        "PATH": f"{os.path.dirname(shutil.which('node') or '/usr/bin/node')}:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": str(home),
        # Harness settings, not client configuration: LiteLLM's bundled price list instead of a
        # download at import; Hugging Face libraries offline.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "HF_HUB_OFFLINE": "1",
    }
    env.update(extra)
    return env


def run_probes(kind: str, command: list[str], cases: list[dict], work: Path, env: dict, fresh: bool = False) -> dict[str, dict]:
    tag = f"{kind}{'-fresh' if fresh else ''}"
    cases_path = work / f"{tag}.cases.jsonl"
    out_path = work / f"{tag}.results.jsonl"
    cases_path.write_text("".join(json.dumps({"id": c["id"], "env": c["env"]}) + "\n" for c in cases))
    log_path = work / f"{tag}.log"
    cwd = work / f"{tag}.cwd"
    cwd.mkdir()
    full = sandboxed([*command, str(cases_path), "--out", str(out_path), *(["--fresh"] if fresh else [])])
    with open(log_path, "w") as log:
        done = subprocess.run(full, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, timeout=3600)
    if done.returncode != 0:
        tail = log_path.read_text()[-3000:]
        raise ToolError(f"the {kind} probes exited {done.returncode} (log {log_path}):\n{tail}")
    results = {}
    for line in out_path.read_text().splitlines():
        result = json.loads(line)
        results[result["id"]] = result["probes"]
    if set(results) != {c["id"] for c in cases}:
        raise ToolError(f"the {kind} probes returned {len(results)} results for {len(cases)} cases")
    return results


def observable(probe: dict) -> tuple:
    """What a probe's answer is, for comparing two runs of the same case."""
    error = probe["error"]
    return (
        tuple((r["method"], r["url"], r["model_traffic"]) for r in probe["requests"]),
        None if error is None else error.split(":", 1)[0],
    )


def self_check_sample(cases: list[dict], size: int) -> list[dict]:
    """Every adversarial case that sets an import-time variable of openai-python, then an even
    spread over the rest: deterministic."""
    if size <= 0:
        return []
    import_time = {"OPENAI_API_TYPE", "OPENAI_API_VERSION", "AZURE_OPENAI_ENDPOINT"}
    first = [c for c in cases if c["source"] == "adversarial" and import_time & set(c["env"])][: size // 2]
    rest = [c for c in cases if c not in first]
    step = max(1, len(rest) // max(1, size - len(first)))
    return first + rest[::step][: size - len(first)]


def compare_fresh(kind: str, batch: dict, fresh: dict) -> list[str]:
    differences = []
    for case_id, probes in fresh.items():
        for client, probe in probes.items():
            if observable(probe) != observable(batch[case_id][client]):
                differences.append(
                    f"{kind} {case_id} {client}: batch {observable(batch[case_id][client])} != fresh {observable(probe)}"
                )
    return differences


def categorise(case: dict, verdict: dict, probes: dict) -> dict:
    clients = {}
    for client, probe in sorted(probes.items()):
        model = [r for r in probe["requests"] if r["model_traffic"] or r["via"] in ("socket", "dns", "http", "https")]
        auxiliary = [r for r in probe["requests"] if r not in model]
        # A URL without a host (openai-python with a blank or padded OPENAI_BASE_URL) reaches no
        # server: the HTTP layer fails before connecting. It is listed, not judged.
        unsendable = [r for r in model if not r.get("host")]
        model = [r for r in model if r.get("host")]
        judged = [(r, *judge_destination(r)) for r in model]
        clients[client] = {
            "sends": bool(model),
            "destinations": [{"url": r["url"], "allowed": ok, "why": why, "via": r["via"]} for r, ok, why in judged],
            "auxiliary": [r["url"] for r in auxiliary],
            "unsendable": [r["url"] for r in unsendable],
            "error": probe["error"],
        }
    senders = {c: v for c, v in clients.items() if v["sends"]}
    leaving = {c: v for c, v in senders.items() if not all(d["allowed"] for d in v["destinations"])}
    decided = verdict["verdict"]
    in_cluster_only = bool(leaving) and all(
        is_in_cluster_host(d["url"].split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0])
        for v in leaving.values()
        for d in v["destinations"]
        if not d["allowed"]
    )
    # An in-cluster destination is a gateway or model server whose onward route nobody outside
    # it can see: the default policy's `inCluster: Warn` says to warn, so a warn agrees.
    if leaving and in_cluster_only and decided == "warn":
        category = "agree-in-cluster-warn"
    elif leaving and decided != "deny":
        category = "FAIL"
    elif leaving:
        category = "agree-deny"
    elif senders and decided == "deny":
        category = "over-denied"
    elif senders:
        category = "agree-allow"
    else:
        category = "no-request"
    return {
        "id": case["id"],
        "source": case["source"],
        "label": case["label"],
        "env": case["env"],
        "category": category,
        "leaves_to_in_cluster_only": in_cluster_only,
        "hostguard": {
            "verdict": decided,
            "findings": [
                {k: f.get(k) for k in ("endpoint", "hosting", "path", "apiClass")} for f in verdict.get("findings", [])
            ],
            "violations": [v.get("message") for v in verdict.get("violations", [])],
            "warnings": verdict.get("warnings", []),
        },
        "clients": clients,
        "leaving_clients": sorted(leaving),
    }


def host_of(url: str) -> str:
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]


def summarise(judged: list[dict], timings: dict, self_check: dict) -> dict:
    by_category = collections.Counter(j["category"] for j in judged)
    per_client: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for j in judged:
        for client, v in j["clients"].items():
            c = per_client[client]
            c["sends"] += v["sends"]
            c["no request"] += not v["sends"]
            leaves = v["sends"] and not all(d["allowed"] for d in v["destinations"])
            c["leaves allowed hosts"] += leaves
            c["in FAIL"] += leaves and j["category"] == "FAIL"
    fail_groups: dict[tuple, list[str]] = collections.defaultdict(list)
    for j in judged:
        if j["category"] == "FAIL":
            key = (
                j["hostguard"]["verdict"],
                tuple(
                    sorted(
                        {f"{c} -> {host_of(d['url'])}" for c in j["leaving_clients"] for d in j["clients"][c]["destinations"] if not d["allowed"]}
                    )
                ),
            )
            fail_groups[key].append(j["id"])
    over_groups: dict[tuple, list[str]] = collections.defaultdict(list)
    for j in judged:
        if j["category"] == "over-denied":
            key = tuple(sorted({f"{f['path'].rsplit('[', 1)[-1].rstrip(']')}={f['hosting']}" for f in j["hostguard"]["findings"] if f.get("hosting") != "azure"}))
            over_groups[key].append(j["id"])
    return {
        "cases": len(judged),
        "by_category": dict(sorted(by_category.items())),
        "fail_in_cluster_only": sum(j["category"] == "FAIL" and j["leaves_to_in_cluster_only"] for j in judged),
        "per_client": {client: dict(c) for client, c in sorted(per_client.items())},
        "fail_groups": [
            {"verdict": k[0], "destinations": list(k[1]), "count": len(ids), "cases": ids}
            for k, ids in sorted(fail_groups.items(), key=lambda kv: -len(kv[1]))
        ],
        "over_denied_groups": [
            {"non_azure_findings": list(k), "count": len(ids), "cases": ids}
            for k, ids in sorted(over_groups.items(), key=lambda kv: -len(kv[1]))
        ],
        "timings_seconds": timings,
        "self_check": self_check,
    }


def text_report(summary: dict, judged: list[dict]) -> str:
    by_id = {j["id"]: j for j in judged}
    lines = [
        f"hostguard real-client oracle: {summary['cases']} environments",
        "",
        "By category:",
        *[f"  {k:<12} {v}" for k, v in summary["by_category"].items()],
        f"  (of FAIL: {summary['fail_in_cluster_only']} leave only to in-cluster hosts)",
        "",
        "FAIL = a client sends stateless traffic to a non-allowed host and hostguard does not deny.",
        "over-denied (not failing for now) = every client that sends stays on allowed hosts, hostguard denies.",
        "",
        "Per client (environments):",
    ]
    width = max(len(c) for c in summary["per_client"])
    lines.append(f"  {'client':<{width}}  sends  no-request  leaves-allowed  in-FAIL")
    for client, c in summary["per_client"].items():
        lines.append(
            f"  {client:<{width}}  {c.get('sends', 0):>5}  {c.get('no request', 0):>10}  {c.get('leaves allowed hosts', 0):>14}  {c.get('in FAIL', 0):>7}"
        )
    lines += ["", "FAIL, grouped by hostguard's verdict and the non-allowed destinations:"]
    for group in summary["fail_groups"]:
        lines.append(f"  {group['count']:>4} x verdict {group['verdict']}: {'; '.join(group['destinations'])}")
        for case_id in group["cases"][:3]:
            j = by_id[case_id]
            lines.append(f"         e.g. {case_id} ({j['label']}): {json.dumps(j['env'])}")
    lines += ["", "Over-denied, grouped by hostguard's non-Azure findings (variable=hosting):"]
    for group in summary["over_denied_groups"]:
        lines.append(f"  {group['count']:>4} x {', '.join(group['non_azure_findings']) or '(no non-azure finding)'}")
        for case_id in group["cases"][:3]:
            j = by_id[case_id]
            lines.append(f"         e.g. {case_id} ({j['label']}): {json.dumps(j['env'])}")
    lines += ["", "Failing environments:"]
    for j in judged:
        if j["category"] == "FAIL":
            lines.append(f"  {j['id']} [{j['source']}: {j['label']}] verdict {j['hostguard']['verdict']}: {json.dumps(j['env'])}")
            for client in j["leaving_clients"]:
                bad = [d["url"] for d in j["clients"][client]["destinations"] if not d["allowed"]]
                lines.append(f"      {client} -> {', '.join(bad)}")
    check = summary["self_check"]
    lines += [
        "",
        f"Self-check (fresh processes vs batch): python {check['python_cases']} cases, node {check['node_cases']} cases: "
        + ("identical" if not check["differences"] else f"{len(check['differences'])} DIFFERENCES"),
        "Timings (s): " + ", ".join(f"{k} {v}" for k, v in summary["timings_seconds"].items()),
    ]
    return "\n".join(lines) + "\n"


def load_results(path: Path) -> dict[str, dict]:
    return {r["id"]: r["probes"] for r in map(json.loads, path.read_text().splitlines())}


def finish(out: Path, cases: list[dict], verdicts: dict, results: dict, timings: dict, self_check: dict) -> int:
    judged = [categorise(c, verdicts[c["id"]], results[c["id"]]) for c in cases]
    summary = summarise(judged, timings, self_check)
    (out / "report.json").write_text(json.dumps({"summary": summary, "environments": judged}, indent=1))
    text = text_report(summary, judged)
    (out / "report.txt").write_text(text)
    print(text, end="")
    print(f"(full report: {out / 'report.txt'} and {out / 'report.json'})")
    if self_check["differences"]:
        raise ToolError(
            "fresh processes disagree with the batch run, so its answers cannot be trusted:\n"
            + "\n".join(self_check["differences"][:20])
        )
    # The closing line CI reads: each environment is one check.
    fails = summary["by_category"].get("FAIL", 0)
    print(f"clients-oracle: {len(judged) - fails} passed, {fails} failed")
    return 1 if fails else 0


def rejudge(out: Path, hostguard: str) -> int:
    previous = json.loads((out / "report.json").read_text())["summary"]
    cases = [json.loads(line) for line in (out / "environments.jsonl").read_text().splitlines()]
    work = out / "work"
    shutil.rmtree(work / "manifests")
    verdicts = run_hostguard(hostguard, cases, work)
    python_results = load_results(work / "python.results.jsonl")
    node_results = load_results(work / "node.results.jsonl")
    results = {c["id"]: {**python_results[c["id"]], **node_results[c["id"]]} for c in cases}
    return finish(out, cases, verdicts, results, previous["timings_seconds"], previous["self_check"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hostguard", default=os.environ.get("HOSTGUARD_BIN", "target/debug/hostguard"))
    parser.add_argument("--python", required=True, help="the interpreter of the pinned client venv")
    parser.add_argument("--node-modules", required=True, help="the node_modules of the pinned Node clients")
    parser.add_argument("--out", required=True, help="directory for report.txt, report.json and the work files")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, default=0, help="only the first N environments (a quick look)")
    parser.add_argument("--fresh-python", type=int, default=6, help="cases re-run in fresh Python processes")
    parser.add_argument("--fresh-node", type=int, default=40, help="cases re-run in fresh Node processes")
    parser.add_argument(
        "--rejudge", action="store_true", help="judge the probe results of the last run in --out again (after a change here)"
    )
    args = parser.parse_args()
    if args.rejudge:
        return rejudge(Path(args.out).resolve(), args.hostguard)

    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    work = out / "work"
    work.mkdir()
    timings = {}
    start = time.monotonic()
    cases = envgen.generate()
    if args.limit:
        cases = cases[: args.limit]
    (out / "environments.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))

    t = time.monotonic()
    verdicts = run_hostguard(args.hostguard, cases, work)
    timings["hostguard"] = round(time.monotonic() - t, 1)

    home = Path(tempfile.mkdtemp(prefix="oracle-home-", dir=work))
    purelib = subprocess.run(
        [args.python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    python_env = harness_env(home, {"TIKTOKEN_CACHE_DIR": f"{purelib}/litellm/litellm_core_utils/tokenizers"})
    node_env = harness_env(home, {"ORACLE_NODE_MODULES": args.node_modules})
    python_cmd = [args.python, str(HERE / "python" / "probe.py"), "--jobs", str(args.jobs)]
    node_cmd = ["node", str(HERE / "node" / "probe.cjs")]

    t = time.monotonic()
    python_results = run_probes("python", python_cmd, cases, work, python_env)
    timings["python probes"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    node_results = run_probes("node", node_cmd, cases, work, node_env)
    timings["node probes"] = round(time.monotonic() - t, 1)

    t = time.monotonic()
    python_sample = self_check_sample(cases, args.fresh_python)
    node_sample = self_check_sample(cases, args.fresh_node)
    differences = []
    if python_sample:
        fresh = run_probes("python", python_cmd, python_sample, work, python_env, fresh=True)
        differences += compare_fresh("python", python_results, fresh)
    if node_sample:
        fresh = run_probes("node", node_cmd, node_sample, work, node_env, fresh=True)
        differences += compare_fresh("node", node_results, fresh)
    timings["self-check"] = round(time.monotonic() - t, 1)
    self_check = {"python_cases": len(python_sample), "node_cases": len(node_sample), "differences": differences}
    timings["total"] = round(time.monotonic() - start, 1)
    results = {c["id"]: {**python_results[c["id"]], **node_results[c["id"]]} for c in cases}
    return finish(out, cases, verdicts, results, timings, self_check)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ToolError as error:
        print(f"clients-oracle: error: {error}", file=sys.stderr)
        sys.exit(2)

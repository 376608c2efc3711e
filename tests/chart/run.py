"""Lints, renders and checks charts/hostguard; run by scripts/chart-test.

1. The chart's sources: CRDs byte-identical to the generated ones in crds/, no certificate or
   random material generated in templates, every value set with a default and described by a
   helm-docs `# --` comment in values.yaml.
2. `helm lint --strict`, with the defaults and with every variant's values.
3. `helm template` of every variant (defaults, tests/chart/values/*.yaml, examples/helm/*.yaml,
   the values of the Argo CD Application and the Flux HelmRelease of examples/gitops/, another
   release name and namespace): every document validated against the Kubernetes 1.33
   JSON schemas (strict: unknown fields rejected); HostingPolicies against the chart's own CRD
   schema; cert-manager and Prometheus Operator kinds, which have no schema here, listed as
   skipped. Then the assertions of assert_render.py; `hostguard check` on the rendering (the
   chart's own Deployment is not an AI workload and its HostingPolicy is valid, so nothing is
   denied); and the Deployment's arguments and environment given to the real `hostguard`, which
   must accept them (it then stops for want of a cluster, not with a usage error).
4. NOTES.txt, rendered by a client-side dry-run install: how to check that the webhook is live,
   how to switch to Audit first.
5. The GitOps and CI examples (gitops.py): Argo CD, its Lua health checks, Flux, GitHub Actions.
6. Values the schema must reject: a typo'd key, wrong types, out-of-range or unknown enum
   values, and combinations the templates refuse.

The renderings are kept under target/chart-test/ for inspection. The last line is the tally.
"""

import argparse
import filecmp
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

import assert_render
import gitops

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHART = ROOT / "charts/hostguard"
OUT = ROOT / "target/chart-test"
KUBE_VERSION = "1.33.0"
RELEASE = "hostguard"
NAMESPACE = "hostguard-system"

# API groups whose kinds come from CRDs that kubernetes-validate has no schema for.
UNVALIDATED_GROUPS = {
    "cert-manager.io": "cert-manager CRD",
    "monitoring.coreos.com": "Prometheus Operator CRD",
}
OWN_GROUP = "hostguard.dev"
# Template functions that would generate key material or differ between renderings.
FORBIDDEN_TEMPLATE_FUNCTIONS = (
    "genCA", "genSelfSignedCert", "genSignedCert", "genPrivateKey", "randAlpha", "randAlphaNum",
    "randAscii", "randNumeric", "randBytes", "uuidv4", "lookup", "now",
)


@dataclass
class Variant:
    name: str
    values_files: list = field(default_factory=list)
    release: str = RELEASE
    namespace: str = NAMESPACE


def variants():
    out = [Variant("defaults"), Variant("other-release", release="edge", namespace="platform")]
    out += [Variant(p.stem, [p]) for p in sorted((HERE / "values").glob("*.yaml"))]
    out += [Variant(f"examples-{p.stem}", [p]) for p in sorted((ROOT / "examples/helm").glob("*.yaml"))]
    return out


# Each: (what, extra helm arguments, a fragment the error must contain).
REJECTED = [
    ("typo'd top-level key", ["--set", "replicaCont=2"], "additional properties 'replicaCont'"),
    ("typo'd nested key", ["--set", "webhook.failurePolicyy=Ignore"], "additional properties 'failurePolicyy'"),
    ("string for an integer", ["--set", "replicaCount=two"], "/replicaCount"),
    ("quoted number for an integer", ["--set-string", "webhook.timeoutSeconds=5"], "/webhook/timeoutSeconds"),
    ("string for a boolean", ["--set", "networkPolicy.enabled=yes"], "/networkPolicy/enabled"),
    ("map for a list", ["--set", "webhook.excludedNamespaces.a=b"], "/webhook/excludedNamespaces"),
    ("timeout above 30 s", ["--set", "webhook.timeoutSeconds=31"], "/webhook/timeoutSeconds"),
    ("zero replicas", ["--set", "replicaCount=0"], "/replicaCount"),
    ("unknown failure policy", ["--set", "webhook.failurePolicy=Sometimes"], "/webhook/failurePolicy"),
    ("unknown policy action", ["--set", "defaultPolicy.action=Block"], "/defaultPolicy/action"),
    ("unknown cluster provider", ["--set", "server.clusterProvider=mixed"], "/server/clusterProvider"),
    ("no cert-manager and no Secret", ["--set", "certManager.enabled=false"], "/tls/existingSecret"),
    # A NetworkPolicy that drops the ServiceMonitor's scrapes: the message names the value to set.
    ("scrapes dropped by the NetworkPolicy",
     ["--set", "networkPolicy.enabled=true", "--set", "serviceMonitor.enabled=true"],
     "set networkPolicy.metricsFrom"),
    ("no cert-manager and no CA", ["--set", "certManager.enabled=false", "--set", "tls.existingSecret=cert"],
     "/tls/caBundle"),
    ("existing Secret while cert-manager issues one", ["--set", "tls.existingSecret=cert"],
     "set certManager.enabled=false"),
    ("string for certManager.enabled", ["--set-string", "certManager.enabled=false"], "/certManager/enabled"),
    ("issuer without name", ["--set", "certManager.issuerRef.kind=ClusterIssuer"], "/certManager/issuerRef"),
    ("an earlier name of the TLS values", ["--set", "tls.source=secret"], "additional properties 'source'"),
    ("invalid common label value", ["--set", "commonLabels.team=platform team"], "/commonLabels/team"),
    ("invalid namespace name", ["--set", "webhook.excludedNamespaces[0]=Team_A"], "/webhook/excludedNamespaces/0"),
    ("image tag as digest", ["--set", "image.digest=latest"], "/image/digest"),
    ("duration with a space", ["--set", "server.auditInterval=10 m"], "/server/auditInterval"),
    ("existing ServiceAccount without name", ["--set", "serviceAccount.create=false"], "serviceAccount.name"),
    ("webhook and admin on one port", ["--set", "server.port=8080"], "must differ"),
    ("Kubernetes older than 1.33", ["--kube-version", "1.32.0"], "kubeVersion"),
    ("pod-template kinds without the AI tools' webhook",
     ["-f", str(HERE / "values/pod-template-kinds.yaml"), "--set", "webhook.aiTools.enabled=false"],
     "set webhook.aiTools.enabled=true"),
    ("a pod-template kind of unknown shape",
     ["--set-json", 'podTemplateKinds=[{"group":"a.example.com","kind":"A","plural":"as","versions":["v1"],"templates":[{"path":"spec.t","shape":"Pod"}]}]'],
     "/podTemplateKinds/0/templates/0/shape"),
    ("a pod-template kind without templates",
     ["--set-json", 'podTemplateKinds=[{"group":"a.example.com","kind":"A","plural":"as","versions":["v1"],"templates":[]}]'],
     "/podTemplateKinds/0/templates"),
]


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def deep_merge(base, override):
    """Helm's merge of values: maps merge, everything else (lists included) is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = deep_merge(base.get(k), v) if k in base else v
        return out
    return override


def undocumented(schema, values, prefix=""):
    """Schema properties without a default in values.yaml. Maps that are empty by default
    (issuerRef, resources.claims, ...) are not descended into."""
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        if key == "global":
            continue
        if not isinstance(values, dict) or key not in values:
            yield path
        elif sub.get("type") == "object" and values[key]:
            yield from undocumented(sub, values[key], path + ".")


def helm_docs_comments(text):
    """The key paths of a values file, and those with the `# --` comment helm-docs reads: a comment
    block directly above the key (no blank line between) with a line starting `# --`."""
    keys, documented = set(), set()
    stack, comment = [], []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            comment = []
            continue
        if stripped.startswith("#"):
            comment.append(stripped)
            continue
        m = re.match(r"^( *)([A-Za-z0-9_.\-]+):(\s|$)", line)
        if m:
            indent = len(m.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            path = ".".join([k for _, k in stack] + [m.group(2)])
            stack.append((indent, m.group(2)))
            keys.add(path)
            if any(c.startswith("# --") for c in comment):
                documented.add(path)
        comment = []
    return keys, documented


def value_leaves(schema, values, prefix=""):
    """The values a user sets, as helm-docs lists them: schema properties, descending into maps
    that have properties of their own and a non-empty default."""
    for key, sub in schema.get("properties", {}).items():
        if key == "global" or not isinstance(values, dict) or key not in values:
            continue
        path = f"{prefix}{key}"
        if sub.get("properties") and isinstance(values[key], dict) and values[key]:
            yield from value_leaves(sub, values[key], path + ".")
        else:
            yield path


def check_sources(c, values):
    c.scope = "chart sources"
    top, chart = ROOT / "crds", CHART / "crds"
    names = sorted(p.name for p in top.glob("*.yaml"))
    c.equal(sorted(p.name for p in chart.glob("*.yaml")), names, "chart crds/ holds the same files as crds/")
    for n in names:
        c.ok((chart / n).exists() and filecmp.cmp(top / n, chart / n, shallow=False),
             f"charts/hostguard/crds/{n} is byte-identical to crds/{n} "
             f"(run `cargo run -- crds --out charts/hostguard/crds/`)")
    for tpl in sorted((CHART / "templates").iterdir()):
        # Template actions, without {{/* comments */}}.
        actions = " ".join(re.findall(r"\{\{(?!-?\s*/\*)(.*?)\}\}", tpl.read_text(), re.S))
        for fn in FORBIDDEN_TEMPLATE_FUNCTIONS:
            c.ok(not re.search(rf"\b{fn}\b", actions), f"{tpl.name} does not call {fn}")
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    missing = list(undocumented(schema, values))
    c.equal(missing, [], "values.yaml sets a documented default for every value of the schema")
    _, commented = helm_docs_comments((CHART / "values.yaml").read_text())
    uncommented = [p for p in value_leaves(schema, values) if p not in commented]
    c.equal(uncommented, [], "every value has a helm-docs `# --` comment in values.yaml")


def lint(c, helm, variants_):
    c.scope = "helm lint"
    for v in variants_:
        cmd = [helm, "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION,
               "--namespace", v.namespace]
        for f in v.values_files:
            cmd += ["-f", str(f)]
        r = run(cmd)
        c.ok(r.returncode == 0, f"helm lint --strict ({v.name}) failed:\n{r.stdout}{r.stderr}")


def render(helm, v, extra=()):
    kube_version = [] if "--kube-version" in extra else ["--kube-version", KUBE_VERSION]
    cmd = [helm, "template", v.release, str(CHART), "--namespace", v.namespace,
           *kube_version, "--include-crds", *extra]
    for f in v.values_files:
        cmd += ["-f", str(f)]
    return run(cmd)


def crd_schemas():
    out = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            out[key] = version["schema"]["openAPIV3Schema"]
    return out


def validate(c, docs, skipped, own_schemas):
    for d in docs:
        what = f"{d.get('kind')}/{d.get('metadata', {}).get('name')}"
        group = d["apiVersion"].split("/")[0] if "/" in d["apiVersion"] else ""
        if group in UNVALIDATED_GROUPS:
            skipped.add(f"{d['apiVersion']} {d['kind']} ({UNVALIDATED_GROUPS[group]})")
            continue
        if group == OWN_GROUP:
            schema = own_schemas.get((d["apiVersion"], d["kind"]))
            if c.ok(schema is not None, f"{what}: hostguard has a CRD for {d['apiVersion']}"):
                errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(d), key=str)
                c.ok(not errors, f"{what} against its CRD schema: {[e.message for e in errors]}")
            continue
        try:
            kubernetes_validate.validate(d, KUBE_VERSION, strict=True)
            c.ok(True, what)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            c.ok(False, f"{what} against Kubernetes {KUBE_VERSION}: {path}: {e.message}")
        except SchemaNotFoundError as e:
            c.ok(False, f"{what}: {e.message}")


def check_with_hostguard(c, hostguard, rendering):
    """`hostguard check` on the rendering, as a GitOps pipeline would run it on `helm template`."""
    r = run([hostguard, "check", "-f", str(rendering), "-o", "json", "--cluster-provider", "azure"])
    if not c.ok(r.returncode == 0, f"hostguard check exits {r.returncode}: {r.stdout}{r.stderr}"):
        return
    for result in json.loads(r.stdout)["results"]:
        what = f"hostguard check: {result['kind']}/{result['name']}"
        if result["kind"] in ("Deployment", "HostingPolicy"):
            c.equal(result["verdict"], "allow", what)
        else:
            c.equal(result["verdict"], "skipped", what)


def check_vap(c, hostguard, docs, values, namespace):
    """The rendered ValidatingAdmissionPolicy and binding are what `hostguard vap` makes of the
    rendered default policy, with the namespaces the webhook never sees (the release namespace and
    webhook.excludedNamespaces) left out, as the README tells users to run it. Only the chart's
    labels and commonAnnotations differ."""
    rendered = [d for d in docs if d["kind"].startswith("ValidatingAdmissionPolicy")]
    if not assert_render.vap_expected(values):
        c.equal(rendered, [], "no ValidatingAdmissionPolicy unless enabled with a Deny default policy")
        return
    policy = OUT / "vap-policy.yaml"
    policy.write_text(yaml.safe_dump(assert_render.of_kind(docs, "HostingPolicy")[0]))
    cmd = [hostguard, "vap", "--policy", str(policy), "--exclude-namespace", namespace]
    for n in values["webhook"]["excludedNamespaces"]:
        cmd += ["--exclude-namespace", n]
    r = run(cmd)
    if not c.ok(r.returncode == 0, f"hostguard vap exits {r.returncode}: {r.stderr}"):
        return
    want = [d for d in yaml.safe_load_all(r.stdout) if d]
    c.equal([(d["kind"], d["metadata"]["name"]) for d in rendered],
            [(d["kind"], d["metadata"]["name"]) for d in want], "ValidatingAdmissionPolicy objects")
    for got, expected in zip(rendered, want):
        what = f"{got['kind']}/{got['metadata']['name']}"
        c.equal(got["spec"], expected["spec"], f"{what} spec = hostguard vap")
        annotations = got["metadata"].get("annotations") or {}
        for k, v in (expected["metadata"].get("annotations") or {}).items():
            c.equal(annotations.get(k), v, f"{what} annotation {k}")


def check_serve_arguments(c, hostguard, docs):
    """The container's args and env, as the kubelet would pass them, parse as `hostguard serve`.

    With no cluster to reach the binary stops with exit 1 once the arguments are read; a usage
    error (unknown flag, bad value) is clap's exit 2."""
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(OUT), "KUBECONFIG": str(OUT / "no-kubeconfig")}
    for e in container.get("env", []):
        env[e["name"]] = e.get("value", "from-the-downward-api")
    try:
        r = subprocess.run([hostguard, *container["args"]], env=env, capture_output=True,
                           text=True, timeout=30)
    except subprocess.TimeoutExpired:
        c.ok(False, "hostguard serve with the chart's arguments did not stop without a cluster")
        return
    c.ok(r.returncode == 1 and "Usage:" not in r.stderr,
         f"hostguard {' '.join(container['args'])}: want exit 1 for want of a cluster, "
         f"got {r.returncode}: {r.stderr.strip()}")


def check_notes(c, helm):
    """NOTES.txt (which `helm template` does not render; a client-side dry-run install does): how
    to check that the webhook is live, and how to switch the default policy to Audit first."""
    c.scope = "NOTES.txt"
    cases = [
        ("Deny", [], ["--dry-run=server", "denied the request", "defaultPolicy.action=Audit"]),
        ("Warn", ["--set", "defaultPolicy.action=Warn"], ["--dry-run=server", "Warning:", "defaultPolicy.action=Audit"]),
        ("Audit", ["--set", "defaultPolicy.action=Audit"],
         ["--dry-run=server", "hostguard_admission_requests_total", "defaultPolicy.action=Warn"]),
        ("no default policy", ["--set", "defaultPolicy.enabled=false"],
         ["--dry-run=server", "hostguard_admission_requests_total"]),
    ]
    for what, extra, fragments in cases:
        r = run([helm, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", *extra])
        if not c.ok(r.returncode == 0, f"{what}: helm install --dry-run=client failed: {r.stderr}"):
            continue
        notes = r.stdout[r.stdout.find("NOTES:"):]
        for fragment in fragments:
            c.ok(fragment in notes, f"{what}: NOTES mention {fragment!r}:\n{notes}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--helm", required=True)
    parser.add_argument("--hostguard", required=True, help="the built hostguard binary")
    parser.add_argument("--lua", action="append", default=[],
                        help="a Lua interpreter for the Argo CD health checks (repeatable)")
    parser.add_argument("--lua-missing", action="append", default=[],
                        help="why a Lua interpreter is missing: its checks are skipped (repeatable)")
    args = parser.parse_args()
    helm = args.helm

    c = assert_render.Checks()
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    check_sources(c, defaults)
    assert_render.check_defaults(c, defaults)

    all_variants = variants() + gitops.variants(Variant, OUT)
    lint(c, helm, all_variants)

    OUT.mkdir(parents=True, exist_ok=True)
    own_schemas = crd_schemas()
    skipped = set()
    for v in all_variants:
        c.scope = f"render {v.name}"
        r = render(helm, v)
        if not c.ok(r.returncode == 0, f"helm template failed:\n{r.stderr}"):
            continue
        (OUT / f"{v.name}.yaml").write_text(r.stdout)
        docs = [d for d in yaml.safe_load_all(r.stdout) if d]
        validate(c, docs, skipped, own_schemas)
        values = defaults
        for f in v.values_files:
            values = deep_merge(values, yaml.safe_load(f.read_text()) or {})
        try:
            assert_render.check_render(c, docs, values, v.release, v.namespace)
        except (KeyError, IndexError, TypeError) as e:
            c.ok(False, f"rendering lacks an expected part: {type(e).__name__}: {e}")
        check_with_hostguard(c, args.hostguard, OUT / f"{v.name}.yaml")
        check_serve_arguments(c, args.hostguard, docs)
        check_vap(c, args.hostguard, docs, values, v.namespace)

    check_notes(c, helm)
    gitops.check(c, args.hostguard, args.lua, args.lua_missing, helm=args.helm)

    c.scope = "rejected values"
    for what, extra, fragment in REJECTED:
        r = render(helm, Variant("rejected"), extra)
        c.ok(r.returncode != 0 and fragment in r.stderr,
             f"{what} ({' '.join(extra)}): want an error naming {fragment!r}, "
             f"got exit {r.returncode}: {r.stderr.strip() or '(no error)'}")

    for s in sorted(skipped):
        print(f"skipped schema validation (no schema available offline): {s}")
    for f in c.failures:
        print(f"FAIL {f}")
    print(f"renderings in {OUT.relative_to(ROOT)}/")
    print(f"chart: {c.passed} passed, {len(c.failures)} failed")
    sys.exit(1 if c.failures else 0)


if __name__ == "__main__":
    main()

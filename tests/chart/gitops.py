"""The GitOps and CI examples (examples/gitops/, examples/ci/); run by scripts/chart-test.

- Argo CD: the Application installs charts/hostguard from this repository, with server-side apply
  and the cert-manager CA bundle ignored; its values are rendered like a chart variant (see
  `variants`). The argocd-cm snippet is a valid ConfigMap whose two health-check keys hold exactly
  the health.lua files of resource_customizations/hostguard.dev/<Kind>/, and each script gives
  exactly the status and message of every case of its health_test.yaml (on its testdata/ object),
  as Argo CD's TestLuaHealthScript requires, in every Lua interpreter given (Argo CD runs
  gopher-lua, a Lua 5.1).
- Flux: the HelmRelease takes the chart from the GitRepository next to it, keeps the CRDs in step
  and ignores the CA bundle in drift detection; its values are rendered like a chart variant.
- GitHub Actions: the workflow runs `hostguard check -o sarif` on the committed manifests and on
  a chart's `helm template` output into a file that upload-sarif@v4 uploads even when something
  is denied, then fails; the real `hostguard` runs with the workflow's arguments on a checkout
  like the one it describes, the real `helm` rendering the example chart, and its findings point
  at the committed manifest and at the chart's template, relative to the repository root. The
  rendered fixture of tests/check_cli.rs is what helm renders.
"""

import json
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
GITOPS = ROOT / "examples/gitops"
ARGO = GITOPS / "argocd"
FLUX = GITOPS / "flux"
WORKFLOW = ROOT / "examples/ci/github-actions.yaml"
CHART_PATH = "charts/hostguard"
KUBE_VERSION = "1.33.0"

HEALTH_KEY = "resource.customizations.health.hostguard.dev_{kind}"
CUSTOMIZATIONS = ARGO / "resource_customizations/hostguard.dev"
HEALTH_SCRIPTS = {"HostingPolicy": CUSTOMIZATIONS / "HostingPolicy/health.lua",
                  "AIWorkload": CUSTOMIZATIONS / "AIWorkload/health.lua"}
ARGO_HEALTH_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
WEBHOOK_KINDS = ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")


def load_all(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def one(docs, kind, where):
    found = [d for d in docs if d.get("kind") == kind]
    if len(found) != 1:
        raise ValueError(f"{where}: want one {kind}, found {len(found)}")
    return found[0]


def argo_application():
    return one(load_all(ARGO / "application.yaml"), "Application", "argocd/application.yaml")


def flux_documents():
    return [d for p in sorted(FLUX.glob("*.yaml")) for d in load_all(p)]


def variants(variant, out_dir):
    """The chart renderings the GitOps examples ask for: their values written to files, with the
    release name and namespace each tool would use."""
    out_dir.mkdir(parents=True, exist_ok=True)
    app = argo_application()
    argo_values = out_dir / "values-gitops-argocd.yaml"
    argo_values.write_text(yaml.safe_dump(app["spec"]["source"]["helm"]["valuesObject"]))
    release = one(flux_documents(), "HelmRelease", "flux/")
    flux_values = out_dir / "values-gitops-flux.yaml"
    flux_values.write_text(yaml.safe_dump(release["spec"]["values"]))
    return [
        variant("gitops-argocd", [argo_values],
                release=app["spec"]["source"]["helm"].get("releaseName", app["metadata"]["name"]),
                namespace=app["spec"]["destination"]["namespace"]),
        variant("gitops-flux", [flux_values],
                release=release["spec"].get("releaseName", release["metadata"]["name"]),
                namespace=release["spec"].get("targetNamespace", release["metadata"]["namespace"])),
    ]


def check(c, hostguard, luas, lua_missing, helm=None):
    check_argo(c)
    check_health_scripts(c, luas, lua_missing)
    check_flux(c)
    check_workflow(c, hostguard, helm)


def ignored_ca_bundle(c, what, rules, pointer_paths):
    """Both webhook configuration kinds have a rule ignoring clientConfig.caBundle."""
    for kind in WEBHOOK_KINDS:
        paths = [p for r in rules if r.get("kind") == kind or r.get("target", {}).get("kind") == kind
                 for p in r.get("jqPathExpressions", []) + r.get("jsonPointers", []) + r.get("paths", [])]
        c.ok(paths and all("clientConfig/caBundle" in p or "clientConfig.caBundle" in p for p in paths),
             f"{what}: {kind} caBundle (written by cert-manager) is ignored, nothing else: {paths}")
        if pointer_paths and paths:
            # JSON pointers name webhooks by index: one per webhook the chart renders.
            want = {"ValidatingWebhookConfiguration": 2, "MutatingWebhookConfiguration": 1}[kind]
            c.equal(sorted(paths), sorted(f"/webhooks/{i}/clientConfig/caBundle" for i in range(want)),
                    f"{what}: {kind} caBundle of each of its {want} webhooks")


def check_argo(c):
    c.scope = "gitops argocd/application.yaml"
    app = argo_application()
    spec = app["spec"]
    c.equal(app["apiVersion"], "argoproj.io/v1alpha1", "Application apiVersion")
    c.equal(app["metadata"].get("namespace"), "argocd", "Application in Argo CD's namespace")
    c.ok(spec.get("project"), "Application project")
    source = spec["source"]
    c.ok(source.get("repoURL", "").endswith(".git") and source.get("targetRevision"),
         "source: a Git repository and a revision")
    c.equal(source.get("path"), CHART_PATH, "source: the chart's path in this repository")
    c.ok((ROOT / source.get("path", "-") / "Chart.yaml").exists(), "the source path holds a chart")
    c.ok(isinstance(source.get("helm", {}).get("valuesObject"), dict), "helm.valuesObject")
    c.ok(spec["destination"].get("server") or spec["destination"].get("name"), "destination cluster")
    options = spec.get("syncPolicy", {}).get("syncOptions", [])
    for option in ("CreateNamespace=true", "ServerSideApply=true", "RespectIgnoreDifferences=true"):
        c.ok(option in options, f"syncOptions has {option}")
    c.ok("resources-finalizer.argocd.argoproj.io" not in app["metadata"].get("finalizers", []),
         "no cascading-delete finalizer: deleting the Application must not delete the CRDs")
    ignored_ca_bundle(c, "ignoreDifferences", spec.get("ignoreDifferences", []), pointer_paths=False)

    c.scope = "gitops argocd/argocd-cm.yaml"
    cm = one(load_all(ARGO / "argocd-cm.yaml"), "ConfigMap", "argocd/argocd-cm.yaml")
    try:
        kubernetes_validate.validate(cm, KUBE_VERSION, strict=True)
        c.ok(True, "argocd-cm is a valid ConfigMap")
    except kubernetes_validate.ValidationError as e:
        c.ok(False, f"argocd-cm against Kubernetes {KUBE_VERSION}: {e.message}")
    c.equal((cm["metadata"]["name"], cm["metadata"].get("namespace")), ("argocd-cm", "argocd"),
            "Argo CD's ConfigMap")
    want = {HEALTH_KEY.format(kind=k): p.read_text() for k, p in HEALTH_SCRIPTS.items()}
    c.equal(sorted(cm.get("data", {})), sorted(want), "exactly the two health-check keys")
    for key, text in want.items():
        c.ok(cm.get("data", {}).get(key) == text,
             f"{key} holds exactly {HEALTH_SCRIPTS[key.rsplit('_', 1)[1]].relative_to(ARGO)}")


def lua_string(s):
    out = []
    for ch in s:
        if ch in '\\"':
            out.append("\\" + ch)
        elif 32 <= ord(ch) < 127:
            out.append(ch)
        else:
            out.extend(f"\\{b:03d}" for b in ch.encode())
    return '"' + "".join(out) + '"'


def lua_literal(v):
    """A Lua table constructor for a JSON-like value, as Argo CD hands objects to its scripts."""
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return lua_string(v)
    if isinstance(v, list):
        return "{" + ", ".join(lua_literal(x) for x in v) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join(f"[{lua_string(str(k))}] = {lua_literal(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no Lua form for {v!r}")


def run_health(lua, script, obj, workdir):
    runner = workdir / "runner.lua"
    runner.write_text(
        f"obj = {lua_literal(obj)}\n"
        f"local hs = dofile({lua_string(str(script))})\n"
        'io.write(tostring(hs.status), "\\n", tostring(hs.message), "\\n")\n')
    r = subprocess.run([lua, str(runner)], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        return None, r.stderr.strip()
    status, _, message = r.stdout.partition("\n")
    return status, message.rstrip("\n")


def check_health_scripts(c, luas, lua_missing):
    c.scope = "gitops Argo CD health checks (Lua)"
    for reason in lua_missing:
        print(f"skipped Lua health checks: {reason}")
    if not luas:
        c.ok(lua_missing, "a Lua interpreter, or the reason there is none")
        return
    dirs = sorted(p.name for p in CUSTOMIZATIONS.iterdir() if p.is_dir())
    c.equal(dirs, sorted(HEALTH_SCRIPTS), "a resource customization for every kind")
    with tempfile.TemporaryDirectory() as tmp:
        for lua in luas:
            version = subprocess.run([lua, "-v"], capture_output=True, text=True)
            name = (version.stdout or version.stderr).split(" Copyright")[0].strip() or lua
            for kind, script in HEALTH_SCRIPTS.items():
                tests = yaml.safe_load((script.parent / "health_test.yaml").read_text())["tests"]
                inputs = sorted(p.name for p in (script.parent / "testdata").iterdir())
                c.equal(sorted(Path(t["inputPath"]).name for t in tests), inputs,
                        f"{kind}: every testdata/ object has a case")
                for case in tests:
                    what = f"{name}: {kind}: {case['inputPath']}"
                    obj = yaml.safe_load((script.parent / case["inputPath"]).read_text())
                    c.equal((obj.get("apiVersion"), obj.get("kind")), ("hostguard.dev/v1alpha1", kind),
                            f"{what}: the object's type")
                    status, message = run_health(lua, script, obj, Path(tmp))
                    if not c.ok(status is not None, f"{what}: the script fails: {message}"):
                        continue
                    c.ok(status in ARGO_HEALTH_STATUSES, f"{what}: {status!r} is an Argo CD status")
                    want = case["healthStatus"]
                    c.equal((status, message), (want["status"], want["message"]), f"{what}: health")


def check_flux(c):
    c.scope = "gitops flux/"
    docs = flux_documents()
    release = one(docs, "HelmRelease", "flux/")
    source = one(docs, "GitRepository", "flux/")
    c.equal(release["apiVersion"], "helm.toolkit.fluxcd.io/v2", "HelmRelease apiVersion")
    c.equal(source["apiVersion"], "source.toolkit.fluxcd.io/v1", "GitRepository apiVersion")
    c.ok(source["spec"].get("url", "").endswith(".git") and source["spec"].get("ref")
         and source["spec"].get("interval"), "GitRepository: a URL, a ref and an interval")
    spec = release["spec"]
    chart = spec["chart"]["spec"]
    c.equal(chart.get("chart"), f"./{CHART_PATH}", "HelmRelease: the chart's path in the source")
    c.ok((ROOT / chart.get("chart", "-") / "Chart.yaml").exists(), "the chart path holds a chart")
    c.equal(chart.get("reconcileStrategy"), "Revision", "a chart from Git follows every revision")
    ref = chart.get("sourceRef", {})
    c.equal((ref.get("kind"), ref.get("name"), ref.get("namespace", release["metadata"]["namespace"])),
            ("GitRepository", source["metadata"]["name"], source["metadata"]["namespace"]),
            "HelmRelease sourceRef names the GitRepository")
    c.ok(spec.get("interval") and spec.get("releaseName") and spec.get("targetNamespace"),
         "interval, releaseName and targetNamespace")
    c.equal(spec.get("install", {}).get("crds"), "Create", "CRDs created on install")
    c.equal(spec.get("upgrade", {}).get("crds"), "CreateReplace", "CRDs kept in step on upgrade")
    c.equal(spec.get("install", {}).get("createNamespace"), True, "target namespace created")
    c.ok(isinstance(spec.get("values"), dict), "values")
    drift = spec.get("driftDetection", {})
    c.equal(drift.get("mode"), "enabled", "drift detection on")
    ignored_ca_bundle(c, "driftDetection.ignore", drift.get("ignore", []), pointer_paths=True)


def shell_lines(script):
    """The logical lines of a shell script, continuation lines joined."""
    out, pending = [], ""
    for line in script.splitlines():
        if line.rstrip().endswith("|"):
            pending += line.rstrip() + " "
        elif line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
        else:
            out.append(pending + line)
            pending = ""
    return out


def check_workflow(c, hostguard, helm):
    c.scope = "ci/github-actions.yaml"
    wf = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as a boolean, as PyYAML does; GitHub reads it as `on`.
    triggers = wf.get("on", wf.get(True))
    c.ok(isinstance(triggers, dict) and "pull_request" in triggers, "runs on pull requests")
    jobs = [j for j in wf.get("jobs", {}).values()
            if any("upload-sarif" in s.get("uses", "") for s in j.get("steps", []))]
    if not c.equal(len(jobs), 1, "one job uploads SARIF"):
        return
    job = jobs[0]
    c.equal(job.get("permissions", {}).get("security-events"), "write",
            "the job may write code-scanning alerts")
    steps = job["steps"]
    index = {id(s): i for i, s in enumerate(steps)}
    checks = [(s, line) for s in steps for line in shell_lines(s.get("run", ""))
              if " check " in line and "-o sarif" in line]
    if not c.equal(len(checks), 1, "one step runs `hostguard check -o sarif`"):
        return
    check_step, line = checks[0]
    uploads = [s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload-sarif@")]
    upload = uploads[0]
    # v3 is deprecated from December 2026 (github/codeql-action changelog).
    c.equal(upload["uses"], "github/codeql-action/upload-sarif@v4", "upload-sarif v4")
    c.ok(index[id(check_step)] < index[id(upload)], "the check runs before the upload")

    pipeline = [part.strip() for part in line.split("|")]
    c.equal(len(pipeline), 2, "helm template pipes the chart's rendering into the check")
    helm_words = shlex.split(pipeline[0]) if len(pipeline) == 2 else []
    c.ok(helm_words[:2] == ["helm", "template"], "the chart is rendered by helm template")
    words = shlex.split(pipeline[-1])
    redirect = words.index(">") if ">" in words else -1
    c.ok(redirect > 0 and redirect + 1 < len(words), "the SARIF report is written to a file")
    sarif_file = words[redirect + 1] if redirect > 0 else None
    c.equal(upload.get("with", {}).get("sarif_file"), sarif_file, "upload-sarif uploads that file")
    args = words[words.index("check"):redirect]
    c.ok("rendered/" not in " ".join(args), "the check reads committed files, not files the job makes")
    c.ok("-" in args, "the check reads the rendering from stdin")
    # Denials (exit 1) must not stop the upload; the job still fails afterwards.
    c.equal(check_step.get("continue-on-error"), True, "the check step does not stop the job")
    c.ok("always()" in str(upload.get("if", "")), "the upload runs whatever the check found")
    step_id = check_step.get("id")
    fails = [s for s in steps[index[id(upload)]:]
             if f"steps.{step_id}.outcome == 'failure'" in str(s.get("if", "")) and "exit 1" in s.get("run", "")]
    c.ok(step_id and fails, "a last step fails the job when the check failed")
    if not helm:
        c.ok(False, "helm is needed to run the workflow's check")
        return

    # The rendered fixture of tests/check_cli.rs is what helm writes for the example chart.
    direct = ["--set", "openaiBaseUrl=https://api.openai.com/v1"]
    r = subprocess.run([helm, "template", "demo", str(ROOT / "examples/charts/chat"), *direct],
                       capture_output=True, text=True)
    c.equal(r.returncode, 0, f"helm template examples/charts/chat: {r.stderr}")
    fixture = (ROOT / "tests/fixtures/check/rendered/chat-direct.yaml").read_text()
    c.equal([d for d in yaml.safe_load_all(r.stdout) if d],
            [d for d in yaml.safe_load_all(fixture) if d],
            "tests/fixtures/check/rendered/chat-direct.yaml is helm's rendering")
    c.ok("# Source: chat/templates/deployment.yaml" in r.stdout, "helm names the template")

    # The real binaries with the workflow's arguments, in a checkout like the one it describes.
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / ".git").mkdir()
        (work / "deploy").mkdir()
        (work / "policies").mkdir()
        shutil.copy(ROOT / "examples/workloads/chat-openai-direct.yaml", work / "deploy/chat.yaml")
        shutil.copy(ROOT / "examples/policies/openai-stateless-on-azure.yaml", work / "policies")
        shutil.copytree(ROOT / "examples/charts/chat", work / "charts/chat")
        rendered = subprocess.run([helm, *helm_words[1:], *direct], cwd=work, capture_output=True, text=True)
        c.equal(rendered.returncode, 0, f"{pipeline[0]}: {rendered.stderr}")
        r = subprocess.run([str(Path(hostguard).resolve()), *args], cwd=work, input=rendered.stdout,
                           capture_output=True, text=True)
        c.equal(r.returncode, 1, f"hostguard {' '.join(args)} exits 1 on a denial: {r.stderr}")
        try:
            sarif = json.loads(r.stdout)
        except json.JSONDecodeError as e:
            c.ok(False, f"hostguard {' '.join(args)} printed no SARIF: {e}")
            return
        c.equal(sarif.get("version"), "2.1.0", "SARIF 2.1.0")
        locations = {(loc["physicalLocation"]["artifactLocation"]["uri"],
                      loc["physicalLocation"]["artifactLocation"].get("uriBaseId"))
                     for run in sarif.get("runs", []) for res in run.get("results", [])
                     for loc in res.get("locations", [])}
        c.equal(locations, {("deploy/chat.yaml", "%SRCROOT%"),
                            ("charts/chat/templates/deployment.yaml", "%SRCROOT%")},
                "findings point at the committed manifest and the chart's template")

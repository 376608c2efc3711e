"""Assertions on one rendering of the hostguard chart.

`check_render` receives the parsed documents of `helm template` and the effective values (the
chart's values.yaml merged with the variant's file) and checks what the chart promises: the
webhooks' scope and failure semantics, least-privilege RBAC, a hardened pod that runs `hostguard
serve` with exactly the flags its values ask for, TLS wiring that generates nothing itself, and
optional resources present exactly when enabled. `check_defaults` pins the values users get when
they set nothing, so that the derived checks cannot drift together with the defaults.
"""

import json
import re
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_POLICY_FILE = ROOT / "examples/policies/openai-stateless-on-azure.yaml"
APP_VERSION = yaml.safe_load((ROOT / "charts/hostguard/Chart.yaml").read_text())["appVersion"]

# The controller's own list of the permissions it uses: the chart must grant exactly these.
RBAC_SOURCE = ROOT / "src/cluster/rbac.rs"
DANGEROUS_VERBS = {"escalate", "bind", "impersonate", "approve", "sign"}

# What the validating webhooks must see: every pod controller and Pods (ephemeral containers too),
# and hostguard's own resources, on CREATE and UPDATE.
WORKLOAD_RESOURCES = {
    ("", "pods"), ("", "pods/ephemeralcontainers"), ("", "replicationcontrollers"),
    ("apps", "deployments"), ("apps", "statefulsets"), ("apps", "daemonsets"),
    ("apps", "replicasets"), ("batch", "jobs"), ("batch", "cronjobs"),
}
OWN_RESOURCES = {("hostguard.dev", "hostingpolicies"), ("hostguard.dev", "aiworkloads")}
WRITE_OPERATIONS = ("CREATE", "UPDATE")

CLUSTER_SCOPED = {
    "ClusterRole", "ClusterRoleBinding", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "HostingPolicy", "CustomResourceDefinition",
    "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
}


class Checks:
    """Counts passed and failed checks; a failure names the rendering and what was expected."""

    def __init__(self):
        self.passed = 0
        self.failures = []
        self.scope = ""

    def ok(self, condition, what):
        if condition:
            self.passed += 1
        else:
            self.failures.append(f"[{self.scope}] {what}")
        return bool(condition)

    def equal(self, got, want, what):
        if got == want:
            return self.ok(True, what)
        if isinstance(got, dict) and isinstance(want, dict):
            return self.ok(False, f"{what}: differs at " + "; ".join(differences(got, want)))
        return self.ok(False, f"{what}: got {got!r}, want {want!r}")


def differences(got, want, path=""):
    """Where two nested maps differ, as `path: got X, want Y`."""
    if not (isinstance(got, dict) and isinstance(want, dict)):
        return [f"{path or '.'}: got {got!r}, want {want!r}"]
    out = []
    for key in sorted(set(got) | set(want), key=str):
        sub = f"{path}.{key}"
        if key not in got:
            out.append(f"{sub}: missing, want {want[key]!r}")
        elif key not in want:
            out.append(f"{sub}: unexpected {got[key]!r}")
        elif got[key] != want[key]:
            out += differences(got[key], want[key], sub)
    return out


def controller_permissions():
    """The `(apiGroup, resource, verb)` triples of `RULES` in src/cluster/rbac.rs, by where they
    are granted: `{"ClusterRole": {...}, "Role": {...}}` (Scope::Cluster and Scope::OwnNamespace).

    Read from the Rust source text, so that a rule added there and not to the chart (or the other
    way round) fails; a `Rule` this parser cannot read fails too, rather than being skipped."""
    text = RBAC_SOURCE.read_text()
    start = text.index("pub const RULES: &[Rule] = &[")
    body = text[start:text.index("\n];", start)]
    body = re.sub(r"//[^\n]*", "", body)
    blocks = body.split("Rule {")[1:]
    if not blocks:
        raise ValueError(f"{RBAC_SOURCE}: no Rule in RULES")
    strings = lambda s: re.findall(r'"([^"]*)"', s)
    out = {"ClusterRole": set(), "Role": set()}
    for block in blocks:
        scope = re.search(r"\bscope:\s*Scope::(\w+)", block)
        group = re.search(r'\bapi_group:\s*"([^"]*)"', block)
        resources = re.search(r"\bresources:\s*&\[(.*?)\]", block, re.S)
        verbs = re.search(r"\bverbs:\s*&\[(.*?)\]", block, re.S)
        if not (scope and group and resources and verbs):
            raise ValueError(f"{RBAC_SOURCE}: cannot read the rule {block.strip()[:200]!r}")
        kind = {"Cluster": "ClusterRole", "OwnNamespace": "Role"}[scope.group(1)]
        out[kind] |= {(group.group(1), r, v) for r in strings(resources.group(1))
                      for v in strings(verbs.group(1))}
    return out


def fullname(values, release):
    if values.get("fullnameOverride"):
        return values["fullnameOverride"][:63].rstrip("-")
    name = values.get("nameOverride") or "hostguard"
    return (release if name in release else f"{release}-{name}")[:63].rstrip("-")


def of_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def permissions(rules):
    out = set()
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    out.add((group, resource, verb))
    return out


def covered(rules):
    """(group, resource, operation) triples a list of webhook rules matches."""
    out = set()
    for rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for op in rule["operations"]:
                    out.add((group, resource, op))
    return out


def flags(args):
    """`--name=value` arguments as a dict; a bare `--name` maps to True."""
    out = {}
    for arg in args:
        if arg.startswith("--"):
            name, _, value = arg[2:].partition("=")
            out[name] = value if value else True
    return out


def check_defaults(c, values):
    """What a user gets without setting anything."""
    c.scope = "values.yaml defaults"
    c.equal(values["webhook"]["failurePolicy"], "Fail", "workloads fail closed by default")
    c.equal(values["webhook"]["timeoutSeconds"], 5, "webhook timeout")
    c.equal(values["webhook"]["mutating"]["enabled"], True, "mutating webhook on by default")
    c.equal(values["defaultPolicy"], {"enabled": True, "action": "Deny"}, "default policy")
    c.ok(values["replicaCount"] >= 2, "at least two replicas by default (fail-closed webhook)")
    c.equal(values["certManager"]["enabled"], True, "TLS from cert-manager by default")
    c.equal(values["certManager"]["issuerRef"], {}, "self-signed CA chain by default")
    c.equal((values["tls"]["existingSecret"], values["tls"]["caBundle"]), ("", ""),
            "no existing Secret by default")
    c.equal(values["server"]["clusterProvider"], "", "cluster provider detected by default")
    c.equal(values["networkPolicy"]["enabled"], False, "NetworkPolicy off by default")
    c.equal(values["serviceMonitor"]["enabled"], False, "ServiceMonitor off by default")
    c.equal(values["rbac"]["aiWorkloadEditor"]["aggregateToNamespaceRoles"], False,
            "AIWorkload write is not handed to namespace editors by default (no self-service exemption)")
    c.equal(values["webhook"]["namespaceOptOut"]["enabled"], False,
            "the hostguard.dev/ignore namespace opt-out is off by default")


def check_render(c, docs, values, release, namespace):
    name = fullname(values, release)
    cert_manager = values["certManager"]["enabled"]
    self_signed = cert_manager and not values["certManager"]["issuerRef"]
    replicas = values["replicaCount"]
    sa_name = (values["serviceAccount"]["name"] or name) if values["serviceAccount"]["create"] \
        else values["serviceAccount"]["name"]

    # -- inventory: exactly these resources, nothing else
    want = Counter({
        "ClusterRole": 2 + (1 if values["rbac"]["aiWorkloadEditor"]["create"] else 0)
        + (1 if values["policyReports"]["enabled"] else 0),
        "ClusterRoleBinding": 1 + (1 if values["policyReports"]["enabled"] else 0), "Role": 1, "RoleBinding": 1, "Service": 1,
        "Deployment": 1, "ValidatingWebhookConfiguration": 1, "CustomResourceDefinition": 2,
    })
    if values["serviceAccount"]["create"]:
        want["ServiceAccount"] = 1
    if values["webhook"]["mutating"]["enabled"]:
        want["MutatingWebhookConfiguration"] = 1
    if values["podDisruptionBudget"]["enabled"] and replicas > 1:
        want["PodDisruptionBudget"] = 1
    if values["networkPolicy"]["enabled"]:
        want["NetworkPolicy"] = 1
    if values["serviceMonitor"]["enabled"]:
        want["ServiceMonitor"] = 1
    if values["grafanaDashboard"]["enabled"]:
        want["ConfigMap"] = 1
    if values["prometheusRule"]["enabled"]:
        want["PrometheusRule"] = 1
    if values["defaultPolicy"]["enabled"]:
        want["HostingPolicy"] = 1
    if vap_expected(values):
        want["ValidatingAdmissionPolicy"] = 1
        want["ValidatingAdmissionPolicyBinding"] = 1
    if cert_manager:
        want["Certificate"] = 2 if self_signed else 1
        if self_signed:
            want["Issuer"] = 2
    c.equal(Counter(d["kind"] for d in docs), want, "rendered kinds")
    c.ok(not of_kind(docs, "Secret"), "no Secret rendered: no certificate or key is generated in templates")
    c.ok(all("helm.sh/hook" not in (d["metadata"].get("annotations") or {}) for d in docs),
         "no Helm hooks")

    # -- metadata
    common_labels = values["commonLabels"]
    # A resource's own annotations win over the common ones.
    own_annotations = {"Service": values["service"]["annotations"],
                       "ServiceAccount": values["serviceAccount"]["annotations"],
                       "ConfigMap": values["grafanaDashboard"]["annotations"]}
    # The dashboard goes where Grafana's sidecar looks.
    own_namespace = {"ConfigMap": values["grafanaDashboard"]["namespace"] or namespace}
    for d in docs:
        meta = d["metadata"]
        what = f"{d['kind']}/{meta.get('name')}"
        if d["kind"] in CLUSTER_SCOPED:
            c.ok("namespace" not in meta, f"{what} is cluster-scoped")
        else:
            c.equal(meta.get("namespace"), own_namespace.get(d["kind"], namespace), f"{what} namespace")
        if d["kind"] != "CustomResourceDefinition":
            labels = meta.get("labels") or {}
            c.equal(labels.get("app.kubernetes.io/instance"), release, f"{what} instance label")
            c.equal(labels.get("app.kubernetes.io/part-of"), "hostguard", f"{what} part-of label")
            c.equal({k: labels.get(k) for k in common_labels}, common_labels, f"{what} commonLabels")
            annotations = meta.get("annotations") or {}
            want = dict(values["commonAnnotations"], **own_annotations.get(d["kind"], {}))
            c.equal({k: annotations.get(k) for k in want}, want, f"{what} annotations")

    deployment = of_kind(docs, "Deployment")[0]
    selector = deployment["spec"]["selector"]["matchLabels"]
    c.equal(selector, {"app.kubernetes.io/name": values.get("nameOverride") or "hostguard",
                       "app.kubernetes.io/instance": release}, "Deployment selector")
    service = of_kind(docs, "Service")[0]
    c.equal(service["metadata"]["name"], name, "Service name")

    check_deployment(c, deployment, values, name, sa_name)
    check_service(c, service, deployment, values)
    check_webhooks(c, docs, values, namespace, service)
    check_rbac(c, docs, values, namespace, sa_name, name)
    check_aiworkload_roles(c, docs, values, name)
    check_tls(c, docs, values, namespace, service, deployment, self_signed)
    check_optional(c, docs, values, namespace, deployment, service)
    check_default_policy(c, docs, values)
    check_policy_reports(c, docs, values, name, sa_name, namespace, deployment)
    check_monitoring(c, docs, values, name, namespace)


ALERTS = ["HostguardWebhookErrors", "HostguardWebhookLatencyHigh", "HostguardCertificateExpiringSoon",
          "HostguardPolicySnapshotStale", "HostguardLeaderMissing"]


def check_monitoring(c, docs, values, name, namespace):
    """The dashboard ConfigMap carries the dashboard file as it is, labelled for the sidecar;
    the PrometheusRule has the five alerts, their thresholds from the values, every expression
    scoped to the release namespace. (tests/dashboards.rs checks the metric names.)"""
    gd = values["grafanaDashboard"]
    for cm in of_kind(docs, "ConfigMap"):
        c.equal(cm["metadata"]["name"], f"{name}-dashboard", "dashboard ConfigMap name")
        labels = cm["metadata"]["labels"]
        c.equal({k: labels.get(k) for k in gd["labels"]}, gd["labels"], "dashboard sidecar labels")
        dashboard = json.loads(cm["data"]["hostguard.json"])
        c.equal(dashboard, json.loads((ROOT / "charts/hostguard/dashboards/hostguard.json").read_text()),
                "the ConfigMap holds dashboards/hostguard.json unchanged")
    pr = values["prometheusRule"]
    for rule in of_kind(docs, "PrometheusRule"):
        labels = rule["metadata"]["labels"]
        c.equal({k: labels.get(k) for k in pr["labels"]}, pr["labels"], "PrometheusRule labels")
        rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
        c.equal([r["alert"] for r in rules], ALERTS, "the alerts")
        by_name = {r["alert"]: r for r in rules}
        for r in rules:
            c.ok(f'namespace="{namespace}"' in r["expr"], f"{r['alert']} is scoped to the release namespace")
            c.equal(r["for"], pr["for"], f"{r['alert']} for")
            c.equal({k: r["labels"].get(k) for k in pr["additionalAlertLabels"]},
                    pr["additionalAlertLabels"], f"{r['alert']} extra labels")
        budget = values["webhook"]["timeoutSeconds"] * pr["latencyBudgetRatio"]
        latency = by_name["HostguardWebhookLatencyHigh"]["expr"]
        c.equal(float(latency.rsplit(">", 1)[1]), float(budget), "latency budget = timeoutSeconds x ratio")
        c.ok(latency.startswith("histogram_quantile(0.99,"), "the latency alert is on p99")
        c.ok(f"< {pr['certificateExpiryDays']} * 86400" in by_name["HostguardCertificateExpiringSoon"]["expr"],
             "certificate expiry threshold")
        c.ok(f"> {pr['snapshotStaleSeconds']})" in by_name["HostguardPolicySnapshotStale"]["expr"],
             "snapshot staleness threshold")


# The report kinds of each PolicyReport API, from the OpenReports and wgpolicyk8s.io CRDs.
REPORT_RESOURCES = {
    "openreports": ("openreports.io", ["reports", "clusterreports"]),
    "wgpolicyk8s": ("wgpolicyk8s.io", ["policyreports", "clusterpolicyreports"]),
}


def check_policy_reports(c, docs, values, name, sa_name, namespace, deployment):
    conf = values["policyReports"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    role_name = f"{name}-policyreports"
    roles = [d for d in of_kind(docs, "ClusterRole") if d["metadata"]["name"] == role_name]
    if not conf["enabled"]:
        c.ok(not any(a.startswith("--policy-reports") for a in args), "no --policy-reports when off")
        c.equal(roles, [], "no PolicyReport ClusterRole when off")
        return
    c.ok(f"--policy-reports={conf['api']}" in args, f"--policy-reports={conf['api']} passed")
    group, resources = REPORT_RESOURCES[conf["api"]]
    c.equal([r["rules"] for r in roles],
            [[{"apiGroups": [group], "resources": resources,
               "verbs": ["get", "list", "create", "patch", "delete"]}]],
            "the PolicyReport ClusterRole grants the chosen API's report kinds only")
    bindings = [b for b in of_kind(docs, "ClusterRoleBinding") if b["metadata"]["name"] == role_name]
    c.equal([b["subjects"] for b in bindings],
            [[{"kind": "ServiceAccount", "name": sa_name, "namespace": namespace}]],
            "the PolicyReport ClusterRoleBinding binds the ServiceAccount")


def check_deployment(c, deployment, values, name, sa_name):
    server = values["server"]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    c.equal(spec["replicas"], values["replicaCount"], "replicas")
    template_labels = spec["template"]["metadata"]["labels"]
    c.ok(all(template_labels.get(k) == v for k, v in spec["selector"]["matchLabels"].items()),
         "pod labels match the Deployment selector")
    c.ok(all(template_labels.get(k) == v for k, v in {**values["commonLabels"], **values["podLabels"]}.items()),
         "pod labels carry commonLabels and podLabels")
    c.equal(spec["template"]["metadata"].get("annotations"), values["podAnnotations"] or None,
            "pod annotations are podAnnotations (commonAnnotations stay on the resources)")
    c.equal(spec["strategy"]["rollingUpdate"]["maxUnavailable"],
            values["updateStrategy"]["rollingUpdate"]["maxUnavailable"], "rolling update")
    c.equal(pod["serviceAccountName"], sa_name, "pod ServiceAccount")
    c.equal(pod.get("automountServiceAccountToken"), True,
            "the pod mounts the API token it needs, explicitly")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        c.ok(not pod.get(key), f"pod does not set {key}")
    c.ok(not pod.get("initContainers"), "no init containers")

    psc = pod.get("securityContext", {})
    c.equal(psc.get("runAsNonRoot"), True, "pod runAsNonRoot")
    c.ok(isinstance(psc.get("runAsUser"), int) and psc["runAsUser"] > 0, "pod runs as a numeric non-root UID")
    c.equal(psc.get("seccompProfile"), {"type": "RuntimeDefault"}, "pod seccomp profile")

    containers = pod["containers"]
    c.equal([x["name"] for x in containers], ["hostguard"], "containers")
    ctr = containers[0]
    sc = ctr.get("securityContext", {})
    c.equal(sc.get("runAsNonRoot"), True, "container runAsNonRoot")
    c.equal(sc.get("readOnlyRootFilesystem"), True, "read-only root filesystem")
    c.equal(sc.get("allowPrivilegeEscalation"), False, "no privilege escalation")
    c.ok(not sc.get("privileged"), "not privileged")
    c.equal(sc.get("capabilities", {}).get("drop"), ["ALL"], "capabilities drop ALL")
    c.ok(not sc.get("capabilities", {}).get("add"), "no capability added")
    c.equal(sc.get("seccompProfile", psc.get("seccompProfile")), {"type": "RuntimeDefault"},
            "container seccomp profile")

    image = values["image"]
    want_image = (f"{image['repository']}@{image['digest']}" if image["digest"]
                  else f"{image['repository']}:{image['tag'] or APP_VERSION}")
    c.equal(ctr["image"], want_image, "image")
    c.ok(not ctr["image"].endswith(":latest"), "image is not :latest")
    c.equal(ctr.get("command"), None, "the image's ENTRYPOINT runs (/hostguard)")

    args = ctr["args"]
    c.equal(args[0], "serve", "first argument is the serve subcommand")
    f = flags(args[1:])
    host = server["listenHost"]
    c.equal(f.get("addr"), f"{host}:{server['port']}", "--addr")
    c.equal(f.get("admin-addr"), f"{host}:{server['adminPort']}", "--admin-addr")
    c.equal(f.get("log-format"), server["logFormat"], "--log-format")
    c.equal(f.get("drain-delay"), f"{server['drainDelaySeconds']}s", "--drain-delay")
    c.equal(f.get("shutdown-grace"), f"{server['shutdownGraceSeconds']}s", "--shutdown-grace")
    c.equal(pod["terminationGracePeriodSeconds"],
            server["drainDelaySeconds"] + server["shutdownGraceSeconds"] + 5,
            "termination grace outlasts the drain delay plus the shutdown grace")
    c.ok(not ctr.get("lifecycle", {}).get("preStop"),
         "no preStop hook: the drain delay is in the binary, readiness turns false at once")
    c.equal(f.get("max-concurrent-reviews"), str(server["maxConcurrentReviews"]), "--max-concurrent-reviews")
    for flag, key in [
        ("max-concurrent-large-reviews", "maxConcurrentLargeReviews"),
        ("max-concurrent-body-reads", "maxConcurrentBodyReads"),
        ("max-body-reads-per-connection", "maxBodyReadsPerConnection"),
        ("max-buffered-body-mib", "maxBufferedBodyMiB"),
        ("http2-max-concurrent-streams", "http2MaxConcurrentStreams"),
    ]:
        c.equal(f.get(flag), str(server["limits"][key]), f"--{flag}")
    for flag, key in [
        ("first-request-timeout", "firstRequestTimeoutSeconds"),
        ("idle-timeout", "idleTimeoutSeconds"),
    ]:
        c.equal(f.get(flag), f"{server['limits'][key]}s", f"--{flag}")
    c.equal(f.get("admin-max-connections"), str(server["limits"]["adminMaxConnections"]),
            "--admin-max-connections")
    c.equal(f.get("audit-interval"), server["auditInterval"], "--audit-interval")
    c.equal(f.get("lease-name"), values["leaderElection"]["leaseName"] or f"{name}-leader", "--lease-name")
    c.equal(f.get("cluster-provider"), server["clusterProvider"] or None, "--cluster-provider only when set")
    c.ok("standalone" not in f, "the chart runs in cluster mode (no --standalone)")

    mounts = {m["name"]: m for m in ctr.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    c.ok(all(m.get("readOnly") for m in mounts.values()), "every volume is mounted read-only")
    c.ok(all("subPath" not in m for m in mounts.values()),
         "no subPath mounts (they never see a renewed certificate)")
    tls_mount = mounts.get("tls", {}).get("mountPath", "<none>")
    c.equal(f.get("tls-cert"), f"{tls_mount}/tls.crt", "--tls-cert in the TLS Secret volume")
    c.equal(f.get("tls-key"), f"{tls_mount}/tls.key", "--tls-key in the TLS Secret volume")
    client_ca = values["tls"]["clientCA"]
    if client_ca["configMap"]:
        c.equal(volumes.get("client-ca", {}).get("configMap", {}).get("name"), client_ca["configMap"],
                "client CA volume")
        c.equal(f.get("client-ca"), f"{mounts['client-ca']['mountPath']}/{client_ca['key']}", "--client-ca")
    else:
        c.ok("client-ca" not in f and "client-ca" not in volumes, "no client CA unless configured")

    env = {e["name"]: e for e in ctr.get("env", [])}
    c.equal(env.get("POD_NAME", {}).get("valueFrom"), {"fieldRef": {"fieldPath": "metadata.name"}},
            "POD_NAME from the downward API")
    c.equal(env.get("POD_NAMESPACE", {}).get("valueFrom"),
            {"fieldRef": {"fieldPath": "metadata.namespace"}}, "POD_NAMESPACE from the downward API")
    c.equal(env.get("HOSTGUARD_LOG", {}).get("value"), server["logLevel"], "HOSTGUARD_LOG")
    kinds_env = env.get("HOSTGUARD_POD_TEMPLATE_KINDS_JSON")
    if values["podTemplateKinds"]:
        c.equal(json.loads(kinds_env["value"]) if kinds_env else None, values["podTemplateKinds"],
                "HOSTGUARD_POD_TEMPLATE_KINDS_JSON holds podTemplateKinds")
    else:
        c.ok(kinds_env is None, "no HOSTGUARD_POD_TEMPLATE_KINDS_JSON without podTemplateKinds")
    for extra in server["extraEnv"]:
        c.equal(env.get(extra["name"]), extra, f"extra env {extra['name']}")

    ports = {p["name"]: p["containerPort"] for p in ctr["ports"]}
    c.equal(ports, {"https": server["port"], "admin": server["adminPort"]}, "container ports")
    c.equal(ctr["livenessProbe"]["httpGet"], {"path": "/livez", "port": "admin"}, "liveness probe")
    c.equal(ctr["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "admin"}, "readiness probe")
    res = ctr.get("resources", {})
    c.ok(res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory")
         and res.get("limits", {}).get("memory"), "CPU and memory requests and a memory limit")

    if values["affinity"]:
        c.equal(pod["affinity"], values["affinity"], "affinity from values")
    else:
        terms = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        c.equal(terms[0]["podAffinityTerm"]["labelSelector"]["matchLabels"],
                deployment["spec"]["selector"]["matchLabels"], "replicas prefer different nodes")


def check_service(c, service, deployment, values):
    c.equal(service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"], "Service selector")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    c.equal((ports["https"]["port"], ports["https"]["targetPort"]), (values["service"]["port"], "https"),
            "Service webhook port")
    c.equal(ports["metrics"]["targetPort"], "admin", "Service metrics port targets the admin listener")


def namespace_exclusions(c, webhook, namespace, excluded, opt_out, what):
    selector = webhook.get("namespaceSelector", {})
    c.ok(not selector.get("matchLabels"), f"{what}: no matchLabels narrowing the namespaces")
    exprs = {e["key"]: e for e in selector.get("matchExpressions", [])}
    names = exprs.get("kubernetes.io/metadata.name", {})
    c.equal(names.get("operator"), "NotIn", f"{what}: namespaces excluded by name")
    c.equal(set(names.get("values", [])), {"kube-system", namespace, *excluded},
            f"{what}: kube-system, the release namespace and the configured ones are excluded")
    if opt_out:
        c.equal(exprs.get("hostguard.dev/ignore"),
                {"key": "hostguard.dev/ignore", "operator": "NotIn", "values": ["true"]},
                f"{what}: with namespaceOptOut, hostguard.dev/ignore=true opts a namespace out")
    else:
        c.ok("hostguard.dev/ignore" not in exprs,
             f"{what}: no namespace label opts out unless webhook.namespaceOptOut.enabled")
    c.equal(len(exprs), 2 if opt_out else 1, f"{what}: no other namespace condition")
    c.ok("objectSelector" not in webhook, f"{what}: no objectSelector (a label must not bypass it)")


def check_webhooks(c, docs, values, namespace, service):
    wh = values["webhook"]
    service_port = values["service"]["port"]
    vwc = of_kind(docs, "ValidatingWebhookConfiguration")[0]
    mwcs = of_kind(docs, "MutatingWebhookConfiguration")
    all_webhooks = [("/validate", w) for w in vwc["webhooks"]]
    all_webhooks += [("/mutate", w) for m in mwcs for w in m["webhooks"]]
    for path, w in all_webhooks:
        what = f"webhook {w['name']}"
        c.equal(w["clientConfig"].get("service"),
                {"name": service["metadata"]["name"], "namespace": namespace, "path": path,
                 "port": service_port}, f"{what}: calls the hostguard Service")
        c.ok("url" not in w["clientConfig"], f"{what}: no URL")
        c.equal(w["admissionReviewVersions"], ["v1"], f"{what}: admissionReviewVersions")
        c.equal(w["sideEffects"], "None", f"{what}: sideEffects")
        c.equal(w["timeoutSeconds"], wh["timeoutSeconds"], f"{what}: timeoutSeconds")
        c.equal(w["matchPolicy"], "Equivalent", f"{what}: matchPolicy")
        namespace_exclusions(c, w, namespace, wh["excludedNamespaces"], wh["namespaceOptOut"]["enabled"], what)
        for rule in w["rules"]:
            c.ok("*" not in rule["apiGroups"] + rule["resources"] + rule["operations"],
                 f"{what}: no wildcard rule (it would send every request, leases included)")
            c.ok(not {"DELETE", "CONNECT"} & set(rule["operations"]), f"{what}: CREATE/UPDATE only")

    workload_hooks = [w for w in vwc["webhooks"] if ("", "pods", "CREATE") in covered(w["rules"])]
    c.equal(len(workload_hooks), 1, "one validating webhook for pods and pod controllers")
    for w in workload_hooks:
        got = covered(w["rules"])
        want = {(g, r, op) for g, r in WORKLOAD_RESOURCES for op in WRITE_OPERATIONS}
        c.equal(sorted(want - got), [], "validating rules cover every pod controller and Pods")
        c.equal(w["failurePolicy"], wh["failurePolicy"], "workload webhook failurePolicy")
        c.ok(all(r["scope"] == "Namespaced" for r in w["rules"]), "workload rules are Namespaced")

    own_hooks = [w for w in vwc["webhooks"]
                 if ("hostguard.dev", "hostingpolicies", "CREATE") in covered(w["rules"])]
    c.equal(len(own_hooks), 1, "one validating webhook for hostguard's resources")
    for w in own_hooks:
        want = {(g, r, op) for g, r in OWN_RESOURCES for op in WRITE_OPERATIONS}
        c.equal(sorted(want - covered(w["rules"])), [], "HostingPolicy and AIWorkload validated")
        c.equal(w["failurePolicy"], wh["resourceValidation"]["failurePolicy"],
                "resource webhook failurePolicy")

    extra = {(k["group"], k["plural"], op) for k in values["podTemplateKinds"] for op in WRITE_OPERATIONS}
    if extra:
        tools = [w for w in vwc["webhooks"] if w["name"] == "aitools.validate.hostguard.dev"]
        c.equal(len(tools), 1, "the AI tools' webhook validates the podTemplateKinds")
        for w in tools:
            c.equal(sorted(extra - covered(w["rules"])), [], "every podTemplateKinds kind on CREATE and UPDATE")

    # ConfigMaps: only the config-file webhook sees them, and only those its match condition
    # lets through (the condition's text is checked against the engine's by tests/adapters.rs).
    config_hooks = [w for w in vwc["webhooks"] if ("", "configmaps", "CREATE") in covered(w["rules"])]
    tools_on = wh["aiTools"]["enabled"]
    want_config = tools_on and wh["aiTools"]["configFiles"]
    c.equal(len(config_hooks), 1 if want_config else 0,
            "ConfigMaps validated exactly when webhook.aiTools.configFiles (and aiTools) is on")
    for w in config_hooks:
        c.equal(w["name"], "configfiles.validate.hostguard.dev", "the config-file webhook's name")
        c.equal(covered(w["rules"]), {("", "configmaps", op) for op in WRITE_OPERATIONS},
                "config-file webhook: ConfigMaps on CREATE and UPDATE only")
        conditions = w.get("matchConditions") or []
        c.equal(len(conditions), 1, "config-file webhook: one match condition")
        c.ok(all("object.data" in m.get("expression", "") for m in conditions),
             "config-file webhook: the condition reads the ConfigMap's data")
        c.equal(w["failurePolicy"], wh["aiTools"]["failurePolicy"], "config-file webhook failurePolicy")

    if values["webhook"]["mutating"]["enabled"]:
        hooks = mwcs[0]["webhooks"]
        c.equal(len(hooks), 1, "one mutating webhook")
        for w in hooks:
            c.equal(covered(w["rules"]), {("", "pods", "CREATE")}, "mutation: Pods on CREATE only")
            c.equal(w.get("reinvocationPolicy"), "IfNeeded", "mutation reinvocationPolicy")
            c.equal(w["failurePolicy"], wh["failurePolicy"], "mutating webhook failurePolicy")


def check_aiworkload_roles(c, docs, values, name):
    """Who may write AIWorkloads may exempt workloads: the editor role is the chart's, bound by
    nobody, and aggregated into the namespace edit/admin roles only when asked for."""
    roles = {d["metadata"]["name"]: d for d in of_kind(docs, "ClusterRole")}
    view = roles.get(f"{name}-view")
    c.ok(view is not None, "a view ClusterRole for hostguard's resources")
    if view:
        c.equal(view["metadata"]["labels"].get("rbac.authorization.k8s.io/aggregate-to-view"), "true",
                "view role aggregated into view")
        c.ok(all(set(r["verbs"]) <= {"get", "list", "watch"} for r in view["rules"]),
             "view role only reads")
    editor = roles.get(f"{name}-aiworkload-editor")
    conf = values["rbac"]["aiWorkloadEditor"]
    c.equal(editor is not None, conf["create"], "AIWorkload editor ClusterRole created as configured")
    if editor:
        c.equal(permissions(editor["rules"]),
                {("hostguard.dev", "aiworkloads", v)
                 for v in ("get", "list", "watch", "create", "update", "patch", "delete")},
                "the editor role writes AIWorkloads and nothing else")
        labels = editor["metadata"]["labels"]
        aggregated = {k for k in labels if k.startswith("rbac.authorization.k8s.io/aggregate-to-")}
        want = ({"rbac.authorization.k8s.io/aggregate-to-edit", "rbac.authorization.k8s.io/aggregate-to-admin"}
                if conf["aggregateToNamespaceRoles"] else set())
        c.equal(aggregated, want,
                "editor aggregated into edit/admin only with aggregateToNamespaceRoles (self-service declarations)")
    for binding in of_kind(docs, "ClusterRoleBinding") + of_kind(docs, "RoleBinding"):
        c.ok(binding["roleRef"]["name"] != f"{name}-aiworkload-editor",
             f"{binding['kind']} {binding['metadata']['name']}: the chart binds the editor role to nobody")


def check_rbac(c, docs, values, namespace, sa_name, name):
    want = controller_permissions()
    # The platform team's own pod-template kinds are listed by the audit, and only listed.
    want["ClusterRole"] |= {(k["group"], k["plural"], "list") for k in values["podTemplateKinds"]}
    for d in of_kind(docs, "ClusterRole") + of_kind(docs, "Role"):
        what = f"{d['kind']}/{d['metadata']['name']}"
        for rule in d["rules"]:
            fields = [*rule.get("apiGroups", []), *rule.get("resources", []), *rule.get("verbs", []),
                      *rule.get("resourceNames", []), *rule.get("nonResourceURLs", [])]
            c.ok(not any("*" in x for x in fields), f"{what}: no wildcard in {rule}")
            c.ok("secrets" not in rule.get("resources", []), f"{what}: never Secrets")
            c.ok(not DANGEROUS_VERBS & set(rule.get("verbs", [])), f"{what}: no escalate/bind/impersonate")
    cluster_role = [d for d in of_kind(docs, "ClusterRole") if d["metadata"]["name"] == name][0]
    got = permissions(cluster_role["rules"])
    c.equal({"granted, not in RULES": sorted(got - want["ClusterRole"]),
             "in RULES, not granted": sorted(want["ClusterRole"] - got)},
            {"granted, not in RULES": [], "in RULES, not granted": []},
            "ClusterRole grants exactly the Scope::Cluster rules of src/cluster/rbac.rs")
    role = of_kind(docs, "Role")[0]
    c.equal(role["metadata"]["namespace"], namespace, "the Lease Role is in the release namespace")
    c.equal(permissions(role["rules"]), want["Role"],
            "Role grants exactly the Scope::OwnNamespace rules of src/cluster/rbac.rs")
    subject = [{"kind": "ServiceAccount", "name": sa_name, "namespace": namespace}]
    main_binding = [b for b in of_kind(docs, "ClusterRoleBinding") if b["metadata"]["name"] == name][0]
    for binding, target in ((main_binding, cluster_role),
                            (of_kind(docs, "RoleBinding")[0], role)):
        c.equal(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io", "kind": target["kind"],
                                     "name": target["metadata"]["name"]}, f"{binding['kind']} roleRef")
        c.equal(binding["subjects"], subject, f"{binding['kind']} subject")
    for sa in of_kind(docs, "ServiceAccount"):
        c.equal(sa["metadata"]["name"], sa_name, "ServiceAccount name")
        c.equal(sa.get("automountServiceAccountToken"), False,
                "the ServiceAccount gives no token to pods that do not ask for one")


def check_tls(c, docs, values, namespace, service, deployment, self_signed):
    tls = values["tls"]
    cert_manager = values["certManager"]
    pod = deployment["spec"]["template"]["spec"]
    secret_name = {v["name"]: v for v in pod["volumes"]}["tls"]["secret"]["secretName"]
    configs = of_kind(docs, "ValidatingWebhookConfiguration") + of_kind(docs, "MutatingWebhookConfiguration")
    svc = service["metadata"]["name"]
    if not cert_manager["enabled"]:
        c.equal(secret_name, tls["existingSecret"], "the pod mounts the given Secret")
        for cfg in configs:
            c.ok("cert-manager.io/inject-ca-from" not in (cfg["metadata"].get("annotations") or {}),
                 f"{cfg['kind']}: no CA injection without cert-manager")
            for w in cfg["webhooks"]:
                c.equal(w["clientConfig"].get("caBundle"), tls["caBundle"], f"{w['name']}: caBundle")
        return

    certs = {d["metadata"]["name"]: d for d in of_kind(docs, "Certificate")}
    serving = [d for d in certs.values() if not d["spec"].get("isCA")]
    c.equal(len(serving), 1, "one serving Certificate")
    cert = serving[0]
    c.equal(cert["spec"]["secretName"], secret_name, "the pod mounts the serving Certificate's Secret")
    c.ok(f"{svc}.{namespace}.svc" in cert["spec"]["dnsNames"], "certificate valid for the Service's DNS name")
    c.ok("server auth" in cert["spec"].get("usages", []), "certificate usable for server auth")
    c.ok(f"{svc}.{namespace}.svc.cluster.local" in cert["spec"]["dnsNames"],
         "certificate valid for the Service's fully qualified DNS name")
    c.equal(cert["spec"]["duration"], cert_manager["duration"], "certificate duration")
    c.equal(cert["spec"]["renewBefore"], cert_manager["renewBefore"], "certificate renewBefore")
    c.equal(cert["spec"]["privateKey"].get("rotationPolicy"), "Always", "a renewal rotates the key")
    for cfg in configs:
        c.equal((cfg["metadata"].get("annotations") or {}).get("cert-manager.io/inject-ca-from"),
                f"{namespace}/{cert['metadata']['name']}", f"{cfg['kind']}: CA injected from the serving Certificate")
        for w in cfg["webhooks"]:
            c.ok("caBundle" not in w["clientConfig"], f"{w['name']}: caBundle left to the CA injector")
    if self_signed:
        issuers = {d["metadata"]["name"]: d for d in of_kind(docs, "Issuer")}
        ref = cert["spec"]["issuerRef"]
        ca_issuer = issuers.get(ref["name"], {})
        c.equal(ref.get("kind"), "Issuer", "serving certificate signed by the chart's Issuer")
        ca_cert = [d for d in certs.values() if d["spec"].get("isCA")]
        c.equal(len(ca_cert), 1, "one CA Certificate")
        c.equal(ca_issuer.get("spec", {}).get("ca", {}).get("secretName"),
                ca_cert[0]["spec"]["secretName"] if ca_cert else None, "CA Issuer uses the CA Certificate")
        root = issuers.get(ca_cert[0]["spec"]["issuerRef"]["name"], {}) if ca_cert else {}
        c.equal(root.get("spec"), {"selfSigned": {}}, "CA Certificate signed by the self-signed Issuer")
    else:
        want = dict(cert_manager["issuerRef"])
        c.equal({k: cert["spec"]["issuerRef"].get(k) for k in want}, want, "serving certificate from the given issuer")


def check_optional(c, docs, values, namespace, deployment, service):
    selector = deployment["spec"]["selector"]["matchLabels"]
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        c.equal(pdb["spec"]["selector"]["matchLabels"], selector, "PDB selects the hostguard pods")
        c.equal(pdb["spec"]["maxUnavailable"], values["podDisruptionBudget"]["maxUnavailable"], "PDB budget")

    np_values = values["networkPolicy"]
    for np in of_kind(docs, "NetworkPolicy"):
        spec = np["spec"]
        c.equal(spec["podSelector"]["matchLabels"], selector, "NetworkPolicy selects the hostguard pods")
        by_port = {}
        for rule in spec.get("ingress", []):
            c.ok(rule.get("ports"), "every ingress rule names its ports")
            for p in rule.get("ports", []):
                by_port[p["port"]] = rule
        c.equal(sorted(by_port), sorted(["https"] + (["admin"] if np_values["metricsFrom"] else [])),
                "ingress only to the webhook port (and the admin port when scrapers are given)")
        c.equal(by_port.get("https", {}).get("from"), np_values["webhookFrom"] or None, "webhook peers")
        if np_values["metricsFrom"]:
            c.equal(by_port["admin"]["from"], np_values["metricsFrom"], "metrics peers")
        egress = np_values["egress"]
        c.equal("Egress" in spec["policyTypes"], egress["enabled"], "Egress policy type")
        if egress["enabled"]:
            ports = {(p["port"], p["protocol"]) for rule in spec["egress"] for p in rule["ports"]}
            c.ok({(53, "UDP"), (53, "TCP")} <= ports, "egress allows DNS")
            c.ok({(p, "TCP") for p in egress["apiServerPorts"]} <= ports, "egress allows the API server")

    for sm in of_kind(docs, "ServiceMonitor"):
        sm_values = values["serviceMonitor"]
        labels = sm["metadata"]["labels"]
        c.ok(all(labels.get(k) == v for k, v in sm_values["labels"].items()), "ServiceMonitor labels")
        svc_labels = service["metadata"]["labels"]
        c.ok(all(svc_labels.get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items()),
             "ServiceMonitor selects the Service")
        c.equal(sm["spec"]["namespaceSelector"], {"matchNames": [namespace]}, "ServiceMonitor namespace")
        endpoint = sm["spec"]["endpoints"][0]
        c.ok(endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}, "ServiceMonitor port exists")
        c.equal((endpoint["port"], endpoint["path"]), ("metrics", "/metrics"), "ServiceMonitor scrapes /metrics")
        c.equal((endpoint["interval"], endpoint["scrapeTimeout"]),
                (sm_values["interval"], sm_values["scrapeTimeout"]), "scrape interval and timeout")


def vap_expected(values):
    """Whether the chart installs the API server's fallback for the default policy: asked for, and
    a default policy with a CEL counterpart (`hostguard vap` translates Deny policies only)."""
    return (values["validatingAdmissionPolicy"]["enabled"] and values["defaultPolicy"]["enabled"]
            and values["defaultPolicy"]["action"] == "Deny")


def check_default_policy(c, docs, values):
    policies = of_kind(docs, "HostingPolicy")
    if not policies:
        return
    example = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    policy = policies[0]
    c.equal(policy["metadata"]["name"], example["metadata"]["name"], "default policy name")
    want = dict(example["spec"], action=values["defaultPolicy"]["action"])
    c.equal(policy["spec"], want, "default policy = examples/policies/openai-stateless-on-azure.yaml (action from values)")

//! `hostguard check` resolves each reference in the scope of the document that makes it: the
//! same file, then the same directory, then each parent up to the `-f` root; every `-f` root
//! alone unless `--bundle`; two different candidates at one distance are ambiguous. Every
//! scenario runs with its files named so that they sort in every order, and with its `-f` roots
//! in every order: the verdicts must not change.

use std::collections::BTreeMap;
use std::error::Error;
use std::path::Path;

use assert_cmd::Command;
use pretty_assertions::assert_eq;
use serde_json::Value;

type TestResult = Result<(), Box<dyn Error>>;

const AZURE: &str = "https://contoso.openai.azure.com/openai/v1";
const DIRECT: &str = "https://api.openai.com/v1";

/// A Deployment that takes its endpoint from ConfigMap `ai/app-config` (its key from a Secret).
fn deployment(name: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: ai}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
        - name: app
          image: example/chat
          envFrom: [{{configMapRef: {{name: app-config}}}}]
          env:
            - name: OPENAI_API_KEY
              valueFrom: {{secretKeyRef: {{name: openai, key: key}}}}
"
    )
}

fn config_map(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: ConfigMap
metadata: {{name: app-config, namespace: ai}}
data:
  OPENAI_BASE_URL: {url}
"
    )
}

fn write(root: &Path, rel: &str, text: &str) -> std::io::Result<()> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)
}

/// Runs `hostguard check -o json --cluster-provider azure ARGS` in `dir`.
fn check(dir: &Path, args: &[&str]) -> Result<(i32, Value), Box<dyn Error>> {
    let out = Command::cargo_bin("hostguard")?
        .current_dir(dir)
        .env_remove("HOSTGUARD_CLUSTER_PROVIDER")
        .args(["check", "-o", "json", "--cluster-provider", "azure"])
        .args(args)
        .output()?;
    let stdout = String::from_utf8(out.stdout)?;
    let stderr = String::from_utf8(out.stderr)?;
    assert!(stderr.is_empty(), "{stderr}");
    Ok((
        out.status.code().unwrap_or(-1),
        serde_json::from_str(&stdout)?,
    ))
}

/// The verdict of each Deployment by name, with its violation messages.
fn deployments(report: &Value) -> BTreeMap<String, (String, Vec<String>)> {
    let mut out = BTreeMap::new();
    for r in report["results"].as_array().into_iter().flatten() {
        if r["kind"] != "Deployment" {
            continue;
        }
        let messages = r["violations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["message"].as_str().map(str::to_string))
            .collect();
        out.insert(
            r["name"].as_str().unwrap_or("").to_string(),
            (r["verdict"].as_str().unwrap_or("").to_string(), messages),
        );
    }
    out
}

fn verdicts(report: &Value) -> BTreeMap<String, String> {
    deployments(report)
        .into_iter()
        .map(|(k, (v, _))| (k, v))
        .collect()
}

/// Name prefixes that make files sort one way and the other.
const ORDERS: [[&str; 2]; 2] = [["a", "z"], ["z", "a"]];

fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first.clone());
            out.push(p);
        }
    }
    out
}

fn expect(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The repository: two environments with their own `ai/app-config`. Each is judged with
/// its own, whichever sorts first and however the check is invoked.
#[test]
fn each_environment_is_judged_with_its_own_config_map() -> TestResult {
    for [first, second] in ORDERS {
        for (dev, prod) in [(first, second), (second, first)] {
            let dir = tempfile::tempdir()?;
            let root = dir.path();
            let dev_dir = format!("envs/{dev}-dev");
            let prod_dir = format!("envs/{prod}-prod");
            write(
                root,
                &format!("{dev_dir}/{first}-app.yaml"),
                &deployment("chat-dev"),
            )?;
            write(
                root,
                &format!("{dev_dir}/{second}-config.yaml"),
                &config_map(DIRECT),
            )?;
            write(
                root,
                &format!("{prod_dir}/{second}-app.yaml"),
                &deployment("chat-prod"),
            )?;
            write(
                root,
                &format!("{prod_dir}/{first}-config.yaml"),
                &config_map(AZURE),
            )?;
            let want = expect(&[("chat-dev", "deny"), ("chat-prod", "allow")]);
            let (code, report) = check(root, &["-f", "."])?;
            assert_eq!((code, verdicts(&report)), (1, want.clone()), "-f .");
            for roots in permutations(&[dev_dir.as_str(), prod_dir.as_str()]) {
                let args = ["-f", roots[0], "-f", roots[1]];
                let (_, report) = check(root, &args)?;
                assert_eq!(verdicts(&report), want, "{args:?}");
                let mut bundled = args.to_vec();
                bundled.push("--bundle");
                let (_, report) = check(root, &bundled)?;
                assert_eq!(verdicts(&report), want, "{bundled:?}");
            }
        }
    }
    Ok(())
}

/// The same file is nearer than its directory, the directory nearer than its parents, and a
/// parent is looked in when nothing nearer holds the ConfigMap.
#[test]
fn the_same_file_then_the_directory_then_each_parent() -> TestResult {
    for [first, second] in ORDERS {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        // Same file (Azure) over the same directory (direct).
        write(
            root,
            &format!("one/{first}-app.yaml"),
            &format!("{}---\n{}", deployment("same-file"), config_map(AZURE)),
        )?;
        write(
            root,
            &format!("one/{second}-config.yaml"),
            &config_map(DIRECT),
        )?;
        // Same directory (Azure) over the parent (direct).
        write(root, &format!("{first}-config.yaml"), &config_map(DIRECT))?;
        write(
            root,
            &format!("two/{second}-app.yaml"),
            &deployment("same-dir"),
        )?;
        write(
            root,
            &format!("two/{first}-config.yaml"),
            &config_map(AZURE),
        )?;
        // Only two levels up.
        write(root, "three/deeper/app.yaml", &deployment("grandparent"))?;
        let (_, report) = check(root, &["-f", "."])?;
        assert_eq!(
            verdicts(&report),
            expect(&[
                ("grandparent", "deny"),
                ("same-dir", "allow"),
                ("same-file", "allow")
            ])
        );
        // The root's ConfigMap is direct: found from two levels down, so denied; an Azure one
        // in the root allows it.
        write(root, &format!("{first}-config.yaml"), &config_map(AZURE))?;
        let (_, report) = check(root, &["-f", "."])?;
        assert_eq!(verdicts(&report)["grandparent"], "allow");
    }
    Ok(())
}

/// A sibling directory is never in scope: a Deployment whose own tree holds no ConfigMap is
/// judged with none (unresolved: denied), never with its neighbour's.
#[test]
fn sibling_directories_never_lend_config_maps() -> TestResult {
    for [first, second] in ORDERS {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        write(root, &format!("{first}/app.yaml"), &deployment("chat"))?;
        write(root, &format!("{second}/config.yaml"), &config_map(AZURE))?;
        let (code, report) = check(root, &["-f", "."])?;
        assert_eq!((code, verdicts(&report)), (1, expect(&[("chat", "deny")])));
        let (_, messages) = &deployments(&report)["chat"];
        assert!(
            messages
                .iter()
                .any(|m| m.contains("ConfigMap \"app-config\" is not available")),
            "{messages:?}"
        );
    }
    Ok(())
}

/// Every `-f` root is a scope of its own; `--bundle` joins them, the other roots farther than
/// anything in the document's own root.
#[test]
fn roots_are_separate_unless_bundled() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    write(root, "base/app.yaml", &deployment("chat"))?;
    write(root, "envs/dev/config.yaml", &config_map(DIRECT))?;
    write(root, "envs/prod/config.yaml", &config_map(AZURE))?;
    for roots in permutations(&["base", "envs/prod"]) {
        let alone = ["-f", roots[0], "-f", roots[1]];
        let (_, report) = check(root, &alone)?;
        assert_eq!(verdicts(&report), expect(&[("chat", "deny")]), "{alone:?}");
        let (code, report) = check(root, &[&alone[..], &["--bundle"]].concat())?;
        assert_eq!((code, verdicts(&report)), (0, expect(&[("chat", "allow")])));
    }
    for roots in permutations(&["base", "envs/dev"]) {
        let args = ["-f", roots[0], "-f", roots[1], "--bundle"];
        let (_, report) = check(root, &args)?;
        assert_eq!(verdicts(&report), expect(&[("chat", "deny")]), "{args:?}");
    }
    // The bundle is farther than the document's own root.
    write(root, "base/config.yaml", &config_map(AZURE))?;
    let (_, report) = check(root, &["-f", "envs/dev", "-f", "base", "--bundle"])?;
    assert_eq!(verdicts(&report), expect(&[("chat", "allow")]));
    Ok(())
}

/// Two different ConfigMaps at one distance: the reference is unresolved, and the message names
/// both files, the same whatever the order.
#[test]
fn different_candidates_at_one_distance_are_ambiguous_and_named() -> TestResult {
    let mut seen = Vec::new();
    for [first, second] in ORDERS {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        write(root, "base/app.yaml", &deployment("chat"))?;
        write(root, "dev/config.yaml", &config_map(AZURE))?;
        write(
            root,
            "prod/config.yaml",
            &config_map(format!("{AZURE}/").as_str()),
        )?;
        for roots in permutations(&["base", "dev", "prod"]) {
            let args = ["-f", roots[0], "-f", roots[1], "-f", roots[2], "--bundle"];
            let (code, report) = check(root, &args)?;
            assert_eq!(code, 1, "{args:?}");
            let (verdict, messages) = &deployments(&report)["chat"];
            assert_eq!(verdict, "deny");
            let message = messages
                .iter()
                .find(|m| m.contains("is ambiguous"))
                .cloned()
                .unwrap_or_default();
            assert!(
                message.contains("dev/config.yaml:1 and prod/config.yaml:1"),
                "{args:?}: {messages:?}"
            );
            seen.push(message);
        }
        // Two files of one directory are at one distance too; equal ones are not ambiguous.
        write(root, &format!("one/{first}-app.yaml"), &deployment("one"))?;
        write(
            root,
            &format!("one/{second}-config.yaml"),
            &config_map(AZURE),
        )?;
        write(
            root,
            &format!("one/{first}-config.yaml"),
            &config_map(AZURE),
        )?;
        let (_, report) = check(root, &["-f", "one"])?;
        assert_eq!(verdicts(&report), expect(&[("one", "allow")]));
        write(
            root,
            &format!("one/{first}-config.yaml"),
            &config_map(DIRECT),
        )?;
        let (_, report) = check(root, &["-f", "one"])?;
        let (verdict, messages) = &deployments(&report)["one"];
        assert_eq!(verdict, "deny");
        assert!(
            messages
                .iter()
                .any(|m| m.contains("one/a-config.yaml:1 and one/z-config.yaml:1 differ")),
            "{messages:?}"
        );
    }
    seen.dedup();
    assert_eq!(seen.len(), 1, "{seen:?}");
    Ok(())
}

const STATEFUL: &str = "apiVersion: hostguard.dev/v1alpha1
kind: AIWorkload
metadata: {name: chat, namespace: ai}
spec:
  selector: {matchLabels: {app: chat}}
  provider: openai
  apiClass: stateful
";

const WARN_POLICY: &str = "apiVersion: hostguard.dev/v1alpha1
kind: HostingPolicy
metadata: {name: openai-stateless-on-azure}
spec:
  provider: openai
  apiClasses: [stateless]
  action: Warn
  endpoints:
    allowedHosts: ['*.openai.azure.com']
";

const NAMESPACE_POLICY: &str = "apiVersion: hostguard.dev/v1alpha1
kind: HostingPolicy
metadata: {name: production-only}
spec:
  provider: openai
  apiClasses: [stateless]
  action: Deny
  namespaceSelector: {matchLabels: {env: prod}}
  endpoints:
    allowedHosts: ['*.openai.azure.com']
";

fn namespace(env: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ai\n  labels: {{env: {env}}}\n")
}

/// AIWorkloads, HostingPolicies and Namespace labels follow the same rules as ConfigMaps.
#[test]
fn ai_workloads_policies_and_namespaces_are_scoped_too() -> TestResult {
    for [first, second] in ORDERS {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        // Declared stateful in dev only: dev is not governed, prod is (and calls OpenAI).
        write(root, &format!("{first}-dev/app.yaml"), &deployment("chat"))?;
        write(root, &format!("{first}-dev/aiw.yaml"), STATEFUL)?;
        write(
            root,
            &format!("{first}-dev/config.yaml"),
            &config_map(DIRECT),
        )?;
        write(
            root,
            &format!("{second}-prod/app.yaml"),
            &deployment("chat").replace("name: chat,", "name: chat-prod,"),
        )?;
        write(
            root,
            &format!("{second}-prod/config.yaml"),
            &config_map(DIRECT),
        )?;
        let (_, report) = check(root, &["-f", "."])?;
        assert_eq!(
            verdicts(&report),
            expect(&[("chat", "allow"), ("chat-prod", "deny")])
        );
        // A policy in prod replaces the default there only.
        write(root, &format!("{second}-prod/policy.yaml"), WARN_POLICY)?;
        let (_, report) = check(root, &["-f", "."])?;
        assert_eq!(
            verdicts(&report),
            expect(&[("chat", "allow"), ("chat-prod", "warn")])
        );
    }
    for [first, second] in ORDERS {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        // A policy for namespaces labelled env=prod, in the root: each environment's Namespace
        // decides.
        write(root, "policy.yaml", NAMESPACE_POLICY)?;
        write(root, &format!("{first}-dev/app.yaml"), &deployment("dev"))?;
        write(
            root,
            &format!("{first}-dev/config.yaml"),
            &config_map(DIRECT),
        )?;
        write(root, &format!("{first}-dev/ns.yaml"), &namespace("dev"))?;
        write(
            root,
            &format!("{second}-prod/app.yaml"),
            &deployment("prod"),
        )?;
        write(
            root,
            &format!("{second}-prod/config.yaml"),
            &config_map(DIRECT),
        )?;
        write(root, &format!("{second}-prod/ns.yaml"), &namespace("prod"))?;
        let (_, report) = check(root, &["-f", "."])?;
        assert_eq!(
            verdicts(&report),
            expect(&[("dev", "allow"), ("prod", "deny")])
        );
        // Two different Namespaces at one distance: labels unknown, the policy applies (fail
        // closed), and a warning names both files.
        write(root, &format!("{first}-dev/ns2.yaml"), &namespace("prod"))?;
        let (_, report) = check(root, &["-f", "."])?;
        assert_eq!(verdicts(&report)["dev"], "deny");
        let dev = report["results"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"] == "dev" && r["kind"] == "Deployment")
            .cloned()
            .unwrap_or_default();
        let warnings = dev["warnings"].to_string();
        assert!(
            warnings.contains("Namespace \\\"ai\\\" is ambiguous")
                && warnings.contains("ns2.yaml:1"),
            "{warnings}"
        );
    }
    Ok(())
}

/// Two different AIWorkloads or HostingPolicies of one name at one distance could govern the
/// document either way: it is denied, naming both files.
#[test]
fn ambiguous_ai_workloads_and_policies_deny_naming_both_files() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    write(root, "app.yaml", &deployment("chat"))?;
    write(root, "config.yaml", &config_map(AZURE))?;
    write(root, "a.yaml", STATEFUL)?;
    write(root, "b.yaml", &STATEFUL.replace("stateful", "stateless"))?;
    let (_, report) = check(root, &["-f", "."])?;
    let (verdict, messages) = &deployments(&report)["chat"];
    assert_eq!(verdict, "deny");
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("AIWorkload ai/chat is ambiguous: ./a.yaml:1 and ./b.yaml:1")),
        "{messages:?}"
    );
    std::fs::remove_file(root.join("b.yaml"))?;
    write(root, "p1.yaml", WARN_POLICY)?;
    write(
        root,
        "p2.yaml",
        &WARN_POLICY.replace("action: Warn", "action: Audit"),
    )?;
    let (_, report) = check(root, &["-f", "."])?;
    let (verdict, messages) = &deployments(&report)["chat"];
    assert_eq!(verdict, "deny");
    assert!(
        messages.iter().any(|m| m.starts_with(
            "HostingPolicy \"openai-stateless-on-azure\" is ambiguous: ./p1.yaml:1 and ./p2.yaml:1"
        )),
        "{messages:?}"
    );
    Ok(())
}

/// The monorepo of the README (Scopes), with the verdicts it announces.
#[test]
fn the_readme_monorepo_gets_the_verdicts_the_readme_announces() -> TestResult {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    write(
        root,
        "gitops/policies.yaml",
        WARN_POLICY.replace("Warn", "Deny").as_str(),
    )?;
    write(
        root,
        "gitops/base/chat.yaml",
        &format!("{}---\n{}", deployment("chat"), namespace("any")),
    )?;
    write(root, "gitops/envs/dev/config.yaml", &config_map(DIRECT))?;
    write(root, "gitops/envs/prod/config.yaml", &config_map(AZURE))?;
    write(
        root,
        "gitops/envs/prod/chat.yaml",
        &deployment("chat-canary"),
    )?;
    let (_, report) = check(root, &["-f", "gitops/"])?;
    assert_eq!(
        verdicts(&report),
        expect(&[("chat", "deny"), ("chat-canary", "allow")])
    );
    let bundle = |env: &str| {
        let env = format!("gitops/envs/{env}");
        check(root, &["--bundle", "-f", "gitops/base", "-f", &env]).map(|(_, r)| verdicts(&r))
    };
    assert_eq!(bundle("dev")?, expect(&[("chat", "deny")]));
    assert_eq!(
        bundle("prod")?,
        expect(&[("chat", "allow"), ("chat-canary", "allow")])
    );
    let args = [
        "--bundle",
        "-f",
        "gitops/base",
        "-f",
        "gitops/envs/dev",
        "-f",
        "gitops/envs/prod",
    ];
    let (_, report) = check(root, &args)?;
    let (verdict, messages) = &deployments(&report)["chat"];
    assert_eq!(verdict, "deny");
    assert!(
        messages.iter().any(|m| m.contains(
            "ConfigMap \"app-config\", which is ambiguous: gitops/envs/dev/config.yaml:1 and gitops/envs/prod/config.yaml:1 differ at the same distance"
        )),
        "{messages:?}"
    );
    Ok(())
}

//! `hostguard check`: evaluates manifests (files, directories, stdin; the output of
//! `helm template` or `kustomize build`) with the same engine as the webhook, for GitOps CI.
//!
//! The input is a bundle: HostingPolicies in it join the policies in force, and AIWorkloads,
//! ConfigMaps and Namespaces in it fill the offline snapshot, so a Deployment is judged with the
//! ConfigMap it reads from the same repository. Every other document is evaluated as a CREATE.
//! Exit code 0: nothing denied; 1: something denied; 2: the input or a policy cannot be read.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use serde::Deserialize;
use serde_json::Value;

use super::report::{Format, Report};
use super::{ClusterArgs, EXIT_BAD_INPUT, EXIT_CLEAN, EXIT_DENIED};
use crate::api::{AIWorkload, ClusterProvider, GROUP, HostingPolicy};
use crate::manifest::{self, Document};
use crate::policy::{CompiledPolicy, Decision, Operation, Request, evaluate};
use crate::policy_files::{PolicyArgs, PolicyFiles, compile_or_default, load_policy_files};
use crate::snapshot::{DeclaredWorkload, Snapshot};

/// Arguments of `hostguard check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// A manifest file, a directory (read recursively: *.yaml, *.yml, *.json), or - for standard
    /// input. Repeatable.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub filenames: Vec<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Runs `hostguard check` and returns its exit code.
pub fn run(args: CheckArgs) -> u8 {
    let report = match check(&args) {
        Ok(report) => report,
        Err(message) => {
            eprintln!("hostguard check: {message}");
            return EXIT_BAD_INPUT;
        }
    };
    let rendered = report.render(args.output);
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(rendered.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (`| head`) is not a reason to change the verdict.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("hostguard check: cannot write the report: {e}");
            return EXIT_BAD_INPUT;
        }
    }
    if report.denied() {
        EXIT_DENIED
    } else {
        EXIT_CLEAN
    }
}

/// Reads the input and the policies and evaluates every document.
fn check(args: &CheckArgs) -> Result<Report, String> {
    let loaded = manifest::load_paths(&args.filenames).map_err(|e| e.to_string())?;
    // What was skipped (a FIFO, a device, a link out of the tree) is said, not judged.
    for note in &loaded.notes {
        eprintln!("hostguard check: note: {note}");
    }
    let files = load_policy_files(&args.policy.policies)?;
    check_documents(&loaded.documents, files, args.cluster.cluster_provider)
}

/// Evaluates documents as `check` does: HostingPolicies among them join `policies` (the built-in
/// default applies when there are none at all), AIWorkloads, ConfigMaps and Namespaces among them
/// fill the snapshot, and every non-empty document gets a decision. Fails when a policy is
/// invalid, naming the file, line and field.
pub fn check_documents(
    documents: &[Document],
    files: PolicyFiles,
    cluster_provider: ClusterProvider,
) -> Result<Report, String> {
    let mut policies = files.policies.clone();
    policies.extend(input_policies(documents)?);
    let policies = compile_or_default(&policies)?;
    let mut snapshot = snapshot_of(documents, cluster_provider);
    files.declare_into(&mut snapshot)?;

    let mut report = Report::new(&policies);
    for doc in documents.iter().filter(|d| !d.is_empty()) {
        let decision = match not_an_object(doc) {
            Some(reason) => Decision::skipped(reason),
            None => evaluate(
                &Request {
                    operation: Operation::Create,
                    object: Some(&doc.value),
                    old_object: None,
                    namespace: doc.namespace(),
                },
                &policies,
                &snapshot,
            ),
        };
        report.push(doc, decision);
    }
    Ok(report)
}

/// Why a document is not a Kubernetes object (a Helm values file, a bare list), if it is not.
fn not_an_object(doc: &Document) -> Option<String> {
    let what = match &doc.value {
        Value::Object(_) => match (doc.api_version(), doc.kind()) {
            (Some(_), Some(_)) => return None,
            (None, None) => "no apiVersion/kind",
            (None, Some(_)) => "no apiVersion",
            (Some(_), None) => "no kind",
        },
        Value::Array(_) => "the document is a list",
        Value::String(_) => "the document is a string",
        Value::Number(_) => "the document is a number",
        Value::Bool(_) => "the document is a boolean",
        Value::Null => "the document is empty",
    };
    Some(format!("not a Kubernetes object ({what})"))
}

fn is_hostguard(doc: &Document, kind: &str) -> bool {
    doc.kind() == Some(kind)
        && doc
            .api_version()
            .is_some_and(|v| v.split('/').next() == Some(GROUP))
}

fn is_core(doc: &Document, kind: &str) -> bool {
    doc.kind() == Some(kind) && doc.api_version() == Some("v1")
}

/// The HostingPolicies of the input, each checked as the engine will compile it; every problem
/// of every policy is reported with its file, line and field.
fn input_policies(documents: &[Document]) -> Result<Vec<HostingPolicy>, String> {
    let mut policies = Vec::new();
    let mut errors = Vec::new();
    for doc in documents
        .iter()
        .filter(|d| is_hostguard(d, "HostingPolicy"))
    {
        let name = doc.name().unwrap_or("");
        match serde_path_to_error::deserialize::<_, HostingPolicy>(&doc.value) {
            Err(e) => {
                let path = e.path().to_string();
                errors.push(format!(
                    "{}:{}: HostingPolicy {name:?}: {path}: {}",
                    doc.source,
                    doc.line_of(&path),
                    e.inner()
                ));
            }
            Ok(policy) => {
                if let Err(problems) = CompiledPolicy::compile(&policy) {
                    for p in problems {
                        errors.push(format!("{}:{}: {p}", doc.source, doc.line_of(&p.path)));
                    }
                }
                policies.push(policy);
            }
        }
    }
    if errors.is_empty() {
        Ok(policies)
    } else {
        Err(errors.join("\n"))
    }
}

/// The offline snapshot: the cluster provider given, and the AIWorkloads, ConfigMaps and
/// Namespaces of the input. It is not authoritative: a ConfigMap that is not in the input is
/// unknown, not absent. Malformed objects are left out here; the engine reports a malformed
/// AIWorkload on its own document.
fn snapshot_of(documents: &[Document], cluster_provider: ClusterProvider) -> Snapshot {
    let mut snapshot = Snapshot::offline(cluster_provider);
    for doc in documents {
        if is_hostguard(doc, "AIWorkload") {
            if let Ok(mut aiw) = AIWorkload::deserialize(&doc.value) {
                aiw.metadata
                    .namespace
                    .get_or_insert_with(|| "default".into());
                if let Ok(declared) = DeclaredWorkload::from_resource(&aiw) {
                    snapshot.insert_declared(declared);
                }
            }
        } else if is_core(doc, "ConfigMap") {
            if let Ok(cm) = ConfigMap::deserialize(&doc.value) {
                snapshot.insert_config_map(&cm, "default");
            }
        } else if is_core(doc, "Namespace")
            && let Ok(ns) = Namespace::deserialize(&doc.value)
        {
            snapshot.insert_namespace(&ns);
        }
    }
    snapshot
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::parse_str;
    use crate::policy::Verdict;
    use pretty_assertions::assert_eq;

    fn docs(text: &str) -> Vec<Document> {
        match parse_str("input.yaml", text) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    fn verdicts(report: &Report) -> Vec<(Option<&str>, Verdict)> {
        report
            .results
            .iter()
            .map(|e| (e.kind.as_deref(), e.verdict))
            .collect()
    }

    const KEY_ONLY: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: chat, namespace: team-a}
spec:
  template:
    metadata: {labels: {app: chat}}
    spec:
      containers:
        - name: app
          envFrom: [{configMapRef: {name: ai}}]
          env:
            - name: OPENAI_API_KEY
              valueFrom: {secretKeyRef: {name: openai, key: key}}
";

    #[test]
    fn config_maps_of_the_input_resolve_endpoints() -> Result<(), String> {
        let alone = check_documents(
            &docs(KEY_ONLY),
            PolicyFiles::default(),
            ClusterProvider::Azure,
        )?;
        assert_eq!(verdicts(&alone), vec![(Some("Deployment"), Verdict::Deny)]);

        let bundle = format!(
            "{KEY_ONLY}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ai, namespace: team-a}}\ndata:\n  OPENAI_BASE_URL: https://contoso.openai.azure.com/openai/v1\n"
        );
        let report = check_documents(
            &docs(&bundle),
            PolicyFiles::default(),
            ClusterProvider::Azure,
        )?;
        assert_eq!(
            verdicts(&report),
            vec![
                (Some("Deployment"), Verdict::Allow),
                (Some("ConfigMap"), Verdict::Skipped)
            ]
        );
        Ok(())
    }

    #[test]
    fn empty_documents_are_not_listed_and_values_files_are_skipped() -> Result<(), String> {
        let report = check_documents(
            &docs("---\n---\nimage: {tag: x}\n---\n- a\n"),
            PolicyFiles::default(),
            ClusterProvider::Unknown,
        )?;
        let reasons: Vec<Option<&str>> = report
            .results
            .iter()
            .map(|e| e.skipped_reason.as_deref())
            .collect();
        assert_eq!(
            reasons,
            vec![
                Some("not a Kubernetes object (no apiVersion/kind)"),
                Some("not a Kubernetes object (the document is a list)")
            ]
        );
        assert_eq!(report.results[0].document, 1);
        Ok(())
    }

    #[test]
    fn policies_in_the_input_replace_the_default() -> Result<(), String> {
        let policy = "apiVersion: hostguard.dev/v1alpha1
kind: HostingPolicy
metadata: {name: openai-via-gateway}
spec:
  provider: openai
  apiClasses: [stateless]
  action: Warn
  endpoints:
    allowedHosts: [gateway.contoso.com]
    unresolved: Deny
    inCluster: Warn
---
";
        let report = check_documents(
            &docs(&format!("{policy}{KEY_ONLY}")),
            PolicyFiles::default(),
            ClusterProvider::Azure,
        )?;
        let deployment = &report.results[1];
        assert_eq!(deployment.verdict, Verdict::Warn);
        assert!(
            deployment
                .violations
                .iter()
                .all(|v| v.policy == "openai-via-gateway")
        );
        assert_eq!(report.policies.len(), 1);
        Ok(())
    }

    #[test]
    fn invalid_policies_in_the_input_name_file_line_and_field() {
        let policy = "apiVersion: hostguard.dev/v1alpha1
kind: HostingPolicy
metadata: {name: broken}
spec:
  provider: openai
  apiClasses: [stateless]
  endpoints:
    allowedHosts:
      - https://gateway.contoso.com
";
        let err = check_documents(
            &docs(policy),
            PolicyFiles::default(),
            ClusterProvider::Azure,
        )
        .err();
        let err = err.unwrap_or_default();
        assert!(
            err.starts_with(
                "input.yaml:9: HostingPolicy \"broken\": spec.endpoints.allowedHosts[0]: "
            ),
            "{err}"
        );
    }

    #[test]
    fn malformed_ai_workloads_are_denied_on_their_own_document() -> Result<(), String> {
        let aiw = "apiVersion: hostguard.dev/v1alpha1
kind: AIWorkload
metadata: {name: chat, namespace: team-a}
spec:
  selector: {matchExpressions: [{key: app, operator: Sideways}]}
  provider: openai
";
        let report = check_documents(&docs(aiw), PolicyFiles::default(), ClusterProvider::Azure)?;
        assert_eq!(verdicts(&report), vec![(Some("AIWorkload"), Verdict::Deny)]);
        Ok(())
    }
}

//! `hostguard check`: evaluates manifests (files, directories, stdin; the output of
//! `helm template` or `kustomize build`) with the same engine as the webhook, for GitOps CI.
//!
//! HostingPolicies in the input join the policies in force, and AIWorkloads, ConfigMaps and
//! Namespaces in it fill the offline snapshot, each for the documents in its scope
//! ([`crate::manifest::scope`]: the same file, the same directory, the directories above up to
//! the `-f` root; `--bundle` joins the roots), so a Deployment in `envs/dev` is judged with the
//! ConfigMap of `envs/dev`, never with the one of `envs/prod`. Every other document is evaluated
//! as a CREATE. Exit code 0: nothing denied; 1: something denied; 2: the input or a policy
//! cannot be read.
//!
//! The input is read twice over its text and parsed once: a first pass retains only what a
//! reference can name, parsing only the documents whose text may be of those kinds; the second
//! parses and judges every other document.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use super::report::{Format, Report};
use super::scoped::{Scope, ScopeBuilder, may_be_referenced};
use super::{ClusterArgs, EXIT_BAD_INPUT, EXIT_CLEAN, EXIT_DENIED};
use crate::api::ClusterProvider;
#[cfg(test)]
use crate::manifest::Document;
use crate::manifest::scope::Place;
#[cfg(test)]
use crate::manifest::scope::Places;
use crate::manifest::{self, Inputs, MAX_FILE_BYTES};
use crate::policy_files::{PolicyArgs, PolicyFiles, load_policy_files};

/// Arguments of `hostguard check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// A manifest file, a directory (read recursively: *.yaml, *.yml, *.json), or - for standard
    /// input. Repeatable; each is a scope of its own unless --bundle is given.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    pub filenames: Vec<PathBuf>,
    /// The paths given belong together: a reference that a document's own path does not
    /// resolve is looked for in the other paths given.
    #[arg(long)]
    pub bundle: bool,
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
    let inputs = manifest::list_inputs(&args.filenames, args.bundle).map_err(|e| e.to_string())?;
    // What was skipped (a FIFO, a device, a link out of the tree) is said, not judged.
    for note in &inputs.notes {
        eprintln!("hostguard check: note: {note}");
    }
    let files = load_policy_files(&args.policy.policies)?;
    check_inputs(&inputs, files, args.cluster.cluster_provider)
}

/// Evaluates every document of the input files listed, each reference in its scope, with the
/// policies and AIWorkloads of `files` in force everywhere.
pub(super) fn check_inputs(
    inputs: &Inputs,
    files: PolicyFiles,
    cluster_provider: ClusterProvider,
) -> Result<Report, String> {
    let mut builder = ScopeBuilder::new(inputs.places.clone(), files, cluster_provider);
    let mut texts = Vec::with_capacity(inputs.files.len());
    for file in &inputs.files {
        let text = manifest::read_input(file, MAX_FILE_BYTES).map_err(|e| e.to_string())?;
        index_text(&mut builder, &file.source, &text, file.place)?;
        texts.push(text);
    }
    let scope = Arc::new(builder.finish()?);
    let mut report = Report::default();
    for (file, text) in inputs.files.iter().zip(&texts) {
        judge_text(&scope, &mut report, &file.source, text, file.place)?;
    }
    for set in scope.policy_sets() {
        report.add_rules(&set);
    }
    Ok(report)
}

/// The first pass over one file: retains what references may name.
fn index_text(
    builder: &mut ScopeBuilder,
    source: &str,
    text: &str,
    place: Place,
) -> Result<(), String> {
    for unit in manifest::split_units(source, text).map_err(|e| e.to_string())? {
        if !may_be_referenced(unit.text()) {
            continue;
        }
        let docs = manifest::parse_unit(source, unit).map_err(|e| e.to_string())?;
        for doc in docs.iter().flatten() {
            builder.add(doc, place);
        }
    }
    Ok(())
}

/// The second pass over one file: every non-empty document judged, in order.
fn judge_text(
    scope: &Arc<Scope>,
    report: &mut Report,
    source: &str,
    text: &str,
    place: Place,
) -> Result<(), String> {
    let mut index = 0;
    for unit in manifest::split_units(source, text).map_err(|e| e.to_string())? {
        let Some(mut docs) = manifest::parse_unit(source, unit).map_err(|e| e.to_string())? else {
            continue;
        };
        if !unit.is_whole() {
            for doc in &mut docs {
                doc.index = index;
            }
            index += 1;
        }
        for doc in docs.iter().filter(|d| !d.is_empty()) {
            report.push(doc, scope.judge(doc, place)?);
        }
    }
    Ok(())
}

/// Evaluates documents as `check` does, as if they were one file: HostingPolicies among them
/// join the policies of `files` (the built-in default applies when there are none at all),
/// AIWorkloads, ConfigMaps and Namespaces among them fill the snapshot, and every non-empty
/// document gets a decision. Fails when a policy is invalid, naming the file, line and field.
#[cfg(test)]
pub fn check_documents(
    documents: &[Document],
    files: PolicyFiles,
    cluster_provider: ClusterProvider,
) -> Result<Report, String> {
    let mut places = Places::default();
    let dir = places.top_dir();
    let place = Place {
        root: 0,
        dir,
        file: places.file(),
    };
    let mut builder = ScopeBuilder::new(places, files, cluster_provider);
    for doc in documents {
        builder.add(doc, place);
    }
    let scope = Arc::new(builder.finish()?);
    let mut report = Report::default();
    for doc in documents.iter().filter(|d| !d.is_empty()) {
        report.push(doc, scope.judge(doc, place)?);
    }
    for set in scope.policy_sets() {
        report.add_rules(&set);
    }
    Ok(report)
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

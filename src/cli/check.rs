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

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::Args;

use super::progress::Progress;
#[cfg(test)]
use super::report::Report;
use super::report::{Entry, Format, ReportWriter};
use super::scoped::{Scope, ScopeBuilder, is_referenced_kind, may_be_referenced};
use super::{ClusterArgs, EXIT_BAD_INPUT, EXIT_CLEAN, EXIT_DENIED};
use crate::api::ClusterProvider;
use crate::manifest::Document;
#[cfg(test)]
use crate::manifest::scope::Place;
#[cfg(test)]
use crate::manifest::scope::Places;
use crate::manifest::{self, Inputs, MAX_FILE_BYTES};
use crate::policy::PolicySet;
use crate::policy_files::{PolicyArgs, PolicyFiles, load_policy_files};
use crate::policy_report::ReportApi;

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
    /// The PolicyReport API of `-o policyreport`.
    #[arg(long, value_enum, default_value_t = ReportApi::OpenReports)]
    pub policy_report_api: ReportApi,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Runs `hostguard check` and returns its exit code.
pub fn run(args: CheckArgs) -> u8 {
    let stdout = std::io::stdout().lock();
    let mut writer = ReportWriter::new(args.output, std::io::BufWriter::new(stdout))
        .with_report_api(args.policy_report_api);
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    let outcome = check(&args, &mut writer, &mut progress);
    progress.clear();
    let sets = match outcome {
        Ok(sets) => sets,
        Err(Failure::Input(message)) => {
            eprintln!("hostguard check: {message}");
            if let Err(e) = writer.fail(&message) {
                eprintln!("hostguard check: cannot write the report: {e}");
            }
            return EXIT_BAD_INPUT;
        }
        // A closed pipe (`| head`) is not a reason to change the verdict.
        Err(Failure::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            return if writer.denied() {
                EXIT_DENIED
            } else {
                EXIT_CLEAN
            };
        }
        Err(Failure::Output(e)) => {
            eprintln!("hostguard check: cannot write the report: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let denied = writer.denied();
    if let Err(e) = writer.finish(sets.iter().map(|s| s.as_ref()))
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("hostguard check: cannot write the report: {e}");
        return EXIT_BAD_INPUT;
    }
    if denied { EXIT_DENIED } else { EXIT_CLEAN }
}

/// Why a check stopped.
#[derive(Debug)]
pub(super) enum Failure {
    /// The input or a policy cannot be read (exit 2).
    Input(String),
    /// The report cannot be written.
    Output(std::io::Error),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Input(message)
    }
}

/// Reads the input and the policies and judges every document into `writer`. Returns the
/// policy sets that were in force (for SARIF's rules).
fn check<W: Write>(
    args: &CheckArgs,
    writer: &mut ReportWriter<W>,
    progress: &mut Progress,
) -> Result<Vec<Arc<PolicySet>>, Failure> {
    let inputs = manifest::list_inputs(&args.filenames, args.bundle).map_err(|e| e.to_string())?;
    // What was skipped (a FIFO, a device, a link out of the tree) is said, not judged.
    for note in &inputs.notes {
        eprintln!("hostguard check: note: {note}");
    }
    let files = load_policy_files(&args.policy.policies)?;
    check_inputs(
        &inputs,
        files,
        args.cluster.cluster_provider,
        writer,
        progress,
    )
}

/// Evaluates every document of the input files listed, each reference in its scope, with the
/// policies and AIWorkloads of `files` in force everywhere, writing each entry to `writer` in
/// input order. The text of every file is read and kept (the input once), then:
///
/// 1. the units (documents) whose text may be of a kind a reference names are parsed, on every
///    core, and their objects retained in the scope; their entries (those kinds are judged
///    without a scope) are kept, so they are not parsed again;
/// 2. every other unit is parsed and judged, on every core, in batches written in input order.
pub(super) fn check_inputs<W: Write>(
    inputs: &Inputs,
    files: PolicyFiles,
    cluster_provider: ClusterProvider,
    writer: &mut ReportWriter<W>,
    progress: &mut Progress,
) -> Result<Vec<Arc<PolicySet>>, Failure> {
    let mut texts = Vec::with_capacity(inputs.files.len());
    for file in &inputs.files {
        texts.push(manifest::read_input(file, MAX_FILE_BYTES).map_err(|e| e.to_string())?);
    }
    let mut units: Vec<Vec<manifest::Unit<'_>>> = Vec::with_capacity(texts.len());
    for (file, text) in inputs.files.iter().zip(&texts) {
        units.push(manifest::split_units(&file.source, text).map_err(|e| e.to_string())?);
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    // Pass 1: what references may name.
    let candidates: Vec<(usize, usize)> = units
        .iter()
        .enumerate()
        .flat_map(|(f, us)| {
            us.iter()
                .enumerate()
                .filter(|(_, u)| may_be_referenced(u.text()))
                .map(move |(u, _)| (f, u))
        })
        .collect();
    let mut builder = ScopeBuilder::new(inputs.places.clone(), files, cluster_provider);
    let mut judged: HashMap<(usize, usize), Option<Vec<Entry>>> = HashMap::new();
    // In batches, so that only one batch of parsed documents is alive at a time.
    for batch in candidates.chunks(BATCH) {
        let parsed = parallel_map(batch, threads, |&(f, u)| {
            manifest::parse_unit(&inputs.files[f].source, units[f][u])
        });
        for (&(f, u), docs) in batch.iter().zip(parsed) {
            let docs = docs.map_err(|e| e.to_string())?;
            for doc in docs.iter().flatten() {
                builder.add(doc, inputs.files[f].place);
            }
            // Documents of the referenced kinds are judged without a scope; a unit of those
            // alone (or none) is done.
            match docs {
                None => {
                    judged.insert((f, u), None);
                }
                Some(docs) if docs.iter().all(|d| d.is_empty() || is_referenced_kind(d)) => {
                    let entries = docs
                        .iter()
                        .filter(|d| !d.is_empty())
                        .map(|d| Entry::new(d, judge_unscoped(d, cluster_provider)))
                        .collect();
                    judged.insert((f, u), Some(entries));
                }
                Some(_) => {}
            }
        }
    }
    let scope = Arc::new(builder.finish()?);

    // Pass 2: everything else, in batches written in order.
    progress.start(inputs.files.len());
    let all: Vec<(usize, usize)> = units
        .iter()
        .enumerate()
        .flat_map(|(f, us)| (0..us.len()).map(move |u| (f, u)))
        .collect();
    let mut index = vec![0usize; inputs.files.len()];
    for batch in all.chunks(BATCH) {
        let outcomes = parallel_map(batch, threads, |&(f, u)| match judged.get(&(f, u)) {
            Some(done) => Ok(done.clone()),
            None => judge_unit(&scope, &inputs.files[f], units[f][u]),
        });
        // Bad input stops the check before anything of its batch is written: an input of one
        // batch or less writes nothing at all then.
        let outcomes = outcomes.into_iter().collect::<Result<Vec<_>, _>>()?;
        for (&(f, u), outcome) in batch.iter().zip(outcomes) {
            let Some(entries) = outcome else {
                if u + 1 == units[f].len() {
                    progress.file_done();
                }
                continue;
            };
            let unit_index = index[f];
            let whole = units[f][u].is_whole();
            if !whole {
                index[f] += 1;
            }
            progress.documents(entries.len());
            for mut entry in entries {
                if !whole {
                    entry.document = unit_index;
                }
                writer.entry(entry).map_err(Failure::Output)?;
            }
            if u + 1 == units[f].len() {
                progress.file_done();
            }
        }
        progress.show();
    }
    Ok(scope.policy_sets())
}

/// Units judged per batch: enough to keep every core busy, few enough that the entries held
/// before they are written stay small.
const BATCH: usize = 1024;

/// The decision on a document of a kind a reference names: the engine judges those kinds (a
/// malformed AIWorkload or HostingPolicy is denied) without consulting policies or snapshot.
fn judge_unscoped(doc: &Document, cluster_provider: ClusterProvider) -> crate::policy::Decision {
    if let Some(reason) = super::scoped::not_an_object(doc) {
        return crate::policy::Decision::skipped(reason);
    }
    crate::policy::evaluate(
        &crate::policy::Request {
            operation: crate::policy::Operation::Create,
            object: Some((&doc.value).into()),
            old_object: None,
            namespace: doc.namespace(),
        },
        &PolicySet::builtin(),
        &crate::snapshot::Snapshot::offline(cluster_provider),
    )
}

/// Parses and judges one unit: None when it is no document.
fn judge_unit(
    scope: &Arc<Scope>,
    file: &manifest::InputFile,
    unit: manifest::Unit<'_>,
) -> Result<Option<Vec<Entry>>, Failure> {
    let Some(docs) = manifest::parse_unit(&file.source, unit).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    let mut entries = Vec::with_capacity(docs.len());
    for doc in docs.iter().filter(|d| !d.is_empty()) {
        entries.push(Entry::new(doc, scope.judge(doc, file.place)?));
    }
    Ok(Some(entries))
}

/// `f` over `items` on `threads` threads, results in the order of `items`. Threads take the
/// next item as they finish one, so a slow document does not hold the others back.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    if threads <= 1 || items.len() <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads.min(items.len()))
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            break;
                        };
                        out.push((i, f(item)));
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
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
    fn parallel_map_keeps_the_order_of_its_items() {
        let items: Vec<u64> = (0..5_000).collect();
        // Uneven work, so that the threads finish out of order.
        let f = |&i: &u64| (0..(i % 97) * 50).fold(i, |a, b| a.wrapping_mul(31).wrapping_add(b));
        let sequential: Vec<u64> = items.iter().map(f).collect();
        for threads in [1, 2, 3, 8] {
            assert_eq!(parallel_map(&items, threads, f), sequential, "{threads}");
        }
    }

    /// Documents of the kinds a reference names are judged in the first pass, without a scope:
    /// the engine's decision on them does not depend on the policies or the snapshot.
    #[test]
    fn referenced_kinds_are_judged_the_same_without_a_scope() -> Result<(), String> {
        let text = format!(
            "{KEY_ONLY}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ai, namespace: team-a}}\ndata: {{OPENAI_BASE_URL: https://api.openai.com/v1}}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {{name: team-a, labels: {{a: b}}}}\n---\napiVersion: hostguard.dev/v1alpha1\nkind: AIWorkload\nmetadata: {{name: chat, namespace: team-a}}\nspec: {{selector: {{matchLabels: {{app: chat}}}}, provider: openai, apiClass: stateful}}\n---\napiVersion: hostguard.dev/v1alpha1\nkind: AIWorkload\nmetadata: {{name: bad}}\nspec: {{selector: {{matchExpressions: [{{key: a, operator: Sideways}}]}}, provider: openai}}\n---\napiVersion: hostguard.dev/v1alpha1\nkind: HostingPolicy\nmetadata: {{name: p}}\nspec: {{provider: openai, apiClasses: [stateless], action: Warn, endpoints: {{allowedHosts: [x.example.com]}}}}\n"
        );
        let documents = docs(&text);
        let report = check_documents(&documents, PolicyFiles::default(), ClusterProvider::Azure)?;
        let mut checked = 0;
        for (doc, entry) in documents.iter().zip(&report.results) {
            if is_referenced_kind(doc) {
                let alone = Entry::new(doc, judge_unscoped(doc, ClusterProvider::Azure));
                assert_eq!(
                    serde_json::to_value(&alone).map_err(|e| e.to_string())?,
                    serde_json::to_value(entry).map_err(|e| e.to_string())?
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 5);
        Ok(())
    }

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

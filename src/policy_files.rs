//! Loading `--policy` files: HostingPolicies, and the AIWorkloads that go with them when there is
//! no cluster to read them from (`check`, `review`, `serve --standalone`), with the built-in
//! default policy when none is given.

use std::path::PathBuf;

use clap::Args;

use crate::api::{AIWorkload, HostingPolicy};
use crate::manifest;
use crate::policy::PolicySet;
use crate::snapshot::{DeclaredWorkload, Snapshot};

/// Where policies come from.
#[derive(Debug, Clone, Default, Args)]
pub struct PolicyArgs {
    /// A file or directory of HostingPolicy (and AIWorkload) resources (repeatable). Without any
    /// policy, and without policies in the input, the built-in default policy applies.
    #[arg(long = "policy", value_name = "PATH")]
    pub policies: Vec<PathBuf>,
}

/// What `--policy` files hold.
#[derive(Debug, Clone, Default)]
pub struct PolicyFiles {
    pub policies: Vec<HostingPolicy>,
    pub workloads: Vec<AIWorkload>,
}

/// Adds AIWorkloads of `--policy` files to a snapshot (see [`declare_workload`]).
pub fn declare_workloads(
    workloads: Vec<AIWorkload>,
    snapshot: &mut Snapshot,
) -> Result<(), String> {
    workloads
        .into_iter()
        .try_for_each(|aiw| declare_workload(aiw, snapshot))
}

/// Adds one AIWorkload of a `--policy` file to a snapshot (namespace `default` when the
/// document has none), consuming it: the snapshot keeps what it needs of it.
pub fn declare_workload(mut aiw: AIWorkload, snapshot: &mut Snapshot) -> Result<(), String> {
    aiw.metadata
        .namespace
        .get_or_insert_with(|| "default".into());
    snapshot.insert_declared(DeclaredWorkload::from_resource(&aiw).map_err(|e| e.to_string())?);
    Ok(())
}

/// Reads HostingPolicy and AIWorkload documents from the given paths. Other kinds in those
/// files are an error: a policy file that holds something else is a mistake worth stopping for.
///
/// One document at a time: each is parsed, read into its type and dropped before the next is
/// parsed, so that a file of thousands of policies and AIWorkloads never holds the JSON trees of
/// all of them at once (they were most of the memory a large `--policy` file took).
pub fn load_policy_files(paths: &[PathBuf]) -> Result<PolicyFiles, String> {
    let mut workloads = Vec::new();
    let policies = load_policy_files_with(paths, |aiw| {
        workloads.push(aiw);
        Ok(())
    })?;
    Ok(PolicyFiles {
        policies,
        workloads,
    })
}

/// [`load_policy_files`], handing each AIWorkload to `on_workload` as it is read rather than
/// keeping them all (the webhook declares each into its snapshot at once). The HostingPolicies
/// are returned.
pub fn load_policy_files_with(
    paths: &[PathBuf],
    mut on_workload: impl FnMut(AIWorkload) -> Result<(), String>,
) -> Result<Vec<HostingPolicy>, String> {
    let mut policies = Vec::new();
    if paths.is_empty() {
        return Ok(policies);
    }
    let inputs = manifest::list_inputs(paths, false).map_err(|e| e.to_string())?;
    for note in &inputs.notes {
        eprintln!("hostguard: note: --policy {note}");
    }
    for file in &inputs.files {
        let text =
            manifest::read_input(file, manifest::MAX_FILE_BYTES).map_err(|e| e.to_string())?;
        for unit in manifest::split_units(&file.source, &text).map_err(|e| e.to_string())? {
            let documents = manifest::parse_unit(&file.source, unit).map_err(|e| e.to_string())?;
            for doc in documents.into_iter().flatten() {
                match read_document(doc)? {
                    Some(Read::Policy(policy)) => policies.push(*policy),
                    Some(Read::Workload(aiw)) => on_workload(*aiw)?,
                    None => {}
                }
            }
        }
    }
    Ok(policies)
}

/// One document of a `--policy` file, read.
enum Read {
    Policy(Box<HostingPolicy>),
    Workload(Box<AIWorkload>),
}

/// Reads one document of a `--policy` file (None for an empty one).
fn read_document(doc: manifest::Document) -> Result<Option<Read>, String> {
    if doc.value.is_null() {
        return Ok(None);
    }
    let where_ = format!("{}:{}", doc.source, doc.line);
    let kind = doc.value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let located = |e: serde_path_to_error::Error<serde_json::Error>| {
        let path = e.path().to_string();
        format!(
            "{}:{}: {kind} {path}: {}",
            doc.source,
            doc.line_of(&path),
            e.inner()
        )
    };
    match kind {
        "HostingPolicy" => Ok(Some(Read::Policy(
            serde_path_to_error::deserialize(&doc.value).map_err(located)?,
        ))),
        "AIWorkload" => Ok(Some(Read::Workload(
            serde_path_to_error::deserialize(&doc.value).map_err(located)?,
        ))),
        "" => Err(format!(
            "{where_}: expected a HostingPolicy or AIWorkload in a --policy file, found a document without kind"
        )),
        other => Err(format!(
            "{where_}: expected a HostingPolicy or AIWorkload in a --policy file, found kind {other}"
        )),
    }
}

/// The HostingPolicies of `--policy` files.
pub fn load_policies(paths: &[PathBuf]) -> Result<Vec<HostingPolicy>, String> {
    load_policy_files(paths).map(|f| f.policies)
}

/// [`PolicySet::compile_or_default`], with every problem of every policy on a line of its own.
pub fn compile_or_default(policies: &[HostingPolicy]) -> Result<PolicySet, String> {
    PolicySet::compile_or_default(policies).map_err(join_errors)
}

fn join_errors(errors: Vec<crate::policy::PolicyError>) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

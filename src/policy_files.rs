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

impl PolicyFiles {
    /// Adds the AIWorkloads to a snapshot (namespace `default` when a document has none).
    pub fn declare_into(&self, snapshot: &mut Snapshot) -> Result<(), String> {
        for aiw in &self.workloads {
            let mut aiw = aiw.clone();
            aiw.metadata
                .namespace
                .get_or_insert_with(|| "default".into());
            snapshot
                .insert_declared(DeclaredWorkload::from_resource(&aiw).map_err(|e| e.to_string())?);
        }
        Ok(())
    }
}

/// Reads HostingPolicy and AIWorkload documents from the given paths. Other kinds in those
/// files are an error: a policy file that holds something else is a mistake worth stopping for.
pub fn load_policy_files(paths: &[PathBuf]) -> Result<PolicyFiles, String> {
    let mut out = PolicyFiles::default();
    if paths.is_empty() {
        return Ok(out);
    }
    let loaded = manifest::load_paths(paths).map_err(|e| e.to_string())?;
    for note in &loaded.notes {
        eprintln!("hostguard: note: --policy {note}");
    }
    for doc in loaded.documents {
        if doc.value.is_null() {
            continue;
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
            "HostingPolicy" => out
                .policies
                .push(serde_path_to_error::deserialize(&doc.value).map_err(located)?),
            "AIWorkload" => out
                .workloads
                .push(serde_path_to_error::deserialize(&doc.value).map_err(located)?),
            "" => {
                return Err(format!(
                    "{where_}: expected a HostingPolicy or AIWorkload in a --policy file, found a document without kind"
                ));
            }
            other => {
                return Err(format!(
                    "{where_}: expected a HostingPolicy or AIWorkload in a --policy file, found kind {other}"
                ));
            }
        }
    }
    Ok(out)
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

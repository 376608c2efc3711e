//! Loading HostingPolicies from files for the offline commands, with the built-in default when
//! none is given.

use std::path::PathBuf;

use clap::Args;

use crate::api::HostingPolicy;
use crate::manifest;
use crate::policy::{PolicySet, default_policy};

/// Where policies come from.
#[derive(Debug, Clone, Default, Args)]
pub struct PolicyArgs {
    /// A file or directory of HostingPolicy resources (repeatable). Without any, and without
    /// policies in the input, the built-in default policy applies.
    #[arg(long = "policy", value_name = "PATH")]
    pub policies: Vec<PathBuf>,
}

/// Reads HostingPolicy documents from the given paths. Other kinds in those files are an error:
/// a policy file that holds something else is a mistake worth stopping for.
pub fn load_policies(paths: &[PathBuf]) -> Result<Vec<HostingPolicy>, String> {
    let mut out = Vec::new();
    if paths.is_empty() {
        return Ok(out);
    }
    let docs = manifest::load_paths(paths).map_err(|e| e.to_string())?;
    for doc in docs {
        if doc.value.is_null() {
            continue;
        }
        let where_ = format!("{}:{}", doc.source, doc.line);
        let kind = doc.value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        if kind != "HostingPolicy" {
            return Err(format!(
                "{where_}: expected a HostingPolicy in a --policy file, found {}",
                if kind.is_empty() {
                    "a document without kind".to_string()
                } else {
                    format!("kind {kind}")
                }
            ));
        }
        let policy: HostingPolicy = serde_path_to_error::deserialize(&doc.value).map_err(|e| {
            let path = e.path().to_string();
            format!(
                "{}:{}: HostingPolicy {path}: {}",
                doc.source,
                doc.line_of(&path),
                e.inner()
            )
        })?;
        out.push(policy);
    }
    Ok(out)
}

/// Compiles policies, falling back to the built-in default when the list is empty. Every
/// problem of every policy is reported.
pub fn compile_or_default(policies: &[HostingPolicy]) -> Result<PolicySet, String> {
    if policies.is_empty() {
        return PolicySet::compile([&default_policy()]).map_err(join_errors);
    }
    PolicySet::compile(policies).map_err(join_errors)
}

fn join_errors(errors: Vec<crate::policy::PolicyError>) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

//! `hostguard vap`: prints the ValidatingAdmissionPolicies and bindings that keep the plain cases
//! of the HostingPolicies enforced by the API server itself (see [`crate::vap`]), as multi-document
//! YAML for `kubectl apply -f -`. What has no CEL counterpart is said on stderr.

use clap::Args;

use super::{EXIT_BAD_INPUT, EXIT_CLEAN};
use crate::policy_files::{PolicyArgs, load_policy_files};

#[derive(Debug, Clone, Args)]
pub struct VapArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// A namespace the webhook never sees, to leave to it here too (repeatable): hostguard's own
    /// namespace and the chart's `webhook.excludedNamespaces`. `kube-system` always is.
    #[arg(long = "exclude-namespace", value_name = "NAMESPACE")]
    pub exclude_namespaces: Vec<String>,
}

pub fn run(args: VapArgs) -> u8 {
    let files = match load_policy_files(&args.policy.policies) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("hostguard vap: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let policies = if files.policies.is_empty() {
        vec![crate::policy::default_policy()]
    } else {
        files.policies
    };
    let t = crate::vap::translate(&policies, &args.exclude_namespaces);
    for note in &t.notes {
        eprintln!("hostguard vap: note: {note}");
    }
    print!("{}", crate::vap::to_yaml(&t.objects));
    EXIT_CLEAN
}

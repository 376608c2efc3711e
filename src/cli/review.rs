//! `hostguard review`: one AdmissionReview from stdin, the webhook's exact response on stdout.

use std::io::Read;

use clap::Args;

use super::{ClusterArgs, EXIT_BAD_INPUT, EXIT_CLEAN};
use crate::admission::{self, Webhook};
use crate::policy_files::{PolicyArgs, compile_or_default, declare_workloads, load_policy_files};
use crate::snapshot::Snapshot;

#[derive(Debug, Clone, Args)]
pub struct ReviewArgs {
    /// Which webhook to answer as.
    #[arg(long, default_value = "validate", value_parser = webhook_name())]
    pub webhook: Webhook,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// The webhook names the engine knows, offered as the flag's possible values.
fn webhook_name() -> impl clap::builder::TypedValueParser<Value = Webhook> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Webhook::ALL.map(Webhook::as_str)).map(|name| {
        Webhook::ALL
            .into_iter()
            .find(|w| w.as_str() == name)
            .unwrap_or(Webhook::Validate)
    })
}

pub fn run(args: ReviewArgs) -> u8 {
    let mut snapshot = Snapshot::offline(args.cluster.cluster_provider);
    let loaded = load_policy_files(&args.policy.policies).and_then(|files| {
        declare_workloads(files.workloads, &mut snapshot)?;
        compile_or_default(&files.policies)
    });
    let policies = match loaded {
        Ok(p) => p,
        Err(e) => {
            eprintln!("hostguard review: {e}");
            return EXIT_BAD_INPUT;
        }
    };
    let mut body = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut body) {
        eprintln!("hostguard review: cannot read stdin: {e}");
        return EXIT_BAD_INPUT;
    }
    match admission::answer(&body, args.webhook, &policies, &snapshot) {
        Ok(answer) => match serde_json::to_string_pretty(&answer.review) {
            Ok(json) => {
                println!("{json}");
                EXIT_CLEAN
            }
            Err(e) => {
                eprintln!("hostguard review: cannot encode the response: {e}");
                EXIT_BAD_INPUT
            }
        },
        Err(e) => {
            eprintln!("hostguard review: stdin: {e}");
            EXIT_BAD_INPUT
        }
    }
}

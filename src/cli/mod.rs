//! The command-line fronts: `check` (manifests in CI), `test` (policy test suites), `review` (one
//! AdmissionReview on stdin), `crds` (the generated CRD YAML) and `vap` (ValidatingAdmissionPolicies
//! for the plain cases). Each subcommand has one typed
//! args struct; each translates its input into engine requests and the engine's decisions into
//! its output, and nothing more.

mod check;
mod crds;
mod progress;

pub mod report;
mod review;
mod scoped;
mod test;
mod vap;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::api::ClusterProvider;

pub use check::CheckArgs;
pub use crds::CrdsArgs;

pub use review::ReviewArgs;
pub use test::TestArgs;
pub use vap::VapArgs;

/// Exit code: nothing denied.
pub const EXIT_CLEAN: u8 = 0;
/// Exit code: at least one object is denied.
pub const EXIT_DENIED: u8 = 1;
/// Exit code: the input could not be read.
pub const EXIT_BAD_INPUT: u8 = 2;

/// hostguard: decides where AI workloads may send model traffic and where they may run.
#[derive(Debug, Parser)]
#[command(name = "hostguard", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// A file of pod-template kinds of your own controllers to judge like the built-in ones (a
    /// YAML or JSON list of {group, kind, plural, versions, templates: [{path, shape}]}; shape is
    /// Template, PodSpec or Container). The chart writes it from `podTemplateKinds`.
    #[arg(
        long = "pod-template-kinds",
        value_name = "FILE",
        global = true,
        env = "HOSTGUARD_POD_TEMPLATE_KINDS"
    )]
    pub pod_template_kinds: Option<std::path::PathBuf>,
    /// The same list given inline as JSON or YAML (how the chart passes `podTemplateKinds`, in the
    /// environment, so that a change rolls the pods).
    #[arg(
        long = "pod-template-kinds-json",
        value_name = "JSON",
        global = true,
        env = "HOSTGUARD_POD_TEMPLATE_KINDS_JSON",
        conflicts_with = "pod_template_kinds"
    )]
    pub pod_template_kinds_json: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Evaluate manifests (files, directories, stdin) against the hosting policies, for CI.
    Check(CheckArgs),
    /// Answer one AdmissionReview read from stdin exactly as the webhook would.
    Review(ReviewArgs),
    /// Run policy test suites: resources and the verdict each must get (text or JUnit).
    Test(TestArgs),
    /// Print the CustomResourceDefinitions of hostguard's resources.
    Crds(CrdsArgs),
    /// Print ValidatingAdmissionPolicies that let the API server enforce the plain cases itself.
    Vap(VapArgs),
    /// Run the HTTPS admission webhook.
    Serve(Box<crate::server::ServeArgs>),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let added = match (&cli.pod_template_kinds, &cli.pod_template_kinds_json) {
        (Some(path), _) => std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| add_pod_template_kinds(&text))
            .map_err(|e| format!("--pod-template-kinds {}: {e}", path.display())),
        (None, Some(text)) => add_pod_template_kinds(text).map_err(|e| {
            format!("--pod-template-kinds-json (HOSTGUARD_POD_TEMPLATE_KINDS_JSON): {e}")
        }),
        (None, None) => Ok(()),
    };
    if let Err(e) = added {
        eprintln!("hostguard: {e}");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let code = match cli.command {
        Command::Check(args) => check::run(args),
        Command::Review(args) => review::run(args),
        Command::Test(args) => test::run(args),
        Command::Crds(args) => crds::run(args),
        Command::Vap(args) => vap::run(args),
        Command::Serve(args) => crate::server::run(*args),
    };
    ExitCode::from(code)
}

/// Reads the platform team's pod-template kinds and adds them to the table every command reads,
/// before anything is judged.
fn add_pod_template_kinds(text: &str) -> Result<(), String> {
    let specs = crate::workload::kinds::parse_extra(text)?;
    // A kind an adapter reads is judged by that adapter; a second reading would contradict it.
    for (i, k) in specs.iter().enumerate() {
        if crate::detect::adapters::kinds().any(|(g, kind, _)| g == k.group && kind == k.kind) {
            return Err(format!(
                "[{i}].kind: {}/{} is read by hostguard's own adapter for it",
                k.group, k.kind
            ));
        }
    }
    crate::workload::kinds::extend(specs)
}

/// The cluster provider to assume, shared by the offline commands.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// What the cluster runs on: azure, aws, gcp, other or unknown. Unknown reports placement as a
    /// warning instead of checking it.
    #[arg(long, env = "HOSTGUARD_CLUSTER_PROVIDER", default_value = "unknown", value_parser = parse_provider)]
    pub cluster_provider: ClusterProvider,
}

fn parse_provider(s: &str) -> Result<ClusterProvider, String> {
    s.parse()
}

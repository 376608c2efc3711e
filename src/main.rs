//! The `hostguard` binary: install the TLS crypto provider, parse arguments, run.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // One crypto provider for the whole process (the webhook's rustls, and the Kubernetes
    // client's). Installing fails only if one is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = hostguard::cli::Cli::parse();
    hostguard::cli::run(cli)
}

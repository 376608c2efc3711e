//! The `hostguard` binary: install the TLS crypto provider, parse arguments, run.

use clap::Parser;

/// mimalloc instead of the system allocator: a review allocates and frees hundreds of small
/// strings and maps, and with glibc's malloc that was a quarter of its cost. Measured on the
/// benchmark review (engine `examples/hot_path`, 40,000 answers, one pinned core): 0.77x the
/// time of the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // One crypto provider for the whole process (the webhook's rustls, and the Kubernetes
    // client's). Installing fails only if one is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = hostguard::cli::Cli::parse();
    hostguard::cli::run(cli)
}

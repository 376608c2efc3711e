//! The `hostguard` binary: parse arguments, run, exit with the command's code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = hostguard::cli::Cli::parse();
    hostguard::cli::run(cli)
}

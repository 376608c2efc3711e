//! `hostguard crds`: prints the CRDs generated from the Rust types. The committed `crds/` files
//! and the chart's copy are this output (`hostguard crds --out crds/`); a test fails on drift.

use std::path::PathBuf;

use clap::Args;

use super::{EXIT_BAD_INPUT, EXIT_CLEAN};

#[derive(Debug, Clone, Args)]
pub struct CrdsArgs {
    /// Write one file per CRD into this directory instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(args: CrdsArgs) -> u8 {
    let Some(dir) = args.out else {
        print!("{}", crate::api::crd_yaml());
        return EXIT_CLEAN;
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("hostguard crds: cannot create {}: {e}", dir.display());
        return EXIT_BAD_INPUT;
    }
    for (file, doc) in crate::api::crd_documents() {
        let path = dir.join(file);
        if let Err(e) = std::fs::write(&path, doc) {
            eprintln!("hostguard crds: cannot write {}: {e}", path.display());
            return EXIT_BAD_INPUT;
        }
    }
    EXIT_CLEAN
}

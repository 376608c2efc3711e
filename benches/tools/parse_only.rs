//! The parse-only baseline of `scripts/bench-check`: reads every `.yaml` file under the paths
//! given and parses each into `serde_json::Value` documents with serde-saphyr, on one thread,
//! doing nothing else. `hostguard check` on the same input is measured against it.
//! Build: `cargo build --release --example parse-only`.

use std::path::{Path, PathBuf};

fn walk(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            walk(&entry, out)?;
        }
    } else if path.extension().is_some_and(|e| e == "yaml") {
        out.push(path.to_path_buf());
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut files = Vec::new();
    for arg in std::env::args_os().skip(1) {
        walk(Path::new(&arg), &mut files)?;
    }
    let mut documents = 0usize;
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let docs: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        documents += docs.len();
    }
    println!("{documents}");
    Ok(())
}

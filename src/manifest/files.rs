//! Finding and reading manifest files: the paths given, directories walked, standard input, each
//! read with a bound on its size. Only regular files are read while walking: a FIFO named
//! `x.yaml` would block forever, a link to `/dev/zero` would never end, a socket cannot be read,
//! so they are skipped with a note. Symbolic links to directories are followed only while they
//! stay inside the directories given (a link to `/` is not walked); links to files are followed,
//! as kubectl follows them. A path given explicitly is read whatever it is, within the size
//! bound: `-f /dev/stdin` and a process substitution `-f <(helm template ...)` are pipes.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::scope::{Place, Places};
use super::{Document, LoadError, STDIN_SOURCE, parse_str};

/// The most `check` reads from one file or from standard input: far above any rendered chart
/// (the API server takes objects of at most 3 MiB), and a bound on memory for inputs that never
/// end.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The documents read, and what was skipped on the way, one note each (path: reason).
#[derive(Debug, Default)]
pub struct Loaded {
    pub documents: Vec<Document>,
    pub notes: Vec<String>,
}

/// One file of the input, with where it sits in the scope tree.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// The path as given or walked, or `<stdin>`.
    pub source: String,
    /// None for standard input.
    pub path: Option<PathBuf>,
    pub place: Place,
}

/// The files of the input, in reading order, with the directory tree they form.
#[derive(Debug, Default)]
pub struct Inputs {
    pub files: Vec<InputFile>,
    pub places: Places,
    /// What was skipped while walking, one note each (path: reason).
    pub notes: Vec<String>,
}

/// Lists the files of the given paths, in order: `-` is standard input; a directory is walked
/// recursively in name order, reading regular files ending in `.yaml`, `.yml` or `.json` and
/// skipping hidden entries (names starting with `.`); a file given explicitly is read whatever
/// its extension and type. Each path given is a root of its own ([`scope`](super::scope));
/// `bundle` joins them.
pub fn list_inputs(paths: &[PathBuf], bundle: bool) -> Result<Inputs, LoadError> {
    let mut inputs = Inputs::default();
    inputs.places.bundle = bundle;
    // Directory links are followed only into these (canonical) directories.
    let roots: Vec<PathBuf> = paths
        .iter()
        .filter(|p| p.as_os_str() != "-" && p.is_dir())
        .filter_map(|p| fs::canonicalize(p).ok())
        .collect();
    for (root, path) in paths.iter().enumerate() {
        let root = root as u32;
        if path.as_os_str() == "-" {
            let dir = inputs.places.top_dir();
            let file = inputs.places.file();
            inputs.files.push(InputFile {
                source: STDIN_SOURCE.to_string(),
                path: None,
                place: Place { root, dir, file },
            });
            continue;
        }
        let metadata = fs::metadata(path).map_err(|e| io_error(path, e))?;
        if metadata.is_dir() {
            let top = inputs.places.top_dir();
            let mut walk = Walk {
                roots: &roots,
                visited: HashSet::new(),
                files: Vec::new(),
                notes: &mut inputs.notes,
                places: &mut inputs.places,
            };
            walk.dir(path, top)?;
            let files = walk.files;
            if files.is_empty() {
                return Err(LoadError::EmptyDirectory {
                    path: path.display().to_string(),
                });
            }
            for (file_path, dir) in files {
                let file = inputs.places.file();
                inputs.files.push(InputFile {
                    source: file_path.display().to_string(),
                    path: Some(file_path),
                    place: Place { root, dir, file },
                });
            }
        } else {
            let dir = inputs.places.top_dir();
            let file = inputs.places.file();
            inputs.files.push(InputFile {
                source: path.display().to_string(),
                path: Some(path.clone()),
                place: Place { root, dir, file },
            });
        }
    }
    Ok(inputs)
}

/// Reads one input file (or standard input) as text, at most `limit` bytes.
pub fn read_input(file: &InputFile, limit: u64) -> Result<String, LoadError> {
    match &file.path {
        None => read_bounded(std::io::stdin().lock(), STDIN_SOURCE, limit),
        Some(path) => read_file(path, limit),
    }
}

/// Reads every document of the given paths, in order (see [`list_inputs`]), at most
/// [`MAX_FILE_BYTES`] per file.
pub fn load_paths(paths: &[PathBuf]) -> Result<Loaded, LoadError> {
    load_paths_with_limit(paths, MAX_FILE_BYTES)
}

/// [`load_paths`] with another bound on the bytes read per file.
pub fn load_paths_with_limit(paths: &[PathBuf], limit: u64) -> Result<Loaded, LoadError> {
    let inputs = list_inputs(paths, false)?;
    let mut loaded = Loaded {
        documents: Vec::new(),
        notes: inputs.notes,
    };
    for file in &inputs.files {
        let text = read_input(file, limit)?;
        loaded.documents.extend(parse_str(&file.source, &text)?);
    }
    Ok(loaded)
}

fn io_error(path: &Path, source: std::io::Error) -> LoadError {
    let path = path.display().to_string();
    if source.kind() == std::io::ErrorKind::NotFound {
        LoadError::NotFound { path }
    } else {
        LoadError::Io { path, source }
    }
}

struct Walk<'a> {
    roots: &'a [PathBuf],
    /// Canonical directories walked, so that a link cycle ends.
    visited: HashSet<PathBuf>,
    /// Each file with the id of its directory.
    files: Vec<(PathBuf, u32)>,
    notes: &'a mut Vec<String>,
    places: &'a mut Places,
}

impl Walk<'_> {
    /// Collects manifest files under `dir`, sorted by name at each level.
    fn dir(&mut self, dir: &Path, id: u32) -> Result<(), LoadError> {
        let canonical = fs::canonicalize(dir).map_err(|e| io_error(dir, e))?;
        if !self.visited.insert(canonical) {
            return Ok(());
        }
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
            names.push(entry.map_err(|e| io_error(dir, e))?.file_name());
        }
        names.sort();
        for name in names {
            let Some(text) = name.to_str() else {
                continue;
            };
            if text.starts_with('.') {
                continue;
            }
            let path = dir.join(&name);
            let own = fs::symlink_metadata(&path).map_err(|e| io_error(&path, e))?;
            let is_link = own.file_type().is_symlink();
            let target = if is_link {
                match fs::metadata(&path) {
                    Ok(target) => target,
                    Err(_) => {
                        if is_manifest_name(text) {
                            self.note(&path, "a symbolic link to nothing");
                        }
                        continue;
                    }
                }
            } else {
                own
            };
            if target.is_dir() {
                if is_link && !self.inside_roots(&path) {
                    self.note(
                        &path,
                        "a symbolic link to a directory outside the paths given, not followed",
                    );
                    continue;
                }
                let sub = self.places.sub_dir(id);
                self.dir(&path, sub)?;
            } else if !is_manifest_name(text) {
                continue;
            } else if target.is_file() {
                self.files.push((path, id));
            } else {
                let what = special_kind(&target.file_type());
                self.note(&path, &format!("not a regular file ({what})"));
            }
        }
        Ok(())
    }

    fn inside_roots(&self, link: &Path) -> bool {
        fs::canonicalize(link)
            .is_ok_and(|target| self.roots.iter().any(|root| target.starts_with(root)))
    }

    fn note(&mut self, path: &Path, why: &str) {
        self.notes
            .push(format!("{}: skipped: {why}", path.display()));
    }
}

fn special_kind(file_type: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

fn is_manifest_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".yaml", ".yml", ".json"]
        .iter()
        .any(|ext| lower.ends_with(ext))
}

/// Reads at most `limit` bytes as UTF-8 text; more is an error, not a truncation.
fn read_bounded(reader: impl Read, source: &str, limit: u64) -> Result<String, LoadError> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source_error| LoadError::Io {
            path: source.to_string(),
            source: source_error,
        })?;
    if bytes.len() as u64 > limit {
        return Err(LoadError::TooLarge {
            path: source.to_string(),
            limit,
        });
    }
    // `read_to_end` grows its buffer by doubling: callers that keep many files' text (check
    // does) would hold up to twice the input.
    bytes.shrink_to_fit();
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = valid.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        LoadError::Syntax {
            path: source.to_string(),
            line,
            column,
            message: "the file is not valid UTF-8".into(),
        }
    })
}

fn read_file(path: &Path, limit: u64) -> Result<String, LoadError> {
    let source = path.display().to_string();
    let file = fs::File::open(path).map_err(|e| io_error(path, e))?;
    // A regular file that says it is too large is refused before it is read.
    if let Ok(metadata) = file.metadata()
        && metadata.is_file()
        && metadata.len() > limit
    {
        return Err(LoadError::TooLarge {
            path: source,
            limit,
        });
    }
    read_bounded(file, &source, limit)
}

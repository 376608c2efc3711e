//! Where a reference in the input resolves: the scope rules of `check`.
//!
//! A document's reference (a ConfigMap it reads, the AIWorkloads that may select it, its
//! Namespace's labels, a HostingPolicy in the input) resolves to the nearest candidate: the same
//! file (distance 0), then the other files of its directory (1), then the files directly in each
//! ancestor directory up to the `-f` root (2, 3, ...). Files in sibling directories are never in
//! scope, so `envs/dev` and `envs/prod` cannot see each other's ConfigMaps. Each `-f` root is a
//! scope of its own; with `--bundle` the roots belong together, and what a document does not find
//! in its own root it looks for in all the other roots, at one farthest distance. Two different
//! candidates at the smallest distance make the reference ambiguous: it is unresolved, and the
//! message names both. Candidates are chosen by their file and line, never by reading order, so
//! the answer does not depend on the order of the files.

use std::collections::HashMap;
use std::fmt;

/// Where a document was read: its `-f` root, its directory and its file (ids of [`Places`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Place {
    pub root: u32,
    pub dir: u32,
    pub file: u32,
}

/// The directory tree of the input: each directory's parent within its `-f` root.
#[derive(Debug, Clone, Default)]
pub struct Places {
    parents: Vec<Option<u32>>,
    files: u32,
    /// Whether the roots belong together (`--bundle`).
    pub bundle: bool,
}

impl Places {
    /// A directory at the top of a root (a root directory, or the directory of a root that is a
    /// file or stdin, which holds that file alone).
    pub fn top_dir(&mut self) -> u32 {
        self.parents.push(None);
        (self.parents.len() - 1) as u32
    }

    /// A directory inside `parent`.
    pub fn sub_dir(&mut self, parent: u32) -> u32 {
        self.parents.push(Some(parent));
        (self.parents.len() - 1) as u32
    }

    /// A new file id.
    pub fn file(&mut self) -> u32 {
        self.files += 1;
        self.files - 1
    }

    /// `dir`, its parent, ... up to the top of its root.
    fn ancestors(&self, dir: u32) -> impl Iterator<Item = u32> + '_ {
        std::iter::successors(Some(dir), |d| {
            self.parents.get(*d as usize).copied().flatten()
        })
    }
}

/// The file and line of a candidate, as messages name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    pub source: String,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.line)
    }
}

/// What a reference resolves to.
#[derive(Debug, PartialEq)]
pub enum Resolved<'a, V> {
    Found(&'a V),
    /// Two different candidates at the same distance (the first two by file and line).
    Ambiguous(&'a Origin, &'a Origin),
    /// No candidate in scope.
    Missing,
}

impl<V> Resolved<'_, V> {
    /// `is ambiguous: A and B differ at the same distance`, the text that follows what was
    /// looked up, for an ambiguous answer.
    pub fn ambiguity(&self) -> Option<String> {
        match self {
            Resolved::Ambiguous(a, b) => Some(format!(
                "is ambiguous: {a} and {b} differ at the same distance"
            )),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Candidate<V> {
    place: Place,
    origin: Origin,
    value: V,
}

/// The candidates of one key, by file and by directory.
#[derive(Debug)]
struct Keyed {
    all: Vec<usize>,
    by_file: HashMap<u32, Vec<usize>>,
    by_dir: HashMap<u32, Vec<usize>>,
}

/// Candidates for references of one kind, by key (`namespace/name`, or a name).
#[derive(Debug)]
pub struct Index<V> {
    candidates: Vec<Candidate<V>>,
    keys: HashMap<String, Keyed>,
}

impl<V> Default for Index<V> {
    fn default() -> Self {
        Index {
            candidates: Vec::new(),
            keys: HashMap::new(),
        }
    }
}

impl<V: PartialEq> Index<V> {
    pub fn insert(&mut self, key: String, place: Place, origin: Origin, value: V) {
        let i = self.candidates.len();
        self.candidates.push(Candidate {
            place,
            origin,
            value,
        });
        let keyed = self.keys.entry(key).or_insert_with(|| Keyed {
            all: Vec::new(),
            by_file: HashMap::new(),
            by_dir: HashMap::new(),
        });
        keyed.all.push(i);
        keyed.by_file.entry(place.file).or_default().push(i);
        keyed.by_dir.entry(place.dir).or_default().push(i);
    }

    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    /// Every key with at least one candidate anywhere.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// The nearest candidate for `key` seen from `from`.
    pub fn resolve(&self, places: &Places, from: Place, key: &str) -> Resolved<'_, V> {
        self.resolve_at(places, from, key).0
    }

    /// [`resolve`](Self::resolve), with the id of the candidate found (to tell candidates apart
    /// without comparing their values).
    pub fn resolve_at(&self, places: &Places, from: Place, key: &str) -> (Resolved<'_, V>, usize) {
        let Some(keyed) = self.keys.get(key) else {
            return (Resolved::Missing, usize::MAX);
        };
        if let Some(found) = keyed.by_file.get(&from.file) {
            return self.pick(found.iter().copied());
        }
        for dir in places.ancestors(from.dir) {
            if let Some(found) = keyed.by_dir.get(&dir) {
                return self.pick(found.iter().copied());
            }
        }
        if places.bundle {
            let others = keyed
                .all
                .iter()
                .copied()
                .filter(|&i| self.candidates[i].place.root != from.root);
            let mut others = others.peekable();
            if others.peek().is_some() {
                return self.pick(others);
            }
        }
        (Resolved::Missing, usize::MAX)
    }

    /// Among candidates at one distance: the first by file and line, unless another differs.
    fn pick(&self, ids: impl Iterator<Item = usize> + Clone) -> (Resolved<'_, V>, usize) {
        let c = &self.candidates;
        let Some(first) = ids.clone().min_by(|&a, &b| c[a].origin.cmp(&c[b].origin)) else {
            return (Resolved::Missing, usize::MAX);
        };
        let other = ids
            .filter(|&i| c[i].value != c[first].value)
            .min_by(|&a, &b| c[a].origin.cmp(&c[b].origin));
        match other {
            Some(o) => (
                Resolved::Ambiguous(&c[first].origin, &c[o].origin),
                usize::MAX,
            ),
            None => (Resolved::Found(&c[first].value), first),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    /// root/ (a.yaml, b.yaml), root/envs/ (e.yaml), root/envs/dev/ (d.yaml), root/envs/prod/
    /// (p.yaml); a second root other/ (o.yaml).
    struct Tree {
        places: Places,
        a: Place,
        b: Place,
        e: Place,
        d: Place,
        p: Place,
        o: Place,
    }

    fn tree(bundle: bool) -> Tree {
        let mut places = Places {
            bundle,
            ..Default::default()
        };
        let root = places.top_dir();
        let envs = places.sub_dir(root);
        let dev = places.sub_dir(envs);
        let prod = places.sub_dir(envs);
        let other = places.top_dir();
        let mut at = |root_id: u32, dir: u32| Place {
            root: root_id,
            dir,
            file: places.file(),
        };
        let (a, b, e, d, p, o) = (
            at(0, root),
            at(0, root),
            at(0, envs),
            at(0, dev),
            at(0, prod),
            at(1, other),
        );
        Tree {
            places,
            a,
            b,
            e,
            d,
            p,
            o,
        }
    }

    fn origin(source: &str) -> Origin {
        Origin {
            source: source.into(),
            line: 1,
        }
    }

    #[test]
    fn the_nearest_level_wins_and_siblings_are_never_in_scope() {
        let t = tree(false);
        let mut index = Index::default();
        index.insert("cm".into(), t.a, origin("a.yaml"), "root");
        index.insert("cm".into(), t.d, origin("envs/dev/d.yaml"), "dev");
        assert_eq!(index.resolve(&t.places, t.d, "cm"), Resolved::Found(&"dev"));
        assert_eq!(
            index.resolve(&t.places, t.p, "cm"),
            Resolved::Found(&"root")
        );
        assert_eq!(
            index.resolve(&t.places, t.e, "cm"),
            Resolved::Found(&"root")
        );
        // Not in another root without --bundle.
        assert_eq!(index.resolve(&t.places, t.o, "cm"), Resolved::Missing);
        assert_eq!(index.resolve(&t.places, t.d, "other"), Resolved::Missing);
    }

    #[test]
    fn only_the_bundle_sees_other_roots_and_at_the_farthest_distance() {
        let t = tree(true);
        let mut index = Index::default();
        index.insert("cm".into(), t.o, origin("other/o.yaml"), "other");
        assert_eq!(
            index.resolve(&t.places, t.d, "cm"),
            Resolved::Found(&"other")
        );
        index.insert("cm".into(), t.e, origin("envs/e.yaml"), "envs");
        assert_eq!(
            index.resolve(&t.places, t.d, "cm"),
            Resolved::Found(&"envs")
        );
    }

    #[test]
    fn different_candidates_at_one_distance_are_ambiguous_equal_ones_are_not() {
        let t = tree(false);
        let mut index = Index::default();
        index.insert("cm".into(), t.b, origin("b.yaml"), "x");
        index.insert("cm".into(), t.a, origin("a.yaml"), "x");
        assert_eq!(index.resolve(&t.places, t.d, "cm"), Resolved::Found(&"x"));
        index.insert("cm".into(), t.b, origin("b2.yaml"), "y");
        let (a, b2) = (origin("a.yaml"), origin("b2.yaml"));
        assert_eq!(
            index.resolve(&t.places, t.d, "cm"),
            Resolved::Ambiguous(&a, &b2)
        );
        // The same file is nearer than the ambiguity of its directory.
        assert_eq!(index.resolve(&t.places, t.a, "cm"), Resolved::Found(&"x"));
    }
}

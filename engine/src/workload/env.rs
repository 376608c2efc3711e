//! A container's environment, resolved with Kubernetes' own rules.
//!
//! The kubelet builds a container's environment in this order: every `envFrom` source in turn
//! (a later source overrides an earlier one, `prefix` is prepended to each key), then every `env`
//! entry in turn (overriding `envFrom`), expanding `$(VAR)` in each `env` value from what has been
//! defined so far; an undefined reference stays literal and `$$` is an escaped `$`. `command` and
//! `args` are expanded with the final environment. We reproduce exactly that, with two twists that
//! make the result safe to police:
//!
//! - Values we cannot read (a Secret, a ConfigMap the snapshot does not have, the Downward API)
//!   are kept as [`EnvValue::Unreadable`] with the reason, never guessed and never dropped.
//! - When a name appears more than once in `env`, every one of its values is a candidate: merge
//!   tools disagree on which duplicate survives, so each one could be the value in effect.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::EnvVar;

use super::ContainerView;
use crate::snapshot::{ConfigMapData, Lookup, Snapshot};

/// One value a variable can have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// The value, after `$(VAR)` expansion.
    Literal(String),
    /// A value exists (or may exist) but cannot be read here; the text says why.
    Unreadable(String),
}

/// A value with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub value: EnvValue,
    /// Field path of the entry that sets it, e.g. `spec.containers[0].env[OPENAI_BASE_URL]`
    /// or `spec.containers[0].envFrom[1]`.
    pub path: String,
    /// Where the value was read from when it is not inline, e.g. `ConfigMap "ai" key "URL"`.
    pub origin: Option<String>,
}

/// An `envFrom` source, read or not.
#[derive(Debug, Clone)]
enum FromSource {
    Known {
        path: String,
        prefix: String,
        data: ConfigMapData,
        origin: String,
    },
    Unknown {
        path: String,
        prefix: String,
        why: String,
    },
}

/// An `envFrom` source whose keys cannot be read, so it may set any variable with its prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpaqueSource {
    pub path: String,
    pub prefix: String,
    pub why: String,
}

/// The longest value `$(VAR)` expansion produces; a longer one is [`EnvValue::Unreadable`].
///
/// Expansion can grow a value exponentially (`B=$(A)$(A)…`, `C=$(B)$(B)…`), so a 3 MiB review
/// could otherwise ask for gigabytes. No endpoint is this long, and an unreadable value is judged
/// as the policy's `unresolved` disposition says (Deny by default), as a Secret is.
pub const MAX_EXPANDED_BYTES: usize = 64 * 1024;
/// What expansion may add, in all, to one container's values (`env`, `command`, `args`) beyond
/// their written length; past it, every further expansion that grows is unreadable.
pub const MAX_EXPANSION_GROWTH_PER_CONTAINER: usize = 1024 * 1024;

/// The resolved environment of one container.
#[derive(Debug, Clone)]
pub struct ResolvedEnv {
    /// Values set by `env`, every duplicate kept, in order.
    explicit: BTreeMap<String, Vec<Candidate>>,
    /// `envFrom` sources in order.
    sources: Vec<FromSource>,
    /// What expansion may still add (see [`MAX_EXPANSION_GROWTH_PER_CONTAINER`]).
    growth_left: std::cell::Cell<usize>,
}

impl Default for ResolvedEnv {
    fn default() -> Self {
        ResolvedEnv {
            explicit: BTreeMap::new(),
            sources: Vec::new(),
            growth_left: std::cell::Cell::new(MAX_EXPANSION_GROWTH_PER_CONTAINER),
        }
    }
}

impl ResolvedEnv {
    /// Resolves a container's environment. `namespace` is where ConfigMaps are looked up.
    pub fn resolve(container: &ContainerView<'_>, namespace: &str, snapshot: &Snapshot) -> Self {
        let mut env = ResolvedEnv::default();
        for (i, from) in container.env_from.iter().enumerate() {
            let path = format!("{}.envFrom[{i}]", container.path);
            let prefix = from.prefix.clone().unwrap_or_default();
            if let Some(cm) = &from.config_map_ref {
                let name = cm.name.as_str();
                match snapshot.config_map(namespace, name) {
                    Lookup::Found(data) => env.sources.push(FromSource::Known {
                        path,
                        prefix,
                        data,
                        origin: format!("ConfigMap {name:?}"),
                    }),
                    // An absent ConfigMap sets nothing: optional ones are skipped and required
                    // ones keep the container from starting.
                    Lookup::Absent => {}
                    Lookup::Unknown => env.sources.push(FromSource::Unknown {
                        path,
                        prefix,
                        why: match snapshot.config_map_unknown_reason(namespace, name) {
                            Some(reason) => format!("ConfigMap {name:?}, which {reason},"),
                            None => format!("ConfigMap {name:?} is not available to hostguard"),
                        },
                    }),
                }
            } else if let Some(secret) = &from.secret_ref {
                env.sources.push(FromSource::Unknown {
                    path,
                    prefix,
                    why: format!("Secret {:?} (hostguard never reads Secrets)", secret.name),
                });
            }
        }

        // The kubelet's running map of what is defined so far, used for `$(VAR)` expansion.
        let mut defined: BTreeMap<String, EnvValue> = BTreeMap::new();
        for from in &env.sources {
            if let FromSource::Known { prefix, data, .. } = from {
                for (key, value) in data.iter() {
                    if !key.contains('=') {
                        defined.insert(format!("{prefix}{key}"), EnvValue::Literal(value.clone()));
                    }
                }
            }
        }

        for var in container.env {
            let path = format!("{}.env[{}]", container.path, var.name);
            let (value, origin) = value_of(var, namespace, snapshot, &defined, &env.growth_left);
            if let Some(value) = value {
                defined.insert(var.name.clone(), value.clone());
                env.explicit
                    .entry(var.name.clone())
                    .or_default()
                    .push(Candidate {
                        value,
                        path,
                        origin,
                    });
            } else {
                // Set to nothing (an absent optional reference): it still hides envFrom.
                env.explicit.entry(var.name.clone()).or_default();
            }
        }
        env
    }

    /// Every value `name` can have, excluding what opaque `envFrom` sources might set (see
    /// [`ResolvedEnv::opaque_sources`]). Empty when the variable is not visibly set.
    pub fn candidates(&self, name: &str) -> Vec<Candidate> {
        if let Some(explicit) = self.explicit.get(name) {
            return explicit.clone();
        }
        for source in self.sources.iter().rev() {
            if let FromSource::Known {
                path,
                prefix,
                data,
                origin,
            } = source
                && let Some(key) = name.strip_prefix(prefix.as_str())
                && let Some(value) = data.get(key)
            {
                return vec![Candidate {
                    value: EnvValue::Literal(value.clone()),
                    path: path.clone(),
                    origin: Some(format!("{origin} key {key:?}")),
                }];
            }
        }
        Vec::new()
    }

    /// Every variable name the container visibly gets: its `env` entries and the keys of the
    /// `envFrom` sources that could be read (with their prefixes), sorted, each once.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.explicit.keys().cloned().collect();
        for source in &self.sources {
            if let FromSource::Known { prefix, data, .. } = source {
                names.extend(data.keys().map(|k| format!("{prefix}{k}")));
            }
        }
        names.sort_unstable();
        names.dedup();
        names
    }

    /// `envFrom` sources that cannot be read and could set `name` (it is not set by `env`, and
    /// no readable source after them sets it).
    pub fn opaque_sources_for(&self, name: &str) -> Vec<OpaqueSource> {
        if self.explicit.contains_key(name) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for source in self.sources.iter().rev() {
            match source {
                FromSource::Known { prefix, data, .. } => {
                    if name
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|k| data.contains_key(k))
                    {
                        break;
                    }
                }
                FromSource::Unknown { path, prefix, why } => {
                    if name.starts_with(prefix.as_str()) {
                        out.push(OpaqueSource {
                            path: path.clone(),
                            prefix: prefix.clone(),
                            why: why.clone(),
                        });
                    }
                }
            }
        }
        out.reverse();
        out
    }

    /// Every opaque `envFrom` source of the container.
    pub fn opaque_sources(&self) -> Vec<OpaqueSource> {
        self.sources
            .iter()
            .filter_map(|s| match s {
                FromSource::Unknown { path, prefix, why } => Some(OpaqueSource {
                    path: path.clone(),
                    prefix: prefix.clone(),
                    why: why.clone(),
                }),
                FromSource::Known { .. } => None,
            })
            .collect()
    }

    /// The value in effect at the end (the last `env` entry, else the last source), for
    /// expanding `command` and `args`.
    fn effective(&self, name: &str) -> Option<EnvValue> {
        if let Some(explicit) = self.explicit.get(name) {
            return explicit.last().map(|c| c.value.clone());
        }
        self.candidates(name).pop().map(|c| c.value)
    }

    /// Expands `$(VAR)` in a `command` or `args` entry with the final environment.
    pub fn expand(&self, input: &str) -> EnvValue {
        expand_within(input, |name| self.effective(name), &self.growth_left)
    }
}

/// The value of one `env` entry (None: the entry sets nothing), and where it was read from.
fn value_of(
    var: &EnvVar,
    namespace: &str,
    snapshot: &Snapshot,
    defined: &BTreeMap<String, EnvValue>,
    growth_left: &std::cell::Cell<usize>,
) -> (Option<EnvValue>, Option<String>) {
    let Some(from) = &var.value_from else {
        let raw = var.value.as_deref().unwrap_or("");
        return (
            Some(expand_within(raw, |n| defined.get(n).cloned(), growth_left)),
            None,
        );
    };
    if let Some(r) = &from.config_map_key_ref {
        let origin = format!("ConfigMap {:?} key {:?}", r.name, r.key);
        return match snapshot.config_map(namespace, &r.name) {
            // Values from a ConfigMap are not expanded: the kubelet expands only `value`.
            Lookup::Found(data) => (
                data.get(&r.key).cloned().map(EnvValue::Literal),
                Some(origin),
            ),
            Lookup::Absent => (None, Some(origin)),
            Lookup::Unknown => (
                Some(EnvValue::Unreadable(
                    match snapshot.config_map_unknown_reason(namespace, &r.name) {
                        Some(reason) => format!("{origin}, which {reason}"),
                        None => format!("{origin}, which is not available to hostguard"),
                    },
                )),
                Some(origin),
            ),
        };
    }
    if let Some(r) = &from.secret_key_ref {
        let origin = format!("Secret {:?} key {:?}", r.name, r.key);
        return (
            Some(EnvValue::Unreadable(format!(
                "{origin} (hostguard never reads Secrets)"
            ))),
            Some(origin),
        );
    }
    if let Some(r) = &from.field_ref {
        let origin = format!("field {}", r.field_path);
        return (
            Some(EnvValue::Unreadable(format!("{origin} (Downward API)"))),
            Some(origin),
        );
    }
    if let Some(r) = &from.resource_field_ref {
        let origin = format!("resource {}", r.resource);
        return (
            Some(EnvValue::Unreadable(format!("{origin} (Downward API)"))),
            Some(origin),
        );
    }
    (
        Some(EnvValue::Unreadable(
            "a valueFrom source hostguard does not know".into(),
        )),
        None,
    )
}

/// [`expand`], charging what the result adds beyond `input`'s length to `growth_left`: a
/// result that would need more, or is longer than [`MAX_EXPANDED_BYTES`], is unreadable.
fn expand_within(
    input: &str,
    lookup: impl Fn(&str) -> Option<EnvValue>,
    growth_left: &std::cell::Cell<usize>,
) -> EnvValue {
    let limit = MAX_EXPANDED_BYTES.min(input.len().saturating_add(growth_left.get()));
    let value = expand_bounded(input, lookup, limit);
    if let EnvValue::Literal(out) = &value {
        growth_left.set(
            growth_left
                .get()
                .saturating_sub(out.len().saturating_sub(input.len())),
        );
    }
    value
}

/// Kubernetes' `$(VAR)` expansion (`third_party/forked/golang/expansion`): `$$` is `$`,
/// `$(NAME)` is NAME's value or stays literal when NAME is undefined, an unclosed `$(` stays
/// literal. A reference to an unreadable value makes the whole result unreadable, and so does a
/// result longer than [`MAX_EXPANDED_BYTES`].
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<EnvValue>) -> EnvValue {
    expand_bounded(input, lookup, MAX_EXPANDED_BYTES)
}

fn too_long(limit: usize) -> EnvValue {
    EnvValue::Unreadable(format!(
        "its $(VAR) expansion is longer than {limit} bytes, more than hostguard reads"
    ))
}

fn expand_bounded(
    input: &str,
    lookup: impl Fn(&str) -> Option<EnvValue>,
    limit: usize,
) -> EnvValue {
    if !input.contains('$') {
        return EnvValue::Literal(input.to_string());
    }
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut unreadable: Option<String> = None;
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest[1..].find(')') {
                    Some(close) => {
                        let name = &rest[1..1 + close];
                        match lookup(name) {
                            Some(EnvValue::Literal(v)) => {
                                if out.len() + v.len() > limit {
                                    return too_long(limit);
                                }
                                out.push_str(&v)
                            }
                            Some(EnvValue::Unreadable(why)) => {
                                unreadable
                                    .get_or_insert(format!("refers to $({name}), from {why}"));
                            }
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 2
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // `$x`: the operator and the next character stay as they are.
                    let ch = rest.chars().next().unwrap_or('$');
                    out.push('$');
                    out.push(ch);
                    ch.len_utf8()
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < input.len() {
        out.push_str(&input[checkpoint..]);
    }
    match unreadable {
        Some(why) => EnvValue::Unreadable(why),
        None if out.len() > limit => too_long(limit),
        None => EnvValue::Literal(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn lookup(name: &str) -> Option<EnvValue> {
        match name {
            "HOST" => Some(EnvValue::Literal("x.openai.azure.com".into())),
            "EMPTY" => Some(EnvValue::Literal(String::new())),
            "SECRET" => Some(EnvValue::Unreadable("Secret \"s\" key \"k\"".into())),
            _ => None,
        }
    }

    #[rstest]
    #[case::plain("https://a/b", "https://a/b")]
    #[case::reference("https://$(HOST)/v1", "https://x.openai.azure.com/v1")]
    #[case::undefined_stays_literal("https://$(NOPE)/v1", "https://$(NOPE)/v1")]
    #[case::escaped_dollar("$$(HOST)", "$(HOST)")]
    #[case::double_escape("$$$$", "$$")]
    #[case::unclosed("$(HOST", "$(HOST")]
    #[case::lone_dollar_at_end("cost$", "cost$")]
    #[case::dollar_other("$x$(HOST)", "$xx.openai.azure.com")]
    #[case::empty_value("a$(EMPTY)b", "ab")]
    #[case::non_ascii_after_dollar("$é", "$é")]
    fn expansion_follows_kubernetes_rules(#[case] input: &str, #[case] expected: &str) {
        assert_eq!(expand(input, lookup), EnvValue::Literal(expected.into()));
    }

    #[test]
    fn an_expansion_longer_than_the_cap_is_unreadable() {
        let big = "x".repeat(MAX_EXPANDED_BYTES / 2 + 1);
        let lookup = |name: &str| (name == "BIG").then(|| EnvValue::Literal(big.clone()));
        assert_eq!(
            expand("$(BIG)", lookup),
            EnvValue::Literal(big.clone()),
            "under the cap"
        );
        match expand("$(BIG)$(BIG)", lookup) {
            EnvValue::Unreadable(why) => assert!(why.contains("longer than"), "{why}"),
            other => panic!(
                "expected unreadable, got {} bytes",
                format!("{other:?}").len()
            ),
        }
    }

    #[test]
    fn exponential_expansion_stops_at_the_container_budget() {
        use k8s_openapi::api::core::v1::EnvVar;
        // A=1 KiB, B=16×A, C=16×B, D=16×C...: each step 16 times longer; without a bound the
        // fifth is 1 GiB.
        let mut env = vec![EnvVar {
            name: "V0".into(),
            value: Some("x".repeat(1024)),
            ..Default::default()
        }];
        for i in 1..8 {
            env.push(EnvVar {
                name: format!("V{i}"),
                value: Some(format!("$(V{})", i - 1).repeat(16)),
                ..Default::default()
            });
        }
        let container = ContainerView {
            path: "spec.containers[0]".into(),
            name: "app",
            env: &env,
            env_from: &[],
            command: &[],
            args: &[],
        };
        let resolved = ResolvedEnv::resolve(&container, "default", &Snapshot::default());
        let len = |name: &str| match &resolved.candidates(name)[0].value {
            EnvValue::Literal(v) => Some(v.len()),
            EnvValue::Unreadable(_) => None,
        };
        assert_eq!(len("V1"), Some(16 * 1024));
        // 256 KiB is over the per-value cap; and everything built on it cannot be read.
        for i in 2..8 {
            assert_eq!(len(&format!("V{i}")), None, "V{i}");
        }
        // `command` entries share the container's budget and cap.
        assert!(matches!(
            resolved.expand("$(V1)$(V1)$(V1)$(V1)$(V1)"),
            EnvValue::Unreadable(_)
        ));
    }

    #[test]
    fn reference_to_secret_makes_value_unreadable() {
        match expand("https://$(SECRET)/v1", lookup) {
            EnvValue::Unreadable(why) => assert!(why.contains("$(SECRET)"), "{why}"),
            other => panic!("expected unreadable, got {other:?}"),
        }
    }
}

//! The image and the chart agree with the crate. CI has no container engine, so the Dockerfile is
//! checked by reading it: an official Rust build stage that builds the locked release binary, a
//! distroless final stage that holds only that binary and runs it as a numeric non-root user with
//! `ENTRYPOINT ["/hostguard"]` and `CMD ["serve"]`, a build context that admits what Cargo reads,
//! and the user, ports and version the chart assumes. The chart's ClusterRole and Role grant
//! exactly the controller's own RBAC table (`hostguard::cluster::rbac::RULES`).

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::path::Path;

use pretty_assertions::assert_eq;
use serde_json::Value;

type TestResult = Result<(), Box<dyn Error>>;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> Result<String, Box<dyn Error>> {
    std::fs::read_to_string(root().join(rel)).map_err(|e| format!("{rel}: {e}").into())
}

fn yaml(rel: &str) -> Result<Value, Box<dyn Error>> {
    Ok(serde_saphyr::from_str(&read(rel)?)?)
}

/// One Dockerfile instruction, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

/// One build stage: the image it starts from, its name, its instructions after FROM.
#[derive(Debug)]
struct Stage {
    image: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all(&self, keyword: &'static str) -> impl Iterator<Item = &str> {
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
            .map(|i| i.args.as_str())
    }

    fn last(&self, keyword: &'static str) -> Option<&str> {
        self.all(keyword).last()
    }
}

/// The Dockerfile's stages, with `${ARG}` in FROM lines replaced by the global ARG defaults.
fn stages() -> Result<Vec<Stage>, Box<dyn Error>> {
    let text = read("Dockerfile")?;
    let mut instructions = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        // Comment lines are dropped, even between continuation lines, as Docker does.
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                pending.push_str(part);
                pending.push(' ');
            }
            None => {
                pending.push_str(trimmed);
                let (keyword, args) = pending
                    .split_once(char::is_whitespace)
                    .unwrap_or((&pending, ""));
                instructions.push(Instruction {
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.split_whitespace().collect::<Vec<_>>().join(" "),
                });
                pending.clear();
            }
        }
    }

    let mut args = BTreeMap::new();
    let mut stages: Vec<Stage> = Vec::new();
    for i in instructions {
        match (i.keyword.as_str(), stages.last_mut()) {
            ("ARG", None) => {
                let (name, default) = i.args.split_once('=').unwrap_or((&i.args, ""));
                args.insert(format!("${{{name}}}"), default.to_string());
            }
            ("FROM", _) => {
                let words: Vec<&str> = i.args.split(' ').filter(|w| !w.starts_with("--")).collect();
                let mut image = words.first().ok_or("FROM without an image")?.to_string();
                for (name, value) in &args {
                    image = image.replace(name, value);
                }
                let name = match words.as_slice() {
                    [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_string()),
                    _ => None,
                };
                stages.push(Stage {
                    image,
                    name,
                    instructions: Vec::new(),
                });
            }
            (_, Some(stage)) => stage.instructions.push(i),
            (keyword, None) => return Err(format!("{keyword} before the first FROM").into()),
        }
    }
    Ok(stages)
}

/// `(build, final)`: the Dockerfile has exactly these two stages.
fn build_and_final() -> Result<(Stage, Stage), Box<dyn Error>> {
    let mut stages = stages()?;
    assert_eq!(
        stages.len(),
        2,
        "a build stage and a final stage: {stages:#?}"
    );
    let last = stages.pop().ok_or("no final stage")?;
    let first = stages.pop().ok_or("no build stage")?;
    Ok((first, last))
}

/// An exec-form (JSON array) instruction argument.
fn exec_form(args: Option<&str>) -> Result<Vec<String>, Box<dyn Error>> {
    let args = args.ok_or("instruction missing")?;
    serde_json::from_str(args).map_err(|e| format!("{args:?} is not exec (JSON) form: {e}").into())
}

fn debian_release(codename: &str) -> Option<u32> {
    match codename {
        "bookworm" => Some(12),
        "trixie" => Some(13),
        _ => None,
    }
}

#[test]
fn the_build_stage_is_the_official_rust_image_on_the_runtime_debian_release() -> TestResult {
    let (build, runtime) = build_and_final()?;
    let (repository, tag) = build
        .image
        .rsplit_once(':')
        .ok_or_else(|| format!("{}: no tag", build.image))?;
    assert!(
        ["rust", "library/rust", "docker.io/library/rust"].contains(&repository),
        "the build stage must use the official Rust image, not {repository}"
    );
    assert_eq!(build.name.as_deref(), Some("build"));

    // The binary links glibc dynamically: build on the Debian release the runtime is made from.
    let codename = tag.rsplit('-').next().unwrap_or("");
    let release = debian_release(codename)
        .ok_or_else(|| format!("{}: tag names no known Debian release", build.image))?;
    assert!(
        runtime.image.starts_with("gcr.io/distroless/")
            && runtime.image.contains(&format!("-debian{release}")),
        "the final stage must be distroless on debian{release}, not {}",
        runtime.image
    );

    // The toolchain is at least the crate's minimum supported Rust version.
    let version = |s: &str| -> Vec<u32> { s.split('.').filter_map(|p| p.parse().ok()).collect() };
    let toolchain = tag.trim_end_matches(&format!("-{codename}"));
    let manifest = read("Cargo.toml")?;
    let msrv = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .ok_or("Cargo.toml has no rust-version")?
        .trim_matches('"');
    assert!(
        version(toolchain) >= version(msrv),
        "rust:{toolchain} is older than the crate's rust-version {msrv}"
    );
    Ok(())
}

#[test]
fn the_build_stage_builds_the_locked_release_binary() -> TestResult {
    let (build, runtime) = build_and_final()?;
    let build_steps: Vec<&str> = build.all("RUN").collect();
    assert!(
        build_steps
            .iter()
            .any(|r| r.contains("cargo build --locked --release")),
        "no `cargo build --locked --release` in {build_steps:#?}"
    );
    // What the final stage copies is what that build step leaves behind.
    let copy = runtime
        .last("COPY")
        .ok_or("the final stage copies nothing")?;
    let source = copy
        .split(' ')
        .find(|w| !w.starts_with("--"))
        .ok_or("COPY without a source")?;
    assert!(
        build_steps.iter().any(|r| r.contains(source)),
        "{source} is not produced by the build stage"
    );
    Ok(())
}

#[test]
fn the_final_stage_holds_only_the_binary() -> TestResult {
    let (_, runtime) = build_and_final()?;
    let adds: Vec<&str> = runtime.all("COPY").chain(runtime.all("ADD")).collect();
    assert_eq!(adds.len(), 1, "the final stage adds one file: {adds:?}");
    let words: Vec<&str> = adds[0].split(' ').collect();
    assert!(
        runtime.last("ADD").is_none(),
        "ADD fetches and unpacks; the final stage copies: {adds:?}"
    );
    assert_eq!(
        words.first().copied(),
        Some("--from=build"),
        "copied from the build stage"
    );
    assert_eq!(words.len(), 3, "one source, one destination: {words:?}");
    assert_eq!(words[2], "/hostguard");
    assert_eq!(
        runtime.all("RUN").count(),
        0,
        "distroless has no shell to RUN anything"
    );
    Ok(())
}

#[test]
fn the_image_runs_the_binary_as_a_numeric_non_root_user() -> TestResult {
    let (_, runtime) = build_and_final()?;
    let user = runtime.last("USER").ok_or("the final stage sets no USER")?;
    let ids: Vec<u32> = user
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!("USER {user} is not numeric ({e}): runAsNonRoot cannot verify a name")
        })?;
    assert!(ids.iter().all(|&id| id != 0), "USER {user} is root");

    assert_eq!(exec_form(runtime.last("ENTRYPOINT"))?, ["/hostguard"]);
    assert_eq!(exec_form(runtime.last("CMD"))?, ["serve"]);

    // The chart runs the pod as the image's user.
    let values = yaml("charts/hostguard/values.yaml")?;
    let psc = &values["podSecurityContext"];
    assert_eq!(psc["runAsUser"].as_u64(), Some(u64::from(ids[0])));
    if let Some(&gid) = ids.get(1) {
        assert_eq!(psc["runAsGroup"].as_u64(), Some(u64::from(gid)));
    }
    Ok(())
}

#[test]
fn the_image_exposes_the_ports_the_chart_uses() -> TestResult {
    let (_, runtime) = build_and_final()?;
    let exposed: BTreeSet<u64> = runtime
        .all("EXPOSE")
        .flat_map(|a| a.split(' '))
        .map(|p| p.trim_end_matches("/tcp").parse())
        .collect::<Result<_, _>>()?;
    let values = yaml("charts/hostguard/values.yaml")?;
    let chart: BTreeSet<u64> = ["port", "adminPort"]
        .iter()
        .filter_map(|k| values["server"][k].as_u64())
        .collect();
    assert_eq!(exposed, chart);
    Ok(())
}

/// The top-level directories `Cargo.toml` makes Cargo read: the directory of every explicitly
/// declared target (`[lib]`, `[[bin]]`, `[[bench]]`, `[[test]]`, `[[example]]`), by its `path` or
/// the default one, and a build script.
fn cargo_inputs(manifest: &str) -> BTreeSet<String> {
    let default_dir = |section: &str| match section {
        "[[bench]]" => "benches",
        "[[test]]" => "tests",
        "[[example]]" => "examples",
        _ => "src",
    };
    let mut out = BTreeSet::new();
    let mut section = String::new();
    let mut target: Option<String> = None;
    let flush = |target: &mut Option<String>, out: &mut BTreeSet<String>| {
        if let Some(dir) = target.take() {
            out.insert(dir);
        }
    };
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            flush(&mut target, &mut out);
            section = line.to_string();
            if ["[lib]", "[[bin]]", "[[bench]]", "[[test]]", "[[example]]"].contains(&line) {
                target = Some(default_dir(line).to_string());
            }
        } else if let Some(path) = line.strip_prefix("path = ").or(line.strip_prefix("path=")) {
            if target.is_some() {
                let path = path.trim_matches('"');
                target = Some(path.split('/').next().unwrap_or(path).to_string());
            }
        } else if section == "[package]"
            && let Some(build) = line.strip_prefix("build = ")
        {
            out.insert(build.trim_matches('"').to_string());
        }
    }
    flush(&mut target, &mut out);
    if root().join("build.rs").exists() {
        out.insert("build.rs".into());
    }
    out
}

/// The members of `[workspace] members = [...]` other than the root package itself.
fn workspace_members(manifest: &str) -> Vec<String> {
    let mut in_workspace = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_workspace = line == "[workspace]";
        } else if in_workspace && let Some(list) = line.strip_prefix("members = ") {
            return list
                .trim_matches(['[', ']'])
                .split(',')
                .map(|m| m.trim().trim_matches('"').to_string())
                .filter(|m| !m.is_empty() && m != ".")
                .collect();
        }
    }
    Vec::new()
}

#[test]
fn workspace_members_are_read_from_the_manifest() {
    let manifest = "[workspace]\nmembers = [\".\", \"engine\"]\n\n[package]\nname = \"x\"\n";
    assert_eq!(workspace_members(manifest), ["engine"]);
    assert!(workspace_members("[package]\nname = \"x\"\n").is_empty());
}

#[test]
fn the_build_context_admits_only_what_cargo_reads() -> TestResult {
    let ignore = read(".dockerignore")?;
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        patterns.first(),
        Some(&"*"),
        ".dockerignore must be an allowlist (`*` first)"
    );
    let admitted: BTreeSet<&str> = patterns
        .iter()
        .filter_map(|p| p.strip_prefix('!'))
        .map(|p| p.trim_end_matches('/'))
        .collect();
    for never in ["target", ".git", "charts", "fuzz", ".ci"] {
        assert!(
            !admitted.contains(never),
            "{never} must stay out of the build context"
        );
    }
    let manifest = read("Cargo.toml")?;
    let mut needed = cargo_inputs(&manifest);
    needed.extend(["Cargo.toml".to_string(), "Cargo.lock".to_string()]);
    // Cargo loads every workspace member's manifest and targets, even to build one binary.
    for member in workspace_members(&manifest) {
        needed.insert(format!("{member}/Cargo.toml"));
        let member_manifest = read(&format!("{member}/Cargo.toml"))?;
        needed.extend(
            cargo_inputs(&member_manifest)
                .into_iter()
                .map(|dir| format!("{member}/{dir}")),
        );
    }
    for input in &needed {
        assert!(
            admitted.contains(input.as_str()),
            "Cargo reads {input} but .dockerignore keeps it out of the image build"
        );
    }
    Ok(())
}

#[test]
fn cargo_inputs_follow_explicit_targets() {
    let manifest = "[package]\nname = \"x\"\n[lib]\npath = \"src/lib.rs\"\n[[bench]]\nname = \"engine\"\nharness = false\n[[test]]\nname = \"t\"\npath = \"it/t.rs\"\n[dependencies]\npath = \"not-a-target\"\n";
    let got: Vec<String> = cargo_inputs(manifest).into_iter().collect();
    assert_eq!(got, ["benches", "it", "src"]);
}

#[test]
fn the_chart_and_the_image_tag_carry_the_crate_version() -> TestResult {
    let chart = yaml("charts/hostguard/Chart.yaml")?;
    let crate_version = env!("CARGO_PKG_VERSION");
    // The image tag defaults to appVersion: chart, image and binary are released together.
    assert_eq!(chart["appVersion"].as_str(), Some(crate_version));
    assert_eq!(chart["version"].as_str(), Some(crate_version));
    Ok(())
}

/// `(scope, apiGroup, resource, verb)` of every permission in a list of RBAC rules.
type Permissions = BTreeSet<(String, String, String, String)>;

/// The chart's RBAC template as YAML: its template actions are only names, labels, annotations
/// and the leading comment, so with those lines dropped the rules read as they render.
fn chart_permissions() -> Result<Permissions, Box<dyn Error>> {
    let text = read("charts/hostguard/templates/rbac.yaml")?;
    let mut plain = String::new();
    let mut in_comment = false;
    for line in text.lines() {
        if line.contains("{{- /*") || line.contains("{{/*") {
            in_comment = true;
        }
        if !in_comment && !line.contains("{{") {
            plain.push_str(line);
            plain.push('\n');
        }
        if line.contains("*/") {
            in_comment = false;
        }
    }
    let mut out = Permissions::new();
    for doc in plain.split("\n---\n") {
        let doc: Value = serde_saphyr::from_str(doc)?;
        let scope = match doc["kind"].as_str() {
            Some("ClusterRole") => "Cluster",
            Some("Role") => "OwnNamespace",
            _ => continue,
        };
        for rule in doc["rules"].as_array().ok_or("a role without rules")? {
            let list = |key: &str| -> Vec<String> {
                rule[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            };
            for group in list("apiGroups") {
                for resource in list("resources") {
                    for verb in list("verbs") {
                        out.insert((scope.into(), group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    Ok(out)
}

#[test]
fn the_chart_grants_exactly_the_controllers_rbac_rules() -> TestResult {
    use hostguard::cluster::rbac::{RULES, Scope};
    let mut want = Permissions::new();
    for rule in RULES {
        let scope = match rule.scope {
            Scope::Cluster => "Cluster",
            Scope::OwnNamespace => "OwnNamespace",
        };
        for resource in rule.resources {
            for verb in rule.verbs {
                want.insert((
                    scope.into(),
                    rule.api_group.into(),
                    (*resource).into(),
                    (*verb).into(),
                ));
            }
        }
    }
    let got = chart_permissions()?;
    // scripts/chart-test compares the rendered ClusterRole and Role with the same table.
    assert_eq!(
        (
            got.difference(&want).collect::<Vec<_>>(),
            want.difference(&got).collect::<Vec<_>>()
        ),
        (Vec::new(), Vec::new()),
        "(granted by charts/hostguard/templates/rbac.yaml but not in src/cluster/rbac.rs RULES, \
         in RULES but not granted)"
    );
    Ok(())
}

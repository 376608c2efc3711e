//! Config files an AI application reads from a mounted ConfigMap, read into the same endpoint
//! facts its env would give: LiteLLM's proxy `config.yaml` (`model_list`) and HolmesGPT's
//! `model_list.yaml`. For such a container the file, not the env alone, says where model traffic
//! goes (an `AZURE_API_KEY` with the endpoint in `config.yaml` is not "Azure with no endpoint"),
//! so its facts take the place of the env inference for that container.
//!
//! Which file: LiteLLM reads `CONFIG_FILE_PATH` when it names an existing file, else
//! `--config`/`-c`; `LITELLM_CONFIG_BUCKET_NAME` loads it from a bucket instead. HolmesGPT reads
//! `MODEL_LIST_FILE_LOCATION`, default `/etc/holmes/config/model_list.yaml`. The path is tied to
//! a ConfigMap key through the container's `volumeMounts` (`subPath`, or a directory mount and the
//! volume's `items`). A ConfigMap that is not in the input or the cache, a Secret volume, or a
//! value from a Secret leaves the endpoint unresolved (fail closed). Sources: FACTS.md, LiteLLM and
//! HolmesGPT sections.

use serde_json::Value;

use super::adapters::Malformed;
use super::adapters::value::Field;
use super::{Endpoint, EndpointValue, Signal};
use crate::snapshot::{Lookup, Snapshot};
use crate::workload::env::{EnvValue, ResolvedEnv};
use crate::workload::{ContainerView, PodTemplateView};

/// What a container's config file says, when the container is a known application that reads one.
#[derive(Debug, Default)]
pub(crate) struct ConfigFacts {
    pub signals: Vec<Signal>,
    /// OpenAI endpoints (empty: the file configures no OpenAI model).
    pub endpoints: Vec<Endpoint>,
    pub malformed: Vec<Malformed>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum App {
    LiteLlm,
    Holmes,
    LibreChat,
    RagFlow,
}

/// `repo` is the container's image repository (`apps::repository`).
fn app_of(container: &ContainerView<'_>, repo: &str) -> Option<App> {
    let last = repo.rsplit('/').next().unwrap_or(repo);
    // The image's name first: it is the cheap test, and it rules out most images (a substring
    // search costs more than the decision's other tests of a container's image).
    if last.starts_with("litellm") && repo.contains("berriai/")
        || container.command.first().is_some_and(|c| c == "litellm")
    {
        Some(App::LiteLlm)
    } else if last.starts_with("holmes") && repo.contains("robustadev/") {
        Some(App::Holmes)
    } else if last.starts_with("librechat") && repo.contains("danny-avila/") {
        Some(App::LibreChat)
    } else if last.starts_with("ragflow") && repo.contains("infiniflow/") {
        Some(App::RagFlow)
    } else {
        None
    }
}

/// One variable of the container, as the application sees it.
enum Var {
    Unset,
    Value(String),
    Unreadable(String),
}

fn var(env: &ResolvedEnv, name: &str) -> Var {
    let candidates = env.candidates(name);
    match candidates.as_slice() {
        [] => match env.opaque_sources_for(name).first() {
            Some(s) => Var::Unreadable(format!("{name} may be set by {}: {}", s.path, s.why)),
            None => Var::Unset,
        },
        [.., last] => match &last.value {
            EnvValue::Literal(v) if v.is_empty() => Var::Unset,
            EnvValue::Literal(v) => Var::Value(v.clone()),
            EnvValue::Unreadable(why) => Var::Unreadable(format!("{name}: {why}")),
        },
    }
}

/// The value of a flag in `command` + `args` (`--config X`, `--config=X`, `-c X`).
fn flag(container: &ContainerView<'_>, names: &[&str]) -> Option<(String, String)> {
    let all: Vec<(String, &str)> = container
        .command
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("{}.command[{i}]", container.path), a.as_str()))
        .chain(
            container
                .args
                .iter()
                .enumerate()
                .map(|(i, a)| (format!("{}.args[{i}]", container.path), a.as_str())),
        )
        .collect();
    let mut found = None;
    for (i, (path, a)) in all.iter().enumerate() {
        for n in names {
            if *a == *n {
                if let Some((p, v)) = all.get(i + 1) {
                    found = Some((p.clone(), v.to_string()));
                }
            } else if let Some(v) = a.strip_prefix(&format!("{n}=")) {
                found = Some((path.clone(), v.to_string()));
            }
        }
    }
    found
}

/// Where a file at `file` in the container comes from.
enum Source {
    ConfigMap {
        name: String,
        key: String,
        mount: String,
    },
    Unreadable(String, String),
    NotMounted,
}

fn source_of(container: &ContainerView<'_>, template: &PodTemplateView, file: &str) -> Source {
    let volumes = template.spec.volumes.as_deref().unwrap_or_default();
    // The most specific mount wins, as in the container's file system.
    let mut best: Option<(usize, Source)> = None;
    for (i, m) in container.volume_mounts.iter().enumerate() {
        let mount_path = m.mount_path.trim_end_matches('/');
        let mount = format!("{}.volumeMounts[{i}]", container.path);
        let rel = if m.sub_path.as_deref().is_some_and(|s| !s.is_empty()) {
            if file != mount_path {
                continue;
            }
            None
        } else if let Some(rel) = file.strip_prefix(&format!("{mount_path}/")) {
            Some(rel.to_string())
        } else {
            continue;
        };
        let Some(volume) = volumes.iter().find(|v| v.name == m.name) else {
            continue;
        };
        let source = if let Some(cm) = &volume.config_map {
            // The file name in the volume, then the key that projects to it.
            let in_volume = match (&rel, &m.sub_path) {
                (Some(rel), _) => rel.clone(),
                (None, Some(sub)) => sub.to_string(),
                (None, None) => continue,
            };
            let key = match &cm.items {
                Some(items) => match items.iter().find(|it| it.path == *in_volume) {
                    Some(it) => it.key.to_string(),
                    None => continue,
                },
                None => in_volume,
            };
            Source::ConfigMap {
                name: cm.name.to_string(),
                key,
                mount,
            }
        } else if volume.secret.is_some() {
            Source::Unreadable(
                mount,
                format!("{file} is in a Secret volume, which hostguard never reads"),
            )
        } else {
            Source::Unreadable(
                mount,
                format!(
                    "{file} is in volume {:?}, which hostguard cannot read",
                    volume.name
                ),
            )
        };
        let depth = mount_path.len();
        if best.as_ref().is_none_or(|(d, _)| depth > *d) {
            best = Some((depth, source));
        }
    }
    best.map_or(Source::NotMounted, |(_, s)| s)
}

/// The facts of `container`'s config file, or None when the container is not a known
/// application or reads no config file (then its env is read as for any container).
/// `repository` is its image's (`apps::repository`).
pub(crate) fn read(
    container: &ContainerView<'_>,
    repository: &str,
    template: &PodTemplateView,
    env: &ResolvedEnv,
    namespace: &str,
    snapshot: &Snapshot,
) -> Option<ConfigFacts> {
    let app = app_of(container, repository)?;
    let mut facts = ConfigFacts::default();
    let unresolved = |facts: &mut ConfigFacts, path: String, why: String| {
        facts.signals.push(Signal::Resource { path: path.clone() });
        facts.endpoints.push(Endpoint {
            value: EndpointValue::Unresolved(why),
            path,
            via: "config file".into(),
            origin: None,
        });
    };
    let (file, file_path) = match app {
        App::LiteLlm => {
            if !env.candidates("LITELLM_CONFIG_BUCKET_NAME").is_empty() {
                unresolved(
                    &mut facts,
                    format!("{}.env[LITELLM_CONFIG_BUCKET_NAME]", container.path),
                    "LITELLM_CONFIG_BUCKET_NAME loads LiteLLM's config from an S3/GCS bucket, which hostguard cannot read".into(),
                );
                return Some(facts);
            }
            let by_env = match var(env, "CONFIG_FILE_PATH") {
                Var::Value(p) => {
                    let path = format!("{}.env[CONFIG_FILE_PATH]", container.path);
                    // CONFIG_FILE_PATH wins only when the file exists; a mounted file does.
                    match source_of(container, template, &p) {
                        Source::NotMounted => None,
                        _ => Some((p, path)),
                    }
                }
                Var::Unreadable(why) => {
                    unresolved(
                        &mut facts,
                        format!("{}.env[CONFIG_FILE_PATH]", container.path),
                        why,
                    );
                    return Some(facts);
                }
                Var::Unset => None,
            };
            by_env.or_else(|| flag(container, &["--config", "-c"]).map(|(p, v)| (v, p)))?
        }
        App::LibreChat => match var(env, "CONFIG_PATH") {
            Var::Value(p) if p.starts_with("http://") || p.starts_with("https://") => {
                unresolved(
                    &mut facts,
                    format!("{}.env[CONFIG_PATH]", container.path),
                    format!(
                        "CONFIG_PATH {p:?} is downloaded by LibreChat at start, which hostguard cannot read"
                    ),
                );
                return Some(facts);
            }
            Var::Value(p) => (p, format!("{}.env[CONFIG_PATH]", container.path)),
            Var::Unreadable(why) => {
                unresolved(
                    &mut facts,
                    format!("{}.env[CONFIG_PATH]", container.path),
                    why,
                );
                return Some(facts);
            }
            Var::Unset => (
                "/app/librechat.yaml".to_string(),
                format!("{}.volumeMounts", container.path),
            ),
        },
        App::RagFlow => (
            "/ragflow/conf/local.service_conf.yaml".to_string(),
            format!("{}.volumeMounts", container.path),
        ),
        App::Holmes => match var(env, "MODEL_LIST_FILE_LOCATION") {
            Var::Value(p) => (
                p,
                format!("{}.env[MODEL_LIST_FILE_LOCATION]", container.path),
            ),
            Var::Unreadable(why) => {
                unresolved(
                    &mut facts,
                    format!("{}.env[MODEL_LIST_FILE_LOCATION]", container.path),
                    why,
                );
                return Some(facts);
            }
            Var::Unset => (
                "/etc/holmes/config/model_list.yaml".to_string(),
                format!("{}.volumeMounts", container.path),
            ),
        },
    };
    let (cm_name, key, mount) = match source_of(container, template, &file) {
        Source::ConfigMap { name, key, mount } => (name, key, mount),
        Source::Unreadable(mount, why) => {
            unresolved(&mut facts, mount, why);
            return Some(facts);
        }
        // LiteLLM told to read a file no volume provides: it may be baked into the image.
        Source::NotMounted if app == App::LiteLlm => {
            unresolved(
                &mut facts,
                file_path,
                format!(
                    "LiteLLM reads {file}, which no ConfigMap volume provides, so its model list cannot be read"
                ),
            );
            return Some(facts);
        }
        Source::NotMounted => return None,
    };
    let label = format!("ConfigMap/{cm_name} key {key}");
    let text = match snapshot.config_map(namespace, &cm_name) {
        Lookup::Found(data) => match data.get(&key) {
            Some(t) => t.to_string(),
            None => {
                unresolved(
                    &mut facts,
                    mount,
                    format!(
                        "ConfigMap {namespace}/{cm_name} has no key {key:?}, which {file} is read from"
                    ),
                );
                return Some(facts);
            }
        },
        Lookup::Absent => {
            unresolved(
                &mut facts,
                mount,
                format!(
                    "ConfigMap {namespace}/{cm_name}, which {file} is read from, does not exist"
                ),
            );
            return Some(facts);
        }
        Lookup::Unknown => {
            let why = snapshot
                .config_map_unknown_reason(namespace, &cm_name)
                .unwrap_or_else(|| format!("ConfigMap {namespace}/{cm_name}, which {file} is read from, is not in the input or the cache"));
            unresolved(&mut facts, mount, why);
            return Some(facts);
        }
    };
    let doc: Value = match serde_saphyr::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            facts.malformed.push(Malformed::new(
                mount,
                format!("{label} ({file}) is not valid YAML: {}", yaml_error(&e)),
            ));
            return Some(facts);
        }
    };
    let result = match app {
        App::LiteLlm => litellm(&doc, &label, env, &mut facts),
        App::Holmes => holmes(&doc, &label, env, &mut facts),
        App::LibreChat => librechat(&doc, &label, env, &container.path, &mut facts),
        App::RagFlow => ragflow(&doc, &label, &mut facts),
    };
    if let Err(e) = result {
        facts.malformed.push(Malformed::new(
            mount,
            format!("{label} field {}: {}", e.path, e.message),
        ));
    }
    Some(facts)
}

/// The provider LiteLLM picks for `model` (`get_llm_provider_logic.py`): a known prefix, else a
/// bare OpenAI model name or `*`. `None`: another provider (or none, which LiteLLM refuses).
fn litellm_provider(model: &str, custom: Option<&str>) -> Option<&'static str> {
    let prefix = custom.or_else(|| model.split_once('/').map(|(p, _)| p));
    match prefix {
        Some("openai" | "text-completion-openai") => Some("openai"),
        Some("azure" | "azure_text" | "azure_ai") => Some("azure"),
        Some(_) => None,
        None => {
            let bare = model;
            let openai = bare == "*"
                || [
                    "gpt-",
                    "chatgpt-",
                    "o1",
                    "o3",
                    "o4",
                    "ft:gpt-",
                    "text-embedding-",
                    "dall-e",
                    "davinci",
                    "babbage",
                    "whisper",
                    "tts-",
                    "omni-moderation",
                    "text-moderation",
                    "computer-use-",
                ]
                .iter()
                .any(|p| bare.starts_with(p));
            openai.then_some("openai")
        }
    }
}

/// Replaces `os.environ/VAR` as LiteLLM's `get_secret` does; `extra` is the config's own
/// `environment_variables`. Err: the value cannot be read.
fn litellm_value(
    raw: &str,
    env: &ResolvedEnv,
    extra: &serde_json::Map<String, Value>,
) -> Result<Option<String>, String> {
    let Some(name) = raw.strip_prefix("os.environ/") else {
        return Ok(Some(raw.to_string()));
    };
    env_or_extra(name, env, extra)
}

fn env_or_extra(
    name: &str,
    env: &ResolvedEnv,
    extra: &serde_json::Map<String, Value>,
) -> Result<Option<String>, String> {
    if let Some(v) = extra.get(name).and_then(Value::as_str) {
        return Ok(Some(v.to_string()).filter(|v| !v.is_empty()));
    }
    match var(env, name) {
        Var::Unset => Ok(None),
        Var::Value(v) => Ok(Some(v)),
        Var::Unreadable(why) => Err(why),
    }
}

fn litellm(
    doc: &Value,
    label: &str,
    env: &ResolvedEnv,
    facts: &mut ConfigFacts,
) -> Result<(), Malformed> {
    let root = Field::root(doc);
    if !doc.is_object() {
        return Err(Malformed::new("(top level)", "must be a mapping"));
    }
    let empty = serde_json::Map::new();
    let extra = root.object("environment_variables")?;
    let extra = extra
        .as_ref()
        .and_then(|f| f.value.as_object())
        .unwrap_or(&empty);
    let global_base = match root.object("litellm_settings")? {
        Some(s) => s.string("api_base")?,
        None => None,
    };
    for entry in root.list("model_list")? {
        let entry = entry.expect_object()?;
        let Some(params) = entry.object("litellm_params")? else {
            continue;
        };
        let model = params.string("model")?.unwrap_or_default();
        let custom = params.string("custom_llm_provider")?;
        let Some(provider) = litellm_provider(model, custom) else {
            continue;
        };
        let path = format!("{label} {}", params.path_of("api_base"));
        facts.signals.push(Signal::Resource {
            path: format!("{label} {}", params.path_of("model")),
        });
        let explicit = params.string("api_base")?.or(params.string("base_url")?);
        let fallbacks: &[&str] = if provider == "openai" {
            &["OPENAI_BASE_URL", "OPENAI_API_BASE"]
        } else {
            &["AZURE_API_BASE"]
        };
        let mut value = None;
        let mut via = String::new();
        if let Some(raw) = explicit {
            via = "api_base".into();
            value = Some(litellm_value(raw, env, extra));
        } else if let Some(g) = global_base {
            via = "the litellm_settings.api_base of the config".into();
            value = Some(litellm_value(g, env, extra));
        } else {
            for name in fallbacks {
                match env_or_extra(name, env, extra) {
                    Ok(None) => continue,
                    r => {
                        via = format!("the {name} variable LiteLLM falls back to");
                        value = Some(r);
                        break;
                    }
                }
            }
        }
        let endpoint_value = match value {
            Some(Ok(Some(url))) => EndpointValue::Url(url),
            Some(Ok(None)) => EndpointValue::Unresolved(format!(
                "{path} names a variable the container does not set"
            )),
            Some(Err(why)) => EndpointValue::Unresolved(why),
            None if provider == "openai" => {
                via = format!("the LiteLLM default for {model}; no api_base is set");
                EndpointValue::Url(super::catalogue::OPENAI_SDK_DEFAULT_BASE_URL.into())
            }
            None => EndpointValue::Unresolved(format!(
                "model {model} has no api_base and no AZURE_API_BASE is set: LiteLLM has no Azure endpoint for it"
            )),
        };
        facts.endpoints.push(Endpoint {
            value: endpoint_value,
            path,
            via,
            origin: None,
        });
    }
    Ok(())
}

/// Replaces `{{ env.NAME }}` as HolmesGPT does (`holmes/utils/env.py`); an unset variable makes
/// Holmes refuse to start, so the value is unresolved.
fn holmes_value(raw: &str, env: &ResolvedEnv) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + end].trim();
        let Some(name) = inner.strip_prefix("env.") else {
            out.push_str(&rest[..start + end + 2]);
            rest = &rest[start + end + 2..];
            continue;
        };
        out.push_str(&rest[..start]);
        match var(env, name.trim()) {
            Var::Value(v) => out.push_str(&v),
            Var::Unset => {
                return Err(format!(
                    "{{{{ env.{name} }}}} names a variable the container does not set (Holmes refuses to start)"
                ));
            }
            Var::Unreadable(why) => return Err(why),
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn holmes(
    doc: &Value,
    label: &str,
    env: &ResolvedEnv,
    facts: &mut ConfigFacts,
) -> Result<(), Malformed> {
    let Some(models) = doc.as_object() else {
        return Err(Malformed::new(
            "(top level)",
            "model_list.yaml must be a mapping of model name to parameters",
        ));
    };
    for (name, entry) in models {
        let entry = Field {
            value: entry,
            path: name.clone(),
        }
        .expect_object()?;
        let model = entry.string("model")?.unwrap_or_default();
        let Some(provider) = litellm_provider(model, None) else {
            continue;
        };
        facts.signals.push(Signal::Resource {
            path: format!("{label} {}", entry.path_of("model")),
        });
        let (raw, field) = match (entry.string("api_base")?, entry.string("base_url")?) {
            (Some(v), _) => (Some(v), "api_base"),
            (None, Some(v)) => (Some(v), "base_url"),
            (None, None) => (None, "api_base"),
        };
        let path = format!("{label} {}", entry.path_of(field));
        let (value, via) = match raw {
            Some(raw) => match holmes_value(raw, env) {
                Ok(url) => (EndpointValue::Url(url), field.to_string()),
                Err(why) => (EndpointValue::Unresolved(why), field.to_string()),
            },
            None => match match var(env, "API_BASE") {
                // LiteLLM itself then falls back to AZURE_API_BASE for an Azure model.
                Var::Unset if provider == "azure" => var(env, "AZURE_API_BASE"),
                v => v,
            } {
                Var::Value(v) => (
                    EndpointValue::Url(v),
                    "the API_BASE variable Holmes falls back to".into(),
                ),
                Var::Unreadable(why) => (EndpointValue::Unresolved(why), "API_BASE".into()),
                Var::Unset if provider == "openai" => (
                    EndpointValue::Url(super::catalogue::OPENAI_SDK_DEFAULT_BASE_URL.into()),
                    format!("the LiteLLM default for {model}; no api_base is set"),
                ),
                Var::Unset => (
                    EndpointValue::Unresolved(format!(
                        "model {model} has no api_base: no Azure endpoint"
                    )),
                    field.to_string(),
                ),
            },
        };
        facts.endpoints.push(Endpoint {
            value,
            path,
            via,
            origin: None,
        });
    }
    Ok(())
}

/// Replaces `${VAR}` as LibreChat's `extractEnvVariable` does (an unset variable is left as
/// written, which is then no URL). Err: the value is in a Secret or otherwise unreadable.
fn librechat_value(raw: &str, env: &ResolvedEnv) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 2..start + end];
        out.push_str(&rest[..start]);
        match var(env, name) {
            Var::Value(v) => out.push_str(&v),
            Var::Unset => out.push_str(&rest[start..start + end + 1]),
            Var::Unreadable(why) => return Err(why),
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn librechat(
    doc: &Value,
    label: &str,
    env: &ResolvedEnv,
    container_path: &str,
    facts: &mut ConfigFacts,
) -> Result<(), Malformed> {
    if !doc.is_object() {
        return Err(Malformed::new("(top level)", "must be a mapping"));
    }
    let root = Field::root(doc);
    let endpoints = root.object("endpoints")?;
    let push = |facts: &mut ConfigFacts, path: String, value: Result<String, String>, via: &str| {
        facts.signals.push(Signal::Resource { path: path.clone() });
        facts.endpoints.push(Endpoint {
            value: match value {
                Ok(url) => EndpointValue::Url(url),
                Err(why) => EndpointValue::Unresolved(why),
            },
            path,
            via: via.to_string(),
            origin: None,
        });
    };
    if let Some(endpoints) = &endpoints {
        if let Some(azure) = endpoints.object("azureOpenAI")? {
            for group in azure.list("groups")? {
                let group = group.expect_object()?;
                let instance = group.string("instanceName")?;
                // The group's deployment, else its first model's (a model entry may name one).
                let first_model = group
                    .value
                    .get("models")
                    .and_then(Value::as_object)
                    .and_then(|m| m.iter().next())
                    .map(|(name, v)| {
                        v.get("deploymentName")
                            .and_then(Value::as_str)
                            .unwrap_or(name)
                            .to_string()
                    });
                let deployment = group
                    .string("deploymentName")?
                    .map(String::from)
                    .or(first_model)
                    .unwrap_or_default();
                let deployment = deployment.as_str();
                let serverless =
                    group.value.get("serverless").and_then(Value::as_bool) == Some(true);
                let base = group.string("baseURL")?;
                let (path, value) = match (base, instance) {
                    (Some(base), _) => {
                        let instance = instance.map(|i| librechat_value(i, env)).transpose();
                        let value = instance.and_then(|i| {
                            let mut url = librechat_value(base, env)?;
                            if let Some(i) = i {
                                url = url.replace("${INSTANCE_NAME}", &i);
                            }
                            Ok(url.replace("${DEPLOYMENT_NAME}", deployment))
                        });
                        (group.path_of("baseURL"), value)
                    }
                    (None, Some(instance)) if !serverless => (
                        group.path_of("instanceName"),
                        librechat_value(instance, env).map(|i| {
                            format!("https://{i}.openai.azure.com/openai/deployments/{deployment}")
                        }),
                    ),
                    _ => (
                        group.path.clone(),
                        Err(format!(
                            "{}: an Azure group needs instanceName (or baseURL when serverless)",
                            group.path
                        )),
                    ),
                };
                push(facts, format!("{label} {path}"), value, "librechat.yaml");
            }
        }
        for custom in endpoints.list("custom")? {
            let custom = custom.expect_object()?;
            let path = custom.path_of("baseURL");
            let value = match custom.string("baseURL")? {
                Some(b) => librechat_value(b, env),
                None => Err(format!("{path} is required and not set")),
            };
            push(facts, format!("{label} {path}"), value, "librechat.yaml");
        }
        if let Some(openai) = endpoints.object("openAI")?
            && let Some(b) = openai.string("baseURL")?
        {
            let path = openai.path_of("baseURL");
            push(
                facts,
                format!("{label} {path}"),
                librechat_value(b, env),
                "librechat.yaml",
            );
        }
    }
    // The built-in openAI endpoint is configured by env: enabled by ENDPOINTS (all when unset)
    // and an OPENAI_API_KEY (a key or `user_provided`); OPENAI_REVERSE_PROXY overrides its host.
    let enabled = match var(env, "ENDPOINTS") {
        Var::Value(list) => list.split(',').any(|e| e.trim() == "openAI"),
        _ => true,
    };
    let key = !matches!(var(env, "OPENAI_API_KEY"), Var::Unset);
    if enabled && key {
        let (value, path) = match var(env, "OPENAI_REVERSE_PROXY") {
            Var::Value(v) => (Ok(v), format!("{container_path}.env[OPENAI_REVERSE_PROXY]")),
            Var::Unreadable(why) => (
                Err(why),
                format!("{container_path}.env[OPENAI_REVERSE_PROXY]"),
            ),
            Var::Unset => (
                Ok(super::catalogue::OPENAI_SDK_DEFAULT_BASE_URL.to_string()),
                format!("{container_path}.env[OPENAI_API_KEY]"),
            ),
        };
        push(
            facts,
            path,
            value,
            "the OpenAI default of LibreChat's openAI endpoint",
        );
    }
    Ok(())
}

/// RAGFlow's `user_default_llm` (`common/settings.py`): the factory and base URL of each
/// default model, falling back to the top-level ones; no base URL means the factory's default
/// (`FACTORY_DEFAULT_BASE_URL`: OpenAI's is `https://api.openai.com/v1`).
fn ragflow(doc: &Value, label: &str, facts: &mut ConfigFacts) -> Result<(), Malformed> {
    if !doc.is_object() {
        return Err(Malformed::new("(top level)", "must be a mapping"));
    }
    let root = Field::root(doc);
    let Some(llm) = root.object("user_default_llm")? else {
        return Ok(());
    };
    let factory = llm.string("factory")?;
    let base = llm.string("base_url")?;
    let mut models: Vec<(String, Option<&str>, Option<&str>)> = Vec::new();
    if let Some(defaults) = llm.object("default_models")? {
        for key in [
            "chat_model",
            "embedding_model",
            "rerank_model",
            "asr_model",
            "vision_model",
        ] {
            match defaults.value.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::String(_)) => models.push((llm.path_of("base_url"), factory, base)),
                Some(Value::Object(_)) => {
                    let m = defaults.object(key)?.expect("an object");
                    let f = m.string("factory")?.or(factory);
                    let (b, p) = match m.string("base_url")? {
                        Some(b) => (Some(b), m.path_of("base_url")),
                        None => (base, llm.path_of("base_url")),
                    };
                    models.push((p, f, b));
                }
                Some(_) => {
                    return Err(Malformed::new(
                        defaults.path_of(key),
                        "must be a model name or {name, factory, api_key, base_url}",
                    ));
                }
            }
        }
    }
    if models.is_empty() && factory.is_some() {
        models.push((llm.path_of("base_url"), factory, base));
    }
    for (path, factory, base) in models {
        let path = format!("{label} {path}");
        let value = match (factory.unwrap_or_default(), base) {
            ("OpenAI" | "Azure-OpenAI" | "OpenAI-API-Compatible", Some(url)) => {
                EndpointValue::Url(url.to_string())
            }
            ("OpenAI", None) => {
                EndpointValue::Url(super::catalogue::OPENAI_SDK_DEFAULT_BASE_URL.into())
            }
            (f @ ("Azure-OpenAI" | "OpenAI-API-Compatible"), None) => EndpointValue::Unresolved(
                format!("factory {f} has no base_url, and RAGFlow has no default for it"),
            ),
            _ => continue,
        };
        facts.signals.push(Signal::Resource { path: path.clone() });
        facts.endpoints.push(Endpoint {
            value,
            path,
            via: "service_conf.yaml".into(),
            origin: None,
        });
    }
    Ok(())
}

/// The parser's message without the source excerpt it draws below it (a message in an
/// admission answer is one line; the line and column are in the first).
fn yaml_error(e: &impl std::fmt::Display) -> String {
    let text = e.to_string();
    text.lines().next().unwrap_or_default().trim().to_string()
}

/// Words one of which is in the key of a known config file: LiteLLM's and HolmesGPT's
/// `model_list`, LibreChat's `librechat.yaml`, RAGFlow's `service_conf.yaml`.
pub const CONFIG_FILE_KEY_MARKERS: &[&str] = &["model_list", "librechat", "service_conf"];

/// Words one of which is in the text of a known config file, whatever its key: LiteLLM's
/// `model_list`, RAGFlow's `user_default_llm`, LibreChat's `azureOpenAI`, and a backslash: YAML
/// and JSON spell a key with escapes only in a quoted string (`"model\x5flist"`, an escaped
/// line break), so a file that hides a marker that way has one. Four at most: the API server
/// bounds the cost of a match condition (one million units per call), and a `contains` over a
/// ConfigMap's text costs about a tenth of a unit per byte, so four over the largest ConfigMap
/// (1 MiB) stay within it. A file with none of these (HolmesGPT's model list under another key,
/// LibreChat's `custom` endpoints only, under another key) is judged when the Pods that read it
/// are admitted, and by the audit, not when it changes.
pub const CONFIG_FILE_TEXT_MARKERS: &[&str] =
    &["model_list", "user_default_llm", "azureOpenAI", "\\"];

/// Whether `key` and `text` may be a known config file (see the two marker lists).
fn may_be_config_file(key: &str, text: &str) -> bool {
    CONFIG_FILE_KEY_MARKERS.iter().any(|m| key.contains(m))
        || CONFIG_FILE_TEXT_MARKERS.iter().any(|m| text.contains(m))
}

/// The CEL `matchConditions` expression that sends the webhook only the ConfigMaps which may
/// hold a known config file (a key or a text with one of the markers above). The chart's
/// webhook carries exactly this text; a test keeps the two equal.
pub fn config_file_match_condition() -> String {
    let any = |subject: &str, markers: &[&str]| {
        markers
            .iter()
            .map(|m| format!("{subject}.contains('{m}')"))
            .collect::<Vec<_>>()
            .join(" || ")
    };
    // CEL string literals escape a backslash as Rust's do.
    let markers: Vec<String> = CONFIG_FILE_TEXT_MARKERS
        .iter()
        .map(|m| m.replace('\\', "\\\\"))
        .collect();
    let markers: Vec<&str> = markers.iter().map(String::as_str).collect();
    // `binaryData` is not searched (it is base64): any ConfigMap with it is sent.
    format!(
        "has(object.binaryData) || has(object.data) && object.data.exists(k, {} || {})",
        any("k", CONFIG_FILE_KEY_MARKERS),
        any("object.data[k]", &markers)
    )
}

/// One config file found in a ConfigMap, as far as the file decides on its own.
#[derive(Debug, Default)]
pub struct ConfigMapFile {
    /// The key that holds it.
    pub key: String,
    /// Which application's format it is (`LiteLLM config.yaml`, ...).
    pub format: &'static str,
    pub signals: Vec<Signal>,
    /// Endpoints the file fixes itself (a literal `api_base`, RAGFlow's factory default). What
    /// it takes from the env of the container that reads it is decided on that container.
    pub endpoints: Vec<Endpoint>,
    pub malformed: Vec<Malformed>,
}

impl App {
    fn format(self) -> &'static str {
        match self {
            App::LiteLlm => "LiteLLM config.yaml",
            App::Holmes => "HolmesGPT model_list.yaml",
            App::LibreChat => "LibreChat librechat.yaml",
            App::RagFlow => "RAGFlow service_conf.yaml",
        }
    }
}

/// Which application's config file `doc` (under `key`) is, by its shape: HolmesGPT's is named
/// `model_list.yaml` (its content is a plain mapping of model names), the others have a
/// top-level key of their own.
fn app_of_file(key: &str, doc: &Value) -> Option<App> {
    let map = doc.as_object()?;
    if key.ends_with("model_list.yaml") || key.ends_with("model_list.yml") {
        Some(App::Holmes)
    } else if map.contains_key("model_list") {
        Some(App::LiteLlm)
    } else if map.contains_key("user_default_llm") {
        Some(App::RagFlow)
    } else if map
        .get("endpoints")
        .and_then(Value::as_object)
        .is_some_and(|e| {
            ["azureOpenAI", "custom", "openAI"]
                .iter()
                .any(|k| e.contains_key(*k))
        })
    {
        Some(App::LibreChat)
    } else {
        None
    }
}

/// A key whose name says which application's file it is, so that text that is not YAML is that
/// file broken rather than some other file.
fn app_of_key(key: &str) -> Option<App> {
    match key.rsplit('/').next().unwrap_or(key) {
        "model_list.yaml" | "model_list.yml" => Some(App::Holmes),
        "librechat.yaml" | "librechat.yml" => Some(App::LibreChat),
        "service_conf.yaml" | "local.service_conf.yaml" => Some(App::RagFlow),
        _ => None,
    }
}

/// For text that is not YAML: a top-level line that only a LiteLLM config (`model_list:`) or a
/// RAGFlow one (`user_default_llm:`) starts with.
fn app_of_text(text: &str) -> Option<App> {
    text.lines().find_map(|line| {
        if line.starts_with("model_list:") {
            Some(App::LiteLlm)
        } else if line.starts_with("user_default_llm:") {
            Some(App::RagFlow)
        } else {
            None
        }
    })
}

/// The known config files in a ConfigMap's `data` (`name` for the field paths), each with what
/// it decides on its own. Empty: none (the ConfigMap is then no more than the env values any
/// workload may take from it).
pub fn config_map_files(name: &str, data: &serde_json::Map<String, Value>) -> Vec<ConfigMapFile> {
    let mut out = Vec::new();
    for (key, text) in data {
        let Some(text) = text.as_str() else {
            continue;
        };
        if !may_be_config_file(key, text) {
            continue;
        }
        let label = format!("ConfigMap/{name} key {key}");
        let mut file = ConfigMapFile {
            key: key.clone(),
            ..Default::default()
        };
        let doc: Value = match serde_saphyr::from_str(text) {
            Ok(doc) => doc,
            Err(e) => {
                if let Some(app) = app_of_key(key).or_else(|| app_of_text(text)) {
                    file.format = app.format();
                    file.malformed.push(Malformed::new(
                        format!("data[{key}]"),
                        format!(
                            "{label} ({}) is not valid YAML: {}",
                            app.format(),
                            yaml_error(&e)
                        ),
                    ));
                    out.push(file);
                }
                continue;
            }
        };
        let Some(app) = app_of_file(key, &doc).or_else(|| app_of_key(key)) else {
            continue;
        };
        file.format = app.format();
        let env = ResolvedEnv::unknown(
            "the container that reads it",
            "the env of the workloads that mount this ConfigMap, checked when they are admitted",
        );
        let mut facts = ConfigFacts::default();
        let result = match app {
            App::LiteLlm => litellm(&doc, &label, &env, &mut facts),
            App::Holmes => holmes(&doc, &label, &env, &mut facts),
            App::LibreChat => librechat(&doc, &label, &env, "the container", &mut facts),
            App::RagFlow => ragflow(&doc, &label, &mut facts),
        };
        if let Err(e) = result {
            file.malformed.push(Malformed::new(
                format!("data[{key}]"),
                format!("{label} field {}: {}", e.path, e.message),
            ));
        }
        file.signals = facts.signals;
        file.endpoints = facts
            .endpoints
            .into_iter()
            .filter(|e| matches!(e.value, EndpointValue::Url(_)))
            .collect();
        file.malformed.extend(facts.malformed);
        out.push(file);
    }
    out
}

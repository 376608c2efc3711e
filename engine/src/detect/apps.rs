//! Applications whose official image calls the model API with its own code, not through an
//! OpenAI SDK's env defaults, so that the client rules of [`super::clients`] (the SDK's
//! `OPENAI_API_KEY` → `api.openai.com` default, the LangSmith gateway, LiteLLM's proxy switch)
//! do not say where its traffic goes; the application's own rules do.
//!
//! Only the official image counts (its repository, any tag or digest): an image of another name
//! can hold any code. One whose name ends like the application's (a mirror, a fork) is judged
//! by both rule sets, the application's and the SDKs', so that neither's endpoints are missed.
//!
//! **Open WebUI** (`ghcr.io/open-webui/open-webui`; `backend/open_webui/config.py`, v0.12.4,
//! lines 325-373 and the feature sections cited below) sends chat traffic with its own HTTP
//! client to its connections: the `;`-separated `OPENAI_API_BASE_URLS`, else
//! `OPENAI_API_BASE_URL`, else `https://api.openai.com/v1`; an empty entry of
//! `OPENAI_API_BASE_URLS` is that default too (`url.strip() if url != '' else
//! 'https://api.openai.com/v1'`). The image ships the openai package but its own code does not
//! import it. Features that call OpenAI's API when switched to it take their base URL from
//! their own variable, whose default is `https://api.openai.com/v1` whatever
//! `OPENAI_API_BASE_URL` says (config.py resets that module variable to the default at line
//! 373, before the features read it): RAG embeddings (`RAG_EMBEDDING_ENGINE=openai`,
//! `RAG_OPENAI_API_BASE_URL`), image generation (`ENABLE_IMAGE_GENERATION=true` with
//! `IMAGE_GENERATION_ENGINE` `openai`, its default; `IMAGES_OPENAI_API_BASE_URL`), speech to
//! text and text to speech (`AUDIO_STT_ENGINE`/`AUDIO_TTS_ENGINE=openai`,
//! `AUDIO_STT_OPENAI_API_BASE_URL`/`AUDIO_TTS_OPENAI_API_BASE_URL`). What an administrator
//! configures in Open WebUI's UI is kept in its database and is not visible here; nor is what
//! the Python of Functions and Pipes that an administrator uploads does (it runs in the same
//! process and can use the bundled openai package like any code added to an image): hostguard
//! judges the image's own code.

use super::catalogue::OPENAI_SDK_DEFAULT_BASE_URL;
use super::{Endpoint, EndpointValue, Signal};
use crate::workload::env::{EnvValue, ResolvedEnv};

/// Open WebUI's official image repository.
pub const OPEN_WEBUI_IMAGE: &str = "ghcr.io/open-webui/open-webui";

/// An application whose own code decides where a container's model traffic goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    OpenWebUi,
}

/// The image's repository: without `@digest` and `:tag` (a `:` after the last `/` is a tag,
/// one before it a registry port), with the registry host in lower case and a `:443` port
/// dropped (both name the same registry: `GHCR.IO:443/open-webui/open-webui` pulls what
/// `ghcr.io/open-webui/open-webui` does).
pub(crate) fn repository(image: &str) -> std::borrow::Cow<'_, str> {
    let image = image.split_once('@').map_or(image, |(r, _)| r);
    let image = match image.rsplit_once(':') {
        Some((r, tag)) if !tag.contains('/') => r,
        _ => image,
    };
    match image.split_once('/') {
        Some((registry, rest))
            if (registry.contains(['.', ':']) || registry == "localhost")
                && (registry.bytes().any(|b| b.is_ascii_uppercase())
                    || registry.ends_with(":443")) =>
        {
            let registry = registry.to_ascii_lowercase();
            let registry = registry.strip_suffix(":443").unwrap_or(&registry);
            format!("{registry}/{rest}").into()
        }
        // Already in that form: no copy (this runs for every container of every review).
        _ => image.into(),
    }
}

/// How a container's image relates to an application's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// The official image: its own rules decide.
    Official(App),
    /// Another image of the same name (a mirror, a fork, a rebuild): it may hold the
    /// application's code or any other, so both the application's rules and the SDKs' apply.
    LookAlike(App),
}

/// The application a container runs, as far as its image's [`repository`] says.
pub fn app_of(repository: &str) -> Option<Image> {
    if repository == OPEN_WEBUI_IMAGE {
        Some(Image::Official(App::OpenWebUi))
    } else if repository.rsplit('/').next() == Some("open-webui") {
        Some(Image::LookAlike(App::OpenWebUi))
    } else {
        None
    }
}

/// What the application adds to the container's facts beyond the catalogue's variables.
#[derive(Debug, Default)]
pub struct AppRoutes {
    pub signals: Vec<Signal>,
    pub endpoints: Vec<Endpoint>,
}

/// The application's own routes (the catalogue's variables, which name its connections, are
/// read as for any container).
pub fn routes(app: App, env: &ResolvedEnv) -> AppRoutes {
    match app {
        App::OpenWebUi => open_webui(env),
    }
}

/// The last candidate of `name` as Python's `os.getenv(name, '')` sees it: the value, or why it
/// cannot be read (a `secretKeyRef`, or an `envFrom` source hostguard cannot read that may set
/// it); None when unset.
fn value(
    env: &ResolvedEnv,
    name: &str,
) -> Option<(Result<String, String>, String, Option<String>)> {
    if let Some(source) = env.opaque_sources_for(name).into_iter().next() {
        return Some((
            Err(format!(
                "{name} may be set by {}: {}",
                source.path, source.why
            )),
            source.path,
            None,
        ));
    }
    let c = env.candidates(name).pop()?.into_owned();
    let path = c.path();
    let v = match c.value {
        EnvValue::Literal(v) => Ok(v),
        EnvValue::Unreadable(why) => Err(why),
    };
    Some((v, path, c.origin))
}

/// How the defaults are named in messages (`via`), and how [`variable_to_set`] knows them.
const DEFAULT_CONNECTION_VIA: &str =
    "the default connection of Open WebUI; no OPENAI_API_BASE_URL(S) is set";
const EMPTY_ENTRY_VIA: &str =
    "the default connection of Open WebUI, for an empty entry of OPENAI_API_BASE_URLS";
const FEATURE_DEFAULT_VIA: &str = "the default base URL of Open WebUI's ";

/// For an endpoint these rules found (by its `via`), the variable that moves it: what a
/// message tells the author to set, instead of the SDKs' `OPENAI_BASE_URL`.
pub fn variable_to_set(via: &str) -> Option<&str> {
    if via == DEFAULT_CONNECTION_VIA {
        Some("OPENAI_API_BASE_URL")
    } else if via == EMPTY_ENTRY_VIA {
        Some("OPENAI_API_BASE_URLS")
    } else if via.starts_with(FEATURE_DEFAULT_VIA) {
        via.rsplit_once("; no ")
            .and_then(|(_, rest)| rest.strip_suffix(" is set"))
    } else {
        None
    }
}

fn default_endpoint(path: String, via: String) -> Endpoint {
    Endpoint {
        value: EndpointValue::Url(OPENAI_SDK_DEFAULT_BASE_URL.into()),
        path,
        via,
        origin: None,
    }
}

fn open_webui(env: &ResolvedEnv) -> AppRoutes {
    let mut out = AppRoutes::default();
    let set = |name: &str| {
        value(env, name).filter(|(v, _, _)| v.as_ref().map_or(true, |v| !v.is_empty()))
    };

    // The connections. An empty entry of OPENAI_API_BASE_URLS is the default connection. A
    // value that cannot be read is unresolved (the catalogue reports a `secretKeyRef`; this
    // also covers an unreadable `envFrom` source that may set it).
    let urls = set("OPENAI_API_BASE_URLS");
    let url = set("OPENAI_API_BASE_URL");
    for (name, v) in [
        ("OPENAI_API_BASE_URLS", &urls),
        ("OPENAI_API_BASE_URL", &url),
    ] {
        if let Some((Err(why), path, origin)) = v {
            out.endpoints.push(Endpoint {
                value: EndpointValue::Unresolved(why.clone()),
                path: path.clone(),
                via: name.to_string(),
                origin: origin.clone(),
            });
        }
    }
    match urls {
        Some((Ok(urls), path, _)) => {
            if urls.split(';').any(str::is_empty) {
                out.endpoints
                    .push(default_endpoint(path, EMPTY_ENTRY_VIA.into()));
            }
        }
        Some((Err(_), _, _)) => {}
        None => {
            let key = set("OPENAI_API_KEYS").or_else(|| set("OPENAI_API_KEY"));
            if url.is_none()
                && let Some((_, path, _)) = key
            {
                out.endpoints
                    .push(default_endpoint(path, DEFAULT_CONNECTION_VIA.into()));
            }
        }
    }

    // Features that call OpenAI's API when switched to it, each with its own base URL. A
    // switch: where it is set ("" when its default switches the feature on), when it does.
    let switch = |name: &str, on: fn(&str) -> bool, default: &str| match value(env, name) {
        Some((Ok(v), path, _)) => on(&v).then_some(path),
        Some((Err(_), path, _)) => Some(path), // may switch it on: fail closed
        None => on(default).then(String::new),
    };
    let is_openai: fn(&str) -> bool = |v| v == "openai";
    let is_true: fn(&str) -> bool = |v| v.to_lowercase() == "true";
    let both = |a: Option<String>, b: Option<String>| match (a, b) {
        (Some(a), Some(b)) => Some(if a.is_empty() { b } else { a }),
        _ => None,
    };
    let features: [(&str, &'static str, Option<String>, &str); 5] = [
        (
            "RAG embeddings (RAG_EMBEDDING_ENGINE=openai)",
            "RAG_EMBEDDING_ENGINE",
            switch("RAG_EMBEDDING_ENGINE", is_openai, ""),
            "RAG_OPENAI_API_BASE_URL",
        ),
        (
            "image generation (ENABLE_IMAGE_GENERATION=true, IMAGE_GENERATION_ENGINE openai)",
            "ENABLE_IMAGE_GENERATION",
            both(
                switch("ENABLE_IMAGE_GENERATION", is_true, ""),
                switch("IMAGE_GENERATION_ENGINE", is_openai, "openai"),
            ),
            "IMAGES_OPENAI_API_BASE_URL",
        ),
        (
            "image editing (ENABLE_IMAGE_EDIT=true, IMAGE_EDIT_ENGINE openai)",
            "ENABLE_IMAGE_EDIT",
            both(
                switch("ENABLE_IMAGE_EDIT", is_true, ""),
                switch("IMAGE_EDIT_ENGINE", is_openai, "openai"),
            ),
            "IMAGES_EDIT_OPENAI_API_BASE_URL",
        ),
        (
            "speech to text (AUDIO_STT_ENGINE=openai)",
            "AUDIO_STT_ENGINE",
            switch("AUDIO_STT_ENGINE", is_openai, ""),
            "AUDIO_STT_OPENAI_API_BASE_URL",
        ),
        (
            "text to speech (AUDIO_TTS_ENGINE=openai)",
            "AUDIO_TTS_ENGINE",
            switch("AUDIO_TTS_ENGINE", is_openai, ""),
            "AUDIO_TTS_OPENAI_API_BASE_URL",
        ),
    ];
    for (feature, switch_var, switched_on, base_var) in features {
        let Some(switch_path) = switched_on else {
            continue;
        };
        out.signals.push(Signal::Variable {
            name: switch_var,
            path: switch_path.clone(),
        });
        match set(base_var) {
            Some((Ok(url), path, origin)) => out.endpoints.push(Endpoint {
                value: EndpointValue::Url(url),
                path,
                via: base_var.to_string(),
                origin,
            }),
            Some((Err(why), path, origin)) => out.endpoints.push(Endpoint {
                value: EndpointValue::Unresolved(why),
                path,
                via: base_var.to_string(),
                origin,
            }),
            None => out.endpoints.push(default_endpoint(
                switch_path,
                format!("{FEATURE_DEFAULT_VIA}{feature}; no {base_var} is set"),
            )),
        }
    }
    out
}

//! K8sGPT (`core.k8sgpt.ai/v1alpha1` `K8sGPT`): `spec.ai.backend` picks k8sgpt's AI client and
//! `spec.ai.baseUrl` overrides its default host.
//!
//! k8sgpt's `openai` client keeps go-openai's default `https://api.openai.com/v1` when no
//! `baseUrl` is set; `localai` *is* that client under another name; an unknown backend name falls
//! back to it; `azureopenai` has no default host at all. The CRD defaults `backend` to `openai`,
//! which the API server applies before a webhook sees the object, so offline it is applied here.

use super::value::{Field, Malformed};
use super::{OPENAI_DEFAULT, Resource, usage};
use crate::detect::{EndpointValue, OPENAI, Usage};

/// Backends k8sgpt registers that are not the OpenAI client (`pkg/ai/iai.go:43-63`).
const OTHER_BACKENDS: &[&str] = &[
    "anthropic",
    "ollama",
    "cohere",
    "amazonbedrock",
    "amazonbedrockconverse",
    "amazonsagemaker",
    "google",
    "noopai",
    "huggingface",
    "googlevertexai",
    "oci",
    "customrest",
    "ibmwatsonxai",
    "groq",
    "bedrockmantle",
    "litellm",
];

pub(super) fn read(r: &Resource<'_>) -> Result<Vec<Usage>, Malformed> {
    let root = Field::root(r.object);
    let Some(spec) = root.object("spec")? else {
        return Ok(Vec::new());
    };
    let Some(ai) = spec.object("ai")? else {
        return Ok(Vec::new());
    };
    let backend = ai.string("backend")?.unwrap_or("openai");
    let base_url = ai.string("baseUrl")?;
    let proxy = ai.string("proxyEndpoint")?;
    ai.string("engine")?;
    ai.string("model")?;
    let base_path = ai.path_of("baseUrl");
    if OTHER_BACKENDS.contains(&backend) {
        return Ok(vec![usage(
            backend,
            r.at(&ai.path_of("backend")),
            Vec::new(),
        )]);
    }
    let mut endpoints = Vec::new();
    endpoints.push(match (backend, base_url) {
        (_, Some(url)) => r.endpoint(EndpointValue::Url(url.into()), &base_path, "spec.ai.baseUrl"),
        ("azureopenai", None) => r.endpoint(
            EndpointValue::Unresolved(
                "backend azureopenai has no spec.ai.baseUrl, and k8sgpt's Azure client has no default host".into(),
            ),
            &base_path,
            "spec.ai.baseUrl",
        ),
        (name, None) => {
            let why = if name == "openai" {
                "the default of k8sgpt's openai backend; no spec.ai.baseUrl is set".to_string()
            } else if name == "localai" {
                "the default of k8sgpt's localai backend, which is its OpenAI client; no spec.ai.baseUrl is set".to_string()
            } else {
                format!(
                    "the default of k8sgpt's OpenAI client, which it uses for the unknown backend {name:?}; no spec.ai.baseUrl is set"
                )
            };
            r.endpoint(EndpointValue::Url(OPENAI_DEFAULT.into()), &base_path, why)
        }
    });
    if let Some(proxy) = proxy {
        endpoints.push(r.endpoint(
            EndpointValue::Redirected(format!(
                "spec.ai.proxyEndpoint sends k8sgpt's requests through the HTTP proxy {proxy:?}"
            )),
            &ai.path_of("proxyEndpoint"),
            "spec.ai.proxyEndpoint",
        ));
    }
    Ok(vec![usage(OPENAI, r.at(&ai.path_of("backend")), endpoints)])
}

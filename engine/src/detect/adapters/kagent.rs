//! kagent (`kagent.dev`): `ModelConfig` (v1alpha1, v1alpha2, v1alpha3 are all served, with no
//! conversion webhook, so each is read as written) and `ModelProviderConfig`.
//!
//! A `ModelConfig`'s `spec.provider` (CRD default `OpenAI`) picks the block that holds the
//! endpoint: `spec.openAI.baseUrl` (absent: the OpenAI SDKs' `https://api.openai.com/v1`),
//! `spec.azureOpenAI.azureEndpoint` (absent or empty: the agent refuses to start, so no Azure
//! endpoint can be shown), `spec.foundry.endpoint` or `spec.foundry.endpointFrom` (a ConfigMap
//! key). The CRD's CEL rules refuse a provider block that does not match the provider; offline
//! such an object is denied here too. A `ModelProviderConfig` is used by the kagent controller
//! for model discovery: `spec.endpoint`, else `DefaultModelProviderEndpoint(spec.type)`.

use super::value::{Field, Malformed};
use super::{OPENAI_DEFAULT, Resource, usage};
use crate::detect::{Endpoint, EndpointValue, OPENAI, Usage};

/// Provider blocks of a ModelConfig, by the provider that owns each.
const BLOCKS: &[(&str, &str)] = &[
    ("openAI", "OpenAI"),
    ("azureOpenAI", "AzureOpenAI"),
    ("anthropic", "Anthropic"),
    ("ollama", "Ollama"),
    ("gemini", "Gemini"),
    ("geminiVertexAI", "GeminiVertexAI"),
    ("anthropicVertexAI", "AnthropicVertexAI"),
    ("bedrock", "Bedrock"),
    ("sapAICore", "SAPAICore"),
    ("foundry", "Foundry"),
];

/// Providers that do not call an OpenAI API.
const OTHER_PROVIDERS: &[&str] = &[
    "Anthropic",
    "Ollama",
    "Gemini",
    "GeminiVertexAI",
    "AnthropicVertexAI",
    "Bedrock",
    "SAPAICore",
];

pub(super) fn read_model_config(r: &Resource<'_>) -> Result<Vec<Usage>, Malformed> {
    let root = Field::root(r.object);
    let Some(spec) = root.object("spec")? else {
        return Ok(Vec::new());
    };
    let provider = spec.string("provider")?.unwrap_or("OpenAI");
    let provider_path = r.at(&spec.path_of("provider"));
    let mut blocks = Vec::new();
    for (key, owner) in BLOCKS {
        if let Some(block) = spec.object(key)? {
            blocks.push((block, *owner));
        }
    }
    let mut endpoints: Vec<Endpoint> = Vec::new();
    // A block of another provider: the CRD refuses the object; fail closed and name the block.
    for (block, owner) in &blocks {
        if *owner != provider
            && (*owner == "OpenAI" || *owner == "AzureOpenAI" || *owner == "Foundry")
        {
            endpoints.push(r.endpoint(
                EndpointValue::Unresolved(format!(
                    "{} is set while spec.provider is {provider:?}; kagent's CRD refuses a provider block that does not match the provider ({} must be nil if the provider is not {owner})",
                    block.path, block.path
                )),
                &block.path,
                block.path.clone(),
            ));
        }
    }
    let block = |owner: &str| blocks.iter().find(|(_, o)| *o == owner).map(|(b, _)| b);
    match provider {
        "OpenAI" => {
            let url = match block("OpenAI") {
                Some(b) => b.string("baseUrl")?,
                None => None,
            };
            let path = spec.path_of("openAI.baseUrl");
            endpoints.push(match url {
                Some(url) => r.endpoint(EndpointValue::Url(url.into()), &path, path.clone()),
                None => r.endpoint(
                    EndpointValue::Url(OPENAI_DEFAULT.into()),
                    &path,
                    "the OpenAI SDK default; no spec.openAI.baseUrl is set",
                ),
            });
        }
        "AzureOpenAI" => {
            let url = match block("AzureOpenAI") {
                Some(b) => b.string("azureEndpoint")?,
                None => None,
            };
            let path = spec.path_of("azureOpenAI.azureEndpoint");
            endpoints.push(match url {
                Some(url) => r.endpoint(EndpointValue::Url(url.into()), &path, path.clone()),
                None => r.endpoint(
                    EndpointValue::Unresolved(
                        "provider AzureOpenAI with no azureEndpoint: kagent sets no AZURE_OPENAI_ENDPOINT and the agent has no Azure endpoint".into(),
                    ),
                    &path,
                    path.clone(),
                ),
            });
        }
        "Foundry" => {
            let foundry = block("Foundry");
            let inline = match foundry {
                Some(b) => b.string("endpoint")?,
                None => None,
            };
            let from = match foundry {
                Some(b) => b.object("endpointFrom")?,
                None => None,
            };
            endpoints.push(match (inline, from) {
                (Some(url), _) => {
                    let path = spec.path_of("foundry.endpoint");
                    r.endpoint(EndpointValue::Url(url.into()), &path, path.clone())
                }
                (None, Some(from)) => {
                    let name = from.string("name")?.unwrap_or_default();
                    let key = from.string("key")?.unwrap_or_default();
                    let value = match r.config_map_key(name, key) {
                        Ok(url) => EndpointValue::Url(url),
                        Err(why) => EndpointValue::Unresolved(why),
                    };
                    let mut e = r.endpoint(value, &from.path, from.path.clone());
                    e.origin = Some(format!("ConfigMap {name:?} key {key:?}"));
                    e
                }
                (None, None) => {
                    let path = spec.path_of("foundry");
                    r.endpoint(
                        EndpointValue::Unresolved(
                            "provider Foundry with neither spec.foundry.endpoint nor spec.foundry.endpointFrom".into(),
                        ),
                        &path,
                        path.clone(),
                    )
                }
            });
        }
        other if OTHER_PROVIDERS.contains(&other) => {
            if endpoints.is_empty() {
                return Ok(vec![usage(
                    &other.to_ascii_lowercase(),
                    provider_path,
                    Vec::new(),
                )]);
            }
        }
        other => {
            let path = spec.path_of("provider");
            endpoints.push(r.endpoint(
                EndpointValue::Unresolved(format!(
                    "spec.provider {other:?} is not a provider kagent knows"
                )),
                &path,
                path.clone(),
            ));
        }
    }
    Ok(vec![usage(OPENAI, provider_path, endpoints)])
}

pub(super) fn read_model_provider_config(r: &Resource<'_>) -> Result<Vec<Usage>, Malformed> {
    let root = Field::root(r.object);
    let Some(spec) = root.object("spec")? else {
        return Ok(Vec::new());
    };
    let kind = spec.string("type")?.unwrap_or_default();
    let endpoint = spec.string("endpoint")?;
    let path = spec.path_of("endpoint");
    let type_path = r.at(&spec.path_of("type"));
    let value = match (kind, endpoint) {
        ("OpenAI" | "AzureOpenAI" | "Foundry", Some(url)) => {
            r.endpoint(EndpointValue::Url(url.into()), &path, path.clone())
        }
        ("OpenAI", None) => r.endpoint(
            EndpointValue::Url(OPENAI_DEFAULT.into()),
            &path,
            "the default of kagent's DefaultModelProviderEndpoint(OpenAI); no spec.endpoint is set",
        ),
        ("AzureOpenAI" | "Foundry", None) => r.endpoint(
            EndpointValue::Unresolved(format!(
                "type {kind} has no spec.endpoint, and kagent has no default endpoint for it"
            )),
            &path,
            path.clone(),
        ),
        (other, _) if OTHER_PROVIDERS.contains(&other) => {
            return Ok(vec![usage(
                &other.to_ascii_lowercase(),
                type_path,
                Vec::new(),
            )]);
        }
        (other, _) => {
            let path = spec.path_of("type");
            r.endpoint(
                EndpointValue::Unresolved(format!(
                    "spec.type {other:?} is not a provider kagent knows"
                )),
                &path,
                path.clone(),
            )
        }
    };
    Ok(vec![usage(OPENAI, type_path, vec![value])])
}

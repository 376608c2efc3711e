//! The catalogue of environment variables that real SDKs and applications read to find a model
//! API, as data. Each entry names its source, so that anyone can check why it is here.
//!
//! Adding a variable is a one-line change in [`CATALOGUE`]; nothing else in hostguard knows
//! variable names. Names are matched exactly (environment variables are case-sensitive).

/// What a variable tells about the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An API key: its presence means the container calls the provider.
    ApiKey(KeyKind),
    /// A base URL or endpoint the SDK sends requests to.
    Endpoint(EndpointForm),
    /// A resource name the SDK turns into an endpoint with a template (`{}` is the name).
    InstanceName(&'static str),
    /// Selects the flavour of the API (`OPENAI_API_TYPE=azure`); see [`api_type_flavour`].
    ApiType,
}

/// Which default a key implies when no endpoint is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// A key for OpenAI's own API: with no endpoint, the SDK calls its default base URL.
    OpenAi,
    /// A key for an Azure resource: the SDK needs an endpoint and has no default.
    Azure,
}

/// How an endpoint variable holds its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointForm {
    /// One URL.
    Url,
    /// Several URLs separated by this character.
    List(char),
}

/// The API flavour a workload selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// OpenAI's API (the SDK default endpoint applies).
    OpenAi,
    /// Azure OpenAI (an endpoint is required; there is no default).
    Azure,
    /// The OpenAI SDK pointed at Amazon Bedrock's OpenAI-compatible endpoint.
    Bedrock,
    /// Not this provider at all (e.g. `K8SGPT_BACKEND=localai`).
    NotThisProvider,
}

/// One catalogue entry.
#[derive(Debug, Clone, Copy)]
pub struct Variable {
    pub name: &'static str,
    pub provider: &'static str,
    pub role: Role,
    /// Who reads it: SDK or application, and where.
    pub source: &'static str,
}

/// The default base URL of OpenAI's SDKs (openai-python `_client.py`, openai-node `client.ts`).
pub const OPENAI_SDK_DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Amazon Bedrock's OpenAI-compatible runtime endpoint, used when `OPENAI_API_TYPE` selects
/// Bedrock and no `AWS_BEDROCK_BASE_URL` is set; `{}` is the region.
pub const BEDROCK_DEFAULT_BASE_URL: &str = "https://bedrock-runtime.{}.amazonaws.com/openai/v1";

const fn var(name: &'static str, role: Role, source: &'static str) -> Variable {
    Variable {
        name,
        provider: "openai",
        role,
        source,
    }
}

use EndpointForm::{List, Url};
use KeyKind::{Azure, OpenAi};
use Role::{ApiKey, ApiType, Endpoint, InstanceName};

/// Every variable hostguard reads, with its source.
pub const CATALOGUE: &[Variable] = &[
    // OpenAI's official SDKs.
    var(
        "OPENAI_API_KEY",
        ApiKey(OpenAi),
        "openai-python _client.py, openai-node client.ts, LangChain, LiteLLM",
    ),
    var(
        "OPENAI_BASE_URL",
        Endpoint(Url),
        "openai-python _client.py, openai-node client.ts (read before AZURE_OPENAI_ENDPOINT by AzureOpenAI)",
    ),
    var(
        "OPENAI_API_BASE",
        Endpoint(Url),
        "openai-python < 1.0 (api_base), LangChain OpenAI integrations, LiteLLM",
    ),
    var(
        "OPENAI_API_TYPE",
        ApiType,
        "openai-python < 1.0 (api_type: open_ai, azure, azure_ad), LangChain; amazon-bedrock selects Bedrock",
    ),
    var(
        "OPENAI_API_HOST",
        Endpoint(Url),
        "openai-python < 1.0 forks and chatgpt-retrieval-plugin style apps",
    ),
    // Azure OpenAI in the official SDKs and LangChain.
    var(
        "AZURE_OPENAI_ENDPOINT",
        Endpoint(Url),
        "openai-python AzureOpenAI, openai-node AzureOpenAI, Azure AI SDKs, LangChain AzureChatOpenAI",
    ),
    var(
        "AZURE_OPENAI_BASE_URL",
        Endpoint(Url),
        "openai-node AzureOpenAI (baseURL), Semantic Kernel samples",
    ),
    var(
        "AZURE_OPENAI_API_KEY",
        ApiKey(Azure),
        "openai-python AzureOpenAI, openai-node AzureOpenAI, LangChain",
    ),
    var(
        "AZURE_OPENAI_AD_TOKEN",
        ApiKey(Azure),
        "openai-python AzureOpenAI (azure_ad_token)",
    ),
    var(
        "AZURE_OPENAI_API_INSTANCE_NAME",
        InstanceName("https://{}.openai.azure.com"),
        "LangChain.js AzureChatOpenAI (azureOpenAIApiInstanceName)",
    ),
    var(
        "AZURE_OPENAI_BASE_PATH",
        Endpoint(Url),
        "LangChain.js AzureChatOpenAI (azureOpenAIBasePath)",
    ),
    // LiteLLM.
    var("AZURE_API_BASE", Endpoint(Url), "LiteLLM (azure/ models)"),
    var("AZURE_API_KEY", ApiKey(Azure), "LiteLLM (azure/ models)"),
    // Amazon Bedrock through the OpenAI SDK.
    var(
        "AWS_BEDROCK_BASE_URL",
        Endpoint(Url),
        "openai-python providers/bedrock.py:410 (the module client with OPENAI_API_TYPE=amazon-bedrock)",
    ),
    // LiteLLM's proxy route (`litellm_proxy/...` models, and every model with USE_LITELLM_PROXY).
    var(
        "LITELLM_PROXY_API_BASE",
        Endpoint(Url),
        "litellm llms/litellm_proxy/chat/transformation.py:57",
    ),
    // open-webui.
    var(
        "OPENAI_API_BASE_URL",
        Endpoint(Url),
        "open-webui backend/open_webui/config.py",
    ),
    var(
        "OPENAI_API_BASE_URLS",
        Endpoint(List(';')),
        "open-webui backend/open_webui/config.py (';'-separated)",
    ),
    var(
        "OPENAI_API_KEYS",
        ApiKey(OpenAi),
        "open-webui backend/open_webui/config.py (';'-separated)",
    ),
    // LibreChat and AnythingLLM.
    var(
        "OPENAI_REVERSE_PROXY",
        Endpoint(Url),
        "LibreChat .env.example",
    ),
    var(
        "AZURE_OPENAI_BASEURL",
        Endpoint(Url),
        "LibreChat .env.example",
    ),
    var(
        "OPEN_AI_KEY",
        ApiKey(OpenAi),
        "AnythingLLM server/.env.example (its OpenAI provider only calls api.openai.com)",
    ),
    var(
        "GENERIC_OPEN_AI_BASE_PATH",
        Endpoint(Url),
        "AnythingLLM server/.env.example (LLM_PROVIDER=generic-openai)",
    ),
    var(
        "EMBEDDING_BASE_PATH",
        Endpoint(Url),
        "AnythingLLM server/.env.example (EMBEDDING_ENGINE with a custom base path)",
    ),
    // n8n's AI assistant features.
    var(
        "N8N_AI_OPENAI_API_KEY",
        ApiKey(OpenAi),
        "n8n packages/cli config (N8N_AI_OPENAI_API_KEY)",
    ),
    // Weaviate's text2vec-openai / generative-openai modules (the endpoint is in the schema).
    var(
        "OPENAI_APIKEY",
        ApiKey(OpenAi),
        "Weaviate modules text2vec-openai, generative-openai (env OPENAI_APIKEY)",
    ),
    var(
        "AZURE_APIKEY",
        ApiKey(Azure),
        "Weaviate modules text2vec-openai, generative-openai with Azure (env AZURE_APIKEY)",
    ),
    // LiteLLM's azure/ route.
    var(
        "AZURE_AD_TOKEN",
        ApiKey(Azure),
        "litellm main.py azure route (azure_ad_token from AZURE_AD_TOKEN)",
    ),
    // The AKS store demo's ai-service.
    var(
        "USE_AZURE_OPENAI",
        ApiType,
        "Azure-Samples aks-store-demo src/ai-service (True: Azure OpenAI, False: OpenAI)",
    ),
    var(
        "AZURE_OPENAI_KEY",
        ApiKey(Azure),
        "AnythingLLM server/.env.example; Azure-Samples aks-openai (magic8ball, chainlit)",
    ),
    // Azure-Samples apps (see corpus 015, 018): the legacy openai-python configuration.
    var(
        "AZURE_OPENAI_BASE",
        Endpoint(Url),
        "Azure-Samples aks-openai magic8ball and chainlit apps (openai.api_base)",
    ),
    var(
        "AZURE_OPENAI_TYPE",
        ApiType,
        "Azure-Samples aks-openai magic8ball and chainlit apps (openai.api_type)",
    ),
    // k8sgpt serve.
    var(
        "K8SGPT_BACKEND",
        ApiType,
        "k8sgpt cmd/serve (backend name: openai, azureopenai, localai, ...)",
    ),
    var("K8SGPT_BASEURL", Endpoint(Url), "k8sgpt cmd/serve"),
    // Spring AI: property spring.ai.openai.base-url binds from SPRING_AI_OPENAI_BASEURL (Spring
    // Boot relaxed binding drops dashes); the underscore form is common in manifests too.
    var(
        "SPRING_AI_OPENAI_API_KEY",
        ApiKey(OpenAi),
        "Spring AI spring.ai.openai.api-key",
    ),
    var(
        "SPRING_AI_OPENAI_APIKEY",
        ApiKey(OpenAi),
        "Spring AI spring.ai.openai.api-key (relaxed binding)",
    ),
    var(
        "SPRING_AI_OPENAI_BASE_URL",
        Endpoint(Url),
        "Spring AI spring.ai.openai.base-url",
    ),
    var(
        "SPRING_AI_OPENAI_BASEURL",
        Endpoint(Url),
        "Spring AI spring.ai.openai.base-url (relaxed binding)",
    ),
    var(
        "SPRING_AI_OPENAI_CHAT_BASE_URL",
        Endpoint(Url),
        "Spring AI spring.ai.openai.chat.base-url",
    ),
    var(
        "SPRING_AI_OPENAI_CHAT_BASEURL",
        Endpoint(Url),
        "Spring AI spring.ai.openai.chat.base-url (relaxed binding)",
    ),
    var(
        "SPRING_AI_OPENAI_EMBEDDING_BASE_URL",
        Endpoint(Url),
        "Spring AI spring.ai.openai.embedding.base-url",
    ),
    var(
        "SPRING_AI_OPENAI_EMBEDDING_BASEURL",
        Endpoint(Url),
        "Spring AI spring.ai.openai.embedding.base-url (relaxed binding)",
    ),
    var(
        "SPRING_AI_AZURE_OPENAI_ENDPOINT",
        Endpoint(Url),
        "Spring AI spring.ai.azure.openai.endpoint",
    ),
    var(
        "SPRING_AI_AZURE_OPENAI_API_KEY",
        ApiKey(Azure),
        "Spring AI spring.ai.azure.openai.api-key",
    ),
    var(
        "SPRING_AI_AZURE_OPENAI_APIKEY",
        ApiKey(Azure),
        "Spring AI spring.ai.azure.openai.api-key (relaxed binding)",
    ),
];

/// Looks a variable up, by its exact name.
pub fn lookup(name: &str) -> Option<&'static Variable> {
    CATALOGUE.iter().find(|v| v.name == name)
}

/// Where `name`, in any letter case, is in [`CATALOGUE`]: applications configured through
/// pydantic-settings (case-insensitive by default) read `openai_base_url` as `OPENAI_BASE_URL`,
/// so a lower- or mixed-case spelling counts as another value of the same variable.
///
/// Every variable of every container is looked up, so this is a hash lookup of the name folded
/// to upper case (in a buffer on the stack) rather than a comparison with each entry; a name too
/// long for the buffer is compared with each entry.
pub fn position_any_case(name: &str) -> Option<usize> {
    use std::collections::HashMap;
    use std::sync::LazyLock;
    const BUFFER: usize = 64;
    // A fixed table of the catalogue's names: what is looked up cannot grow it, so a fixed seed
    // is no flooding risk.
    type Table = HashMap<Box<[u8]>, usize, foldhash::fast::FixedState>;
    static BY_FOLDED_NAME: LazyLock<Table> = LazyLock::new(|| {
        let mut map = Table::default();
        for (i, v) in CATALOGUE.iter().enumerate() {
            // The first entry of a name wins, as the scan in catalogue order finds it.
            map.entry(v.name.to_ascii_uppercase().into_bytes().into_boxed_slice())
                .or_insert(i);
        }
        map
    });
    let bytes = name.as_bytes();
    if bytes.len() > BUFFER {
        return CATALOGUE
            .iter()
            .position(|v| v.name.eq_ignore_ascii_case(name));
    }
    let mut buffer = [0u8; BUFFER];
    let folded = &mut buffer[..bytes.len()];
    folded.copy_from_slice(bytes);
    folded.make_ascii_uppercase();
    BY_FOLDED_NAME.get(&*folded).copied()
}

/// What an [`Role::ApiType`] value selects. Unknown values select nothing (`None`), so that the
/// other signals decide.
pub fn api_type_flavour(variable: &str, value: &str) -> Option<Flavour> {
    let v = value.trim().to_ascii_lowercase();
    if variable == "K8SGPT_BACKEND" {
        return Some(match v.as_str() {
            "openai" => Flavour::OpenAi,
            "azureopenai" => Flavour::Azure,
            "amazonbedrock" => Flavour::Bedrock,
            _ => Flavour::NotThisProvider,
        });
    }
    if variable == "USE_AZURE_OPENAI" {
        return match v.as_str() {
            "true" => Some(Flavour::Azure),
            "false" => Some(Flavour::OpenAi),
            _ => None,
        };
    }
    match v.as_str() {
        "open_ai" | "openai" => Some(Flavour::OpenAi),
        "azure" | "azure_ad" | "azuread" | "azure-ad" => Some(Flavour::Azure),
        "amazon-bedrock" | "bedrock" => Some(Flavour::Bedrock),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_sourced() {
        let mut seen = HashSet::new();
        for v in CATALOGUE {
            assert!(seen.insert(v.name), "{} listed twice", v.name);
            assert!(!v.source.trim().is_empty(), "{} has no source", v.name);
        }
    }

    /// The rule is ASCII case folding (`str::eq_ignore_ascii_case`, as pydantic-settings lowers
    /// ASCII names): every catalogue name in any ASCII case is that entry, and a name that differs
    /// in anything else (a byte more or less, a dotless `ı` for `i`, `-` for `_`) is none.
    #[test]
    fn any_case_lookup_folds_ascii_case_only() {
        for (i, v) in CATALOGUE.iter().enumerate() {
            let lower = v.name.to_ascii_lowercase();
            let alternating: String = v
                .name
                .chars()
                .enumerate()
                .map(|(k, c)| {
                    if k % 2 == 0 {
                        c.to_ascii_lowercase()
                    } else {
                        c
                    }
                })
                .collect();
            for spelling in [v.name.to_string(), lower.clone(), alternating] {
                assert_eq!(position_any_case(&spelling), Some(i), "{spelling}");
            }
            let near_misses = [
                format!("{}X", v.name),
                v.name[1..].to_string(),
                v.name.replace('_', "-"),
                lower.replacen('i', "\u{131}", 1),
                format!(" {}", v.name),
            ];
            for miss in near_misses
                .iter()
                .filter(|m| !m.eq_ignore_ascii_case(v.name))
            {
                assert_eq!(position_any_case(miss), None, "{miss:?} is not {}", v.name);
            }
        }
        let long = "OPENAI_BASE_URL".repeat(10);
        assert_eq!(position_any_case(&long), None);
        assert_eq!(position_any_case(""), None);
    }

    #[test]
    fn the_issue_minimum_is_covered() {
        for name in [
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "OPENAI_API_BASE",
            "OPENAI_API_TYPE",
            "OPENAI_API_BASE_URL",
            "OPENAI_API_BASE_URLS",
            "AZURE_OPENAI_ENDPOINT",
            "AZURE_OPENAI_BASE_URL",
            "AZURE_OPENAI_API_KEY",
            "AZURE_OPENAI_API_INSTANCE_NAME",
            "AZURE_API_BASE",
            "AZURE_API_KEY",
            "AWS_BEDROCK_BASE_URL",
            "SPRING_AI_OPENAI_BASE_URL",
            "SPRING_AI_OPENAI_BASEURL",
            "SPRING_AI_AZURE_OPENAI_ENDPOINT",
        ] {
            assert!(lookup(name).is_some(), "{name} missing from the catalogue");
        }
    }

    #[test]
    fn k8sgpt_backend_names_map_to_flavours() {
        assert_eq!(
            api_type_flavour("K8SGPT_BACKEND", "openai"),
            Some(Flavour::OpenAi)
        );
        assert_eq!(
            api_type_flavour("K8SGPT_BACKEND", "localai"),
            Some(Flavour::NotThisProvider)
        );
        assert_eq!(
            api_type_flavour("OPENAI_API_TYPE", "azure_ad"),
            Some(Flavour::Azure)
        );
        assert_eq!(api_type_flavour("OPENAI_API_TYPE", "whatever"), None);
    }
}

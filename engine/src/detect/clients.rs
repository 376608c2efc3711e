//! The real clients' own rules for where a request goes when the code passes no base URL, beyond
//! "this variable holds an endpoint" (which [`super::catalogue`] covers).
//!
//! The catalogue reports every endpoint a variable names; these rules add the destinations the
//! clients pick *by themselves* from the rest of the environment, each read from the client's
//! source (`shared/reference/sdk-env-vars.md` gives file and line for every one):
//!
//! - **The OpenAI default wins over Azure-only variables.** openai-python and openai-node
//!   `OpenAI()`, LangChain's `ChatOpenAI` and `OpenAIEmbeddings` and LiteLLM's `gpt-4o` all send
//!   to `https://api.openai.com/v1` when `OPENAI_API_KEY` is set and `OPENAI_BASE_URL` is not
//!   usable, whatever else is set: none of them reads `AZURE_OPENAI_ENDPOINT` or
//!   `AZURE_API_BASE`, openai ≥ 1 does not read `OPENAI_API_BASE`, and `OPENAI_API_TYPE` only
//!   steers the module client. "Set" is Python's rule, the most permissive: any non-empty
//!   string, whitespace included (openai-python `_client_auth.py:179` sends a whitespace key).
//!   "Usable" is a non-empty value without surrounding whitespace: openai-python uses a set
//!   `OPENAI_BASE_URL` as it is (empty or padded, the request fails), openai-node trims it and
//!   falls back to the default when blank, and LangChain Python's own httpx client resolves
//!   the SDK's relative URL against api.openai.com when the value is unusable
//!   (`chat_models/_client_utils.py:395`). When another endpoint is visible, the clients
//!   disagree and the default is [`EndpointValue::Ambiguous`]: the policy's `ambiguous`
//!   disposition decides.
//! - **LangSmith's gateway** (`langchain_core/utils/_gateway.py:162,220`): `LANGSMITH_GATEWAY`
//!   `true`/`1`/`yes` (any case) sends LangChain's `ChatOpenAI` to
//!   `https://gateway.smith.langchain.com/openai/v1`; any other value except
//!   `false`/`0`/`no`/empty is a gateway base URL, with `/openai/v1` appended. In Python it beats
//!   `OPENAI_BASE_URL`.
//! - **LiteLLM's proxy switch** (`llms/litellm_proxy/chat/transformation.py:57,100`;
//!   `secret_managers/main.py:143`): `USE_LITELLM_PROXY` equal to `true` after trimming, any
//!   case, sends every model to `LITELLM_PROXY_API_BASE`; without it LiteLLM takes its OpenAI
//!   route's base (`OPENAI_BASE_URL`, `OPENAI_API_BASE`), and with neither OpenAI's default
//!   (measured by the clients oracle, tests/clients: cases 0065 and 0486).
//! - **LiteLLM's OpenAI workload identity** (`llms/openai/workload_identity.py:32-36,60-95`):
//!   `OPENAI_IDENTITY_PROVIDER_ID`, `OPENAI_SERVICE_ACCOUNT_ID` and `OPENAI_IDENTITY_TOKEN_FILE`
//!   all set, no key: a token exchange at auth.openai.com, then api.openai.com, unless
//!   `OPENAI_BASE_URL` or `OPENAI_API_BASE` points elsewhere.
//! - **Bedrock through the module client** (`openai/lib/_module_runtime.py:59`,
//!   `openai/providers/bedrock.py:103-109`): `OPENAI_API_TYPE` exactly `amazon-bedrock` sends
//!   `openai.chat.completions.create` to `AWS_BEDROCK_BASE_URL`, else to
//!   `https://bedrock-mantle.<AWS_REGION>.api.aws/openai/v1`, whatever other endpoint is set.

use crate::workload::env::{Candidate, EnvValue, ResolvedEnv, VariableName};

use super::catalogue::OPENAI_SDK_DEFAULT_BASE_URL;
use super::{Endpoint, EndpointValue, Signal};

/// The LangSmith gateway's default host (`_gateway.py:41`), before the provider path.
pub const LANGSMITH_GATEWAY_DEFAULT_BASE: &str = "https://gateway.smith.langchain.com";

/// Amazon Bedrock's current OpenAI-compatible endpoint (`bedrock.py:107`), `{}` the region.
pub const BEDROCK_MANTLE_BASE_URL: &str = "https://bedrock-mantle.{}.api.aws/openai/v1";

/// What the client rules add to one container.
#[derive(Debug, Default)]
pub struct Routes {
    pub signals: Vec<Signal>,
    pub endpoints: Vec<Endpoint>,
    /// The variables behind `endpoints`, for the message of an ambiguous default.
    names: Vec<String>,
}

/// The destinations the clients choose from `env` on their own. `visible` are the endpoints the
/// catalogue already found in the container (they decide whether the OpenAI default is plain or
/// ambiguous).
/// `names` are the container's variable names, as [`ResolvedEnv::names`] gives them.
pub fn routes(env: &ResolvedEnv, names: &[VariableName<'_>], visible: &[Endpoint]) -> Routes {
    let mut out = Routes::default();
    gateway(env, &mut out);
    litellm_proxy(env, &mut out);
    bedrock_module_client(env, &mut out);
    let mut others: Vec<String> = visible
        .iter()
        .filter(|e| e.via != "OPENAI_BASE_URL")
        .map(|e| e.via.clone())
        .collect();
    others.extend(out.names.iter().cloned());
    openai_default(env, names, &others, &mut out);
    out
}

/// Python's truthiness of `os.environ.get(name)`: set and non-empty (whitespace counts). An
/// unreadable value counts as set. The first such candidate.
fn set_in_python<'e>(env: &'e ResolvedEnv<'_>, name: &str) -> Option<Candidate<'e>> {
    env.candidates(name)
        .into_iter()
        .find(|c| !matches!(&c.value, EnvValue::Literal(v) if v.is_empty()))
        .map(std::borrow::Cow::into_owned)
}

/// Every candidate is a non-empty value without surrounding whitespace, or unreadable (then
/// the catalogue reports it as unresolved). False when unset.
fn usable_url(env: &ResolvedEnv, name: &str) -> bool {
    let candidates = env.candidates(name);
    !candidates.is_empty()
        && candidates.iter().all(|c| match &c.value {
            EnvValue::Literal(v) => !v.is_empty() && v.trim() == v,
            EnvValue::Unreadable(_) => true,
        })
}

fn literal<'c>(c: &'c Candidate<'_>) -> Option<&'c str> {
    match &c.value {
        EnvValue::Literal(v) => Some(v),
        EnvValue::Unreadable(_) => None,
    }
}

fn endpoint(value: EndpointValue, c: &Candidate, via: &str) -> Endpoint {
    Endpoint {
        value,
        path: c.path(),
        via: via.to_string(),
        origin: c.origin.clone(),
    }
}

fn route(out: &mut Routes, name: &str, e: Endpoint) {
    out.names.push(name.to_string());
    out.endpoints.push(e);
}

fn signal(out: &mut Routes, name: &'static str, c: &Candidate) {
    out.signals.push(Signal::Variable {
        name,
        path: c.path(),
    });
}

fn gateway(env: &ResolvedEnv, out: &mut Routes) {
    const NAME: &str = "LANGSMITH_GATEWAY";
    for c in env.candidates(NAME) {
        let url = match &c.value {
            EnvValue::Unreadable(why) => {
                signal(out, NAME, &c);
                let e = endpoint(EndpointValue::Unresolved(why.clone()), &c, NAME);
                route(out, NAME, e);
                continue;
            }
            EnvValue::Literal(raw) => {
                let lower = raw.to_lowercase();
                if raw.is_empty() || ["false", "0", "no"].contains(&lower.as_str()) {
                    continue;
                }
                let base = if ["true", "1", "yes"].contains(&lower.as_str()) {
                    LANGSMITH_GATEWAY_DEFAULT_BASE
                } else {
                    raw.trim_end_matches('/')
                };
                format!("{base}/openai/v1")
            }
        };
        signal(out, NAME, &c);
        let e = endpoint(
            EndpointValue::Url(url),
            &c,
            "the LangSmith gateway that LANGSMITH_GATEWAY turns on for LangChain's ChatOpenAI",
        );
        route(out, NAME, e);
    }
}

fn litellm_proxy(env: &ResolvedEnv, out: &mut Routes) {
    const NAME: &str = "USE_LITELLM_PROXY";
    let Some(switch) = env.candidates(NAME).into_iter().find(|c| match &c.value {
        EnvValue::Literal(v) => v.trim().eq_ignore_ascii_case("true"),
        EnvValue::Unreadable(_) => true,
    }) else {
        return;
    };
    signal(out, NAME, &switch);
    // The proxy's base URL itself is a catalogue endpoint when set; without one LiteLLM takes
    // its OpenAI route's base (OPENAI_BASE_URL, then OPENAI_API_BASE, both catalogue
    // endpoints), and with neither, OpenAI's default.
    let unset = |name| set_in_python(env, name).is_none();
    if unset("LITELLM_PROXY_API_BASE") && unset("OPENAI_BASE_URL") && unset("OPENAI_API_BASE") {
        let e = endpoint(
            EndpointValue::Url(OPENAI_SDK_DEFAULT_BASE_URL.into()),
            &switch,
            "the LiteLLM default: USE_LITELLM_PROXY is on but LITELLM_PROXY_API_BASE is not set",
        );
        route(out, NAME, e);
    }
}

fn bedrock_module_client(env: &ResolvedEnv, out: &mut Routes) {
    const NAME: &str = "OPENAI_API_TYPE";
    let Some(selected) = env
        .candidates(NAME)
        .into_iter()
        .find(|c| literal(c) == Some("amazon-bedrock"))
    else {
        return;
    };
    // The module client signs with the pod's AWS credentials (IRSA, instance role): no key
    // needs to be visible for it to send.
    signal(out, NAME, &selected);
    if set_in_python(env, "AWS_BEDROCK_BASE_URL").is_some() {
        // The catalogue reports AWS_BEDROCK_BASE_URL itself.
        return;
    }
    let region = ["AWS_REGION", "AWS_DEFAULT_REGION"].iter().find_map(|n| {
        env.candidates(n)
            .into_iter()
            .find_map(|c| literal(&c).filter(|v| !v.is_empty()).map(str::to_string))
    });
    let value = match region {
        Some(r) => EndpointValue::Url(BEDROCK_MANTLE_BASE_URL.replace("{}", &r)),
        None => EndpointValue::Unresolved(
            "OPENAI_API_TYPE=amazon-bedrock selects Amazon Bedrock, and the region (AWS_REGION) cannot be read".into(),
        ),
    };
    let e = endpoint(
        value,
        &selected,
        "the Amazon Bedrock endpoint the openai-python module client uses for OPENAI_API_TYPE=amazon-bedrock",
    );
    route(out, NAME, e);
}

fn openai_default(
    env: &ResolvedEnv,
    names: &[VariableName<'_>],
    others: &[String],
    out: &mut Routes,
) {
    if usable_url(env, "OPENAI_BASE_URL") {
        return;
    }
    // The key in any letter case: an app configured through pydantic-settings reads
    // `openai_api_key` and hands it to `OpenAI()` (whose own OPENAI_BASE_URL lookup is
    // case-sensitive, so only the exact name makes the base URL usable above).
    let key = names
        .iter()
        .filter(|n| n.eq_ignore_ascii_case("OPENAI_API_KEY"))
        .find_map(|n| set_in_python(env, n));
    let identity = [
        "OPENAI_IDENTITY_PROVIDER_ID",
        "OPENAI_SERVICE_ACCOUNT_ID",
        "OPENAI_IDENTITY_TOKEN_FILE",
    ]
    .iter()
    .map(|n| set_in_python(env, n))
    .collect::<Option<Vec<_>>>();
    let (anchor, via) = match (&key, &identity) {
        (Some(k), _) => (k.clone(), "OPENAI_API_KEY"),
        (None, Some(ids)) if set_in_python(env, "OPENAI_API_BASE").is_none() => {
            for (c, name) in ids.iter().zip([
                "OPENAI_IDENTITY_PROVIDER_ID",
                "OPENAI_SERVICE_ACCOUNT_ID",
                "OPENAI_IDENTITY_TOKEN_FILE",
            ]) {
                signal(out, name, c);
            }
            (
                ids[0].clone(),
                "LiteLLM's OpenAI workload identity (OPENAI_IDENTITY_*)",
            )
        }
        _ => return,
    };
    // An envFrom source that cannot be read may set OPENAI_BASE_URL: where the plain clients go
    // is then unknown, not the default.
    if let Some(source) = env.opaque_sources_for("OPENAI_BASE_URL").first() {
        out.endpoints.push(Endpoint {
            value: EndpointValue::Unresolved(format!(
                "{via} is set, and {} may set OPENAI_BASE_URL, which the OpenAI clients prefer to every other endpoint",
                source.why
            )),
            path: source.path.clone(),
            via: "envFrom".into(),
            origin: None,
        });
        return;
    }
    let value = if others.is_empty() {
        EndpointValue::Url(OPENAI_SDK_DEFAULT_BASE_URL.into())
    } else {
        let mut names: Vec<&str> = others.iter().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        EndpointValue::Ambiguous {
            url: OPENAI_SDK_DEFAULT_BASE_URL.into(),
            why: format!(
                "with {via} and no usable OPENAI_BASE_URL, OpenAI() in openai-python and openai-node, LangChain's ChatOpenAI and LiteLLM send it to {OPENAI_SDK_DEFAULT_BASE_URL}, while only some clients read {}",
                names.join(", ")
            ),
        }
    };
    // The URL is the SDK's default, not something read from where the key came from: no origin.
    out.endpoints.push(Endpoint {
        origin: None,
        ..endpoint(
            value,
            &anchor,
            &format!(
                "the OpenAI SDK default for {via}; OPENAI_BASE_URL is not set to a usable URL"
            ),
        )
    });
}

//! Open WebUI's own client rules (issue 10, the real open-webui chart configured for Azure):
//! its official image sends chat traffic to its connections with its own HTTP client, not
//! through an OpenAI SDK, and its features take their own base URLs.
//!
//! Expected values come from Open WebUI's `backend/open_webui/config.py` (v0.12.4): connections
//! are `OPENAI_API_BASE_URLS` (`;`-separated, an empty entry is `https://api.openai.com/v1`),
//! else `OPENAI_API_BASE_URL`, else that default (lines 328-353); the module's
//! `OPENAI_API_BASE_URL` is reset to the default (line 373) before `RAG_OPENAI_API_BASE_URL`
//! (1105), `IMAGES_OPENAI_API_BASE_URL` (1514), `IMAGES_EDIT_OPENAI_API_BASE_URL` (1544) and the
//! audio base URLs (1589, 1630) default to it; `ENABLE_IMAGE_GENERATION` is `.lower() == 'true'`
//! (1360) and the engines are compared with `== 'openai'` (routers/images.py:205,
//! routers/audio/__init__.py:1555, main.py:756).

use hostguard_engine::api::ClusterProvider;
use hostguard_engine::policy::{
    Decision, Operation, PolicySet, Request, Verdict, default_policy, evaluate,
};
use hostguard_engine::snapshot::Snapshot;
use rstest::rstest;
use serde_json::{Value, json};

const OFFICIAL: &str = "ghcr.io/open-webui/open-webui:v0.12.4";
const AZURE: &str = "https://contoso.openai.azure.com/openai/v1";

fn pod(image: &str, env: &[(&str, &str)]) -> Value {
    let env: Vec<Value> = env
        .iter()
        .map(|(n, v)| json!({"name": n, "value": v}))
        .collect();
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "open-webui", "namespace": "chat"},
        "spec": {"containers": [{"name": "open-webui", "image": image, "env": env}]}})
}

fn decide(object: &Value) -> Decision {
    let policies = PolicySet::compile([&default_policy()]).expect("the default policy compiles");
    evaluate(
        &Request {
            operation: Operation::Create,
            object: Some(object.into()),
            old_object: None,
            namespace: Some("chat"),
        },
        &policies,
        &Snapshot::offline(ClusterProvider::Azure),
    )
}

fn messages(d: &Decision) -> Vec<&str> {
    d.violations.iter().map(|v| v.message.as_str()).collect()
}

#[rstest]
// The chart's Azure setup: the key is OPENAI_API_KEY, the connection OPENAI_API_BASE_URL.
#[case::key_and_azure_base_url(OFFICIAL, &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE)], Verdict::Allow)]
#[case::keys_and_azure_base_urls(OFFICIAL, &[("OPENAI_API_KEYS", "k"), ("OPENAI_API_BASE_URLS", AZURE)], Verdict::Allow)]
#[case::digest_pinned_official_image("ghcr.io/open-webui/open-webui:main@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE)], Verdict::Allow)]
// Another image name can hold any code: an OpenAI SDK would take OPENAI_API_KEY to
// api.openai.com, since it does not read OPENAI_API_BASE_URL.
#[case::lookalike_repository("ghcr.io/open-webui/open-webui-fork:v1", &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE)], Verdict::Deny)]
#[case::mirror_under_another_name("registry.corp.example/open-webui/open-webui:v0.12.4", &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE)], Verdict::Deny)]
// The registry host is case-insensitive and :443 is its default port: the same image.
#[case::registry_in_upper_case("GHCR.IO/open-webui/open-webui:main", &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE)], Verdict::Allow)]
#[case::registry_with_its_default_port("ghcr.io:443/open-webui/open-webui:main", &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE)], Verdict::Allow)]
// A look-alike gets both rule sets: Open WebUI's feature defaults are not lost on a mirror,
// even when OPENAI_BASE_URL satisfies the SDKs.
#[case::mirror_with_a_feature_default("myregistry.azurecr.io/mirror/open-webui:v0.12.4", &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE), ("OPENAI_BASE_URL", AZURE), ("RAG_EMBEDDING_ENGINE", "openai")], Verdict::Deny)]
#[case::mirror_configured_for_azure_both_ways("myregistry.azurecr.io/mirror/open-webui:v0.12.4", &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE), ("OPENAI_BASE_URL", AZURE)], Verdict::Allow)]
// No connection URL: Open WebUI's default connection.
#[case::key_only(OFFICIAL, &[("OPENAI_API_KEY", "k")], Verdict::Deny)]
#[case::keys_only(OFFICIAL, &[("OPENAI_API_KEYS", "k;l")], Verdict::Deny)]
// An empty entry of OPENAI_API_BASE_URLS is the default connection.
#[case::trailing_separator(OFFICIAL, &[("OPENAI_API_KEYS", "k;"), ("OPENAI_API_BASE_URLS", "https://contoso.openai.azure.com/openai/v1;")], Verdict::Deny)]
#[case::empty_middle_entry(OFFICIAL, &[("OPENAI_API_BASE_URLS", "https://a.openai.azure.com/openai/v1;;https://b.openai.azure.com/openai/v1")], Verdict::Deny)]
#[case::direct_connection_among_others(OFFICIAL, &[("OPENAI_API_BASE_URLS", "https://contoso.openai.azure.com/openai/v1;https://api.openai.com/v1")], Verdict::Deny)]
// Features: their base URL defaults to OpenAI's, whatever OPENAI_API_BASE_URL says.
#[case::rag_openai_without_its_base_url(OFFICIAL, &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE), ("RAG_EMBEDDING_ENGINE", "openai")], Verdict::Deny)]
#[case::rag_openai_with_azure_base_url(OFFICIAL, &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE), ("RAG_EMBEDDING_ENGINE", "openai"), ("RAG_OPENAI_API_BASE_URL", AZURE)], Verdict::Allow)]
#[case::rag_local_engine(OFFICIAL, &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE), ("RAG_EMBEDDING_ENGINE", "ollama")], Verdict::Allow)]
#[case::image_generation_default_engine(OFFICIAL, &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE), ("ENABLE_IMAGE_GENERATION", "True")], Verdict::Deny)]
#[case::image_generation_other_engine(OFFICIAL, &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE), ("ENABLE_IMAGE_GENERATION", "true"), ("IMAGE_GENERATION_ENGINE", "comfyui")], Verdict::Allow)]
#[case::image_generation_off(OFFICIAL, &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE), ("ENABLE_IMAGE_GENERATION", "yes")], Verdict::Allow)]
#[case::image_edit_default_engine(OFFICIAL, &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE), ("ENABLE_IMAGE_EDIT", "TRUE")], Verdict::Deny)]
#[case::speech_to_text_openai(OFFICIAL, &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE), ("AUDIO_STT_ENGINE", "openai")], Verdict::Deny)]
#[case::text_to_speech_azure_base(OFFICIAL, &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE), ("AUDIO_TTS_ENGINE", "openai"), ("AUDIO_TTS_OPENAI_API_BASE_URL", AZURE)], Verdict::Allow)]
// The engines are compared exactly: "OpenAI" is not the openai engine.
#[case::engine_name_is_case_sensitive(OFFICIAL, &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE), ("AUDIO_STT_ENGINE", "OpenAI")], Verdict::Allow)]
// A feature alone, with no connection configured, still calls OpenAI.
#[case::feature_alone(OFFICIAL, &[("AUDIO_TTS_ENGINE", "openai")], Verdict::Deny)]
fn open_webui_sends_where_its_config_says(
    #[case] image: &str,
    #[case] env: &[(&str, &str)],
    #[case] expected: Verdict,
) {
    let d = decide(&pod(image, env));
    assert_eq!(d.verdict, expected, "{image} {env:?}: {:?}", messages(&d));
}

#[test]
fn a_feature_switch_from_a_secret_may_switch_it_on_and_fails_closed() {
    let mut p = pod(
        OFFICIAL,
        &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE)],
    );
    p["spec"]["containers"][0]["env"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "RAG_EMBEDDING_ENGINE",
            "valueFrom": {"secretKeyRef": {"name": "owu", "key": "engine"}}}));
    let d = decide(&p);
    assert_eq!(d.verdict, Verdict::Deny, "{:?}", messages(&d));
}

#[test]
fn the_default_connection_names_the_key_that_implies_it_and_the_variable_to_set() {
    let d = decide(&pod(OFFICIAL, &[("OPENAI_API_KEY", "k")]));
    assert!(
        d.violations
            .iter()
            .any(|v| v.path.ends_with("env[OPENAI_API_KEY]")
                && v.message.contains("the default connection of Open WebUI")
                && v.message
                    .contains("set OPENAI_API_BASE_URL to your Azure endpoint")),
        "{:?}",
        messages(&d)
    );
}

#[test]
fn a_features_default_names_its_own_base_url_variable() {
    let d = decide(&pod(
        OFFICIAL,
        &[
            ("OPENAI_API_KEY", "k"),
            ("OPENAI_API_BASE_URL", AZURE),
            ("AUDIO_STT_ENGINE", "openai"),
        ],
    ));
    assert!(
        d.violations
            .iter()
            .any(|v| v.path.ends_with("env[AUDIO_STT_ENGINE]")
                && v.message
                    .contains("set AUDIO_STT_OPENAI_API_BASE_URL to your Azure endpoint")),
        "{:?}",
        messages(&d)
    );
}

/// An `envFrom` source hostguard cannot read (a Secret) may set OPENAI_API_BASE_URLS, which
/// Open WebUI prefers to the visible OPENAI_API_BASE_URL, or switch a feature on: fail closed.
#[test]
fn an_unreadable_env_from_source_may_set_a_connection_and_fails_closed() {
    let mut p = pod(
        OFFICIAL,
        &[("OPENAI_API_KEY", "k"), ("OPENAI_API_BASE_URL", AZURE)],
    );
    p["spec"]["containers"][0]["envFrom"] = json!([{"secretRef": {"name": "owui"}}]);
    let d = decide(&p);
    assert_eq!(d.verdict, Verdict::Deny, "{:?}", messages(&d));
    assert!(
        messages(&d)
            .iter()
            .any(|m| m.contains("OPENAI_API_BASE_URLS may be set by")),
        "{:?}",
        messages(&d)
    );
}

//! The clients' own routing rules (engine/src/detect/clients.rs), one row per rule of
//! `shared/reference/sdk-env-vars.md`: each environment is what a container carries, and the
//! expected verdict is where the real clients send a chat completion built with no arguments,
//! judged by the built-in default policy on an Azure cluster. The file and line in each row's
//! comment is the client code that decides it.

use hostguard_engine::api::{ClusterProvider, Disposition};
use hostguard_engine::endpoint::Hosting;
use hostguard_engine::policy::{
    Decision, Operation, PolicySet, Request, Verdict, default_policy, evaluate,
};
use hostguard_engine::snapshot::Snapshot;
use rstest::rstest;
use serde_json::{Value, json};

const KEY: &str = "sk-proj-0123456789";
const AZURE_V1: &str = "https://contoso.openai.azure.com/openai/v1";
const AZURE_ENDPOINT: &str = "https://contoso.openai.azure.com/";

fn deployment(env: &[(&str, &str)]) -> Value {
    let env: Vec<Value> = env
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "chat", "namespace": "team-a"},
           "spec": {"selector": {"matchLabels": {"app": "chat"}}, "template": {
               "metadata": {"labels": {"app": "chat"}},
               "spec": {"containers": [{"name": "app", "image": "app:1", "env": env}]}}}})
}

fn decide_with(env: &[(&str, &str)], policies: &PolicySet) -> Decision {
    let obj = deployment(env);
    evaluate(
        &Request {
            operation: Operation::Create,
            object: Some((&obj).into()),
            old_object: None,
            namespace: None,
        },
        policies,
        &Snapshot::offline(ClusterProvider::Azure),
    )
}

fn decide(env: &[(&str, &str)]) -> Decision {
    decide_with(env, &PolicySet::builtin())
}

fn messages(d: &Decision) -> String {
    let mut all: Vec<String> = d.violations.iter().map(|v| v.message.clone()).collect();
    all.extend(d.warnings.iter().map(|w| &w.message).cloned());
    all.join("\n")
}

/// Environments in which at least one modelled client sends to a host the default policy does
/// not allow: hostguard must deny.
#[rstest]
// openai-python _client_auth.py:228-232, openai-node client.ts:452: OPENAI_BASE_URL or the
// default; neither reads AZURE_OPENAI_ENDPOINT.
#[case::key_beside_azure_endpoint(&[("OPENAI_API_KEY", KEY), ("AZURE_OPENAI_ENDPOINT", AZURE_ENDPOINT)])]
// openai >= 1 does not read OPENAI_API_BASE (LangChain and LiteLLM do).
#[case::key_beside_openai_api_base(&[("OPENAI_API_KEY", KEY), ("OPENAI_API_BASE", AZURE_V1)])]
// LiteLLM azure/ reads AZURE_API_BASE; the plain clients do not.
#[case::key_beside_litellm_azure_base(&[("OPENAI_API_KEY", KEY), ("AZURE_API_BASE", AZURE_ENDPOINT)])]
// OPENAI_API_TYPE steers only the module client (_module_runtime.py:42).
#[case::key_with_api_type_azure(&[("OPENAI_API_KEY", KEY), ("OPENAI_API_TYPE", "azure"), ("AZURE_OPENAI_ENDPOINT", AZURE_ENDPOINT)])]
// An empty OPENAI_BASE_URL: openai-node treats it as unset (env.ts:10).
#[case::key_with_empty_base_url(&[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", ""), ("AZURE_OPENAI_ENDPOINT", AZURE_ENDPOINT)])]
// A padded OPENAI_BASE_URL: LangChain Python resolves against api.openai.com
// (chat_models/_client_utils.py:395).
#[case::key_with_padded_base_url(&[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", " https://contoso.openai.azure.com/openai/v1")])]
// A whitespace key is sent by openai-python (_client_auth.py:179).
#[case::whitespace_key(&[("OPENAI_API_KEY", "   ")])]
#[case::tab_key(&[("OPENAI_API_KEY", "\t")])]
// LangSmith's gateway beats OPENAI_BASE_URL in LangChain Python (_gateway.py:220,248-325).
#[case::gateway_true(&[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", AZURE_V1), ("LANGSMITH_GATEWAY", "true")])]
#[case::gateway_yes_upper(&[("LANGSMITH_API_KEY", "lsv2"), ("OPENAI_BASE_URL", AZURE_V1), ("LANGSMITH_GATEWAY", "YES")])]
#[case::gateway_one(&[("OPENAI_BASE_URL", AZURE_V1), ("LANGSMITH_GATEWAY", "1"), ("OPENAI_API_KEY", KEY)])]
#[case::gateway_url(&[("OPENAI_BASE_URL", AZURE_V1), ("LANGSMITH_GATEWAY", "https://gw.example.com/"), ("OPENAI_API_KEY", KEY)])]
// LiteLLM's proxy switch (transformation.py:100; str_to_bool trims and ignores case).
#[case::litellm_proxy(&[("OPENAI_BASE_URL", AZURE_V1), ("OPENAI_API_KEY", KEY), ("USE_LITELLM_PROXY", "True"), ("LITELLM_PROXY_API_BASE", "https://proxy.example.com")])]
#[case::litellm_proxy_without_base(&[("AZURE_API_KEY", "k"), ("AZURE_API_BASE", AZURE_ENDPOINT), ("USE_LITELLM_PROXY", " true "), ("LITELLM_PROXY_API_KEY", "k")])]
// LiteLLM's OpenAI workload identity (workload_identity.py:60-95): no key at all.
#[case::litellm_workload_identity(&[("OPENAI_IDENTITY_PROVIDER_ID", "idp"), ("OPENAI_SERVICE_ACCOUNT_ID", "sa"), ("OPENAI_IDENTITY_TOKEN_FILE", "/var/run/secrets/openai/token")])]
// The module client with OPENAI_API_TYPE=amazon-bedrock (bedrock.py:103-109), even beside an
// Azure endpoint.
#[case::module_client_bedrock(&[("OPENAI_API_TYPE", "amazon-bedrock"), ("AWS_REGION", "us-east-1"), ("AZURE_OPENAI_ENDPOINT", AZURE_ENDPOINT), ("AZURE_OPENAI_API_KEY", "k"), ("OPENAI_API_VERSION", "2024-10-21")])]
// K8sGPT's backend switch says nothing about the OpenAI SDKs in the same container.
#[case::k8sgpt_localai_beside_a_key(&[("K8SGPT_BACKEND", "localai"), ("OPENAI_API_KEY", KEY)])]
// pydantic-settings reads names case-insensitively: a lower-case spelling is another value.
#[case::lower_case_spelling(&[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", AZURE_V1), ("openai_base_url", "https://api.openai.com/v1")])]
// A lower-case key (pydantic-settings) beside an Azure-only endpoint is as ambiguous as the
// upper-case one; a lower-case base URL does not make the default go away (openai-python reads
// OPENAI_BASE_URL case-sensitively).
#[case::lower_case_key_beside_azure_endpoint(&[("openai_api_key", KEY), ("AZURE_OPENAI_ENDPOINT", AZURE_ENDPOINT)])]
#[case::lower_case_base_url_only(&[("OPENAI_API_KEY", KEY), ("openai_base_url", AZURE_V1)])]
// Applications' own keys (shared/reference/ai-tool-resources.md).
#[case::anythingllm_key(&[("OPEN_AI_KEY", KEY)])]
#[case::n8n_key(&[("N8N_AI_OPENAI_API_KEY", KEY)])]
#[case::weaviate_key(&[("OPENAI_APIKEY", KEY), ("ENABLE_MODULES", "text2vec-openai")])]
// The AKS store demo reads its key from OPENAI_API_KEY even for Azure; any plain client in the
// container would still call api.openai.com: ambiguous, denied (set OPENAI_BASE_URL too).
#[case::aks_store_demo_switch(&[("USE_AZURE_OPENAI", "True"), ("OPENAI_API_KEY", KEY), ("AZURE_OPENAI_ENDPOINT", AZURE_ENDPOINT)])]
fn a_client_leaves_the_allowed_hosts(#[case] env: &[(&str, &str)]) {
    let d = decide(env);
    assert_eq!(d.verdict, Verdict::Deny, "{env:?}: {}", messages(&d));
}

/// Environments in which every client that sends stays on an allowed host: hostguard allows.
#[rstest]
// The Azure clients only: no OpenAI key, so OpenAI() refuses to start.
#[case::azure_clients_only(&[("AZURE_OPENAI_API_KEY", "k"), ("AZURE_OPENAI_ENDPOINT", AZURE_ENDPOINT), ("OPENAI_API_VERSION", "2024-10-21")])]
// OPENAI_BASE_URL pointed at the Azure v1 endpoint: every plain client goes there.
#[case::key_with_azure_v1_base_url(&[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", AZURE_V1)])]
#[case::key_with_azure_v1_base_url_and_endpoint(&[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", AZURE_V1), ("AZURE_OPENAI_ENDPOINT", AZURE_ENDPOINT)])]
// Spellings every client reads as the same Azure host on 443.
#[case::endpoint_with_default_port(&[("AZURE_OPENAI_API_KEY", "k"), ("AZURE_OPENAI_ENDPOINT", "https://contoso.openai.azure.com:443/"), ("OPENAI_API_VERSION", "2024-10-21")])]
#[case::endpoint_upper_case(&[("AZURE_OPENAI_API_KEY", "k"), ("AZURE_OPENAI_ENDPOINT", "https://Contoso.OpenAI.Azure.com/"), ("OPENAI_API_VERSION", "2024-10-21")])]
#[case::endpoint_query_after_host(&[("AZURE_OPENAI_API_KEY", "k"), ("AZURE_OPENAI_ENDPOINT", "https://contoso.openai.azure.com?api-version=2024-10-21"), ("OPENAI_API_VERSION", "2024-10-21")])]
#[case::base_url_with_default_port(&[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", "https://contoso.openai.azure.com:443/openai/v1")])]
// Switches that are off.
#[case::gateway_false(&[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", AZURE_V1), ("LANGSMITH_GATEWAY", "false")])]
#[case::gateway_no(&[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", AZURE_V1), ("LANGSMITH_GATEWAY", "No")])]
// The proxy switch without a proxy base: LiteLLM takes OPENAI_BASE_URL (oracle case 0065).
#[case::litellm_proxy_switch_without_base_but_azure_base_url(&[("USE_LITELLM_PROXY", "True"), ("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", AZURE_V1)])]
#[case::litellm_proxy_off(&[("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", AZURE_V1), ("USE_LITELLM_PROXY", "false")])]
// Workload identity with OPENAI_BASE_URL at Azure: LiteLLM does not use it (it targets OpenAI
// only), and no other client has a key.
#[case::identity_with_azure_base(&[("OPENAI_IDENTITY_PROVIDER_ID", "idp"), ("OPENAI_SERVICE_ACCOUNT_ID", "sa"), ("OPENAI_IDENTITY_TOKEN_FILE", "/t"), ("OPENAI_BASE_URL", AZURE_V1)])]
// LiteLLM's azure/ route with an AD token and its own base variable.
#[case::litellm_azure_ad_token(&[("AZURE_AD_TOKEN", "t"), ("AZURE_API_BASE", AZURE_ENDPOINT)])]
#[case::aks_store_demo_with_base_url(&[("USE_AZURE_OPENAI", "True"), ("OPENAI_API_KEY", KEY), ("AZURE_OPENAI_ENDPOINT", AZURE_ENDPOINT), ("OPENAI_BASE_URL", AZURE_V1)])]
fn every_client_stays_on_allowed_hosts(#[case] env: &[(&str, &str)]) {
    let d = decide(env);
    assert_ne!(d.verdict, Verdict::Deny, "{env:?}: {}", messages(&d));
}

#[test]
fn an_openai_key_beside_an_azure_only_endpoint_is_ambiguous_and_says_how_to_fix_it() {
    let env = [
        ("OPENAI_API_KEY", KEY),
        ("AZURE_OPENAI_ENDPOINT", AZURE_ENDPOINT),
    ];
    let d = decide(&env);
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(
        d.findings.iter().any(|f| f.hosting == Hosting::Ambiguous),
        "{:?}",
        d.findings
    );
    let text = messages(&d);
    assert!(text.contains("AZURE_OPENAI_API_KEY"), "{text}");
    assert!(text.contains("OPENAI_BASE_URL"), "{text}");
    assert!(text.contains("AZURE_OPENAI_ENDPOINT"), "{text}");
}

#[test]
fn the_ambiguous_disposition_is_the_policys() {
    let mut p = default_policy();
    p.spec.endpoints.ambiguous = Disposition::Warn;
    let policies = PolicySet::compile([&p]).expect("compiles");
    let env = [
        ("OPENAI_API_KEY", KEY),
        ("AZURE_OPENAI_ENDPOINT", AZURE_ENDPOINT),
    ];
    let d = decide_with(&env, &policies);
    assert_ne!(d.verdict, Verdict::Deny, "{}", messages(&d));
    assert!(
        d.warnings
            .iter()
            .map(|w| &w.message)
            .any(|w| w.contains("disagree")),
        "{:?}",
        d.warnings
    );
    // A plain key with no other endpoint is not ambiguous: the default is where it goes.
    let d = decide_with(&[("OPENAI_API_KEY", KEY)], &policies);
    assert_eq!(d.verdict, Verdict::Deny, "{}", messages(&d));
}

#[test]
fn bedrock_module_client_goes_to_the_mantle_endpoint_of_the_region() {
    let d = decide(&[
        ("OPENAI_API_TYPE", "amazon-bedrock"),
        ("AWS_REGION", "eu-west-3"),
    ]);
    assert_eq!(d.verdict, Verdict::Deny);
    let endpoints: Vec<&str> = d.findings.iter().map(|f| f.endpoint.as_str()).collect();
    assert!(
        endpoints.contains(&"https://bedrock-mantle.eu-west-3.api.aws/openai/v1"),
        "{endpoints:?}"
    );
}

// ---------------------------------------------------------------- other surfaces of a pod spec

fn decide_spec(spec: Value) -> Decision {
    let obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "chat", "namespace": "team-a"},
           "spec": {"selector": {"matchLabels": {"app": "chat"}}, "template": {
               "metadata": {"labels": {"app": "chat"}}, "spec": spec}}});
    evaluate(
        &Request {
            operation: Operation::Create,
            object: Some((&obj).into()),
            old_object: None,
            namespace: None,
        },
        &PolicySet::builtin(),
        &Snapshot::offline(ClusterProvider::Azure),
    )
}

/// Traffic that leaves through a part of the pod spec other than the SDK's variables: the
/// kubelet runs hooks and exec probes inside the container and sends httpGet requests itself;
/// a forwarding sidecar's upstream is where the app's traffic ends up.
#[rstest]
#[case::post_start_curl(json!({"containers": [{"name": "a", "image": "a",
    "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "curl -s https://api.openai.com/v1/chat/completions -d @/p.json"]}}}}]}))]
#[case::pre_stop_curl(json!({"containers": [{"name": "a", "image": "a",
    "lifecycle": {"preStop": {"exec": {"command": ["curl", "https://api.openai.com/v1/embeddings"]}}}}]}))]
#[case::exec_probe(json!({"containers": [{"name": "a", "image": "a",
    "livenessProbe": {"exec": {"command": ["curl", "-f", "https://api.openai.com/v1/models"]}}}]}))]
#[case::http_get_probe_host(json!({"containers": [{"name": "a", "image": "a",
    "readinessProbe": {"httpGet": {"host": "api.openai.com", "scheme": "HTTPS", "path": "/v1/models", "port": 443}}}]}))]
#[case::sidecar_upstream_url(json!({"containers": [
    {"name": "app", "image": "app", "env": [{"name": "OPENAI_BASE_URL", "value": "http://localhost:8080/v1"}, {"name": "OPENAI_API_KEY", "value": "k"}]},
    {"name": "proxy", "image": "nginx", "env": [{"name": "UPSTREAM_URL", "value": "https://api.openai.com"}]}]}))]
#[case::sidecar_schemeless_upstream(json!({"containers": [
    {"name": "app", "image": "app", "env": [{"name": "OPENAI_BASE_URL", "value": "http://localhost:10000/v1"}, {"name": "OPENAI_API_KEY", "value": "k"}]},
    {"name": "envoy", "image": "envoyproxy/envoy", "args": ["--upstream", "api.openai.com:443"]}]}))]
#[case::json_config_in_env(json!({"containers": [{"name": "a", "image": "a", "env": [
    {"name": "OAI_CONFIG_LIST", "value": "[{\"model\": \"gpt-4o\", \"base_url\": \"https://api.openai.com/v1\", \"api_key\": \"k\"}]"}]}]}))]
// A quote inside the authority may be userinfo to whoever reads the value: the whole token is
// judged, and refused.
#[case::quote_inside_the_authority(json!({"containers": [{"name": "a", "image": "a", "env": [
    {"name": "CONFIG", "value": "{\"base_url\": \"https://x.openai.azure.com'@evil.example/v1\"}"}]}]}))]
// /etc/hosts mapping the allowed host to an address of the author's choosing.
#[case::host_alias_for_the_azure_host(json!({
    "hostAliases": [{"ip": "203.0.113.7", "hostnames": ["contoso.openai.azure.com"]}],
    "containers": [{"name": "a", "image": "a", "env": [
        {"name": "AZURE_OPENAI_API_KEY", "value": "k"}, {"name": "AZURE_OPENAI_ENDPOINT", "value": AZURE_ENDPOINT},
        {"name": "OPENAI_API_VERSION", "value": "2024-10-21"}]}]}))]
fn traffic_through_other_parts_of_the_pod_spec_is_judged(#[case] spec: Value) {
    let d = decide_spec(spec.clone());
    assert_eq!(d.verdict, Verdict::Deny, "{spec}: {}", messages(&d));
}

#[rstest]
#[case::azure_in_json_config(json!({"containers": [{"name": "a", "image": "a", "env": [
    {"name": "OAI_CONFIG_LIST", "value": "[{\"model\": \"gpt-4o\", \"base_url\": \"https://contoso.openai.azure.com/openai/v1\", \"api_key\": \"k\"}]"}]}]}))]
#[case::no_proxy_lists_are_not_endpoints(json!({"containers": [{"name": "a", "image": "a", "env": [
    {"name": "NO_PROXY", "value": "localhost,.openai.com,api.openai.com"},
    {"name": "OTHER_EXCLUSIONS", "value": "localhost,.openai.com"}]}]}))]
#[case::azure_schemeless_upstream(json!({"containers": [{"name": "envoy", "image": "envoyproxy/envoy",
    "args": ["--upstream", "contoso.openai.azure.com:443"]}]}))]
#[case::http_get_probe_of_the_pod_itself(json!({"containers": [{"name": "a", "image": "a",
    "env": [{"name": "OPENAI_API_KEY", "value": "k"}, {"name": "OPENAI_BASE_URL", "value": AZURE_V1}],
    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}}]}))]
fn surfaces_that_stay_on_allowed_hosts_are_allowed(#[case] spec: Value) {
    let d = decide_spec(spec.clone());
    assert_ne!(d.verdict, Verdict::Deny, "{spec}: {}", messages(&d));
}

#[test]
fn custom_resolvers_on_a_governed_pod_are_a_warning() {
    let d = decide_spec(json!({
        "dnsConfig": {"nameservers": ["203.0.113.53"]},
        "containers": [{"name": "a", "image": "a", "env": [
            {"name": "OPENAI_API_KEY", "value": "k"}, {"name": "OPENAI_BASE_URL", "value": AZURE_V1}]}]}));
    assert_eq!(d.verdict, Verdict::Warn, "{}", messages(&d));
    assert!(
        d.warnings
            .iter()
            .map(|w| &w.message)
            .any(|w| w.contains("dnsConfig.nameservers")),
        "{:?}",
        d.warnings
    );
}

fn secret_env(name: &str) -> Value {
    json!({"name": name, "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}})
}

#[test]
fn an_endpoint_flag_whose_value_is_a_secret_is_unresolved_on_an_ai_container() {
    for args in [
        json!(["--api_base", "$(BASE)"]),
        json!(["--base-url=$(BASE)"]),
    ] {
        let d = decide_spec(
            json!({"containers": [{"name": "a", "image": "a", "args": args,
            "env": [secret_env("BASE"), {"name": "AZURE_OPENAI_API_KEY", "value": "k"},
                    {"name": "AZURE_OPENAI_ENDPOINT", "value": AZURE_ENDPOINT}]}]}),
        );
        assert_eq!(d.verdict, Verdict::Deny, "{args}: {}", messages(&d));
        assert!(
            d.findings.iter().any(|f| f.hosting == Hosting::Unresolved),
            "{args}: {:?}",
            d.findings
        );
    }
    // The same flag on a container with no AI signal governs nothing.
    let d = decide_spec(json!({"containers": [{"name": "db", "image": "minio/mc",
        "args": ["--endpoint", "$(BASE)"], "env": [secret_env("BASE")]}]}));
    assert!(d.governed_by.is_empty(), "{d:?}");
}

#[rstest]
#[case::https_proxy(&[("HTTPS_PROXY", "http://proxy.corp.example:3128")])]
#[case::all_proxy_lower(&[("all_proxy", "socks5://proxy.corp.example:1080")])]
#[case::ca_bundle(&[("SSL_CERT_FILE", "/etc/ssl/corp-ca.pem")])]
#[case::node_extra_ca(&[("NODE_EXTRA_CA_CERTS", "/etc/ssl/corp-ca.pem")])]
#[case::java_proxy(&[("JAVA_TOOL_OPTIONS", "-Dhttps.proxyHost=proxy.corp.example -Dhttps.proxyPort=3128")])]
fn proxies_and_ca_bundles_on_a_governed_container_follow_the_redirection_disposition(
    #[case] extra: &[(&str, &str)],
) {
    let mut env = vec![("OPENAI_API_KEY", KEY), ("OPENAI_BASE_URL", AZURE_V1)];
    env.extend_from_slice(extra);
    // The default policy warns.
    let d = decide(&env);
    assert_eq!(d.verdict, Verdict::Warn, "{env:?}: {}", messages(&d));
    // A strict policy denies.
    let mut p = default_policy();
    p.spec.endpoints.redirection = Disposition::Deny;
    let strict = PolicySet::compile([&p]).expect("compiles");
    assert_eq!(decide_with(&env, &strict).verdict, Verdict::Deny);
    // Without AI usage, a proxy governs nothing.
    let d = decide(extra);
    assert!(d.governed_by.is_empty(), "{extra:?}: {d:?}");
}

#[test]
fn a_proxy_never_stands_in_for_the_missing_endpoint() {
    // An Azure key with no endpoint stays "no endpoint" (denied), proxy or not.
    let d = decide(&[
        ("AZURE_OPENAI_API_KEY", "k"),
        ("HTTPS_PROXY", "http://proxy.corp.example:3128"),
    ]);
    assert_eq!(d.verdict, Verdict::Deny, "{}", messages(&d));
}

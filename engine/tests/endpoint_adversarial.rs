//! Adversarial table for endpoint classification: with the default allowed hosts and https
//! required, nothing but a clean Azure URL may classify as `azure`. Each trap is a string that
//! some HTTP client (httpx, urllib, requests, Node, Go) could send to a host other than the one a
//! naive check sees, or a clean URL that simply is not Azure.

use hostguard_engine::endpoint::{Classification, EndpointRules, HostPattern, Hosting, classify};
use rstest::rstest;

const DEFAULT_ALLOWED: [&str; 5] = [
    "*.openai.azure.com",
    "*.cognitiveservices.azure.com",
    "*.services.ai.azure.com",
    "*.openai.azure.us",
    "*.cognitiveservices.azure.us",
];

fn classify_default(raw: &str) -> Classification {
    let patterns: Vec<HostPattern> = DEFAULT_ALLOWED
        .iter()
        .map(|p| HostPattern::parse(p).expect("default pattern is valid"))
        .collect();
    classify(
        raw,
        &EndpointRules {
            allowed_hosts: &patterns,
            require_https: true,
        },
    )
}

#[rstest]
#[case::bare_host("https://myres.openai.azure.com", "myres.openai.azure.com")]
#[case::root("https://myres.openai.azure.com/", "myres.openai.azure.com")]
#[case::v1("https://myres.openai.azure.com/openai/v1", "myres.openai.azure.com")]
#[case::deployment(
    "https://myres.openai.azure.com/openai/deployments/x/chat/completions?api-version=2024-10-21",
    "myres.openai.azure.com"
)]
#[case::cognitive(
    "https://myres.cognitiveservices.azure.com/",
    "myres.cognitiveservices.azure.com"
)]
#[case::ai_services(
    "https://myres.services.ai.azure.com/models",
    "myres.services.ai.azure.com"
)]
#[case::gov_openai("https://myres.openai.azure.us/", "myres.openai.azure.us")]
#[case::gov_cognitive(
    "https://myres.cognitiveservices.azure.us/openai/v1",
    "myres.cognitiveservices.azure.us"
)]
#[case::trailing_dot("https://myres.openai.azure.com./openai/v1", "myres.openai.azure.com")]
#[case::trailing_dot_bare("https://myres.openai.azure.com.", "myres.openai.azure.com")]
#[case::two_labels_under_suffix("https://a.b.openai.azure.com/", "a.b.openai.azure.com")]
#[case::hyphen_and_digits("https://my-res-01.openai.azure.com/", "my-res-01.openai.azure.com")]
#[case::empty_query("https://myres.openai.azure.com/?", "myres.openai.azure.com")]
#[case::encoded_path(
    "https://myres.openai.azure.com/openai/deployments/my%20model",
    "myres.openai.azure.com"
)]
// Punycode is plain ASCII and the label is the customer's resource name under Azure's domain:
// however it renders when decoded, DNS and TLS go to Azure.
#[case::punycode_resource(
    "https://xn--80ak6aa92e.openai.azure.com/",
    "xn--80ak6aa92e.openai.azure.com"
)]
fn clean_azure_urls_are_azure(#[case] raw: &str, #[case] host: &str) {
    let verdict = classify_default(raw);
    assert_eq!(
        verdict,
        Classification {
            hosting: Hosting::Azure,
            host: Some(host.to_owned()),
            problem: None
        },
        "{raw:?}"
    );
}

/// Values that are not clean URLs: external, no host named, and a problem that says why.
#[rstest]
#[case::empty("", "is empty")]
// Backslash: WHATWG reads it as `/` (host x.openai.azure.com), others as part of the userinfo.
#[case::backslash_at("https://x.openai.azure.com\\@evil.com/", "backslash")]
#[case::backslashes_after_scheme("https:\\\\x.openai.azure.com", "backslash")]
#[case::backslash_path("https://x.openai.azure.com\\v1", "backslash")]
#[case::userinfo_host_is_evil("https://x.openai.azure.com@evil.com/", "userinfo")]
#[case::userinfo_with_port("https://x.openai.azure.com:443@evil.com", "userinfo")]
#[case::user_password("https://user:pw@x.openai.azure.com/", "userinfo")]
#[case::empty_userinfo("https://@x.openai.azure.com/", "userinfo")]
#[case::empty_password("https://:@x.openai.azure.com/", "userinfo")]
#[case::percent_dot_into_evil("https://x.openai.azure.com%2eevil.com/", "percent")]
#[case::percent_dot_in_suffix("https://x.openai.azure%2ecom/", "percent")]
#[case::percent_letter("https://x.openai.azure.c%6fm/", "percent")]
#[case::ideographic_full_stop("https://x\u{3002}openai\u{3002}azure\u{3002}com/", "U+3002")]
#[case::full_width_full_stop("https://x\u{FF0E}openai\u{FF0E}azure\u{FF0E}com/", "U+FF0E")]
#[case::halfwidth_full_stop("https://x\u{FF61}openai.azure.com/", "U+FF61")]
#[case::zero_width_space("https://x.open\u{200B}ai.azure.com/", "zero-width space")]
#[case::zero_width_non_joiner("https://x\u{200C}.openai.azure.com/", "U+200C")]
#[case::zero_width_joiner("https://x.openai.azure\u{200D}.com/", "U+200D")]
#[case::byte_order_mark("\u{FEFF}https://x.openai.azure.com/", "U+FEFF")]
#[case::cyrillic_a_homoglyph("https://x.open\u{0430}i.azure.com/", "U+0430")]
#[case::full_width_letter("https://x.\u{FF4F}penai.azure.com/", "U+FF4F")]
#[case::non_ascii_path("https://x.openai.azure.com/\u{e9}", "non-ASCII")]
#[case::one_slash("https:/x.openai.azure.com", "//")]
#[case::no_slash("https:x.openai.azure.com", "//")]
#[case::three_slashes("https:///x.openai.azure.com", "//")]
#[case::scheme_relative("//x.openai.azure.com", "no scheme")]
#[case::no_scheme("x.openai.azure.com", "no scheme")]
#[case::no_scheme_path("x.openai.azure.com/openai/v1", "no scheme")]
#[case::uppercase_everything("HTTPS://X.OPENAI.AZURE.COM/", "canonical")]
#[case::uppercase_scheme("HTTPS://x.openai.azure.com/", "canonical")]
#[case::empty_port("https://x.openai.azure.com:/", "canonical")]
#[case::default_port_with_leading_zero("https://x.openai.azure.com:0443/", "canonical")]
#[case::dot_segment_after_trailing_dot("https://x.openai.azure.com./.", "canonical")]
#[case::dot_dot_segment("https://x.openai.azure.com/a/../openai/v1", "canonical")]
#[case::encoded_dot_segment("https://x.openai.azure.com/%2e%2e/v1", "canonical")]
#[case::two_trailing_dots("https://x.openai.azure.com../", "more than one dot")]
#[case::empty_label("https://x..openai.azure.com/", "empty label")]
#[case::underscore_label("https://a_b.openai.azure.com/", "not a DNS label")]
#[case::star_label("https://a*b.openai.azure.com/", "not a DNS label")]
#[case::quote_label("https://a\"b.openai.azure.com/", "not a DNS label")]
#[case::leading_hyphen("https://-x.openai.azure.com/", "'-'")]
#[case::bad_punycode("https://xn--zz.openai.azure.com/", "not a valid URL")]
#[case::ipv6_loopback("https://[::1]/", "IP address")]
#[case::ipv6_mapped("https://[::ffff:127.0.0.1]/", "IP address")]
#[case::ipv4("https://127.0.0.1/", "IP address")]
#[case::ipv4_hex("https://0x7f.1/", "IP address")]
#[case::ipv4_short("https://127.1/", "IP address")]
#[case::ipv4_octal("https://0177.0.0.1/", "IP address")]
#[case::ipv4_decimal("https://2130706433/", "IP address")]
#[case::ipv4_too_many_parts("https://1.2.3.4.5/", "not a valid URL")]
#[case::tab_in_host("https://x.openai.\tazure.com/", "tab")]
#[case::newline_in_host("https://x.openai\n.azure.com/", "line break")]
#[case::trailing_newline("https://x.openai.azure.com/\n", "line break")]
#[case::carriage_return("https://x.openai.azure.com/\r", "line break")]
#[case::leading_space(" https://x.openai.azure.com/", "space")]
#[case::trailing_space("https://x.openai.azure.com/ ", "space")]
#[case::space_in_path("https://x.openai.azure.com/a b", "space")]
#[case::nul("https://x.openai.azure.com/\0", "control character U+0000")]
#[case::delete("https://x.openai.azure.com/\u{7f}", "control character U+007F")]
#[case::fragment("https://x.openai.azure.com#frag", "fragment")]
#[case::empty_fragment("https://x.openai.azure.com/#", "fragment")]
#[case::fragment_hiding_evil_host("https://evil.com#@x.openai.azure.com", "fragment")]
#[case::ftp("ftp://x.openai.azure.com", "scheme ftp")]
#[case::websocket("wss://x.openai.azure.com/", "scheme wss")]
#[case::file("file:///etc/hosts", "scheme file")]
#[case::empty_host("https://", "not a valid URL")]
#[case::bad_port("https://x.openai.azure.com:65536/", "not a valid URL")]
#[case::pipe_in_path("https://x.openai.azure.com/a|b", "percent-encoded")]
#[case::brace_in_path("https://x.openai.azure.com/{x}", "percent-encoded")]
#[case::bad_percent_escape("https://x.openai.azure.com/%zz", "two hex digits")]
#[case::in_cluster_with_userinfo("http://user@litellm:4000", "userinfo")]
#[case::in_cluster_with_backslash("http://litellm:4000\\@evil.com", "backslash")]
fn unclean_values_are_external_with_a_reason(#[case] raw: &str, #[case] reason: &str) {
    let verdict = classify_default(raw);
    assert_eq!(verdict.hosting, Hosting::External, "{raw:?}: {verdict:?}");
    assert_eq!(verdict.host, None, "{raw:?}: {verdict:?}");
    let problem = verdict.problem.unwrap_or_default();
    assert!(
        problem.contains(reason),
        "{raw:?}: problem {problem:?} should mention {reason:?}"
    );
}

/// Spellings that every modelled client (openai-python and openai-node, LangChain, LiteLLM; the
/// clients oracle of tests/clients measured them) resolves to the same host on port 443: DNS
/// names are case-insensitive and every parser lower-cases the host (RFC 3986 3.2.2), `:443` is
/// https's default port (RFC 9110 4.2.2), and a query right after the authority leaves the path
/// empty, which http(s) URLs serialise as `/` (WHATWG URL, httpx).
#[rstest]
#[case::uppercase_host("https://X.openai.azure.com/")]
#[case::uppercase_suffix("https://contoso.OPENAI.AZURE.COM/openai/v1")]
#[case::explicit_default_port("https://x.openai.azure.com:443/")]
#[case::explicit_default_port_bare("https://x.openai.azure.com:443")]
#[case::query_without_slash("https://x.openai.azure.com?api-version=2024-10-21")]
#[case::all_three("https://Contoso.openai.azure.com:443?api-version=2024-10-21")]
fn spellings_every_client_reads_as_the_same_azure_host(#[case] raw: &str) {
    let verdict = classify_default(raw);
    assert_eq!(verdict.hosting, Hosting::Azure, "{raw:?}: {verdict:?}");
    assert_eq!(verdict.problem, None, "{raw:?}: {verdict:?}");
}

/// A query right after the host no longer hides anything: the `@` in it is not userinfo to any
/// parser, so the host is `evil.com` and the verdict external.
#[test]
fn query_after_an_evil_host_is_that_host() {
    let verdict = classify_default("https://evil.com?@x.openai.azure.com/");
    assert_eq!(verdict.hosting, Hosting::External, "{verdict:?}");
    assert_eq!(verdict.host.as_deref(), Some("evil.com"), "{verdict:?}");
}

#[test]
fn long_label_under_allowed_suffix_is_refused() {
    let raw = format!("https://{}.openai.azure.com/", "a".repeat(64));
    let verdict = classify_default(&raw);
    assert_eq!(verdict.hosting, Hosting::External);
    assert!(
        verdict
            .problem
            .unwrap_or_default()
            .contains("longer than 63")
    );
}

#[rstest]
#[case::http("http://x.openai.azure.com/", "uses scheme http; https is required")]
#[case::http_bare("http://x.openai.azure.com", "uses scheme http; https is required")]
#[case::other_port("https://x.openai.azure.com:8443/", "has non-default port 8443")]
#[case::port_zero("https://x.openai.azure.com:0/", "has non-default port 0")]
#[case::http_and_port_names_scheme_first("http://x.openai.azure.com:8080/", "uses scheme http")]
fn allowed_host_over_wrong_transport_is_external(#[case] raw: &str, #[case] problem: &str) {
    let verdict = classify_default(raw);
    assert_eq!(verdict.hosting, Hosting::External, "{raw:?}");
    assert_eq!(
        verdict.host.as_deref(),
        Some("x.openai.azure.com"),
        "{raw:?}"
    );
    let actual = verdict.problem.unwrap_or_default();
    assert!(actual.starts_with(problem), "{raw:?}: {actual:?}");
}

/// Clean URLs whose host is simply not Azure: they keep their family, name their host, and only
/// carry a problem when scheme or port are off.
#[rstest]
#[case::suffix_then_evil(
    "https://x.openai.azure.com.evil.com/",
    Hosting::External,
    "x.openai.azure.com.evil.com",
    None
)]
#[case::bare_suffix(
    "https://openai.azure.com/",
    Hosting::External,
    "openai.azure.com",
    None
)]
#[case::glued_label(
    "https://evilopenai.azure.com/",
    Hosting::External,
    "evilopenai.azure.com",
    None
)]
#[case::other_azure_service(
    "https://x.blob.core.windows.net/",
    Hosting::External,
    "x.blob.core.windows.net",
    None
)]
#[case::query_mentions_azure(
    "https://evil.com/?@x.openai.azure.com/",
    Hosting::External,
    "evil.com",
    None
)]
#[case::path_mentions_azure(
    "https://evil.com/.x.openai.azure.com",
    Hosting::External,
    "evil.com",
    None
)]
#[case::two_label_service_form(
    "http://vllm.vllm:8000/v1",
    Hosting::External,
    "vllm.vllm",
    Some("uses scheme http")
)]
#[case::azure_typo_is_openai(
    "https://example-resource.azure.openai.com/",
    Hosting::OpenaiDirect,
    "example-resource.azure.openai.com",
    None
)]
#[case::openai(
    "https://api.openai.com/v1",
    Hosting::OpenaiDirect,
    "api.openai.com",
    None
)]
#[case::openai_eu(
    "https://eu.api.openai.com/v1",
    Hosting::OpenaiDirect,
    "eu.api.openai.com",
    None
)]
#[case::openai_us(
    "https://us.api.openai.com/v1",
    Hosting::OpenaiDirect,
    "us.api.openai.com",
    None
)]
#[case::openai_http(
    "http://api.openai.com/v1",
    Hosting::OpenaiDirect,
    "api.openai.com",
    Some("uses scheme http")
)]
#[case::openai_port(
    "https://api.openai.com:8443/v1",
    Hosting::OpenaiDirect,
    "api.openai.com",
    Some("has non-default port 8443")
)]
#[case::bedrock(
    "https://bedrock-runtime.us-east-1.amazonaws.com",
    Hosting::OtherCloud,
    "bedrock-runtime.us-east-1.amazonaws.com",
    None
)]
#[case::bedrock_fips(
    "https://bedrock-runtime-fips.us-east-1.amazonaws.com/",
    Hosting::OtherCloud,
    "bedrock-runtime-fips.us-east-1.amazonaws.com",
    None
)]
#[case::bedrock_control(
    "https://bedrock.eu-central-1.amazonaws.com/",
    Hosting::OtherCloud,
    "bedrock.eu-central-1.amazonaws.com",
    None
)]
#[case::bedrock_china(
    "https://bedrock-runtime.cn-north-1.amazonaws.com.cn/",
    Hosting::OtherCloud,
    "bedrock-runtime.cn-north-1.amazonaws.com.cn",
    None
)]
#[case::vertex(
    "https://us-central1-aiplatform.googleapis.com/v1/projects/p",
    Hosting::OtherCloud,
    "us-central1-aiplatform.googleapis.com",
    None
)]
#[case::vertex_global(
    "https://aiplatform.googleapis.com/v1",
    Hosting::OtherCloud,
    "aiplatform.googleapis.com",
    None
)]
#[case::s3_is_not_a_model(
    "https://s3.us-east-1.amazonaws.com/",
    Hosting::External,
    "s3.us-east-1.amazonaws.com",
    None
)]
#[case::in_cluster_fqdn(
    "http://vllm.vllm.svc.cluster.local:8000/v1",
    Hosting::InCluster,
    "vllm.vllm.svc.cluster.local",
    None
)]
#[case::in_cluster_fqdn_hyphen(
    "http://vllm-svc.vllm.svc.cluster.local:8000/v1",
    Hosting::InCluster,
    "vllm-svc.vllm.svc.cluster.local",
    None
)]
#[case::in_cluster_https(
    "https://vllm.vllm.svc.cluster.local/v1",
    Hosting::InCluster,
    "vllm.vllm.svc.cluster.local",
    None
)]
#[case::in_cluster_single_label("http://litellm:4000", Hosting::InCluster, "litellm", None)]
#[case::in_cluster_svc("http://ollama.svc", Hosting::InCluster, "ollama.svc", None)]
#[case::in_cluster_svc_ns(
    "http://ollama.models.svc:11434/api",
    Hosting::InCluster,
    "ollama.models.svc",
    None
)]
#[case::localhost("http://localhost:8080/v1", Hosting::InCluster, "localhost", None)]
#[case::cluster_local_lookalike(
    "https://vllm.svc.cluster.local.evil.com/",
    Hosting::External,
    "vllm.svc.cluster.local.evil.com",
    None
)]
fn clean_non_azure_urls_keep_their_family(
    #[case] raw: &str,
    #[case] hosting: Hosting,
    #[case] host: &str,
    #[case] problem: Option<&str>,
) {
    let verdict = classify_default(raw);
    assert_eq!(verdict.hosting, hosting, "{raw:?}: {verdict:?}");
    assert_eq!(verdict.host.as_deref(), Some(host), "{raw:?}");
    match problem {
        None => assert_eq!(verdict.problem, None, "{raw:?}"),
        Some(expected) => {
            let actual = verdict.problem.unwrap_or_default();
            assert!(actual.starts_with(expected), "{raw:?}: {actual:?}");
        }
    }
}

#[test]
fn canonical_form_is_shown_to_the_user() {
    let verdict = classify_default("HTTPS://X.OPENAI.AZURE.COM/v1");
    assert_eq!(
        verdict.problem.as_deref(),
        Some("is not in canonical form (https://x.openai.azure.com/v1)")
    );
}

#[test]
fn classify_never_returns_unresolved() {
    for raw in [
        "",
        "https://x.openai.azure.com/",
        "secretKeyRef",
        "${OPENAI_BASE_URL}",
        "http://vllm",
    ] {
        assert_ne!(
            classify_default(raw).hosting,
            Hosting::Unresolved,
            "{raw:?}"
        );
    }
}

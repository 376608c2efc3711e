//! Any UTF-8 string as an endpoint value, classified with the default policy's allowed hosts and
//! https required.
//!
//! Besides "never panics", the invariant of design.md ("a value that is not a clean URL is never
//! `azure`"), checked here with plain string operations rather than a URL parser: when the verdict
//! is `azure`, the input is printable ASCII with no `\` or whitespace, starts with `https://`, its
//! authority (up to the next `/`, `?` or the end) has no `@` or `%`, and its host (the authority
//! minus an `https` default port `:443` and one trailing dot, lower-cased: the spellings every
//! client reads as the same host, issue 9) is a DNS name of letters, digits and `-` ending in `.`
//! + one of the allowed suffixes, and is the host reported.
//!
//! `@` and `%` are allowed after the authority on purpose: `/openai/deployments/my%20model` is a
//! clean Azure URL (tests/endpoint_adversarial.rs `encoded_path`), and once `\` is refused every
//! client ends the authority at the first `/` or `?`, so neither can move the host.

#![no_main]

use std::sync::LazyLock;

use hostguard_engine::endpoint::{EndpointRules, HostPattern, Hosting, KnownHosts, classify};
use hostguard_engine::policy::AZURE_OPENAI_HOSTS;
use libfuzzer_sys::fuzz_target;

static PATTERNS: LazyLock<Vec<HostPattern>> = LazyLock::new(|| {
    AZURE_OPENAI_HOSTS
        .iter()
        .map(|p| HostPattern::parse(p).expect("the default patterns are valid"))
        .collect()
});

/// What detection takes for a mention of a model host, under the default policy.
static KNOWN: LazyLock<KnownHosts> = LazyLock::new(|| KnownHosts::new(PATTERNS.clone()));

/// `openai.azure.com` for `*.openai.azure.com`: what an Azure host must end with, after a dot.
static SUFFIXES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    AZURE_OPENAI_HOSTS
        .iter()
        .map(|p| {
            p.strip_prefix("*.")
                .expect("the default patterns are wildcards")
        })
        .collect()
});

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let rules = EndpointRules {
        allowed_hosts: &PATTERNS,
        require_https: true,
    };
    let verdict = classify(raw, &rules);
    let mentioned = KNOWN.mentioned_in(raw);
    assert_ne!(verdict.hosting, Hosting::Unresolved, "{raw:?}");
    if verdict.hosting != Hosting::Azure {
        return;
    }
    // An allowed host ends with an allowed suffix, so detection must have seen it.
    assert!(mentioned, "{raw:?}: azure but not taken for a model host");

    assert!(verdict.problem.is_none(), "{raw:?}: azure with a problem");
    assert!(raw.is_ascii(), "{raw:?}: azure but not ASCII");
    assert!(!raw.contains('\\'), "{raw:?}: azure but has a backslash");
    assert!(
        !raw.chars().any(|c| c.is_whitespace() || c.is_control()),
        "{raw:?}: azure but has whitespace or a control character"
    );
    let rest = raw
        .strip_prefix("https://")
        .unwrap_or_else(|| panic!("{raw:?}: azure but does not start with https://"));
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    for forbidden in ['@', '%'] {
        assert!(
            !authority.contains(forbidden),
            "{raw:?}: azure but the authority has {forbidden:?}"
        );
    }
    let authority = authority.strip_suffix(":443").unwrap_or(authority);
    let host = authority
        .strip_suffix('.')
        .unwrap_or(authority)
        .to_ascii_lowercase();
    let host = host.as_str();
    assert!(
        SUFFIXES.iter().any(|suffix| host
            .strip_suffix(suffix)
            .is_some_and(|front| front.len() > 1 && front.ends_with('.'))),
        "{raw:?}: azure but host {host:?} is not under an allowed suffix"
    );
    assert!(
        host.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'),
        "{raw:?}: azure but host {host:?} is not a lower-case DNS name"
    );
    assert_eq!(
        verdict.host.as_deref(),
        Some(host),
        "{raw:?}: wrong host reported"
    );
});

//! Strict classification of endpoint URLs into hosting families (Azure, OpenAI direct, other
//! clouds, in-cluster, external), and the host patterns a HostingPolicy allows.
//!
//! It is strict because the value it judges is later read by a different URL parser: Python's
//! httpx and urllib, Node and Go clients disagree with the WHATWG parser (the `url` crate) about
//! backslashes, `@`, percent-encoded dots and Unicode dots. A string such as
//! `https://x.openai.azure.com\@evil.com/` can name an Azure host to one parser and `evil.com` to
//! another. So only a URL that every parser reads the same way can be `azure`: the input must be
//! plain printable ASCII, free of userinfo and IP literals, parse without a single syntax
//! violation, and already be in the parser's canonical form. Anything else is `external` with a
//! `problem` that says why, and is never `azure`.
//!
//! Decisions worth knowing:
//! - A query string is allowed (the Azure OpenAI API needs `?api-version=`); a fragment is
//!   refused, since it is never sent and only hides text from readers.
//! - `localhost` is single-label and so in-cluster: from a pod it is the pod itself.
//! - Punycode labels (`xn--80ak6aa92e.openai.azure.com`) are clean ASCII and match `*.` patterns:
//!   the label in front of an Azure suffix is a resource name the customer registered under
//!   Azure's own domain, so whatever it looks like when decoded, the traffic goes to Azure.
//! - [`Hosting::Unresolved`] is never returned by [`classify`]; callers use it for values they
//!   cannot see, such as those read from Secrets.

mod known;
mod pattern;

use std::cell::Cell;
use std::fmt;

use url::{Host, SyntaxViolation, Url};

pub use known::{IN_CLUSTER_HOSTS, OPENAI_DIRECT_HOSTS, OPENAI_DOMAIN, OTHER_CLOUD_HOSTS};
pub use pattern::{HOST_PATTERN_MAX_LEN, HOST_PATTERN_REGEX, HostPattern, PatternError};

/// What an endpoint's host is.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Hosting {
    /// A host allowed by the HostingPolicy (by default Azure OpenAI and Azure AI Services), reached
    /// over https on the default port.
    Azure,
    /// OpenAI's own API (api.openai.com and anything else under openai.com).
    OpenaiDirect,
    /// Another cloud's model service (Amazon Bedrock, Google Vertex AI).
    OtherCloud,
    /// A Kubernetes service inside the cluster.
    InCluster,
    /// Anything else, including every value that is not a clean URL.
    External,
    /// The value could not be read (for example it comes from a Secret).
    Unresolved,
    /// The real clients disagree about where the traffic goes: some send it to an allowed
    /// endpoint, others to a default that is not (an OpenAI key beside an Azure-only endpoint
    /// variable). Never returned by [`classify`]; detection marks such endpoints.
    Ambiguous,
}

impl Hosting {
    /// The same string serde writes: `azure`, `openai-direct`, `other-cloud`, `in-cluster`,
    /// `external`, `unresolved`, `ambiguous`.
    pub fn as_str(self) -> &'static str {
        match self {
            Hosting::Azure => "azure",
            Hosting::OpenaiDirect => "openai-direct",
            Hosting::OtherCloud => "other-cloud",
            Hosting::InCluster => "in-cluster",
            Hosting::External => "external",
            Hosting::Unresolved => "unresolved",
            Hosting::Ambiguous => "ambiguous",
        }
    }
}

impl fmt::Display for Hosting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the policy says about endpoints, borrowed from a compiled policy.
#[derive(Debug, Clone, Copy)]
pub struct EndpointRules<'a> {
    pub allowed_hosts: &'a [HostPattern],
    pub require_https: bool,
}

/// The verdict on one endpoint value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub hosting: Hosting,
    /// The host as parsed (lower-case, trailing dot stripped) when the URL was clean enough to name
    /// one; `None` for every value refused before the host could be trusted.
    pub host: Option<String>,
    /// Why the value is not a clean allowed URL, written for a user to read after the quoted value
    /// (e.g. "has userinfo (user@host)"). `None` when clean.
    pub problem: Option<String>,
}

/// Classifies a raw endpoint value. Never returns [`Hosting::Unresolved`].
///
/// Order: refuse anything that is not a clean URL (→ external, host `None`); then in-cluster by
/// host, where scheme and port are not policed; then OpenAI direct, other clouds, the policy's
/// allowed hosts (→ azure only over an allowed scheme on the default port, else external), and
/// external. OpenAI-direct, other-cloud and external keep their family when scheme or port are
/// off but report it in `problem`.
pub fn classify(raw: &str, rules: &EndpointRules<'_>) -> Classification {
    match parse(raw) {
        Ok(parsed) => classify_parsed(&parsed, rules),
        Err(refusal) => refusal,
    }
}

/// An endpoint value that is a clean URL with a plain DNS host: what [`classify`] works out
/// before it looks at any rule.
#[derive(Debug)]
struct ParsedEndpoint {
    url: Url,
    host: String,
}

/// The rule-free half of [`classify`]: the value parsed, or its refusal (external, no host).
fn parse(raw: &str) -> Result<ParsedEndpoint, Classification> {
    let url = parse_strict(raw).map_err(refused)?;
    let host = clean_host(&url).map_err(refused)?.to_owned();
    Ok(ParsedEndpoint { url, host })
}

/// The half of [`classify`] that applies the rules to a parsed value.
fn classify_parsed(parsed: &ParsedEndpoint, rules: &EndpointRules<'_>) -> Classification {
    let (url, host) = (&parsed.url, parsed.host.as_str());
    let named = |hosting, problem| Classification {
        hosting,
        host: Some(host.to_owned()),
        problem,
    };

    if is_in_cluster(host) {
        return named(Hosting::InCluster, None);
    }
    let transport = transport_problem(url, rules.require_https);
    if is_openai(host) {
        named(Hosting::OpenaiDirect, transport)
    } else if built_in::OTHER_CLOUD.any_matches(host) {
        named(Hosting::OtherCloud, transport)
    } else if rules.allowed_hosts.iter().any(|p| p.matches(host)) {
        match transport {
            None => named(Hosting::Azure, None),
            Some(problem) => named(Hosting::External, Some(problem)),
        }
    } else {
        named(Hosting::External, transport)
    }
}

/// [`classify`] for the endpoints of one decision, each value parsed once however many times it
/// is classified: once under each policy that governs it and once for the findings, and parsing
/// (the URL parser, the canonical-form check) is most of what classifying costs.
#[derive(Debug, Default)]
pub struct Classifier {
    parsed: std::cell::RefCell<ParsedValues>,
}

/// The values parsed so far, by value (hashed with a seed of this process's: the values are the
/// workload author's).
type ParsedValues = std::collections::HashMap<
    String,
    Result<ParsedEndpoint, Classification>,
    foldhash::fast::RandomState,
>;

impl Classifier {
    /// What [`classify`] gives for `raw` under `rules`.
    pub fn classify(&self, raw: &str, rules: &EndpointRules<'_>) -> Classification {
        let mut parsed = self.parsed.borrow_mut();
        if !parsed.contains_key(raw) {
            parsed.insert(raw.to_owned(), parse(raw));
        }
        match &parsed[raw] {
            Ok(parsed) => classify_parsed(parsed, rules),
            Err(refusal) => refusal.clone(),
        }
    }
}

/// The hosts that count as model hosts in detection: every policy's allowed hosts, and the
/// needles a mention of one of them, or of OpenAI's own, is found by.
///
/// Built once per policy set, because every value of every container is scanned on every review.
/// A needle that contains another needle is dropped (`openai.azure.com` holds `openai.azure`):
/// a text that has it has the shorter one too, so the answer is the same with fewer scans.
/// (An Aho-Corasick automaton over all the needles was tried and cost as much as the scans it
/// replaced, on values this short.)
#[derive(Debug, Clone)]
pub struct KnownHosts {
    patterns: Vec<HostPattern>,
    needles: Vec<String>,
    /// The needles by their first byte: bit `i` of `starts[b]` is set when needle `i` starts
    /// with `b` in either case. A text is then scanned once, not once per needle (each scan was
    /// a `memchr` set up for a value of a few dozen bytes). None past 64 needles, which are
    /// scanned one by one.
    starts: Option<Box<[u64; 256]>>,
}

/// What a mention of a model host looks like besides the allowed patterns' suffixes.
const OPENAI_MENTIONS: [&str; 2] = ["openai.com", "openai.azure"];

impl KnownHosts {
    /// The hosts of `patterns`, each kept once, in the order first given.
    pub fn new(given: Vec<HostPattern>) -> Self {
        let mut patterns: Vec<HostPattern> = Vec::new();
        for p in given {
            if !patterns.contains(&p) {
                patterns.push(p);
            }
        }
        let needles = OPENAI_MENTIONS
            .into_iter()
            .chain(patterns.iter().map(HostPattern::suffix));
        let needles = minimal_needles(needles);
        KnownHosts {
            starts: first_bytes(&needles),
            needles,
            patterns,
        }
    }

    /// The allowed host patterns, each once.
    pub fn patterns(&self) -> &[HostPattern] {
        &self.patterns
    }

    /// True when `text` mentions a host that belongs to OpenAI or to one of the allowed
    /// patterns; used to decide whether a URL found in container command/args is a model
    /// endpoint.
    ///
    /// Textual and loose on purpose: a case-insensitive substring match on `openai.com`,
    /// `openai.azure` and each allowed pattern's suffix, after folding the look-alikes an
    /// attacker would use to dodge it (Unicode full stops, `%2e`, full-width letters,
    /// zero-width characters). Whatever it picks up is then classified strictly by
    /// [`classify`].
    pub fn mentioned_in(&self, text: &str) -> bool {
        let mentions = |haystack: &str| match &self.starts {
            Some(starts) => mentions_any(haystack.as_bytes(), &self.needles, starts),
            None => self
                .needles
                .iter()
                .any(|needle| contains_ignore_ascii_case(haystack, needle)),
        };
        if text.is_ascii() && !text.contains('%') {
            mentions(text)
        } else {
            mentions(&fold_lookalikes(text))
        }
    }
}

/// The needles, ASCII-lowercased, each once, without one that contains another (which would
/// only be found where the other is) and without the empty one (found nowhere by
/// [`contains_ignore_ascii_case`]).
fn minimal_needles<'a>(needles: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut all: Vec<String> = needles
        .into_iter()
        .filter(|n| !n.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    all.sort_by_key(String::len);
    let mut kept: Vec<String> = Vec::new();
    for needle in all {
        if !kept.iter().any(|k| needle.contains(k.as_str())) {
            kept.push(needle);
        }
    }
    kept
}

/// [`KnownHosts::starts`] of `needles` (lower case, none empty).
fn first_bytes(needles: &[String]) -> Option<Box<[u64; 256]>> {
    if needles.len() > 64 {
        return None;
    }
    let mut starts = Box::new([0u64; 256]);
    for (i, needle) in needles.iter().enumerate() {
        let first = *needle.as_bytes().first()?;
        for b in [first.to_ascii_lowercase(), first.to_ascii_uppercase()] {
            starts[usize::from(b)] |= 1 << i;
        }
    }
    Some(starts)
}

/// Whether some needle is in `haystack`, ASCII case aside, as
/// [`contains_ignore_ascii_case`] of each finds it: one pass over the haystack, testing at each
/// byte the needles that start with it.
fn mentions_any(haystack: &[u8], needles: &[String], starts: &[u64; 256]) -> bool {
    for (at, &b) in haystack.iter().enumerate() {
        let mut candidates = starts[usize::from(b)];
        while candidates != 0 {
            let i = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            let needle = needles[i].as_bytes();
            if haystack
                .get(at..at + needle.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(needle))
            {
                return true;
            }
        }
    }
    false
}

impl Default for KnownHosts {
    fn default() -> Self {
        KnownHosts::new(Vec::new())
    }
}

fn refused(problem: String) -> Classification {
    Classification {
        hosting: Hosting::External,
        host: None,
        problem: Some(problem),
    }
}

/// Parses `raw` and returns the URL only if every parser would read it the same way.
fn parse_strict(raw: &str) -> Result<Url, String> {
    if raw.is_empty() {
        return Err("is empty".to_owned());
    }
    // Characters first: the WHATWG parser silently drops tabs and newlines, trims spaces, turns
    // `\` into `/` and maps Unicode dots to `.`, while other clients do none of that.
    if let Some(problem) = raw.chars().find_map(char_problem) {
        return Err(problem);
    }
    // The authority as other parsers see it: up to the first `/`, `?` or `#` (backslashes are
    // already refused). `@` there means userinfo to someone; `%` means a host that only becomes
    // a name after decoding, which not every client does.
    if let Some((_, rest)) = raw.split_once("://") {
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if authority.contains('@') {
            return Err(USERINFO.to_owned());
        }
        if authority.contains('%') {
            return Err(
                "has a percent sign in the host (percent-encoding is not allowed there)".to_owned(),
            );
        }
    }

    let violation = Cell::new(None);
    let record = |v: SyntaxViolation| {
        if violation.get().is_none() {
            violation.set(Some(v));
        }
    };
    let parsed = Url::options()
        .syntax_violation_callback(Some(&record))
        .parse(raw);
    let url = match parsed {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            return Err("has no scheme; write an absolute URL such as https://host/".to_owned());
        }
        Err(e) => return Err(format!("is not a valid URL ({e})")),
    };
    if let Some(v) = violation.get() {
        return Err(violation_problem(v));
    }

    let scheme = url.scheme();
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "uses scheme {scheme}; only http and https are allowed"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(USERINFO.to_owned());
    }
    match url.host() {
        None => return Err("has no host".to_owned()),
        Some(Host::Ipv4(ip)) => {
            return Err(format!("has an IP address as host ({ip}); use a DNS name"));
        }
        Some(Host::Ipv6(ip)) => {
            return Err(format!(
                "has an IP address as host ([{ip}]); use a DNS name"
            ));
        }
        Some(Host::Domain(_)) => {}
    }
    if url.fragment().is_some() {
        return Err("has a fragment (#...); remove it".to_owned());
    }
    if !is_canonical(&url, raw) {
        return Err(format!("is not in canonical form ({})", url.as_str()));
    }
    Ok(url)
}

const USERINFO: &str = "has userinfo (user@host)";

fn char_problem(c: char) -> Option<String> {
    let problem = match c {
        ' ' => "contains a space".to_owned(),
        '\t' => "contains a tab".to_owned(),
        '\n' | '\r' => "contains a line break".to_owned(),
        '\\' => "contains a backslash".to_owned(),
        c if c.is_ascii_control() => format!("contains control character U+{:04X}", u32::from(c)),
        c if !c.is_ascii() => match lookalike_name(c) {
            Some(name) => format!(
                "contains non-ASCII character U+{:04X} ({name})",
                u32::from(c)
            ),
            None => format!("contains non-ASCII character U+{:04X}", u32::from(c)),
        },
        _ => return None,
    };
    Some(problem)
}

/// Names for the characters most often used to smuggle a host past a textual check.
fn lookalike_name(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{3002}' => "ideographic full stop",
        '\u{FF0E}' => "full-width full stop",
        '\u{FF61}' => "halfwidth ideographic full stop",
        '\u{200B}' => "zero-width space",
        '\u{200C}' => "zero-width non-joiner",
        '\u{200D}' => "zero-width joiner",
        '\u{2060}' => "word joiner",
        '\u{FEFF}' => "zero-width no-break space",
        '\u{00AD}' => "soft hyphen",
        '\u{FF01}'..='\u{FF5E}' => "full-width form",
        _ => return None,
    })
}

fn violation_problem(v: SyntaxViolation) -> String {
    match v {
        SyntaxViolation::Backslash => "contains a backslash".to_owned(),
        SyntaxViolation::EmbeddedCredentials | SyntaxViolation::UnencodedAtSign => {
            USERINFO.to_owned()
        }
        SyntaxViolation::ExpectedDoubleSlash => "does not have // after the scheme".to_owned(),
        SyntaxViolation::PercentDecode => {
            "has a % that is not followed by two hex digits".to_owned()
        }
        SyntaxViolation::NonUrlCodePoint => {
            "contains a character that must be percent-encoded in a URL".to_owned()
        }
        other => format!("is not a clean URL ({other})"),
    }
}

/// The canonical serialisation must equal the input, up to the spellings that every client
/// resolves to the same host and port (issue 9, measured against openai-python, openai-node,
/// LangChain and LiteLLM):
/// - a bare host may omit the `/` the parser adds (`https://x.openai.azure.com`);
/// - host letters may be upper-case (DNS names are case-insensitive; every parser lower-cases);
/// - `https` may name its default port, exactly `:443`;
/// - a query may follow the host directly (`https://x.openai.azure.com?api-version=...`: the
///   WHATWG parser, httpx and Node all read the path as `/`).
///
/// Every other difference (a default port with a leading zero, `http` with `:80`, dot
/// segments, encodings) still refuses the value.
fn is_canonical(url: &Url, raw: &str) -> bool {
    let canonical = url.as_str();
    let respelled = accepted_respelling(url, raw);
    let raw = respelled.as_deref().unwrap_or(raw);
    canonical == raw
        || (url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none()
            && canonical.strip_suffix('/') == Some(raw))
}

/// `raw` with its authority lower-cased, an `https` `:443` dropped and a `/` put between the
/// host and a query that follows it directly; `None` when none of these applies.
fn accepted_respelling(url: &Url, raw: &str) -> Option<String> {
    let (scheme, rest) = raw.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    // Already in that form (the common case, for every endpoint of every review): no copy.
    let respelled = authority.bytes().any(|b| b.is_ascii_uppercase())
        || (url.scheme() == "https" && authority.ends_with(":443"))
        || tail.starts_with('?');
    if !respelled {
        return None;
    }
    let mut host = authority.to_ascii_lowercase();
    if url.scheme() == "https"
        && let Some(bare) = host.strip_suffix(":443")
    {
        host = bare.to_owned();
    }
    let slash = if tail.starts_with('?') { "/" } else { "" };
    let out = format!("{scheme}://{host}{slash}{tail}");
    (out != raw).then_some(out)
}

/// The parsed domain with one trailing dot stripped, checked to be a plain DNS name: labels of
/// letters, digits and hyphens (the WHATWG parser also lets through `_`, `*`, `!`, `"` and more).
fn clean_host(url: &Url) -> Result<&str, String> {
    let parsed = url.host_str().unwrap_or_default();
    let host = parsed.strip_suffix('.').unwrap_or(parsed);
    if host.ends_with('.') {
        return Err(format!("has host {parsed:?} ending in more than one dot"));
    }
    if host.len() > HOST_PATTERN_MAX_LEN {
        return Err(format!(
            "has a host of {} characters; a host name has at most 253",
            host.len()
        ));
    }
    for label in host.split('.') {
        if label.is_empty() {
            return Err(format!("has host {parsed:?} with an empty label"));
        }
        if label.len() > 63 {
            return Err(format!(
                "has host label {label:?} longer than 63 characters"
            ));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "has host label {label:?} that is not a DNS label (letters, digits and '-' only)"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "has host label {label:?} that starts or ends with '-'"
            ));
        }
    }
    Ok(host)
}

/// The built-in families' host lists, compiled once (see [`pattern::HostList`]).
mod built_in {
    use std::sync::LazyLock;

    use super::pattern::HostList;
    use super::{IN_CLUSTER_HOSTS, OPENAI_DIRECT_HOSTS, OTHER_CLOUD_HOSTS};

    pub(super) static OTHER_CLOUD: LazyLock<HostList> =
        LazyLock::new(|| HostList::new(OTHER_CLOUD_HOSTS));
    pub(super) static IN_CLUSTER: LazyLock<HostList> =
        LazyLock::new(|| HostList::new(IN_CLUSTER_HOSTS));
    pub(super) static OPENAI_DIRECT: LazyLock<HostList> =
        LazyLock::new(|| HostList::new(OPENAI_DIRECT_HOSTS));
}

fn is_in_cluster(host: &str) -> bool {
    !host.contains('.') || built_in::IN_CLUSTER.any_matches(host)
}

fn is_openai(host: &str) -> bool {
    built_in::OPENAI_DIRECT.any_matches(host)
        || host == OPENAI_DOMAIN
        || host
            .strip_suffix(OPENAI_DOMAIN)
            .is_some_and(|front| front.ends_with('.'))
}

/// What is wrong with scheme and port for a host outside the cluster, if anything. An explicit
/// default port never gets here: it is not canonical.
fn transport_problem(url: &Url, require_https: bool) -> Option<String> {
    if require_https && url.scheme() != "https" {
        return Some(format!("uses scheme {}; https is required", url.scheme()));
    }
    url.port()
        .map(|port| format!("has non-default port {port}"))
}

/// Whether `needle` occurs in `haystack`, ASCII letter case aside. Every value of every
/// container is checked against every allowed host, so only the places where the needle's first
/// byte occurs (in either case, found by a vectorised search) are compared.
fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    let Some(&first) = needle.first() else {
        return false;
    };
    let Some(last_start) = haystack.len().checked_sub(needle.len()) else {
        return false;
    };
    let starts = &haystack[..=last_start];
    let (lower, upper) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    memchr::memchr2_iter(lower, upper, starts)
        .any(|i| haystack[i..i + needle.len()].eq_ignore_ascii_case(needle))
}

/// Folds the look-alikes of `.` and of ASCII letters to ASCII and drops invisible characters, for
/// the loose textual check only.
fn fold_lookalikes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{3002}' | '\u{FF0E}' | '\u{FF61}' => out.push('.'),
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}' => {}
            '\u{FF01}'..='\u{FF5E}' => out.push(char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c)),
            '%' if chars.peek() == Some(&'2') => {
                chars.next();
                match chars.next() {
                    Some('e' | 'E') => out.push('.'),
                    Some(other) => out.extend(['%', '2', other]),
                    None => out.push_str("%2"),
                }
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// Against the definition (some window of the needle's length equals it, ASCII case aside)
    /// over every split of texts where the needle sits at the start, the end, in the middle, in
    /// other case, cut short, or next to multi-byte characters.
    #[test]
    fn case_blind_search_finds_exactly_the_windows() {
        let by_definition = |h: &str, n: &str| {
            !n.is_empty()
                && h.as_bytes()
                    .windows(n.len())
                    .any(|w| w.eq_ignore_ascii_case(n.as_bytes()))
        };
        let needles = ["openai.com", ".openai.azure.com", "o", "7x", "é.com"];
        let minimal = minimal_needles(needles.iter().copied().chain(["OpenAI.com", ""]));
        // Every other needle holds an `o`; the empty one is found nowhere.
        assert_eq!(
            minimal,
            ["o", "7x"],
            "each needle that holds another is dropped"
        );
        let texts = [
            "",
            "openai.com",
            "OPENAI.COM",
            "https://api.OpenAI.com/v1",
            "openai.co",
            "xx.openai.azure.comopenai.azure.co",
            "ooooopenai.coo",
            "é.COMé",
            "\u{212A}openai.com",
            "7X7x",
        ];
        let starts = first_bytes(&minimal).expect("two needles");
        for needle in needles {
            for text in texts {
                for cut in (0..=text.len()).filter(|&i| text.is_char_boundary(i)) {
                    let hay = &text[cut..];
                    assert_eq!(
                        mentions_any(hay.as_bytes(), &minimal, &starts),
                        needles.iter().any(|n| by_definition(hay, n)),
                        "one pass for any of {needles:?} in {hay:?}"
                    );
                    assert_eq!(
                        contains_ignore_ascii_case(hay, needle),
                        by_definition(hay, needle),
                        "{needle:?} in {hay:?}"
                    );
                    assert_eq!(
                        minimal.iter().any(|n| contains_ignore_ascii_case(hay, n)),
                        needles.iter().any(|n| by_definition(hay, n)),
                        "any of {needles:?} in {hay:?}"
                    );
                }
            }
        }
    }

    /// A policy set's hosts are found in a text where some of their needles is, by the one
    /// pass (up to 64 needles) and by the scan per needle (more), alike.
    #[test]
    fn known_hosts_are_mentioned_where_a_needle_is() {
        let few = default_patterns();
        let many: Vec<HostPattern> = (0..70)
            .map(|i| HostPattern::parse(&format!("*.gw{i}.contoso{i}.com")).expect("valid"))
            .chain(default_patterns())
            .collect();
        let texts = [
            "",
            "https://contoso.openai.azure.com/openai/v1",
            "HTTPS://X.COGNITIVESERVICES.AZURE.COM",
            "see api.openai.com for details",
            "https://gw69.contoso69.com/v1",
            "https://gw7.contoso70.com/v1",
            "gw1.contoso1.co",
            "services.ai.azure.co",
            "xservices.ai.azure.comx",
            "openai.azur",
            "redis://cache:6379",
            "4096",
        ];
        for (patterns, one_pass) in [(few, true), (many, false)] {
            let needles: Vec<String> = OPENAI_MENTIONS
                .iter()
                .copied()
                .chain(patterns.iter().map(HostPattern::suffix))
                .map(str::to_ascii_lowercase)
                .collect();
            let hosts = KnownHosts::new(patterns);
            assert_eq!(
                hosts.starts.is_some(),
                one_pass,
                "{} needles",
                hosts.needles.len()
            );
            for text in texts {
                let by_definition = needles.iter().any(|n| {
                    text.as_bytes()
                        .windows(n.len())
                        .any(|w| w.eq_ignore_ascii_case(n.as_bytes()))
                });
                assert_eq!(hosts.mentioned_in(text), by_definition, "{text:?}");
            }
        }
    }

    /// One classifier asked about the same values again, under other rules and in another
    /// order, answers as `classify` does each time: a parse it keeps never carries one rule's
    /// verdict over to another.
    #[test]
    fn a_classifier_answers_as_classify_under_every_rule() {
        let azure = default_patterns();
        let gateway = vec![HostPattern::parse("gw.contoso.com").expect("valid pattern")];
        let rule_sets = [
            EndpointRules {
                allowed_hosts: &azure,
                require_https: true,
            },
            EndpointRules {
                allowed_hosts: &gateway,
                require_https: false,
            },
            EndpointRules {
                allowed_hosts: &[],
                require_https: true,
            },
        ];
        let values = [
            "https://contoso.openai.azure.com/openai/v1",
            "http://contoso.openai.azure.com/openai/v1",
            "https://gw.contoso.com/v1",
            "http://gw.contoso.com/v1",
            "https://api.openai.com/v1",
            "https://bedrock-runtime.us-east-1.amazonaws.com",
            "http://vllm.ai.svc.cluster.local:8000/v1",
            "https://user@contoso.openai.azure.com/",
            "contoso.openai.azure.com",
            "",
            "https://CONTOSO.openai.azure.com:443",
        ];
        let classifier = Classifier::default();
        for round in 0..2 {
            for (r, rules) in rule_sets.iter().enumerate() {
                for value in values.iter().rev().skip(round) {
                    assert_eq!(
                        classifier.classify(value, rules),
                        classify(value, rules),
                        "{value:?} under rule set {r}, round {round}"
                    );
                }
            }
        }
    }

    fn default_patterns() -> Vec<HostPattern> {
        [
            "*.openai.azure.com",
            "*.cognitiveservices.azure.com",
            "*.services.ai.azure.com",
        ]
        .into_iter()
        .map(|p| HostPattern::parse(p).expect("valid default pattern"))
        .collect()
    }

    #[rstest]
    #[case(Hosting::Azure, "azure")]
    #[case(Hosting::OpenaiDirect, "openai-direct")]
    #[case(Hosting::OtherCloud, "other-cloud")]
    #[case(Hosting::InCluster, "in-cluster")]
    #[case(Hosting::External, "external")]
    #[case(Hosting::Unresolved, "unresolved")]
    fn hosting_strings_match_serde(#[case] hosting: Hosting, #[case] text: &str) {
        assert_eq!(hosting.as_str(), text);
        assert_eq!(hosting.to_string(), text);
        assert_eq!(
            serde_json::to_string(&hosting).ok(),
            Some(format!("\"{text}\""))
        );
        assert_eq!(
            serde_json::from_str::<Hosting>(&format!("\"{text}\"")).ok(),
            Some(hosting)
        );
    }

    #[test]
    fn builtin_hosts_are_well_formed_patterns() {
        // With the placeholder filled in, every built-in entry must be a pattern a policy could
        // have written, so the built-ins obey the same rules as user patterns.
        // (IN_CLUSTER_HOSTS is exempt: "*.svc" is deliberately broader than a policy may be.)
        for entry in OPENAI_DIRECT_HOSTS.iter().chain(OTHER_CLOUD_HOSTS) {
            let concrete = entry.replace("{region}", "us-east-1");
            assert!(
                HostPattern::parse(&concrete).is_ok(),
                "built-in host {entry:?} is malformed"
            );
        }
    }

    #[rstest]
    #[case::bedrock("bedrock-runtime.us-east-1.amazonaws.com", true)]
    #[case::bedrock_fips("bedrock-runtime-fips.us-gov-west-1.amazonaws.com", true)]
    #[case::bedrock_control("bedrock.eu-west-1.amazonaws.com", true)]
    #[case::bedrock_china("bedrock-runtime.cn-north-1.amazonaws.com.cn", true)]
    #[case::bedrock_vpce("vpce-0a1b-c2d3.bedrock-runtime.us-east-1.vpce.amazonaws.com", true)]
    #[case::vertex_regional("europe-west4-aiplatform.googleapis.com", true)]
    #[case::vertex_global("aiplatform.googleapis.com", true)]
    #[case::s3("s3.us-east-1.amazonaws.com", false)]
    #[case::bedrock_no_region("bedrock-runtime.amazonaws.com", false)]
    #[case::bedrock_lookalike("bedrock-runtime.us-east-1.amazonaws.com.evil.com", false)]
    #[case::vertex_lookalike("evil-aiplatform.googleapis.com.evil.com", false)]
    fn other_cloud_hosts(#[case] host: &str, #[case] expected: bool) {
        assert_eq!(
            OTHER_CLOUD_HOSTS
                .iter()
                .any(|p| super::pattern::host_matches(p, host)),
            expected,
            "{host}"
        );
        assert_eq!(built_in::OTHER_CLOUD.any_matches(host), expected, "{host}");
    }

    #[rstest]
    #[case::api("api.openai.com", true)]
    #[case::regional("eu.api.openai.com", true)]
    #[case::typo_domain("example-resource.azure.openai.com", true)]
    #[case::apex("openai.com", true)]
    #[case::glued("evilopenai.com", false)]
    #[case::azure("x.openai.azure.com", false)]
    fn openai_hosts(#[case] host: &str, #[case] expected: bool) {
        assert_eq!(is_openai(host), expected, "{host}");
    }

    /// Policies that allow the same host give it once, in the order first given.
    #[test]
    fn known_hosts_keep_each_pattern_once() {
        let p = |h: &str| HostPattern::parse(h).expect("valid pattern");
        let known = KnownHosts::new(vec![
            p("gw.contoso.com"),
            p("*.openai.azure.com"),
            p("gw.contoso.com"),
            p("*.openai.azure.com"),
        ]);
        let kept: Vec<&str> = known.patterns().iter().map(HostPattern::as_str).collect();
        assert_eq!(kept, ["gw.contoso.com", "*.openai.azure.com"]);
    }

    #[rstest]
    #[case::plain("OPENAI_BASE_URL=https://api.openai.com/v1", true)]
    #[case::upper("--endpoint=HTTPS://X.OPENAI.AZURE.COM", true)]
    #[case::allowed_suffix("https://r.services.ai.azure.com/models", true)]
    #[case::azure_typo("https://example-resource.azure.openai.com/", true)]
    #[case::ideographic("https://x\u{3002}openai\u{3002}azure\u{3002}com/", true)]
    #[case::full_width_dot("https://api\u{FF0E}openai\u{FF0E}com/", true)]
    #[case::full_width_letters("https://x.\u{FF4F}penai.azure.com/", true)]
    #[case::zero_width("https://x.open\u{200B}ai.azure.com/", true)]
    #[case::percent_dot("https://x.openai%2eazure.com/", true)]
    #[case::percent_other("https://x.example.com/%20openai", false)]
    #[case::unrelated("https://example.com/v1", false)]
    #[case::bedrock_is_not_picked_up("https://bedrock-runtime.us-east-1.amazonaws.com", false)]
    #[case::empty("", false)]
    fn a_mention_of_a_model_host_is_found_loosely(#[case] text: &str, #[case] expected: bool) {
        let known = KnownHosts::new(default_patterns());
        assert_eq!(known.mentioned_in(text), expected, "{text:?}");
    }

    #[test]
    fn http_allowed_when_policy_does_not_require_https() {
        let patterns = default_patterns();
        let rules = EndpointRules {
            allowed_hosts: &patterns,
            require_https: false,
        };
        let verdict = classify("http://x.openai.azure.com/v1", &rules);
        assert_eq!(verdict.hosting, Hosting::Azure);
        assert_eq!(verdict.problem, None);
        // The port is still policed.
        let verdict = classify("http://x.openai.azure.com:8080/v1", &rules);
        assert_eq!(verdict.hosting, Hosting::External);
        assert_eq!(
            verdict.problem.as_deref(),
            Some("has non-default port 8080")
        );
    }

    #[test]
    fn exact_pattern_allows_a_gateway() {
        let patterns = vec![HostPattern::parse("gw.contoso.com").expect("valid")];
        let rules = EndpointRules {
            allowed_hosts: &patterns,
            require_https: true,
        };
        assert_eq!(
            classify("https://gw.contoso.com/openai", &rules).hosting,
            Hosting::Azure
        );
        assert_eq!(
            classify("https://x.gw.contoso.com/openai", &rules).hosting,
            Hosting::External
        );
    }

    #[test]
    fn allowed_pattern_cannot_turn_openai_into_azure() {
        let patterns = vec![HostPattern::parse("*.openai.com").expect("valid")];
        let rules = EndpointRules {
            allowed_hosts: &patterns,
            require_https: true,
        };
        assert_eq!(
            classify("https://api.openai.com/v1", &rules).hosting,
            Hosting::OpenaiDirect
        );
    }
}

//! Host patterns as written in a HostingPolicy (`gw.contoso.com`, `*.openai.azure.com`), their
//! validation, and the one label-by-label matcher that every host comparison in this crate uses.
//!
//! Patterns are validated strictly so that what a policy author writes is exactly what is
//! enforced: lower-case letter-digit-hyphen labels only, a wildcard only as the whole first label,
//! and never anything a URL parser could read as an IP address.

use std::fmt;

/// Longest host pattern accepted, in bytes: the DNS limit on a host name (RFC 1035 §2.3.4 counts
/// 255 octets on the wire, which leaves 253 characters in dotted text form).
pub const HOST_PATTERN_MAX_LEN: usize = 253;

/// Longest DNS label (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// The rule of [`HostPattern::parse`] as a regular expression for a CRD's openAPI `pattern`.
///
/// It uses only syntax that ECMA-262 and RE2 (the API server's engine) read alike: no lookaround,
/// no backreferences. A regular expression without lookahead cannot also bound the total length,
/// so a schema must pair it with `maxLength: HOST_PATTERN_MAX_LEN`; together they accept exactly
/// what `parse` accepts (a unit test checks both on a table of inputs).
///
/// Reading it: an optional `*.`, then one or more `label.`, then a last label that starts with a
/// letter (so it never ends in a number, which a URL parser would read as IPv4). A label is 1 to
/// 63 of `a-z 0-9 -`, not starting or ending with `-`.
pub const HOST_PATTERN_REGEX: &str =
    r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$";

/// A host pattern from a HostingPolicy: either an exact host (`gw.contoso.com`) or `*.suffix`,
/// where the wildcard stands for ONE OR MORE whole labels in front of the suffix.
///
/// So `*.openai.azure.com` matches `x.openai.azure.com` and `a.b.openai.azure.com`, but neither
/// `openai.azure.com` nor `evilopenai.azure.com`: matching is label by label, never a string
/// `ends_with`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    pattern: String,
}

/// Why a host pattern was refused. Every message names the pattern and says what to write instead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatternError {
    #[error(
        "host pattern is empty; write a host such as \"gw.contoso.com\" or \"*.openai.azure.com\""
    )]
    Empty,
    #[error(
        "host pattern {pattern:?} contains non-ASCII character U+{code:04X}; write IDN labels in their punycode (xn--) form"
    )]
    NonAscii { pattern: String, code: u32 },
    #[error(
        "host pattern {pattern:?} contains whitespace or a control character; write the host alone"
    )]
    Whitespace { pattern: String },
    #[error(
        "host pattern {pattern:?} contains a scheme; write the host alone, without \"https://\""
    )]
    Scheme { pattern: String },
    #[error("host pattern {pattern:?} contains a path; write the host alone, without \"/\"")]
    Path { pattern: String },
    #[error("host pattern {pattern:?} contains a port; write the host alone, without \":port\"")]
    Port { pattern: String },
    #[error("host pattern {pattern:?} is an IP address; write a DNS host name")]
    IpAddress { pattern: String },
    #[error("host pattern {pattern:?} contains upper-case letters; write it in lower case")]
    Uppercase { pattern: String },
    #[error(
        "host pattern {pattern:?} contains {ch:?}; only lower-case letters, digits, '-', '.' and a leading \"*.\" are allowed"
    )]
    InvalidCharacter { pattern: String, ch: char },
    #[error("host pattern {pattern:?} ends with a dot; write it without the trailing dot")]
    TrailingDot { pattern: String },
    #[error("host pattern {pattern:?} has an empty label (a leading dot or two dots in a row)")]
    EmptyLabel { pattern: String },
    #[error("host pattern {pattern:?} is a bare wildcard that would match every host")]
    BareWildcard { pattern: String },
    #[error(
        "host pattern {pattern:?} uses '*' other than as the whole first label; write \"*.suffix\""
    )]
    MisplacedWildcard { pattern: String },
    #[error(
        "host pattern {pattern:?} is too broad; \"*.\" must be followed by at least two labels, as in \"*.contoso.com\""
    )]
    WildcardTooBroad { pattern: String },
    #[error(
        "host pattern {pattern:?} is a single label; single-label hosts are in-cluster services, so write a fully qualified host"
    )]
    SingleLabel { pattern: String },
    #[error("host pattern {pattern:?} has label {label:?} longer than 63 characters")]
    LabelTooLong { pattern: String, label: String },
    #[error("host pattern {pattern:?} has label {label:?} that starts or ends with '-'")]
    LabelHyphen { pattern: String, label: String },
    #[error("host pattern {pattern:?} is {len} characters long; a host name has at most 253")]
    TooLong { pattern: String, len: usize },
    #[error(
        "host pattern {pattern:?} ends in a label that does not start with a letter; a URL parser reads such a host as an IPv4 address"
    )]
    NumericTopLabel { pattern: String },
}

impl HostPattern {
    /// Validates a pattern. Upper case is refused rather than folded, so the pattern stored is
    /// the pattern written and the CRD schema (which cannot fold case) agrees with this function.
    pub fn parse(pattern: &str) -> Result<HostPattern, PatternError> {
        let owned = || pattern.to_owned();
        if pattern.is_empty() {
            return Err(PatternError::Empty);
        }
        // Whole-string shape errors first, so "https://x.com:8443/" is called a scheme, not a ':'.
        if let Some(c) = pattern.chars().find(|c| !c.is_ascii()) {
            return Err(PatternError::NonAscii {
                pattern: owned(),
                code: u32::from(c),
            });
        }
        if pattern
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(PatternError::Whitespace { pattern: owned() });
        }
        if pattern.contains("://") {
            return Err(PatternError::Scheme { pattern: owned() });
        }
        if pattern.contains('[') || pattern.contains(']') {
            return Err(PatternError::IpAddress { pattern: owned() });
        }
        if pattern.contains('/') {
            return Err(PatternError::Path { pattern: owned() });
        }
        if pattern.contains(':') {
            return Err(PatternError::Port { pattern: owned() });
        }
        if pattern.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(PatternError::Uppercase { pattern: owned() });
        }
        if let Some(ch) = pattern.chars().find(|&c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '*'))
        }) {
            return Err(PatternError::InvalidCharacter {
                pattern: owned(),
                ch,
            });
        }
        if pattern == "*" {
            return Err(PatternError::BareWildcard { pattern: owned() });
        }
        if pattern.ends_with('.') {
            return Err(PatternError::TrailingDot { pattern: owned() });
        }
        let (wildcard, suffix) = match pattern.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        if suffix.contains('*') {
            return Err(PatternError::MisplacedWildcard { pattern: owned() });
        }
        let mut labels = 0usize;
        for label in suffix.split('.') {
            labels += 1;
            if label.is_empty() {
                return Err(PatternError::EmptyLabel { pattern: owned() });
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(PatternError::LabelTooLong {
                    pattern: owned(),
                    label: label.to_owned(),
                });
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(PatternError::LabelHyphen {
                    pattern: owned(),
                    label: label.to_owned(),
                });
            }
        }
        if pattern.len() > HOST_PATTERN_MAX_LEN {
            return Err(PatternError::TooLong {
                pattern: owned(),
                len: pattern.len(),
            });
        }
        // The WHATWG parser treats a host whose last label is numeric (or 0x-hex) as IPv4, so a
        // top label must start with a letter; that also rules out every dotted IPv4 form.
        let top = suffix.rsplit('.').next().unwrap_or_default();
        if !top.starts_with(|c: char| c.is_ascii_lowercase()) {
            let all_numeric = suffix.split('.').all(|l| {
                l.bytes().all(|b| b.is_ascii_digit())
                    || l.strip_prefix("0x")
                        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
            });
            return Err(if all_numeric {
                PatternError::IpAddress { pattern: owned() }
            } else {
                PatternError::NumericTopLabel { pattern: owned() }
            });
        }
        if labels < 2 {
            return Err(if wildcard {
                PatternError::WildcardTooBroad { pattern: owned() }
            } else {
                PatternError::SingleLabel { pattern: owned() }
            });
        }
        Ok(HostPattern {
            pattern: pattern.to_owned(),
        })
    }

    /// Whether `host` (already lower-case ASCII, trailing dot stripped) matches this pattern.
    pub fn matches(&self, host: &str) -> bool {
        host_matches(&self.pattern, host)
    }

    /// The pattern as written (always lower case, since upper case is refused).
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The part a matching host must end with, label-aligned: `openai.azure.com` for
    /// `*.openai.azure.com`, the whole host for an exact pattern.
    pub fn suffix(&self) -> &str {
        self.pattern.strip_prefix("*.").unwrap_or(&self.pattern)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

/// Label-by-label match of `host` against a pattern, compared from the right.
///
/// A leftmost `*` label stands for one or more whole host labels. For the built-in families a
/// label may also contain `{region}`, which stands for a non-empty run of host characters inside
/// that one label (`bedrock-runtime.{region}.amazonaws.com`, `{region}-aiplatform.googleapis.com`);
/// [`HostPattern::parse`] refuses braces, so policy patterns never use it. Allocation-free.
pub(crate) fn host_matches(pattern: &str, host: &str) -> bool {
    // The shapes every policy pattern has, compared as whole strings: `*.suffix` is "ends with
    // `.suffix`" (the wildcard covers one label or more, the empty one included, as below), and a
    // pattern with no wildcard is the host itself.
    if !pattern.contains('{') {
        if let Some(suffix) = pattern.strip_prefix("*.")
            && !suffix.contains('*')
        {
            return host.len() > suffix.len()
                && host.ends_with(suffix)
                && host.as_bytes()[host.len() - suffix.len() - 1] == b'.';
        }
        if !pattern.contains('*') {
            return pattern == host;
        }
    } else if let Some((_, after)) = pattern.rsplit_once('}')
        && !after.contains('*')
        && !host.ends_with(after)
    {
        // What follows the last `{region}` is literal to the end (the rest of its label and
        // the labels after it): a host that does not end with it cannot match. Most hosts a
        // decision classifies fail here, before the label walk.
        return false;
    }
    host_matches_by_labels(pattern, host)
}

/// A list of built-in host patterns with the shape of each worked out once: every host a
/// decision classifies is compared with every pattern of the built-in families, and
/// [`host_matches`] would search each pattern for `{`, `}` and `*` on every comparison.
/// Matches exactly as [`host_matches`] does.
pub(crate) struct HostList(Vec<Shape>);

/// How one pattern of a [`HostList`] is compared.
enum Shape {
    /// No wildcard: the host itself.
    Exact(&'static str),
    /// `*.suffix` with a literal suffix: one label or more in front of `.suffix`.
    Below(&'static str),
    /// A `{region}` pattern with what follows its last `}` (a host must end with it) and the
    /// pattern for the label walk.
    Region {
        tail: &'static str,
        pattern: &'static str,
    },
    /// Anything else, compared label by label.
    Labels(&'static str),
}

impl HostList {
    pub(crate) fn new(patterns: &[&'static str]) -> Self {
        let shape = |pattern: &'static str| {
            if !pattern.contains('{') {
                if let Some(suffix) = pattern.strip_prefix("*.")
                    && !suffix.contains('*')
                {
                    return Shape::Below(suffix);
                }
                if !pattern.contains('*') {
                    return Shape::Exact(pattern);
                }
            } else if let Some((_, tail)) = pattern.rsplit_once('}')
                && !tail.contains('*')
            {
                return Shape::Region { tail, pattern };
            }
            Shape::Labels(pattern)
        };
        HostList(patterns.iter().copied().map(shape).collect())
    }

    /// Whether some pattern of the list matches `host`.
    pub(crate) fn any_matches(&self, host: &str) -> bool {
        self.0.iter().any(|shape| match *shape {
            Shape::Exact(pattern) => pattern == host,
            Shape::Below(suffix) => {
                host.len() > suffix.len()
                    && host.ends_with(suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
            Shape::Region { tail, pattern } => {
                host.ends_with(tail) && host_matches_by_labels(pattern, host)
            }
            Shape::Labels(pattern) => host_matches_by_labels(pattern, host),
        })
    }
}

/// [`host_matches`] label by label, for the catalogue's `{region}` patterns.
fn host_matches_by_labels(pattern: &str, host: &str) -> bool {
    let mut pattern_labels = pattern.rsplit('.');
    let mut host_labels = host.rsplit('.');
    loop {
        match (pattern_labels.next(), host_labels.next()) {
            (None, None) => return true,
            // The wildcard covers this host label and every one to its left.
            (Some("*"), Some(_)) => return pattern_labels.next().is_none(),
            (Some(p), Some(h)) if label_matches(p, h) => {}
            _ => return false,
        }
    }
}

fn label_matches(pattern: &str, label: &str) -> bool {
    // Policy patterns never hold a brace: compare at once, without a substring search.
    if !pattern.contains('{') {
        return pattern == label;
    }
    match pattern.split_once("{region}") {
        Some((before, after)) => {
            label.len() > before.len() + after.len()
                && label.starts_with(before)
                && label.ends_with(after)
        }
        None => pattern == label,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// A compiled list matches a host exactly when one of its patterns does by [`host_matches`],
    /// for every built-in list and patterns of every shape, over hosts made from each pattern
    /// (its region filled in, a label more, a letter less, another domain after it).
    #[test]
    fn a_compiled_list_matches_as_its_patterns_do() {
        let shapes: &[&'static str] = &[
            "api.openai.com",
            "*.api.openai.com",
            "*.svc",
            "{region}",
            "a.{region}",
            "x{region}y.z",
            "*.{region}.com",
            "a.*.b.com",
        ];
        let lists: [&[&'static str]; 4] = [
            super::super::OTHER_CLOUD_HOSTS,
            super::super::IN_CLUSTER_HOSTS,
            super::super::OPENAI_DIRECT_HOSTS,
            shapes,
        ];
        for list in lists {
            let compiled = HostList::new(list);
            let mut hosts = vec![String::new(), "com".to_string(), ".".to_string()];
            for p in list {
                for region in ["", "us-east-1", "a.b"] {
                    let h = p.replace("{region}", region).replace('*', "x");
                    hosts.push(format!("y.{h}"));
                    hosts.push(format!("y{h}"));
                    hosts.push(format!("{h}.evil.example"));
                    hosts.push(h.get(1..).unwrap_or_default().to_string());
                    hosts.push(h.trim_start_matches("x.").to_string());
                    hosts.push(h);
                }
            }
            for host in &hosts {
                assert_eq!(
                    compiled.any_matches(host),
                    list.iter().any(|p| host_matches(p, host)),
                    "{host} against {list:?}"
                );
            }
        }
    }

    /// The fast rejection of `{region}` patterns (a host must end with what follows the last
    /// `}`) decides as the label walk does, for the catalogue's own patterns and hosts made to
    /// sit on either side of it.
    #[test]
    fn region_patterns_reject_early_only_what_the_label_walk_rejects() {
        let patterns: Vec<&str> = super::super::OTHER_CLOUD_HOSTS
            .iter()
            .copied()
            .filter(|p| p.contains('{'))
            .chain([
                "{region}",
                "a.{region}",
                "{region}.b",
                "x{region}y.z",
                "*.{region}.com",
            ])
            .collect();
        assert!(patterns.len() > 5);
        let mut hosts: Vec<String> = Vec::new();
        for p in &patterns {
            for region in ["", "us-east-1", "eu", "a.b", "{region}"] {
                let h = p.replace("{region}", region);
                hosts.push(h.clone());
                hosts.push(format!("x{h}"));
                hosts.push(format!("{h}.evil.example"));
                hosts.push(h.trim_start_matches("*.").to_string());
                hosts.push(h.replace(".com", ".co"));
            }
        }
        hosts.extend(["", ".", "com", "amazonaws.com", "googleapis.com"].map(String::from));
        for p in &patterns {
            for h in &hosts {
                assert_eq!(
                    host_matches(p, h),
                    host_matches_by_labels(p, h),
                    "pattern {p:?} host {h:?}"
                );
            }
        }
    }

    #[test]
    fn whole_string_matching_agrees_with_matching_label_by_label() {
        let labels = [
            "",
            "a",
            "com",
            "azure",
            "openai",
            "x-openai",
            "openai.azure",
            "b.c",
        ];
        let mut strings = vec![String::new()];
        for _ in 0..3 {
            let longer: Vec<String> = strings
                .iter()
                .flat_map(|s| labels.iter().map(move |l| format!("{s}.{l}")))
                .collect();
            strings.extend(longer);
        }
        let hosts: Vec<String> = strings
            .iter()
            .flat_map(|s| [s.clone(), s.trim_start_matches('.').to_string()])
            .collect();
        let mut patterns: Vec<String> = hosts.clone();
        patterns.extend(
            hosts
                .iter()
                .map(|h| format!("*.{}", h.trim_start_matches('.'))),
        );
        patterns.extend(["*", "*.", "**.com", "a.*.com", "*.*.com"].map(String::from));
        let mut compared = 0;
        for pattern in &patterns {
            for host in hosts.iter().step_by(7) {
                assert_eq!(
                    host_matches(pattern, host),
                    host_matches_by_labels(pattern, host),
                    "pattern {pattern:?} host {host:?}"
                );
                compared += 1;
            }
        }
        assert!(compared > 100_000, "{compared}");
    }

    fn long_label(n: usize) -> String {
        "a".repeat(n)
    }

    #[rstest]
    #[case::exact("gw.contoso.com")]
    #[case::two_labels("contoso.com")]
    #[case::wildcard("*.openai.azure.com")]
    #[case::wildcard_two_labels("*.contoso.com")]
    #[case::digits_and_hyphens("a-1.b2.contoso-x.com")]
    #[case::punycode("xn--80ak6aa92e.com")]
    #[case::digit_first_label("1a.contoso.com")]
    #[case::top_label_with_digit("x.a1")]
    fn valid_patterns_parse(#[case] input: &str) {
        let pattern = HostPattern::parse(input).expect("valid pattern");
        assert_eq!(pattern.as_str(), input);
        assert_eq!(pattern.to_string(), input);
    }

    #[test]
    fn longest_label_and_host_are_accepted() {
        let label63 = format!("{}.com", long_label(63));
        assert!(HostPattern::parse(&label63).is_ok());
        // Three 63-character labels, one of 57 and "com", with four dots: exactly 253 characters.
        let host253 = format!(
            "{}.{}.{}.{}.com",
            long_label(63),
            long_label(63),
            long_label(63),
            long_label(57)
        );
        assert_eq!(host253.len(), 253);
        assert!(HostPattern::parse(&host253).is_ok());
    }

    #[rstest]
    #[case::empty("", PatternError::Empty)]
    #[case::bare_wildcard("*", PatternError::BareWildcard { pattern: "*".into() })]
    #[case::wildcard_one_label("*.com", PatternError::WildcardTooBroad { pattern: "*.com".into() })]
    #[case::double_star("**.x.com", PatternError::MisplacedWildcard { pattern: "**.x.com".into() })]
    #[case::inner_wildcard("x.*.com", PatternError::MisplacedWildcard { pattern: "x.*.com".into() })]
    #[case::partial_wildcard("*x.com", PatternError::MisplacedWildcard { pattern: "*x.com".into() })]
    #[case::trailing_wildcard("x.com.*", PatternError::MisplacedWildcard { pattern: "x.com.*".into() })]
    #[case::uppercase("GW.contoso.com", PatternError::Uppercase { pattern: "GW.contoso.com".into() })]
    #[case::trailing_dot("gw.contoso.com.", PatternError::TrailingDot { pattern: "gw.contoso.com.".into() })]
    #[case::leading_dot(".contoso.com", PatternError::EmptyLabel { pattern: ".contoso.com".into() })]
    #[case::double_dot("gw..contoso.com", PatternError::EmptyLabel { pattern: "gw..contoso.com".into() })]
    #[case::ipv4("10.0.0.1", PatternError::IpAddress { pattern: "10.0.0.1".into() })]
    #[case::ipv4_hex("0x7f.1", PatternError::IpAddress { pattern: "0x7f.1".into() })]
    #[case::ipv6("[::1]", PatternError::IpAddress { pattern: "[::1]".into() })]
    #[case::numeric_top("x.123", PatternError::NumericTopLabel { pattern: "x.123".into() })]
    #[case::digit_top("x.1com", PatternError::NumericTopLabel { pattern: "x.1com".into() })]
    #[case::port("gw.contoso.com:443", PatternError::Port { pattern: "gw.contoso.com:443".into() })]
    #[case::scheme("https://gw.contoso.com", PatternError::Scheme { pattern: "https://gw.contoso.com".into() })]
    #[case::path("gw.contoso.com/v1", PatternError::Path { pattern: "gw.contoso.com/v1".into() })]
    #[case::space("gw.contoso .com", PatternError::Whitespace { pattern: "gw.contoso .com".into() })]
    #[case::leading_space(" gw.contoso.com", PatternError::Whitespace { pattern: " gw.contoso.com".into() })]
    #[case::tab("gw.contoso.com\t", PatternError::Whitespace { pattern: "gw.contoso.com\t".into() })]
    #[case::non_ascii("gw.contoso\u{3002}com", PatternError::NonAscii { pattern: "gw.contoso\u{3002}com".into(), code: 0x3002 })]
    #[case::zero_width("gw\u{200b}.contoso.com", PatternError::NonAscii { pattern: "gw\u{200b}.contoso.com".into(), code: 0x200b })]
    #[case::underscore("a_b.contoso.com", PatternError::InvalidCharacter { pattern: "a_b.contoso.com".into(), ch: '_' })]
    #[case::userinfo("u@gw.contoso.com", PatternError::InvalidCharacter { pattern: "u@gw.contoso.com".into(), ch: '@' })]
    #[case::percent("gw%2econtoso.com", PatternError::InvalidCharacter { pattern: "gw%2econtoso.com".into(), ch: '%' })]
    #[case::leading_hyphen("-gw.contoso.com", PatternError::LabelHyphen { pattern: "-gw.contoso.com".into(), label: "-gw".into() })]
    #[case::trailing_hyphen("gw-.contoso.com", PatternError::LabelHyphen { pattern: "gw-.contoso.com".into(), label: "gw-".into() })]
    #[case::single_label("vllm", PatternError::SingleLabel { pattern: "vllm".into() })]
    fn invalid_patterns_are_refused(#[case] input: &str, #[case] expected: PatternError) {
        assert_eq!(HostPattern::parse(input), Err(expected));
    }

    #[test]
    fn label_over_63_is_refused() {
        let input = format!("{}.com", long_label(64));
        assert_eq!(
            HostPattern::parse(&input),
            Err(PatternError::LabelTooLong {
                pattern: input.clone(),
                label: long_label(64)
            })
        );
    }

    #[test]
    fn host_over_253_is_refused() {
        let input = format!(
            "{}.{}.{}.{}.com",
            long_label(63),
            long_label(63),
            long_label(63),
            long_label(58)
        );
        assert_eq!(input.len(), 254);
        assert_eq!(
            HostPattern::parse(&input),
            Err(PatternError::TooLong {
                pattern: input.clone(),
                len: 254
            })
        );
    }

    #[test]
    fn error_messages_name_the_pattern_and_the_problem() {
        let message = |input: &str| HostPattern::parse(input).expect_err("invalid").to_string();
        assert_eq!(
            message("x.*.com"),
            "host pattern \"x.*.com\" uses '*' other than as the whole first label; write \"*.suffix\""
        );
        assert!(message("*.com").contains("at least two labels"));
        assert!(message("GW.contoso.com").contains("lower case"));
        assert!(message("gw.contoso.com:443").contains("port"));
        assert!(message("gw\u{3002}com").contains("U+3002"));
        assert!(message(&format!("{}.com", long_label(64))).contains("longer than 63"));
    }

    #[rstest]
    #[case::one_label("*.openai.azure.com", "x.openai.azure.com", true)]
    #[case::two_labels("*.openai.azure.com", "a.b.openai.azure.com", true)]
    #[case::bare_suffix("*.openai.azure.com", "openai.azure.com", false)]
    #[case::glued_label("*.openai.azure.com", "evilopenai.azure.com", false)]
    #[case::suffix_then_more("*.openai.azure.com", "x.openai.azure.com.evil.com", false)]
    #[case::partial_top("*.openai.azure.com", "x.openai.azure.co", false)]
    #[case::exact("gw.contoso.com", "gw.contoso.com", true)]
    #[case::exact_sub("gw.contoso.com", "a.gw.contoso.com", false)]
    #[case::exact_parent("gw.contoso.com", "contoso.com", false)]
    #[case::exact_glued("gw.contoso.com", "xgw.contoso.com", false)]
    #[case::empty_host("*.contoso.com", "", false)]
    fn patterns_match_whole_labels(
        #[case] pattern: &str,
        #[case] host: &str,
        #[case] expected: bool,
    ) {
        let pattern = HostPattern::parse(pattern).expect("valid pattern");
        assert_eq!(pattern.matches(host), expected, "{pattern} vs {host}");
    }

    #[rstest]
    #[case::region(
        "bedrock-runtime.{region}.amazonaws.com",
        "bedrock-runtime.us-east-1.amazonaws.com",
        true
    )]
    #[case::region_missing(
        "bedrock-runtime.{region}.amazonaws.com",
        "bedrock-runtime.amazonaws.com",
        false
    )]
    #[case::region_two_labels(
        "bedrock-runtime.{region}.amazonaws.com",
        "bedrock-runtime.a.b.amazonaws.com",
        false
    )]
    #[case::region_prefix(
        "{region}-aiplatform.googleapis.com",
        "us-central1-aiplatform.googleapis.com",
        true
    )]
    #[case::region_prefix_empty(
        "{region}-aiplatform.googleapis.com",
        "-aiplatform.googleapis.com",
        false
    )]
    #[case::region_prefix_bare(
        "{region}-aiplatform.googleapis.com",
        "aiplatform.googleapis.com",
        false
    )]
    #[case::region_prefix_glued(
        "{region}-aiplatform.googleapis.com",
        "x-aiplatformx.googleapis.com",
        false
    )]
    fn builtin_region_placeholder_is_one_label(
        #[case] pattern: &str,
        #[case] host: &str,
        #[case] expected: bool,
    ) {
        assert_eq!(host_matches(pattern, host), expected, "{pattern} vs {host}");
    }

    #[test]
    fn suffix_drops_only_the_wildcard() {
        assert_eq!(
            HostPattern::parse("*.openai.azure.com").map(|p| p.suffix().to_owned()),
            Ok("openai.azure.com".into())
        );
        assert_eq!(
            HostPattern::parse("gw.contoso.com").map(|p| p.suffix().to_owned()),
            Ok("gw.contoso.com".into())
        );
    }

    /// `regex` is only a transitive dependency here, so the agreement test runs the CRD regex
    /// through this minimal backtracking matcher for exactly the syntax it uses: literals, `\.`
    /// and `\*` escapes, `[...]` classes with ranges, groups, and the `?`, `+`, `{m,n}`
    /// quantifiers, anchored at both ends.
    mod mini_regex {
        #[derive(Debug)]
        enum Node {
            Byte(u8),
            Class(Vec<(u8, u8)>),
            Group(Vec<Piece>),
        }

        #[derive(Debug)]
        struct Piece {
            node: Node,
            min: usize,
            max: usize,
        }

        fn parse_seq(re: &[u8], i: &mut usize) -> Vec<Piece> {
            let mut pieces = Vec::new();
            while *i < re.len() && re[*i] != b')' {
                let node = match re[*i] {
                    b'(' => {
                        *i += 1;
                        let inner = parse_seq(re, i);
                        assert_eq!(re.get(*i), Some(&b')'), "unclosed group");
                        *i += 1;
                        Node::Group(inner)
                    }
                    b'[' => {
                        *i += 1;
                        let mut ranges = Vec::new();
                        while re[*i] != b']' {
                            let lo = re[*i];
                            if re[*i + 1] == b'-' && re[*i + 2] != b']' {
                                ranges.push((lo, re[*i + 2]));
                                *i += 3;
                            } else {
                                ranges.push((lo, lo));
                                *i += 1;
                            }
                        }
                        *i += 1;
                        Node::Class(ranges)
                    }
                    b'\\' => {
                        *i += 2;
                        Node::Byte(re[*i - 1])
                    }
                    b => {
                        assert!(
                            !b"^$|.*+?{}".contains(&b),
                            "unsupported syntax {:?}",
                            b as char
                        );
                        *i += 1;
                        Node::Byte(b)
                    }
                };
                let (min, max) = match re.get(*i) {
                    Some(b'?') => (0, 1),
                    Some(b'+') => (1, usize::MAX),
                    Some(b'*') => (0, usize::MAX),
                    Some(b'{') => {
                        let close = re[*i..]
                            .iter()
                            .position(|&b| b == b'}')
                            .expect("closing brace")
                            + *i;
                        let body = std::str::from_utf8(&re[*i + 1..close]).expect("ascii");
                        let (lo, hi) = body.split_once(',').expect("{m,n}");
                        let bounds = (lo.parse().expect("m"), hi.parse().expect("n"));
                        *i = close;
                        bounds
                    }
                    _ => (1, 1),
                };
                if (min, max) != (1, 1) {
                    *i += 1;
                }
                pieces.push(Piece { node, min, max });
            }
            pieces
        }

        fn match_seq(
            pieces: &[Piece],
            s: &[u8],
            pos: usize,
            k: &mut dyn FnMut(usize) -> bool,
        ) -> bool {
            match pieces.split_first() {
                None => k(pos),
                Some((first, rest)) => match_rep(first, 0, rest, s, pos, k),
            }
        }

        fn match_rep(
            piece: &Piece,
            count: usize,
            rest: &[Piece],
            s: &[u8],
            pos: usize,
            k: &mut dyn FnMut(usize) -> bool,
        ) -> bool {
            if count < piece.max
                && match_node(&piece.node, s, pos, &mut |next| {
                    next > pos && match_rep(piece, count + 1, rest, s, next, k)
                })
            {
                return true;
            }
            count >= piece.min && match_seq(rest, s, pos, k)
        }

        fn match_node(node: &Node, s: &[u8], pos: usize, k: &mut dyn FnMut(usize) -> bool) -> bool {
            match node {
                Node::Byte(b) => s.get(pos) == Some(b) && k(pos + 1),
                Node::Class(ranges) => {
                    s.get(pos)
                        .is_some_and(|c| ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(c)))
                        && k(pos + 1)
                }
                Node::Group(inner) => match_seq(inner, s, pos, k),
            }
        }

        /// Whether the anchored `re` matches the whole of `s`.
        pub fn full_match(re: &str, s: &str) -> bool {
            let body = re
                .strip_prefix('^')
                .and_then(|r| r.strip_suffix('$'))
                .expect("anchored regex");
            let mut i = 0;
            let pieces = parse_seq(body.as_bytes(), &mut i);
            assert_eq!(i, body.len(), "trailing syntax in regex");
            let len = s.len();
            match_seq(&pieces, s.as_bytes(), 0, &mut |end| end == len)
        }
    }

    #[test]
    fn mini_regex_sanity() {
        assert!(mini_regex::full_match("^a(b[0-9]{1,2})+c?$", "ab1b22"));
        assert!(mini_regex::full_match("^a(b[0-9]{1,2})+c?$", "ab1c"));
        assert!(!mini_regex::full_match("^a(b[0-9]{1,2})+c?$", "ab123"));
        assert!(!mini_regex::full_match("^a(b[0-9]{1,2})+c?$", "a"));
        assert!(mini_regex::full_match(r"^(\*\.)?x$", "*.x"));
        assert!(!mini_regex::full_match(r"^(\*\.)?x$", "ax"));
    }

    #[test]
    fn crd_regex_and_max_length_agree_with_parse() {
        let mut inputs: Vec<String> = [
            "gw.contoso.com",
            "contoso.com",
            "*.openai.azure.com",
            "*.contoso.com",
            "a-1.b2.contoso-x.com",
            "xn--80ak6aa92e.com",
            "1a.contoso.com",
            "x.a1",
            "a.b",
            "",
            "*",
            "*.com",
            "**.x.com",
            "x.*.com",
            "*x.com",
            "x.com.*",
            "*.*.x.com",
            "GW.contoso.com",
            "gw.contoso.com.",
            ".contoso.com",
            "gw..contoso.com",
            "10.0.0.1",
            "0x7f.1",
            "[::1]",
            "x.123",
            "x.1com",
            "x.0x1",
            "gw.contoso.com:443",
            "https://gw.contoso.com",
            "gw.contoso.com/v1",
            "gw.contoso .com",
            " gw.contoso.com",
            "gw.contoso.com\t",
            "gw.contoso\u{3002}com",
            "gw\u{200b}.contoso.com",
            "a_b.contoso.com",
            "u@gw.contoso.com",
            "gw%2econtoso.com",
            "-gw.contoso.com",
            "gw-.contoso.com",
            "x.com-",
            "x.-com",
            "vllm",
            "com",
            "*.",
            "*..com",
            "a--b.c--d",
            "x.c0m",
            "x.co-m",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let a = |n| "a".repeat(n);
        inputs.push(format!("{}.com", a(63)));
        inputs.push(format!("{}.com", a(64)));
        inputs.push(format!("x.{}", a(63)));
        inputs.push(format!("x.{}", a(64)));
        inputs.push(format!("{}.{}.{}.{}.com", a(63), a(63), a(63), a(57)));
        inputs.push(format!("{}.{}.{}.{}.com", a(63), a(63), a(63), a(58)));
        inputs.push(format!("*.{}.{}.{}.{}.com", a(63), a(63), a(63), a(55)));
        inputs.push(format!("*.{}.{}.{}.{}.com", a(63), a(63), a(63), a(56)));

        for input in &inputs {
            let by_parse = HostPattern::parse(input).is_ok();
            let by_schema = input.len() <= HOST_PATTERN_MAX_LEN
                && mini_regex::full_match(HOST_PATTERN_REGEX, input);
            assert_eq!(
                by_parse, by_schema,
                "parse and CRD schema disagree on {input:?}"
            );
        }
    }
}

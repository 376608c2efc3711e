//! The JSON format: the [`Report`] model as it is. A contract for scripts: keys may be added,
//! never removed or renamed.

use serde::Serialize;

use super::Report;

/// One value as pretty JSON (two-space indent), as [`render`] writes it.
pub(super) fn pretty<T: Serialize>(value: &T) -> String {
    // Plain data with string keys; serialising it cannot fail.
    serde_json::to_string_pretty(value).unwrap_or_else(|e| {
        serde_json::json!({"error": format!("the report could not be serialised: {e}")}).to_string()
    })
}

pub(super) fn render(report: &Report) -> String {
    // The model is plain data with string keys; serialising it cannot fail.
    let mut out = serde_json::to_string_pretty(report).unwrap_or_else(|e| {
        serde_json::json!({"error": format!("the report could not be serialised: {e}")}).to_string()
    });
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::Value;

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        k.sort_unstable();
        k
    }

    #[test]
    fn json_has_the_contract_keys() -> serde_json::Result<()> {
        let v: Value = serde_json::from_str(&render(&sample()))?;
        assert_eq!(keys(&v), vec!["results", "summary"]);
        assert_eq!(
            keys(&v["summary"]),
            vec!["allowed", "denied", "documents", "skipped", "warned"]
        );
        let deny = &v["results"][0];
        assert_eq!(
            keys(deny),
            vec![
                "apiVersion",
                "document",
                "exemptions",
                "findings",
                "kind",
                "line",
                "name",
                "namespace",
                "skippedReason",
                "source",
                "verdict",
                "violations",
                "warnings"
            ]
        );
        assert_eq!(deny["verdict"], "deny");
        assert_eq!(
            keys(&deny["findings"][0]),
            vec!["apiClass", "endpoint", "hosting", "path", "provider"]
        );
        assert_eq!(
            keys(&deny["violations"][0]),
            vec!["action", "line", "message", "path", "policy"]
        );
        assert_eq!(deny["violations"][0]["action"], "Deny");
        let helm = &v["results"][1];
        assert_eq!(helm["verdict"], "skipped");
        assert_eq!(helm["apiVersion"], Value::Null);
        assert_eq!(helm["namespace"], Value::Null);
        Ok(())
    }
}

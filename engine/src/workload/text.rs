//! [`Text`]: a string of the object being read, borrowed from the JSON it was read from
//! wherever the JSON holds it verbatim, and owned only where the parser had to unescape it.
//!
//! The webhook reads some ninety strings of a typical Deployment review (env names and values,
//! container names, images, arguments) and keeps every one for the decision. As `String`s each
//! was an allocation, a copy and a free, about a tenth of an answer's instructions. A review's
//! body is kept while it is decided (see `admission::ParsedReview`), so its strings can be used
//! where they are.
//!
//! serde's own `Cow<str>` cannot do this: its `Deserialize` always copies, and `#[serde(borrow)]`
//! borrows only a bare `Cow<str>` field, not one inside an `Option`, a `Vec` or a map. `Text`
//! borrows wherever it is, from any deserializer that lends its strings (`serde_json` reading a
//! `&str`, or a `&Value` tree).

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::ops::Deref;

use serde::de::{Deserialize, Deserializer, Error, Visitor};

/// A string read from an object: borrowed from its JSON where possible.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text<'a>(Cow<'a, str>);

impl<'a> Text<'a> {
    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The string, owned (copied when it was borrowed).
    pub fn into_owned(self) -> String {
        self.0.into_owned()
    }
}

impl Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Text<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Text<'_> {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for Text<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

/// Written as the string is: messages quote names with `{:?}`, which must not change.
impl fmt::Debug for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl<'a> From<&'a str> for Text<'a> {
    fn from(s: &'a str) -> Self {
        Text(Cow::Borrowed(s))
    }
}

impl From<String> for Text<'_> {
    fn from(s: String) -> Self {
        Text(Cow::Owned(s))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            // The words `String`'s visitor uses, so that a message naming a mistyped field
            // reads as it did when these fields were `String`s.
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
            // `String` accepts UTF-8 bytes too; JSON never gives them, other formats may.
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Text<'de>, E> {
                match std::str::from_utf8(v) {
                    Ok(s) => Ok(Text(Cow::Owned(s.to_owned()))),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(v), &self)),
                }
            }
            fn visit_borrowed_bytes<E: Error>(self, v: &'de [u8]) -> Result<Text<'de>, E> {
                match std::str::from_utf8(v) {
                    Ok(s) => Ok(Text(Cow::Borrowed(s))),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Bytes(v), &self)),
                }
            }
        }
        d.deserialize_str(TextVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::Text;
    use std::borrow::Cow;

    #[test]
    fn a_verbatim_string_is_borrowed_and_an_escaped_one_is_unescaped() {
        let json = r#"["plain", "tab\tand \"quotes\"", "\u00e9"]"#;
        let texts: Vec<Text<'_>> = serde_json::from_str(json).unwrap();
        assert!(matches!(texts[0].0, Cow::Borrowed("plain")));
        // What the JSON means, as `String` reads it.
        let strings: Vec<String> = serde_json::from_str(json).unwrap();
        assert_eq!(
            texts.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            strings
        );
        assert!(matches!(texts[1].0, Cow::Owned(_)));
    }

    #[test]
    fn a_tree_lends_its_strings() {
        let tree: serde_json::Value = serde_json::json!({"name": "chat-api"});
        let name: Text<'_> = serde::Deserialize::deserialize(&tree["name"]).unwrap();
        assert!(matches!(name.0, Cow::Borrowed("chat-api")));
    }

    #[test]
    fn a_mistyped_value_is_refused_in_the_words_string_uses() {
        for json in ["1", "null", "[\"a\"]", "{\"a\":1}", "true"] {
            let text = serde_json::from_str::<Text<'_>>(json).map_err(|e| e.to_string());
            let string = serde_json::from_str::<String>(json).map_err(|e| e.to_string());
            assert_eq!(text.map(Text::into_owned), string, "{json}");
        }
    }

    #[test]
    fn it_is_written_and_compared_as_its_string() {
        let text = Text::from("a \"b\"");
        assert_eq!(format!("{text:?}"), format!("{:?}", "a \"b\""));
        assert_eq!(text.to_string(), "a \"b\"");
        assert!(text == "a \"b\"");
        assert_eq!(Text::from(String::from("x")), Text::from("x"));
    }
}

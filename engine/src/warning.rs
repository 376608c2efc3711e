//! A non-blocking finding for the client, as every part of the engine reports one: detection
//! (notes on what it could not read), adapters, and the policy evaluation. It stands below all
//! of them, so that none has to import another for it.

use serde::Serialize;

/// The longest warning the API server passes on untouched: the AdmissionResponse API asks for
/// warnings of at most 120 characters (k8s.io/api admission/v1 `AdmissionResponse.Warnings`:
/// "Limit warnings to 120 characters if possible. Warnings over 256 characters ... may be
/// truncated").
pub const MAX_WARNING_CHARS: usize = 120;

/// A non-blocking finding for the client. kubectl shows [`Warning::short`]: the field path, what
/// is wrong and one hint, at most [`MAX_WARNING_CHARS`]; the full `message` goes to
/// `status.details.causes`, the audit annotations, the log and the CLI reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// Field path of what the warning is about (empty when it is about the whole object).
    pub path: String,
    /// What is wrong, in a few words.
    pub what: String,
    /// One way to fix it.
    pub hint: String,
    /// The full detail.
    pub message: String,
}

impl Warning {
    pub fn new(
        path: impl Into<String>,
        what: impl Into<String>,
        hint: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Warning {
            path: path.into(),
            what: what.into(),
            hint: hint.into(),
            message: message.into(),
        }
    }

    /// `path: what; hint` in at most [`MAX_WARNING_CHARS`] characters. When it does not fit,
    /// `what` is shortened first, since the path says where and the hint says what to do; only
    /// a path and hint that are too long by themselves are cut at the end.
    pub fn short(&self) -> String {
        let head = if self.path.is_empty() {
            String::new()
        } else {
            format!("{}: ", self.path)
        };
        let tail = if self.hint.is_empty() {
            String::new()
        } else {
            format!("; {}", self.hint)
        };
        let fixed = head.chars().count() + tail.chars().count();
        let what_len = self.what.chars().count();
        if fixed + what_len <= MAX_WARNING_CHARS {
            return format!("{head}{}{tail}", self.what);
        }
        // Room for at least a few words of `what` and the ellipsis.
        if fixed + 12 <= MAX_WARNING_CHARS {
            let room = MAX_WARNING_CHARS - fixed - 3;
            let what: String = self.what.chars().take(room).collect();
            return format!("{head}{}...{tail}", what.trim_end());
        }
        let all = format!("{head}{}{tail}", self.what);
        let cut: String = all.chars().take(MAX_WARNING_CHARS - 3).collect();
        format!("{cut}...")
    }
}

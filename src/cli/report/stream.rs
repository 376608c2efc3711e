//! Writing the report while the input is judged: text and JSON entries go out as they come
//! (the JSON is byte for byte what [`Report::render`] writes), and the formats that need the
//! whole set first (SARIF's rules, JUnit's per-file suites and counts) hold the results, never
//! the documents, and are written at the end.

use std::io::{self, Write};

use super::{Entry, Format, Report, Summary, json, policyreport, text};
use crate::policy::PolicySet;
use crate::policy_report::{Collected, ReportApi};

/// A report being written to `out`.
pub struct ReportWriter<W: Write> {
    out: W,
    format: Format,
    /// The whole report for SARIF and JUnit; only the summary for text and JSON.
    held: Report,
    entries: usize,
    /// Hold every entry, even those that add nothing to SARIF.
    keep_all: bool,
    /// The PolicyReport results so far, and their API.
    reports: Collected,
    report_api: ReportApi,
}

impl<W: Write> ReportWriter<W> {
    pub fn new(format: Format, out: W) -> Self {
        ReportWriter {
            out,
            format,
            held: Report::default(),
            entries: 0,
            keep_all: false,
            reports: Collected::default(),
            report_api: ReportApi::default(),
        }
    }

    /// Writes PolicyReports of `api` (for [`Format::Policyreport`]).
    pub fn with_report_api(mut self, api: ReportApi) -> Self {
        self.report_api = api;
        self
    }

    /// A writer that writes nothing and holds every entry, for [`into_report`](Self::into_report).
    pub fn holding(out: W) -> Self {
        ReportWriter {
            keep_all: true,
            ..Self::new(Format::Sarif, out)
        }
    }

    /// The report held, with the rules of the policy sets in force.
    pub fn into_report<'a>(
        mut self,
        policy_sets: impl IntoIterator<Item = &'a PolicySet>,
    ) -> Report {
        for set in policy_sets {
            self.held.add_rules(set);
        }
        self.held
    }

    /// Ends a report whose input could not be read. SARIF gets a run whose invocation failed,
    /// with `reason` as its notification, so that a code-scanning upload names the bad input
    /// instead of failing on an empty file; JUnit a suite whose one case is in error with the
    /// reason, for the same reason in CI report steps. Text and JSON write nothing more (the
    /// reason goes to stderr, and the exit code says it).
    pub fn fail(mut self, reason: &str) -> io::Result<()> {
        let document = match self.format {
            Format::Sarif => {
                self.held.add_rules(&PolicySet::builtin());
                super::sarif::render_failure(&self.held, reason)
            }
            Format::Junit => super::junit::render_failure(reason),
            Format::Text | Format::Json | Format::Policyreport => return Ok(()),
        };
        self.out.write_all(document.as_bytes())?;
        self.out.flush()
    }

    /// Whether something was denied so far.
    pub fn denied(&self) -> bool {
        self.held.summary.denied > 0
    }

    /// Adds one entry, written at once for text and JSON.
    pub fn entry(&mut self, entry: Entry) -> io::Result<()> {
        self.entries += 1;
        match self.format {
            Format::Text => {
                let mut block = String::new();
                text::entry_block(&mut block, &entry);
                self.held.summary.count(entry.verdict);
                self.out.write_all(block.as_bytes())
            }
            Format::Json => {
                let head = if self.entries == 1 {
                    "{\n  \"results\": [\n"
                } else {
                    ",\n"
                };
                self.held.summary.count(entry.verdict);
                let body = indent(&json::pretty(&entry), "    ");
                self.out.write_all(head.as_bytes())?;
                self.out.write_all(body.as_bytes())
            }
            // SARIF lists violations, warnings and exemptions only: an entry without any adds
            // nothing.
            Format::Sarif
                if !self.keep_all
                    && entry.violations.is_empty()
                    && entry.warnings.is_empty()
                    && entry.exemptions.is_empty() =>
            {
                self.held.summary.count(entry.verdict);
                Ok(())
            }
            Format::Sarif | Format::Junit => {
                self.held.push_entry(entry);
                Ok(())
            }
            // Only the results are held, never the entries.
            Format::Policyreport => {
                self.held.summary.count(entry.verdict);
                policyreport::add(&mut self.reports, &entry);
                Ok(())
            }
        }
    }

    /// Writes the end of the report: the summary, or the whole SARIF or JUnit document with the
    /// rules of the policy sets that were in force. Returns the counts.
    pub fn finish<'a>(
        mut self,
        policy_sets: impl IntoIterator<Item = &'a PolicySet>,
    ) -> io::Result<Summary> {
        let summary = self.held.summary;
        match self.format {
            Format::Text => {
                let mut line = String::new();
                text::summary_line(&mut line, &summary);
                self.out.write_all(line.as_bytes())?;
            }
            Format::Json => {
                let head = if self.entries == 0 {
                    "{\n  \"results\": [],\n"
                } else {
                    "\n  ],\n"
                };
                let summary_json = indent(&json::pretty(&summary), "  ");
                self.out.write_all(head.as_bytes())?;
                self.out.write_all(b"  \"summary\": ")?;
                self.out
                    .write_all(summary_json.trim_start_matches(' ').as_bytes())?;
                self.out.write_all(b"\n}\n")?;
            }
            Format::Sarif | Format::Junit => {
                for set in policy_sets {
                    self.held.add_rules(set);
                }
                self.out
                    .write_all(self.held.render(self.format).as_bytes())?;
            }
            Format::Policyreport => {
                let yaml = policyreport::render_collected(&self.reports, self.report_api);
                self.out.write_all(yaml.as_bytes())?;
            }
        }
        self.out.flush()?;
        Ok(summary)
    }
}

/// Each line of `text` indented.
fn indent(text: &str, by: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(by);
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::sample;
    use super::*;
    use pretty_assertions::assert_eq;

    fn streamed(report: &Report, format: Format) -> String {
        let mut out = Vec::new();
        let mut writer = ReportWriter::new(format, &mut out);
        for entry in &report.results {
            assert!(writer.entry(entry.clone()).is_ok());
        }
        let sets = [PolicySet::builtin()];
        assert!(writer.finish(&sets).is_ok());
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn streamed_reports_are_the_rendered_ones() {
        let report = sample();
        for format in [
            Format::Text,
            Format::Json,
            Format::Sarif,
            Format::Junit,
            Format::Policyreport,
        ] {
            assert_eq!(
                streamed(&report, format),
                report.render(format),
                "{format:?}"
            );
        }
        let empty = Report::default();
        for format in [Format::Text, Format::Json] {
            assert_eq!(streamed(&empty, format), empty.render(format), "{format:?}");
        }
    }
}

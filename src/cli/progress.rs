//! Progress of a long `check` on stderr: files and documents done and the rate, on one line
//! rewritten in place, at most a few times a second, and only when stderr is a terminal (a CI
//! log or a redirected stderr gets nothing).

use std::io::Write;
use std::time::{Duration, Instant};

/// How often the line is rewritten at most.
const EVERY: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    started: Instant,
    shown: Option<Instant>,
    files: usize,
    files_done: usize,
    documents: usize,
    /// Whether a line is on the terminal, to be cleared.
    drawn: bool,
}

impl Progress {
    /// Progress that is shown when `enabled` (stderr is a terminal).
    pub fn new(enabled: bool) -> Self {
        Progress {
            enabled,
            started: Instant::now(),
            shown: None,
            files: 0,
            files_done: 0,
            documents: 0,
            drawn: false,
        }
    }

    /// Judging starts over `files` files.
    pub fn start(&mut self, files: usize) {
        self.files = files;
        self.started = Instant::now();
        self.shown = Some(self.started);
    }

    pub fn documents(&mut self, n: usize) {
        self.documents += n;
    }

    pub fn file_done(&mut self) {
        self.files_done += 1;
    }

    /// Rewrites the line if it is time to.
    pub fn show(&mut self) {
        if !self.enabled || self.shown.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.shown = Some(Instant::now());
        let line = self.line(self.started.elapsed());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K{line}");
        let _ = err.flush();
        self.drawn = true;
    }

    /// Removes the line, so that what follows starts on a clean line.
    pub fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.drawn = false;
        }
    }

    /// `hostguard check: 120/400 files, 2400 documents, 8000 documents/s`.
    fn line(&self, elapsed: Duration) -> String {
        let rate = self.documents as f64 / elapsed.as_secs_f64().max(0.001);
        format!(
            "hostguard check: {}/{} files, {} documents, {:.0} documents/s",
            self.files_done, self.files, self.documents, rate
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn the_line_says_files_documents_and_rate() {
        let mut p = Progress::new(false);
        p.start(400);
        p.documents(2_400);
        for _ in 0..120 {
            p.file_done();
        }
        assert_eq!(
            p.line(Duration::from_millis(300)),
            "hostguard check: 120/400 files, 2400 documents, 8000 documents/s"
        );
    }

    #[test]
    fn nothing_is_drawn_when_stderr_is_not_a_terminal() {
        let mut p = Progress::new(false);
        p.start(1);
        p.documents(1);
        p.show();
        assert!(!p.drawn);
    }
}

//! The load client of the fault tests, steered from Rust: `tests/load-client/main.go` is Go's own
//! `net/http` client calling the webhook as kube-apiserver does (one multiplexed HTTP/2
//! connection, a pool of kept-alive HTTP/1.1 ones, each new connection routed to one of the
//! Service's current endpoints). Reviews alternate between the two protocols.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;

/// The placeholder in a body that the client replaces with the review's uid, `load-<index>`.
pub const UID: &str = "@UID@";

/// What happened to one review (times in milliseconds since the load started).
#[derive(Debug, Clone, Deserialize)]
pub struct Outcome {
    pub index: u64,
    pub proto: String,
    pub sent_ms: i64,
    pub done_ms: i64,
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The common name of the serving certificate on the connection that answered.
    #[serde(default)]
    pub cert: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub allowed: Option<bool>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    pub retries: u32,
}

impl Outcome {
    /// Answered with 200 and an AdmissionReview for this review.
    pub fn answered(&self) -> bool {
        self.error.is_none()
            && self.status == Some(200)
            && self.uid.as_deref() == Some(format!("load-{}", self.index).as_str())
    }
}

/// A running load client.
pub struct Load {
    child: Child,
    stdin: ChildStdin,
    /// When the load started: the instant the outcomes' times count from (the client is given
    /// the same instant on the wall clock, so both sides measure from one point).
    pub started: Instant,
    _dir: tempfile::TempDir,
}

impl Load {
    /// Starts `rate` reviews a second over `bodies` (review i gets body i mod len) to a Service
    /// named [`super::SERVICE_NAME`] whose certificate `ca_pem` signs, with `endpoints`.
    pub fn start(ca_pem: &str, endpoints: &[SocketAddr], bodies: &[Value], rate: u32) -> Load {
        let dir = tempfile::tempdir().expect("tempdir");
        let bodies_dir = dir.path().join("bodies");
        std::fs::create_dir_all(&bodies_dir).expect("bodies dir");
        for (i, body) in bodies.iter().enumerate() {
            std::fs::write(bodies_dir.join(format!("{i}.json")), body.to_string()).expect("body");
        }
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_pem).expect("ca");
        let mut child = Command::new(super::load_client())
            .args(["-ca", path(&ca)])
            .args(["-name", super::SERVICE_NAME])
            .args(["-rate", &rate.to_string()])
            .args(["-bodies", path(&bodies_dir)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the load client starts");
        let stdin = child.stdin.take().expect("stdin");
        let mut load = Load {
            child,
            stdin,
            started: Instant::now(),
            _dir: dir,
        };
        load.endpoints(endpoints);
        let (started, wall) = (Instant::now(), std::time::SystemTime::now());
        let micros = wall
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_micros();
        load.command(&format!("start {micros}"));
        load.started = started;
        load
    }

    fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("the load client reads its commands");
        self.stdin.flush().expect("flush");
    }

    /// The Service's endpoints from now on (new connections only; open ones stay where they are).
    pub fn endpoints(&mut self, endpoints: &[SocketAddr]) {
        let list: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
        self.command(&format!("endpoints {}", list.join(",")));
    }

    /// From now on, reviews go over new connections (an API server restart); the old ones finish
    /// what they carry.
    pub fn reconnect(&mut self) {
        self.command("reconnect");
    }

    /// Milliseconds since the load started, on the outcomes' clock.
    pub fn now_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    /// Stops the load, waits for every review to end and returns the outcomes in index order,
    /// with how long the load ran.
    pub fn finish(mut self) -> (Vec<Outcome>, Duration) {
        self.command("stop");
        let elapsed = self.started.elapsed();
        let stdout = self.child.stdout.take().expect("stdout");
        let outcomes: Vec<Outcome> = BufReader::new(stdout)
            .lines()
            .map(|l| serde_json::from_str(&l.expect("a line")).expect("an outcome"))
            .collect();
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "the load client failed: {status}");
        (outcomes, elapsed)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

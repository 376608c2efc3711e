//! One shutdown signal for everything: the first SIGTERM or SIGINT turns readiness off and tells
//! every server to drain; a second one exits at once.
//!
//! What the webhook does with the signal is [`Drain`]: it keeps answering for the drain delay
//! (the endpoint is still being removed from the Service), then stops accepting and gives
//! in-flight reviews the grace to finish (see `listener`). The Pod's
//! `terminationGracePeriodSeconds` must cover both, or the kubelet kills the process mid-drain.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::state::Readiness;

/// How the webhook winds down after the first signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drain {
    /// How long the listener keeps accepting and answering after the signal.
    pub delay: Duration,
    /// How long in-flight reviews may then take to finish.
    pub grace: Duration,
}

/// Exit code when a second signal cuts the drain short (128 + SIGINT, as shells report it).
const EXIT_ABORTED: i32 = 130;

/// Spawns the signal handler; the receiver turns true when shutdown starts.
pub fn on_signals(readiness: Arc<Readiness>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let first = wait_for_signal().await;
        tracing::info!(signal = first, "shutdown started; readiness is now false");
        readiness.set_shutting_down();
        let _ = tx.send(true);
        let second = wait_for_signal().await;
        tracing::warn!(signal = second, "second signal; exiting without draining");
        std::process::exit(EXIT_ABORTED);
    });
    rx
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process can only be killed; never report a signal.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "ctrl-c"
}

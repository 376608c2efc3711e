//! hostguard's fronts: the offline CLI ([`cli`]), the HTTPS admission webhook ([`server`]) and
//! the cluster controller ([`cluster`]). They read their inputs — manifest files ([`manifest`],
//! [`policy_files`]), AdmissionReviews, watched cluster objects — and ask the one pure engine,
//! [`hostguard_engine`], for every decision; [`state`] holds the engine state the webhook and the
//! controller share, and [`metrics`] the Prometheus registry both write to.
//!
//! Import order, top to bottom, with no circle: `cli` → `server` → `cluster` → `state`,
//! `metrics`, `policy_files`, `manifest` → `hostguard_engine`.

pub mod cli;
pub mod cluster;
pub mod manifest;
pub mod metrics;
pub mod policy_files;
pub mod policy_report;
pub mod server;
pub mod state;
pub mod vap;

// The engine's modules under their old paths, so that the fronts read `crate::policy::evaluate`
// as before; the code of each lives in the engine crate.
pub use hostguard_engine::{admission, api, detect, endpoint, object, policy, snapshot, workload};

//! The hostguard engine: decides where AI workloads may send model traffic and where they may run.
//!
//! It follows the data flow of `design.md`: an object becomes a [`workload`] view, [`detect`]
//! turns it into facts, [`endpoint`] classifies every endpoint, and [`policy`] evaluates the facts
//! against the compiled HostingPolicies ([`api`] holds the resource types) and a read-only
//! [`snapshot`] of cluster state. [`admission`] translates an AdmissionReview to and from that
//! one evaluation, for the webhook and `hostguard review` alike.
//!
//! This crate is pure on purpose and the compiler keeps it so: it depends on no async runtime, no
//! HTTP stack and no Kubernetes client, so nothing in it can do I/O. The fronts — the CLI, the
//! webhook server and the cluster controller, in the `hostguard` crate — read their inputs, call
//! the engine, and translate its answer.

pub mod admission;
pub mod api;
pub mod detect;
pub mod endpoint;
pub mod object;
pub mod policy;
pub mod snapshot;
pub mod warning;
pub mod workload;

//! hostguard: decides where AI workloads may send model traffic and where they may run.
//!
//! The library follows the data flow of `design.md`: an object becomes a [`workload`] view,
//! [`detect`] turns it into facts, [`endpoint`] classifies every endpoint, and [`policy`] evaluates
//! the facts against the policies and a read-only [`snapshot`] of cluster state. The fronts —
//! [`admission`] (webhook and `review`) and [`cli`] — only translate to and from that one engine.

pub mod admission;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod detect;
pub mod endpoint;
pub mod manifest;
pub mod policy;
pub mod server;
pub mod snapshot;
pub mod workload;

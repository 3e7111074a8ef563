//! gabang-registry: an OCI Distribution (v1.1) registry server that keeps its blobs in the
//! shared gabang content store, and the push/pull client.
//!
//! Start reading at [`registry::Registry`] (state, upload commit, online GC — the design is in
//! its module doc), then [`server`] (routes and handlers), [`meta`] (the registry's SQLite
//! metadata), [`auth`] (htpasswd + tokens) and [`client`] (push/pull/login).

pub mod auth;
pub mod client;
pub mod error;
pub mod manifest;
pub mod meta;
pub mod name;
pub mod registry;
pub mod server;

pub use error::{Error, Result};
pub use registry::{AuthMode, Config, Registry};

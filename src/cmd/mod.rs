//! One module per command family; each exposes clap types and a `run` returning an exit code.
pub mod agent;
pub mod build;
pub mod cluster;
pub mod container;
pub mod image;
pub mod kube;
pub mod layer;
pub mod registry;

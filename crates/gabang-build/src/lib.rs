//! gabang-build owns everything about building an image that does not need a
//! container runtime: the Dockerfile parser ([`parser`], errors with
//! `file:line:column`), docker's variable substitution ([`expand`]),
//! `.dockerignore` matching ([`ignore`]), build-context scanning, COPY source
//! resolution and content hashing with a persisted stat cache ([`context`]),
//! the stage graph ([`stages`]), and the build plan with cache keys, miss
//! explanations and image-config effects ([`plan`], [`config`], [`cache`]).
//! The runtime and content store plug in through [`plan::StepExecutor`].
//!
//! The parser is hand-written after evaluating the `parse-dockerfile` crate
//! (0.1.9): it keeps shell-form commands as borrowed source text (line
//! continuations, comment lines and escapes still inside), leaves ENV/LABEL/ARG
//! as one unsplit string, and its errors are a message plus line/column with
//! no file or suggestion — so continuation handling, key/value splitting and
//! the error layer would have been ours anyway.
//!
//! Start reading at [`plan::build`]: it walks the needed stages, expands each
//! instruction, computes its cache key and either reuses a cached result or
//! asks the executor to run/copy.

pub mod cache;
pub mod config;
pub mod context;
pub mod error;
pub mod exec;
pub mod expand;
pub mod ignore;
pub mod parser;
pub mod plan;
pub mod stages;

pub use error::{DockerfileError, Pos};
pub use parser::{parse, Dockerfile};
pub use plan::{build, BuildError, BuildOptions, BuildResult, StepExecutor};

//! Positions and errors: every parse and expansion error names `file:line:column`.

use std::fmt;

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub fn new(line: u32, col: u32) -> Self {
        Pos { line, col }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// A Dockerfile error at a position: `Dockerfile:3:1: unknown instruction "RUNN" (did you mean RUN?)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{pos}: {message}")]
pub struct DockerfileError {
    pub file: String,
    pub pos: Pos,
    pub message: String,
}

impl DockerfileError {
    pub fn new(file: &str, pos: Pos, message: impl Into<String>) -> Self {
        DockerfileError {
            file: file.to_string(),
            pos,
            message: message.into(),
        }
    }
}

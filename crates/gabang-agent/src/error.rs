//! The agent's errors.

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Runtime(#[from] gabang_runtime::RuntimeError),
    #[error(transparent)]
    Net(#[from] gabang_net::NetError),
    #[error(transparent)]
    Content(#[from] gabang_content::Error),
    #[error(transparent)]
    Cluster(#[from] gabang_controllers::cluster::ClusterError),
    #[error(transparent)]
    Plan(#[from] crate::podspec::PlanError),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, AgentError>;

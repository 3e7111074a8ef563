//! The agent loop: register the Node, renew its Lease, follow the Pods bound to this node,
//! run one worker per pod over [`crate::pods::PodRuntime`], write pod status back, finish
//! deletions (graceful stop → final delete), adopt what a previous agent run left and clean
//! orphans, and serve the logs/exec endpoint ([`crate::server`]).

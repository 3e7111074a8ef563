//! Shared by the root package's end-to-end tests.
#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

/// A network namespace (its name) made for the test and entered by the calling thread (so the
/// processes it spawns inherit it); deleted on drop, even when the test fails.
pub struct Netns(pub String);

impl Netns {
    /// `prefix` names the test binary (`gbe2e`, `gbagent`), `tag` the test.
    pub fn enter(prefix: &str, tag: &str) -> Self {
        let name = format!("{prefix}-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        assert!(Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success());
        let g = Netns(name.clone());
        assert!(Command::new("ip")
            .args(["-n", &name, "link", "set", "lo", "up"])
            .status()
            .unwrap()
            .success());
        let f = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
        // SAFETY: setns on this test thread only; children it spawns inherit the netns.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        g
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

//! The static syscall probe (`probe.c`) as an image layer.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::Env;

/// Add a layer with `/bin/probe` (tests/probe/probe.c, built static with gcc).
pub fn probe_layer(env: &mut Env) -> PathBuf {
    let dir = env.tmp.path().join("layers/probe");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/probe/probe.c");
    let st = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(dir.join("bin/probe"))
        .arg(&src)
        .status()
        .expect("gcc is needed (apt-get install gcc libc6-dev)");
    assert!(st.success(), "gcc -static {}", src.display());
    env.layers.push(dir.clone());
    dir
}

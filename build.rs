//! Link the `gabang` binary as a non-PIE executable. Every container start execs it twice
//! (the CLI and the per-container shim), and as a PIE the dynamic loader first applied
//! ~51,000 relative relocations and touched ~290 more pages per exec: 0.6 ms of CPU each,
//! a fifth of a `gabang run --rm … true` on a quiet machine. The code stays
//! position-independent; only the final link fixes its addresses.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}

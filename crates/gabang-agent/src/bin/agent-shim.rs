//! Test and bench helper binary: `gabang-agent-shim <shim args>` = `gabang shim <shim args>`.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::exit(gabang_runtime::shim_main(args));
}

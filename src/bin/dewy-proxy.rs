//! `dewy-proxy` as an executable of its own, for `cargo run` and the tests. The packages
//! install /usr/bin/dewy-proxy as a symlink to `dewy` instead, which runs the same entry
//! point when started under this name (src/bin/dewy.rs).

fn main() {
    dewy::cli::exit_on_panic();
    std::process::exit(dewy::cli::proxy_main());
}

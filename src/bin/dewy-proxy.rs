//! `dewy-proxy`: see the library's `cli` module.

fn main() {
    std::process::exit(dewy::cli::proxy_main());
}

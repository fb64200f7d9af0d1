//! `dewy-deployer`: see the library's `cli` module.

fn main() {
    std::process::exit(dewy::cli::deployer_main());
}

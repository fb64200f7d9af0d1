//! `dewy-deployer`: see the library's `cli` module.

fn main() {
    dewy::cli::exit_on_panic();
    std::process::exit(dewy::cli::deployer_main());
}

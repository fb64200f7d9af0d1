//! `dewy`: see the library's `cli` module.

fn main() {
    std::process::exit(dewy::cli::dewy_main());
}

//! `dewy-watcher`: see the library's `cli` module.

fn main() {
    std::process::exit(dewy::cli::watcher_main());
}

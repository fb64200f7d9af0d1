//! `dewy`, and the daemons `dewy-deployer`, `dewy-watcher` and `dewy-proxy`: one program that
//! picks what to run from the name it was started under (the basename of argv[0]), as busybox
//! and udevadm do. The packages install it once, as /usr/bin/dewy, and the daemons' names as
//! symlinks to it; any other name runs the `dewy` command line.

use std::ffi::OsStr;
use std::path::Path;

fn main() {
    dewy::cli::exit_on_panic();
    let argv0 = std::env::args_os().next();
    let name = argv0
        .as_deref()
        .map(Path::new)
        .and_then(Path::file_name)
        .and_then(OsStr::to_str);
    let code = match name {
        Some("dewy-deployer") => dewy::cli::deployer_main(),
        Some("dewy-watcher") => dewy::cli::watcher_main(),
        Some("dewy-proxy") => dewy::cli::proxy_main(),
        _ => dewy::cli::dewy_main(),
    };
    std::process::exit(code);
}

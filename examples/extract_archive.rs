//! Extracts one artifact with dewy's extractor and prints what it produced, for measuring
//! (`/usr/bin/time -v`) or trying archives by hand:
//! `cargo run --example extract_archive -- ARCHIVE ARTIFACT_NAME DEST_DIR [MAX_ENTRIES]`.

use std::path::Path;
use std::process::ExitCode;

use dewy::release::{extract, Limits};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(3..=4).contains(&args.len()) {
        eprintln!("usage: extract_archive ARCHIVE ARTIFACT_NAME DEST_DIR [MAX_ENTRIES]");
        return ExitCode::from(2);
    }
    let mut limits = Limits::default();
    if let Some(n) = args.get(3) {
        match n.parse() {
            Ok(n) => limits.max_entries = n,
            Err(e) => {
                eprintln!("MAX_ENTRIES {n:?}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let dest = Path::new(&args[2]);
    if let Err(e) = std::fs::create_dir_all(dest) {
        eprintln!("creating {}: {e}", dest.display());
        return ExitCode::FAILURE;
    }
    match extract(Path::new(&args[0]), &args[1], dest, &limits) {
        Ok(stats) => {
            println!(
                "extracted: {} files, {} directories, {} bytes",
                stats.files, stats.dirs, stats.bytes
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("refused: {e}");
            ExitCode::FAILURE
        }
    }
}

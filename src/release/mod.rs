//! Releases on disk: unpacking artifacts safely, the `releases/` directory with its
//! atomic `current` symlink, and the before/after deploy hooks.

pub mod extract;
pub mod hooks;
pub mod host_fault;
pub mod releases_dir;

mod gzip_members;
mod paths;
mod pipe;
mod sys;
mod tar_format;
mod writer;
mod zip_dir;
mod zip_format;

pub use extract::{extract, sync_tree, ExtractError, ExtractStats, Limits};
pub use hooks::{run_hook, HookKind, HookOutcome, HookSpec};
pub use host_fault::host_fault;
pub use releases_dir::{fsync_dir, Releases};

//! Releases on disk: unpacking artifacts safely, the `releases/` directory with its
//! atomic `current` symlink, and the before/after deploy hooks.

pub mod extract;
pub mod hooks;
pub mod layout;

mod paths;
mod pipe;
mod sys;
mod tar_format;
mod writer;
mod zip_format;

pub use extract::{extract, sync_tree, ExtractError, ExtractStats, Limits};
pub use hooks::{run_hook, HookKind, HookOutcome, HookSpec};
pub use layout::{fsync_dir, Releases};

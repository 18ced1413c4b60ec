//! Where things are.

use std::path::PathBuf;

/// The workspace root (xtask lives one level below it). `cargo run` says
/// where xtask is at run time; the path baked in at build time is only a
/// fallback, since checkouts sharing a target directory share this binary.
pub(crate) fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (CI keeps one
/// outside the clone), else `target/` in the workspace.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root().join(p) })
        .unwrap_or_else(|| root().join("target"))
}

/// Binaries built by the dev profile.
pub(crate) fn debug_bin(name: &str) -> PathBuf {
    target_dir().join("debug").join(name)
}

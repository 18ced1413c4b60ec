//! `cargo xtask ui`: build the dashboard bundle.

use crate::process::Result;

pub(crate) fn run(_args: &[String]) -> Result {
    Err("the dashboard (ui/) has no bundle to build yet".into())
}

//! Conduit's dashboard: a Leptos app rendered in the browser, reading the
//! controller's JSON and Server-Sent Events API (`/api/v1/*`) from the
//! origin that served it.
//!
//! - [`app`]: frame, banner, routes; [`paths`]: the URLs.
//! - [`pages`]: overview, Deployment, tap, top.
//! - [`components`]: charts, sparklines, metric cells, status lines.
//! - [`api`], [`live`], [`connection`]: requests, streams, reachability.
//! - [`trend`]: metric time series.
//!
//! Number formatting, scales and ticks live in `conduit-chart`, which is
//! tested natively; this crate only builds for `wasm32-unknown-unknown`
//! (`cargo xtask ui`).

// `#[component]` expands to items (props structs, builders) declared
// `pub` whatever the function's visibility; in a binary no `pub` is
// reachable, so the lint would flag every component.
#![allow(unreachable_pub)]

mod api;
mod app;
mod clock;
mod components;
mod connection;
mod live;
mod pages;
mod paths;
mod trend;

fn main() {
    // The page shows "Loading…" until the app takes over.
    if let Some(boot) = leptos::prelude::document().get_element_by_id("boot") {
        boot.remove();
    }
    leptos::mount::mount_to_body(app::App);
}

//! The dashboard's pure logic: everything that turns numbers into chart
//! geometry or text, with no browser in sight.
//!
//! The dashboard itself (`ui/`, crate `conduit-ui`) only builds for
//! `wasm32-unknown-unknown`, so the code worth unit-testing lives here,
//! std-only, and runs in the native test suite:
//!
//! - [`scale`]: data values to pixels and back.
//! - [`ticks`]: where axis ticks go (1-2-5 steps, clock-aligned times).
//! - [`path`]: SVG path data for lines and areas, with gaps where data is
//!   missing.
//! - [`labels`]: where tick labels go so they stay inside the plot.
//! - [`graph`]: the layout of a Deployment's callers and callees.
//! - [`format`]: rates, percentages, latencies, bytes and clock times as
//!   people read them.
//! - [`health`]: the colour a success rate gets.
//! - [`series`]: time series that merge history with live points.
//! - [`order`]: table sorting with missing values last.

pub mod format;
pub mod graph;
pub mod health;
pub mod labels;
pub mod order;
pub mod path;
pub mod scale;
pub mod series;
pub mod ticks;

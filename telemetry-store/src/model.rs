//! The store's vocabulary: what a sample, a series handle, a series'
//! kind and a histogram window are.
//!
//! The head, the WAL, the blocks, ingest and queries all speak of these;
//! kept in one place, none of those modules has to import another just
//! to name a sample.

pub(crate) mod window;

pub(crate) use window::{CorruptWindow, Window};

/// A sample of a float series: milliseconds since 1970 and value.
pub(crate) type Sample = crate::encoding::Sample;

/// A series' handle in the head and the WAL; never reused while the
/// process runs, and restored from the WAL on restart.
pub(crate) type SeriesRef = u64;

/// What a series holds: float samples, or histogram windows. Each kind
/// has its own index, so PromQL only ever sees float series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    Float,
    Histogram,
}

//! Building blocks the pages share.

pub(crate) mod chart;
pub(crate) mod metric;
pub(crate) mod sparkline;
pub(crate) mod status;

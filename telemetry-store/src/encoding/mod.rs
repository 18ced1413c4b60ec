//! The bit-level encodings of samples: the bit stream, Gorilla's codes,
//! the open chunk's varbit code, varints and the block columns.
//!
//! They sit apart from the head, the WAL and the blocks because all three
//! share them and because a format change must be seen as one: nothing
//! here knows about series, locks or files, so the encodings can be tested
//! and fuzzed on bytes alone, and the modules that store data depend on
//! them, never the other way round.

pub(crate) mod bits;
pub(crate) mod columns;
pub(crate) mod gorilla;
pub(crate) mod varbit;
pub(crate) mod varint;

/// A sample as the encodings see it: milliseconds and value.
pub(crate) type Sample = (i64, f64);

//! A remote-write request's series, gathered before any of them is looked
//! up, so the head finds them all in one batched pass
//! ([`Head::find_many`](crate::head::Head::find_many)) instead of one
//! cache miss after another.

use std::cell::RefCell;
use std::ops::Range;

use crate::head::labels::encode_raw_into;
use crate::head::{SeriesKey, hash_encoded};
use crate::model::{Kind, Sample};

/// Buffers bigger than this are not kept for the next request.
const KEPT_BYTES: usize = 4 << 20;

/// Series in request order: label sets in compact form and samples, each
/// back to back in one buffer.
#[derive(Default)]
pub(crate) struct Gathered {
    encoded: Vec<u8>,
    samples: Vec<Sample>,
    series: Vec<Entry>,
}

struct Entry {
    hash: u64,
    encoded: Range<usize>,
    samples: Range<usize>,
}

thread_local! {
    /// Each thread's buffers: a request's label sets are a few hundred
    /// kilobytes, above malloc's mmap threshold (see `with_decompressed`).
    static GATHERED: RefCell<Gathered> = RefCell::default();
}

/// Runs `f` on this thread's empty, reused [`Gathered`].
pub(crate) fn with_gathered<T>(f: impl FnOnce(&mut Gathered) -> T) -> T {
    GATHERED.with_borrow_mut(|g| {
        g.encoded.clear();
        g.samples.clear();
        g.series.clear();
        let out = f(g);
        let bytes = g.encoded.capacity()
            + g.samples.capacity() * size_of::<Sample>()
            + g.series.capacity() * size_of::<Entry>();
        if bytes > KEPT_BYTES {
            *g = Gathered::default();
        }
        out
    })
}

impl Gathered {
    /// Adds a series given its name-sorted label pairs. Returns false, and
    /// adds nothing, when a label holds a 0xfe or 0xff byte: the compact
    /// form cannot carry it, and no valid (UTF-8) label has one.
    pub(crate) fn push<'a>(
        &mut self,
        sorted: impl Iterator<Item = (&'a [u8], &'a [u8])>,
        samples: &[Sample],
    ) -> bool {
        let start = self.encoded.len();
        if !encode_raw_into(sorted, &mut self.encoded) {
            self.encoded.truncate(start);
            return false;
        }
        let first_sample = self.samples.len();
        self.samples.extend_from_slice(samples);
        self.series.push(Entry {
            hash: hash_encoded(&self.encoded[start..], Kind::Float),
            encoded: start..self.encoded.len(),
            samples: first_sample..self.samples.len(),
        });
        true
    }

    /// The keys to look the series up by, in order.
    pub(crate) fn keys(&self) -> Vec<SeriesKey<'_>> {
        self.series
            .iter()
            .map(|e| SeriesKey {
                hash: e.hash,
                encoded: &self.encoded[e.encoded.clone()],
            })
            .collect()
    }

    /// Each series' samples, in the order of [`Self::keys`].
    pub(crate) fn samples(&self) -> impl Iterator<Item = &[Sample]> {
        self.series.iter().map(|e| &self.samples[e.samples.clone()])
    }

    pub(crate) fn sample_count(&self) -> usize {
        self.samples.len()
    }
}

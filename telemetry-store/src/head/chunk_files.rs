//! Where frozen head chunks live: appended to one file per block range
//! in the data directory, as Prometheus memory-maps its full head chunks.
//!
//! Frozen chunks are most of the head and are read rarely (queries over
//! the last block range, and the block cut). Kept in the heap, a buffer per
//! series, every freeze reallocated one and a cut freed hours of small
//! allocations scattered among live ones; glibc returns a page only once
//! nothing on it is live, so resident memory stayed near its peak. In a
//! file they sit in the page cache, which the kernel can reclaim, and
//! reading one back is a `pread` of a few hundred bytes at most.
//!
//! A file holds the chunks whose last sample falls in one block range. A
//! cut drops every chunk whose last sample is before the cut, which is
//! every chunk of the ranges before it, so their files are closed whole.
//! The files are unlinked as they are made: nothing is left behind by a
//! crash, and the head is rebuilt from the WAL anyway. A chunk whose file
//! cannot be written (a full disk) stays in memory and is counted.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The chunk files being appended to, one per block range.
pub(crate) struct ChunkFiles {
    range_ms: i64,
    dir: PathBuf,
    filling: Mutex<HashMap<i64, Filling>>,
    in_memory: AtomicU64,
}

struct Filling {
    source: Arc<Source>,
    used: u32,
}

enum Source {
    File(File),
    /// One chunk that could not be written to a file.
    Memory(Box<[u8]>),
}

/// One chunk's bytes: where they are, and how to read them back.
pub(crate) struct Stored {
    source: Arc<Source>,
    start: u32,
    len: u32,
}

impl ChunkFiles {
    /// Chunk files in `dir` for a head cut into blocks of `range_ms`.
    pub(crate) fn new(range_ms: i64, dir: PathBuf) -> Self {
        Self {
            range_ms: range_ms.max(1),
            dir,
            filling: Mutex::default(),
            in_memory: AtomicU64::new(0),
        }
    }

    /// Stores one chunk, `parts` in order, whose last sample is at `max_t`.
    pub(crate) fn store(&self, max_t: i64, parts: &[&[u8]]) -> Stored {
        let bytes = parts.concat();
        match self.append(max_t, &bytes) {
            Ok(stored) => stored,
            Err(e) => {
                if self.in_memory.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(
                        dir = %self.dir.display(),
                        error = %e,
                        "cannot write head chunks to disk; keeping them in memory (check free space)"
                    );
                }
                Stored {
                    start: 0,
                    len: len_u32(bytes.len()),
                    source: Arc::new(Source::Memory(bytes.into_boxed_slice())),
                }
            }
        }
    }

    fn append(&self, max_t: i64, bytes: &[u8]) -> io::Result<Stored> {
        let len = len_u32(bytes.len());
        let range = max_t.div_euclid(self.range_ms);
        // Reserve the bytes under the lock, write them after it: `pwrite`s
        // to distinct offsets need no ordering.
        let (source, start) = {
            let mut filling = self.filling.lock().unwrap_or_else(|e| e.into_inner());
            let full = |f: &Filling| f.used.checked_add(len).is_none();
            if filling.get(&range).is_none_or(full) {
                filling.insert(range, Filling::create(&self.dir)?);
            }
            let f = filling.get_mut(&range).expect("inserted above");
            let start = f.used;
            f.used += len;
            (f.source.clone(), start)
        };
        let Source::File(file) = source.as_ref() else {
            unreachable!("a range fills a file");
        };
        file.write_all_at(bytes, start.into())?;
        Ok(Stored { source, start, len })
    }

    /// Stops appending to the files of ranges that end at or before `t`:
    /// the head holds nothing of them any more once truncated to `t`, and
    /// each file closes with its last chunk.
    pub(crate) fn release_before(&self, t: i64) {
        let range_ms = self.range_ms;
        self.filling
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|range, _| (range + 1).saturating_mul(range_ms) > t);
    }

    /// Chunks kept in memory because their file could not be written.
    pub(crate) fn in_memory(&self) -> u64 {
        self.in_memory.load(Ordering::Relaxed)
    }
}

impl Filling {
    fn create(dir: &std::path::Path) -> io::Result<Self> {
        Ok(Self {
            source: Arc::new(Source::File(tempfile::tempfile_in(dir)?)),
            used: 0,
        })
    }
}

fn len_u32(len: usize) -> u32 {
    u32::try_from(len).expect("a chunk is a few kilobytes at most")
}

impl Stored {
    pub(crate) fn len(&self) -> usize {
        self.len as usize
    }

    /// Replaces `out` with the chunk's bytes.
    pub(crate) fn read_into(&self, out: &mut Vec<u8>) -> io::Result<()> {
        out.clear();
        match self.source.as_ref() {
            Source::Memory(bytes) => out.extend_from_slice(bytes),
            Source::File(file) => {
                out.resize(self.len(), 0);
                file.read_exact_at(out, self.start.into())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(s: &Stored) -> Vec<u8> {
        let mut out = Vec::new();
        s.read_into(&mut out).unwrap();
        out
    }

    #[test]
    fn chunks_of_a_range_share_a_file_that_closes_with_its_last_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let files = ChunkFiles::new(1000, dir.path().to_path_buf());
        let a = files.store(10, &[b"abc", b"de"]);
        let b = files.store(999, &[b"fgh"]);
        let c = files.store(1000, &[b"next range"]);
        assert_eq!(bytes(&a), b"abcde");
        assert_eq!(bytes(&b), b"fgh");
        assert_eq!(bytes(&c), b"next range");
        assert!(Arc::ptr_eq(&a.source, &b.source), "same range, same file");
        assert!(
            !Arc::ptr_eq(&a.source, &c.source),
            "another range, another file"
        );
        assert!(
            matches!(a.source.as_ref(), Source::File(_)),
            "not in memory"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the files are unlinked"
        );

        let weak = Arc::downgrade(&a.source);
        files.release_before(1000);
        drop((a, b));
        assert!(weak.upgrade().is_none(), "the cut range's file is closed");
        assert_eq!(bytes(&c), b"next range", "later ranges are untouched");
    }

    #[test]
    fn a_chunk_that_cannot_be_written_stays_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("removed");
        let files = ChunkFiles::new(1000, gone);
        let s = files.store(5, &[b"kept", b" anyway"]);
        assert_eq!(bytes(&s), b"kept anyway");
        assert!(matches!(s.source.as_ref(), Source::Memory(_)));
        assert_eq!(files.in_memory(), 1);
    }
}

//! Reading the WAL as it grows, from a position: how remote-write out
//! uses the WAL as its persistent queue.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{FRAME_HEADER, MAX_FRAME, Record, list, read_frames, segment_path};

/// A place in the WAL: a segment and a byte offset in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Position {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
}

pub(crate) struct Tail {
    dir: PathBuf,
    pub(crate) pos: Position,
}

/// Records read, each with the position right after it.
#[derive(Default)]
pub(crate) struct TailRead {
    pub(crate) records: Vec<(Record, Position)>,
    /// Segments that were gone before being read (WAL truncated past a
    /// lagging reader).
    pub(crate) skipped_segments: u64,
}

impl Tail {
    pub(crate) fn new(dir: &Path, pos: Position) -> Self {
        Self {
            dir: dir.to_path_buf(),
            pos,
        }
    }

    /// The oldest position still in the WAL.
    pub(crate) fn oldest(dir: &Path) -> io::Result<Position> {
        let (checkpoint, segments) = list(dir)?;
        let segment = segments
            .first()
            .map(|s| s.0)
            .or(checkpoint.map(|c| c.0))
            .unwrap_or(0);
        Ok(Position { segment, offset: 0 })
    }

    /// Series records of the newest checkpoint.
    pub(crate) fn checkpoint(dir: &Path) -> io::Result<Vec<Record>> {
        let (checkpoint, _) = list(dir)?;
        let mut out = Vec::new();
        if let Some((_, path)) = checkpoint {
            read_frames(&std::fs::read(path)?, |r| out.push(r));
        }
        Ok(out)
    }

    /// Up to about `max_bytes` of complete records after the position,
    /// moving on to the next segment when one is finished.
    pub(crate) fn read(&mut self, max_bytes: usize) -> io::Result<TailRead> {
        let mut out = TailRead::default();
        let (_, segments) = list(&self.dir)?;
        let Some(&(last, _)) = segments.last() else {
            return Ok(out);
        };
        if !segments.iter().any(|s| s.0 == self.pos.segment) {
            match segments.iter().find(|s| s.0 > self.pos.segment) {
                Some(&(next, _)) => {
                    out.skipped_segments = next - self.pos.segment;
                    self.pos = Position {
                        segment: next,
                        offset: 0,
                    };
                }
                None => return Ok(out),
            }
        }
        let mut file = File::open(segment_path(&self.dir, self.pos.segment))?;
        let len = file.metadata()?.len();
        if self.pos.offset >= len {
            if self.pos.segment < last {
                self.pos = Position {
                    segment: self.pos.segment + 1,
                    offset: 0,
                };
            }
            return Ok(out);
        }
        file.seek(SeekFrom::Start(self.pos.offset))?;
        let want = (len - self.pos.offset)
            .min(max_bytes.max(FRAME_HEADER + MAX_FRAME.min(16 << 20)) as u64);
        let mut buf = Vec::with_capacity(want as usize);
        file.take(want).read_to_end(&mut buf)?;
        let mut consumed = 0usize;
        let mut records = Vec::new();
        let (good, _) = read_frames(&buf, |r| records.push(r));
        // Positions after each record: re-walk the frame lengths.
        for r in records {
            let len = u32::from_le_bytes(buf[consumed..consumed + 4].try_into().expect("4 bytes"))
                as usize;
            consumed += FRAME_HEADER + len;
            out.records.push((
                r,
                Position {
                    segment: self.pos.segment,
                    offset: self.pos.offset + consumed as u64,
                },
            ));
        }
        debug_assert_eq!(consumed, good);
        self.pos.offset += good as u64;
        // A partial frame at the end of an older segment is a torn write
        // the WAL already repaired past: go on with the next segment.
        if good == 0 && self.pos.segment < last && buf.len() as u64 == len - (self.pos.offset) {
            self.pos = Position {
                segment: self.pos.segment + 1,
                offset: 0,
            };
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::{FsyncPolicy, Wal, record};

    fn samples(t: i64) -> Vec<u8> {
        let mut buf = Vec::new();
        record::encode_samples(&mut buf, &[(1, t, 1.0)]);
        buf
    }

    #[test]
    fn follows_appends_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), FsyncPolicy::Never, |_| {}).unwrap();
        let mut tail = Tail::new(dir.path(), Tail::oldest(dir.path()).unwrap());
        assert!(tail.read(1 << 20).unwrap().records.is_empty());
        wal.log(&samples(1), Some(1)).unwrap();
        wal.log(&samples(2), Some(2)).unwrap();
        let r = tail.read(1 << 20).unwrap();
        assert_eq!(
            r.records
                .iter()
                .filter_map(|(r, _)| r.max_t())
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        let pos = r.records.last().unwrap().1;
        wal.rotate().unwrap();
        wal.log(&samples(3), Some(3)).unwrap();
        // The end of segment 0, then segment 1.
        let mut times = Vec::new();
        for _ in 0..3 {
            times.extend(
                tail.read(1 << 20)
                    .unwrap()
                    .records
                    .iter()
                    .filter_map(|(r, _)| r.max_t()),
            );
        }
        assert_eq!(times, vec![3]);
        // A reader restarted at a saved position sees only what follows.
        let mut again = Tail::new(dir.path(), pos);
        let mut times = Vec::new();
        for _ in 0..3 {
            times.extend(
                again
                    .read(1 << 20)
                    .unwrap()
                    .records
                    .iter()
                    .filter_map(|(r, _)| r.max_t()),
            );
        }
        assert_eq!(times, vec![3]);
    }
}

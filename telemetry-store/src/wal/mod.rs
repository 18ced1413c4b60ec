//! The write-ahead log: every accepted sample is written here before it is
//! acknowledged, and replayed into the head after a restart.
//!
//! The log is a directory of numbered segments of framed records
//! (`len u32 | crc32 u32 | payload`). A crash can leave a torn frame at the
//! end: replay stops there, truncates the segment to its last good frame,
//! removes anything after it and logs a warning — it never refuses to
//! start. When the head is cut into a block, segments holding only older
//! data are deleted and a checkpoint keeps the series records they held.
//!
//! A write that fails while the store runs (a full disk, an I/O error)
//! must not leave a torn frame either: replay would stop there and drop
//! every acknowledged frame written after it. A batch's frames are written
//! together and cut off again if any part fails; if even that fails, or an
//! fsync fails, the log refuses writes until it can cut or sync again.

pub(crate) mod record;
pub(crate) mod tail;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub(crate) use record::Record;

/// When the log is flushed to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FsyncPolicy {
    /// fsync before acknowledging every write: survives power loss.
    Always,
    /// fsync in the background every `--wal-fsync-interval`: a process
    /// crash loses nothing, a power loss at most one interval.
    Interval,
    /// Leave flushing to the OS: survives process crashes only.
    Never,
}

const SEGMENT_BYTES: u64 = 64 << 20;
const FRAME_HEADER: usize = 8;
/// A frame larger than this is corruption, not data.
const MAX_FRAME: usize = 256 << 20;
const CHECKPOINT_PREFIX: &str = "checkpoint.";

pub(crate) struct Wal {
    dir: PathBuf,
    file: File,
    segment: u64,
    written: u64,
    /// Largest sample time in each closed or open segment.
    segment_max_t: BTreeMap<u64, i64>,
    policy: FsyncPolicy,
    unsynced: bool,
    frame: Vec<u8>,
    /// Why the log refuses writes, until [`Wal::heal`] repairs it.
    fault: Option<Fault>,
    /// Whether the last write failed (to log a failure once, and its end).
    failing: bool,
    /// fsyncs to fail on purpose, to test what follows.
    #[cfg(test)]
    pub(crate) failing_syncs: usize,
}

/// Why the log takes no writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The current segment may hold a partial frame past this offset.
    Torn { at: u64 },
    /// An fsync failed: written data may not be on disk.
    Sync,
}

/// A record to append, with its largest sample time.
pub(crate) struct Entry<'a> {
    pub(crate) payload: &'a [u8],
    pub(crate) max_t: Option<i64>,
}

/// Segments a truncation drops, planned under the log's lock and carried
/// out after the checkpoint is written without it.
pub(crate) struct Truncation {
    first_kept: u64,
    dropped: Vec<u64>,
}

/// An fsync of the current segment, run outside the log's lock.
pub(crate) struct PendingSync {
    file: File,
    #[cfg(test)]
    fail: bool,
}

impl PendingSync {
    pub(crate) fn run(self) -> io::Result<()> {
        #[cfg(test)]
        if self.fail {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.file.sync_data()
    }
}

/// What replay found.
#[derive(Debug, Default)]
pub(crate) struct ReplayStats {
    pub(crate) records: u64,
    pub(crate) truncated_bytes: u64,
    pub(crate) removed_segments: u64,
}

impl Wal {
    /// Replays the log into `apply` and opens a fresh segment for writing.
    pub(crate) fn open(
        dir: &Path,
        policy: FsyncPolicy,
        mut apply: impl FnMut(Record),
    ) -> io::Result<(Self, ReplayStats)> {
        fs::create_dir_all(dir)?;
        let mut stats = ReplayStats::default();
        let (checkpoint, segments) = list(dir)?;
        if let Some((_, path)) = &checkpoint {
            // A checkpoint is written whole and renamed into place; if it
            // does not read cleanly the disk itself is damaged.
            let data = fs::read(path)?;
            let (good, _) = read_frames(&data, |r| {
                stats.records += 1;
                apply(r)
            });
            if good != data.len() {
                tracing::warn!(path = %path.display(), "WAL checkpoint is damaged; series after byte {good} are lost");
            }
        }
        let mut segment_max_t = BTreeMap::new();
        let mut iter = segments.iter();
        for (n, path) in iter.by_ref() {
            let data = fs::read(path)?;
            let mut max_t = i64::MIN;
            let (good, _) = read_frames(&data, |r| {
                stats.records += 1;
                if let Some(t) = r.max_t() {
                    max_t = max_t.max(t);
                }
                apply(r)
            });
            segment_max_t.insert(*n, max_t);
            if good < data.len() {
                let lost = (data.len() - good) as u64;
                tracing::warn!(
                    segment = %path.display(),
                    lost_bytes = lost,
                    "WAL segment ends with a torn or corrupt record (crash during a write?): truncating it and dropping what follows"
                );
                OpenOptions::new()
                    .write(true)
                    .open(path)?
                    .set_len(good as u64)?;
                stats.truncated_bytes += lost;
                break;
            }
        }
        for (_, path) in iter {
            tracing::warn!(segment = %path.display(), "removing WAL segment after a corrupt one");
            fs::remove_file(path)?;
            stats.removed_segments += 1;
        }
        let next = segment_max_t.keys().next_back().map_or_else(
            || checkpoint.as_ref().map_or(0, |(n, _)| *n),
            |last| last + 1,
        );
        let file = create_segment(dir, next)?;
        segment_max_t.insert(next, i64::MIN);
        Ok((
            Self {
                dir: dir.to_path_buf(),
                file,
                segment: next,
                written: 0,
                segment_max_t,
                policy,
                unsynced: false,
                frame: Vec::new(),
                fault: None,
                failing: false,
                #[cfg(test)]
                failing_syncs: 0,
            },
            stats,
        ))
    }

    /// Appends encoded records, all or none; with [`FsyncPolicy::Always`]
    /// they are on stable storage when this returns. An error leaves
    /// none of them in the log, or the log refusing writes until it could
    /// take them out.
    pub(crate) fn append(&mut self, entries: &[Entry<'_>]) -> io::Result<()> {
        let appended = self.try_append(entries);
        self.note(&appended);
        appended
    }

    fn try_append(&mut self, entries: &[Entry<'_>]) -> io::Result<()> {
        self.heal()?;
        if self.written >= SEGMENT_BYTES {
            self.rotate()?;
        }
        self.frame.clear();
        for e in entries {
            self.frame
                .extend_from_slice(&(e.payload.len() as u32).to_le_bytes());
            self.frame
                .extend_from_slice(&crc32fast::hash(e.payload).to_le_bytes());
            self.frame.extend_from_slice(e.payload);
        }
        let mark = self.written;
        if let Err(e) = self.file.write_all(&self.frame) {
            self.cut_back(mark);
            return Err(e);
        }
        self.written += self.frame.len() as u64;
        if self.policy == FsyncPolicy::Always
            && let Err(e) = self.sync_now()
        {
            self.cut_back(mark);
            self.fault.get_or_insert(Fault::Sync);
            return Err(e);
        }
        self.unsynced |= self.policy == FsyncPolicy::Interval;
        let segment_max = self.segment_max_t.entry(self.segment).or_insert(i64::MIN);
        for t in entries.iter().filter_map(|e| e.max_t) {
            *segment_max = (*segment_max).max(t);
        }
        Ok(())
    }

    /// Takes back what was written past `mark`; if even that fails, the
    /// log refuses writes until it can.
    fn cut_back(&mut self, mark: u64) {
        match self.file.set_len(mark) {
            Ok(()) => self.written = mark,
            Err(e) => {
                tracing::error!(
                    segment = self.segment,
                    error = %e,
                    "cannot cut a failed write off the WAL; refusing writes until it can be"
                );
                self.fault = Some(Fault::Torn { at: mark });
            }
        }
    }

    /// Repairs a fault if it can now: cuts a torn frame off, or fsyncs.
    /// Writes are refused while it cannot.
    pub(crate) fn heal(&mut self) -> io::Result<()> {
        let Some(fault) = self.fault else {
            return Ok(());
        };
        let healed = match fault {
            Fault::Torn { at } => self.file.set_len(at).map(|()| self.written = at),
            Fault::Sync => self.sync_now(),
        };
        healed.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("the WAL refuses writes since a write or fsync failed, and still cannot repair it: {e}"),
            )
        })?;
        tracing::info!(?fault, "the WAL is repaired and takes writes again");
        self.fault = None;
        Ok(())
    }

    /// One record, for tests.
    #[cfg(test)]
    pub(crate) fn log(&mut self, payload: &[u8], max_t: Option<i64>) -> io::Result<()> {
        self.append(&[Entry { payload, max_t }])
    }

    /// A whole truncation, for tests.
    #[cfg(test)]
    pub(crate) fn truncate(
        &mut self,
        before: i64,
        series_records: &[Vec<u8>],
        keep_from: u64,
    ) -> io::Result<usize> {
        let t = self.plan_truncation(before, keep_from)?;
        if t.drops_nothing() {
            return Ok(0);
        }
        t.carry_out(&self.dir, series_records)?;
        Ok(self.finish_truncation(&t))
    }

    /// Logs the first failure of a run of them, and its end.
    fn note(&mut self, result: &io::Result<()>) {
        match result {
            Err(e) if !self.failing => {
                self.failing = true;
                let hint = if e.kind() == io::ErrorKind::StorageFull {
                    "the disk is full: writes get 503 and nothing is lost; free space and the store resumes by itself"
                } else {
                    "writes get 503 until it works again"
                };
                tracing::error!(dir = %self.dir.display(), error = %e, "cannot write the WAL: {hint}");
            }
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!(dir = %self.dir.display(), "the WAL takes writes again");
            }
            _ => {}
        }
    }

    /// A failed fsync outside the lock (see [`Self::take_unsynced`]):
    /// writes are refused until an fsync works.
    pub(crate) fn sync_failed(&mut self, e: &io::Error) {
        if self.fault.is_none() {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot fsync the WAL: refusing writes until it can");
            self.fault = Some(Fault::Sync);
        }
    }

    fn sync_now(&mut self) -> io::Result<()> {
        #[cfg(test)]
        if self.failing_syncs > 0 {
            self.failing_syncs -= 1;
            return Err(io::Error::other("injected fsync failure"));
        }
        self.file.sync_data()
    }

    /// A handle to fsync the current segment outside the log's lock, when
    /// there is something to sync.
    pub(crate) fn take_unsynced(&mut self) -> Option<io::Result<PendingSync>> {
        if !self.unsynced {
            return None;
        }
        self.unsynced = false;
        #[cfg(test)]
        let fail = self.failing_syncs > 0;
        #[cfg(test)]
        {
            self.failing_syncs = self.failing_syncs.saturating_sub(1);
        }
        Some(self.file.try_clone().map(|file| PendingSync {
            file,
            #[cfg(test)]
            fail,
        }))
    }

    /// Closes the current segment and opens the next; on failure the
    /// current one stays open.
    fn rotate(&mut self) -> io::Result<()> {
        if self.policy != FsyncPolicy::Never {
            self.sync_now()?;
        }
        let file = create_segment(&self.dir, self.segment + 1)?;
        self.segment += 1;
        self.file = file;
        self.segment_max_t.insert(self.segment, i64::MIN);
        self.written = 0;
        self.unsynced = false;
        Ok(())
    }

    /// Plans dropping the oldest segments whose samples all precede
    /// `before` (they are in a block now), sparing `keep_from` and later:
    /// closes the current segment so that every record written from now
    /// on is in a kept one.
    pub(crate) fn plan_truncation(
        &mut self,
        before: i64,
        keep_from: u64,
    ) -> io::Result<Truncation> {
        self.heal()?;
        self.rotate()?;
        let first_kept = self
            .segment_max_t
            .iter()
            .find(|(_, max_t)| **max_t >= before)
            .map_or(self.segment, |(n, _)| *n)
            .min(keep_from);
        let dropped = self
            .segment_max_t
            .range(..first_kept)
            .map(|(n, _)| *n)
            .collect();
        Ok(Truncation {
            first_kept,
            dropped,
        })
    }

    /// Forgets the segments a truncation dropped once its checkpoint is
    /// written; returns how many.
    pub(crate) fn finish_truncation(&mut self, t: &Truncation) -> usize {
        for n in &t.dropped {
            self.segment_max_t.remove(n);
        }
        t.dropped.len()
    }

    pub(crate) fn disk_bytes(&self) -> u64 {
        fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

impl Truncation {
    pub(crate) fn drops_nothing(&self) -> bool {
        self.dropped.is_empty()
    }

    /// Writes the checkpoint of `series_records` (encoded series records
    /// of every live series) and deletes the dropped segments and older
    /// checkpoints. Needs no lock: the segments it touches are closed.
    pub(crate) fn carry_out(&self, dir: &Path, series_records: &[Vec<u8>]) -> io::Result<()> {
        let name = format!("{CHECKPOINT_PREFIX}{:08}", self.first_kept);
        let tmp = dir.join(format!("{name}.tmp"));
        let written = write_checkpoint(&tmp, series_records);
        if let Err(e) = written {
            // A full disk must not fill up further with attempts.
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, dir.join(&name))?;
        sync_dir(dir)?;
        let (checkpoint, _) = list(dir)?;
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            let file = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let old_checkpoint = file.starts_with(CHECKPOINT_PREFIX)
                && checkpoint.as_ref().is_some_and(|(_, p)| *p != path)
                && !file.ends_with(".tmp");
            if old_checkpoint {
                fs::remove_file(&path)?;
            }
        }
        for n in &self.dropped {
            match fs::remove_file(segment_path(dir, *n)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

fn write_checkpoint(path: &Path, series_records: &[Vec<u8>]) -> io::Result<()> {
    let mut f = File::create(path)?;
    for payload in series_records {
        let mut frame = Vec::with_capacity(payload.len() + FRAME_HEADER);
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        frame.extend_from_slice(payload);
        f.write_all(&frame)?;
    }
    f.sync_all()
}

/// Reads frames until the first bad one; returns the length of the good
/// prefix and whether it covered the whole buffer.
pub(crate) fn read_frames(data: &[u8], mut apply: impl FnMut(Record)) -> (usize, bool) {
    let mut pos = 0;
    while pos < data.len() {
        let Some(header) = data.get(pos..pos + FRAME_HEADER) else {
            return (pos, false);
        };
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len > MAX_FRAME {
            return (pos, false);
        }
        let Some(payload) = data.get(pos + FRAME_HEADER..pos + FRAME_HEADER + len) else {
            return (pos, false);
        };
        if crc32fast::hash(payload) != crc {
            return (pos, false);
        }
        match record::decode(payload) {
            Ok(r) => apply(r),
            Err(_) => return (pos, false),
        }
        pos += FRAME_HEADER + len;
    }
    (pos, true)
}

type Listing = (Option<(u64, PathBuf)>, Vec<(u64, PathBuf)>);

/// The newest checkpoint and the segments not older than it, in order.
pub(crate) fn list(dir: &Path) -> io::Result<Listing> {
    let mut checkpoint: Option<(u64, PathBuf)> = None;
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(n) = name
            .strip_prefix(CHECKPOINT_PREFIX)
            .and_then(|n| n.parse::<u64>().ok())
        {
            if checkpoint.as_ref().is_none_or(|(c, _)| n > *c) {
                checkpoint = Some((n, path));
            }
        } else if let Ok(n) = name.parse::<u64>() {
            segments.push((n, path));
        } else if name.ends_with(".tmp") {
            fs::remove_file(&path)?;
        }
    }
    segments.sort();
    if let Some((c, _)) = &checkpoint {
        segments.retain(|(n, _)| n >= c);
    }
    Ok((checkpoint, segments))
}

pub(crate) fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:08}"))
}

fn create_segment(dir: &Path, n: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(segment_path(dir, n))?;
    sync_dir(dir)?;
    Ok(file)
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;
    use conduit_api::Labels;

    fn samples(n: usize, t0: i64) -> Vec<u8> {
        let s: Vec<_> = (0..n).map(|i| (1, t0 + i as i64, i as f64)).collect();
        let mut buf = Vec::new();
        record::encode_samples(&mut buf, &s);
        buf
    }

    fn replay(dir: &Path) -> (Vec<Record>, ReplayStats) {
        let mut out = Vec::new();
        let (_, stats) = Wal::open(dir, FsyncPolicy::Never, |r| out.push(r)).unwrap();
        (out, stats)
    }

    #[test]
    fn torn_tail_is_truncated_with_everything_before_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = Wal::open(dir.path(), FsyncPolicy::Always, |_| {}).unwrap();
            for i in 0..10 {
                wal.log(&samples(5, i * 100), Some(i * 100 + 4)).unwrap();
            }
        }
        let seg = segment_path(dir.path(), 0);
        let len = fs::metadata(&seg).unwrap().len();
        // Half of the last frame is missing, as after a crash mid-write.
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 20)
            .unwrap();
        let (records, stats) = replay(dir.path());
        assert_eq!(records.len(), 9);
        assert!(stats.truncated_bytes > 0);
        // The repair is durable: a second replay sees a clean log.
        let (records, stats) = replay(dir.path());
        assert_eq!(records.len(), 9);
        assert_eq!(stats.truncated_bytes, 0);
    }

    #[test]
    fn corrupt_middle_drops_the_rest_without_failing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut wal, _) = Wal::open(dir.path(), FsyncPolicy::Never, |_| {}).unwrap();
            for i in 0..4 {
                wal.log(&samples(3, i), Some(i)).unwrap();
            }
        }
        let seg = segment_path(dir.path(), 0);
        let mut data = fs::read(&seg).unwrap();
        let frame = data.len() / 4;
        data[frame + 12] ^= 0xff;
        fs::write(&seg, data).unwrap();
        // A later segment (written by the next start) goes too.
        fs::write(segment_path(dir.path(), 1), b"garbage").unwrap();
        let (records, stats) = replay(dir.path());
        assert_eq!(records.len(), 1);
        assert_eq!(stats.removed_segments, 1);
    }

    #[test]
    fn truncation_keeps_series_in_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let labels = Labels::try_from_pairs([("__name__", "x")]).unwrap();
        let mut series = Vec::new();
        record::encode_series(
            &mut series,
            [(1, Kind::Float, record::pairs(&labels))].into_iter(),
        );
        {
            let (mut wal, _) = Wal::open(dir.path(), FsyncPolicy::Never, |_| {}).unwrap();
            wal.log(&series, None).unwrap();
            wal.log(&samples(3, 0), Some(2)).unwrap();
            wal.rotate().unwrap();
            wal.log(&samples(3, 1000), Some(1002)).unwrap();
            assert_eq!(wal.truncate(500, &[series.clone()], u64::MAX).unwrap(), 1);
        }
        let (records, _) = replay(dir.path());
        assert_eq!(records[0], Record::Series(vec![(1, Kind::Float, labels)]));
        let sample_times: Vec<i64> = records.iter().filter_map(Record::max_t).collect();
        assert_eq!(sample_times, vec![1002]);
    }
}

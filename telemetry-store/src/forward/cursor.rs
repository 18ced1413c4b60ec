//! Where remote write out stands in the WAL: `remote-write/cursor` holds
//! one `segment offset` line per shard, each the position up to which
//! every sample of that shard's series is acknowledged. A restart resumes
//! each shard at its own line, so what one shard had acknowledged is not
//! sent again because another shard was behind.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::db::Db;
use crate::wal::tail::{Position, Tail};

pub(crate) struct Cursor {
    file: PathBuf,
    db: Arc<Db>,
    acked: Mutex<Vec<Position>>,
}

impl Cursor {
    /// The saved positions of `shards` shards. Without a file, every shard
    /// starts at the oldest WAL data; a file saved with another number of
    /// shards (or unreadable) resumes every shard at its oldest line, as
    /// the series now fall to other shards.
    pub(crate) fn load(
        file: PathBuf,
        wal_dir: &Path,
        db: Arc<Db>,
        shards: usize,
    ) -> anyhow::Result<Self> {
        let saved = match std::fs::read_to_string(&file) {
            Ok(s) => parse(&s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let acked = match saved {
            Some(lines) if lines.len() == shards => lines,
            Some(lines) if !lines.is_empty() => {
                tracing::info!(
                    saved = lines.len(),
                    shards,
                    "the remote-write cursor was saved with another number of shards; resuming all at its oldest position (some samples may be sent twice)"
                );
                vec![*lines.iter().min().expect("not empty"); shards]
            }
            Some(_) => vec![Tail::oldest(wal_dir)?; shards],
            None => {
                tracing::warn!(file = %file.display(), "unreadable remote-write cursor; starting from the oldest WAL data");
                vec![Tail::oldest(wal_dir)?; shards]
            }
        };
        let cursor = Self {
            file,
            db,
            acked: Mutex::new(acked),
        };
        cursor.db.protect_wal_from(cursor.oldest().segment);
        Ok(cursor)
    }

    pub(crate) fn positions(&self) -> Vec<Position> {
        self.lock().clone()
    }

    /// Where the WAL is not forwarded yet by at least one shard.
    pub(crate) fn oldest(&self) -> Position {
        oldest(&self.lock())
    }

    /// Records that `shard` has everything up to `pos` acknowledged, on
    /// disk before it returns, and lets the WAL go below every shard.
    pub(crate) fn ack(&self, shard: usize, pos: Position) -> anyhow::Result<()> {
        let mut acked = self.lock();
        if acked[shard] >= pos {
            return Ok(());
        }
        acked[shard] = pos;
        let text: String = acked
            .iter()
            .map(|p| format!("{} {}\n", p.segment, p.offset))
            .collect();
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.file)?;
        self.db.protect_wal_from(oldest(&acked).segment);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Position>> {
        self.acked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn oldest(acked: &[Position]) -> Position {
    acked.iter().min().copied().unwrap_or_default()
}

/// The file's positions, `None` when a line is not `segment offset`.
fn parse(s: &str) -> Option<Vec<Position>> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut it = l.split_whitespace().map(str::parse::<u64>);
            match (it.next(), it.next(), it.next()) {
                (Some(Ok(segment)), Some(Ok(offset)), None) => Some(Position { segment, offset }),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_one_line_per_shard() {
        let p = |segment, offset| Position { segment, offset };
        assert_eq!(parse("3 120\n4 8\n"), Some(vec![p(3, 120), p(4, 8)]));
        // A cursor from before shards: one line.
        assert_eq!(parse("7 0\n"), Some(vec![p(7, 0)]));
        assert_eq!(parse(""), Some(vec![]));
        assert_eq!(parse("3 x\n"), None);
        assert_eq!(parse("3 1 2\n"), None);
    }
}

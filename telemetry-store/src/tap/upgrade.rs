//! An index an older store wrote (with fewer fields) is rebuilt, not
//! refused: every document stores its whole event, so the current schema's
//! documents are made again from those, and an upgrade keeps the history.
//!
//! The rebuild is written beside the index and swapped in by two renames;
//! a store stopped between them finds the old index under `.old` and puts
//! it back before trying again.

use std::fs;
use std::path::{Path, PathBuf};

use conduit_api::proto::tap::v1::TapEvent;
use prost::Message;
use tantivy::directory::MmapDirectory;
use tantivy::schema::{Schema, Value};
use tantivy::{DocAddress, Index, TantivyDocument};

use super::schema::Fields;

/// The stored field every version of the schema has.
const EVENT: &str = "event";

/// Rebuilds the index in `dir` when it was written with another schema;
/// returns how many events it carried over, or `None` when there was
/// nothing to do.
pub(super) fn upgrade(
    dir: &Path,
    schema: &Schema,
    fields: &Fields,
    writer_memory: usize,
) -> Result<Option<u64>, String> {
    let retired = sibling(dir, "old");
    if !dir.exists() && retired.exists() {
        fs::rename(&retired, dir).map_err(|e| e.to_string())?;
    }
    let found = MmapDirectory::open(dir).map_err(|e| e.to_string())?;
    if !Index::exists(&found).map_err(|e| e.to_string())? {
        return Ok(None);
    }
    let old = Index::open(found).map_err(|e| e.to_string())?;
    if old.schema() == *schema {
        return Ok(None);
    }
    let rebuilt = sibling(dir, "rebuild");
    if rebuilt.exists() {
        fs::remove_dir_all(&rebuilt).map_err(|e| e.to_string())?;
    }
    fs::create_dir_all(&rebuilt).map_err(|e| e.to_string())?;
    let carried = copy_events(&old, &rebuilt, schema, fields, writer_memory)?;
    drop(old);
    fs::rename(dir, &retired).map_err(|e| e.to_string())?;
    fs::rename(&rebuilt, dir).map_err(|e| e.to_string())?;
    fs::remove_dir_all(&retired).map_err(|e| e.to_string())?;
    Ok(Some(carried))
}

/// Writes every live event of `old` into a new index at `to`.
fn copy_events(
    old: &Index,
    to: &Path,
    schema: &Schema,
    fields: &Fields,
    writer_memory: usize,
) -> Result<u64, String> {
    let err = |e: tantivy::TantivyError| e.to_string();
    let event = old.schema().get_field(EVENT).map_err(err)?;
    let new = Index::create_in_dir(to, schema.clone()).map_err(err)?;
    let mut writer = new.writer_with_num_threads(1, writer_memory).map_err(err)?;
    let searcher = old.reader().map_err(err)?.searcher();
    let mut carried = 0;
    for (ord, segment) in searcher.segment_readers().iter().enumerate() {
        for doc in segment.doc_ids_alive() {
            let d: TantivyDocument = searcher
                .doc(DocAddress::new(ord as u32, doc))
                .map_err(err)?;
            let Some(e) = d
                .get_first(event)
                .and_then(|v| v.as_bytes())
                .and_then(|b| TapEvent::decode(b).ok())
            else {
                continue;
            };
            writer.add_document(fields.document(&e)).map_err(err)?;
            carried += 1;
        }
    }
    writer.commit().map_err(err)?;
    writer.wait_merging_threads().map_err(err)?;
    Ok(carried)
}

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    dir.with_file_name(name)
}

//! The checkpointer thread: copies WAL pages back into the database file so the WAL
//! stays small, off the writer's commit path (the writer has auto-checkpoint off, so
//! a commit never waits for a checkpoint's copying and database fsync).
//!
//! It runs a PASSIVE checkpoint (never blocks the writer) when the writer signals that
//! enough commits piled up. Under a write load so constant that passive checkpoints
//! never catch up, the WAL would grow without bound, so past `MAX_WAL_FRAMES` it runs
//! one RESTART checkpoint, which makes the writer wait once for it to finish.

use crossbeam_channel::Receiver;
use rusqlite::Connection;

/// Frames (pages) in the WAL past which a blocking checkpoint bounds its size.
const MAX_WAL_FRAMES: i64 = 16_384;

pub(crate) fn run(conn: Connection, path: String, rx: Receiver<()>) {
    while rx.recv().is_ok() {
        match checkpoint(&conn, "PASSIVE") {
            Ok(log) if log > MAX_WAL_FRAMES => {
                if let Err(e) = checkpoint(&conn, "RESTART") {
                    tracing::warn!(path = %path, error = %e, "WAL restart checkpoint failed");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(path = %path, error = %e, "WAL checkpoint failed"),
        }
    }
}

/// Runs one checkpoint; returns the frames in the WAL.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        r.get::<_, i64>(1)
    })
}

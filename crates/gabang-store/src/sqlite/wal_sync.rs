//! Makes commits durable: one `fdatasync` of the WAL file after each commit.
//!
//! The connections run with `synchronous=NORMAL`, so SQLite itself does not sync at
//! commit. The writer calls [`WalSync::sync`] after every commit and only then
//! publishes the new revision (readers never read past it, see `reader.rs`), sends
//! events and answers the writers: an acknowledged or observed write is on disk.
//! The WAL file lives as long as the writer's connection is open; the handle is
//! checked against the path after every sync and reopened if the file was replaced.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

pub(crate) struct WalSync {
    path: PathBuf,
    file: File,
    ino: u64,
}

impl WalSync {
    /// Opens `<db>-wal` (the writer connection has created it).
    pub(crate) fn open(db: &std::path::Path) -> io::Result<Self> {
        let mut p = db.as_os_str().to_owned();
        p.push("-wal");
        let path = PathBuf::from(p);
        let file = File::open(&path)?;
        let ino = file.metadata()?.ino();
        Ok(Self { path, file, ino })
    }

    /// Flushes the WAL's data to disk.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        let now = std::fs::metadata(&self.path)?.ino();
        if now != self.ino {
            // SQLite replaced the file: sync the new one too.
            let file = File::open(&self.path)?;
            self.ino = file.metadata()?.ino();
            self.file = file;
            self.file.sync_data()?;
        }
        Ok(())
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.path
    }
}

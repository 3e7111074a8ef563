//! Container logs in docker's `json-file` format: one JSON object per line
//! `{"log":"…\n","stream":"stdout","time":"2026-…Z"}`, with size-capped rotation
//! (`container.log` → `container.log.1` → … `container.log.N`).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{IoCtx, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogLine {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Appends log lines, rotating when the current file exceeds `max_size`.
pub struct LogWriter {
    path: PathBuf,
    max_size: u64,
    max_files: u32,
    file: File,
    size: u64,
    /// Partial lines per stream (stdout, stderr).
    partial: [Vec<u8>; 2],
}

pub const DEFAULT_MAX_SIZE: u64 = 10 * 1024 * 1024;
pub const DEFAULT_MAX_FILES: u32 = 3;
const MAX_LINE: usize = 16 * 1024;

impl LogWriter {
    pub fn open(path: &Path, max_size: u64, max_files: u32) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .at(path)?;
        let size = file.metadata().at(path)?.len();
        Ok(Self {
            path: path.to_owned(),
            max_size,
            max_files: max_files.max(1),
            file,
            size,
            partial: [Vec::new(), Vec::new()],
        })
    }

    /// Feed raw bytes from stream 0 (stdout) or 1 (stderr).
    pub fn feed(&mut self, stream: usize, data: &[u8]) -> Result<()> {
        let mut buf = std::mem::take(&mut self.partial[stream]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') {
            let end = start + nl + 1;
            self.write_line(stream, &buf[start..end])?;
            start = end;
        }
        let mut rest = buf.split_off(start);
        while rest.len() >= MAX_LINE {
            let tail = rest.split_off(MAX_LINE);
            self.write_line(stream, &rest)?;
            rest = tail;
        }
        self.partial[stream] = rest;
        Ok(())
    }

    /// Write out partial lines (at EOF).
    pub fn flush_partial(&mut self) -> Result<()> {
        for s in 0..2 {
            let p = std::mem::take(&mut self.partial[s]);
            if !p.is_empty() {
                self.write_line(s, &p)?;
            }
        }
        Ok(())
    }

    fn write_line(&mut self, stream: usize, bytes: &[u8]) -> Result<()> {
        let line = LogLine {
            log: String::from_utf8_lossy(bytes).into_owned(),
            stream: if stream == 0 { "stdout" } else { "stderr" }.to_owned(),
            time: Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
        };
        let mut data = serde_json::to_vec(&line).unwrap_or_default();
        data.push(b'\n');
        if self.size > 0 && self.size + data.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&data).at(&self.path)?;
        self.size += data.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        if self.max_files > 1 {
            let _ = std::fs::remove_file(name(self.max_files - 1));
            for i in (1..self.max_files - 1).rev() {
                let _ = std::fs::rename(name(i), name(i + 1));
            }
            std::fs::rename(&self.path, name(1)).at(&self.path)?;
        } else {
            std::fs::remove_file(&self.path).at(&self.path)?;
        }
        self.file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .at(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Options of `logs`.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    pub tail: Option<usize>,
    pub timestamps: bool,
}

/// All files of a log, oldest first.
fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut i = 1;
    loop {
        let p = PathBuf::from(format!("{}.{i}", path.display()));
        if !p.exists() {
            break;
        }
        files.push(p);
        i += 1;
    }
    files.reverse();
    files.push(path.to_owned());
    files
}

fn emit(line: &str, opts: &LogOptions, out: &mut dyn Write, err: &mut dyn Write) {
    let Ok(l) = serde_json::from_str::<LogLine>(line) else {
        return;
    };
    let target: &mut dyn Write = if l.stream == "stderr" { err } else { out };
    if opts.timestamps {
        let _ = write!(target, "{} ", l.time);
    }
    let _ = target.write_all(l.log.as_bytes());
}

/// Print the log; with `follow`, keep printing until `still_running()` turns false.
pub fn read_logs(
    path: &Path,
    opts: &LogOptions,
    out: &mut dyn Write,
    err: &mut dyn Write,
    still_running: &mut dyn FnMut() -> bool,
) -> Result<()> {
    let mut lines: Vec<String> = Vec::new();
    for f in log_files(path) {
        if let Ok(file) = File::open(&f) {
            for l in BufReader::new(file).lines() {
                lines.push(l.at(&f)?);
            }
        }
    }
    let skip = match opts.tail {
        Some(n) => lines.len().saturating_sub(n),
        None => 0,
    };
    for l in &lines[skip..] {
        emit(l, opts, out, err);
    }
    let _ = out.flush();
    let _ = err.flush();
    if !opts.follow {
        return Ok(());
    }
    // Follow: poll the current file for growth; reopen when it was rotated.
    let mut file = File::open(path).at(path)?;
    let mut pos = file.metadata().at(path)?.len();
    let mut pending = String::new();
    loop {
        let running = still_running();
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            file = File::open(path).at(path)?;
            pos = 0;
        }
        if len > pos {
            file.seek(SeekFrom::Start(pos)).at(path)?;
            let mut r = BufReader::new(&file);
            let mut buf = String::new();
            loop {
                buf.clear();
                let n = r.read_line(&mut buf).at(path)?;
                if n == 0 {
                    break;
                }
                pos += n as u64;
                pending.push_str(&buf);
                if pending.ends_with('\n') {
                    emit(pending.trim_end_matches('\n'), opts, out, err);
                    pending.clear();
                }
            }
            let _ = out.flush();
            let _ = err.flush();
            continue;
        }
        if !running {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_partial_tail_and_rotation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.log");
        let mut w = LogWriter::open(&p, 300, 3).unwrap();
        w.feed(0, b"hel").unwrap();
        w.feed(0, b"lo\nwor").unwrap();
        w.feed(1, b"oops\n").unwrap();
        w.flush_partial().unwrap();
        let mut out = Vec::new();
        let mut err = Vec::new();
        read_logs(&p, &LogOptions::default(), &mut out, &mut err, &mut || {
            false
        })
        .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "hello\nwor");
        assert_eq!(String::from_utf8(err).unwrap(), "oops\n");
        for i in 0..50 {
            w.feed(0, format!("line {i}\n").as_bytes()).unwrap();
        }
        assert!(PathBuf::from(format!("{}.1", p.display())).exists());
        assert!(PathBuf::from(format!("{}.2", p.display())).exists());
        assert!(!PathBuf::from(format!("{}.3", p.display())).exists());
        let total: u64 = log_files(&p)
            .iter()
            .map(|f| std::fs::metadata(f).unwrap().len())
            .sum();
        assert!(total <= 3 * 300, "log size capped, got {total}");
        let mut out = Vec::new();
        let opts = LogOptions {
            tail: Some(2),
            timestamps: true,
            ..Default::default()
        };
        read_logs(&p, &opts, &mut out, &mut Vec::new(), &mut || false).unwrap();
        let s = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].ends_with(" line 49"), "{s}");
        assert!(lines[1].contains('T') && lines[1].contains('Z'));
    }
}

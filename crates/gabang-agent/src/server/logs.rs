//! `GET /containerLogs/{ns}/{pod}/{container}`: the container's log as kubelet serves it
//! (stdout and stderr in the order written, optional RFC 3339 timestamps), with `tailLines`,
//! `sinceSeconds`/`sinceTime`, `limitBytes`, `previous` and `follow`.
//!
//! Reads the runtime's docker-style JSON-lines log (`container.log`, rotated to
//! `container.log.1…N`). The runtime's own reader has no since/limit and cannot be cancelled
//! while following, so this one is written here: it runs in a blocking task and stops as soon
//! as the HTTP client goes away (the body channel closes).

use std::convert::Infallible;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use gabang_runtime::Runtime;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::mpsc;

use super::find::{self, Target};
use super::{Body, HttpError, Query};

/// How often a followed log is checked for growth.
const FOLLOW_POLL: Duration = Duration::from_millis(50);
/// Output is sent to the client in chunks of about this size.
const CHUNK: usize = 32 * 1024;

/// The log options of one request.
#[derive(Debug, Clone, Default)]
pub(crate) struct LogQuery {
    pub follow: bool,
    pub tail: Option<u64>,
    pub timestamps: bool,
    pub since: Option<DateTime<Utc>>,
    pub limit_bytes: Option<u64>,
}

impl LogQuery {
    fn parse(q: &Query) -> Result<Self, HttpError> {
        // Out-of-range values mean "from the beginning", never a panic.
        let mut since = q.number("sinceSeconds")?.map(|s| {
            i64::try_from(s)
                .ok()
                .and_then(chrono::TimeDelta::try_seconds)
                .and_then(|d| Utc::now().checked_sub_signed(d))
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
        });
        if let Some(t) = q.get("sinceTime").filter(|t| !t.is_empty()) {
            let t = DateTime::parse_from_rfc3339(t).map_err(|e| {
                HttpError::bad_request(format!("sinceTime: {t:?} is not an RFC 3339 time: {e}"))
            })?;
            since = Some(t.with_timezone(&Utc));
        }
        Ok(Self {
            follow: q.flag(&["follow"]),
            tail: q.number("tailLines")?,
            timestamps: q.flag(&["timestamps"]),
            since,
            limit_bytes: q.number("limitBytes")?,
        })
    }
}

pub(crate) async fn serve(
    rt: &Arc<Runtime>,
    target: Target,
    query: &Query,
) -> Result<Response<Body>, HttpError> {
    let opts = LogQuery::parse(query)?;
    let previous = query.flag(&["previous"]);
    let rt = rt.clone();
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let found = tokio::task::spawn_blocking(move || {
        let c = find::find(&rt, &target, previous)?;
        let path = rt.container_dir(&c.id).join("container.log");
        std::thread::Builder::new()
            .name("gabang-logs".into())
            .spawn(move || {
                let store = rt.store().clone();
                let id = c.id.clone();
                let mut running = move || {
                    store.live_state(&id).is_ok_and(|s| {
                        s.status.is_active() || s.status == gabang_runtime::Status::Created
                    })
                };
                if let Err(e) = stream(&path, &opts, &tx, &mut running) {
                    tracing::warn!("logs of {}: {e}", c.id);
                }
            })
            .map_err(|e| HttpError::internal(format!("log reader thread: {e}")))?;
        Ok::<_, HttpError>(())
    })
    .await
    .map_err(|e| HttpError::internal(format!("log reader: {e}")))?;
    found?;
    let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    }));
    let mut r = Response::new(body.boxed());
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    Ok(r)
}

/// One line of the runtime's JSON log.
#[derive(serde::Deserialize)]
struct LogLine {
    log: String,
    time: String,
}

/// Batches output into chunks for the channel and applies `limitBytes`.
struct Sink<'a> {
    tx: &'a mpsc::Sender<Bytes>,
    buf: Vec<u8>,
    left: Option<u64>,
}

impl Sink<'_> {
    /// False once the client is gone or the byte limit is reached.
    fn write(&mut self, data: &[u8]) -> bool {
        let take = match self.left {
            Some(left) => {
                let n = (data.len() as u64).min(left);
                self.left = Some(left - n);
                n as usize
            }
            None => data.len(),
        };
        self.buf.extend_from_slice(&data[..take]);
        if self.buf.len() >= CHUNK && !self.flush() {
            return false;
        }
        self.left != Some(0)
    }
    fn flush(&mut self) -> bool {
        if self.buf.is_empty() {
            return !self.tx.is_closed();
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.blocking_send(chunk).is_ok()
    }
}

/// Formats one JSON line; None when it is filtered out (or unreadable).
fn render(line: &str, opts: &LogQuery) -> Option<Vec<u8>> {
    let l: LogLine = serde_json::from_str(line).ok()?;
    if let Some(since) = opts.since {
        let t = DateTime::parse_from_rfc3339(&l.time).ok()?;
        if t < since {
            return None;
        }
    }
    let mut out = Vec::with_capacity(l.log.len() + 32);
    if opts.timestamps {
        out.extend_from_slice(l.time.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(l.log.as_bytes());
    Some(out)
}

/// All files of a log, oldest first.
fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..)
        .map(|i| PathBuf::from(format!("{}.{i}", path.display())))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    files.push(path.to_owned());
    files
}

fn io_err(path: &Path, e: std::io::Error) -> String {
    format!("{}: {e}", path.display())
}

/// Writes the log to `tx`; with `follow`, keeps writing until `running()` turns false and
/// everything written is sent, or the client goes away.
pub(crate) fn stream(
    path: &Path,
    opts: &LogQuery,
    tx: &mpsc::Sender<Bytes>,
    running: &mut dyn FnMut() -> bool,
) -> Result<(), String> {
    let mut sink = Sink {
        tx,
        buf: Vec::new(),
        left: opts.limit_bytes,
    };
    if opts.limit_bytes == Some(0) {
        return Ok(());
    }
    // Where the current file was read up to: following continues from there.
    let mut pos = 0u64;
    let mut lines: Vec<String> = Vec::new();
    let files = log_files(path);
    for (i, f) in files.iter().enumerate() {
        let Ok(file) = File::open(f) else { continue };
        let mut r = BufReader::new(file);
        let mut line = String::new();
        loop {
            line.clear();
            let n = r.read_line(&mut line).map_err(|e| io_err(f, e))?;
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            if i + 1 == files.len() {
                pos += n as u64;
            }
            lines.push(line.trim_end_matches('\n').to_string());
        }
    }
    let skip = opts.tail.map_or(0, |n| {
        lines
            .len()
            .saturating_sub(n.min(usize::MAX as u64) as usize)
    });
    for l in &lines[skip..] {
        if let Some(out) = render(l, opts) {
            if !sink.write(&out) {
                sink.flush();
                return Ok(());
            }
        }
    }
    drop(lines);
    if !sink.flush() || !opts.follow {
        return Ok(());
    }
    let mut pending = Vec::new();
    loop {
        let alive = running();
        let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if len < pos {
            pos = 0; // rotated
        }
        if len > pos {
            let mut f = File::open(path).map_err(|e| io_err(path, e))?;
            f.seek(SeekFrom::Start(pos)).map_err(|e| io_err(path, e))?;
            let mut data = Vec::new();
            f.take(len - pos)
                .read_to_end(&mut data)
                .map_err(|e| io_err(path, e))?;
            pos += data.len() as u64;
            pending.extend_from_slice(&data);
            while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=nl).collect();
                let line = String::from_utf8_lossy(&line[..nl]).into_owned();
                if let Some(out) = render(&line, opts) {
                    if !sink.write(&out) {
                        sink.flush();
                        return Ok(());
                    }
                }
            }
            if !sink.flush() {
                return Ok(());
            }
            continue;
        }
        if !alive || tx.is_closed() {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_log(path: &Path, lines: &[(&str, &str)]) {
        let mut s = String::new();
        for (t, l) in lines {
            s += &serde_json::json!({"log": l, "stream": "stdout", "time": t}).to_string();
            s.push('\n');
        }
        std::fs::write(path, s).unwrap();
    }

    fn collect(path: &Path, opts: &LogQuery) -> String {
        let (tx, mut rx) = mpsc::channel(1024);
        stream(path, opts, &tx, &mut || false).unwrap();
        drop(tx);
        let mut out = Vec::new();
        while let Ok(b) = rx.try_recv() {
            out.extend_from_slice(&b);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn tail_since_limit_timestamps_and_rotation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("container.log");
        write_log(
            &PathBuf::from(format!("{}.1", p.display())),
            &[("2020-01-01T00:00:00.5Z", "old\n")],
        );
        write_log(
            &p,
            &[
                ("2030-01-01T00:00:01Z", "one\n"),
                ("2030-01-01T00:00:02Z", "two\n"),
            ],
        );
        assert_eq!(collect(&p, &LogQuery::default()), "old\none\ntwo\n");
        let tail = LogQuery {
            tail: Some(1),
            timestamps: true,
            ..Default::default()
        };
        assert_eq!(collect(&p, &tail), "2030-01-01T00:00:02Z two\n");
        let since = LogQuery {
            since: Some(Utc::now()),
            ..Default::default()
        };
        assert_eq!(collect(&p, &since), "one\ntwo\n");
        let limit = LogQuery {
            limit_bytes: Some(6),
            ..Default::default()
        };
        assert_eq!(collect(&p, &limit), "old\non");
    }
}

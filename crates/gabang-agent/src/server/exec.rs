//! `GET|POST /exec/{ns}/{pod}/{container}?command=…&stdin=1&stdout=1&stderr=1&tty=1`: runs a
//! process in the container behind a websocket, with Kubernetes' channel protocol
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io`): every binary message starts with a channel byte
//! — 0 stdin, 1 stdout, 2 stderr, 3 the final `metav1.Status`, 4 terminal resize — and v5 adds
//! 255 `[255, ch]` to close one stream (the client closes stdin at EOF). kubelet's query names
//! `input`/`output`/`error` are accepted too.
//!
//! The process is the runtime's exec shim with piped stdio. For `tty=1` the shim's stdio is a
//! pseudo-terminal of ours, made with the client's first terminal size (kubectl sends it at
//! once); the shim gives the process a terminal of its own with that size. Later resize
//! messages are read and ignored: the shim copies the size only when it starts.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use gabang_runtime::{ExecSpec, Runtime};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::find::{self, Target};
use super::{Body, HttpError, Query};

/// Subprotocols served, best first.
pub(crate) const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STATUS: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// What the request asks for.
struct ExecRequest {
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl ExecRequest {
    fn parse(q: &Query) -> Result<Self, HttpError> {
        let command = q.all("command");
        if command.is_empty() || command[0].is_empty() {
            return Err(HttpError::bad_request(
                "you must specify at least 1 command (command=…)",
            ));
        }
        let r = Self {
            command,
            stdin: q.flag(&["stdin", "input"]),
            stdout: q.flag(&["stdout", "output"]),
            stderr: q.flag(&["stderr", "error"]),
            tty: q.flag(&["tty"]),
        };
        if !(r.stdin || r.stdout || r.stderr) {
            return Err(HttpError::bad_request(
                "you must specify at least 1 of stdin, stdout, stderr",
            ));
        }
        Ok(r)
    }
}

/// The subprotocol to answer with: the first one of ours the client offers.
fn negotiate(req: &Request<Incoming>) -> Option<&'static str> {
    let offered: Vec<String> = req
        .headers()
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(',').map(|p| p.trim().to_string()))
        .collect();
    PROTOCOLS
        .iter()
        .copied()
        .find(|p| offered.iter().any(|o| o == p))
}

fn is_websocket(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(http::header::UPGRADE)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

pub(crate) async fn serve(
    rt: &Arc<Runtime>,
    target: Target,
    query: &Query,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, HttpError> {
    let ex = ExecRequest::parse(query)?;
    if !is_websocket(&req) {
        return Err(HttpError::bad_request(format!(
            "exec needs a websocket upgrade with one of the subprotocols {}; SPDY is not supported",
            PROTOCOLS.join(", ")
        )));
    }
    let protocol = negotiate(&req).ok_or_else(|| {
        HttpError::bad_request(format!(
            "no supported websocket subprotocol offered; this endpoint speaks {}",
            PROTOCOLS.join(", ")
        ))
    })?;
    let key = req
        .headers()
        .get(http::header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| HttpError::bad_request("websocket upgrade without Sec-WebSocket-Key"))?
        .clone();
    let rt2 = rt.clone();
    let spec = ExecSpec {
        args: ex.command.clone(),
        env: vec![],
        cwd: None,
        user: None,
        tty: ex.tty,
    };
    let cmd = tokio::task::spawn_blocking(move || {
        let c = find::find(&rt2, &target, false)?;
        if !c.state.status.can_exec() {
            return Err(HttpError::bad_request(format!(
                "container {} is not running (state: {})",
                target.container.as_deref().unwrap_or(&c.name),
                c.state.status.as_str()
            )));
        }
        rt2.exec_command(&c.id, &spec)
            .map_err(|e| HttpError::internal(format!("exec in {}: {e}", c.id)))
    })
    .await
    .map_err(|e| HttpError::internal(format!("exec: {e}")))??;

    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None).await;
                session(ws, cmd, ex).await;
            }
            Err(e) => tracing::warn!("exec: websocket upgrade: {e}"),
        }
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut r = Response::new(Empty::new().boxed());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(
        http::header::UPGRADE,
        http::HeaderValue::from_static("websocket"),
    );
    h.insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("Upgrade"),
    );
    h.insert(
        http::header::SEC_WEBSOCKET_PROTOCOL,
        http::HeaderValue::from_static(protocol),
    );
    if let Ok(v) = http::HeaderValue::from_str(&accept) {
        h.insert(http::header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok(r)
}

/// The final message on channel 3.
fn status(command: &[String], result: Result<i32, String>) -> Vec<u8> {
    let v = match result {
        Ok(0) => json!({"metadata": {}, "status": "Success"}),
        Ok(code) => {
            let code = code.clamp(0, 255);
            json!({"metadata": {}, "status": "Failure",
                "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
        }
        Err(message) => json!({"metadata": {}, "status": "Failure", "message": message,
            "reason": "InternalError", "code": 500}),
    };
    let mut out = vec![STATUS];
    out.extend_from_slice(&serde_json::to_vec(&v).unwrap_or_default());
    out
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut b = Vec::with_capacity(data.len() + 1);
    b.push(channel);
    b.extend_from_slice(data);
    Message::Binary(Bytes::from(b))
}

/// Copies one output pipe into channel `ch` frames.
fn pump(ch: u8, mut r: impl AsyncRead + Unpin + Send + 'static, tx: mpsc::Sender<Message>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send(frame(ch, &buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;
type WsIn = futures_util::stream::SplitStream<Ws>;
type Input = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// How long a tty session waits for the client's first terminal size before starting.
const FIRST_SIZE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The size in a channel-4 message: `{"Width":80,"Height":24}`.
fn parse_size(data: &[u8]) -> Option<nix::pty::Winsize> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    let dim = |k: &str| v.get(k)?.as_u64().and_then(|n| u16::try_from(n).ok());
    Some(nix::pty::Winsize {
        ws_col: dim("Width")?,
        ws_row: dim("Height")?,
        ws_xpixel: 0,
        ws_ypixel: 0,
    })
}

/// For a tty: the client's first terminal size (kubectl sends it right away), and the
/// messages that came before it, to be handled afterwards.
async fn first_size(incoming: &mut WsIn) -> (Option<nix::pty::Winsize>, Vec<Message>) {
    let mut early = Vec::new();
    let found = tokio::time::timeout(FIRST_SIZE_WAIT, async {
        while let Some(Ok(m)) = incoming.next().await {
            if let Message::Binary(b) = &m {
                if b.first() == Some(&RESIZE) {
                    return parse_size(&b[1..]);
                }
            }
            let close = m.is_close();
            early.push(m);
            if close {
                return None;
            }
        }
        None
    })
    .await;
    (found.ok().flatten(), early)
}

/// The process with its input and output streams wired to the session.
struct Spawned {
    child: tokio::process::Child,
    stdin: Option<Input>,
}

/// Starts the shim. With a tty its stdio is a pseudo-terminal of ours sized like the client's
/// terminal (the shim copies that size to the terminal it gives the process); otherwise pipes.
fn spawn(
    cmd: std::process::Command,
    ex: &ExecRequest,
    size: Option<nix::pty::Winsize>,
    out: &mpsc::Sender<Message>,
) -> Result<Spawned, String> {
    let piped = |on: bool| {
        if on {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        }
    };
    let mut cmd = tokio::process::Command::from(cmd);
    if ex.tty {
        let pty = nix::pty::openpty(size.as_ref(), None).map_err(|e| format!("openpty: {e}"))?;
        let dup = |fd: &std::os::fd::OwnedFd| fd.try_clone().map_err(|e| format!("dup: {e}"));
        cmd.stdin(dup(&pty.slave)?)
            .stdout(dup(&pty.slave)?)
            .stderr(pty.slave);
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting the exec shim: {e}"))?;
        // The slave copies held by `cmd` close here: reads of the master end (EIO) when the
        // process side is gone.
        drop(cmd);
        let master = std::fs::File::from(pty.master);
        let reader = master.try_clone().map_err(|e| format!("dup: {e}"))?;
        pump(STDOUT, tokio::fs::File::from_std(reader), out.clone());
        let stdin: Option<Input> = ex
            .stdin
            .then(|| Box::new(tokio::fs::File::from_std(master)) as Input);
        return Ok(Spawned { child, stdin });
    }
    cmd.stdin(piped(ex.stdin))
        .stdout(piped(ex.stdout))
        .stderr(piped(ex.stderr));
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting the exec shim: {e}"))?;
    if let Some(o) = child.stdout.take() {
        pump(STDOUT, o, out.clone());
    }
    if let Some(e) = child.stderr.take() {
        pump(STDERR, e, out.clone());
    }
    let stdin = child.stdin.take().map(|w| Box::new(w) as Input);
    Ok(Spawned { child, stdin })
}

/// What one client message means for the session.
enum Flow {
    Continue,
    /// The client closed the websocket or went away.
    Gone,
}

async fn on_message(m: Option<Result<Message, WsError>>, stdin: &mut Option<Input>) -> Flow {
    match m {
        Some(Ok(Message::Binary(b))) => match (b.first(), b.get(1)) {
            (Some(&STDIN), _) => {
                if let Some(w) = stdin.as_mut() {
                    if w.write_all(&b[1..]).await.is_err() || w.flush().await.is_err() {
                        *stdin = None;
                    }
                }
            }
            (Some(&CLOSE), Some(&STDIN)) => *stdin = None,
            // Later resizes: see the module comment.
            _ => {}
        },
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Flow::Gone,
        Some(Ok(_)) => {}
    }
    Flow::Continue
}

/// Runs the process and relays its stdio until it ends (or the client leaves), then sends
/// the status and closes the websocket normally.
async fn session(ws: Ws, cmd: std::process::Command, ex: ExecRequest) {
    let (mut sink, mut incoming) = ws.split();
    let (size, early) = if ex.tty {
        first_size(&mut incoming).await
    } else {
        (None, Vec::new())
    };
    let (out_tx, mut out_rx) = mpsc::channel::<Message>(16);
    let Spawned {
        mut child,
        mut stdin,
    } = match spawn(cmd, &ex, size, &out_tx) {
        Ok(s) => s,
        Err(e) => {
            let msg = status(&ex.command, Err(e));
            let _ = sink.send(Message::Binary(msg.into())).await;
            let _ = sink.send(close_normal()).await;
            return;
        }
    };
    drop(out_tx);
    for m in early {
        if let Flow::Gone = on_message(Some(Ok(m)), &mut stdin).await {
            return;
        }
    }
    let mut exit: Option<Result<i32, String>> = None;
    let mut outputs_done = false;
    loop {
        if exit.is_some() && outputs_done {
            break;
        }
        tokio::select! {
            m = out_rx.recv(), if !outputs_done => match m {
                Some(m) => {
                    if sink.send(m).await.is_err() {
                        return; // the client is gone
                    }
                }
                None => outputs_done = true,
            },
            w = child.wait(), if exit.is_none() => {
                exit = Some(match w {
                    Ok(s) => Ok(s.code().unwrap_or(255)),
                    Err(e) => Err(format!("waiting for the exec shim: {e}")),
                });
                stdin = None;
            },
            m = incoming.next() => {
                if let Flow::Gone = on_message(m, &mut stdin).await {
                    return;
                }
            },
        }
    }
    let result = exit.unwrap_or(Ok(255));
    if sink
        .send(Message::Binary(status(&ex.command, result).into()))
        .await
        .is_err()
    {
        return;
    }
    let _ = sink.send(close_normal()).await;
    // Read until the client answers the close (or leaves), so nothing sent is lost to a reset.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(Ok(m)) = incoming.next().await {
            if m.is_close() {
                break;
            }
        }
    })
    .await;
}

fn close_normal() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages_are_what_client_go_decodes() {
        let ok: serde_json::Value = serde_json::from_slice(&status(&[], Ok(0))[1..]).unwrap();
        assert_eq!(ok["status"], "Success");
        let cmd = vec!["sh".to_string()];
        let bad: serde_json::Value = serde_json::from_slice(&status(&cmd, Ok(3))[1..]).unwrap();
        assert_eq!(bad["reason"], "NonZeroExitCode");
        assert_eq!(bad["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(bad["details"]["causes"][0]["message"], "3");
        assert_eq!(status(&cmd, Ok(3))[0], STATUS);
    }
}

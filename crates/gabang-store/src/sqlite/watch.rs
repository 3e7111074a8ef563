//! Watchers of the embedded store: history from the log, then the live broadcast.
//!
//! A watcher subscribes to the writer's broadcast *before* reading history, so every
//! commit is either in the history it reads or in the broadcast after it; events at or
//! below the last revision it handled are skipped — exactly once, in order. A watcher
//! that lags behind the broadcast (slow consumer) re-reads the missed history from the
//! log; if that history was compacted meanwhile it gets `Compacted` and ends.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};

use super::reader::{EventPage, ReadOp, ReadOutcome};
use super::ReadSender;
use crate::backend::WatchStream;
use crate::error::{Result, StoreError};
use crate::types::{Event, Revision};

const PAGE: usize = 1000;

async fn history(reads: &ReadSender, prefix: &str, after: Revision) -> Result<EventPage> {
    match super::read(
        reads,
        ReadOp::Events {
            prefix: prefix.to_string(),
            after,
            limit: PAGE,
        },
    )
    .await?
    {
        ReadOutcome::Events(p) => Ok(p),
        _ => Err(StoreError::Closed),
    }
}

pub(crate) async fn start(
    reads: ReadSender,
    live: broadcast::Receiver<Arc<Vec<Event>>>,
    prefix: String,
    after: Revision,
    buffer: usize,
) -> Result<WatchStream> {
    // `live` was subscribed by the caller before this first read.
    let first = history(&reads, &prefix, after).await?;
    let (tx, rx) = mpsc::channel(buffer);
    tokio::spawn(async move {
        let mut w = Watcher {
            reads,
            prefix,
            last: after,
            tx,
        };
        w.run(first, live).await;
    });
    Ok(WatchStream::new(rx))
}

struct Watcher {
    reads: ReadSender,
    prefix: String,
    /// Highest revision handled (sent or skipped as not matching).
    last: Revision,
    tx: mpsc::Sender<Result<Event>>,
}

impl Watcher {
    async fn run(&mut self, first: EventPage, mut live: broadcast::Receiver<Arc<Vec<Event>>>) {
        if self.catch_up(first).await.is_err() {
            return;
        }
        loop {
            match live.recv().await {
                Ok(batch) => {
                    for ev in batch.iter() {
                        if ev.revision() <= self.last {
                            continue;
                        }
                        self.last = ev.revision();
                        if ev.kv.key.starts_with(&self.prefix)
                            && self.tx.send(Ok(ev.clone())).await.is_err()
                        {
                            return;
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::debug!(missed = n, "watcher lagged; reading history");
                    let page = match history(&self.reads, &self.prefix, self.last).await {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = self.tx.send(Err(e)).await;
                            return;
                        }
                    };
                    if self.catch_up(page).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Sends history pages until the log has nothing newer. Err: the watch is over.
    async fn catch_up(&mut self, mut page: EventPage) -> Result<(), ()> {
        loop {
            for ev in page.events.drain(..) {
                self.last = ev.revision();
                self.tx.send(Ok(ev)).await.map_err(|_| ())?;
            }
            if !page.full {
                self.last = self.last.max(page.current);
                return Ok(());
            }
            page = match history(&self.reads, &self.prefix, self.last).await {
                Ok(p) => p,
                Err(e) => {
                    let _ = self.tx.send(Err(e)).await;
                    return Err(());
                }
            };
        }
    }
}

//! A thread that owns the [`Wal`] and does group commit, so that an async
//! runtime never blocks on fsync: callers queue batches with a completion
//! callback; the thread appends everything queued, syncs once, and then
//! completes every batch of the group with the result of that one sync.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::StorageError;
use crate::types::{HardState, LogEntry, SnapshotMeta};
use crate::wal::Wal;

/// Outcome of a queued write, shared by every batch of one group commit.
pub type SyncResult = Result<(), Arc<StorageError>>;

/// Called on the writer thread once the batch is durable (or failed). It must
/// be quick and must not panic (send on a channel or a oneshot, typically).
/// Accepted batches complete in submission order; a batch refused by a check
/// (a gap, a bad hard state) completes at once with its error and writes nothing.
pub type Completion = Box<dyn FnOnce(SyncResult) + Send + 'static>;

/// Entries and/or a hard state to make durable together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    /// Entries to append (same rules as [`Wal::append`]).
    pub entries: Vec<LogEntry>,
    /// A new hard state, written after the entries.
    pub hard_state: Option<HardState>,
}

enum Request {
    Write(WriteBatch, Completion),
    Snapshot(SnapshotMeta, Vec<u8>, Completion),
}

/// Most requests folded into one group commit, so that a steady stream of
/// writers cannot postpone the fsync forever.
const MAX_GROUP: usize = 4096;

/// Handle to the writer thread. Dropping it stops the thread after the queued
/// work is done.
pub struct WalWriter {
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<Wal>>,
}

impl WalWriter {
    /// Moves `wal` onto a new thread named `triton-wal`.
    pub fn spawn(wal: Wal) -> Result<WalWriter, StorageError> {
        let (tx, rx) = mpsc::channel();
        let dir = wal.dir().to_path_buf();
        let thread = std::thread::Builder::new()
            .name("triton-wal".into())
            .spawn(move || run(wal, rx))
            .map_err(|e| StorageError::io(dir, e))?;
        Ok(WalWriter {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    fn send(&self, req: Request) -> Result<(), StorageError> {
        self.tx
            .as_ref()
            .expect("sender lives until drop")
            .send(req)
            .map_err(|_| StorageError::WriterStopped)
    }

    /// Queues a batch; `done` runs on the writer thread once it is durable.
    pub fn submit(
        &self,
        batch: WriteBatch,
        done: impl FnOnce(SyncResult) + Send + 'static,
    ) -> Result<(), StorageError> {
        self.send(Request::Write(batch, Box::new(done)))
    }

    /// Queues a batch and waits until it is durable (for tests and tools).
    pub fn write(&self, batch: WriteBatch) -> SyncResult {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(batch, move |r| {
            let _ = tx.send(r);
        })
        .map_err(Arc::new)?;
        rx.recv().map_err(|_| Arc::new(StorageError::WriterStopped))?
    }

    /// Queues a snapshot save, ordered after every batch queued before it.
    pub fn save_snapshot(
        &self,
        meta: SnapshotMeta,
        data: Vec<u8>,
        done: impl FnOnce(SyncResult) + Send + 'static,
    ) -> Result<(), StorageError> {
        self.send(Request::Snapshot(meta, data, Box::new(done)))
    }

    /// Finishes the queued work, stops the thread and gives the `Wal` back.
    pub fn shutdown(mut self) -> Result<Wal, StorageError> {
        self.tx.take();
        let thread = self.thread.take().expect("thread lives until shutdown");
        thread.join().map_err(|_| StorageError::WriterStopped)
    }
}

impl Drop for WalWriter {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(mut wal: Wal, rx: mpsc::Receiver<Request>) -> Wal {
    let mut waiting: Vec<Completion> = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(req) => group.push(req),
                Err(_) => break,
            }
        }
        for req in group {
            match req {
                Request::Write(batch, done) => match apply(&mut wal, &batch) {
                    Ok(()) => waiting.push(done),
                    Err(e) => done(Err(Arc::new(e))),
                },
                Request::Snapshot(meta, data, done) => {
                    commit(&mut wal, &mut waiting);
                    done(wal.save_snapshot(&meta, &data).map_err(Arc::new));
                }
            }
        }
        commit(&mut wal, &mut waiting);
    }
    wal
}

/// Checks the whole batch first so a refused batch writes nothing.
fn apply(wal: &mut Wal, batch: &WriteBatch) -> Result<(), StorageError> {
    wal.check_append(&batch.entries)?;
    if let Some(hs) = &batch.hard_state {
        wal.check_hard_state(hs)?;
    }
    wal.append(&batch.entries)?;
    if let Some(hs) = batch.hard_state {
        wal.set_hard_state(hs)?;
    }
    Ok(())
}

/// One sync for every waiting batch.
fn commit(wal: &mut Wal, waiting: &mut Vec<Completion>) {
    if waiting.is_empty() {
        return;
    }
    let result = wal.sync().map_err(Arc::new);
    for done in waiting.drain(..) {
        done(result.clone());
    }
}

//! Writer threads fed with large buffers, so that whoever produces output
//! (gathering sorted records, merging runs) keeps the CPU busy while the
//! kernel copies the previous buffer into the page cache.
//!
//! Two modes:
//! * [`PipelinedWriter::new`]: one thread writes any `Write` in order.
//! * [`PipelinedWriter::positional`]: for a file of known final size, the
//!   file is first extended to that size and several threads write buffers
//!   at their offsets (`pwrite`). Measured on this project's ext4 VM,
//!   extending writes of 1 GB took 1-4 s while positional writes into a
//!   pre-sized file took 0.4-0.5 s, as fast as `cp`.
//!
//! At most `threads + 2` buffers of `buffer_size` bytes exist at once (one
//! being filled, one queued, one per thread being written). Buffers are
//! recycled, not reallocated, and may be lent by the caller and taken back
//! ([`PipelinedWriter::with_buffers`], [`PipelinedWriter::finish_into_buffers`]),
//! so a caller writing many files (runs) allocates them once: buffers freed
//! and reallocated per file stay resident in the allocator for a while.

use std::fs::File;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Buffers in flight at most with one writer thread.
pub const BUFFERS: usize = 3;

/// Buffers in flight at most with `threads` positional writer threads.
pub const fn positional_buffers(threads: usize) -> usize {
    threads + 2
}

/// A buffer and the file offset it goes to.
type Job = (u64, Vec<u8>);

/// Output written by background threads in `buffer_size` pieces.
pub struct PipelinedWriter<W: Write + Send + 'static> {
    to_writer: Option<SyncSender<Job>>,
    recycled: Receiver<Vec<u8>>,
    current: Vec<u8>,
    /// Buffers lent by the caller, used before allocating new ones.
    spare: Vec<Vec<u8>>,
    allocated: usize,
    max_buffers: usize,
    buffer_size: usize,
    offset: u64,
    handles: Vec<JoinHandle<io::Result<Option<W>>>>,
}

impl<W: Write + Send + 'static> PipelinedWriter<W> {
    /// One thread writing to `inner` in order.
    pub fn new(inner: W, buffer_size: usize) -> Self {
        assert!(buffer_size > 0, "buffer size must be positive");
        let (to_writer, from_producer) = mpsc::sync_channel::<Job>(1);
        let (recycle_tx, recycled) = mpsc::channel::<Vec<u8>>();
        let handle = std::thread::Builder::new()
            .name("sort-writer".into())
            .spawn(move || {
                let mut inner = inner;
                for (_, mut buf) in from_producer {
                    inner.write_all(&buf)?;
                    buf.clear();
                    // The producer may be gone already; the buffer is then dropped.
                    let _ = recycle_tx.send(buf);
                }
                inner.flush()?;
                Ok(Some(inner))
            })
            .expect("spawn writer thread");
        PipelinedWriter {
            to_writer: Some(to_writer),
            recycled,
            current: Vec::new(),
            spare: Vec::new(),
            allocated: 0,
            max_buffers: BUFFERS,
            buffer_size,
            offset: 0,
            handles: vec![handle],
        }
    }

    /// Size of each buffer handed out by [`Self::take_buffer`].
    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    /// Lend the writer `buffers` to use before allocating any (at most its
    /// buffer count are kept; those smaller than `buffer_size` are dropped).
    pub fn with_buffers(mut self, buffers: Vec<Vec<u8>>) -> Self {
        assert_eq!(self.allocated, 0, "lend buffers before writing");
        self.spare = buffers
            .into_iter()
            .filter(|b| b.capacity() >= self.buffer_size)
            .take(self.max_buffers)
            .collect();
        self
    }

    /// An empty buffer with capacity `buffer_size`, recycled if possible.
    /// Blocks while all buffers are in flight (that is the backpressure).
    pub fn take_buffer(&mut self) -> io::Result<Vec<u8>> {
        if let Ok(buf) = self.recycled.try_recv() {
            return Ok(buf);
        }
        if self.allocated < self.max_buffers {
            self.allocated += 1;
            if let Some(mut buf) = self.spare.pop() {
                buf.clear();
                return Ok(buf);
            }
            return Ok(Vec::with_capacity(self.buffer_size));
        }
        match self.recycled.recv() {
            Ok(buf) => Ok(buf),
            Err(_) => Err(self.writer_failed()),
        }
    }

    /// Queue a filled buffer for writing (after anything written through
    /// the `Write` impl so far).
    pub fn send_buffer(&mut self, buf: Vec<u8>) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        if !self.current.is_empty() {
            let partial = std::mem::take(&mut self.current);
            self.queue(partial)?;
        }
        self.queue(buf)
    }

    fn queue(&mut self, buf: Vec<u8>) -> io::Result<()> {
        let offset = self.offset;
        self.offset += buf.len() as u64;
        let sender = self.to_writer.as_ref().expect("writer open until finish");
        if sender.send((offset, buf)).is_err() {
            return Err(self.writer_failed());
        }
        Ok(())
    }

    /// Close the queue and collect every thread's result: the first error,
    /// or the inner writer (sequential mode).
    fn join_all(&mut self) -> io::Result<Option<W>> {
        self.to_writer = None; // closes the channel: the threads drain and exit
        let mut result = Ok(None);
        for handle in self.handles.drain(..) {
            let outcome = match handle.join() {
                Ok(r) => r,
                Err(_) => Err(io::Error::other("writer thread panicked")),
            };
            match (outcome, &result) {
                (Err(e), Ok(_)) => result = Err(e),
                (Ok(Some(w)), Ok(_)) => result = Ok(Some(w)),
                _ => {}
            }
        }
        result
    }

    /// A writer thread stopped early: fetch its error.
    fn writer_failed(&mut self) -> io::Error {
        match self.join_all() {
            Err(e) => e,
            Ok(_) => io::Error::other("writer thread stopped unexpectedly"),
        }
    }

    fn flush_current(&mut self) -> io::Result<()> {
        if !self.current.is_empty() {
            let last = std::mem::take(&mut self.current);
            self.queue(last)?;
        }
        Ok(())
    }

    /// Write out everything queued and wait until it is written.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush_current()?;
        self.join_all().map(drop)
    }

    /// Like [`Self::finish`], and give back every buffer (for the next
    /// writer's [`Self::with_buffers`]).
    pub fn finish_into_buffers(mut self) -> io::Result<Vec<Vec<u8>>> {
        self.flush_current()?;
        self.join_all()?;
        // Every thread has ended, so each buffer taken is back.
        let mut buffers = std::mem::take(&mut self.spare);
        let unused = buffers.len();
        buffers.extend(self.recycled.try_iter());
        if self.current.capacity() > 0 {
            buffers.push(std::mem::take(&mut self.current)); // taken but never filled
        }
        debug_assert_eq!(buffers.len(), unused + self.allocated, "a buffer went missing");
        Ok(buffers)
    }

    /// Like [`Self::finish`], and give back the inner writer (sequential
    /// mode only).
    pub fn finish_into_inner(mut self) -> io::Result<W> {
        self.flush_current()?;
        self.join_all()?
            .ok_or_else(|| io::Error::other("positional writers own no inner writer"))
    }
}

impl PipelinedWriter<File> {
    /// `threads` threads writing buffers at their offsets into `file`,
    /// which is first extended to `total_len` bytes (the caller writes
    /// exactly that much, from offset 0).
    pub fn positional(file: File, buffer_size: usize, total_len: u64, threads: usize) -> io::Result<Self> {
        assert!(buffer_size > 0 && threads > 0);
        file.set_len(total_len)?;
        let file = Arc::new(file);
        let (to_writer, from_producer) = mpsc::sync_channel::<Job>(1);
        let from_producer = Arc::new(Mutex::new(from_producer));
        let (recycle_tx, recycled) = mpsc::channel::<Vec<u8>>();
        let mut handles = Vec::with_capacity(threads);
        for _ in 0..threads {
            let file = Arc::clone(&file);
            let jobs = Arc::clone(&from_producer);
            let recycle_tx = recycle_tx.clone();
            let handle = std::thread::Builder::new().name("sort-pwriter".into()).spawn(
                move || -> io::Result<Option<File>> {
                    use std::os::unix::fs::FileExt;
                    loop {
                        let job = match jobs.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return Err(io::Error::other("writer queue poisoned")),
                        };
                        let Ok((offset, mut buf)) = job else {
                            return Ok(None); // queue closed: all written
                        };
                        file.write_all_at(&buf, offset)?;
                        buf.clear();
                        let _ = recycle_tx.send(buf);
                    }
                },
            )?;
            handles.push(handle);
        }
        Ok(PipelinedWriter {
            to_writer: Some(to_writer),
            recycled,
            current: Vec::new(),
            spare: Vec::new(),
            allocated: 0,
            max_buffers: positional_buffers(threads),
            buffer_size,
            offset: 0,
            handles,
        })
    }
}

impl<W: Write + Send + 'static> Write for PipelinedWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.current.capacity() == 0 {
            self.current = self.take_buffer()?;
        }
        let room = self.buffer_size - self.current.len();
        let n = room.min(data.len());
        self.current.extend_from_slice(&data[..n]);
        if self.current.len() >= self.buffer_size {
            let full = std::mem::take(&mut self.current);
            self.queue(full)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Hand over what we have; the threads finish writing at `finish`.
        self.flush_current()
    }
}

impl<W: Write + Send + 'static> Drop for PipelinedWriter<W> {
    fn drop(&mut self) {
        let _ = self.join_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_everything_in_order() {
        let mut w = PipelinedWriter::new(Vec::new(), 7);
        let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(13) {
            w.write_all(piece).unwrap();
        }
        let mut buf = w.take_buffer().unwrap();
        buf.extend_from_slice(b"tail");
        w.send_buffer(buf).unwrap();
        let out = w.finish_into_inner().unwrap();
        assert_eq!(&out[..1000], &data[..]);
        assert_eq!(&out[1000..], b"tail");
    }

    #[test]
    fn positional_writers_fill_the_file_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let file = File::create(&path).unwrap();
        let mut w = PipelinedWriter::positional(file, 1000, data.len() as u64, 3).unwrap();
        for piece in data.chunks(777) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap();
        assert!(std::fs::read(&path).unwrap() == data);
    }

    #[derive(Debug)]
    struct Failing;
    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk on fire"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn reports_the_inner_error() {
        let mut w = PipelinedWriter::new(Failing, 4);
        let mut result = Ok(());
        for _ in 0..100 {
            result = w.write_all(b"abcdefgh");
            if result.is_err() {
                break;
            }
        }
        let err = match result {
            Err(e) => e,
            Ok(()) => w.finish_into_inner().unwrap_err(),
        };
        assert!(err.to_string().contains("disk on fire"), "{err}");
    }
}

//! A writer thread fed with large buffers, so that whoever produces output
//! (gathering sorted records, merging runs) keeps the CPU busy while the
//! kernel copies the previous buffer into the page cache.
//!
//! At most [`BUFFERS`] buffers of `buffer_size` bytes exist at once: one being
//! filled, one queued, one being written. Buffers are recycled, not
//! reallocated.

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Buffers in flight at most (filled, queued, being written).
pub const BUFFERS: usize = 3;

/// Output written by a background thread in `buffer_size` pieces.
pub struct PipelinedWriter<W: Write + Send + 'static> {
    to_writer: Option<SyncSender<Vec<u8>>>,
    recycled: Receiver<Vec<u8>>,
    current: Vec<u8>,
    allocated: usize,
    buffer_size: usize,
    handle: Option<JoinHandle<io::Result<W>>>,
}

impl<W: Write + Send + 'static> PipelinedWriter<W> {
    /// Start the writer thread over `inner`.
    pub fn new(inner: W, buffer_size: usize) -> Self {
        assert!(buffer_size > 0, "buffer size must be positive");
        let (to_writer, from_producer) = mpsc::sync_channel::<Vec<u8>>(1);
        let (recycle_tx, recycled) = mpsc::channel::<Vec<u8>>();
        let handle = std::thread::Builder::new()
            .name("sort-writer".into())
            .spawn(move || {
                let mut inner = inner;
                for mut buf in from_producer {
                    inner.write_all(&buf)?;
                    buf.clear();
                    // The producer may be gone already; the buffer is then dropped.
                    let _ = recycle_tx.send(buf);
                }
                inner.flush()?;
                Ok(inner)
            })
            .expect("spawn writer thread");
        PipelinedWriter {
            to_writer: Some(to_writer),
            recycled,
            current: Vec::with_capacity(buffer_size),
            allocated: 1,
            buffer_size,
            handle: Some(handle),
        }
    }

    /// Size of each buffer handed out by [`Self::take_buffer`].
    pub fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    /// An empty buffer with capacity `buffer_size`, recycled if possible.
    /// Blocks while all buffers are in flight (that is the backpressure).
    pub fn take_buffer(&mut self) -> io::Result<Vec<u8>> {
        if let Ok(buf) = self.recycled.try_recv() {
            return Ok(buf);
        }
        if self.allocated < BUFFERS {
            self.allocated += 1;
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
        let sender = self.to_writer.as_ref().expect("writer open until finish");
        if sender.send(buf).is_err() {
            return Err(self.writer_failed());
        }
        Ok(())
    }

    /// The writer thread stopped early: fetch its error.
    fn writer_failed(&mut self) -> io::Error {
        self.to_writer = None;
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(Err(e))) => e,
            Some(Err(_)) => io::Error::other("writer thread panicked"),
            _ => io::Error::other("writer thread stopped unexpectedly"),
        }
    }

    /// Write out everything queued, flush, and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if !self.current.is_empty() {
            let last = std::mem::take(&mut self.current);
            self.queue(last)?;
        }
        self.to_writer = None; // closes the channel: the thread drains and exits
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("writer thread panicked")),
            None => Err(io::Error::other("writer thread already stopped")),
        }
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
        // Hand over what we have; the thread flushes the inner writer at finish.
        if !self.current.is_empty() {
            let partial = std::mem::take(&mut self.current);
            self.queue(partial)?;
        }
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for PipelinedWriter<W> {
    fn drop(&mut self) {
        self.to_writer = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
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
        let out = w.finish().unwrap();
        assert_eq!(&out[..1000], &data[..]);
        assert_eq!(&out[1000..], b"tail");
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
            Ok(()) => w.finish().unwrap_err(),
        };
        assert!(err.to_string().contains("disk on fire"), "{err}");
    }
}

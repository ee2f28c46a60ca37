//! The TritonHTTP server: accept loop and per-connection request loop.
//!
//! One tokio task per connection. A connection reads into a bounded buffer,
//! answers every complete request in it in order (pipelining), batches the
//! small responses into one write, and only then reads again. Each request
//! gets its own read deadline: when it passes with part of a request
//! received the client gets a 400 and the connection closes; with nothing
//! received it closes silently.

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant, SystemTime};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::cache::{CacheConfig, CachedBody, CachedFile, FileCache};
use crate::content_type;
use crate::request::{parse_request, Parse, Request, MAX_HEAD_BYTES};
use crate::resolve::{relative_path, resolve_relative};
use crate::response::{http_date, with_date_now, write_head, write_ok, Content, Status};
use crate::sites::Sites;

/// Bodies up to this size are copied into the batched output buffer; larger
/// ones are written straight from the cache (vectored with the head).
const INLINE_BODY_BYTES: usize = 16 * 1024;

/// Flush the batched output once it grows past this, even mid-pipeline.
const MAX_BATCH_BYTES: usize = 64 * 1024;
/// A buffer grown past this by a burst is given back when the connection
/// goes idle: thousands of idle keep-alive connections must not each hold
/// the most they ever needed.
const IDLE_BUFFER_BYTES: usize = 8 * 1024;

/// After closing our side, how long we keep reading (and discarding) what
/// the client still sends, so the kernel sends FIN rather than RST and the
/// client gets our last response intact.
const LINGER: Duration = Duration::from_millis(500);

/// A write step (one batched buffer, one in-memory body, or one wait for
/// socket space during sendfile) that does not finish within this long ends
/// the connection, so a client that stops reading cannot pin a task and its
/// buffers forever.
const WRITE_STALL: Duration = Duration::from_secs(30);

/// Runs one write step under [`WRITE_STALL`].
async fn stall_guard<T>(step: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(WRITE_STALL, step)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client stopped reading"))?
}

/// Everything the server needs to run.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub sites: Sites,
    /// Per-request read timeout.
    pub read_timeout: Duration,
    pub cache: CacheConfig,
    /// Connections served at once; further clients wait in the listen
    /// backlog. Each costs a descriptor and its buffers, so the command sizes
    /// this from the open-file limit.
    pub max_connections: usize,
}

struct Shared {
    sites: Sites,
    read_timeout: Duration,
    cache: FileCache,
    connections: Arc<tokio::sync::Semaphore>,
}

impl Shared {
    fn new(config: ServerConfig) -> Shared {
        assert!(config.max_connections > 0, "a server needs room for one connection");
        let cache = FileCache::new(config.cache, config.sites.len());
        Shared {
            sites: config.sites,
            read_timeout: config.read_timeout,
            cache,
            connections: Arc::new(tokio::sync::Semaphore::new(config.max_connections)),
        }
    }
}

/// A bound, not yet running, server on the caller's tokio runtime (for
/// embedding and tests; the CLI uses [`serve_blocking`]).
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds the listening socket (inside a tokio runtime).
    pub async fn bind(config: ServerConfig) -> io::Result<Server> {
        let listener = TcpListener::bind(config.listen).await?;
        Ok(Server {
            listener,
            shared: Arc::new(Shared::new(config)),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections forever. Accept errors (such as running out of
    /// file descriptors) are reported and retried after a short pause
    /// rather than ending the server.
    pub async fn run(self) -> io::Result<()> {
        let ttl = self.shared.cache.config().ttl;
        if !ttl.is_zero() {
            // Close the descriptors of entries nobody asks for again.
            let shared = Arc::downgrade(&self.shared);
            tokio::spawn(async move {
                let mut every = tokio::time::interval(ttl.max(Duration::from_secs(1)));
                loop {
                    every.tick().await;
                    let Some(shared) = shared.upgrade() else { return };
                    shared.cache.sweep(StdInstant::now());
                }
            });
        }
        loop {
            let Ok(permit) = Arc::clone(&self.shared.connections).acquire_owned().await else {
                return Ok(());
            };
            match self.listener.accept().await {
                Ok((stream, _peer)) => {
                    let shared = Arc::clone(&self.shared);
                    tokio::spawn(async move {
                        // Peers resetting or vanishing is routine; nothing to report.
                        let _ = serve_connection(stream, shared).await;
                        drop(permit);
                    });
                }
                Err(err) => {
                    // Not `eprintln!`, which panics if stderr cannot be written.
                    let _ = writeln!(std::io::stderr(), "triton http: accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Builds a multi-threaded tokio runtime with `workers` threads (0: one per
/// CPU), binds, calls `on_listening` with the bound address, and serves
/// until the process is killed.
///
/// (A thread-per-core variant, one current-thread runtime per CPU fed by a
/// blocking acceptor, was tried: no clear gain over work stealing on the
/// 2-core benchmark machine, so the simpler design stays.)
pub fn serve_blocking(config: ServerConfig, workers: usize, on_listening: impl FnOnce(SocketAddr)) -> io::Result<()> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    let runtime = builder.enable_all().build()?;
    runtime.block_on(async move {
        let server = Server::bind(config).await?;
        on_listening(server.local_addr()?);
        server.run().await
    })
}

/// Why a connection ends.
enum End {
    /// EOF or idle timeout with nothing buffered: just close.
    Silent,
    /// A request was bad (or cut short): answer 400, then close.
    BadRequest,
    /// The client asked for `Connection: close`; the response is queued.
    Close,
}

/// Gives back what a burst made the buffers grow to, before waiting for the
/// next request (`output` was just sent; `input` keeps any partial request).
fn shrink_idle_buffers(input: &mut Vec<u8>, output: &mut Vec<u8>) {
    debug_assert!(output.is_empty(), "only sent output is given back");
    input.shrink_to(IDLE_BUFFER_BYTES.max(input.len()));
    output.shrink_to(IDLE_BUFFER_BYTES);
}

async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) -> io::Result<()> {
    stream.set_nodelay(true)?;
    // Unparsed input lives at input[start..]; it never grows past
    // MAX_HEAD_BYTES plus one read, because the parser refuses longer heads.
    let mut input: Vec<u8> = Vec::with_capacity(4096);
    let mut start = 0usize;
    let mut output: Vec<u8> = Vec::with_capacity(4096);
    let end = 'requests: loop {
        let mut deadline = Instant::now() + shared.read_timeout;
        let request = loop {
            match parse_request(&input[start..]) {
                Ok(Parse::Complete { request, consumed }) => {
                    start += consumed;
                    break request;
                }
                Ok(Parse::Partial) => {}
                Err(_) => break 'requests End::BadRequest,
            }
            // Out of complete requests: send what we owe before waiting.
            if !output.is_empty() {
                stall_guard(stream.write_all(&output)).await?;
                output.clear();
                // Time spent writing to a slow reader is not the next
                // request's: its timeout starts now, unless part of it came.
                if start == input.len() {
                    deadline = Instant::now() + shared.read_timeout;
                }
            }
            input.drain(..start);
            start = 0;
            shrink_idle_buffers(&mut input, &mut output);
            if input.capacity() - input.len() < 2048 {
                input.reserve(4096.min(MAX_HEAD_BYTES));
            }
            match tokio::time::timeout_at(deadline, stream.read_buf(&mut input)).await {
                Ok(Ok(0)) | Err(_) => {
                    // EOF or timeout: a half-received request is a bad one.
                    break 'requests if input.is_empty() { End::Silent } else { End::BadRequest };
                }
                Ok(Ok(_)) => {}
                Ok(Err(err)) => return Err(err),
            }
        };
        let close = request.wants_close();
        respond(&shared, &request, close, &mut output, &mut stream).await?;
        if close {
            break End::Close;
        }
        if output.len() >= MAX_BATCH_BYTES {
            stall_guard(stream.write_all(&output)).await?;
            output.clear();
        }
    };
    match end {
        End::Silent => {
            if !output.is_empty() {
                stall_guard(stream.write_all(&output)).await?;
            }
            return Ok(());
        }
        End::BadRequest => {
            with_date_now(|date| write_head(&mut output, Status::BadRequest, true, date, None));
        }
        End::Close => {}
    }
    stall_guard(stream.write_all(&output)).await?;
    stream.shutdown().await?;
    linger(&mut stream).await;
    Ok(())
}

/// Reads and discards until EOF, [`LINGER`] or 64 KiB, whichever is first.
async fn linger(stream: &mut TcpStream) {
    let deadline = Instant::now() + LINGER;
    let mut scratch = [0u8; 4096];
    let mut budget = 64 * 1024usize;
    while budget > 0 {
        match tokio::time::timeout_at(deadline, stream.read(&mut scratch)).await {
            Ok(Ok(n)) if n > 0 => budget = budget.saturating_sub(n),
            _ => return,
        }
    }
}

/// Appends (or writes) the response to `request`.
async fn respond(
    shared: &Arc<Shared>,
    request: &Request,
    close: bool,
    output: &mut Vec<u8>,
    stream: &mut TcpStream,
) -> io::Result<()> {
    let site = shared.sites.lookup(request.host());
    let file = match (site, relative_path(&request.target)) {
        (Some(site), Ok(relative)) => match shared.cache.get(site, &relative, StdInstant::now()) {
            Some(file) => Some(file),
            None => {
                let shared = Arc::clone(shared);
                tokio::task::spawn_blocking(move || load(&shared, site, &relative))
                    .await
                    .unwrap_or(None)
            }
        },
        _ => None,
    };
    let Some(file) = file else {
        with_date_now(|date| write_head(output, Status::NotFound, close, date, None));
        return Ok(());
    };
    if let CachedBody::Memory(bytes) = &file.body {
        if bytes.len() <= INLINE_BODY_BYTES {
            with_date_now(|date| write_ok(output, close, date, &file.content_type, &file.last_modified, bytes));
            return Ok(());
        }
    }
    let content = Content {
        length: file.body.len(),
        content_type: &file.content_type,
        last_modified: &file.last_modified,
    };
    with_date_now(|date| write_head(output, Status::Ok, close, date, Some(&content)));
    match &file.body {
        CachedBody::Memory(bytes) => {
            let mut both = Buf::chain(&output[..], &bytes[..]);
            stall_guard(stream.write_all_buf(&mut both)).await?;
            output.clear();
        }
        CachedBody::File { file, length } => {
            send_more(stream, output).await?;
            output.clear();
            send_file(stream, file, *length).await?;
        }
    }
    Ok(())
}

/// Resolves and opens (and for small files reads) the file the URL path
/// `relative` names, caching the result; `None` means 404. Blocking: runs on
/// the blocking pool.
fn load(shared: &Shared, site: usize, relative: &std::path::Path) -> Option<Arc<CachedFile>> {
    let resolved = resolve_relative(shared.sites.root(site), relative).ok()?;
    // The type the URL names (as nginx does), not a symlink target's name.
    let content_type = content_type::for_path(relative);
    let modified = resolved.metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
    let last_modified = http_date(modified);
    let length = resolved.metadata.len();
    let file = resolved.file;
    let body = if shared.cache.in_memory(length) {
        // Read at most `length` bytes: the file may change under us, and
        // the Content-Length we promise must match the body we send.
        let mut body = Vec::with_capacity(length as usize);
        use std::io::Read;
        (&file).take(length).read_to_end(&mut body).ok()?;
        if body.len() as u64 != length {
            return None;
        }
        CachedBody::Memory(Bytes::from(body))
    } else {
        CachedBody::File {
            file: Arc::new(file),
            length,
        }
    };
    let now = StdInstant::now();
    let cached = Arc::new(CachedFile::new(body, content_type, last_modified, now));
    shared.cache.insert(site, relative, Arc::clone(&cached), now);
    Some(cached)
}

/// Writes all of `bytes` with `MSG_MORE`, telling the kernel a body follows
/// so the head and the start of the body share segments (what nginx gets
/// from `tcp_nopush`); the following sendfile, without the flag, pushes.
async fn send_more(stream: &mut TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    while !bytes.is_empty() {
        stall_guard(stream.writable()).await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: `fd` is the open socket borrowed from `stream`, and the
            // pointer/length pair describes the live `bytes` slice.
            let n = unsafe {
                libc::send(
                    fd,
                    bytes.as_ptr().cast(),
                    bytes.len(),
                    libc::MSG_MORE | libc::MSG_NOSIGNAL,
                )
            };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match sent {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "socket accepted nothing")),
            Ok(n) => bytes = &bytes[n.min(bytes.len())..],
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Sends `length` bytes of `file` with sendfile(2), waiting for socket
/// writability between chunks. A file that shrank underneath us is an
/// error (the promised Content-Length cannot be honoured), which closes
/// the connection.
async fn send_file(stream: &mut TcpStream, file: &std::fs::File, length: u64) -> io::Result<()> {
    let socket_fd = stream.as_raw_fd();
    let file_fd = file.as_raw_fd();
    let mut offset: libc::off_t = 0;
    let mut remaining = length;
    while remaining > 0 {
        stall_guard(stream.writable()).await?;
        let chunk = remaining.min(1 << 30) as usize;
        let sent = stream.try_io(Interest::WRITABLE, || {
            // SAFETY: both descriptors are open for the duration of the
            // call (borrowed from `stream` and `file`), and `offset` is a
            // valid, exclusively borrowed off_t.
            let n = unsafe { libc::sendfile(socket_fd, file_fd, &mut offset, chunk) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as u64)
            }
        });
        match sent {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                ))
            }
            Ok(n) => remaining = remaining.saturating_sub(n),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_buffers_give_back_what_a_burst_took_but_keep_a_partial_request() {
        let mut input = Vec::with_capacity(1 << 20);
        let mut output = Vec::with_capacity(1 << 20);
        shrink_idle_buffers(&mut input, &mut output);
        assert!(
            input.capacity() <= 2 * IDLE_BUFFER_BYTES,
            "input kept {}",
            input.capacity()
        );
        assert!(
            output.capacity() <= 2 * IDLE_BUFFER_BYTES,
            "output kept {}",
            output.capacity()
        );
        let mut partial = vec![b'x'; 3 * IDLE_BUFFER_BYTES];
        partial.reserve(1 << 20);
        shrink_idle_buffers(&mut partial, &mut output);
        assert_eq!(
            partial,
            vec![b'x'; 3 * IDLE_BUFFER_BYTES],
            "the partial request is kept"
        );
        assert!(partial.capacity() < 1 << 20);
    }
}

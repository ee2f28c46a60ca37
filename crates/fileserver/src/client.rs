//! A client of the file protocol that follows `ERR_REDIRECT` to the leader
//! and moves to another node when one dies, so callers see one file server
//! however many nodes stand behind it.
//!
//! Retry policy: a request that was never sent, or that got a redirect
//! (not applied by anyone), is always retried. A request whose outcome is
//! unknown (the connection broke after sending, or `ERR_INTERNAL`) is
//! retried only if [`Request::is_retry_safe`] (read, write); for `cas` and
//! `delete` the caller gets an error (or the `ERR_INTERNAL` reply) instead
//! of a possibly wrong answer.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::{parse_reply, ParsedReply, Reply, Request};

/// One open connection and the bytes received but not yet parsed.
struct Conn {
    addr: String,
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A redirect-following file-protocol client.
pub struct FileClient {
    endpoints: Vec<String>,
    /// Index of the endpoint to try next when no connection is open.
    next: usize,
    conn: Option<Conn>,
    /// Give up on a request after this long.
    pub deadline: Duration,
    /// Bound on one connect or one reply.
    pub attempt_timeout: Duration,
    /// Largest `CONTENTS` body accepted from a server.
    pub max_content_bytes: usize,
}

impl FileClient {
    /// A client of the cluster reachable at `endpoints` (`host:port` of the
    /// nodes' file servers; any subset works).
    pub fn new(endpoints: Vec<String>) -> anyhow::Result<FileClient> {
        if endpoints.is_empty() {
            bail!("no file server endpoints given");
        }
        Ok(FileClient {
            endpoints,
            next: 0,
            conn: None,
            deadline: Duration::from_secs(15),
            attempt_timeout: Duration::from_secs(6),
            max_content_bytes: 64 << 20,
        })
    }

    /// Starts the rotation at endpoint `i` (spreads clients over the nodes).
    pub fn start_at(mut self, i: usize) -> FileClient {
        self.next = i % self.endpoints.len();
        self
    }

    /// The address of the open connection, if any.
    pub fn connected_to(&self) -> Option<&str> {
        self.conn.as_ref().map(|c| c.addr.as_str())
    }

    async fn connect(&mut self, addr: &str) -> anyhow::Result<()> {
        let stream = tokio::time::timeout(self.attempt_timeout, TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr}: timed out"))?
            .with_context(|| format!("connecting to {addr}"))?;
        let _ = stream.set_nodelay(true);
        self.conn = Some(Conn {
            addr: addr.to_string(),
            stream,
            buf: Vec::new(),
        });
        Ok(())
    }

    fn rotate(&mut self) -> String {
        let a = self.endpoints[self.next % self.endpoints.len()].clone();
        self.next = (self.next + 1) % self.endpoints.len();
        a
    }

    /// Sends one request on the open connection and reads its reply.
    async fn exchange(conn: &mut Conn, wire: &[u8], max_content: usize, timeout: Duration) -> anyhow::Result<Reply> {
        conn.stream.write_all(wire).await.context("sending")?;
        let read = async {
            loop {
                match parse_reply(&conn.buf, max_content) {
                    ParsedReply::Reply(r, n) => {
                        conn.buf.drain(..n);
                        return Ok(r);
                    }
                    ParsedReply::Invalid(why) => bail!("{why}"),
                    ParsedReply::Incomplete => {}
                }
                conn.buf.reserve(16 * 1024);
                if conn.stream.read_buf(&mut conn.buf).await.context("receiving")? == 0 {
                    bail!("the server closed the connection");
                }
            }
        };
        tokio::time::timeout(timeout, read).await.context("no reply in time")?
    }

    /// Sends `req` and returns the final reply (never a redirect, unless
    /// redirects went on until the deadline). See the module docs for
    /// what is retried.
    pub async fn call(&mut self, req: &Request) -> anyhow::Result<Reply> {
        let mut wire = Vec::new();
        req.encode(&mut wire);
        let start = Instant::now();
        let mut last_error = None;
        let mut redirect: Option<String> = None;
        while start.elapsed() < self.deadline {
            if self.conn.is_none() {
                let addr = redirect.take().unwrap_or_else(|| self.rotate());
                if let Err(e) = self.connect(&addr).await {
                    last_error = Some(e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
            let conn = self.conn.as_mut().expect("connected above");
            match Self::exchange(conn, &wire, self.max_content_bytes, self.attempt_timeout).await {
                Ok(Reply::Redirect(Some(addr))) => {
                    if self.conn.as_ref().is_some_and(|c| c.addr == addr) {
                        // A node that redirects to itself is mid-transition.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    self.conn = None;
                    redirect = Some(addr);
                }
                Ok(Reply::Redirect(None)) => {
                    // No leader known yet (an election is on): try elsewhere shortly.
                    self.conn = None;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(Reply::Internal) if req.is_retry_safe() => {
                    last_error = Some(anyhow::anyhow!("ERR_INTERNAL from {}", conn.addr));
                    self.conn = None;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(r) => return Ok(r),
                Err(e) => {
                    let e = e.context(format!("talking to {}", conn.addr));
                    self.conn = None;
                    if !req.is_retry_safe() {
                        return Err(e.context("the outcome of the request is unknown"));
                    }
                    last_error = Some(e);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow::anyhow!("redirected until the deadline"))
            .context(format!("no answer within {:?}", self.deadline)))
    }
}

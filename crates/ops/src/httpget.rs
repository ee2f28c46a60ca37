//! A minimal, bounded HTTP/1.1 GET client over plain TCP.
//!
//! Why not an HTTP client crate: `triton up` and the tests only ever fetch
//! small JSON or text documents from our own nodes over loopback; a blocking
//! socket with a timeout and a size cap is all that takes.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};

/// Largest response [`get`] accepts.
pub const MAX_RESPONSE_BYTES: u64 = 4 << 20;

/// A response: status code and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// Header names (lower-cased) and values.
    pub headers: Vec<(String, String)>,
    /// The body (everything after the head; the server closes the connection).
    pub body: String,
}

impl Response {
    /// The first header of this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

/// Fetches `http://{addr}{path}`; the whole fetch takes at most about
/// twice `timeout` (connect, then the exchange), even from a server that
/// trickles its answer a byte at a time.
pub fn get(addr: &str, path: &str, timeout: Duration) -> anyhow::Result<Response> {
    let sock = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&sock, timeout).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let deadline = std::time::Instant::now() + timeout;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // Each read waits at most until the deadline.
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            bail!("no complete response from {addr} within {timeout:?}");
        }
        stream.set_read_timeout(Some(left))?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // The read waited out what was left of the deadline.
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                bail!("no complete response from {addr} within {timeout:?}")
            }
            Err(e) => return Err(e).with_context(|| format!("reading the response from {addr}")),
        };
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
        if raw.len() as u64 > MAX_RESPONSE_BYTES {
            break;
        }
    }
    if raw.len() as u64 > MAX_RESPONSE_BYTES {
        bail!("response from {addr} larger than {MAX_RESPONSE_BYTES} bytes");
    }
    parse_response(&raw)
}

/// Parses a complete response (head and body up to the connection's end).
pub fn parse_response(raw: &[u8]) -> anyhow::Result<Response> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(raw).context("malformed HTTP response head")? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => bail!("truncated HTTP response head"),
    };
    let status = resp.code.context("HTTP response without a status code")?;
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let mut body = &raw[head_len..];
    if let Some(len) = headers.iter().find(|(n, _)| n == "content-length") {
        let len: usize = len.1.trim().parse().context("bad Content-Length")?;
        if len > body.len() {
            bail!("body shorter ({}) than its Content-Length ({len})", body.len());
        }
        body = &body[..len];
    }
    let body = String::from_utf8(body.to_vec()).context("the body is not UTF-8")?;
    Ok(Response { status, headers, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_response() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhiEXTRA").unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, "hi");
        assert_eq!(r.header("x-a"), Some("b"));
    }

    #[test]
    fn rejects_bad_responses() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Le").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhi").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\nhi").is_err());
    }

    #[test]
    fn a_server_that_trickles_its_answer_is_cut_off_at_the_deadline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // One byte every 50 ms: each read succeeds well within the
            // timeout, so only an overall deadline ends the fetch.
            for _ in 0..100 {
                if s.write_all(b"H").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let started = std::time::Instant::now();
        let err = get(&addr, "/status", Duration::from_millis(300)).unwrap_err();
        assert!(err.to_string().contains("no complete response"), "{err:#}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
        server.join().unwrap();
    }
}

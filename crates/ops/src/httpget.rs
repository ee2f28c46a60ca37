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

/// Fetches `http://{addr}{path}`; every step is bounded by `timeout`.
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
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES + 1)
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the response from {addr}"))?;
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
}

//! # Running Triton
//!
//! What an operator needs beyond the storage itself:
//!
//! - [`face`]: each node's HTTP port (`http_addr` in the config), serving
//!   `/metrics` (Prometheus text), `/status` (JSON) and `/` (the dashboard);
//! - [`render`]: the pure functions that turn a node's status into those
//!   texts (kept apart so they can be tested without a running node);
//! - [`httpget`]: a minimal HTTP/1.1 client for polling `/status` (used by
//!   `triton up` to wait for a leader, and by tests);
//! - [`up`]: `triton up`, a supervisor that runs a whole local cluster as
//!   child processes of the one binary.

pub mod face;
pub mod httpget;
pub mod render;
pub mod up;

pub use face::MetricsFace;

/// Runs bytes from the network through every parser of this crate (the
/// HTTP request head, the HTTP response, the `/status` JSON) and checks
/// they return (never panic) and that what parses is consistent. The fuzz
/// target and the corpus test call this.
pub fn check_network_input(bytes: &[u8]) {
    if let Ok(Some((route, head_only))) = face::parse_request(bytes) {
        // The method, read independently of httparse (which skips blank
        // lines before the request line), decides HEAD and 405.
        let start = bytes.iter().position(|b| !b"\r\n".contains(b)).unwrap_or(bytes.len());
        let method = bytes[start..].split(|&b| b == b' ').next().unwrap_or_default();
        assert_eq!(head_only, method == b"HEAD");
        assert_eq!(route == face::Route::BadMethod, method != b"GET" && method != b"HEAD");
        // A read may bring bytes after the head; they must not change the answer.
        let longer = [bytes, b"GET /x HTTP/1.1\r\n"].concat();
        assert_eq!(face::parse_request(&longer).ok().flatten(), Some((route, head_only)));
    }
    if let Ok(r) = httpget::parse_response(bytes) {
        // The body is framed by Content-Length when there is one, else it is
        // everything after the head.
        match r.header("content-length") {
            Some(len) => assert_eq!(Ok(r.body.len()), len.trim().parse()),
            None => assert!(bytes.ends_with(r.body.as_bytes())),
        }
        assert!(r.headers.iter().all(|(n, _)| *n == n.to_ascii_lowercase()));
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Ok(doc) = render::parse_status(text) {
            let again = serde_json::to_string(&doc).expect("a parsed document serialises");
            assert_eq!(render::parse_status(&again).expect("round trip"), doc);
        }
    }
}

//! TritonHTTP: a small, spec-exact HTTP/1.1 static file server.
//!
//! The server speaks a deliberately tiny subset of HTTP/1.1 (only `GET`, only
//! three status codes, persistent connections and pipelining) so that every
//! byte it writes is predictable and testable. The pieces are split so each
//! can be tested on its own:
//!
//! * [`request`] turns bytes into a [`request::Request`] (or says why not);
//! * [`response`] renders a status line and sorted headers;
//! * [`sites`] maps a `Host` header to a document root (virtual hosts);
//! * [`resolve`] turns a URL into a file that is provably inside its docroot;
//! * [`content_type`] picks the `Content-Type` from the file extension;
//! * [`cache`] keeps recently served files for a short time: small ones in
//!   memory, large ones as open descriptors to `sendfile` from;
//! * [`server`] ties them together over tokio sockets.
//!
//! Limits, so no client can exhaust the process: request heads of at most
//! 8 KiB and 64 headers; a GET carrying a body is a 400; connections at once
//! are capped (`ServerConfig::max_connections`; `triton http` takes the
//! smaller of `--max-connections` and what the open-file limit allows, which
//! it raises to its hard limit at startup) and further clients wait in the
//! listen backlog; a connection's buffers shrink back when it goes idle;
//! cached descriptors are sized from the open-file limit; the cache is keyed by the file a URL names, so query
//! strings and spellings of one URL share an entry, and expired entries are
//! swept every TTL (at least every second).

pub mod cache;
pub mod content_type;
pub mod request;
pub mod resolve;
pub mod response;
pub mod server;
pub mod sites;

pub use request::{parse_request, BadRequest, Parse, Request};
pub use server::{Server, ServerConfig};
pub use sites::Sites;

/// Parses a duration such as `300ms`, `5s` or `1m` for command-line options.
///
/// Lives here (not in the binary) so the CLI stays a thin shell and the
/// accepted syntax is tested with the rest of the server.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text).map_err(|err| format!("invalid duration {text:?}: {err}"))?;
    // Deadlines are `Instant::now() + d`, which panics past the clock's range.
    if d > MAX_DURATION {
        return Err(format!("duration {text:?} is longer than the most allowed, 365 days"));
    }
    Ok(d)
}

/// The longest timeout or cache lifetime accepted.
pub const MAX_DURATION: std::time::Duration = std::time::Duration::from_secs(365 * 86_400);

/// [`parse_duration`] for a timeout, which must be more than zero.
pub fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    match parse_duration(text)? {
        d if d.is_zero() => Err(format!("timeout {text:?} must be more than zero")),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_parse_and_bad_ones_fail() {
        assert_eq!(parse_duration("300ms").unwrap(), Duration::from_millis(300));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert!(parse_duration("five seconds").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_timeout("0s").is_err());
        assert_eq!(parse_timeout("2s").unwrap(), Duration::from_secs(2));
        // Past what an `Instant` deadline can hold (it panicked on every
        // connection): refused at the command line.
        assert!(parse_timeout("500000000000y").unwrap_err().contains("365 days"));
        assert!(parse_duration("366days").is_err());
        assert_eq!(parse_timeout("365days").unwrap(), MAX_DURATION);
    }
}

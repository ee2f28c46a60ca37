//! In-process tests of the server's caching and sendfile paths, where the
//! library's knobs (cache limits) are easier to set than through the CLI.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use triton_http::cache::CacheConfig;
use triton_http::{Server, ServerConfig, Sites};

/// Starts a server on a free loopback port in a background runtime; the
/// runtime (and server) is dropped with the returned guard.
fn start(docroot: &Path, cache: CacheConfig) -> (tokio::runtime::Runtime, SocketAddr) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        sites: Sites::single(docroot).unwrap(),
        read_timeout: Duration::from_millis(300),
        cache,
    };
    let server = runtime.block_on(Server::bind(config)).unwrap();
    let addr = server.local_addr().unwrap();
    runtime.spawn(server.run());
    (runtime, addr)
}

fn fetch(addr: SocketAddr, path: &str) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).unwrap();
    out
}

fn body(response: &[u8]) -> &[u8] {
    let at = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    &response[at + 4..]
}

fn header<'a>(response: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(&response[..response.windows(4).position(|w| w == b"\r\n\r\n")?]).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
}

#[test]
fn cached_entries_are_served_until_the_ttl_passes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"first").unwrap();
    let cache = CacheConfig {
        ttl: Duration::from_secs(3600),
        ..CacheConfig::default()
    };
    let (_runtime, addr) = start(dir.path(), cache);
    assert_eq!(body(&fetch(addr, "/a.txt")), b"first");
    std::fs::write(dir.path().join("a.txt"), b"second").unwrap();
    // Within the TTL the cached copy is served (documented staleness)...
    assert_eq!(body(&fetch(addr, "/a.txt")), b"first");
    // ...but another spelling of the URL is its own entry, read afresh.
    assert_eq!(body(&fetch(addr, "/./a.txt")), b"second");
}

#[test]
fn large_files_go_through_sendfile_and_a_shrunk_file_cuts_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.path().join("big.bin"), &data).unwrap();
    let cache = CacheConfig {
        ttl: Duration::from_secs(3600),
        max_file_bytes: 1000,
        ..CacheConfig::default()
    };
    let (_runtime, addr) = start(dir.path(), cache);
    let first = fetch(addr, "/big.bin");
    assert_eq!(header(&first, "Content-Length"), Some("300000"));
    assert_eq!(body(&first), &data[..]);
    // Served again from the cached descriptor.
    assert_eq!(body(&fetch(addr, "/big.bin")), &data[..]);
    // Truncated underneath the cached descriptor: the promised length can
    // no longer be met, so the server sends what exists and closes.
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("big.bin"))
        .unwrap()
        .set_len(10)
        .unwrap();
    let cut = fetch(addr, "/big.bin");
    assert_eq!(header(&cut, "Content-Length"), Some("300000"));
    assert_eq!(body(&cut), &data[..10]);
}

#[test]
fn header_helper_finds_values() {
    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    assert_eq!(header(response, "Content-Length"), Some("5"));
    assert_eq!(header(response, "Content-Type"), None);
    assert_eq!(body(response), b"hello");
}

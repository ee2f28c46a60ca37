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
    start_with(docroot, cache, Duration::from_millis(300), 1024)
}

fn start_with(
    docroot: &Path,
    cache: CacheConfig,
    read_timeout: Duration,
    max_connections: usize,
) -> (tokio::runtime::Runtime, SocketAddr) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        sites: Sites::single(docroot).unwrap(),
        read_timeout,
        cache,
        max_connections,
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
    // ...under every spelling of the URL: one file, one entry.
    assert_eq!(body(&fetch(addr, "/./a.txt?v=2")), b"first");
    assert_eq!(body(&fetch(addr, "/%61.txt")), b"first");
}

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A client asking for one large file under many query strings must not
/// make the cache hold a descriptor per spelling (it used to, until the
/// process ran out of descriptors and could accept no one).
#[test]
fn spellings_of_one_url_share_one_cached_descriptor() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.bin"), vec![7u8; 100_000]).unwrap();
    let cache = CacheConfig {
        ttl: Duration::from_secs(3600),
        max_file_bytes: 1000,
        ..CacheConfig::default()
    };
    let (_runtime, addr) = start(dir.path(), cache);
    assert_eq!(body(&fetch(addr, "/big.bin")).len(), 100_000);
    let before = open_descriptors();
    // 300 spellings against a margin of 50: the other tests of this binary
    // open and close sockets meanwhile, but far fewer than 300.
    for i in 0..300 {
        assert_eq!(body(&fetch(addr, &format!("/big.bin?{i}"))).len(), 100_000);
    }
    let after = open_descriptors();
    assert!(after < before + 50, "{before} descriptors became {after}");
}

/// Past `max_connections`, a client waits in the backlog until one ends.
#[test]
fn connections_beyond_the_limit_wait_for_a_free_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"hi").unwrap();
    let (_runtime, addr) = start_with(dir.path(), CacheConfig::default(), Duration::from_secs(30), 1);
    let idle = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut waiting = TcpStream::connect(addr).unwrap();
    write!(waiting, "GET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
    waiting.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut first = [0u8; 1];
    let early = waiting.read(&mut first);
    assert!(early.is_err(), "answered while the only place was taken: {early:?}");
    drop(idle);
    waiting.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    waiting.read_to_end(&mut out).unwrap();
    assert_eq!(body(&out), b"hi");
}

/// The type comes from the name in the URL, not from a symlink's target.
#[test]
fn content_type_follows_the_url_and_old_files_are_served() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blob"), b"<p>hi</p>").unwrap();
    std::os::unix::fs::symlink("blob", dir.path().join("page.html")).unwrap();
    let old = std::fs::File::create(dir.path().join("old.txt")).unwrap();
    old.set_modified(std::time::UNIX_EPOCH - Duration::from_secs(86_400))
        .unwrap();
    let (_runtime, addr) = start(dir.path(), CacheConfig::default());
    let page = fetch(addr, "/page.html");
    assert_eq!(header(&page, "Content-Type"), Some("text/html; charset=utf-8"));
    assert_eq!(body(&page), b"<p>hi</p>");
    // Dated 1969: clamped to the first date the format holds, not a 404.
    let old = fetch(addr, "/old.txt");
    assert!(
        old.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&old)
    );
    assert_eq!(header(&old, "Last-Modified"), Some("Thu, 01 Jan 1970 00:00:00 GMT"));
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

//! End-to-end tests of `triton http` over real sockets: each test starts the
//! binary on a free port, sends raw bytes, and compares the exact bytes of
//! the responses. The `Date` header is checked (a valid IMF-fixdate within
//! a minute of now) and then replaced by `<DATE>` so responses compare
//! exactly. Servers run with a 1 s read timeout so timeouts are quick.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use triton_http::response::{http_date, parse_imf_fixdate};

/// Short, since most tests read until the server closes an idle keep-alive
/// connection; not so short that a test thread descheduled between its
/// connect and its write on a loaded machine sees its request timed out.
const READ_TIMEOUT: &str = "1s";
/// Files above this size take the sendfile path on the virtual-host server.
const CACHE_MAX_FILE: usize = 100_000;
const HTML: &str = "text/html; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

// ---------------------------------------------------------------------------
// Fixtures

/// A temporary directory tree removed on drop.
struct TempTree(PathBuf);

impl TempTree {
    fn new() -> TempTree {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let path = std::env::temp_dir().join(format!(
            "triton-http-e2e-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        TempTree(path)
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), reproducible from `seed`.
fn seeded_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Builds `docroot/{htdocs1,htdocs2}`, a secret outside the docroot, and
/// symlinks pointing inside and outside; returns the docroot.
fn build_tree(tree: &TempTree) -> PathBuf {
    let docroot = tree.0.join("docroot");
    let write = |rel: &str, data: &[u8]| {
        let path = docroot.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    };
    write("htdocs1/index.html", b"<html><body>website1</body></html>\n");
    write("htdocs1/subdir/index.html", b"<html>subdir of website1</html>\n");
    write("htdocs1/subdir/style.css", b"body { color: red; }\n");
    write("htdocs1/app.js", b"console.log('hi');\n");
    write("htdocs1/notes.txt", "caf\u{e9} notes\n".as_bytes());
    write("htdocs1/UCSD_Seal.png", &seeded_bytes(1, 20_000));
    write("htdocs1/Makefile", b"all:\n\ttrue\n");
    write("htdocs1/empty.html", b"");
    write("htdocs1/sp ace.txt", b"space in name\n");
    write("htdocs2/index.html", b"<html><body>website2</body></html>\n");
    write("htdocs2/photo.jpg", &seeded_bytes(2, 50_000));
    write("htdocs2/big.bin", &seeded_bytes(3, 300_000));
    write("htdocs2/deep/er/still/data.json", b"{\"ok\": true}\n");
    std::fs::write(tree.0.join("secret.txt"), b"top secret\n").unwrap();
    let h1 = docroot.join("htdocs1");
    std::os::unix::fs::symlink(tree.0.join("secret.txt"), h1.join("link-out.txt")).unwrap();
    std::os::unix::fs::symlink(&tree.0, h1.join("linkdir")).unwrap();
    std::os::unix::fs::symlink(h1.join("notes.txt"), h1.join("link-in.txt")).unwrap();
    std::fs::write(
        tree.0.join("vhosts.yaml"),
        "virtual_hosts:\n  - hostName: website1\n    docRoot: htdocs1\n  - hostName: website2\n    docRoot: htdocs2\n",
    )
    .unwrap();
    docroot
}

/// A running `triton http`, killed on drop (even when the test panics).
struct Server {
    child: Child,
    port: u16,
    /// The directory URLs are relative to in `ok()` (docroot or its parent).
    docroot: PathBuf,
    tree: TempTree,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server with virtual hosts website1 and website2, caching files up to
/// CACHE_MAX_FILE bytes and sending bigger ones with sendfile.
fn start_virtual_hosts() -> Server {
    start_virtual_hosts_with_timeout(READ_TIMEOUT)
}

/// Like [`start_virtual_hosts`] with another read timeout.
fn start_virtual_hosts_with_timeout(timeout: &str) -> Server {
    let tree = TempTree::new();
    let docroot = build_tree(&tree);
    let config = tree.0.join("vhosts.yaml");
    let max = CACHE_MAX_FILE.to_string();
    let extra = [
        "--vh-config",
        config.to_str().unwrap(),
        "--cache-max-file-bytes",
        &max,
        "--timeout",
        timeout,
    ];
    start(tree, docroot, &extra)
}

/// A server without virtual hosts and with the file cache off.
fn start_single_root() -> Server {
    let tree = TempTree::new();
    let docroot = build_tree(&tree).join("htdocs1");
    start(tree, docroot, &["--cache-ttl", "0s", "--timeout", READ_TIMEOUT])
}

/// Starts `triton http` on a port the kernel picks (`--port 0`), read from
/// its `listening on` line: no window in which another test's server could
/// take a port chosen in advance.
fn start(tree: TempTree, docroot: PathBuf, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_triton"))
        .args(["http", "--bind", "127.0.0.1", "--port", "0"])
        .arg("--docroot")
        .arg(&docroot)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start triton http");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut sent = false;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            match line.rsplit_once("listening on http://127.0.0.1:") {
                Some((_, port)) if !sent => {
                    sent = tx.send(port.trim().parse::<u16>().ok()).is_ok();
                }
                // Pass the rest on, so the pipe never fills.
                _ => eprintln!("{line}"),
            }
        }
    });
    let port = match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Some(port)) => port,
        other => {
            let _ = child.kill();
            panic!("triton http did not report its port: {other:?}, {:?}", child.wait());
        }
    };
    Server {
        child,
        port,
        docroot,
        tree,
    }
}

// ---------------------------------------------------------------------------
// Talking and comparing

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// Reads until the server closes the connection.
fn read_all(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream
        .read_to_end(&mut out)
        .expect("server closes within the client timeout");
    out
}

/// Sends `request` in one write on a fresh connection and returns every
/// byte the server sends before closing (it closes after a 400, after
/// `Connection: close`, or when the read timeout fires).
fn exchange(server: &Server, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(server);
    stream.write_all(request).unwrap();
    read_all(&mut stream)
}

/// Checks that every `Date:` header is an IMF-fixdate within a minute of
/// now and replaces its value with `<DATE>`.
fn normalize_dates(raw: &[u8]) -> Vec<u8> {
    const KEY: &[u8] = b"\r\nDate: ";
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = find(rest, KEY) {
        out.extend_from_slice(&rest[..at + KEY.len()]);
        rest = &rest[at + KEY.len()..];
        let end = find(rest, b"\r\n").expect("Date line ends");
        let text = std::str::from_utf8(&rest[..end]).expect("Date is ASCII");
        let date = parse_imf_fixdate(text).unwrap_or_else(|| panic!("bad Date {text:?}"));
        let now = SystemTime::now();
        let skew = match now.duration_since(date) {
            Ok(age) => age,
            Err(ahead) => ahead.duration(),
        };
        assert!(
            skew < Duration::from_secs(60),
            "Date {text:?} is not within a minute of now"
        );
        out.extend_from_slice(b"<DATE>");
        rest = &rest[end..];
    }
    out.extend_from_slice(rest);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The exact `200 OK` for the file at `rel` (relative to `server.docroot`).
fn ok(server: &Server, rel: &str, content_type: &str, close: bool) -> Vec<u8> {
    let path = server.docroot.join(rel);
    let body = std::fs::read(&path).unwrap();
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut out = b"HTTP/1.1 200 OK\r\n".to_vec();
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(
        format!(
            "Content-Length: {}\r\nContent-Type: {content_type}\r\nDate: <DATE>\r\nLast-Modified: {}\r\n\r\n",
            body.len(),
            http_date(modified)
        )
        .as_bytes(),
    );
    out.extend_from_slice(&body);
    out
}

fn not_found(close: bool) -> Vec<u8> {
    let close = if close { "Connection: close\r\n" } else { "" };
    format!("HTTP/1.1 404 Not Found\r\n{close}Date: <DATE>\r\n\r\n").into_bytes()
}

fn bad_request() -> Vec<u8> {
    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nDate: <DATE>\r\n\r\n".to_vec()
}

fn get(url: &str, host: &str) -> String {
    format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n")
}

fn get_close(url: &str, host: &str) -> String {
    format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

#[track_caller]
fn assert_bytes(got: &[u8], want: &[u8]) {
    let got = normalize_dates(got);
    if got != want {
        panic!(
            "response mismatch\n--- got ({} bytes)\n{}\n--- want ({} bytes)\n{}",
            got.len(),
            String::from_utf8_lossy(&got[..got.len().min(600)]),
            want.len(),
            String::from_utf8_lossy(&want[..want.len().min(600)])
        );
    }
}

// ---------------------------------------------------------------------------
// Tests

#[test]
fn ok_basic() {
    let server = start_virtual_hosts();
    let got = exchange(&server, get("/index.html", "website1").as_bytes());
    assert_bytes(&got, &ok(&server, "htdocs1/index.html", HTML, false));
}

#[test]
fn ok_with_close() {
    let server = start_virtual_hosts();
    let got = exchange(&server, get_close("/index.html", "website2").as_bytes());
    assert_bytes(&got, &ok(&server, "htdocs2/index.html", HTML, true));
}

#[test]
fn default_slash_is_index_html() {
    let server = start_virtual_hosts();
    let request = get("/", "website1") + &get("/subdir/", "website1:8080") + &get_close("/", "website2");
    let mut want = ok(&server, "htdocs1/index.html", HTML, false);
    want.extend(ok(&server, "htdocs1/subdir/index.html", HTML, false));
    want.extend(ok(&server, "htdocs2/index.html", HTML, true));
    assert_bytes(&exchange(&server, request.as_bytes()), &want);
}

#[test]
fn not_found_keeps_the_connection_open() {
    let server = start_virtual_hosts();
    let request = get("/nope.html", "website1")
        + &get("/index.html", "no-such-host")
        + &get("/subdir", "website1")
        + &get_close("/index.html", "website1");
    let mut want = not_found(false);
    want.extend(not_found(false));
    want.extend(not_found(false));
    want.extend(ok(&server, "htdocs1/index.html", HTML, true));
    assert_bytes(&exchange(&server, request.as_bytes()), &want);
    let got = exchange(&server, get_close("/nope", "website2").as_bytes());
    assert_bytes(&got, &not_found(true));
}

#[test]
fn bad_requests_get_400_and_close() {
    let server = start_virtual_hosts();
    for request in [
        "This is a bad request\r\n\r\n",
        "GETT /index.html HTTP/1.1\r\nHost: website1\r\n\r\n",
        "GET /index.html HTTP/1.0\r\nHost: website1\r\n\r\n",
        "GET index.html HTTP/1.1\r\nHost: website1\r\n\r\n",
        "GET /index.html HTTP/1.1\r\n\r\n",
        "GET /index.html HTTP/1.1\r\nHost: website1\r\nNoColon\r\n\r\n",
        "\r\n",
    ] {
        let got = exchange(&server, request.as_bytes());
        assert_bytes(&got, &bad_request());
    }
}

#[test]
fn bad_request_line_is_answered_without_waiting_for_the_head() {
    // Only the request line arrives, and the server's read timeout (30 s)
    // is longer than the client's (10 s): the 400 can only come back in
    // time if the server refuses the line as soon as it sees it.
    let server = start_virtual_hosts_with_timeout("30s");
    let mut stream = connect(&server);
    stream.write_all(b"GETT /index.html HTTP/1.1\r\n").unwrap();
    assert_bytes(&read_all(&mut stream), &bad_request());
}

#[test]
fn idle_connection_times_out_silently() {
    let server = start_virtual_hosts();
    let mut stream = connect(&server);
    assert_eq!(read_all(&mut stream), b"");
}

#[test]
fn partial_request_times_out_with_400() {
    let server = start_virtual_hosts();
    let mut stream = connect(&server);
    stream.write_all(b"GET /index.html HTTP/1.1\r\nHost: webs").unwrap();
    assert_bytes(&read_all(&mut stream), &bad_request());
}

#[test]
fn timeout_restarts_for_each_request() {
    // Three requests 1.6 s apart under a 3 s timeout (1.4 s of slack each
    // for a loaded machine): one deadline for the whole connection would
    // end it before the third.
    let server = start_virtual_hosts_with_timeout("3s");
    let mut stream = connect(&server);
    stream.write_all(get("/index.html", "website1").as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(1600));
    stream.write_all(get("/app.js", "website1").as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(1600));
    stream.write_all(get_close("/", "website2").as_bytes()).unwrap();
    let mut want = ok(&server, "htdocs1/index.html", HTML, false);
    want.extend(ok(&server, "htdocs1/app.js", "application/javascript", false));
    want.extend(ok(&server, "htdocs2/index.html", HTML, true));
    assert_bytes(&read_all(&mut stream), &want);
}

#[test]
fn a_partial_request_after_a_response_times_out_with_400() {
    // After a full response an idle client is closed silently (ok_basic);
    // after a response and a partial request it gets a 400.
    let server = start_virtual_hosts();
    let request = get("/index.html", "website1") + "GET /index.html HTTP/1.1\r\n";
    let mut want = ok(&server, "htdocs1/index.html", HTML, false);
    want.extend(bad_request());
    assert_bytes(&exchange(&server, request.as_bytes()), &want);
}

#[test]
fn half_closed_client_with_partial_request_gets_400() {
    let server = start_virtual_hosts();
    let mut stream = connect(&server);
    stream.write_all(b"GET /index.html HTTP/1.1\r\nHo").unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    assert_bytes(&read_all(&mut stream), &bad_request());
}

#[test]
fn pipelined_ok_ok_ok() {
    let server = start_virtual_hosts();
    let request = get("/index.html", "website1") + &get("/UCSD_Seal.png", "website1") + &get("/photo.jpg", "website2");
    let mut want = ok(&server, "htdocs1/index.html", HTML, false);
    want.extend(ok(&server, "htdocs1/UCSD_Seal.png", "image/png", false));
    want.extend(ok(&server, "htdocs2/photo.jpg", "image/jpeg", false));
    assert_bytes(&exchange(&server, request.as_bytes()), &want);
}

#[test]
fn pipelined_requests_split_across_writes() {
    // A long read timeout: the dribbled request must not race the timer on
    // a loaded machine (the last request closes the connection anyway).
    let server = start_virtual_hosts_with_timeout("30s");
    let request = get("/index.html", "website1") + &get("/app.js", "website1") + &get_close("/", "website2");
    let mut stream = connect(&server);
    for chunk in request.as_bytes().chunks(7) {
        stream.write_all(chunk).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut want = ok(&server, "htdocs1/index.html", HTML, false);
    want.extend(ok(&server, "htdocs1/app.js", "application/javascript", false));
    want.extend(ok(&server, "htdocs2/index.html", HTML, true));
    assert_bytes(&read_all(&mut stream), &want);
}

#[test]
fn ok_bad_ok_returns_only_ok_then_400() {
    let server = start_virtual_hosts();
    let request = get("/index.html", "website1")
        + "GETT /index.html HTTP/1.1\r\nHost: website1\r\n\r\n"
        + &get("/index.html", "website1");
    let mut want = ok(&server, "htdocs1/index.html", HTML, false);
    want.extend(bad_request());
    assert_bytes(&exchange(&server, request.as_bytes()), &want);
}

#[test]
fn one_idle_connection_does_not_block_another() {
    // The idle connection's timeout (60 s) is far longer than the busy one
    // may wait (10 s): a server serving one connection at a time fails.
    let server = start_virtual_hosts_with_timeout("60s");
    let mut idle = connect(&server);
    idle.write_all(b"GET /index.html HTTP/1.1\r\n").unwrap();
    let mut busy = connect(&server);
    busy.write_all(get_close("/index.html", "website2").as_bytes()).unwrap();
    assert_bytes(&read_all(&mut busy), &ok(&server, "htdocs2/index.html", HTML, true));
    idle.write_all(b"Host: website1\r\nConnection: close\r\n\r\n").unwrap();
    assert_bytes(&read_all(&mut idle), &ok(&server, "htdocs1/index.html", HTML, true));
    drop(server);
    let server = start_virtual_hosts();
    let mut silent = connect(&server);
    let mut other = connect(&server);
    other.write_all(get_close("/app.js", "website1").as_bytes()).unwrap();
    assert_bytes(
        &read_all(&mut other),
        &ok(&server, "htdocs1/app.js", "application/javascript", true),
    );
    assert_eq!(read_all(&mut silent), b"");
}

/// Every regular file under `dir`, relative to it (symlinks are skipped).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path().strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

fn expected_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => HTML,
        "css" => "text/css",
        "js" => "application/javascript",
        "png" => "image/png",
        "jpg" => "image/jpeg",
        "txt" => TEXT,
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

fn url_for(rel: &Path) -> String {
    let mut url = String::new();
    for part in rel.iter() {
        url.push('/');
        url.push_str(&part.to_str().unwrap().replace(' ', "%20"));
    }
    url
}

#[test]
fn every_file_of_every_virtual_host() {
    let server = start_virtual_hosts();
    let mut served = 0;
    for (host, dir) in [("website1", "htdocs1"), ("website2", "htdocs2")] {
        let files = files_under(&server.docroot.join(dir));
        assert!(files.len() >= 4);
        let mut request = String::new();
        let mut want = Vec::new();
        for (i, rel) in files.iter().enumerate() {
            let last = i + 1 == files.len();
            let url = url_for(rel);
            request += &if last { get_close(&url, host) } else { get(&url, host) };
            let rel_to_docroot = Path::new(dir).join(rel);
            want.extend(ok(&server, rel_to_docroot.to_str().unwrap(), expected_type(rel), last));
            served += 1;
        }
        // Twice: the second round is served from the cache (or sendfile).
        for _ in 0..2 {
            assert_bytes(&exchange(&server, request.as_bytes()), &want);
        }
    }
    assert!(served >= 12);
    // A file over the cache limit was among them, so sendfile was exercised.
    let big = std::fs::metadata(server.docroot.join("htdocs2/big.bin")).unwrap();
    assert!(big.len() as usize > CACHE_MAX_FILE);
}

#[test]
fn single_root_serves_any_host_without_cache() {
    let server = start_single_root();
    let request = get("/index.html", "anything") + &get("/notes.txt", "x:1") + &get_close("/link-in.txt", "y");
    let mut want = ok(&server, "index.html", HTML, false);
    want.extend(ok(&server, "notes.txt", TEXT, false));
    want.extend(ok(&server, "notes.txt", TEXT, true));
    assert_bytes(&exchange(&server, request.as_bytes()), &want);
    // With the cache off, a file changed on disk is seen at once.
    std::fs::write(server.docroot.join("notes.txt"), b"changed\n").unwrap();
    let got = exchange(&server, get_close("/notes.txt", "a").as_bytes());
    assert_bytes(&got, &ok(&server, "notes.txt", TEXT, true));
}

#[test]
fn path_escapes_are_404() {
    let server = start_virtual_hosts();
    assert!(server.tree.0.join("secret.txt").exists());
    for url in [
        "/../secret.txt",
        "/../../secret.txt",
        "/subdir/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/link-out.txt",
        "/linkdir/secret.txt",
        "/..",
        "/a%00b",
    ] {
        let got = exchange(&server, get_close(url, "website1").as_bytes());
        assert_bytes(&got, &not_found(true));
    }
    // A symlink that stays inside the docroot is served.
    let got = exchange(&server, get_close("/link-in.txt", "website1").as_bytes());
    assert_bytes(&got, &ok(&server, "htdocs1/notes.txt", TEXT, true));
}

#[test]
fn date_normalizer_rejects_bad_dates() {
    // The checker every test above relies on must fail on a wrong Date.
    let good = format!(
        "HTTP/1.1 404 Not Found\r\nDate: {}\r\n\r\n",
        http_date(SystemTime::now())
    );
    assert_eq!(normalize_dates(good.as_bytes()), not_found(false));
    for bad in [
        "HTTP/1.1 404 Not Found\r\nDate: Tue, 19 Oct 2021 18:12:55 GMT\r\n\r\n",
        "HTTP/1.1 404 Not Found\r\nDate: yesterday\r\n\r\n",
    ] {
        let result = std::panic::catch_unwind(|| normalize_dates(bad.as_bytes()));
        assert!(result.is_err(), "{bad:?} was accepted");
    }
}

#[test]
fn bad_configuration_fails_at_startup() {
    let tree = TempTree::new();
    let docroot = build_tree(&tree);
    let config = tree.0.join("bad.yaml");
    std::fs::write(&config, "virtual_hosts:\n  - {hostName: a, docRoot: missing}\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_triton"))
        .args(["http", "--bind", "127.0.0.1", "--port", "0"])
        .arg("--docroot")
        .arg(&docroot)
        .arg("--vh-config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing"), "{stderr}");
}

//! Process tests of `triton netsort`: real servers on 127.0.0.1 started at
//! different times, checked by concatenating their outputs; peers that die
//! or hang mid-transfer; malformed configs.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const TRITON: &str = env!("CARGO_BIN_EXE_triton");

/// A scratch directory removed on drop (also when a test panics).
struct TempDir(PathBuf);

impl TempDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir() -> TempDir {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "triton-netsort-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    TempDir(dir)
}

/// Child processes killed when the test ends, even on panic.
#[derive(Default)]
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Wait for `child` at most `limit`; returns its status and stderr.
fn wait_for(child: &mut Child, limit: Duration) -> (ExitStatus, String) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            return (status, stderr);
        }
        assert!(Instant::now() < deadline, "server still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn triton(args: &[&str]) -> Output {
    Command::new(TRITON).args(args).output().expect("run triton")
}

/// `n` distinct free ports on 127.0.0.1, outside the range the kernel
/// gives outgoing connections (see `free_port`).
fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| triton_verify::local::free_port().unwrap()).collect()
}

fn write_config(dir: &Path, ports: &[u16]) -> PathBuf {
    let mut yaml = String::from("servers:\n");
    for (i, port) in ports.iter().enumerate() {
        yaml.push_str(&format!(
            "  - {{serverId: {i}, host: \"127.0.0.1\", port: \"{port}\"}}\n"
        ));
    }
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn spawn_server(id: usize, dir: &Path, config: &Path, extra: &[&str]) -> Child {
    let input = dir.join(format!("in{id}"));
    let output = dir.join(format!("out{id}"));
    Command::new(TRITON)
        .args(["netsort", &id.to_string(), p(&input), p(&output), p(config)])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn triton netsort")
}

/// valsort's record count, checksum (as a number) and verdict.
fn valsort(path: &Path) -> (u64, u128, bool) {
    let out = triton(&["valsort", p(path)]);
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_string()
    };
    (
        field("Records:").parse().unwrap(),
        u128::from_str_radix(&field("Checksum:"), 16).unwrap(),
        out.status.success(),
    )
}

/// Writes inputs in0..in{n-1} of the given sizes; returns their record
/// count and summed checksum.
fn write_inputs(dir: &Path, n: usize, sizes: &[&str]) -> (u64, u128) {
    let mut expected = (0, 0u128);
    for i in 0..n {
        let input = dir.join(format!("in{i}"));
        let size = sizes[i % sizes.len()];
        let out = triton(&["gensort", p(&input), size, "--seed", &(100 + i).to_string()]);
        assert!(out.status.success());
        let (records, checksum, _) = valsort(&input);
        expected = (expected.0 + records, expected.1.wrapping_add(checksum));
    }
    expected
}

/// Checks that out0..out{n-1} concatenated is sorted and holds exactly the
/// records `expected` counts.
fn check_outputs(dir: &Path, n: usize, expected: (u64, u128)) {
    let all = dir.join("all");
    let mut concatenated = Vec::new();
    for i in 0..n {
        concatenated.extend(std::fs::read(dir.join(format!("out{i}"))).unwrap());
    }
    std::fs::write(&all, &concatenated).unwrap();
    let (records, checksum, sorted) = valsort(&all);
    assert!(sorted, "concatenated outputs are not sorted");
    assert_eq!(records, expected.0);
    assert_eq!(checksum, expected.1, "records lost, duplicated or changed");
}

/// Run `n` servers with staggered starts; check that out0..out{n-1}
/// concatenated is sorted and holds exactly the records of all inputs.
fn netsort_round_trip(n: usize, sizes: &[&str], extra: &[&str]) {
    let dir = tempdir();
    let config = write_config(dir.path(), &free_ports(n));
    let expected = write_inputs(dir.path(), n, sizes);
    let mut servers = Servers::default();
    // Start in a scrambled order with different delays: later servers must
    // be dialled with retry, earlier ones must wait for them.
    let mut order: Vec<usize> = (0..n).rev().collect();
    order.rotate_left(n / 2);
    for (k, &i) in order.iter().enumerate() {
        std::thread::sleep(Duration::from_millis(50 * (k as u64 % 4)));
        servers.0.push(spawn_server(i, dir.path(), &config, extra));
    }
    for (k, child) in servers.0.iter_mut().enumerate() {
        let (status, stderr) = wait_for(child, Duration::from_secs(60));
        assert!(status.success(), "server {} failed: {stderr}", order[k]);
        if extra.contains(&"--memory") {
            assert!(
                !stderr.contains("(0 runs spilled)"),
                "server {} should have spilled runs under a small budget: {stderr}",
                order[k]
            );
        }
    }
    check_outputs(dir.path(), n, expected);
}

#[test]
fn one_server() {
    netsort_round_trip(1, &["50kb"], &[]);
}

#[test]
fn two_servers() {
    netsort_round_trip(2, &["1mb", "0"], &[]);
}

#[test]
fn four_servers_one_with_empty_input() {
    netsort_round_trip(4, &["400kb", "100", "0", "1mb"], &[]);
}

#[test]
fn eight_servers() {
    netsort_round_trip(8, &["200kb", "300kb"], &[]);
}

#[test]
fn four_servers_spilling_beyond_a_small_memory_budget() {
    // 2 MB per server through a 1 MiB budget: every server spills runs.
    netsort_round_trip(4, &["2mb"], &["--memory", "1MiB"]);
}

#[test]
fn a_peer_killed_mid_transfer_fails_the_others() {
    let dir = tempdir();
    let config = write_config(dir.path(), &free_ports(4));
    for i in 0..4 {
        assert!(triton(&["gensort", p(&dir.path().join(format!("in{i}"))), "1mb"])
            .status
            .success());
    }
    let mut servers = Servers::default();
    // Servers 2 and 3 never start; servers 0 and 1 connect to each other
    // and then 1 is killed. 0 must not wait for its 60 s connect deadline.
    servers
        .0
        .push(spawn_server(0, dir.path(), &config, &["--connect-timeout", "60"]));
    std::thread::sleep(Duration::from_millis(300));
    servers
        .0
        .push(spawn_server(1, dir.path(), &config, &["--connect-timeout", "60"]));
    // Kill 1 once it has connected to 0 (seen in the kernel's socket table),
    // so the test does not depend on how fast a loaded machine starts it.
    let port0 = config_port(&config, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while established_to(port0) == 0 {
        assert!(Instant::now() < deadline, "server 1 never connected to server 0");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    servers.0[1].kill().unwrap();
    let (status, stderr) = wait_for(&mut servers.0[0], Duration::from_secs(15));
    assert!(!status.success());
    assert!(
        stderr.contains("server 1") && stderr.contains("before end-of-stream"),
        "unclear error: {stderr}"
    );
}

/// Bytes process `pid` has passed to write(2) and send(2) so far.
fn bytes_written(pid: u32) -> u64 {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Server 1 is killed while its records stream to server 0 (it has written
/// a few MB of the 200 MB it must send or keep): server 0 fails naming it.
#[test]
fn a_peer_killed_while_its_records_stream_fails_the_other() {
    let dir = tempdir();
    let config = write_config(dir.path(), &free_ports(2));
    for i in 0..2 {
        assert!(triton(&["gensort", p(&dir.path().join(format!("in{i}"))), "200mb"])
            .status
            .success());
    }
    let mut servers = Servers::default();
    for id in 0..2 {
        servers
            .0
            .push(spawn_server(id, dir.path(), &config, &["--memory", "4MiB"]));
    }
    let one = servers.0[1].id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while bytes_written(one) < 4_000_000 {
        assert!(Instant::now() < deadline, "server 1 never got going");
        assert!(servers.0[1].try_wait().unwrap().is_none(), "server 1 ended early");
        std::thread::sleep(Duration::from_millis(1));
    }
    servers.0[1].kill().unwrap();
    let (status, stderr) = wait_for(&mut servers.0[0], Duration::from_secs(30));
    assert!(
        !status.success(),
        "server 0 finished without server 1's records: {stderr}"
    );
    assert!(stderr.contains("server 1"), "unclear error: {stderr}");
}

/// The port of server `id` in a config written by [`write_config`].
fn config_port(config: &Path, id: usize) -> u16 {
    let text = std::fs::read_to_string(config).unwrap();
    let line = text.lines().filter(|l| l.contains("serverId")).nth(id).unwrap();
    let port = line.split("port: \"").nth(1).unwrap().split('"').next().unwrap();
    port.parse().unwrap()
}

/// Established TCP connections whose local port is `port` (accepted by a
/// server listening there), from /proc/net/tcp.
fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3
                && fields[3] == "01"
                && fields[1].rsplit(':').next() == Some(format!("{port:04X}").as_str())
        })
        .count()
}

/// Connect to `port`, retrying while the server starts.
fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) => {
                assert!(Instant::now() < deadline, "server never listened: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn hello(from: u32, servers: u32) -> Vec<u8> {
    let mut h = b"TNSORT01".to_vec();
    h.extend_from_slice(&from.to_be_bytes());
    h.extend_from_slice(&servers.to_be_bytes());
    h
}

/// The test plays server 1 of 2 by hand and misbehaves after the hello;
/// server 0 must exit non-zero within `limit` with `expected` in stderr.
fn fake_peer_fails_server(extra: &[&str], misbehave: impl FnOnce(TcpStream), expected: &str) {
    let dir = tempdir();
    let ports = free_ports(2);
    let config = write_config(dir.path(), &ports);
    assert!(triton(&["gensort", p(&dir.path().join("in0")), "100kb"])
        .status
        .success());
    // Listen as server 1 so server 0 can dial us; hold its connection open.
    let fake = TcpListener::bind(("127.0.0.1", ports[1])).unwrap();
    let mut servers = Servers::default();
    servers.0.push(spawn_server(0, dir.path(), &config, extra));
    let (_from_server0, _) = fake.accept().unwrap();
    let mut to_server0 = connect(ports[0]);
    to_server0.write_all(&hello(1, 2)).unwrap();
    misbehave(to_server0);
    let (status, stderr) = wait_for(&mut servers.0[0], Duration::from_secs(20));
    assert!(!status.success(), "server 0 should fail");
    assert!(stderr.contains(expected), "expected {expected:?} in: {stderr}");
    assert!(
        !dir.path().join("out0").exists(),
        "a failed server must not leave an output that looks like a result"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".triton-"))
        .collect();
    assert!(leftovers.is_empty(), "a failed server left {leftovers:?}");
}

#[test]
fn a_peer_dying_inside_a_frame_is_an_error_not_a_short_file() {
    fake_peer_fails_server(
        &[],
        |mut s| {
            // A frame header announcing 10 records, then only half of one.
            let mut frame = vec![1u8];
            frame.extend_from_slice(&1000u32.to_be_bytes());
            frame.extend_from_slice(&[0u8; 50]);
            s.write_all(&frame).unwrap();
            drop(s);
        },
        "before end-of-stream",
    );
}

#[test]
fn a_wrong_end_of_stream_count_is_caught() {
    fake_peer_fails_server(
        &[],
        |mut s| {
            let mut frame = vec![1u8];
            frame.extend_from_slice(&100u32.to_be_bytes());
            frame.extend_from_slice(&[0u8; 100]); // key 0 belongs to server 0
            frame.push(2);
            frame.extend_from_slice(&5u64.to_be_bytes()); // claims 5 records
            s.write_all(&frame).unwrap();
        },
        "says it sent 5 records but 1 arrived",
    );
}

#[test]
fn a_hung_peer_times_out() {
    fake_peer_fails_server(
        &["--io-timeout", "1"],
        |mut s| {
            // A first frame, then nothing; keep the socket open past the timeout.
            let mut frame = vec![1u8];
            frame.extend_from_slice(&100u32.to_be_bytes());
            frame.extend_from_slice(&[0u8; 100]); // key 0 belongs to server 0
            s.write_all(&frame).unwrap();
            std::thread::sleep(Duration::from_secs(3));
            drop(s);
        },
        "sent nothing for 1s",
    );
    // Silent after its hello: a peer still dialling others may be, for up
    // to the connect timeout; beyond that plus the I/O timeout it is hung.
    fake_peer_fails_server(
        &["--io-timeout", "1", "--connect-timeout", "1"],
        |s| {
            std::thread::sleep(Duration::from_secs(4));
            drop(s);
        },
        "sent nothing for 2s",
    );
}

#[test]
fn a_peer_still_dialling_a_late_server_is_not_hung() {
    // Servers 0-2 start at once and say hello to each other, then wait
    // (dialling server 3) longer than the I/O timeout before their first
    // frame: the others must wait for them, not call them hung.
    let n = 4;
    let dir = tempdir();
    let config = write_config(dir.path(), &free_ports(n));
    let expected = write_inputs(dir.path(), n, &["100kb", "0"]);
    let extra = ["--connect-timeout", "30", "--io-timeout", "2"];
    let mut servers = Servers::default();
    for i in 0..n - 1 {
        servers.0.push(spawn_server(i, dir.path(), &config, &extra));
    }
    std::thread::sleep(Duration::from_secs(5));
    servers.0.push(spawn_server(n - 1, dir.path(), &config, &extra));
    for (i, child) in servers.0.iter_mut().enumerate() {
        let (status, stderr) = wait_for(child, Duration::from_secs(60));
        assert!(status.success(), "server {i} failed: {stderr}");
    }
    check_outputs(dir.path(), n, expected);
}

#[test]
fn timeouts_must_be_positive() {
    let dir = tempdir();
    let input = dir.path().join("in");
    std::fs::write(&input, []).unwrap();
    let out = dir.path().join("out");
    let config = write_config(dir.path(), &free_ports(2));
    let netsort = |flag: &str| triton(&["netsort", "0", p(&input), p(&out), p(&config), flag]);
    // Other usage errors checked after parsing exit with this code.
    let usage = triton(&["sort", p(&input), p(&out), "--threads", "0"]).status.code();
    for flag in [
        "--io-timeout=0",
        "--connect-timeout=0",
        "--io-timeout=-1",
        "--connect-timeout=-0.5",
    ] {
        let o = netsort(flag);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), usage, "{flag}: {stderr}");
        assert!(stderr.contains("must be more than 0"), "{flag}: {stderr}");
        assert!(!out.exists(), "{flag}: refused run left an output");
    }
}

#[test]
fn connections_that_are_not_peers_do_not_take_a_peers_place() {
    let dir = tempdir();
    let ports = free_ports(2);
    let config = write_config(dir.path(), &ports);
    let expected = write_inputs(dir.path(), 2, &["200kb"]);
    let mut servers = Servers::default();
    servers.0.push(spawn_server(0, dir.path(), &config, &[]));
    // A health check and a silent port scan reach server 0 before server 1.
    let mut http = connect(ports[0]);
    http.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let _silent = connect(ports[0]);
    servers.0.push(spawn_server(1, dir.path(), &config, &[]));
    for (i, child) in servers.0.iter_mut().enumerate() {
        let (status, stderr) = wait_for(child, Duration::from_secs(60));
        assert!(status.success(), "server {i} failed: {stderr}");
        if i == 0 {
            assert!(stderr.contains("ignoring a connection"), "{stderr}");
        }
    }
    check_outputs(dir.path(), 2, expected);
}

#[test]
fn bad_configs_and_ids_are_clear_errors() {
    let dir = tempdir();
    let input = dir.path().join("in");
    std::fs::write(&input, []).unwrap();
    let out = dir.path().join("out");
    let cases = [
        ("servers: [{serverId: 0, host: a", "invalid YAML"),
        (
            "servers:\n - {serverId: 0, host: localhost, port: \"1\"}\n - {serverId: 1, host: localhost, port: \"2\"}\n - {serverId: 2, host: localhost, port: \"3\"}\n",
            "power of two",
        ),
        ("servers: [{serverId: 0, host: localhost, port: \"x\"}]", "port"),
    ];
    for (yaml, expected) in cases {
        let config = dir.path().join("bad.yaml");
        std::fs::write(&config, yaml).unwrap();
        let o = triton(&["netsort", "0", p(&input), p(&out), p(&config)]);
        assert!(!o.status.success());
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains(expected), "{yaml}: {stderr}");
    }
    let config = write_config(dir.path(), &free_ports(2));
    let o = triton(&["netsort", "2", p(&input), p(&out), p(&config)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("server id 2 is not in the config"));
    assert!(!o.status.success());
    let o = triton(&["netsort", "0", p(&dir.path().join("missing")), p(&out), p(&config)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("opening input"));
    let o = triton(&["netsort", "0", p(&input), p(&input), p(&config)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is the input"));
    // A port already taken: a clear error, and no output left behind.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let one = dir.path().join("one.yaml");
    let port = taken.local_addr().unwrap().port();
    std::fs::write(
        &one,
        format!("servers:\n  - {{serverId: 0, host: 127.0.0.1, port: {port}}}\n  - {{serverId: 1, host: 127.0.0.1, port: 1}}\n"),
    )
    .unwrap();
    let o = triton(&["netsort", "0", p(&input), p(&out), p(&one)]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("listening on 127.0.0.1"));
    assert!(!out.exists(), "failed netsort left an output");
    let o = triton(&["netsort", "0", p(&input), p(&out), p(&dir.path().join("nope.yaml"))]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("reading config"));
}

/// A netsort stopped by SIGTERM (here while it waits for a peer that never
/// comes) removes its scratch directory of spilled runs.
#[test]
fn a_server_stopped_by_a_signal_leaves_no_scratch_directory() {
    let dir = tempdir();
    let ports = free_ports(2);
    let config = write_config(dir.path(), &ports);
    write_inputs(dir.path(), 1, &["1mb"]);
    let mut server = spawn_server(0, dir.path(), &config, &["--connect-timeout", "60"]);
    let scratch = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".triton-"))
            .collect()
    };
    let start = Instant::now();
    while scratch(dir.path()).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no scratch directory appeared"
        );
        assert!(
            server.try_wait().unwrap().is_none(),
            "the server ended before it could be stopped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let (status, stderr) = wait_for(&mut server, Duration::from_secs(10));
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert_eq!(scratch(dir.path()), Vec::<String>::new(), "{stderr}");
}

/// Waits for (and reaps) `child` with wait4; returns its peak resident
/// size in KiB (its rusage), whether it succeeded, and its stderr.
#[allow(clippy::zombie_processes)] // reaped by wait4, which also gives the rusage
fn wait_with_peak_rss_kib(mut child: Child) -> (i64, bool, String) {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for (and reaps) our own child, with valid out-pointers.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (usage.ru_maxrss, ok, stderr)
}

/// "Memory stays within a budget": each server sorts five times its
/// `--memory` (spilling and merging runs) with a peak RSS of at most the
/// process's own baseline, the budget, and a small fixed slack. Before
/// frames and buffers were recycled and huge pages turned off, an 8 MiB
/// server peaked at 43 MB over its baseline.
#[test]
fn servers_stay_near_their_memory_budget() {
    let dir = tempdir();
    let n = 2;
    let config = write_config(dir.path(), &free_ports(n));
    let expected = write_inputs(dir.path(), n, &["40mb"]);
    let empty = dir.path().join("empty");
    std::fs::write(&empty, []).unwrap();
    let baseline_child = Command::new(TRITON)
        .args(["sort", p(&empty), p(&dir.path().join("empty.sorted"))])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn triton sort");
    let (baseline, ok, stderr) = wait_with_peak_rss_kib(baseline_child);
    assert!(ok, "sorting an empty file failed: {stderr}");
    let (budget, budget_kib, slack_kib) = ("8MiB", 8 * 1024, 16 * 1024);
    let children: Vec<Child> = (0..n)
        .map(|i| spawn_server(i, dir.path(), &config, &["--memory", budget]))
        .collect();
    // Reap every server before judging any, so none is left running.
    let results: Vec<_> = children.into_iter().map(wait_with_peak_rss_kib).collect();
    let limit = baseline + budget_kib + slack_kib;
    for (i, (peak, ok, stderr)) in results.iter().enumerate() {
        assert!(ok, "server {i} failed: {stderr}");
        assert!(
            !stderr.contains("(0 runs spilled)"),
            "server {i} did not spill: {stderr}"
        );
        assert!(
            *peak <= limit,
            "server {i}: peak RSS {peak} KiB with --memory {budget} (baseline {baseline} KiB, limit {limit} KiB)"
        );
    }
    check_outputs(dir.path(), n, expected);
}

/// An output that is not a regular file gets every record in order and is
/// never removed: `/dev/null` stays the device, a FIFO's reader gets the
/// sorted records. (A failed run used to remove its output path, which
/// for root running `netsort ... /dev/null` was the device node itself.)
#[test]
fn a_server_writes_into_a_fifo_and_never_removes_a_device() {
    let dir = tempdir();
    let config = write_config(dir.path(), &free_ports(1));
    let input = dir.path().join("in0");
    assert!(triton(&["gensort", p(&input), "1mb", "--seed", "4"]).status.success());
    let (records, checksum, _) = valsort(&input);

    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(p(&fifo)).unwrap();
    // SAFETY: a NUL-terminated path and a mode; mkfifo(3) touches nothing else.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).expect("read the fifo"))
    };
    let out = triton(&["netsort", "0", p(&input), p(&fifo), p(&config)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let copy = dir.path().join("copy");
    std::fs::write(&copy, reader.join().unwrap()).unwrap();
    assert_eq!(valsort(&copy), (records, checksum, true));

    // A run that fails (its peer never comes) leaves a FIFO output in place
    // (a FIFO of the test's own, not /dev/null, in case it does not).
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let fifo2 = dir.path().join("fifo2");
    let c = std::ffi::CString::new(p(&fifo2)).unwrap();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    // A reader that does not block, so a writer's open would not either.
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo2)
        .unwrap();
    let two = dir.path().join("two");
    std::fs::create_dir(&two).unwrap();
    let config2 = write_config(&two, &free_ports(2));
    let out = triton(&[
        "netsort",
        "0",
        p(&input),
        p(&fifo2),
        p(&config2),
        "--connect-timeout",
        "0.5",
    ]);
    assert!(!out.status.success());
    let kind = std::fs::symlink_metadata(&fifo2)
        .expect("the FIFO is still there")
        .file_type();
    assert!(kind.is_fifo());
    drop(reader);
    // And /dev/null takes a whole run, and stays the device.
    let out = triton(&["netsort", "0", p(&input), "/dev/null", p(&config)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device());
}

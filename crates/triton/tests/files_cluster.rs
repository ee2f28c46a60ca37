//! The file-server face on a real 3-node cluster of `triton server`
//! processes: the assignment's test suite (basic sequence, binary contents,
//! split and pipelined requests, timers, concurrent writes and cas, leader
//! failover), the table of malformed inputs, and the `triton files` client.

#[path = "support/cluster.rs"]
mod cluster;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use cluster::{Cluster, ClusterOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use triton_fileserver::protocol::{parse_reply, ParsedReply};
use triton_fileserver::{FileClient, OutcomeUnknown, Reply, Request};

fn start() -> Cluster {
    Cluster::start(ClusterOptions {
        file_ports: true,
        ..Default::default()
    })
}

/// Waits for a leader and for a first write to commit through the file face
/// (so every node knows the leader); returns the leader's index, checked
/// against the file face: its file port takes a write itself.
async fn ready(c: &Cluster) -> usize {
    c.wait_leader().await;
    let mut client = FileClient::new(c.file_addrs.clone()).unwrap();
    let r = client
        .call(&Request::Write {
            name: b"warm-up".to_vec(),
            content: b"x".to_vec(),
            exptime_s: 0,
        })
        .await
        .unwrap();
    assert!(matches!(r, Reply::Ok { .. }), "{r:?}");
    // The node the status calls leader must be the one whose file port
    // takes writes (a follower redirects). Leadership may move during
    // start-up, so ask again until the two agree.
    for _ in 0..20 {
        let leader = c.wait_leader().await;
        match Raw::connect(&c.file_addrs[leader])
            .await
            .call(b"write warm-up 1\r\ny\r\n")
            .await
        {
            Reply::Ok { .. } => return leader,
            Reply::Redirect(_) | Reply::Internal => tokio::time::sleep(Duration::from_millis(100)).await,
            other => panic!("warm-up write at the leader, node {leader}: {other:?}"),
        }
    }
    panic!("the leader named by the status never took a write on its file port");
}

/// A raw connection: send bytes, read parsed replies.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect to the file port");
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    async fn reply(&mut self) -> Reply {
        let read = async {
            loop {
                match parse_reply(&self.buf, 1 << 21) {
                    ParsedReply::Reply(r, n) => {
                        self.buf.drain(..n);
                        return r;
                    }
                    ParsedReply::Invalid(why) => panic!("invalid reply: {why}"),
                    ParsedReply::Incomplete => {}
                }
                self.buf.reserve(4096);
                let n = self.stream.read_buf(&mut self.buf).await.expect("receive");
                assert!(n > 0, "connection closed while waiting for a reply");
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("a reply within 10 s")
    }

    async fn call(&mut self, bytes: &[u8]) -> Reply {
        self.send(bytes).await;
        self.reply().await
    }

    /// Whether the server closed the connection (EOF within 5 s, nothing
    /// left unread).
    async fn closed(&mut self) -> bool {
        let mut b = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => self.buf.is_empty(),
            _ => false,
        }
    }
}

fn contents(r: &Reply) -> (u64, &[u8], u64) {
    match r {
        Reply::Contents {
            version,
            content,
            exptime_s,
        } => (*version, content, *exptime_s),
        other => panic!("expected CONTENTS, got {other:?}"),
    }
}

fn ok_version(r: &Reply) -> u64 {
    match r {
        Reply::Ok { version } => *version,
        other => panic!("expected OK <version>, got {other:?}"),
    }
}

fn assert_no_panic(c: &Cluster) {
    for i in 0..c.addrs.len() {
        assert!(!c.log(i).contains("panicked"), "node {i} panicked:\n{}", c.log(i));
    }
}

/// The assignment's basic sequence on one connection to `addr`.
async fn basic_sequence(addr: &str, name: &str) {
    let mut s = Raw::connect(addr).await;
    let line = |cmd: &str| format!("{cmd}\r\n").into_bytes();
    assert_eq!(s.call(&line(&format!("read {name}"))).await, Reply::FileNotFound);
    assert_eq!(s.call(&line(&format!("delete {name}"))).await, Reply::FileNotFound);
    let v1 = ok_version(&s.call(format!("write {name} 5\r\nhello\r\n").as_bytes()).await);
    let r = s.call(&line(&format!("read {name}"))).await;
    assert_eq!(contents(&r), (v1, &b"hello"[..], 0));
    let v2 = ok_version(&s.call(format!("cas {name} {v1} 3\r\nbye\r\n").as_bytes()).await);
    assert!(v2 > v1);
    assert_eq!(
        s.call(format!("cas {name} {v1} 3\r\nxyz\r\n").as_bytes()).await,
        Reply::ErrVersion { current: v2 }
    );
    assert_eq!(contents(&s.call(&line(&format!("read {name}"))).await).1, b"bye");
    assert_eq!(s.call(&line(&format!("delete {name}"))).await, Reply::Deleted);
    assert_eq!(s.call(&line(&format!("read {name}"))).await, Reply::FileNotFound);
    assert_eq!(
        s.call(format!("cas {name} {v2} 1\r\nz\r\n").as_bytes()).await,
        Reply::FileNotFound
    );
    // Re-created: a version is never reused.
    let v3 = ok_version(&s.call(format!("write {name} 1\r\nz\r\n").as_bytes()).await);
    assert!(v3 > v2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_through_leader_and_follower() {
    let c = start();
    let leader = ready(&c).await;
    let follower = (leader + 1) % 3;
    let (lf, ff) = (c.file_addrs[leader].clone(), c.file_addrs[follower].clone());

    basic_sequence(&lf, "basic").await;

    // A follower redirects writes to the leader's file port and serves reads.
    let mut f = Raw::connect(&ff).await;
    assert_eq!(
        f.call(b"write via-follower 1\r\nx\r\n").await,
        Reply::Redirect(Some(lf.clone()))
    );
    assert_eq!(
        f.call(b"cas basic 1 1\r\nx\r\n").await,
        Reply::Redirect(Some(lf.clone()))
    );
    assert_eq!(f.call(b"delete basic\r\n").await, Reply::Redirect(Some(lf.clone())));
    let v = ok_version(&Raw::connect(&lf).await.call(b"write shared 2\r\nhi\r\n").await);
    // Linearizable: the follower sees the acknowledged write at once.
    assert_eq!(contents(&f.call(b"read shared\r\n").await), (v, &b"hi"[..], 0));

    // The basic sequence through a client that only knows the follower.
    let mut client = FileClient::new(vec![ff.clone()]).unwrap();
    let w = client
        .call(&Request::Write {
            name: b"c1".to_vec(),
            content: b"one".to_vec(),
            exptime_s: 0,
        })
        .await
        .unwrap();
    let v1 = ok_version(&w);
    let stale = Request::Cas {
        name: b"c1".to_vec(),
        version: v1 - 1,
        content: b"two".to_vec(),
        exptime_s: 0,
    };
    assert_eq!(client.call(&stale).await.unwrap(), Reply::ErrVersion { current: v1 });
    let read = client.call(&Request::Read { name: b"c1".to_vec() }).await.unwrap();
    assert_eq!(contents(&read), (v1, &b"one"[..], 0));

    // Binary contents, written at the leader, read at the follower.
    let binary = b"\x00\x01\r\n\x03";
    let mut w = b"write bin 5\r\n".to_vec();
    w.extend_from_slice(binary);
    w.extend_from_slice(b"\r\n");
    let vb = ok_version(&Raw::connect(&lf).await.call(&w).await);
    assert_eq!(contents(&f.call(b"read bin\r\n").await), (vb, &binary[..], 0));

    // One write sent in 5 pieces 10 ms apart.
    let wire = b"write pieces 12\r\nfive\r\npieces\r\n";
    let mut s = Raw::connect(&lf).await;
    for chunk in wire.chunks(wire.len().div_ceil(5)) {
        s.send(chunk).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let vp = ok_version(&s.reply().await);
    assert_eq!(
        contents(&s.call(b"read pieces\r\n").await),
        (vp, &b"five\r\npieces"[..], 0)
    );

    // Two writes and a read in one send: replies in request order.
    s.send(b"write pipe 1\r\na\r\nwrite pipe 2\r\nbb\r\nread pipe\r\n")
        .await;
    let (r1, r2, r3) = (s.reply().await, s.reply().await, s.reply().await);
    let (p1, p2) = (ok_version(&r1), ok_version(&r2));
    assert!(p2 > p1);
    assert_eq!(contents(&r3), (p2, &b"bb"[..], 0));
    assert_no_panic(&c);
}

/// Every malformed input gets `ERR_CMD_ERR`; the connection is closed iff
/// the end of the request cannot be known; no node panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_of_bad_inputs() {
    let c = start();
    let leader = ready(&c).await;
    let long_line = vec![b'a'; 600];
    let long_name = format!("read {}\r\n", "n".repeat(251));
    let huge = format!("write big {}\r\n", (1 << 20) + 1);
    // An oversized write with its contents sent too, as a client would: the
    // server refuses it after the first line, but must drain the rest rather
    // than reset the connection and destroy the answer. 8 MiB, more than the
    // socket buffers hold, so the client is still sending when it refuses.
    let oversized = 8 << 20;
    let mut huge_with_contents = format!("write big {oversized}\r\n").into_bytes();
    huge_with_contents.extend(std::iter::repeat_n(b'x', oversized));
    huge_with_contents.extend_from_slice(b"\r\n");
    // (input, closes the connection)
    let table: Vec<(&[u8], bool)> = vec![
        (b"\r\n", true),
        (b"hello world\r\n", true),
        (b"READ x\r\n", true),
        (b"read x\n", true),
        (&long_line, true),
        (b"write x\r\n", true),
        (b"write x abc\r\nabc\r\n", true),
        (b"write x -3\r\nabc\r\n", true),
        (b"write x 3 0 0\r\nabc\r\n", true),
        (huge.as_bytes(), true),
        (&huge_with_contents, true),
        (b"write x 3\r\nabcdef\r\n", true),
        (b"cas x 1\r\na\r\n", true),
        (b"cas x 1 a\r\na\r\n", true),
        (b"read\r\n", false),
        (b"read a b\r\n", false),
        (b"read a\x0bb\r\n", false),
        (b"delete\r\n", false),
        (long_name.as_bytes(), false),
        (b"write x 3 soon\r\nabc\r\n", false),
        (b"write x 3 -1\r\nabc\r\n", false),
        (b"cas x latest 3\r\nabc\r\n", false),
        (b"cas x -1 3\r\nabc\r\n", false),
        (b"cas x 1 3 never\r\nabc\r\n", false),
    ];
    for (i, (input, closes)) in table.iter().enumerate() {
        // Alternate between the leader and a follower.
        let node = if i % 2 == 0 { leader } else { (leader + 1) % 3 };
        let mut s = Raw::connect(&c.file_addrs[node]).await;
        let what = String::from_utf8_lossy(&input[..input.len().min(60)]).to_string();
        assert_eq!(s.call(input).await, Reply::CmdErr, "{what:?}");
        if *closes {
            assert!(s.closed().await, "{what:?} should close the connection");
        } else {
            assert_eq!(
                s.call(b"read no-such-file\r\n").await,
                Reply::FileNotFound,
                "{what:?} should keep the connection usable"
            );
        }
    }
    // Nothing of the malformed writes was stored, and every node still serves.
    for a in &c.file_addrs {
        assert_eq!(Raw::connect(a).await.call(b"read x\r\n").await, Reply::FileNotFound);
    }
    assert_no_panic(&c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers() {
    let c = start();
    let leader = ready(&c).await;
    let lf = c.file_addrs[leader].clone();
    let all = c.file_addrs.clone();
    let gone_after_3s = async {
        let mut s = Raw::connect(&lf).await;
        ok_version(&s.call(b"write t1 1\r\na\r\n").await);
        ok_version(&s.call(b"write t1 1 2\r\na\r\n").await);
        let (_, _, left) = contents(&s.call(b"read t1\r\n").await);
        assert!((1..=2).contains(&left), "{left} s left of 2");
        tokio::time::sleep(Duration::from_secs(3)).await;
        // Gone on every replica (reads through each node).
        for a in &all {
            assert_eq!(Raw::connect(a).await.call(b"read t1\r\n").await, Reply::FileNotFound);
        }
    };
    let later_write_replaces_expiry = async {
        let mut s = Raw::connect(&lf).await;
        ok_version(&s.call(b"write t2 1 1\r\nb\r\n").await);
        // 6 s, not the 1 s it replaces: still there 2 s later (4 s of
        // margin for a loaded machine), gone 5 s after that.
        let v = ok_version(&s.call(b"write t2 1 6\r\nc\r\n").await);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let r = s.call(b"read t2\r\n").await;
        let (rv, content, left) = contents(&r);
        assert_eq!((rv, content), (v, &b"c"[..]));
        assert!((1..=4).contains(&left), "{left} s left");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(s.call(b"read t2\r\n").await, Reply::FileNotFound);
    };
    let delete_then_no_expiry = async {
        let mut s = Raw::connect(&lf).await;
        ok_version(&s.call(b"write t3 1 1\r\nd\r\n").await);
        assert_eq!(s.call(b"delete t3\r\n").await, Reply::Deleted);
        let v = ok_version(&s.call(b"write t3 1 0\r\ne\r\n").await);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(contents(&s.call(b"read t3\r\n").await), (v, &b"e"[..], 0));
    };
    tokio::join!(gone_after_3s, later_write_replaces_expiry, delete_then_no_expiry);
    assert_no_panic(&c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_and_cas() {
    let c = start();
    ready(&c).await;
    // 20 clients x 10 writes to one file: all OK, the final contents are
    // those of the write with the highest version.
    let mut tasks = Vec::new();
    for w in 0..20 {
        let endpoints = c.file_addrs.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = FileClient::new(endpoints).unwrap().start_at(w);
            let mut acked = Vec::new();
            for k in 0..10 {
                let content = format!("writer {w} write {k}").into_bytes();
                let r = client
                    .call(&Request::Write {
                        name: b"contended".to_vec(),
                        content: content.clone(),
                        exptime_s: 0,
                    })
                    .await
                    .unwrap();
                acked.push((ok_version(&r), content));
            }
            acked
        }));
    }
    let mut acked: HashMap<u64, Vec<u8>> = HashMap::new();
    for t in tasks {
        for (v, content) in t.await.unwrap() {
            assert!(acked.insert(v, content).is_none(), "version {v} given twice");
        }
    }
    assert_eq!(acked.len(), 200);
    let mut client = FileClient::new(c.file_addrs.clone()).unwrap();
    let last = client
        .call(&Request::Read {
            name: b"contended".to_vec(),
        })
        .await
        .unwrap();
    let (v, content, _) = contents(&last);
    let max = *acked.keys().max().unwrap();
    assert_eq!((v, content), (max, acked[&max].as_slice()));

    // 10 clients x 10 increments by cas, retried on ERR_VERSION: no lost update.
    let v0 = ok_version(
        &client
            .call(&Request::Write {
                name: b"counter".to_vec(),
                content: b"0".to_vec(),
                exptime_s: 0,
            })
            .await
            .unwrap(),
    );
    assert!(v0 > 0);
    let mut tasks = Vec::new();
    for w in 0..10 {
        let endpoints = c.file_addrs.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = FileClient::new(endpoints).unwrap().start_at(w);
            let mut retries = 0;
            for _ in 0..10 {
                loop {
                    let r = client
                        .call(&Request::Read {
                            name: b"counter".to_vec(),
                        })
                        .await
                        .unwrap();
                    let (version, content, _) = contents(&r);
                    let n: u64 = std::str::from_utf8(content).unwrap().parse().unwrap();
                    let cas = Request::Cas {
                        name: b"counter".to_vec(),
                        version,
                        content: (n + 1).to_string().into_bytes(),
                        exptime_s: 0,
                    };
                    match client.call(&cas).await.unwrap() {
                        Reply::Ok { version: nv } => {
                            assert!(nv > version);
                            break;
                        }
                        Reply::ErrVersion { current } => {
                            assert!(current > version);
                            retries += 1;
                        }
                        other => panic!("cas: {other:?}"),
                    }
                }
            }
            retries
        }));
    }
    let mut retries = 0;
    for t in tasks {
        retries += t.await.unwrap();
    }
    let r = client
        .call(&Request::Read {
            name: b"counter".to_vec(),
        })
        .await
        .unwrap();
    assert_eq!(contents(&r).1, b"100", "lost updates ({retries} cas retries)");
    assert_no_panic(&c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_run_clients_follow_redirects_and_finish() {
    let mut c = start();
    let leader = ready(&c).await;
    let stop_after = std::sync::Arc::new(tokio::sync::Notify::new());
    let mut tasks = Vec::new();
    for w in 0..5 {
        let (endpoints, halfway) = (c.file_addrs.clone(), stop_after.clone());
        tasks.push(tokio::spawn(async move {
            let mut client = FileClient::new(endpoints).unwrap().start_at(w);
            client.deadline = Duration::from_secs(30);
            let name = format!("failover-{w}").into_bytes();
            let mut last = Vec::new();
            // 40 writes, and more until the last one is acknowledged. A
            // write the killed leader took without answering is reported
            // as unknown, not resent (a resent copy could land twice); any
            // later acknowledged write supersedes it.
            for k in 0.. {
                if w == 0 && k == 15 {
                    halfway.notify_one();
                }
                let content = format!("{w}:{k}").into_bytes();
                let r = client
                    .call(&Request::Write {
                        name: name.clone(),
                        content: content.clone(),
                        exptime_s: 0,
                    })
                    .await;
                match r {
                    Ok(r) => {
                        ok_version(&r);
                        last = content;
                        if k >= 39 {
                            break;
                        }
                    }
                    Err(e) if e.downcast_ref::<OutcomeUnknown>().is_some() => {}
                    Err(e) => panic!("writer {w} write {k}: {e:#}"),
                }
                assert!(k < 80, "writer {w}: too many unknown outcomes");
            }
            (name, last)
        }));
    }
    stop_after.notified().await;
    c.kill9(leader);
    let mut finals = Vec::new();
    for t in tasks {
        finals.push(t.await.unwrap());
    }
    let new_leader = c.wait_leader().await;
    assert_ne!(new_leader, leader);
    // Every file holds its writer's last write, read through a survivor.
    let survivor = (leader + 1) % 3;
    let mut client = FileClient::new(vec![c.file_addrs[survivor].clone()]).unwrap();
    for (name, last) in finals {
        let r = client.call(&Request::Read { name: name.clone() }).await.unwrap();
        assert_eq!(contents(&r).1, last.as_slice());
    }
    assert_no_panic(&c);
}

/// `triton files`: prints the reply, exits 0 on success, 1 on
/// ERR_FILE_NOT_FOUND/ERR_VERSION, 2 on other errors; follows redirects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_cli_exit_codes() {
    let c = start();
    let leader = ready(&c).await;
    let follower = c.file_addrs[(leader + 1) % 3].clone();
    let src = c.dir.path().join("src.bin");
    std::fs::write(&src, b"from a file\r\n").unwrap();
    let files_at = |endpoint: &str, args: &[&str]| {
        let out = Command::new(cluster::bin())
            .args(["files", "--endpoints", endpoint])
            .args(args)
            .output()
            .expect("run triton files");
        (out.status.code(), out.stdout)
    };
    let files = |args: &[&str]| files_at(&follower, args);
    let (code, out) = files(&["write", "cli", src.to_str().unwrap(), "--exptime", "100"]);
    assert_eq!(code, Some(0), "{}", String::from_utf8_lossy(&out));
    let version: u64 = String::from_utf8(out)
        .unwrap()
        .trim()
        .strip_prefix("OK ")
        .unwrap()
        .parse()
        .unwrap();
    let (code, out) = files(&["read", "cli"]);
    assert_eq!(code, Some(0));
    let header = format!("CONTENTS {version} 13 100\r\n");
    assert!(out.starts_with(header.as_bytes()), "{}", String::from_utf8_lossy(&out));
    assert!(out.ends_with(b"from a file\r\n\r\n"));
    let (code, out) = files(&["cas", "cli", &(version - 1).to_string(), src.to_str().unwrap()]);
    assert_eq!(
        (code, out),
        (Some(1), format!("ERR_VERSION {version}\r\n").into_bytes())
    );
    let (code, _) = files(&["cas", "cli", &version.to_string(), src.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert_eq!(files(&["delete", "cli"]), (Some(0), b"OK\r\n".to_vec()));
    assert_eq!(files(&["read", "cli"]), (Some(1), b"ERR_FILE_NOT_FOUND\r\n".to_vec()));
    // A name the server refuses (whitespace cannot travel in a name).
    assert_eq!(files(&["read", "two words"]).0, Some(2));
    // Names that would smuggle a second request or shift a write's fields
    // are refused before anything is sent: `y` survives (sent to the
    // leader, the smuggled delete would run).
    let leader_file = c.file_addrs[leader].clone();
    let mut s = Raw::connect(&leader_file).await;
    ok_version(&s.call(b"write y 1\r\ny\r\n").await);
    for args in [
        &["read", "x\r\ndelete y"][..],
        &["delete", "x\r\ndelete y"],
        &["write", "a 5", src.to_str().unwrap()],
        &["cas", "a\x0b1", "1", src.to_str().unwrap()],
    ] {
        let (code, out) = files_at(&leader_file, args);
        assert_eq!((code, out), (Some(2), Vec::new()), "{args:?}");
    }
    assert_eq!(contents(&s.call(b"read y\r\n").await).1, b"y");
    assert_no_panic(&c);
}

/// A node whose file port is taken stops at startup with the reason,
/// instead of running on without the face it was configured with.
#[test]
fn a_node_whose_file_port_is_taken_refuses_to_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free = format!("127.0.0.1:{}", cluster::free_port());
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cluster.toml");
    std::fs::write(
        &config,
        format!(
            "[[nodes]]\nid = 0\naddr = \"{free}\"\nfile_addr = \"{}\"\n",
            taken.local_addr().unwrap()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_triton"))
        .args(["server", "--id", "0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("node-0"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the node kept running without its file port");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("binding the file server"), "{stderr}");
    drop(taken);
}

/// Files and key-value keys share the store's key space, files under a
/// prefix the key-value face refuses: no KV client reads or changes a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_value_face_cannot_reach_files() {
    let c = start();
    let leader = ready(&c).await;
    let mut s = Raw::connect(&c.file_addrs[leader]).await;
    let v = ok_version(&s.call(b"write mine 1\r\nz\r\n").await);
    let mut kv = c.client();
    for err in [
        kv.get(b"f/mine").await.unwrap_err(),
        kv.put(b"f/mine", b"from kv").await.unwrap_err(),
        kv.delete(b"f/mine").await.unwrap_err(),
    ] {
        assert!(format!("{err:#}").contains("belong to the file server"), "{err:#}");
    }
    // Other keys, "f" itself included, are the key-value face's own.
    assert!(kv.put(b"f", b"v").await.unwrap() > 0);
    assert_eq!(contents(&s.call(b"read mine\r\n").await), (v, &b"z"[..], 0));
}

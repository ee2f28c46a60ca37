//! `triton up` as a user runs it: a whole local system from one command,
//! the nodes' `/metrics` and `/status`, a clean Ctrl-C, data reused on the
//! next start; and the dashboard in headless Chromium noticing a new leader
//! after the old one is killed with `kill -9`.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use triton_ops::httpget;
use triton_ops::render::parse_status;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_triton")
}

/// A base port whose whole `triton up` layout (base.., +100.., +200..,
/// +300..) is free right now, below 32,000: out of the kernel's ephemeral
/// range, where an outgoing connection could take a port before `triton up`
/// binds it.
fn free_base(nodes: u16) -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let seed = std::process::id() as u64 ^ nanos;
    for attempt in 0..500u64 {
        let base = 10_000 + ((seed.wrapping_mul(2_654_435_761).wrapping_add(attempt * 7_919)) % 22_000) as u16;
        let ports: Vec<u16> = (0..nodes)
            .flat_map(|i| [base + i, base + 100 + i, base + 200 + i])
            .chain([base + 300, base + 301])
            .collect();
        if ports.iter().all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok()) {
            return base;
        }
    }
    panic!("no free port range found");
}

/// A running `triton up`, killed (with its children, through their
/// parent-death signal) if the test ends early.
struct Up {
    child: Option<Child>,
    lines: Receiver<String>,
    /// Everything printed so far.
    out: Vec<String>,
}

impl Up {
    fn start(dir: &Path, base: u16) -> Up {
        let mut child = Command::new(bin())
            .args(["up", "--dir"])
            .arg(dir)
            .args(["--base-port", &base.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn triton up");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Up {
            child: Some(child),
            lines: rx,
            out: Vec::new(),
        }
    }

    /// Waits for the "ready" line; returns the output so far.
    fn wait_ready(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    let ready = line.starts_with("triton up: ready");
                    self.out.push(line);
                    if ready {
                        return self.out.join("\n");
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => panic!("triton up exited before ready:\n{}", self.out.join("\n")),
            }
        }
        panic!("triton up not ready in time:\n{}", self.out.join("\n"));
    }

    /// Waits for a line containing `what` (printed already, or within
    /// 60 s); returns the output so far.
    fn wait_for(&mut self, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.out.iter().any(|l| l.contains(what)) {
            assert!(
                Instant::now() < deadline,
                "triton up never printed {what:?}:\n{}",
                self.out.join("\n")
            );
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => self.out.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => panic!("triton up exited before printing {what:?}:\n{}", self.out.join("\n")),
            }
        }
        self.out.join("\n")
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Ctrl-C; returns the exit status and the rest of the output.
    fn interrupt(&mut self) -> (std::process::ExitStatus, String) {
        signal(self.pid(), "INT");
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "triton up did not exit after SIGINT");
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.out.push(l);
        }
        (status, self.out.join("\n"))
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A child process killed if the test ends early.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig} {pid} failed");
}

fn alive(pid: u32) -> bool {
    // A zombie is dead for our purposes (its parent has not reaped it yet).
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// `pid N` of every process the banner lists.
fn banner_pids(out: &str) -> Vec<(String, u32)> {
    out.lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once(':')?;
            let pid = rest
                .split_whitespace()
                .skip_while(|w| *w != "pid")
                .nth(1)?
                .parse()
                .ok()?;
            Some((name.to_string(), pid))
        })
        .collect()
}

fn kv(endpoints: &str, args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(["kv", "--endpoints", endpoints])
        .args(args)
        .output()
        .expect("triton kv");
    assert!(
        out.status.success(),
        "triton kv {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn endpoints(out: &str) -> String {
    let line = out
        .lines()
        .find(|l| l.contains("triton kv --endpoints"))
        .expect("example kv command in the banner");
    line.split_whitespace()
        .skip_while(|w| *w != "--endpoints")
        .nth(1)
        .expect("endpoints")
        .to_string()
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
}

#[test]
fn up_serves_kv_metrics_status_stops_cleanly_and_reuses_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_base(3);
    let mut up = Up::start(dir.path(), base);
    let out = up.wait_ready();
    assert!(
        out.contains(&format!("dashboard: http://127.0.0.1:{}/", base + 200)),
        "{out}"
    );
    let pids = banner_pids(&out);
    assert_eq!(pids.iter().filter(|(n, _)| n.starts_with("node ")).count(), 3, "{out}");
    let eps = endpoints(&out);

    kv(&eps, &["put", "hello", "world"]);
    // Linearizable gets: with a healthy leader, some are answered on its
    // lease (counted below).
    for _ in 0..5 {
        assert!(kv(&eps, &["get", "hello"]).contains("world"));
    }

    // /metrics on every node: plain TCP, Prometheus text.
    let mut leaders = 0;
    let mut applied = 0.0;
    let mut lease_reads = 0.0;
    for i in 0..3 {
        let r = httpget::get(
            &format!("127.0.0.1:{}", base + 200 + i),
            "/metrics",
            Duration::from_secs(5),
        )
        .expect("metrics");
        assert_eq!(r.status, 200);
        let term = metric(&r.body, "triton_term").expect("triton_term");
        assert!(term >= 1.0);
        let commit = metric(&r.body, "triton_commit_index").expect("commit index");
        assert!(
            commit >= 1.0,
            "the put is committed everywhere eventually; at least the no-op is"
        );
        assert!(metric(&r.body, "triton_applied_index").is_some());
        assert!(metric(&r.body, "triton_apply_latency_seconds_count").is_some());
        if metric(&r.body, "triton_role{role=\"leader\"}") == Some(1.0) {
            leaders += 1;
        }
        applied += metric(&r.body, "triton_writes_applied_total").expect("writes applied");
        lease_reads += metric(&r.body, "triton_lease_reads_total").expect("lease reads");
    }
    assert!(applied >= 1.0, "the node that led during the put counted it");
    assert!(lease_reads >= 1.0, "the linearizable get was not answered on a lease");
    assert!(leaders <= 1, "two nodes claim to lead at once right after startup");

    let r = httpget::get(&format!("127.0.0.1:{}", base + 200), "/status", Duration::from_secs(5)).expect("status");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let doc = parse_status(&r.body).expect("status JSON");
    assert_eq!(doc.id, 0);
    assert_eq!(doc.members.len(), 3);
    assert!(doc.members.iter().all(|m| m.http_addr.is_some()));
    let page = httpget::get(&format!("127.0.0.1:{}", base + 201), "/", Duration::from_secs(5)).expect("dashboard");
    assert!(page.body.contains("<title>Triton dashboard</title>"));

    let (status, rest) = up.interrupt();
    assert!(status.success(), "triton up exited with {status}:\n{rest}");
    for (name, pid) in &pids {
        assert!(!alive(*pid), "{name} (pid {pid}) still running after triton up exited");
    }
    assert!(dir.path().join("logs/node-0.log").exists());
    let config_path = dir.path().join("cluster.toml");
    // It holds the admin token.
    let mode = std::fs::metadata(&config_path)
        .expect("cluster.toml")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "cluster.toml mode {mode:o}");

    // Node 0 restarted by hand with the command the file's header gives,
    // from another directory, comes back on its own data (on an empty data
    // directory it would refuse to start).
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let stderr = std::fs::File::create(elsewhere.path().join("node-0.stderr")).expect("stderr file");
    let mut node = KillOnDrop(
        Command::new(bin())
            .args(["server", "--config"])
            .arg(&config_path)
            .args(["--id", "0"])
            .current_dir(elsewhere.path())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("triton server"),
    );
    let http = format!("127.0.0.1:{}", base + 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    let restarted = loop {
        if let Ok(r) = httpget::get(&http, "/status", Duration::from_secs(2)) {
            break parse_status(&r.body).expect("status JSON");
        }
        assert!(
            Instant::now() < deadline,
            "node 0 did not come back: {}",
            std::fs::read_to_string(elsewhere.path().join("node-0.stderr")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        restarted.last_index >= doc.last_index && restarted.term >= doc.term,
        "node 0 came back with last index {} term {}, had {} {}",
        restarted.last_index,
        restarted.term,
        doc.last_index,
        doc.term
    );
    assert!(!elsewhere.path().join("triton-data").exists());
    signal(node.0.id(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.0.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(node);

    // Again on the same directory: the same cluster, the same data.
    let mut up = Up::start(dir.path(), base);
    let out = up.wait_ready();
    assert!(out.contains("reusing"), "{out}");
    assert!(kv(&endpoints(&out), &["get", "hello"]).contains("world"));
    let (status, rest) = up.interrupt();
    assert!(status.success(), "second triton up exited with {status}:\n{rest}");

    // Node 2 lost its data: it must not found the cluster again. With the
    // others' data there, triton up does not pass --new-cluster, node 2
    // refuses to start, and triton up shows its reason; the others serve.
    std::fs::remove_dir_all(dir.path().join("node-2")).expect("node 2's data directory");
    let mut up = Up::start(dir.path(), base);
    let out = up.wait_ready();
    assert!(kv(&endpoints(&out), &["get", "hello"]).contains("world"));
    let out = up.wait_for("refusing without --new-cluster");
    assert!(out.contains("node 2 (pid"), "{out}");
    assert!(out.contains("triton: error: node 2's data directory"), "{out}");
    let (status, rest) = up.interrupt();
    assert!(status.success(), "third triton up exited with {status}:\n{rest}");
}

#[test]
fn up_refuses_a_busy_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = free_base(3);
    let _hold = TcpListener::bind(("127.0.0.1", base + 201)).expect("hold a port");
    let out = Command::new(bin())
        .args(["up", "--dir"])
        .arg(dir.path())
        .args(["--base-port", &base.to_string()])
        .output()
        .expect("triton up");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{}", base + 201)), "{err}");
}

fn chromium() -> Result<PathBuf, String> {
    for name in ["chromium", "chromium-browser"] {
        if let Ok(o) = Command::new("which").arg(name).output() {
            if o.status.success() {
                return Ok(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
            }
        }
    }
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-q", "chromium"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed {
        return Ok(PathBuf::from("chromium"));
    }
    Err("chromium is not installed and `apt-get install -y chromium` failed".into())
}

/// Loads `url` in headless Chromium for a few seconds of virtual time and
/// returns the DOM; optionally saves a screenshot too.
fn browse(chromium: &Path, url: &str, profile: &Path, screenshot: Option<&Path>) -> Result<String, String> {
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1200,800",
        "--virtual-time-budget=3000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    match screenshot {
        Some(p) => cmd.arg(format!("--screenshot={}", p.display())),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running chromium: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "chromium failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn shown_leader(dom: &str) -> Option<u64> {
    let at = dom.find("data-leader=\"")? + "data-leader=\"".len();
    dom[at..].split('"').next()?.parse().ok()
}

#[test]
fn dashboard_shows_the_new_leader_after_the_old_one_is_killed() {
    let chromium = match chromium() {
        Ok(c) => c,
        Err(why) => {
            eprintln!("SKIPPED dashboard browser test: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = tempfile::tempdir().expect("profile dir");
    let base = free_base(3);
    let mut up = Up::start(dir.path(), base);
    let out = up.wait_ready();
    let pids = banner_pids(&out);

    // Whom the page shows as leader first (the cluster's, not the banner's:
    // leadership may have moved since).
    let url = |i: u16| format!("http://127.0.0.1:{}/", base + 200 + i);
    let first = match browse(&chromium, &url(0), profile.path(), None) {
        Ok(dom) => dom,
        Err(why) => {
            eprintln!("SKIPPED dashboard browser test: {why}");
            return;
        }
    };
    assert!(first.contains("id=\"node-2\""), "the page lists the members:\n{first}");
    let old = shown_leader(&first).expect("the page shows a leader");
    let (_, old_pid) = pids
        .iter()
        .find(|(n, _)| *n == format!("node {old}"))
        .unwrap_or_else(|| panic!("no pid for node {old} in\n{out}"));
    signal(*old_pid, "KILL");

    // Watch from a node that is still alive.
    let watch = url(if old == 0 { 1 } else { 0 });
    let deadline = Instant::now() + Duration::from_secs(30);
    let new = loop {
        let dom = browse(&chromium, &watch, profile.path(), None).expect("chromium ran before");
        match shown_leader(&dom) {
            Some(l) if l != old => {
                assert!(
                    dom.contains(&format!("id=\"node-{l}\" data-id=\"{l}\" class=\"member leader\"")),
                    "the new leader's row is marked:\n{dom}"
                );
                break l;
            }
            _ => assert!(Instant::now() < deadline, "no new leader on the page:\n{dom}"),
        }
    };
    assert_ne!(new, old);
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let shot = artifacts.join("dashboard-new-leader.png");
    browse(&chromium, &watch, profile.path(), Some(&shot)).expect("screenshot");
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 0), "screenshot saved");

    let (status, rest) = up.interrupt();
    assert!(status.success(), "triton up exited with {status}:\n{rest}");
    assert!(
        rest.contains(&format!("node {old} (pid {old_pid}) exited unexpectedly")),
        "{rest}"
    );
}

// ----- two supervisors on one directory ---------------------------------------
// Two `triton up` started at the same moment on one `--dir`: one runs, the
// other is refused at once with a message naming the first, before it
// writes a config or starts a node.

/// A `triton up` whose output goes to files; killed (with its children,
/// through their parent-death signal) if the test ends early.
struct RacingUp {
    child: Child,
    stderr: std::path::PathBuf,
}

impl RacingUp {
    fn start(dir: &Path, base: u16, out: &Path, name: &str) -> RacingUp {
        let stderr = out.join(format!("{name}.err"));
        let child = Command::new(bin())
            .args(["up", "--dir"])
            .arg(dir)
            .args(["--base-port", &base.to_string()])
            .stdout(std::fs::File::create(out.join(format!("{name}.out"))).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn triton up");
        RacingUp { child, stderr }
    }
}

impl Drop for RacingUp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_second_up_on_the_same_directory_is_refused_naming_the_first() {
    let out = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let base = free_base(3);
    let mut ups = [
        RacingUp::start(dir.path(), base, out.path(), "a"),
        RacingUp::start(dir.path(), base, out.path(), "b"),
    ];
    // The loser exits at once; the winner waits for its leader.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (loser, status) = loop {
        if let Some((i, s)) = ups
            .iter_mut()
            .enumerate()
            .find_map(|(i, u)| u.child.try_wait().unwrap().map(|s| (i, s)))
        {
            break (i, s);
        }
        assert!(Instant::now() < deadline, "neither triton up exited");
        std::thread::sleep(Duration::from_millis(20));
    };
    let winner = 1 - loser;
    let err = std::fs::read_to_string(&ups[loser].stderr).unwrap();
    assert!(!status.success(), "{err}");
    let expected = format!(
        "another `triton up` (pid {}) is already running on",
        ups[winner].child.id()
    );
    assert!(err.contains(&expected), "expected {expected:?} in:\n{err}");
    assert!(
        ups[winner].child.try_wait().unwrap().is_none(),
        "the first triton up must keep running"
    );
    // The winner comes up as if alone, and Ctrl-C stops it cleanly (once
    // ready: its handler is installed by then).
    let stdout = out.path().join(if winner == 0 { "a.out" } else { "b.out" });
    let deadline = Instant::now() + Duration::from_secs(90);
    while !std::fs::read_to_string(&stdout).unwrap().contains("triton up: ready") {
        assert!(
            ups[winner].child.try_wait().unwrap().is_none() && Instant::now() < deadline,
            "the first triton up never got ready:\n{}\n{}",
            std::fs::read_to_string(&stdout).unwrap(),
            std::fs::read_to_string(&ups[winner].stderr).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = ups[winner].child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = ups[winner].child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "triton up did not stop after SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&ups[winner].stderr).unwrap()
    );
}

//! Smoke runs of `triton bench kv|failover|study`: each exits 0 and prints
//! or writes what it should. These check that the benchmarks work; they
//! assert nothing about speed.

use std::process::{Command, Output};

fn triton(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_triton"))
        .args(args)
        .output()
        .expect("running triton");
    assert!(
        out.status.success(),
        "triton {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn etcd_on_path() -> bool {
    Command::new("etcd")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn bench_kv_smoke_prints_a_row_per_point_and_writes_csv() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("kv.csv");
    let target = if etcd_on_path() { "both" } else { "triton" };
    let out = triton(&[
        "bench",
        "kv",
        "--smoke",
        "--target",
        target,
        "--csv",
        csv.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for op in ["put", "get"] {
        for clients in [1, 16] {
            let row = stdout
                .lines()
                .find(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 3 && f[0] == "triton" && f[1] == op && f[2] == clients.to_string()
                })
                .unwrap_or_else(|| panic!("no triton {op} row for {clients} clients in:\n{stdout}"));
            let ops: f64 = row.split_whitespace().nth(3).unwrap().parse().unwrap();
            assert!(ops > 0.0, "no operation succeeded: {row}");
        }
    }
    let rows = std::fs::read_to_string(&csv).unwrap();
    let expected = if target == "both" { 8 } else { 4 };
    assert_eq!(rows.lines().count(), 1 + expected, "{rows}");
    if target == "both" {
        assert!(stdout.lines().any(|l| l.starts_with("etcd")), "{stdout}");
    }
}

#[test]
fn bench_failover_smoke_reports_two_kills() {
    let out = triton(&["bench", "failover", "--smoke"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().filter(|l| l.starts_with("kill ")).count(), 2, "{stdout}");
    assert!(stdout.contains("failover: 2 kills: min"), "{stdout}");
}

#[test]
fn bench_study_smoke_writes_csv_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    triton(&["bench", "study", "--smoke", "--out", dir.path().to_str().unwrap()]);
    for f in [
        "sim_election.csv",
        "sim_messages.csv",
        "real_clients.csv",
        "election_time_vs_loss.svg",
        "election_time_vs_loss.png",
        "messages_per_entry_vs_batch.svg",
        "real_throughput_vs_clients.png",
        "real_p99_vs_clients.svg",
    ] {
        let len = std::fs::metadata(dir.path().join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 0, "{f} is missing or empty");
    }
}

#[test]
fn bench_kv_refuses_zero_clients() {
    let out = Command::new(env!("CARGO_BIN_EXE_triton"))
        .args(["bench", "kv", "--target", "triton", "--clients", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// Pids of the live processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let after = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
        let fields: Vec<&str> = after.split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) && fields.first() != Some(&"Z") {
            out.push(child);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s[s.rfind(')').map_or(0, |i| i + 1)..].trim_start().starts_with('Z'))
        .unwrap_or(false)
}

#[test]
fn sigterm_to_bench_kv_stops_the_servers_it_started() {
    let mut bench = Command::new(env!("CARGO_BIN_EXE_triton"))
        .args(["bench", "kv", "--target", "triton", "--clients", "1", "--seconds", "60"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = bench.id();
    // Wait for its three servers.
    let start = std::time::Instant::now();
    let servers = loop {
        let c = children_of(pid);
        if c.len() >= 3 {
            break c;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the servers never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let status = bench.wait().unwrap();
    assert!(!status.success(), "a stopped benchmark must not report success");
    let start = std::time::Instant::now();
    while servers.iter().any(|&s| alive(s)) && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let left: Vec<u32> = servers.into_iter().filter(|&s| alive(s)).collect();
    for &s in &left {
        let _ = Command::new("kill").args(["-KILL", &s.to_string()]).status();
    }
    assert!(left.is_empty(), "servers {left:?} outlived the benchmark");
}

#[test]
fn bench_latency_smoke_prints_one_row_per_request_kind() {
    let out = triton(&["bench", "latency", "--smoke"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for kind in ["status", "serializable get", "linearizable get", "put"] {
        let row = text
            .lines()
            .find(|l| l.starts_with(kind) && l[kind.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("no row for {kind}:\n{text}"));
        let fields: Vec<&str> = row[kind.len()..].split_whitespace().collect();
        assert_eq!(fields.len(), 5, "{row}");
        assert_eq!(fields[0], "200", "{row}");
        let p50: f64 = fields[2].parse().unwrap();
        assert!(p50 > 0.0, "{row}");
    }
}

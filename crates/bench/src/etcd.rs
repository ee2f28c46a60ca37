//! A local etcd cluster (Debian's `etcd-server`) for side-by-side runs: each
//! member on 127.0.0.1 with its own ports and data dir, fsync on (etcd's
//! default). Every process is killed when this is dropped, and by the
//! kernel when the thread that started it dies (a SIGKILLed `triton bench`
//! runs no destructor).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use triton_verify::local::{die_with_parent, free_port, process_report};

use crate::etcdpb::kv_client::KvClient;
use crate::etcdpb::PutRequest;

/// Running etcd members.
pub struct EtcdCluster {
    children: Vec<Child>,
    logs: Vec<PathBuf>,
    /// Client addresses (`127.0.0.1:port`).
    pub endpoints: Vec<String>,
}

/// True if an `etcd` binary is on PATH (or at `binary`).
pub fn available(binary: &Path) -> bool {
    Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

impl EtcdCluster {
    /// Starts `members` etcd members with data under `dir` and waits until
    /// the cluster accepts a write.
    ///
    /// The kernel SIGKILLs the members when the thread that calls this
    /// exits (`PR_SET_PDEATHSIG` follows the thread, not the process): call
    /// it from a thread that outlives the cluster (`main`, or the future a
    /// runtime's `block_on` polls), never a short-lived blocking-pool thread.
    pub async fn start(binary: &Path, dir: &Path, members: usize) -> anyhow::Result<EtcdCluster> {
        let mut c = EtcdCluster::launch(binary, dir, members)?;
        c.wait_ready(Duration::from_secs(30)).await?;
        Ok(c)
    }

    /// Spawns the members without waiting for them.
    fn launch(binary: &Path, dir: &Path, members: usize) -> anyhow::Result<EtcdCluster> {
        anyhow::ensure!(members > 0, "an etcd cluster needs at least one member");
        let mut ports = Vec::new();
        for _ in 0..members {
            ports.push((free_port()?, free_port()?));
        }
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
            .collect();
        let initial = initial.join(",");
        let mut c = EtcdCluster {
            children: Vec::new(),
            logs: Vec::new(),
            endpoints: ports.iter().map(|(client, _)| format!("127.0.0.1:{client}")).collect(),
        };
        for (i, (client, peer)) in ports.iter().enumerate() {
            let data: PathBuf = dir.join(format!("etcd-{i}"));
            let log_path = dir.join(format!("etcd-{i}.log"));
            let log = std::fs::File::create(&log_path)?;
            c.logs.push(log_path);
            let mut command = Command::new(binary);
            command
                .args(["--name", &format!("e{i}")])
                .arg("--data-dir")
                .arg(&data)
                .args(["--listen-client-urls", &format!("http://127.0.0.1:{client}")])
                .args(["--advertise-client-urls", &format!("http://127.0.0.1:{client}")])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "triton-bench"])
                .args(["--log-level", "error"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log);
            // Without it, a `triton bench` killed with SIGKILL leaves its
            // etcd members running, holding their ports.
            die_with_parent(&mut command, "triton bench exited while starting etcd");
            let child = command
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            c.children.push(child);
        }
        Ok(c)
    }

    async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < within {
            for ep in &self.endpoints {
                match put_once(ep).await {
                    Ok(()) => return Ok(()),
                    Err(e) => last = format!("{ep}: {e}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut members = String::new();
        for (i, (child, log)) in self.children.iter_mut().zip(&self.logs).enumerate() {
            members.push_str(&process_report(&format!("etcd member {i}"), Some(child), log));
            // A Go panic's reason is at the top of its trace, which the
            // report's tail does not reach (the log goes with the run's
            // temporary directory).
            if let Some(line) = first_panic_line(log) {
                members.push_str(&format!("    first panic line: {line}\n"));
            }
        }
        bail!("etcd did not accept a write within {within:?}: {last}\n{members}")
    }
}

/// The first line of an etcd log that reports a panic, if any.
fn first_panic_line(log: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = Vec::new();
    // The first MiB: a member that failed at start wrote little.
    std::fs::File::open(log)
        .ok()?
        .take(1 << 20)
        .read_to_end(&mut text)
        .ok()?;
    String::from_utf8_lossy(&text)
        .lines()
        .find(|l| l.contains("panic"))
        .map(|l| l.chars().take(500).collect())
}

async fn put_once(ep: &str) -> anyhow::Result<()> {
    let mut c = KvClient::connect(format!("http://{ep}")).await?;
    tokio::time::timeout(
        Duration::from_secs(2),
        c.put(PutRequest {
            key: b"triton-bench-ready".to_vec(),
            value: b"1".to_vec(),
        }),
    )
    .await??;
    Ok(())
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    use super::{first_panic_line, EtcdCluster};

    /// The state letter of process `pid` (`None` once it is reaped).
    fn proc_state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat[stat.rfind(')')? + 1..].trim_start().chars().next()
    }

    #[test]
    fn members_die_with_the_thread_that_started_them() {
        // PR_SET_PDEATHSIG, seen from inside one process: it follows the
        // thread that spawned, as it follows a SIGKILLed `triton bench`.
        let dir = tempfile::tempdir().unwrap();
        let etcd = dir.path().join("fake-etcd");
        std::fs::write(&etcd, "#!/bin/sh\nexec sleep 60\n").unwrap();
        std::fs::set_permissions(&etcd, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().to_path_buf();
        let pids = std::thread::spawn(move || {
            let c = EtcdCluster::launch(&etcd, &path, 3).unwrap();
            let pids: Vec<u32> = c.children.iter().map(|c| c.id()).collect();
            // No destructor: only the kernel can stop them now.
            std::mem::forget(c);
            pids
        })
        .join()
        .unwrap();
        assert_eq!(pids.len(), 3);
        for pid in pids {
            // Dead but not reaped (we are still their parent): a zombie.
            let start = Instant::now();
            while !matches!(proc_state(pid), None | Some('Z')) {
                if start.elapsed() > Duration::from_secs(10) {
                    // SAFETY: kill(2) on our own child, so the test leaves
                    // nothing behind.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                    panic!("etcd member {pid} outlived the thread that started it");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // SAFETY: reaps our own child.
            unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0) };
        }
    }

    #[test]
    fn the_first_panic_line_of_a_log_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("etcd-0.log");
        std::fs::write(
            &log,
            "starting\npanic: cannot open database: cannot allocate memory\n\ngoroutine 1\n",
        )
        .unwrap();
        assert_eq!(
            first_panic_line(&log).as_deref(),
            Some("panic: cannot open database: cannot allocate memory")
        );
        std::fs::write(&log, "all well\n").unwrap();
        assert_eq!(first_panic_line(&log), None);
        assert_eq!(first_panic_line(&dir.path().join("missing.log")), None);
    }
}

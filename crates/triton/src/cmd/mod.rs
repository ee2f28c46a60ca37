//! One module per subcommand (or family of subcommands).
pub mod admin;
pub mod bench;
pub mod blockstore;
pub mod files;
pub mod http;
pub mod kv;
pub mod lincheck;
pub mod server;
pub mod sim;
pub mod sort;
pub mod surf;
pub mod up;
pub mod verify;
pub mod wal;

/// Raises the soft limit on open files to the hard limit (as Go's runtime
/// does) and returns the limit now in force. Debian's default soft limit of
/// 1024 is what a server's connections alone may reach: running out fails a
/// node's next WAL segment (which stops it) or every accept of the HTTP
/// server. Called at startup for every command (a second call only reads
/// the limit).
pub fn raise_open_file_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    lim.rlim_cur
}

/// Resolves when the user asks the process to stop: Ctrl-C (SIGINT) or
/// SIGTERM. Returns what happened, for the log line.
pub async fn stop_signal() -> &'static str {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term.recv() => "SIGTERM",
    }
}

/// Runs `work`, a command that starts local servers, until it finishes or
/// the user stops it: dropping it then runs the destructors that kill those
/// servers, which an exit by signal would leave running.
pub async fn until_stopped<T>(work: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::select! {
        r = work => r,
        s = stop_signal() => anyhow::bail!("{s}: stopped, along with the servers it started"),
    }
}

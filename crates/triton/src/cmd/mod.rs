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

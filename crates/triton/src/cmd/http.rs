//! `triton http`: the TritonHTTP static file server. Argument parsing only;
//! the server lives in the `triton-http` crate.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use triton_http::cache::CacheConfig;
use triton_http::{ServerConfig, Sites};

/// Options of `triton http`.
#[derive(Debug, clap::Args)]
pub struct HttpArgs {
    /// TCP port to listen on.
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind: IpAddr,
    /// Directory served (or, with --vh-config, the base of each docRoot).
    #[arg(long)]
    pub docroot: PathBuf,
    /// YAML file `virtual_hosts: [{hostName, docRoot}]`; unknown hosts get 404.
    #[arg(long)]
    pub vh_config: Option<PathBuf>,
    /// Read timeout for each request (e.g. 5s, 300ms).
    #[arg(long, default_value = "5s", value_parser = triton_http::parse_timeout)]
    pub timeout: Duration,
    /// How long a resolved file may be served from the cache before re-checking the disk; 0s disables the cache.
    #[arg(long, default_value = "1s", value_parser = triton_http::parse_duration)]
    pub cache_ttl: Duration,
    /// Runtime worker threads (0: one per CPU).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Largest file kept in memory; bigger files are sent from an open descriptor with sendfile.
    #[arg(long, default_value_t = CacheConfig::default().max_file_bytes)]
    pub cache_max_file_bytes: u64,
    /// Connections served at once (further clients wait in the listen backlog); also capped by the
    /// open-file limit. Each can hold about 80 KiB while a client pipelines requests and does not read.
    #[arg(long, default_value_t = DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
}

/// Connections at once by default: about 800 MiB at the most each can
/// hold (a 64 KiB response batch and a request head), whatever the
/// open-file limit allows.
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Runs the server until the process is killed.
pub fn run(args: HttpArgs) -> anyhow::Result<ExitCode> {
    let sites = match &args.vh_config {
        Some(config) => Sites::from_yaml_file(&args.docroot, config)?,
        None => Sites::single(&args.docroot)?,
    };
    // Descriptors: a quarter for cached files, a reserve (the listener,
    // logs), and two per connection: its socket and the file it may be
    // sending uncached (cache off or full, or a file too big for memory).
    let files = super::raise_open_file_limit().min(1 << 20) as usize;
    let max_open_files = (files / 4).min(CacheConfig::default().max_open_files);
    let max_connections = connection_cap(files, max_open_files, args.max_connections);
    let config = ServerConfig {
        listen: SocketAddr::new(args.bind, args.port),
        sites,
        read_timeout: args.timeout,
        cache: CacheConfig {
            ttl: args.cache_ttl,
            max_file_bytes: args.cache_max_file_bytes,
            max_open_files,
            ..CacheConfig::default()
        },
        max_connections,
    };
    let listen = config.listen;
    triton_http::server::serve_blocking(config, args.workers, |addr| {
        eprintln!("triton http: listening on http://{addr}");
    })
    .with_context(|| format!("serving HTTP on {listen}"))?;
    Ok(ExitCode::SUCCESS)
}

/// Connections at once: two descriptors each (the socket, and a file it may
/// send uncached) out of what `files` leaves after the cache's descriptors
/// and a reserve, and never more than `asked` (memory).
fn connection_cap(files: usize, cache_files: usize, asked: usize) -> usize {
    (files.saturating_sub(cache_files + 64) / 2).clamp(1, asked.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_by_descriptors_and_by_the_flag() {
        assert_eq!(
            connection_cap(1 << 20, 1024, DEFAULT_MAX_CONNECTIONS),
            DEFAULT_MAX_CONNECTIONS
        );
        assert_eq!(
            connection_cap(4096, 1024, DEFAULT_MAX_CONNECTIONS),
            (4096 - 1024 - 64) / 2
        );
        assert_eq!(connection_cap(10, 1024, 5), 1, "room for one at least");
        assert_eq!(connection_cap(1 << 20, 1024, 0), 1);
    }
}

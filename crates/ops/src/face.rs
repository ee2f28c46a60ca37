//! The node's HTTP face: `/metrics`, `/status` and the dashboard at `/`.
//!
//! Why hand-rolled on `httparse`: three GET routes with small bodies and
//! `Connection: close` need no framework; the server reads one bounded
//! request head per connection (with a timeout), answers, and closes. Every
//! response carries `Access-Control-Allow-Origin: *` because the dashboard
//! served by one node polls every other node's `/status`.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use triton_node::driver::now_ms;
use triton_node::server::Face;
use triton_node::service::NodeHandle;

use crate::render::{prometheus, status_doc, LeaderChange};

/// The dashboard page: plain HTML/JS/SVG, no build step, no CDN.
pub const DASHBOARD_HTML: &str = include_str!("../assets/dashboard.html");

/// Largest request head the server reads.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;

/// Leader changes kept per node for `/status`.
pub const LEADER_HISTORY: usize = 64;

/// Connections served at once; more wait in the listen backlog. Each is
/// short (its request head within [`HEAD_TIMEOUT`], all of it within
/// `CONNECTION_TIMEOUT`), so this only bounds a flood: without it, anyone
/// reaching the port could use up the process's file descriptors, and the
/// node's next WAL segment would fail to open.
pub const MAX_CONNECTIONS: usize = 128;

/// How long one connection may last in all (request, status, answer).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a client has, from when its connection is accepted, to send a
/// complete request head. Short on purpose: a connection holds one of the
/// [`MAX_CONNECTIONS`] slots while it waits, so clients that connect and send
/// nothing could otherwise keep every slot taken and `/metrics` unavailable.
/// A scraper or a browser sends its head at once.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the face samples the node's status to notice leader changes.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Serves the node's HTTP port (its `http_addr`); see the module docs.
#[derive(Debug, Default)]
pub struct MetricsFace;

type History = Arc<Mutex<VecDeque<LeaderChange>>>;

/// What a route answers: status code, content type and body.
type Answer = (u16, &'static str, String);

impl Face for MetricsFace {
    fn spawn(
        &mut self,
        node: NodeHandle,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Vec<JoinHandle<anyhow::Result<()>>>> {
        let Some(addr) = node.node_config(node.raft_id).and_then(|n| n.http_addr.clone()) else {
            tracing::info!("no http_addr in the config for this node: not serving metrics or the dashboard");
            return Ok(Vec::new());
        };
        let history: History = Arc::new(Mutex::new(VecDeque::new()));
        let answer = {
            let (node, history) = (node.clone(), history.clone());
            move |route| answer(route, node.clone(), history.clone())
        };
        // Bound now: a port that cannot be bound stops the node at startup.
        let server = start(&addr, shutdown.clone(), answer)?;
        Ok(vec![tokio::spawn(track_leaders(node, history, shutdown)), server])
    }
}

/// Samples the node's status and records every change of leader.
async fn track_leaders(node: NodeHandle, history: History, mut shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
    let mut last: Option<(Option<u64>, u64)> = None;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            _ = tokio::time::sleep(SAMPLE_EVERY) => {}
        }
        if *shutdown.borrow() {
            return Ok(());
        }
        let Ok(s) = node.status().await else { continue };
        let leader = s.leader.map(|l| l.saturating_sub(1));
        // A change of leader, or the same leader re-elected in a new term;
        // a leaderless gap is recorded too (the dashboard shows it).
        let changed = match last {
            None => leader.is_some(),
            Some((prev, prev_term)) => prev != leader || (leader.is_some() && prev_term != s.term),
        };
        if changed {
            let mut h = history.lock().unwrap_or_else(|e| e.into_inner());
            if h.len() == LEADER_HISTORY {
                h.pop_front();
            }
            h.push_back(LeaderChange {
                at_ms: now_ms(),
                term: s.term,
                leader,
            });
        }
        last = Some((leader, s.term));
    }
}

/// Binds `addr` and serves it, answering each request with `answer`. The
/// bind happens here, before any task starts, so that its error reaches the
/// caller at startup (see [`MetricsFace`]'s `spawn`).
fn start<A, F>(addr: &str, shutdown: watch::Receiver<bool>, answer: A) -> anyhow::Result<JoinHandle<anyhow::Result<()>>>
where
    A: Fn(Route) -> F + Clone + Send + 'static,
    F: Future<Output = anyhow::Result<Answer>> + Send + 'static,
{
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| {
            l.set_nonblocking(true)?;
            TcpListener::from_std(l)
        })
        .with_context(|| format!("binding the HTTP port {addr}"))?;
    tracing::info!("HTTP (metrics, status, dashboard) on http://{addr}/");
    Ok(tokio::spawn(serve(listener, shutdown, answer, HEAD_TIMEOUT)))
}

/// Serves `listener`; a client has `head_timeout` to send its request head
/// ([`HEAD_TIMEOUT`] outside tests).
async fn serve<A, F>(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    answer: A,
    head_timeout: Duration,
) -> anyhow::Result<()>
where
    A: Fn(Route) -> F + Clone + Send + 'static,
    F: Future<Output = anyhow::Result<Answer>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            p = slots.clone().acquire_owned() => p?,
        };
        tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let answer = answer.clone();
                    tokio::spawn(async move {
                        // The whole exchange is bounded, not only the request
                        // head: a client that never reads its answer must not
                        // keep a slot.
                        match tokio::time::timeout(CONNECTION_TIMEOUT, handle(stream, answer, head_timeout)).await {
                            Ok(Err(e)) => tracing::debug!("HTTP connection: {e:#}"),
                            Err(_) => tracing::debug!("HTTP connection: not done within {CONNECTION_TIMEOUT:?}"),
                            Ok(Ok(())) => {}
                        }
                        drop(permit);
                    });
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!("accepting HTTP connections: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
        if *shutdown.borrow() {
            return Ok(());
        }
    }
}

/// What a request head asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/` or `/index.html`.
    Dashboard,
    /// `/metrics`.
    Metrics,
    /// `/status`.
    Status,
    /// Anything else (404).
    NotFound,
    /// Not GET or HEAD (405).
    BadMethod,
}

/// Parses a request head: `Ok(None)` while incomplete, an error if
/// malformed. The query string is ignored.
pub fn parse_request(buf: &[u8]) -> anyhow::Result<Option<(Route, bool)>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf)? {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(_) => {
            let method = req.method.unwrap_or("");
            let head_only = method == "HEAD";
            if method != "GET" && !head_only {
                return Ok(Some((Route::BadMethod, false)));
            }
            let path = req.path.unwrap_or("/");
            // The absolute form (`http://host:port/metrics`, RFC 9112 §3.2.2),
            // which a server must accept: only its path routes.
            let path = match path.split_once("://") {
                Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => {
                    rest.find('/').map_or("/", |at| &rest[at..])
                }
                _ => path,
            };
            let path = path.split(['?', '#']).next().unwrap_or(path);
            let route = match path {
                "/" | "/index.html" => Route::Dashboard,
                "/metrics" => Route::Metrics,
                "/status" => Route::Status,
                _ => Route::NotFound,
            };
            Ok(Some((route, head_only)))
        }
    }
}

async fn read_head(stream: &mut TcpStream) -> anyhow::Result<(Route, bool)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            anyhow::bail!("connection closed before a complete request");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(r) = parse_request(&buf)? {
            return Ok(r);
        }
        if buf.len() > MAX_REQUEST_BYTES {
            anyhow::bail!("request head larger than {MAX_REQUEST_BYTES} bytes");
        }
    }
}

async fn handle<A, F>(mut stream: TcpStream, answer: A, head_timeout: Duration) -> anyhow::Result<()>
where
    A: Fn(Route) -> F,
    F: Future<Output = anyhow::Result<Answer>>,
{
    let (route, head_only) = match tokio::time::timeout(head_timeout, read_head(&mut stream)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let _ = respond(&mut stream, 400, "text/plain", format!("bad request: {e}\n"), false).await;
            return Err(e);
        }
        Err(_) => anyhow::bail!("no complete request head within {head_timeout:?}"),
    };
    let (code, ctype, body) = answer(route).await?;
    respond(&mut stream, code, ctype, body, head_only).await
}

/// The node's answer to `route`.
async fn answer(route: Route, node: NodeHandle, history: History) -> anyhow::Result<Answer> {
    Ok(match route {
        Route::Dashboard => (200, "text/html; charset=utf-8", DASHBOARD_HTML.to_string()),
        Route::Metrics | Route::Status => match node.status().await {
            Ok(status) => {
                let keys = tokio::time::timeout(Duration::from_secs(2), node.inspect(|store, _| store.len() as u64))
                    .await
                    .ok()
                    .and_then(Result::ok);
                if route == Route::Metrics {
                    (
                        200,
                        "text/plain; version=0.0.4; charset=utf-8",
                        prometheus(&status, keys),
                    )
                } else {
                    let changes: Vec<LeaderChange> = history
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .cloned()
                        .collect();
                    let book = node.addresses.read().unwrap_or_else(|e| e.into_inner()).clone();
                    let doc = status_doc(&node.config, &book, &status, keys, changes, now_ms());
                    (200, "application/json", serde_json::to_string(&doc)?)
                }
            }
            Err(e) => (503, "text/plain", format!("node unavailable: {e}\n")),
        },
        Route::NotFound => (404, "text/plain", "not found; try /, /metrics or /status\n".to_string()),
        Route::BadMethod => (405, "text/plain", "only GET and HEAD\n".to_string()),
    })
}

async fn respond(stream: &mut TcpStream, code: u16, ctype: &str, body: String, head_only: bool) -> anyhow::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nAccess-Control-Allow-Origin: *\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let p = |s: &str| parse_request(s.as_bytes()).unwrap();
        assert_eq!(p("GET / HTTP/1.1\r\n\r\n"), Some((Route::Dashboard, false)));
        assert_eq!(
            p("GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some((Route::Metrics, false))
        );
        assert_eq!(p("HEAD /status HTTP/1.1\r\n\r\n"), Some((Route::Status, true)));
        assert_eq!(p("GET /nope HTTP/1.1\r\n\r\n"), Some((Route::NotFound, false)));
        assert_eq!(p("POST / HTTP/1.1\r\n\r\n"), Some((Route::BadMethod, false)));
        assert_eq!(p("GET / HTTP/1.1\r\nHost: a"), None);
        assert_eq!(
            p("GET http://127.0.0.1:7200/metrics HTTP/1.1\r\n\r\n"),
            Some((Route::Metrics, false))
        );
        assert_eq!(p("GET HTTP://a:1 HTTP/1.1\r\n\r\n"), Some((Route::Dashboard, false)));
        assert_eq!(p("GET ftp://a/status HTTP/1.1\r\n\r\n"), Some((Route::NotFound, false)));
        assert!(parse_request(b"\x00\x01 nonsense\r\n\r\n").is_err());
    }

    /// A fixed answer, so that connection handling is tested without a node.
    async fn fixed(route: Route) -> anyhow::Result<Answer> {
        Ok((200, "text/plain", format!("{route:?}\n")))
    }

    #[tokio::test]
    async fn a_port_that_cannot_be_bound_fails_at_start() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap().to_string();
        let (_stop, shutdown) = watch::channel(false);
        let err = start(&addr, shutdown, fixed).expect_err("the port is taken, so start must fail");
        assert!(format!("{err:#}").contains(&addr), "{err:#}");
    }

    /// Real time (a paused clock jumps ahead while the runtime waits on
    /// sockets), with a short head timeout standing in for [`HEAD_TIMEOUT`].
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_free_their_slots_quickly() {
        const HEAD: Duration = Duration::from_secs(1);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, shutdown) = watch::channel(false);
        let server = tokio::spawn(serve(listener, shutdown, fixed, HEAD));
        // Every slot taken by a connection that never sends a byte.
        let mut idle = Vec::new();
        let first_connect = tokio::time::Instant::now();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        let started = tokio::time::Instant::now();
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
        let mut reply = String::new();
        client.read_to_string(&mut reply).await.unwrap();
        let waited = started.elapsed();
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        assert!(reply.ends_with("Metrics\n"), "{reply}");
        // The cap still holds: the request waited for an idle slot holder
        // to go, which is HEAD after its accept at the earliest, so after
        // the first connect began (however long the connects took).
        let since_first = first_connect.elapsed();
        assert!(
            since_first >= HEAD * 9 / 10,
            "answered {since_first:?} after the first idle connect: the cap did not hold"
        );
        // Within seconds, not the 15 s each idle client could otherwise hold a slot.
        assert!(
            waited < CONNECTION_TIMEOUT / 2,
            "idle connections held their slots for {waited:?}"
        );
        let mut byte = [0u8; 1];
        assert_eq!(
            idle[0].read(&mut byte).await.unwrap(),
            0,
            "the server closed an idle connection"
        );
        stop.send(true).unwrap();
        server.await.unwrap().unwrap();
    }

    #[test]
    fn dashboard_is_self_contained() {
        assert!(DASHBOARD_HTML.contains("<svg") || DASHBOARD_HTML.contains("createElementNS"));
        // No CDN: nothing fetched from another host but our nodes.
        assert!(!DASHBOARD_HTML.contains("<script src"));
        assert!(!DASHBOARD_HTML.contains("https://"));
    }
}

//! A client of the file protocol that follows `ERR_REDIRECT` to the leader
//! and moves to another node when one dies, so callers see one file server
//! however many nodes stand behind it.
//!
//! Retry policy: a request is sent again when it provably was not applied:
//! it never reached a server whole (no connection; or sending failed and no
//! reply came, and the server acts only on a complete request), or it got
//! `ERR_REDIRECT` (refused by a follower, or its log slot went to another
//! leader's entry). A `read` is also retried when its outcome is unknown. A
//! `write`, `cas` or `delete` whose outcome is unknown (sent, then no reply
//! in time, a broken connection, or `ERR_INTERNAL`) is never resent: the
//! protocol has no sessions, so a second copy is a second write, and the
//! first may still commit after another client's acknowledged write. The
//! caller gets an [`OutcomeUnknown`] error instead.
//!
//! Retries pause, 50 ms doubling up to 1 s (only the first redirect of a
//! request to another node, the usual hop from a follower to the leader,
//! goes at once), and no attempt's connect, send or reply timeout runs past
//! the request's deadline.

use std::fmt;
use std::io::ErrorKind;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::{parse_reply, ParsedReply, Reply, Request};

/// The error of a `write`, `cas` or `delete` that was sent but got no
/// definite answer: it may have been applied, may still be, or may never
/// be. Not resent, since a resent copy could be applied twice. Reach it with
/// `anyhow::Error::downcast_ref`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeUnknown {
    /// The server the request was sent to.
    pub server: String,
    /// What came instead of an answer.
    pub reason: String,
}

impl fmt::Display for OutcomeUnknown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "outcome unknown: the request was sent to {} but {}; it may or may not have been applied, \
             so it was not resent (read the file to find out)",
            self.server, self.reason
        )
    }
}

impl std::error::Error for OutcomeUnknown {}

/// One open connection and the bytes received but not yet parsed.
struct Conn {
    addr: String,
    stream: TcpStream,
    buf: Vec<u8>,
}

/// What became of one attempt at a request.
#[derive(Debug)]
enum Attempt {
    /// The server answered.
    Reply(Reply),
    /// The request never reached the server whole, so it was not applied.
    NotSent(anyhow::Error),
    /// The request was sent but no answer came: it may have been applied.
    NoReply(anyhow::Error),
}

/// What [`FileClient::call`] does after an attempt.
#[derive(Debug)]
enum Next {
    /// Hand this reply to the caller.
    Done(Reply),
    /// Send again, to the leader at this address.
    Redirect(String),
    /// Send again, to the next endpoint after a pause.
    RetryElsewhere(anyhow::Error),
    /// Stop: the request may have been applied (see [`OutcomeUnknown`]).
    Unknown(String),
}

/// The retry decision (see the module docs), apart from the sockets so it
/// can be tested on its own.
fn next_step(req: &Request, attempt: Attempt) -> Next {
    match attempt {
        Attempt::Reply(Reply::Redirect(Some(addr))) => Next::Redirect(addr),
        Attempt::Reply(Reply::Redirect(None)) => Next::RetryElsewhere(anyhow!("no leader known (ERR_REDIRECT _)")),
        Attempt::NotSent(e) => Next::RetryElsewhere(e),
        Attempt::Reply(Reply::Internal) if req.is_retry_safe() => Next::RetryElsewhere(anyhow!("ERR_INTERNAL")),
        Attempt::NoReply(e) if req.is_retry_safe() => Next::RetryElsewhere(e),
        // The server answers ERR_INTERNAL when the cluster did not confirm
        // a write in time, and the write may commit after.
        Attempt::Reply(Reply::Internal) => Next::Unknown("it answered ERR_INTERNAL".into()),
        Attempt::NoReply(e) => Next::Unknown(format!("got no answer ({e:#})")),
        Attempt::Reply(r) => Next::Done(r),
    }
}

/// How long to look for a reply after sending failed: the server has
/// already answered and closed by then, if it did.
const LATE_REPLY_WAIT: Duration = Duration::from_secs(1);

/// The first pause before a retry, doubled after each one up to
/// [`MAX_RETRY_PAUSE`]. Two nodes with stale views of the leader can send a
/// client back and forth between them until the deadline: without growing
/// pauses, every client in that state hammers both.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Waits `pause` (at most until `deadline`), then doubles it up to
/// [`MAX_RETRY_PAUSE`].
async fn retry_pause(pause: &mut Duration, deadline: Instant) {
    tokio::time::sleep((*pause).min(deadline.saturating_duration_since(Instant::now()))).await;
    *pause = (*pause * 2).min(MAX_RETRY_PAUSE);
}

/// A redirect-following file-protocol client.
pub struct FileClient {
    endpoints: Vec<String>,
    /// Index of the endpoint to try next when no connection is open.
    next: usize,
    conn: Option<Conn>,
    /// Give up on a request after this long.
    pub deadline: Duration,
    /// Bound on one connect, one send, or one reply (cut to what is left of
    /// the deadline).
    pub attempt_timeout: Duration,
    /// Largest `CONTENTS` body accepted from a server.
    pub max_content_bytes: usize,
}

impl FileClient {
    /// A client of the cluster reachable at `endpoints` (`host:port` of the
    /// nodes' file servers; any subset works).
    pub fn new(endpoints: Vec<String>) -> anyhow::Result<FileClient> {
        if endpoints.is_empty() {
            bail!("no file server endpoints given");
        }
        Ok(FileClient {
            endpoints,
            next: 0,
            conn: None,
            deadline: Duration::from_secs(15),
            attempt_timeout: Duration::from_secs(6),
            max_content_bytes: 64 << 20,
        })
    }

    /// Starts the rotation at endpoint `i` (spreads clients over the nodes).
    pub fn start_at(mut self, i: usize) -> FileClient {
        self.next = i % self.endpoints.len();
        self
    }

    /// The address of the open connection, if any.
    pub fn connected_to(&self) -> Option<&str> {
        self.conn.as_ref().map(|c| c.addr.as_str())
    }

    async fn connect(&mut self, addr: &str, timeout: Duration) -> anyhow::Result<()> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .with_context(|| format!("connecting to {addr}: timed out"))?
            .with_context(|| format!("connecting to {addr}"))?;
        let _ = stream.set_nodelay(true);
        self.conn = Some(Conn {
            addr: addr.to_string(),
            stream,
            buf: Vec::new(),
        });
        Ok(())
    }

    fn rotate(&mut self) -> String {
        let a = self.endpoints[self.next % self.endpoints.len()].clone();
        self.next = (self.next + 1) % self.endpoints.len();
        a
    }

    /// Drops the open connection if the server has closed it (an idle
    /// timeout, a restart) or it holds bytes nobody asked for: a request
    /// sent on it would get no answer, and for a write that means an
    /// unknown outcome where a fresh connection gives a definite one.
    fn drop_if_unusable(&mut self) {
        let Some(c) = &self.conn else { return };
        let mut probe = [0u8; 1];
        let alive =
            c.buf.is_empty() && matches!(c.stream.try_read(&mut probe), Err(e) if e.kind() == ErrorKind::WouldBlock);
        if !alive {
            self.conn = None;
        }
    }

    /// Reads the next reply on the connection.
    async fn read_reply(conn: &mut Conn, max_content: usize, timeout: Duration) -> anyhow::Result<Reply> {
        let read = async {
            loop {
                match parse_reply(&conn.buf, max_content) {
                    ParsedReply::Reply(r, n) => {
                        conn.buf.drain(..n);
                        return Ok(r);
                    }
                    ParsedReply::Invalid(why) => bail!("{why}"),
                    ParsedReply::Incomplete => {}
                }
                conn.buf.reserve(16 * 1024);
                if conn.stream.read_buf(&mut conn.buf).await.context("receiving")? == 0 {
                    bail!("the server closed the connection");
                }
            }
        };
        tokio::time::timeout(timeout, read).await.context("no reply in time")?
    }

    /// Sends one request on the open connection and reads its reply, each
    /// within `timeout` and before `deadline`.
    async fn exchange(
        conn: &mut Conn,
        wire: &[u8],
        max_content: usize,
        timeout: Duration,
        deadline: Instant,
    ) -> Attempt {
        let within = || timeout.min(deadline.saturating_duration_since(Instant::now()));
        let timeout = within();
        let send_error = match tokio::time::timeout(timeout, conn.stream.write_all(wire)).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(anyhow::Error::from(e).context("sending")),
            Err(_) => Some(anyhow!("sending: timed out after {timeout:?}")),
        };
        if let Some(e) = send_error {
            // The server may have refused the request before taking all of
            // it (ERR_CMD_ERR for an oversized write) and closed: its answer
            // says why. Without one, its last bytes never left, and the
            // server acts only on a whole request: nothing was applied.
            return match Self::read_reply(conn, max_content, LATE_REPLY_WAIT.min(within())).await {
                Ok(r) => Attempt::Reply(r),
                Err(_) => Attempt::NotSent(e),
            };
        }
        match Self::read_reply(conn, max_content, within()).await {
            Ok(r) => Attempt::Reply(r),
            Err(e) => Attempt::NoReply(e),
        }
    }

    /// Sends `req` and returns the final reply (never a redirect, unless
    /// redirects went on until the deadline). See the module docs for what
    /// is retried; a write whose outcome is unknown fails with
    /// [`OutcomeUnknown`], and a name the protocol cannot carry is refused
    /// before anything is sent.
    pub async fn call(&mut self, req: &Request) -> anyhow::Result<Reply> {
        req.validate().context("refusing to send the request")?;
        let mut wire = Vec::new();
        req.encode(&mut wire);
        let deadline = Instant::now() + self.deadline;
        let mut last_error = None;
        let mut redirect: Option<String> = None;
        // Every retry but a first redirect to another node (the usual hop
        // from a follower to the leader) waits, longer each time.
        let mut pause = FIRST_RETRY_PAUSE;
        let mut redirected = false;
        loop {
            // No attempt's timeouts run past the deadline.
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            self.drop_if_unusable();
            if self.conn.is_none() {
                let addr = redirect.take().unwrap_or_else(|| self.rotate());
                if let Err(e) = self.connect(&addr, self.attempt_timeout.min(left)).await {
                    last_error = Some(e);
                    retry_pause(&mut pause, deadline).await;
                    continue;
                }
            }
            let conn = self.conn.as_mut().expect("connected above");
            let attempt = Self::exchange(conn, &wire, self.max_content_bytes, self.attempt_timeout, deadline).await;
            let addr = conn.addr.clone();
            match next_step(req, attempt) {
                Next::Done(reply) => {
                    if reply == Reply::CmdErr {
                        // The server may have closed the connection after it.
                        self.conn = None;
                    }
                    return Ok(reply);
                }
                Next::Redirect(leader) => {
                    // A node that redirects to itself is mid-transition.
                    if redirected || leader == addr {
                        retry_pause(&mut pause, deadline).await;
                    }
                    redirected = true;
                    self.conn = None;
                    redirect = Some(leader);
                }
                Next::RetryElsewhere(e) => {
                    last_error = Some(e.context(format!("talking to {addr}")));
                    self.conn = None;
                    retry_pause(&mut pause, deadline).await;
                }
                Next::Unknown(reason) => {
                    self.conn = None;
                    return Err(OutcomeUnknown { server: addr, reason }.into());
                }
            }
        }
        Err(last_error
            .unwrap_or_else(|| anyhow!("redirected until the deadline"))
            .context(format!("no answer within {:?}", self.deadline)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::net::TcpListener;

    use super::*;
    use crate::protocol::{parse_request, Limits, Parsed};

    fn write() -> Request {
        Request::Write {
            name: b"f".to_vec(),
            content: b"x".to_vec(),
            exptime_s: 0,
        }
    }

    fn cas() -> Request {
        Request::Cas {
            name: b"f".to_vec(),
            version: 3,
            content: b"x".to_vec(),
            exptime_s: 0,
        }
    }

    fn delete() -> Request {
        Request::Delete { name: b"f".to_vec() }
    }

    fn read() -> Request {
        Request::Read { name: b"f".to_vec() }
    }

    #[test]
    fn the_retry_decision() {
        let redirect = || Attempt::Reply(Reply::Redirect(Some("leader:1".into())));
        let internal = || Attempt::Reply(Reply::Internal);
        let not_sent = || Attempt::NotSent(anyhow!("connection refused"));
        let no_reply = || Attempt::NoReply(anyhow!("reset"));
        for req in [write(), cas(), delete()] {
            assert!(matches!(next_step(&req, redirect()), Next::Redirect(a) if a == "leader:1"));
            assert!(matches!(
                next_step(&req, Attempt::Reply(Reply::Redirect(None))),
                Next::RetryElsewhere(_)
            ));
            assert!(matches!(next_step(&req, not_sent()), Next::RetryElsewhere(_)));
            assert!(matches!(next_step(&req, internal()), Next::Unknown(_)), "{req:?}");
            assert!(matches!(next_step(&req, no_reply()), Next::Unknown(_)), "{req:?}");
            assert!(matches!(
                next_step(&req, Attempt::Reply(Reply::Ok { version: 4 })),
                Next::Done(Reply::Ok { version: 4 })
            ));
        }
        for attempt in [redirect(), internal(), not_sent(), no_reply()] {
            assert!(!matches!(next_step(&read(), attempt), Next::Unknown(_) | Next::Done(_)));
        }
    }

    /// How a fake server treats every request it parses.
    #[derive(Clone)]
    enum Behaviour {
        Answer(Reply),
        Close,
        Silent,
    }

    /// A fake file server on loopback: records every request it parses and
    /// answers as told; a malformed one gets its error and an abrupt close
    /// (a reset if input is left unread). Returns its address and the
    /// requests.
    async fn fake_server(behaviour: Behaviour) -> (String, Arc<Mutex<Vec<Request>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        fake_server_on(listener, behaviour)
    }

    /// [`fake_server`] on a listener already bound.
    fn fake_server_on(listener: TcpListener, behaviour: Behaviour) -> (String, Arc<Mutex<Vec<Request>>>) {
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (log, behaviour) = (log.clone(), behaviour.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        match parse_request(&buf, &Limits::default()) {
                            Parsed::Request(req, n) => {
                                buf.drain(..n);
                                log.lock().unwrap().push(req);
                                match &behaviour {
                                    Behaviour::Answer(r) => {
                                        let mut out = Vec::new();
                                        r.encode(&mut out);
                                        if stream.write_all(&out).await.is_err() {
                                            return;
                                        }
                                    }
                                    Behaviour::Close => return,
                                    Behaviour::Silent => std::future::pending::<()>().await,
                                }
                                continue;
                            }
                            Parsed::Error { reply, .. } => {
                                let mut out = Vec::new();
                                reply.encode(&mut out);
                                let _ = stream.write_all(&out).await;
                                return;
                            }
                            Parsed::Incomplete => {}
                        }
                        if stream.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                            return;
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    fn client(endpoints: Vec<String>) -> FileClient {
        let mut c = FileClient::new(endpoints).unwrap();
        c.deadline = Duration::from_secs(2);
        c.attempt_timeout = Duration::from_millis(300);
        c
    }

    #[tokio::test]
    async fn a_write_whose_outcome_is_unknown_is_sent_once_and_reported() {
        let cases = [
            ("ERR_INTERNAL", Behaviour::Answer(Reply::Internal)),
            ("connection closed after the request", Behaviour::Close),
            ("no reply in time", Behaviour::Silent),
        ];
        for (what, behaviour) in cases {
            for req in [write(), cas(), delete()] {
                let (addr, seen) = fake_server(behaviour.clone()).await;
                let err = client(vec![addr.clone()]).call(&req).await.unwrap_err();
                let unknown = err
                    .downcast_ref::<OutcomeUnknown>()
                    .unwrap_or_else(|| panic!("{what}, {req:?}: not an unknown outcome: {err:#}"));
                assert_eq!(unknown.server, addr);
                assert!(err.to_string().starts_with("outcome unknown"), "{err}");
                assert_eq!(seen.lock().unwrap().len(), 1, "{what}, {req:?}: sent more than once");
            }
        }
    }

    #[tokio::test]
    async fn a_read_is_resent_when_its_outcome_is_unknown() {
        for behaviour in [Behaviour::Answer(Reply::Internal), Behaviour::Close] {
            let (addr, seen) = fake_server(behaviour).await;
            let mut c = client(vec![addr]);
            c.deadline = Duration::from_millis(500);
            let err = c.call(&read()).await.unwrap_err();
            assert!(err.downcast_ref::<OutcomeUnknown>().is_none(), "{err:#}");
            assert!(seen.lock().unwrap().len() >= 2, "{err:#}");
        }
    }

    #[tokio::test]
    async fn a_write_that_provably_did_not_apply_is_resent() {
        // A redirect: the write goes to the leader.
        let (leader, at_leader) = fake_server(Behaviour::Answer(Reply::Ok { version: 7 })).await;
        let (follower, at_follower) = fake_server(Behaviour::Answer(Reply::Redirect(Some(leader.clone())))).await;
        let mut c = client(vec![follower]);
        assert_eq!(c.call(&write()).await.unwrap(), Reply::Ok { version: 7 });
        assert_eq!(
            (at_follower.lock().unwrap().len(), at_leader.lock().unwrap().len()),
            (1, 1)
        );
        // A refused connection: the next endpoint.
        let dead = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().to_string()
        };
        let mut c = client(vec![dead, leader]);
        assert_eq!(c.call(&delete()).await.unwrap(), Reply::Ok { version: 7 });
        assert_eq!(at_leader.lock().unwrap().len(), 2);
    }

    /// A server that refuses an oversized write after its first line and
    /// closes while the contents are still coming: sending fails, but the
    /// answer was sent before the reset and is read, not resent for.
    #[tokio::test]
    async fn a_failed_send_still_reads_the_answer() {
        let (addr, seen) = fake_server(Behaviour::Answer(Reply::Ok { version: 1 })).await;
        let mut c = client(vec![addr]);
        let big = Request::Write {
            name: b"big".to_vec(),
            content: vec![b'x'; 8 << 20],
            exptime_s: 0,
        };
        assert_eq!(c.call(&big).await.unwrap(), Reply::CmdErr);
        assert!(seen.lock().unwrap().is_empty());
        // The connection it closed is not reused.
        assert_eq!(c.call(&read()).await.unwrap(), Reply::Ok { version: 1 });
    }

    /// Two nodes with stale views of the leader send the client to each
    /// other. It pauses longer after each redirect instead of hammering
    /// them, and gives up at its deadline.
    #[tokio::test]
    async fn redirects_back_and_forth_back_off_until_the_deadline() {
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr_a, addr_b) = (a.local_addr().unwrap().to_string(), b.local_addr().unwrap().to_string());
        let (_, at_a) = fake_server_on(a, Behaviour::Answer(Reply::Redirect(Some(addr_b))));
        let (_, at_b) = fake_server_on(b, Behaviour::Answer(Reply::Redirect(Some(addr_a.clone()))));
        let mut c = FileClient::new(vec![addr_a]).unwrap();
        c.deadline = Duration::from_secs(2);
        let started = Instant::now();
        let err = c.call(&write()).await.unwrap_err();
        let took = started.elapsed();
        assert!(format!("{err:#}").contains("redirected until the deadline"), "{err:#}");
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_millis(2300),
            "{took:?}"
        );
        // One connection per request. Pauses of 0, 50, 100, 200, 400, 800
        // and 1000 ms fit 7 or 8 in 2 s; without them, thousands.
        let sent = at_a.lock().unwrap().len() + at_b.lock().unwrap().len();
        assert!((4..=10).contains(&sent), "{sent} requests in {took:?}");
    }

    /// No attempt's timeouts run past the request's deadline: a server that
    /// never answers costs the deadline, not the 6 s attempt timeout.
    #[tokio::test]
    async fn a_silent_server_costs_the_deadline_not_the_attempt_timeout() {
        for req in [read(), write()] {
            let (addr, seen) = fake_server(Behaviour::Silent).await;
            let mut c = FileClient::new(vec![addr]).unwrap();
            assert_eq!(c.attempt_timeout, Duration::from_secs(6));
            c.deadline = Duration::from_secs(1);
            let started = Instant::now();
            let err = c.call(&req).await.unwrap_err();
            let took = started.elapsed();
            assert!(took < Duration::from_millis(1300), "{req:?}: {took:?}: {err:#}");
            assert!(!seen.lock().unwrap().is_empty());
            // A write was sent: its outcome is unknown.
            assert_eq!(
                err.downcast_ref::<OutcomeUnknown>().is_some(),
                !req.is_retry_safe(),
                "{err:#}"
            );
        }
    }

    #[tokio::test]
    async fn names_that_would_smuggle_another_request_are_not_sent() {
        let (addr, seen) = fake_server(Behaviour::Answer(Reply::FileNotFound)).await;
        let mut c = client(vec![addr]);
        let smuggler = Request::Read {
            name: b"x\r\ndelete y".to_vec(),
        };
        let desync = Request::Write {
            name: b"a 5".to_vec(),
            content: b"hello".to_vec(),
            exptime_s: 0,
        };
        for req in [smuggler, desync] {
            let err = c.call(&req).await.unwrap_err();
            assert!(format!("{err:#}").contains("whitespace"), "{err:#}");
        }
        assert_eq!(c.call(&read()).await.unwrap(), Reply::FileNotFound);
        assert_eq!(
            *seen.lock().unwrap(),
            vec![read()],
            "only the valid request reaches the server"
        );
    }
}

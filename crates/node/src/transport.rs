//! Peer transport over gRPC: one long-lived client stream per peer carries
//! batches of Raft messages in order. Sending never blocks the driver: each
//! peer has a bounded queue, and a full queue drops the message (Raft
//! tolerates loss and retransmits). Connections are re-established with
//! exponential backoff, as soon as a stream ends rather than at the next
//! message, and the peer's queue outlives each stream, so what a dead
//! stream did not take goes out on the next one: the core does not resend
//! votes or their answers, so losing the first message to a restarted peer
//! could cost a whole election timeout.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender as DriverSender;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status, Streaming};
use triton_proto::raft::raft_transport_client::RaftTransportClient;
use triton_proto::raft::raft_transport_server::RaftTransport;
use triton_proto::raft::{RaftBatch, RaftMessage, TransportAck};
use triton_raft::{Message, NodeId};

use crate::auth::ClientToken;
use crate::codec::{message_from_pb, message_to_pb};
use crate::driver::{user_id, Input};
use crate::members::AddressBook;
use crate::tls::Dialer;

/// Messages queued per peer before new ones are dropped.
const PEER_QUEUE: usize = 4096;
/// Stream metadata carrying the sender's `Timing::signature`: nodes whose
/// timing differs must not talk, or one's leader lease could outlast the
/// other's promise not to vote.
pub const TIMING_METADATA: &str = "triton-timing";
/// Messages per batch on the wire.
const BATCH: usize = 256;
/// Room left in a batch for the gRPC frame around it.
const BATCH_FRAME_BYTES: usize = 64;

/// A sender's first wait before redialling, doubled after each failure up
/// to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long a stream must have lived for the back-off to start over.
const HEALTHY_STREAM: Duration = Duration::from_secs(2);

/// How long a sender waits after a peer refused its stream (a different
/// `[timing]`, a missing or wrong token) before trying again.
const REFUSED_RETRY: Duration = Duration::from_secs(5);

/// The driver's handle for sending to peers.
pub struct Outbox {
    peers: HashMap<NodeId, mpsc::Sender<RaftMessage>>,
    /// Addresses the senders dial, to notice a member's new address.
    addrs: HashMap<NodeId, String>,
    rt: tokio::runtime::Handle,
    max_message_bytes: usize,
    dialer: Dialer,
    /// Our `Timing::signature`, sent on every stream.
    timing: MetadataValue<Ascii>,
    /// The admin token, which peers require on every stream.
    token: ClientToken,
}

impl Outbox {
    /// Starts a sender task per peer on `rt`. `peers` maps Raft ids to gRPC
    /// addresses; `dialer` connects to them (with TLS, the node's own
    /// certificate is its client identity); `timing` is our
    /// `Timing::signature` and `token` the config's admin token, both of
    /// which peers check.
    pub fn start(
        rt: &tokio::runtime::Handle,
        peers: HashMap<NodeId, String>,
        max_message_bytes: usize,
        dialer: Dialer,
        timing: &str,
        token: ClientToken,
    ) -> Outbox {
        let mut outbox = Outbox {
            peers: HashMap::new(),
            addrs: HashMap::new(),
            rt: rt.clone(),
            max_message_bytes,
            dialer,
            timing: MetadataValue::try_from(timing).unwrap_or_else(|_| MetadataValue::from_static("invalid")),
            token,
        };
        for (id, addr) in peers {
            outbox.add_peer(id, &addr);
        }
        outbox
    }

    /// Starts sending to a member at `addr` (one that joined, or moved:
    /// the old sender ends when its queue's sender is dropped). An address
    /// that makes no endpoint is logged and leaves no sender: its task used
    /// to end at once while its entry stayed, so messages to the peer were
    /// dropped silently and adding it again was a no-op.
    pub fn add_peer(&mut self, id: NodeId, addr: &str) {
        if self.addrs.get(&id).map(String::as_str) == Some(addr) {
            return;
        }
        let endpoint = match self.dialer.endpoint(addr) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(peer = id, %addr, "bad peer address, not sending to it: {e:#}");
                self.remove_peer(id);
                return;
            }
        };
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        self.rt.spawn(peer_sender(
            id,
            addr.to_string(),
            endpoint,
            rx,
            self.max_message_bytes,
            self.timing.clone(),
            self.token.clone(),
        ));
        self.peers.insert(id, tx);
        self.addrs.insert(id, addr.to_string());
    }

    /// Stops sending to `id` (a member removed from the cluster): its
    /// sender ends when its queue's sender is dropped here.
    pub fn remove_peer(&mut self, id: NodeId) {
        self.peers.remove(&id);
        self.addrs.remove(&id);
    }

    pub fn send(&self, m: Message) {
        if let Some(tx) = self.peers.get(&m.to) {
            // Full or closed: drop; the core will retransmit.
            let _ = tx.try_send(message_to_pb(&m));
        }
    }
}

/// A peer's queue, shared by the streams of its successive connections.
struct PeerQueue {
    messages: mpsc::Receiver<RaftMessage>,
    /// The connection whose stream may take from the queue. An older stream
    /// that hyper still polls ends instead: it would take messages to a dead
    /// connection, and its poll would replace the live stream's waker in the
    /// queue (a receiver keeps one), leaving the live one asleep.
    live: u64,
    /// A message taken off the queue that did not fit the last batch: it
    /// starts the next one.
    carry: Option<RaftMessage>,
    /// The most encoded bytes a batch may hold: a batch over the peer's
    /// `max_message_bytes` would fail to encode and take the whole stream
    /// down, again and again (two catch-up appends of half the limit each
    /// already make one).
    max_batch_bytes: usize,
}

impl PeerQueue {
    /// A batch starting with `first`, filled from the queue while it stays
    /// within `BATCH` messages and `max_batch_bytes` (a single message over
    /// the limit still goes alone, and its failure is logged by the stream).
    fn fill_batch(&mut self, first: RaftMessage) -> RaftBatch {
        let framed = |m: &RaftMessage| {
            let len = prost::Message::encoded_len(m);
            1 + prost::length_delimiter_len(len) + len
        };
        let mut bytes = framed(&first);
        let mut messages = vec![first];
        while messages.len() < BATCH {
            let Ok(m) = self.messages.try_recv() else {
                break;
            };
            let len = framed(&m);
            if bytes + len > self.max_batch_bytes {
                self.carry = Some(m);
                break;
            }
            bytes += len;
            messages.push(m);
        }
        debug_assert!(!messages.is_empty() && messages.len() <= BATCH);
        debug_assert!(messages.len() == 1 || bytes <= self.max_batch_bytes);
        RaftBatch { messages }
    }

    /// Drops everything queued: stale messages are useless to a peer that
    /// was unreachable (the core retransmits what matters).
    fn clear(&mut self) {
        self.carry = None;
        while self.messages.try_recv().is_ok() {}
    }
}

/// The body of one connection's stream: batches taken straight off the
/// peer's queue whenever hyper asks for more. No task of ours sits between
/// the driver's queue and the connection: each such hop is a wake-up and a
/// few syscalls, and one message crosses two of them on every write's path
/// (the append, then its acknowledgement). The queue outlives the stream, so
/// what a dead connection did not take goes out on the next one.
struct QueueStream {
    queue: Arc<Mutex<PeerQueue>>,
    connection: u64,
}

impl Stream for QueueStream {
    type Item = RaftBatch;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<RaftBatch>> {
        // Uncontended: only the live connection's stream gets past `live`.
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.live != self.connection {
            return Poll::Ready(None);
        }
        if let Some(first) = queue.carry.take() {
            return Poll::Ready(Some(queue.fill_batch(first)));
        }
        match queue.messages.poll_recv(cx) {
            Poll::Ready(Some(first)) => Poll::Ready(Some(queue.fill_batch(first))),
            // The node is shutting down, or the sender was replaced.
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

async fn peer_sender(
    id: NodeId,
    addr: String,
    endpoint: Endpoint,
    queue: mpsc::Receiver<RaftMessage>,
    max_bytes: usize,
    timing: MetadataValue<Ascii>,
    token: ClientToken,
) {
    let queue = Arc::new(Mutex::new(PeerQueue {
        messages: queue,
        live: 0,
        carry: None,
        max_batch_bytes: max_bytes.saturating_sub(BATCH_FRAME_BYTES),
    }));
    let lock = || queue.lock().unwrap_or_else(|e| e.into_inner());
    let closed = || lock().messages.is_closed();
    let endpoint = endpoint
        .connect_timeout(Duration::from_secs(1))
        .http2_keep_alive_interval(Duration::from_secs(5));
    let mut backoff = FIRST_BACKOFF;
    loop {
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(peer = id, %addr, "connect failed: {e}; retrying in {backoff:?}");
                lock().clear();
                if closed() {
                    return; // replaced by a sender to a new address, or shutting down
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        tracing::debug!(peer = id, %addr, "connected");
        let opened = Instant::now();
        let mut client = RaftTransportClient::new(channel)
            .max_encoding_message_size(max_bytes)
            .max_decoding_message_size(max_bytes);
        let connection = {
            let mut q = lock();
            q.live += 1;
            q.live
        };
        let mut request = Request::new(QueueStream {
            queue: queue.clone(),
            connection,
        });
        request.metadata_mut().insert(TIMING_METADATA, timing.clone());
        token.insert_into(request.metadata_mut());
        // Ends when the peer dies (reconnecting at once, not at the next
        // message, has the stream up again by the time the peer is back),
        // or when the queue closes.
        let ended = client.send(request).await;
        let lived = opened.elapsed();
        match ended {
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::FailedPrecondition | tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                tracing::error!(peer = id, %addr, "the peer refused our messages: {}", status.message());
                // It will refuse again until an operator acts: retry slowly
                // (the back-off alone would allow one a second).
                tokio::time::sleep(REFUSED_RETRY).await;
            }
            Err(status) => tracing::debug!(peer = id, "stream ended: {status}"),
            Ok(_) => {}
        }
        if closed() {
            return;
        }
        // Only a stream that lived is a sign the peer is back: a connection
        // alone is not (a stale address served by another gRPC server
        // answers every stream at once, and was redialled 20 times a second).
        if lived >= HEALTHY_STREAM {
            backoff = FIRST_BACKOFF;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Receives peers' message streams and hands each message to the driver.
///
/// Each stream speaks for one sender: the `from` of its first message.
/// That sender must be a member this node knows (in its address book) and
/// not this node itself, or the stream is refused; a later message that
/// claims another sender is dropped. This keeps one stream (one holder of
/// the admin token) from speaking for several nodes, and an unknown id
/// (say, one with an absurd term) from reaching the core at all. It does
/// not prove who is at the other end: anyone allowed to open a stream can
/// still open one per member id. Mutual TLS does not close that either,
/// since node certificates carry no node identity (nodes may share one
/// certificate, and clients' certificates come from the same CA).
pub struct TransportService {
    driver: DriverSender<Input>,
    me: NodeId,
    /// Our `Timing::signature`: a stream with another is refused.
    timing: String,
    /// The members this node knows: the only senders it takes streams from.
    members: Arc<RwLock<AddressBook>>,
    /// Told when a stream from an unknown sender is refused: perhaps a
    /// member that joined while this node was down (see
    /// `server::learn_missing_addresses`).
    addresses_wanted: Option<Arc<tokio::sync::Notify>>,
}

impl TransportService {
    /// `members` is the node's address book (shared with the driver, which
    /// adds members as it learns of them).
    pub fn new(driver: DriverSender<Input>, me: NodeId, timing: &str, members: Arc<RwLock<AddressBook>>) -> Self {
        TransportService {
            driver,
            me,
            timing: timing.to_string(),
            members,
            addresses_wanted: None,
        }
    }

    /// Notify `wanted` whenever a stream from a sender this node does not
    /// know is refused, so the node can ask the members it knows about it.
    pub fn asking_for_unknown_senders(mut self, wanted: Arc<tokio::sync::Notify>) -> Self {
        self.addresses_wanted = Some(wanted);
        self
    }

    /// Whether a stream may speak for `from`.
    fn check_sender(&self, from: NodeId) -> Result<(), Status> {
        if from == self.me || from == 0 {
            tracing::error!(
                sender = from,
                "refusing a peer stream from this node's own id, or from nobody"
            );
            return Err(Status::permission_denied(
                "a stream's sender must be another node than the receiver",
            ));
        }
        let known = self
            .members
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(from)
            .is_some();
        if !known {
            // Also what a real new member sees before this node learns of
            // it (its sender retries): that lasts until the membership
            // entry naming it reaches this node, or, for a node not yet in
            // any, until it is listed in this node's config.
            tracing::error!(
                sender = from,
                "refusing a peer stream from node {}, which is not a member this node knows",
                user_id(from)
            );
            if let Some(wanted) = &self.addresses_wanted {
                wanted.notify_one();
            }
            return Err(Status::permission_denied(format!(
                "node {} is not a member the receiver knows",
                user_id(from)
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl RaftTransport for TransportService {
    async fn send(&self, request: Request<Streaming<RaftBatch>>) -> Result<Response<TransportAck>, Status> {
        let theirs = request.metadata().get(TIMING_METADATA).and_then(|v| v.to_str().ok());
        if theirs != Some(self.timing.as_str()) {
            let theirs = theirs.unwrap_or("none sent");
            tracing::error!(ours = %self.timing, %theirs, "refusing a peer whose [timing] differs");
            return Err(Status::failed_precondition(format!(
                "[timing] differs: ours is {}, the sender's is {theirs}; every node must run the same [timing] (leader leases depend on it)",
                self.timing
            )));
        }
        let mut stream = request.into_inner();
        // Fixed by the first message that decodes (see `TransportService`).
        let mut sender: Option<NodeId> = None;
        let mut impostors = 0u64;
        while let Some(batch) = stream.message().await? {
            for m in batch.messages {
                let m = match message_from_pb(m) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!("dropping a malformed peer message: {e}");
                        continue;
                    }
                };
                match sender {
                    None => {
                        self.check_sender(m.from)?;
                        sender = Some(m.from);
                    }
                    Some(s) if s != m.from => {
                        // Once per stream: a flood must not flood the log.
                        if impostors == 0 {
                            tracing::warn!(
                                stream_sender = s,
                                claimed = m.from,
                                "dropping a message that claims another sender than its stream's"
                            );
                        }
                        impostors += 1;
                        continue;
                    }
                    Some(_) => {}
                }
                if m.to == self.me {
                    // A full driver queue drops the message (loss is safe).
                    let _ = self.driver.try_send(Input::Peer(m));
                } else {
                    tracing::warn!(to = m.to, "dropping a message addressed to another node");
                }
            }
        }
        if impostors > 0 {
            tracing::warn!(
                stream_sender = ?sender,
                impostors,
                "a peer stream ended; it carried messages claiming another sender, all dropped"
            );
        }
        Ok(Response::new(TransportAck {}))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use triton_raft::{Body, Entry, EntryKind};

    use super::*;

    fn append_of(data_bytes: usize) -> RaftMessage {
        message_to_pb(&Message {
            from: 1,
            to: 2,
            term: 1,
            body: Body::Append {
                prev_index: 0,
                prev_term: 0,
                entries: vec![Entry {
                    index: 1,
                    term: 1,
                    kind: EntryKind::Command,
                    data: Bytes::from(vec![7u8; data_bytes]),
                }],
                commit: 0,
            },
        })
    }

    /// An address that makes no endpoint leaves no entry behind: its task
    /// used to end at once while the entry stayed, so messages to the peer
    /// vanished and adding the peer again did nothing.
    #[test]
    fn a_bad_peer_address_leaves_no_sender_behind() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Storable in the address book, but not a URI's authority.
        let bad = "[::1:7002";
        assert!(crate::members::valid_addr(bad));
        let peers = [(2, bad.to_string())].into_iter().collect();
        let mut outbox = Outbox::start(
            rt.handle(),
            peers,
            1 << 20,
            Dialer::plaintext(),
            "t",
            ClientToken::default(),
        );
        assert!(!outbox.peers.contains_key(&2) && !outbox.addrs.contains_key(&2));
        outbox.add_peer(2, "127.0.0.1:7002");
        assert!(outbox.peers.contains_key(&2));
        // A move to a bad address stops the sender to the old one too.
        outbox.add_peer(2, bad);
        assert!(!outbox.peers.contains_key(&2) && !outbox.addrs.contains_key(&2));
    }

    #[test]
    fn a_batch_stays_within_the_peers_message_limit() {
        let (tx, rx) = mpsc::channel(16);
        let mut q = PeerQueue {
            messages: rx,
            live: 1,
            carry: None,
            max_batch_bytes: 10_000,
        };
        for n in [4_000, 4_000, 4_000, 20_000, 10] {
            tx.try_send(append_of(n)).unwrap();
        }
        let sizes = |b: &RaftBatch| b.messages.iter().map(prost::Message::encoded_len).collect::<Vec<_>>();
        let mut batches = Vec::new();
        let mut next = q.messages.try_recv().ok();
        while let Some(first) = next {
            let batch = q.fill_batch(first);
            assert!(batch.messages.len() == 1 || prost::Message::encoded_len(&batch) <= 10_000);
            batches.push(sizes(&batch));
            next = q.carry.take().or_else(|| q.messages.try_recv().ok());
        }
        // Two 4 kB appends fit, the third waits; the one over the limit goes
        // alone; nothing is lost or reordered.
        let count: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(count, [2, 1, 1, 1], "{batches:?}");
        assert!(batches[2][0] > 20_000 && batches[3][0] < 100);
    }
}

//! The admin token: a shared secret from the config that admin and fault
//! RPCs must carry, so anyone who can reach a node's port cannot crash it,
//! cut it off or change the membership. Peers' Raft streams carry it too:
//! a forged message (a fake leader's append) could otherwise do all three.
//!
//! The token travels as gRPC metadata `authorization: Bearer <token>`.
//! When the config sets no `admin_token`, nothing is checked (a test
//! cluster on one machine); fault RPCs are still refused unless the config
//! sets `enable_test_rpcs`, which the services check on their own.
//!
//! Server side: [`check_admin`] for one request, or [`AdminAuth`] as a tonic
//! interceptor over a whole service. Client side: [`with_token`] for one
//! request, or [`ClientToken`] as an interceptor on a client.
//!
//! A missing or malformed header answers `UNAUTHENTICATED`; a well-formed
//! but wrong token answers `PERMISSION_DENIED`. The comparison takes the
//! same time wherever the tokens differ, so timing does not reveal a prefix.

use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{IntoRequest, Request, Status};
use triton_config::ClusterConfig;

/// The metadata key carrying the token.
pub const AUTHORIZATION: &str = "authorization";

/// The scheme before the token (matched without regard to case, as HTTP does).
const BEARER: &str = "Bearer ";

/// Checks `metadata` against the `expected` token; `None` accepts everything.
pub fn check_token(expected: Option<&str>, metadata: &MetadataMap) -> Result<(), Status> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let value = metadata.get(AUTHORIZATION).ok_or_else(|| {
        Status::unauthenticated("this RPC needs the admin token: send metadata `authorization: Bearer <admin_token>`")
    })?;
    let malformed = || Status::unauthenticated("malformed authorization metadata; expected `Bearer <admin_token>`");
    let value = value.as_bytes();
    if value.len() <= BEARER.len() || !value[..BEARER.len()].eq_ignore_ascii_case(BEARER.as_bytes()) {
        return Err(malformed());
    }
    let presented = &value[BEARER.len()..];
    // Constant time over the bytes; only the length can differ in timing,
    // and the config's token length is not the secret.
    if bool::from(presented.ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(Status::permission_denied("wrong admin token"))
    }
}

/// Checks that `request` carries the config's admin token (if one is set).
/// For services that check some methods only; [`AdminAuth`] covers a whole
/// service.
pub fn check_admin<T>(config: &ClusterConfig, request: &Request<T>) -> Result<(), Status> {
    check_token(config.admin_token.as_deref(), request.metadata())
}

/// A tonic interceptor that applies [`check_token`] to every call of a
/// service: `FooServer::with_interceptor(svc, AdminAuth::from_config(&config))`.
#[derive(Clone, Default)]
pub struct AdminAuth {
    token: Option<Arc<str>>,
    /// Let a call without any token through (a wrong one is still refused).
    missing_ok: bool,
}

impl AdminAuth {
    /// Requires the config's `admin_token`, or nothing if it has none.
    pub fn from_config(config: &ClusterConfig) -> AdminAuth {
        AdminAuth {
            token: config.admin_token.as_deref().map(Arc::from),
            missing_ok: false,
        }
    }

    /// For peers' Raft streams: [`AdminAuth::from_config`], except that
    /// with `peer_token_optional` (a rolling upgrade from nodes that sent
    /// no token) a stream without one is let through.
    pub fn for_peers(config: &ClusterConfig) -> AdminAuth {
        AdminAuth {
            missing_ok: config.peer_token_optional,
            ..AdminAuth::from_config(config)
        }
    }
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("AdminAuth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl tonic::service::Interceptor for AdminAuth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if self.missing_ok && request.metadata().get(AUTHORIZATION).is_none() {
            return Ok(request);
        }
        check_token(self.token.as_deref(), request.metadata())?;
        Ok(request)
    }
}

/// The metadata value for `token`, or `None` if it cannot travel in
/// metadata (the config's validation refuses such tokens).
fn bearer(token: &str) -> Option<MetadataValue<tonic::metadata::Ascii>> {
    MetadataValue::try_from(format!("{BEARER}{token}")).ok()
}

/// Adds the config's admin token (if one is set) to a request, for clients
/// calling admin or fault RPCs: `client.crash(with_token(ControlEmpty {}, &config))`.
pub fn with_token<T>(request: impl IntoRequest<T>, config: &ClusterConfig) -> Request<T> {
    let mut request = request.into_request();
    if let Some(value) = config.admin_token.as_deref().and_then(bearer) {
        request.metadata_mut().insert(AUTHORIZATION, value);
    }
    request
}

/// A client-side interceptor adding the admin token to every call:
/// `ControlClient::with_interceptor(channel, ClientToken::from_config(&config))`.
#[derive(Clone, Default)]
pub struct ClientToken {
    value: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl ClientToken {
    /// Sends the config's `admin_token`, or nothing if it has none.
    pub fn from_config(config: &ClusterConfig) -> ClientToken {
        ClientToken {
            value: config.admin_token.as_deref().and_then(bearer),
        }
    }
}

impl std::fmt::Debug for ClientToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientToken")
            .field("token", &self.value.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ClientToken {
    /// Adds the token (if any) to `metadata`: for requests an interceptor
    /// does not see, such as a streaming call built by hand.
    pub fn insert_into(&self, metadata: &mut MetadataMap) {
        if let Some(value) = &self.value {
            metadata.insert(AUTHORIZATION, value.clone());
        }
    }
}

impl tonic::service::Interceptor for ClientToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        self.insert_into(request.metadata_mut());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use tonic::service::Interceptor;
    use tonic::Code;

    use super::*;

    fn config(token: Option<&str>) -> ClusterConfig {
        ClusterConfig {
            admin_token: token.map(str::to_string),
            ..ClusterConfig::default()
        }
    }

    fn with_header(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert(AUTHORIZATION, MetadataValue::try_from(value).unwrap());
        m
    }

    /// A rolling upgrade lets token-less peers in; a wrong token never is.
    #[test]
    fn peer_streams_without_a_token_pass_only_while_it_is_optional() {
        let mut strict = AdminAuth::for_peers(&config(Some("s3cret")));
        let mut upgrading = AdminAuth::for_peers(&ClusterConfig {
            peer_token_optional: true,
            ..config(Some("s3cret"))
        });
        let request = |value: Option<&str>| {
            let mut r = Request::new(());
            if let Some(v) = value {
                *r.metadata_mut() = with_header(v);
            }
            r
        };
        assert_eq!(strict.call(request(None)).unwrap_err().code(), Code::Unauthenticated);
        assert!(upgrading.call(request(None)).is_ok());
        for auth in [&mut strict, &mut upgrading] {
            assert!(auth.call(request(Some("Bearer s3cret"))).is_ok());
            assert_eq!(
                auth.call(request(Some("Bearer wrong"))).unwrap_err().code(),
                Code::PermissionDenied
            );
        }
    }

    #[test]
    fn no_token_configured_accepts_anything() {
        assert!(check_token(None, &MetadataMap::new()).is_ok());
        assert!(check_token(None, &with_header("garbage")).is_ok());
    }

    #[test]
    fn the_right_token_is_accepted() {
        assert!(check_token(Some("s3cret"), &with_header("Bearer s3cret")).is_ok());
        // The scheme is case-insensitive, as in HTTP.
        assert!(check_token(Some("s3cret"), &with_header("bearer s3cret")).is_ok());
        assert!(check_token(Some("s3cret"), &with_header("BEARER s3cret")).is_ok());
    }

    #[test]
    fn a_missing_header_is_unauthenticated() {
        let e = check_token(Some("s3cret"), &MetadataMap::new()).unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        assert!(e.message().contains("authorization"), "{}", e.message());
    }

    #[test]
    fn malformed_headers_are_unauthenticated() {
        for bad in [
            "s3cret",
            "Bearer",
            "Bearer ",
            "Basic s3cret",
            "Bearers3cret",
            "Token s3cret",
            "",
        ] {
            let e = check_token(Some("s3cret"), &with_header(bad)).unwrap_err();
            assert_eq!(e.code(), Code::Unauthenticated, "{bad:?}");
            assert!(e.message().contains("malformed"), "{bad:?}: {}", e.message());
        }
    }

    #[test]
    fn non_ascii_headers_are_refused_not_a_panic() {
        let mut m = MetadataMap::new();
        m.insert(
            AUTHORIZATION,
            MetadataValue::try_from("Bearer \u{e9}t\u{e9}".as_bytes()).unwrap(),
        );
        let e = check_token(Some("s3cret"), &m).unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
        let mut m = MetadataMap::new();
        m.insert(AUTHORIZATION, MetadataValue::try_from(&b"\xff\xfe"[..]).unwrap());
        assert_eq!(
            check_token(Some("s3cret"), &m).unwrap_err().code(),
            Code::Unauthenticated
        );
    }

    #[test]
    fn wrong_tokens_are_denied() {
        // Prefixes, extensions, one byte off, case changes, padding: the
        // comparison is exact.
        for bad in [
            "Bearer s3cre",
            "Bearer s3crett",
            "Bearer s3creT",
            "Bearer S3CRET",
            "Bearer  s3cret",
            "Bearer s3cret ",
            "Bearer x",
        ] {
            let e = check_token(Some("s3cret"), &with_header(bad)).unwrap_err();
            assert_eq!(e.code(), Code::PermissionDenied, "{bad:?}");
            assert!(!e.message().contains("s3cret"), "the error must not echo the token");
        }
    }

    #[test]
    fn the_comparison_is_subtle_constant_time() {
        // `check_token` relies on subtle's `ct_eq`: equal only for equal
        // bytes, including equal length.
        assert!(bool::from(b"abc".ct_eq(b"abc")));
        assert!(!bool::from(b"abc".ct_eq(b"abd")));
        assert!(!bool::from(b"abc".ct_eq(b"ab")));
        assert!(!bool::from(b"".ct_eq(b"a")));
    }

    #[test]
    fn check_admin_uses_the_config() {
        let open = config(None);
        let locked = config(Some("t0k3n"));
        assert!(check_admin(&open, &Request::new(())).is_ok());
        assert_eq!(
            check_admin(&locked, &Request::new(())).unwrap_err().code(),
            Code::Unauthenticated
        );
        assert!(check_admin(&locked, &with_token((), &locked)).is_ok());
        // A client holding another cluster's token is denied.
        let other = config(Some("0th3r"));
        assert_eq!(
            check_admin(&locked, &with_token((), &other)).unwrap_err().code(),
            Code::PermissionDenied
        );
    }

    #[test]
    fn with_token_sends_nothing_without_a_token() {
        let r = with_token((), &config(None));
        assert!(r.metadata().get(AUTHORIZATION).is_none());
        let r = with_token((), &config(Some("t0k3n")));
        assert_eq!(r.metadata().get(AUTHORIZATION).unwrap(), "Bearer t0k3n");
    }

    #[test]
    fn interceptors_agree() {
        let locked = config(Some("t0k3n"));
        let mut server = AdminAuth::from_config(&locked);
        let mut client = ClientToken::from_config(&locked);
        assert_eq!(server.call(Request::new(())).unwrap_err().code(), Code::Unauthenticated);
        let sent = client.call(Request::new(())).unwrap();
        assert!(server.call(sent).is_ok());
        let mut none = ClientToken::from_config(&config(None));
        let sent = none.call(Request::new(())).unwrap();
        assert!(sent.metadata().get(AUTHORIZATION).is_none());
        assert!(
            !format!("{server:?}{client:?}").contains("t0k3n"),
            "Debug must hide the token"
        );
    }
}

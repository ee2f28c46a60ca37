//! Parsing of TritonHTTP request heads.
//!
//! `httparse` does the tokenizing (it is fast, well fuzzed and never
//! allocates); this module adds the rules of the TritonHTTP subset on top:
//! only `GET`, only `HTTP/1.1`, URLs starting with `/`, header names made of
//! letters, digits and `-`, CRLF line endings, a mandatory `Host`, and hard
//! limits on size so a hostile client cannot make us buffer without bound.
//!
//! The parser is incremental: callers hand it whatever bytes they have and
//! get back a complete request (plus how many bytes it used), "need more", or
//! a [`BadRequest`] as early as the bytes already prove the request invalid.

/// Longest request head (request line + headers + blank line) we accept.
/// Anything longer is answered with 400 rather than buffered.
pub const MAX_HEAD_BYTES: usize = 8192;

/// Most header lines we accept in one request.
pub const MAX_HEADERS: usize = 64;

/// A syntactically valid TritonHTTP request (always `GET`, always HTTP/1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The URL exactly as sent; guaranteed to start with `/`.
    pub target: String,
    /// Headers in arrival order, names in canonical form (`Content-Type`).
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The value of the last header named `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The `Host` header; the parser guarantees it is present and non-empty.
    pub fn host(&self) -> &str {
        self.header("Host").unwrap_or("")
    }

    /// Whether the client asked to close the connection after this response
    /// (`Connection: close`, matched as a case-insensitive token in any of
    /// the `Connection` headers: repeated headers are one list, RFC 9110 §5.3).
    pub fn wants_close(&self) -> bool {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case("Connection"))
            .flat_map(|(_, value)| value.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("close"))
    }
}

/// The outcome of parsing a buffer that did not prove the request bad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// A full request head; `consumed` bytes of the buffer belong to it and
    /// anything after them is the start of the next (pipelined) request.
    Complete { request: Request, consumed: usize },
    /// The bytes so far are a valid prefix of a request; read more.
    Partial,
}

/// Why a request is answered with `400 Bad Request`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    #[error("malformed request head: {0}")]
    Syntax(String),
    #[error("request line is empty")]
    EmptyRequestLine,
    #[error("line ends in a bare LF instead of CRLF")]
    BareLineFeed,
    #[error("method {0:?} is not GET")]
    Method(String),
    #[error("protocol version is not HTTP/1.1")]
    Version,
    #[error("URL {0:?} does not start with '/'")]
    Target(String),
    #[error("header name {0:?} has characters other than letters, digits and '-'")]
    HeaderName(String),
    #[error("missing or empty Host header")]
    MissingHost,
    #[error("more than one Host header")]
    DuplicateHost,
    #[error("request head is longer than {MAX_HEAD_BYTES} bytes")]
    TooLong,
    #[error("request has more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    #[error("a GET request must not carry a body (Content-Length or Transfer-Encoding)")]
    Body,
}

/// Parses the request head at the start of `buf`.
///
/// Never panics and never looks at more than [`MAX_HEAD_BYTES`] bytes; a
/// buffer that long which still does not hold a full head is [`BadRequest::TooLong`].
pub fn parse_request(buf: &[u8]) -> Result<Parse, BadRequest> {
    let window = &buf[..buf.len().min(MAX_HEAD_BYTES)];
    // httparse skips blank lines before the request line (RFC 9112 allows
    // that); TritonHTTP calls an empty request line bad.
    if window.starts_with(b"\r") || window.starts_with(b"\n") {
        return Err(BadRequest::EmptyRequestLine);
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    let status = parsed.parse(window).map_err(|err| match err {
        httparse::Error::TooManyHeaders => BadRequest::TooManyHeaders,
        httparse::Error::Version => BadRequest::Version,
        other => BadRequest::Syntax(other.to_string()),
    });
    // Check what the request line has shown so far, even on a partial head,
    // so `GETT / ...` is refused without waiting for the rest.
    if let Some(method) = parsed.method {
        if method != "GET" {
            return Err(BadRequest::Method(method.to_owned()));
        }
    }
    if let Some(path) = parsed.path {
        if !path.starts_with('/') {
            return Err(BadRequest::Target(path.to_owned()));
        }
    }
    if let Some(version) = parsed.version {
        if version != 1 {
            return Err(BadRequest::Version);
        }
    }
    let consumed = match status? {
        httparse::Status::Partial => {
            check_line_endings(window)?;
            if window.len() >= MAX_HEAD_BYTES {
                return Err(BadRequest::TooLong);
            }
            return Ok(Parse::Partial);
        }
        httparse::Status::Complete(consumed) => consumed,
    };
    check_line_endings(&window[..consumed])?;
    let target = parsed.path.unwrap_or_default().to_owned();
    let mut headers = Vec::with_capacity(parsed.headers.len());
    let mut hosts = 0usize;
    for header in parsed.headers.iter() {
        if !header.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(BadRequest::HeaderName(header.name.to_owned()));
        }
        let name = canonical_header_name(header.name);
        let value = String::from_utf8_lossy(header.value).into_owned();
        if name == "Host" {
            hosts += 1;
            if value.is_empty() {
                return Err(BadRequest::MissingHost);
            }
        }
        headers.push((name, value));
    }
    // A GET has no body here; one announced would be read as the next
    // request and put the connection out of step, so it is refused.
    let body = headers
        .iter()
        .any(|(name, value)| (name == "Content-Length" && value.trim() != "0") || name == "Transfer-Encoding");
    if body {
        return Err(BadRequest::Body);
    }
    match hosts {
        0 => return Err(BadRequest::MissingHost),
        1 => {}
        _ => return Err(BadRequest::DuplicateHost),
    }
    debug_assert!(target.starts_with('/'));
    Ok(Parse::Complete {
        request: Request { target, headers },
        consumed,
    })
}

/// Every LF in a request head must be preceded by CR (httparse tolerates
/// bare LF; the TritonHTTP wire format does not).
fn check_line_endings(head: &[u8]) -> Result<(), BadRequest> {
    let bare = head
        .iter()
        .enumerate()
        .any(|(at, &byte)| byte == b'\n' && (at == 0 || head[at - 1] != b'\r'));
    if bare {
        Err(BadRequest::BareLineFeed)
    } else {
        Ok(())
    }
}

/// `content-TYPE` -> `Content-Type`: first letter and every letter after a
/// `-` upper case, the rest lower case (the form Go's net/textproto uses).
pub fn canonical_header_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for ch in name.chars() {
        if upper {
            out.push(ch.to_ascii_uppercase());
        } else {
            out.push(ch.to_ascii_lowercase());
        }
        upper = ch == '-';
    }
    out
}

/// Parses `data` as a stream of pipelined requests and panics if any
/// complete one breaks [`invariant_violation`]. Used by the fuzz target and
/// by the test that replays the fuzz corpus, so both check the same things.
pub fn check_parse_invariants(data: &[u8]) {
    let mut rest = data;
    while let Ok(Parse::Complete { request, consumed }) = parse_request(rest) {
        if let Some(problem) = invariant_violation(rest, &request, consumed) {
            panic!("parser invariant broken: {problem} (input {rest:?})");
        }
        // Mapping the URL to a path must not panic either.
        let _ = crate::resolve::relative_path(&request.target);
        rest = &rest[consumed..];
    }
}

/// What is wrong, if anything, with `request` as the parse of the first
/// `consumed` bytes of `input`.
pub fn invariant_violation(input: &[u8], request: &Request, consumed: usize) -> Option<String> {
    if consumed == 0 || consumed > input.len().min(MAX_HEAD_BYTES) {
        return Some(format!("consumed {consumed} of {} bytes", input.len()));
    }
    if !request.target.starts_with('/') {
        return Some(format!("target {:?} does not start with '/'", request.target));
    }
    if request.host().is_empty() {
        return Some("no Host".to_owned());
    }
    for (name, _) in &request.headers {
        if *name != canonical_header_name(name) || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Some(format!("header name {name:?} is not canonical"));
        }
    }
    // The head alone parses to the same request: nothing after it leaked in.
    let alone = parse_request(&input[..consumed]);
    let expected = Ok(Parse::Complete {
        request: request.clone(),
        consumed,
    });
    if alone != expected {
        return Some(format!("the head alone parses to {alone:?}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> (Request, usize) {
        match parse_request(buf) {
            Ok(Parse::Complete { request, consumed }) => (request, consumed),
            other => panic!("expected a complete request, got {other:?}"),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn good_request() {
        let buf = b"GET /index.html HTTP/1.1\r\nHost: test\r\n\r\n";
        let (request, consumed) = complete(buf);
        assert_eq!(consumed, buf.len());
        assert_eq!(request.target, "/index.html");
        assert_eq!(request.headers, headers(&[("Host", "test")]));
        assert_eq!(request.host(), "test");
        assert!(!request.wants_close());
    }

    #[test]
    fn close_in_any_connection_header_counts() {
        let (request, _) =
            complete(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n");
        assert!(request.wants_close());
        let (request, _) = complete(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Close\r\n\r\n");
        assert!(request.wants_close());
        let (request, _) = complete(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n");
        assert!(!request.wants_close());
    }

    #[test]
    fn a_request_with_a_body_is_bad() {
        for head in [
            &b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(parse_request(head), Err(BadRequest::Body));
        }
        let (request, _) = complete(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(request.target, "/");
    }

    #[test]
    fn misc_headers_are_canonicalized_and_spaces_skipped() {
        let buf = b"GET / HTTP/1.1\r\nhost: test\r\nconnection:   close\r\n\
X-custom-KEY:value\r\nEmpty:\r\nAccept-Language: en\r\n\r\n";
        let (request, consumed) = complete(buf);
        assert_eq!(consumed, buf.len());
        assert_eq!(
            request.headers,
            headers(&[
                ("Host", "test"),
                ("Connection", "close"),
                ("X-Custom-Key", "value"),
                ("Empty", ""),
                ("Accept-Language", "en"),
            ])
        );
        assert!(request.wants_close());
        assert_eq!(request.header("x-custom-key"), Some("value"));
        assert_eq!(request.header("EMPTY"), Some(""));
    }

    #[test]
    fn connection_close_is_a_case_insensitive_token() {
        let (request, _) = complete(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE\r\n\r\n");
        assert!(request.wants_close());
        let (request, _) = complete(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n");
        assert!(!request.wants_close());
    }

    #[test]
    fn partial_requests_ask_for_more() {
        let full = b"GET /a.html HTTP/1.1\r\nHost: test\r\n\r\n";
        for end in 0..full.len() {
            assert_eq!(parse_request(&full[..end]), Ok(Parse::Partial), "prefix {end}");
        }
    }

    #[test]
    fn bad_requests() {
        type Expect = fn(&BadRequest) -> bool;
        let cases: &[(&[u8], Expect)] = &[
            (
                b"This is a bad request\r\n\r\n",
                |e| matches!(e, BadRequest::Method(m) if m == "This"),
            ),
            (
                b"GETT / HTTP/1.1\r\nHost: a\r\n\r\n",
                |e| matches!(e, BadRequest::Method(m) if m == "GETT"),
            ),
            (b"POST / HTTP/1.1\r\nHost: a\r\n\r\n", |e| {
                matches!(e, BadRequest::Method(_))
            }),
            (b"GET / HTTP/1.0\r\nHost: a\r\n\r\n", |e| {
                matches!(e, BadRequest::Version)
            }),
            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", |e| {
                matches!(e, BadRequest::Version)
            }),
            (b"GET index.html HTTP/1.1\r\nHost: a\r\n\r\n", |e| {
                matches!(e, BadRequest::Target(_))
            }),
            (b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", |e| {
                matches!(e, BadRequest::Target(_))
            }),
            (b"GET / HTTP/1.1\r\n\r\n", |e| matches!(e, BadRequest::MissingHost)),
            (b"GET / HTTP/1.1\r\nHost:\r\n\r\n", |e| {
                matches!(e, BadRequest::MissingHost)
            }),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", |e| {
                matches!(e, BadRequest::DuplicateHost)
            }),
            (b"GET / HTTP/1.1\r\nHost a\r\n\r\n", |e| {
                matches!(e, BadRequest::Syntax(_))
            }),
            (b"GET / HTTP/1.1\r\nHost: a\r\nNo colon here\r\n\r\n", |e| {
                matches!(e, BadRequest::Syntax(_))
            }),
            (b"GET / HTTP/1.1\r\nHost: a\r\nBad_Name: x\r\n\r\n", |e| {
                matches!(e, BadRequest::HeaderName(_))
            }),
            (b"GET / HTTP/1.1\nHost: a\r\n\r\n", |e| {
                matches!(e, BadRequest::BareLineFeed)
            }),
            (b"GET / HTTP/1.1\r\nHost: a\r\n\n", |e| {
                matches!(e, BadRequest::BareLineFeed)
            }),
            (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", |e| {
                matches!(e, BadRequest::Syntax(_))
            }),
        ];
        for (input, expected) in cases {
            let got = parse_request(input);
            match &got {
                Err(err) if expected(err) => {}
                other => panic!("{:?}: unexpected {other:?}", String::from_utf8_lossy(input)),
            }
        }
    }

    #[test]
    fn bad_request_line_is_refused_before_the_head_ends() {
        assert!(matches!(
            parse_request(b"GETT / HTTP/1.1\r\n"),
            Err(BadRequest::Method(_))
        ));
        assert!(matches!(
            parse_request(b"GET nope HTTP/1.1\r\n"),
            Err(BadRequest::Target(_))
        ));
    }

    #[test]
    fn empty_line_is_a_bad_request_line() {
        assert_eq!(parse_request(b"\r\n"), Err(BadRequest::EmptyRequestLine));
        assert_eq!(
            parse_request(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(BadRequest::EmptyRequestLine)
        );
        assert_eq!(parse_request(b""), Ok(Parse::Partial));
    }

    #[test]
    fn multiple_requests_in_one_buffer() {
        let buf = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: y\r\nConnection: close\r\n\r\nGET /c HT";
        let (first, used1) = complete(buf);
        assert_eq!(first.target, "/a");
        let (second, used2) = complete(&buf[used1..]);
        assert_eq!(second.target, "/b");
        assert!(second.wants_close());
        assert_eq!(parse_request(&buf[used1 + used2..]), Ok(Parse::Partial));
    }

    #[test]
    fn a_bad_request_after_a_good_one_does_not_spoil_the_first() {
        let buf = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGETT /b HTTP/1.1\r\n\r\n";
        let (first, used) = complete(buf);
        assert_eq!(first.target, "/a");
        assert!(matches!(parse_request(&buf[used..]), Err(BadRequest::Method(_))));
    }

    #[test]
    fn limits_are_enforced() {
        let mut long = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        long.resize(MAX_HEAD_BYTES + 10, b'a');
        assert_eq!(parse_request(&long), Err(BadRequest::TooLong));
        let mut many = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_request(&many), Err(BadRequest::TooManyHeaders));
    }

    #[test]
    fn invariant_checker_flags_wrong_parses() {
        let input = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let (good, used) = complete(input);
        assert_eq!(invariant_violation(input, &good, used), None);
        assert!(invariant_violation(input, &good, 0).is_some());
        assert!(invariant_violation(input, &good, used - 1).is_some());
        let mut relative = good.clone();
        relative.target = "a".into();
        assert!(invariant_violation(input, &relative, used).is_some());
        let mut lower = good.clone();
        lower.headers[0].0 = "host".into();
        assert!(invariant_violation(input, &lower, used).is_some());
        let mut other = good.clone();
        other.target = "/b".into();
        assert!(invariant_violation(input, &other, used).is_some());
        let mut hostless = good;
        hostless.headers.clear();
        assert!(invariant_violation(input, &hostless, used).is_some());
    }

    #[test]
    fn canonical_names() {
        assert_eq!(canonical_header_name("content-type"), "Content-Type");
        assert_eq!(canonical_header_name("HOST"), "Host");
        assert_eq!(canonical_header_name("x--y"), "X--Y");
        assert_eq!(canonical_header_name("a1b"), "A1b");
    }
}

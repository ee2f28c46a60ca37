//! The wire protocol, as pure functions over byte buffers.
//!
//! Both directions are parsed incrementally: the caller keeps the bytes it
//! has received so far in a buffer, asks the parser, and reads more on
//! [`Parsed::Incomplete`]. Keeping the parser free of sockets makes it
//! unit-testable and fuzzable, and gives one place that enforces the limits
//! (line length, filename length, content size) so a connection never
//! buffers more than one bounded request.
//!
//! Requests (every line ends in `\r\n`; contents are followed by `\r\n`):
//!
//! ```text
//! read <filename>
//! write <filename> <numbytes> [<exptime>]\r\n<content>
//! cas <filename> <version> <numbytes> [<exptime>]\r\n<content>
//! delete <filename>
//! ```
//!
//! Error policy: when the end of a request cannot be known (unknown
//! command, wrong number of fields in a `write`/`cas` line, non-numeric or
//! too large `numbytes`, contents not followed by `\r\n`, a line that is too
//! long or ends in a bare `\n`) the answer is `ERR_CMD_ERR` and the
//! connection is closed. Errors in fields that do not decide where the
//! request ends (a bad version or exptime, a too long filename, wrong field
//! count in `read`/`delete`) are answered with `ERR_CMD_ERR`, the request is
//! skipped, and the connection stays open.

/// Limits on one request; they bound the memory a connection may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest filename in bytes (the issue's 250).
    pub max_filename_bytes: usize,
    /// The first line of a request, `\r\n` included, must be shorter than
    /// this (the issue's "under 500 bytes").
    pub max_line_bytes: usize,
    /// Largest contents in bytes (the cluster's `max_value_bytes`, 1 MiB by default).
    pub max_content_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_filename_bytes: 250,
            max_line_bytes: 500,
            max_content_bytes: 1 << 20,
        }
    }
}

/// One client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `read <filename>`.
    Read {
        /// The file name (no whitespace, 1 to 250 bytes).
        name: Vec<u8>,
    },
    /// `write <filename> <numbytes> [<exptime>]`.
    Write {
        /// The file name.
        name: Vec<u8>,
        /// The new contents.
        content: Vec<u8>,
        /// Seconds until the file expires; 0 means never.
        exptime_s: u64,
    },
    /// `cas <filename> <version> <numbytes> [<exptime>]`.
    Cas {
        /// The file name.
        name: Vec<u8>,
        /// The version the client expects the file to have.
        version: u64,
        /// The new contents.
        content: Vec<u8>,
        /// Seconds until the file expires; 0 means never.
        exptime_s: u64,
    },
    /// `delete <filename>`.
    Delete {
        /// The file name.
        name: Vec<u8>,
    },
}

impl Request {
    /// The file the request is about.
    pub fn name(&self) -> &[u8] {
        match self {
            Request::Read { name }
            | Request::Write { name, .. }
            | Request::Cas { name, .. }
            | Request::Delete { name } => name,
        }
    }

    /// Whether a client may send the request again when the outcome of the
    /// first attempt is unknown. Only a `read`: the protocol has no sessions,
    /// so a resent `write` is a second write (a late first copy can land
    /// after, and undo, another client's acknowledged write), and a resent
    /// `cas` or `delete` can report a failure for what in fact succeeded.
    pub fn is_retry_safe(&self) -> bool {
        matches!(self, Request::Read { .. })
    }

    /// Checks that the request's name can travel on the wire with the rule
    /// the server's parser applies ([`check_name`], the spec's 250 bytes):
    /// encoding a name with whitespace would send other fields or another
    /// request (`"x\r\ndelete y"`).
    pub fn validate(&self) -> Result<(), NameError> {
        check_name(self.name(), Limits::default().max_filename_bytes)
    }

    /// Appends the request in wire form (the exptime is omitted when 0).
    pub fn encode(&self, out: &mut Vec<u8>) {
        fn exptime(out: &mut Vec<u8>, s: u64) {
            if s > 0 {
                out.extend_from_slice(format!(" {s}").as_bytes());
            }
        }
        match self {
            Request::Read { name } => {
                out.extend_from_slice(b"read ");
                out.extend_from_slice(name);
            }
            Request::Delete { name } => {
                out.extend_from_slice(b"delete ");
                out.extend_from_slice(name);
            }
            Request::Write {
                name,
                content,
                exptime_s,
            } => {
                out.extend_from_slice(b"write ");
                out.extend_from_slice(name);
                out.extend_from_slice(format!(" {}", content.len()).as_bytes());
                exptime(out, *exptime_s);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(content);
            }
            Request::Cas {
                name,
                version,
                content,
                exptime_s,
            } => {
                out.extend_from_slice(b"cas ");
                out.extend_from_slice(name);
                out.extend_from_slice(format!(" {version} {}", content.len()).as_bytes());
                exptime(out, *exptime_s);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(content);
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// One server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `CONTENTS <version> <numbytes> <exptime>\r\n<content>\r\n`.
    Contents {
        /// The file's version.
        version: u64,
        /// Whole seconds until it expires, rounded up; 0 if it never does.
        exptime_s: u64,
        /// The file's bytes.
        content: Vec<u8>,
    },
    /// `OK <version>` after a write or a successful cas.
    Ok {
        /// The file's new version.
        version: u64,
    },
    /// `OK` after a delete.
    Deleted,
    /// `ERR_VERSION <current version>`: a cas with a stale version.
    ErrVersion {
        /// The file's current version.
        current: u64,
    },
    /// `ERR_FILE_NOT_FOUND`.
    FileNotFound,
    /// `ERR_CMD_ERR`: a malformed request.
    CmdErr,
    /// `ERR_INTERNAL`: the cluster could not serve the request in time (the
    /// outcome of a write is then unknown).
    Internal,
    /// `ERR_REDIRECT <host:port>` of the leader's file port, or
    /// `ERR_REDIRECT _` (`None`) when no leader is known.
    Redirect(Option<String>),
}

impl Reply {
    /// Appends the reply in wire form.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Contents {
                version,
                exptime_s,
                content,
            } => {
                out.extend_from_slice(format!("CONTENTS {version} {} {exptime_s}\r\n", content.len()).as_bytes());
                out.extend_from_slice(content);
            }
            Reply::Ok { version } => out.extend_from_slice(format!("OK {version}").as_bytes()),
            Reply::Deleted => out.extend_from_slice(b"OK"),
            Reply::ErrVersion { current } => out.extend_from_slice(format!("ERR_VERSION {current}").as_bytes()),
            Reply::FileNotFound => out.extend_from_slice(b"ERR_FILE_NOT_FOUND"),
            Reply::CmdErr => out.extend_from_slice(b"ERR_CMD_ERR"),
            Reply::Internal => out.extend_from_slice(b"ERR_INTERNAL"),
            Reply::Redirect(addr) => {
                out.extend_from_slice(b"ERR_REDIRECT ");
                out.extend_from_slice(addr.as_deref().unwrap_or("_").as_bytes());
            }
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Whether a client should treat the reply as success (exit code 0 in
    /// `triton files`).
    pub fn is_success(&self) -> bool {
        matches!(self, Reply::Contents { .. } | Reply::Ok { .. } | Reply::Deleted)
    }
}

/// The outcome of [`parse_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed; nothing is consumed.
    Incomplete,
    /// A request and how many bytes of the buffer it took.
    Request(Request, usize),
    /// A malformed request: send `reply`; then close the connection if
    /// `close` (the end of the request is unknown), else drop `consumed`
    /// bytes and go on.
    Error {
        /// What to answer.
        reply: Reply,
        /// Whether the connection must be closed after the reply.
        close: bool,
        /// Bytes the malformed request took (meaningful when `!close`).
        consumed: usize,
    },
}

fn fatal() -> Parsed {
    Parsed::Error {
        reply: Reply::CmdErr,
        close: true,
        consumed: 0,
    }
}

fn skipped(consumed: usize) -> Parsed {
    Parsed::Error {
        reply: Reply::CmdErr,
        close: false,
        consumed,
    }
}

/// Whether `b` separates fields: Rust's ASCII whitespace (space, `\t`,
/// `\n`, form feed, `\r`) plus the vertical tab (0x0B). The spec only says
/// "no whitespace"; `u8::is_ascii_whitespace` leaves the vertical tab out,
/// but C's `isspace` and Python's `bytes.split()` split on it, so a name
/// holding one would mean different things to different peers.
pub fn is_whitespace(b: u8) -> bool {
    b.is_ascii_whitespace() || b == 0x0B
}

/// Why a file name cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// An empty name.
    Empty,
    /// A name over the limit.
    TooLong {
        /// The name's length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A whitespace byte (see [`is_whitespace`]) in the name.
    Whitespace {
        /// Its offset in the name.
        at: usize,
    },
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::Empty => write!(f, "the file name is empty"),
            NameError::TooLong { len, max } => write!(f, "the file name has {len} bytes; at most {max} are allowed"),
            NameError::Whitespace { at } => write!(
                f,
                "the file name has whitespace or a line break at byte {at}; names may not contain any"
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// The rule for a file name, shared by the server's parser and the client:
/// 1 to `max_bytes` bytes, no whitespace (which would split it into fields
/// or requests).
pub fn check_name(name: &[u8], max_bytes: usize) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > max_bytes {
        return Err(NameError::TooLong {
            len: name.len(),
            max: max_bytes,
        });
    }
    match name.iter().position(|&b| is_whitespace(b)) {
        Some(at) => Err(NameError::Whitespace { at }),
        None => Ok(()),
    }
}

/// A decimal `u64`: ASCII digits only (no sign, no spaces), no overflow.
fn parse_u64(token: &[u8]) -> Option<u64> {
    if token.is_empty() || token.len() > 20 || !token.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(token).ok()?.parse().ok()
}

/// Finds the first line of `buf`: `Ok(Some(line_without_crlf))`, `Ok(None)`
/// if more bytes are needed, `Err(())` if the line is too long or ends in a
/// bare `\n`. Only the first `max_line_bytes` bytes are looked at.
fn first_line(buf: &[u8], max_line_bytes: usize) -> Result<Option<&[u8]>, ()> {
    // A valid line (CRLF included) is at most max_line_bytes - 1 bytes, so
    // its '\n' is within the first max_line_bytes - 1 bytes.
    let window = max_line_bytes.saturating_sub(1);
    match buf[..buf.len().min(window)].iter().position(|&b| b == b'\n') {
        Some(0) => Err(()),
        Some(nl) if buf[nl - 1] != b'\r' => Err(()),
        Some(nl) => Ok(Some(&buf[..nl - 1])),
        None if buf.len() >= window => Err(()),
        None => Ok(None),
    }
}

/// The first line's fields: at most 6 are meaningful, so a 7th and later
/// are only counted, not kept.
fn split_fields(line: &[u8]) -> ([&[u8]; 6], usize) {
    let mut fields: [&[u8]; 6] = [&[]; 6];
    let mut n = 0;
    for f in line.split(|&b| is_whitespace(b)).filter(|f| !f.is_empty()) {
        if n < fields.len() {
            fields[n] = f;
        }
        n += 1;
    }
    (fields, n)
}

/// For a `write` or `cas` line: the index of its `numbytes` field and the
/// whole request's length (line, contents, `\r\n`); `None` when the line
/// does not say where the request ends (bad field count or `numbytes`, or
/// contents over the limit).
fn content_extent(fields: &[&[u8]; 6], n: usize, header_len: usize, limits: &Limits) -> Option<(usize, usize)> {
    // Field positions: write NAME NUMBYTES [EXP]; cas NAME VERSION NUMBYTES [EXP].
    let numbytes_at = if fields[0] == b"cas" { 3 } else { 2 };
    if n < numbytes_at + 1 || n > numbytes_at + 2 {
        return None;
    }
    let numbytes = usize::try_from(parse_u64(fields[numbytes_at])?).ok()?;
    if numbytes > limits.max_content_bytes {
        return None;
    }
    // Checked: with a limit near usize::MAX the sum can overflow, and such a
    // request is as much "too large" as one over the limit.
    let total = header_len.checked_add(numbytes)?.checked_add(2)?;
    Some((numbytes_at, total))
}

/// The whole length of the request at the start of `buf`, once its first
/// line is in and tells it: a `write` or `cas` that [`parse_request`] would
/// wait for. `None` for anything else. Lets a server reserve exactly the
/// memory a large request needs instead of growing its buffer by doubling.
pub fn request_len(buf: &[u8], limits: &Limits) -> Option<usize> {
    let line = first_line(buf, limits.max_line_bytes).ok()??;
    let (fields, n) = split_fields(line);
    match fields[0] {
        b"write" | b"cas" => content_extent(&fields, n, line.len() + 2, limits).map(|(_, total)| total),
        _ => None,
    }
}

/// Parses the request at the start of `buf` (see the module docs for the
/// grammar and the error policy). Never panics, never allocates more than
/// the request's own fields, and never looks past one request.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Parsed {
    let line = match first_line(buf, limits.max_line_bytes) {
        Err(()) => return fatal(),
        Ok(None) => return Parsed::Incomplete,
        Ok(Some(line)) => line,
    };
    let header_len = line.len() + 2;
    let (fields, n) = split_fields(line);
    // Split fields are never empty nor hold whitespace; the shared rule keeps
    // the client's check (`Request::validate`) the same as this one.
    let name_ok = |name: &[u8]| check_name(name, limits.max_filename_bytes).is_ok();
    match fields[0] {
        b"read" | b"delete" => {
            if n != 2 || !name_ok(fields[1]) {
                return skipped(header_len);
            }
            let name = fields[1].to_vec();
            let req = if fields[0] == b"read" {
                Request::Read { name }
            } else {
                Request::Delete { name }
            };
            Parsed::Request(req, header_len)
        }
        b"write" | b"cas" => {
            let is_cas = fields[0] == b"cas";
            let Some((numbytes_at, total)) = content_extent(&fields, n, header_len, limits) else {
                return fatal();
            };
            let content_end = total - 2;
            if buf.len() < total {
                return Parsed::Incomplete;
            }
            if &buf[content_end..total] != b"\r\n" {
                return fatal();
            }
            let exptime_s = if n == numbytes_at + 2 {
                parse_u64(fields[numbytes_at + 1])
            } else {
                Some(0)
            };
            let version = if is_cas { parse_u64(fields[2]) } else { Some(0) };
            let (Some(exptime_s), Some(version), true) = (exptime_s, version, name_ok(fields[1])) else {
                return skipped(total);
            };
            let name = fields[1].to_vec();
            let content = buf[header_len..content_end].to_vec();
            let req = if is_cas {
                Request::Cas {
                    name,
                    version,
                    content,
                    exptime_s,
                }
            } else {
                Request::Write {
                    name,
                    content,
                    exptime_s,
                }
            };
            Parsed::Request(req, total)
        }
        _ => fatal(),
    }
}

/// The outcome of [`parse_reply`] (the client side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedReply {
    /// More bytes are needed.
    Incomplete,
    /// A reply and how many bytes it took.
    Reply(Reply, usize),
    /// Not a reply this protocol knows; the connection is unusable.
    Invalid(String),
}

/// Parses the reply at the start of `buf`. `max_content_bytes` bounds a
/// `CONTENTS` body so a broken server cannot make a client buffer without
/// limit.
pub fn parse_reply(buf: &[u8], max_content_bytes: usize) -> ParsedReply {
    const MAX_REPLY_LINE: usize = 1024;
    let line = match first_line(buf, MAX_REPLY_LINE) {
        Err(()) => return ParsedReply::Invalid("reply line too long or not ended by \\r\\n".into()),
        Ok(None) => return ParsedReply::Incomplete,
        Ok(Some(line)) => line,
    };
    let header_len = line.len() + 2;
    let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    let invalid = || ParsedReply::Invalid(format!("unexpected reply {:?}", String::from_utf8_lossy(line)));
    let reply = match fields.as_slice() {
        [b"OK"] => Reply::Deleted,
        [b"OK", v] => match parse_u64(v) {
            Some(version) => Reply::Ok { version },
            None => return invalid(),
        },
        [b"ERR_VERSION", v] => match parse_u64(v) {
            Some(current) => Reply::ErrVersion { current },
            None => return invalid(),
        },
        [b"ERR_FILE_NOT_FOUND"] => Reply::FileNotFound,
        [b"ERR_CMD_ERR"] => Reply::CmdErr,
        [b"ERR_INTERNAL"] => Reply::Internal,
        [b"ERR_REDIRECT", b"_"] => Reply::Redirect(None),
        [b"ERR_REDIRECT", addr] => match std::str::from_utf8(addr) {
            Ok(a) if !a.is_empty() => Reply::Redirect(Some(a.to_string())),
            _ => return invalid(),
        },
        [b"CONTENTS", v, n, e] => {
            let (Some(version), Some(numbytes), Some(exptime_s)) = (parse_u64(v), parse_u64(n), parse_u64(e)) else {
                return invalid();
            };
            let numbytes = match usize::try_from(numbytes) {
                Ok(b) if b <= max_content_bytes => b,
                _ => return ParsedReply::Invalid(format!("CONTENTS of {numbytes} bytes is over the limit")),
            };
            // Checked, like the request parser: a limit near usize::MAX
            // must not make the sum overflow.
            let Some(total) = header_len.checked_add(numbytes).and_then(|e| e.checked_add(2)) else {
                return ParsedReply::Invalid(format!("CONTENTS of {numbytes} bytes is over the limit"));
            };
            if buf.len() < total {
                return ParsedReply::Incomplete;
            }
            if &buf[total - 2..total] != b"\r\n" {
                return ParsedReply::Invalid("CONTENTS not followed by \\r\\n".into());
            }
            return ParsedReply::Reply(
                Reply::Contents {
                    version,
                    exptime_s,
                    content: buf[header_len..header_len + numbytes].to_vec(),
                },
                total,
            );
        }
        _ => return invalid(),
    };
    ParsedReply::Reply(reply, header_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(buf: &[u8]) -> Parsed {
        parse_request(buf, &Limits::default())
    }

    fn req(r: Request) -> Vec<u8> {
        let mut v = Vec::new();
        r.encode(&mut v);
        v
    }

    #[test]
    fn parses_each_command() {
        assert_eq!(
            parse(b"read a.txt\r\n"),
            Parsed::Request(
                Request::Read {
                    name: b"a.txt".to_vec()
                },
                12
            )
        );
        assert_eq!(
            parse(b"delete a\r\n"),
            Parsed::Request(Request::Delete { name: b"a".to_vec() }, 10)
        );
        assert_eq!(
            parse(b"write a 3\r\nabc\r\n"),
            Parsed::Request(
                Request::Write {
                    name: b"a".to_vec(),
                    content: b"abc".to_vec(),
                    exptime_s: 0
                },
                16
            )
        );
        assert_eq!(
            parse(b"cas a 7 2 10\r\n\r\n\r\nread a\r\n"),
            Parsed::Request(
                Request::Cas {
                    name: b"a".to_vec(),
                    version: 7,
                    content: b"\r\n".to_vec(),
                    exptime_s: 10
                },
                18
            )
        );
    }

    #[test]
    fn binary_contents_and_every_split_point() {
        let wire = b"write bin 6 0\r\n\x00\x01\r\n\x03\x00\r\nread bin\r\n";
        let first = 23;
        for cut in 0..wire.len() {
            let got = parse(&wire[..cut]);
            if cut < first {
                assert_eq!(got, Parsed::Incomplete, "cut at {cut}");
            } else {
                assert!(
                    matches!(got, Parsed::Request(Request::Write { .. }, 23)),
                    "cut at {cut}: {got:?}"
                );
            }
        }
        match parse(wire) {
            Parsed::Request(Request::Write { content, .. }, n) => {
                assert_eq!(content, b"\x00\x01\r\n\x03\x00");
                assert_eq!(
                    parse(&wire[n..]),
                    Parsed::Request(Request::Read { name: b"bin".to_vec() }, 10)
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// The table of bad inputs: what each gets and whether it closes.
    pub(crate) const BAD_INPUTS: &[(&[u8], bool)] = &[
        (b"\r\n", true),
        (b"hello\r\n", true),
        (b"READ a\r\n", true),
        (b"read\r\n", false),
        (b"read a b\r\n", false),
        (b"read a\x0bb\r\n", false),
        (b"delete\r\n", false),
        (b"delete a b\r\n", false),
        (b"read a\n", true),
        (b"\n", true),
        (b"write a\r\n", true),
        (b"write a x\r\nabc\r\n", true),
        (b"write a -1\r\n\r\n", true),
        (b"write a 3 0 9\r\nabc\r\n", true),
        (b"write a 99999999999999999999999\r\n", true),
        (b"write a 2000000\r\n", true),
        (b"write a 3\r\nabcd\r\n", true),
        (b"write a 3\r\nabc\n\n", true),
        (b"write a 3 x\r\nabc\r\n", false),
        (b"write a 3 -5\r\nabc\r\n", false),
        (b"cas a 1\r\nabc\r\n", true),
        (b"cas a 1 x\r\nabc\r\n", true),
        (b"cas a v 3\r\nabc\r\n", false),
        (b"cas a -1 3\r\nabc\r\n", false),
        (b"cas a 1 3 e\r\nabc\r\n", false),
        (b"cas a 1 3 0 0\r\nabc\r\n", true),
    ];

    #[test]
    fn table_of_bad_inputs() {
        for &(input, close) in BAD_INPUTS {
            match parse(input) {
                Parsed::Error {
                    reply: Reply::CmdErr,
                    close: c,
                    consumed,
                } => {
                    assert_eq!(c, close, "{:?}", String::from_utf8_lossy(input));
                    if !close {
                        assert_eq!(consumed, input.len(), "{:?}", String::from_utf8_lossy(input));
                    }
                }
                other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(input)),
            }
        }
    }

    #[test]
    fn line_and_name_limits() {
        let limits = Limits::default();
        // A 250-byte name is fine, 251 is skipped.
        let ok = format!("read {}\r\n", "n".repeat(250));
        assert!(matches!(parse(ok.as_bytes()), Parsed::Request(..)));
        let long = format!("read {}\r\n", "n".repeat(251));
        assert_eq!(
            parse(long.as_bytes()),
            Parsed::Error {
                reply: Reply::CmdErr,
                close: false,
                consumed: long.len()
            }
        );
        let long_write = format!("write {} 1\r\nx\r\n", "n".repeat(251));
        assert!(matches!(
            parse(long_write.as_bytes()),
            Parsed::Error { close: false, .. }
        ));
        // A line of 499 bytes with CRLF is accepted; 500 is not.
        let at_limit = format!("read {}\r\n", "x".repeat(limits.max_line_bytes - 1 - 7));
        assert_eq!(at_limit.len(), 499);
        assert!(matches!(
            parse_request(
                at_limit.as_bytes(),
                &Limits {
                    max_filename_bytes: 1000,
                    ..limits
                }
            ),
            Parsed::Request(..)
        ));
        let over = format!("read {}\r\n", "x".repeat(limits.max_line_bytes - 7));
        assert!(matches!(parse(over.as_bytes()), Parsed::Error { close: true, .. }));
        // An endless line without '\n' is refused once it cannot be valid,
        // not buffered forever.
        assert_eq!(parse(&[b'a'; 498]), Parsed::Incomplete);
        assert!(matches!(parse(&[b'a'; 499]), Parsed::Error { close: true, .. }));
        // Contents at the limit are fine, one more byte is not.
        let small = Limits {
            max_content_bytes: 4,
            ..limits
        };
        assert!(matches!(
            parse_request(b"write a 4\r\nabcd\r\n", &small),
            Parsed::Request(..)
        ));
        assert!(matches!(
            parse_request(b"write a 5\r\n", &small),
            Parsed::Error { close: true, .. }
        ));
    }

    /// With no effective content limit, a `numbytes` near `usize::MAX`
    /// used to overflow `header_len + numbytes` and panic; it is "too large".
    #[test]
    fn numbytes_near_usize_max_is_too_large_not_a_panic() {
        let unlimited = Limits {
            max_content_bytes: usize::MAX,
            ..Limits::default()
        };
        let max = usize::MAX as u64;
        for numbytes in [max - 2, max - 1, max] {
            for wire in [format!("write a {numbytes}\r\n"), format!("cas a 1 {numbytes} 0\r\nxy")] {
                assert_eq!(parse_request(wire.as_bytes(), &unlimited), fatal(), "{wire:?}");
            }
            let reply = format!("CONTENTS 1 {numbytes} 0\r\n");
            assert!(
                matches!(parse_reply(reply.as_bytes(), usize::MAX), ParsedReply::Invalid(m) if m.contains("over the limit")),
                "{reply:?}"
            );
        }
        assert_eq!(parse_request(b"write a 18446744073709551614\r\n", &unlimited), fatal());
        // Sizes whose sum fits are still just waiting for their bytes.
        let fits = format!("write a {}\r\n", usize::MAX - 100);
        assert_eq!(parse_request(fits.as_bytes(), &unlimited), Parsed::Incomplete);
        let fits = format!("CONTENTS 1 {} 0\r\n", usize::MAX - 100);
        assert_eq!(parse_reply(fits.as_bytes(), usize::MAX), ParsedReply::Incomplete);
        // Every limit near usize::MAX and every numbytes near it: no panic,
        // and a request is never accepted with bytes it was not given.
        for limit in (0..64).map(|d| usize::MAX - d) {
            let limits = Limits {
                max_content_bytes: limit,
                ..Limits::default()
            };
            for numbytes in (0..64).map(|d| max - d) {
                let wire = format!("write a {numbytes} 0\r\nabc\r\n");
                assert!(
                    matches!(
                        parse_request(wire.as_bytes(), &limits),
                        Parsed::Incomplete | Parsed::Error { close: true, .. }
                    ),
                    "{wire:?} under {limit}"
                );
                let reply = format!("CONTENTS 1 {numbytes} 0\r\nabc\r\n");
                assert!(matches!(
                    parse_reply(reply.as_bytes(), limit),
                    ParsedReply::Incomplete | ParsedReply::Invalid(_)
                ));
            }
        }
    }

    #[test]
    fn request_len_is_known_once_a_write_line_is_in() {
        let limits = Limits::default();
        let wire = b"cas a 7 3 0\r\nabc\r\nread a\r\n";
        for cut in 0..wire.len() {
            let want = (cut >= 13).then_some(18);
            assert_eq!(request_len(&wire[..cut], &limits), want, "cut at {cut}");
        }
        assert_eq!(request_len(b"write a 1048576\r\n", &limits), Some(17 + (1 << 20) + 2));
        for unknown in [
            &b"read a\r\n"[..],
            b"write a 2000000\r\n",
            b"write a x\r\n",
            b"write a\r\n",
            b"bad\r\n",
        ] {
            assert_eq!(
                request_len(unknown, &limits),
                None,
                "{:?}",
                String::from_utf8_lossy(unknown)
            );
        }
        let unlimited = Limits {
            max_content_bytes: usize::MAX,
            ..limits
        };
        assert_eq!(
            request_len(format!("write a {}\r\n", usize::MAX).as_bytes(), &unlimited),
            None
        );
    }

    #[test]
    fn vertical_tab_separates_fields_like_other_whitespace() {
        assert!(is_whitespace(0x0B) && is_whitespace(b' ') && is_whitespace(0x0C) && !is_whitespace(b'a'));
        assert_eq!(
            parse(b"write\x0bvt\x0b3\x0b0\r\nabc\r\n"),
            Parsed::Request(
                Request::Write {
                    name: b"vt".to_vec(),
                    content: b"abc".to_vec(),
                    exptime_s: 0
                },
                19
            )
        );
        assert_eq!(
            parse(b"delete vt\x0b\r\n"),
            Parsed::Request(Request::Delete { name: b"vt".to_vec() }, 12)
        );
        // Two fields after `read`, not one name holding a vertical tab.
        assert_eq!(parse(b"read a\x0bb\r\n"), skipped(10));
    }

    /// The client's check and the server's parser agree on every name: a
    /// name passes `check_name` iff `read <name>` parses to a read of it.
    #[test]
    fn names_are_checked_with_the_parsers_rule() {
        let long = vec![b'n'; 251];
        let names: [&[u8]; 15] = [
            b"a",
            b"a.txt",
            b"\x00\x01",
            "caf\u{e9}".as_bytes(),
            &long[..250],
            &long,
            b"",
            b"x\r\ndelete y",
            b"a 5",
            b"a\tb",
            b"a\x0bb",
            b"a\x0cb",
            b"a\rb",
            b"a\n",
            b" a",
        ];
        for name in names {
            let mut wire = b"read ".to_vec();
            wire.extend_from_slice(name);
            wire.extend_from_slice(b"\r\n");
            let parsed_as_is = matches!(parse(&wire), Parsed::Request(Request::Read { name: n }, _) if n == name);
            let checked = check_name(name, Limits::default().max_filename_bytes);
            assert_eq!(
                checked.is_ok(),
                parsed_as_is,
                "{:?}: {checked:?}",
                String::from_utf8_lossy(name)
            );
        }
        assert_eq!(check_name(b"", 250), Err(NameError::Empty));
        assert_eq!(check_name(&long, 250), Err(NameError::TooLong { len: 251, max: 250 }));
        let smuggler = Request::Read {
            name: b"x\r\ndelete y".to_vec(),
        };
        assert_eq!(smuggler.validate(), Err(NameError::Whitespace { at: 1 }));
        let desync = Request::Write {
            name: b"a 5".to_vec(),
            content: b"hello".to_vec(),
            exptime_s: 0,
        };
        let err = desync.validate().unwrap_err();
        assert_eq!(err, NameError::Whitespace { at: 1 });
        assert!(err.to_string().contains("whitespace"), "{err}");
    }

    #[test]
    fn only_reads_may_be_resent_after_an_unknown_outcome() {
        let name = b"f".to_vec();
        assert!(Request::Read { name: name.clone() }.is_retry_safe());
        assert!(!Request::Delete { name: name.clone() }.is_retry_safe());
        assert!(!Request::Write {
            name: name.clone(),
            content: Vec::new(),
            exptime_s: 0
        }
        .is_retry_safe());
        assert!(!Request::Cas {
            name,
            version: 1,
            content: Vec::new(),
            exptime_s: 0
        }
        .is_retry_safe());
    }

    #[test]
    fn requests_round_trip() {
        let reqs = [
            Request::Read { name: b"r".to_vec() },
            Request::Delete { name: b"d".to_vec() },
            Request::Write {
                name: b"w".to_vec(),
                content: b"\r\n\x00".to_vec(),
                exptime_s: 0,
            },
            Request::Cas {
                name: b"c".to_vec(),
                version: u64::MAX,
                content: Vec::new(),
                exptime_s: 3,
            },
        ];
        for r in reqs {
            let wire = req(r.clone());
            assert_eq!(parse(&wire), Parsed::Request(r, wire.len()));
        }
    }

    #[test]
    fn replies_round_trip_and_bad_replies_are_refused() {
        let replies = [
            Reply::Contents {
                version: 3,
                exptime_s: 2,
                content: b"a\r\nb".to_vec(),
            },
            Reply::Ok { version: 9 },
            Reply::Deleted,
            Reply::ErrVersion { current: 4 },
            Reply::FileNotFound,
            Reply::CmdErr,
            Reply::Internal,
            Reply::Redirect(None),
            Reply::Redirect(Some("127.0.0.1:8080".into())),
        ];
        for r in replies {
            let mut wire = Vec::new();
            r.encode(&mut wire);
            assert_eq!(parse_reply(&wire[..wire.len() - 1], 100), ParsedReply::Incomplete);
            assert_eq!(parse_reply(&wire, 100), ParsedReply::Reply(r, wire.len()));
        }
        for bad in [
            &b"OK x\r\n"[..],
            b"WHAT\r\n",
            b"CONTENTS 1 2 0\r\nabXY",
            b"CONTENTS 1 200 0\r\n",
            b"ERR_VERSION\r\n",
        ] {
            assert!(
                matches!(parse_reply(bad, 100), ParsedReply::Invalid(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}

//! Rendering of TritonHTTP response heads.
//!
//! Every response is a status line, headers in sorted order, and a blank
//! line; only `200 OK` carries `Content-*`, `Last-Modified` and a body. The
//! rules are fixed by the spec so tests can compare responses byte for byte.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The three statuses TritonHTTP uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    NotFound,
}

impl Status {
    /// The full status line, without CRLF.
    pub fn line(self) -> &'static str {
        match self {
            Status::Ok => "HTTP/1.1 200 OK",
            Status::BadRequest => "HTTP/1.1 400 Bad Request",
            Status::NotFound => "HTTP/1.1 404 Not Found",
        }
    }
}

/// What a `200 OK` says about its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content<'a> {
    pub length: u64,
    pub content_type: &'a str,
    /// Already formatted as an HTTP date (see [`http_date`]).
    pub last_modified: &'a str,
}

/// Appends a response head to `out`.
///
/// `close` adds `Connection: close`; a 400 always gets it because the
/// server closes after a bad request. `content` must be given exactly for
/// 200 (asserted), since only 200 has a body.
pub fn write_head(out: &mut Vec<u8>, status: Status, close: bool, date: &str, content: Option<&Content<'_>>) {
    assert_eq!(
        status == Status::Ok,
        content.is_some(),
        "only 200 OK carries content headers"
    );
    let close = close || status == Status::BadRequest;
    let mut length = itoa_buf();
    let mut headers: [(&str, &str); 5] = [("", ""); 5];
    let mut count = 0;
    let mut add = |name, value| {
        headers[count] = (name, value);
        count += 1;
    };
    // Pushed in sorted order already; the sort below keeps that a checked
    // property instead of a comment, and costs nothing for five entries.
    if close {
        add("Connection", "close");
    }
    if let Some(content) = content {
        add("Content-Length", format_u64(&mut length, content.length));
        add("Content-Type", content.content_type);
    }
    add("Date", date);
    if let Some(content) = content {
        add("Last-Modified", content.last_modified);
    }
    let headers = &mut headers[..count];
    headers.sort_unstable_by_key(|(name, _)| *name);
    out.extend_from_slice(status.line().as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers.iter() {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a complete `200 OK` with `body`; Content-Length is taken from
/// the body itself, so the two cannot disagree.
pub fn write_ok(out: &mut Vec<u8>, close: bool, date: &str, content_type: &str, last_modified: &str, body: &[u8]) {
    let content = Content {
        length: body.len() as u64,
        content_type,
        last_modified,
    };
    write_head(out, Status::Ok, close, date, Some(&content));
    out.extend_from_slice(body);
}

fn itoa_buf() -> [u8; 20] {
    [0; 20]
}

/// Decimal digits of `value` in `buf` (u64 has at most 20 digits).
fn format_u64(buf: &mut [u8; 20], mut value: u64) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[at..]).unwrap_or("0")
}

/// Formats a time as an IMF-fixdate (`Tue, 19 Oct 2021 18:12:55 GMT`).
/// Times outside 1970-9999, which the format cannot hold (httpdate panics
/// on them), are clamped: a file dated 1969 is still served.
pub fn http_date(time: SystemTime) -> String {
    /// 9999-12-31T23:59:59Z.
    const LATEST: Duration = Duration::from_secs(253_402_300_799);
    let latest = SystemTime::UNIX_EPOCH + LATEST;
    httpdate::fmt_http_date(time.clamp(SystemTime::UNIX_EPOCH, latest))
}

/// Parses an HTTP date, accepting only the IMF-fixdate form this server
/// sends (httpdate also accepts two obsolete forms; they are refused here).
pub fn parse_imf_fixdate(text: &str) -> Option<SystemTime> {
    let time = httpdate::parse_http_date(text).ok()?;
    (http_date(time) == text).then_some(time)
}

thread_local! {
    static NOW: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// The current time as an HTTP date, re-formatted at most once a second
/// per thread (the format has one-second resolution anyway).
pub fn with_date_now<R>(f: impl FnOnce(&str) -> R) -> R {
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    NOW.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != second {
            *cached = (second, http_date(now));
        }
        f(&cached.1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const DATE: &str = "Tue, 19 Oct 2021 18:12:55 GMT";

    fn head(status: Status, close: bool, content: Option<&Content<'_>>) -> String {
        let mut out = Vec::new();
        write_head(&mut out, status, close, DATE, content);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn dates_outside_the_format_are_clamped_not_a_panic() {
        let day = Duration::from_secs(86_400);
        assert_eq!(http_date(UNIX_EPOCH - day), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(
            http_date(UNIX_EPOCH + day * 365 * 9000),
            "Fri, 31 Dec 9999 23:59:59 GMT"
        );
        assert_eq!(http_date(UNIX_EPOCH + day), "Fri, 02 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn status_lines() {
        assert_eq!(Status::Ok.line(), "HTTP/1.1 200 OK");
        assert_eq!(Status::BadRequest.line(), "HTTP/1.1 400 Bad Request");
        assert_eq!(Status::NotFound.line(), "HTTP/1.1 404 Not Found");
    }

    #[test]
    fn ok_has_sorted_content_headers() {
        let content = Content {
            length: 1234,
            content_type: "text/html; charset=utf-8",
            last_modified: "Mon, 18 Oct 2021 10:00:00 GMT",
        };
        assert_eq!(
            head(Status::Ok, false, Some(&content)),
            "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/html; charset=utf-8\r\n\
Date: Tue, 19 Oct 2021 18:12:55 GMT\r\nLast-Modified: Mon, 18 Oct 2021 10:00:00 GMT\r\n\r\n"
        );
        assert_eq!(
            head(Status::Ok, true, Some(&content)),
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1234\r\nContent-Type: text/html; charset=utf-8\r\n\
Date: Tue, 19 Oct 2021 18:12:55 GMT\r\nLast-Modified: Mon, 18 Oct 2021 10:00:00 GMT\r\n\r\n"
        );
    }

    #[test]
    fn ok_with_body_and_pipelined_responses_concatenate() {
        let mut out = Vec::new();
        write_ok(
            &mut out,
            false,
            DATE,
            "text/css",
            "Mon, 18 Oct 2021 10:00:00 GMT",
            b"a{}",
        );
        write_head(&mut out, Status::NotFound, false, DATE, None);
        write_ok(&mut out, true, DATE, "image/png", "Mon, 18 Oct 2021 10:00:00 GMT", b"");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/css\r\n\
Date: Tue, 19 Oct 2021 18:12:55 GMT\r\nLast-Modified: Mon, 18 Oct 2021 10:00:00 GMT\r\n\r\na{}\
HTTP/1.1 404 Not Found\r\nDate: Tue, 19 Oct 2021 18:12:55 GMT\r\n\r\n\
HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\nContent-Type: image/png\r\n\
Date: Tue, 19 Oct 2021 18:12:55 GMT\r\nLast-Modified: Mon, 18 Oct 2021 10:00:00 GMT\r\n\r\n"
        );
    }

    #[test]
    fn errors_have_only_date_and_maybe_close() {
        assert_eq!(
            head(Status::NotFound, false, None),
            "HTTP/1.1 404 Not Found\r\nDate: Tue, 19 Oct 2021 18:12:55 GMT\r\n\r\n"
        );
        assert_eq!(
            head(Status::NotFound, true, None),
            "HTTP/1.1 404 Not Found\r\nConnection: close\r\nDate: Tue, 19 Oct 2021 18:12:55 GMT\r\n\r\n"
        );
        // 400 always closes.
        assert_eq!(
            head(Status::BadRequest, false, None),
            "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nDate: Tue, 19 Oct 2021 18:12:55 GMT\r\n\r\n"
        );
    }

    #[test]
    #[should_panic(expected = "only 200 OK carries content headers")]
    fn content_on_an_error_is_refused() {
        let content = Content {
            length: 1,
            content_type: "x",
            last_modified: DATE,
        };
        head(Status::NotFound, false, Some(&content));
    }

    #[test]
    fn numbers_and_dates_format() {
        let mut buf = itoa_buf();
        assert_eq!(format_u64(&mut buf, 0), "0");
        assert_eq!(format_u64(&mut buf, 1048576), "1048576");
        assert_eq!(format_u64(&mut buf, u64::MAX), u64::MAX.to_string());
        let t = UNIX_EPOCH + Duration::from_secs(1_634_667_175);
        assert_eq!(http_date(t), DATE);
        assert_eq!(parse_imf_fixdate(DATE), Some(t));
        assert_eq!(parse_imf_fixdate("Tuesday, 19-Oct-21 18:12:55 GMT"), None);
        assert_eq!(parse_imf_fixdate("Wed, 19 Oct 2021 18:12:55 GMT"), None);
        assert_eq!(parse_imf_fixdate("yesterday"), None);
        let now = with_date_now(|d| d.to_owned());
        let parsed = httpdate::parse_http_date(&now).unwrap();
        let age = SystemTime::now().duration_since(parsed).unwrap_or_default();
        assert!(age < Duration::from_secs(5));
    }
}

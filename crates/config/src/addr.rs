//! `host:port` checking.
//!
//! Addresses are carried as strings (the server resolves names when it dials
//! or binds), but a typo like `127.0.0.1:70000` or `localhost7000` must be
//! caught when the config is loaded, on every node, rather than surface later
//! as a confusing connection failure on one of them. The check is syntactic:
//! no DNS lookups happen here.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest host name DNS allows (RFC 1035 §2.3.4, without the trailing dot).
const MAX_HOST_LEN: usize = 253;

/// How many characters of a bad address an error message quotes.
const QUOTE_LEN: usize = 60;

/// A parsed address reduced to what identifies a listening socket:
/// the host, lower-cased (host names are case-insensitive; IPv6 in canonical
/// form), and the port.
/// Two addresses with equal keys would collide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct AddrKey {
    host: String,
    port: u16,
}

impl AddrKey {
    /// True for `0.0.0.0` and `[::]`: addresses a server may bind but a peer
    /// cannot dial.
    pub(crate) fn is_unspecified(&self) -> bool {
        self.host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_unspecified())
            || self.host.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_unspecified())
    }
}

/// Quotes (at most [`QUOTE_LEN`] characters of) `s` for an error message,
/// escaping control characters so garbage input cannot garble the terminal.
pub(crate) fn quote(s: &str) -> String {
    if s.chars().count() <= QUOTE_LEN {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(QUOTE_LEN).collect();
        format!("{head:?}...")
    }
}

/// Checks that `s` is `host:port` as the config requires of node addresses
/// (for addresses that arrive at run time, such as a learner's).
pub fn check_host_port(s: &str) -> Result<(), String> {
    parse_host_port(s).map(|_| ())
}

/// Whether `a` and `b` name the same `host:port` once spelled alike (host
/// case, IPv6 forms); false if either is not a valid address.
pub fn same_host_port(a: &str, b: &str) -> bool {
    matches!((parse_host_port(a), parse_host_port(b)), (Ok(x), Ok(y)) if x == y)
}

/// Checks that `s` is `host:port` and returns its [`AddrKey`].
///
/// The host is a name (letters, digits, `-`, `_`, `.`), a dotted IPv4
/// address, or an IPv6 address in brackets (`[::1]:7000`). The port is
/// decimal digits with a value in 1-65535 (port 0 would mean "any port",
/// which nobody else could find). The error says what was expected.
pub(crate) fn parse_host_port(s: &str) -> Result<AddrKey, String> {
    let bad = |why: &str| Err(format!("expected host:port, got {} ({why})", quote(s)));
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((ip, after)) = rest.split_once(']') else {
            return bad("'[' without a closing ']'");
        };
        let Some(port) = after.strip_prefix(':') else {
            return bad("expected ':port' after the ']'");
        };
        let Ok(ip) = ip.parse::<Ipv6Addr>() else {
            return bad("not an IPv6 address inside the brackets");
        };
        // The canonical spelling, so "[0:0::1]" and "[::1]" are one key.
        (ip.to_string(), port)
    } else {
        let Some((host, port)) = s.rsplit_once(':') else {
            return bad("no ':port'");
        };
        if s.contains("://") {
            return bad("a bare host:port, not a URL: drop the scheme");
        }
        if host.parse::<Ipv6Addr>().is_ok() {
            return bad("an IPv6 address must be written in brackets, like [::1]:7000");
        }
        if host.is_empty() {
            return bad("the host is empty");
        }
        if host.len() > MAX_HOST_LEN {
            return bad("the host name is longer than 253 characters");
        }
        if let Some(c) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(format!(
                "expected host:port, got {} (the host contains {c:?}; host names use letters, digits, '-', '_' and '.')",
                quote(s)
            ));
        }
        if host.chars().all(|c| c.is_ascii_digit() || c == '.') && host.parse::<Ipv4Addr>().is_err() {
            return bad("not a valid IPv4 address");
        }
        (host.to_ascii_lowercase(), port)
    };
    if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
        return bad("the port must be a number from 1 to 65535");
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => bad("the port must be a number from 1 to 65535"),
        Ok(port) => Ok(AddrKey { host, port }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_host_port_ignores_spelling_only() {
        assert!(same_host_port("LOCALHOST:7001", "localhost:7001"));
        assert!(same_host_port("[0::1]:7001", "[::1]:7001"));
        assert!(!same_host_port("localhost:7001", "localhost:7002"));
        assert!(!same_host_port("localhost:7001", "127.0.0.1:7001"), "no name lookups");
        assert!(!same_host_port("bad", "bad"), "invalid addresses match nothing");
    }

    #[test]
    fn accepts_names_ipv4_and_bracketed_ipv6() {
        for ok in [
            "127.0.0.1:7000",
            "localhost:1",
            "node-1.example.com:65535",
            "[::1]:7000",
            "[fe80::1]:80",
            "a_b:9",
        ] {
            assert!(parse_host_port(ok).is_ok(), "{ok} should parse");
        }
    }

    #[test]
    fn rejects_malformed_addresses_with_a_reason() {
        let cases = [
            ("127.0.0.1", "no ':port'"),
            ("127.0.0.1:", "port must be a number"),
            ("127.0.0.1:0", "port must be a number"),
            ("127.0.0.1:65536", "port must be a number"),
            ("127.0.0.1:+80", "port must be a number"),
            ("127.0.0.1:8o", "port must be a number"),
            ("127.0.0.1:1000000", "port must be a number"),
            (":7000", "host is empty"),
            ("::1:7000", "brackets"),
            ("[::1:7000", "closing ']'"),
            ("[::1]7000", "':port' after"),
            ("[nothost]:7000", "IPv6"),
            ("300.1.1.1:7000", "IPv4"),
            ("host name:7000", "contains ' '"),
            ("http://x:7000", "not a URL"),
            ("a:b:7000", "contains ':'"),
        ];
        for (input, want) in cases {
            let err = parse_host_port(input).expect_err(input);
            assert!(err.contains(want), "{input}: {err:?} should contain {want:?}");
            assert!(err.contains("expected host:port"), "{err}");
        }
    }

    #[test]
    fn keys_ignore_host_case_and_flag_unspecified() {
        assert_eq!(
            parse_host_port("LocalHost:80").unwrap(),
            parse_host_port("localhost:80").unwrap()
        );
        assert_eq!(parse_host_port("a:080").unwrap(), parse_host_port("a:80").unwrap());
        assert_eq!(
            parse_host_port("[0:0::1]:80").unwrap(),
            parse_host_port("[::1]:80").unwrap()
        );
        assert_ne!(
            parse_host_port("[::1]:80").unwrap(),
            parse_host_port("[::2]:80").unwrap()
        );
        assert!(parse_host_port("0.0.0.0:80").unwrap().is_unspecified());
        assert!(parse_host_port("[::]:80").unwrap().is_unspecified());
        assert!(!parse_host_port("127.0.0.1:80").unwrap().is_unspecified());
    }

    #[test]
    fn quote_truncates_and_escapes() {
        let long = "x".repeat(500);
        assert!(quote(&long).len() < 80);
        assert_eq!(quote("a\u{1}"), "\"a\\u{1}\"");
    }
}

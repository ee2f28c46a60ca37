//! Human-readable sizes for the CLI (`1000`, `1mb`, `2 GB`, `1GiB`).
//!
//! Units without an `i` are decimal (k = 1000, m = 1000^2, g = 1000^3,
//! t = 1000^4), as disk vendors and the "1 GB (10,000,000 records)"
//! use them; units with an `i` (kib, mib, gib, tib) are binary (1024-based).
//! Case and spaces between number and unit do not matter; a trailing `b` is
//! optional (`1m` = `1mb`). A decimal fraction is allowed (`1.5gb`).

use crate::error::{Error, Result};

/// Parse a size such as `2 GB` into bytes.
pub fn parse_size(input: &str) -> Result<u64> {
    let bad = |reason| Error::BadSize {
        input: input.to_string(),
        reason,
    };
    let text = input.trim().to_ascii_lowercase();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(bad("expected a number, e.g. 1000, 1mb, 2 GB, 1GiB"));
    }
    let multiplier: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "m" | "mb" => 1000u64.pow(2),
        "g" | "gb" => 1000u64.pow(3),
        "t" | "tb" => 1000u64.pow(4),
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        _ => return Err(bad("unknown unit (use b, kb, mb, gb, tb, kib, mib, gib, tib)")),
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if fraction.contains('.') || (whole.is_empty() && fraction.is_empty()) {
        return Err(bad("malformed number"));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad("number too large"))?
    };
    let mut bytes = whole.checked_mul(multiplier).ok_or_else(|| bad("size too large"))?;
    if !fraction.is_empty() {
        // Exact for up to 9 fractional digits; more digits are truncated.
        let digits = &fraction[..fraction.len().min(9)];
        let scale = 10u128.pow(digits.len() as u32);
        let frac: u128 = digits.parse().map_err(|_| bad("malformed number"))?;
        let extra = u64::try_from(frac * multiplier as u128 / scale).map_err(|_| bad("size too large"))?;
        bytes = bytes.checked_add(extra).ok_or_else(|| bad("size too large"))?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_forms() {
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("1mb").unwrap(), 1_000_000);
        assert_eq!(parse_size("2 GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("4 kib").unwrap(), 4096);
        assert_eq!(parse_size("1.5gb").unwrap(), 1_500_000_000);
        assert_eq!(parse_size(" 7 ").unwrap(), 7);
        assert_eq!(parse_size("3k").unwrap(), 3000);
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "mb",
            "1 xb",
            "1.2.3",
            "-5",
            "99999999999999999999",
            "20000000tb",
            ".",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}

//! One error type for the crate, so the CLI can print a clear message for
//! every failure (bad input, I/O, network) without panicking.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while generating, checking or sorting records.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file whose size is not a whole number of 100-byte records.
    #[error("{}: size {size} bytes is not a multiple of the 100-byte record size", path.display())]
    NotWholeRecords {
        /// The offending file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// An I/O failure, with what we were doing when it happened. The cause
    /// is only the error's source, not part of its message: reporters that
    /// print the chain (anyhow's `{:#}`) would otherwise print it twice.
    #[error("{context}")]
    Io {
        /// What was being done (names the file or peer).
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A size string such as `2 GB` that could not be parsed.
    #[error("invalid size {input:?}: {reason}")]
    BadSize {
        /// The text as given.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A netsort configuration problem (YAML, server list, server id).
    #[error("netsort config: {0}")]
    Config(String),
    /// A netsort peer or protocol failure.
    #[error("netsort: {0}")]
    Net(String),
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Attach context to an `io::Result`, naming the file or peer involved.
pub(crate) trait IoContext<T> {
    /// Wrap the error with a lazily built context string.
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|source| Error::Io { context: f(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_io_error_names_its_cause_once_in_the_chain() {
        let e = Err::<(), _>(io::Error::other("disk on fire"))
            .ctx(|| "writing out".into())
            .unwrap_err();
        // The chain as anyhow's `{:#}` prints it.
        let mut chain = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            chain += &format!(": {s}");
            source = s.source();
        }
        assert_eq!(chain, "writing out: disk on fire");
    }
}

//! One module per subcommand (or family of subcommands).
pub mod http;
pub mod lincheck;
pub mod sim;
pub mod sort;
pub mod wal;

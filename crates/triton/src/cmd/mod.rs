//! One module per subcommand (or family of subcommands).
pub mod http;
pub mod sim;
pub mod sort;
pub mod wal;

//! One module per subcommand (or family of subcommands).
pub mod admin;
pub mod bench;
pub mod blockstore;
pub mod files;
pub mod http;
pub mod kv;
pub mod lincheck;
pub mod server;
pub mod sim;
pub mod sort;
pub mod surf;
pub mod up;
pub mod verify;
pub mod wal;

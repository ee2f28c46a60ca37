//! One module per subcommand (or family of subcommands).
pub mod sim;

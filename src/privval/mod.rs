//! The validator-facing side: a SecretConnection to each node, the privval messages spoken
//! inside it, and the session that answers them.

pub mod messages;
pub mod secret_connection;

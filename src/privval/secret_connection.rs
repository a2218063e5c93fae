//! SecretConnection (CometBFT p2p/conn) on tokio: handshake, framing, sealing.

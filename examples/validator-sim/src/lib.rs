//! A simulated CometBFT node, built only on tendermint-rs.

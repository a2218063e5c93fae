//! The signers a privval session can be served by: one whole key, or the threshold cluster.

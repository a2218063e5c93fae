//! Double-sign protection: the rules that decide whether a signature may be made, and the
//! durable per-chain watermark they are checked against.

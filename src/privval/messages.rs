//! The privval protocol messages of CometBFT v0.34 to v1.0, as one superset schema.

//! Canonical sign bytes: encoding requests into them and parsing them back, strictly.

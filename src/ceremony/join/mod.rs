//! Adding a cosigner (or replacing a lost host by a new id): frost's repairable scheme gives
//! the new cosigner a share of the key without any helper learning it, then a refresh of
//! every member and the new one makes all earlier shares, and what the helpers sent,
//! worthless.

pub mod enroll;
pub mod prepare;
pub mod repair;
pub mod report;
pub mod run;
mod shared;
pub mod states;
pub mod steps;

//! Share refresh: new shares of the same validator key, made by the cosigners among
//! themselves (frost's DKG-based refresh, no dealer), that make every old share useless;
//! optionally without some cosigners (removing them).
//!
//! `cosigner refresh --config FILE [--remove ID]...` runs on every remaining host, each
//! cosigner stopped, like `cosigner dkg`:
//! 1. **Ceremony** ([`steps`], driven by the ceremony [`crate::ceremony::machine`] over the
//!    cluster transport): every member deals shares of zero (round 1 broadcast and echoed,
//!    round 2 to each member alone), adds what it receives to its old share, and all members
//!    check the result with one test signature every one of them verifies under the
//!    unchanged validator key. The session binds the generation refreshed, the threshold and
//!    every member's certificate pin.
//! 2. **Stage** ([`files`]): each member writes its new share (the next key epoch, the seed
//!    escrow carried over) as `key_share.json.next`, fsynced and linked into place, and with
//!    `--remove` its config without the removed cosigners as `cosigner.toml.next`.
//! 3. **Settle** ([`settle`]): members ask each other which generation they hold, have
//!    staged or are making, and each switches (renames the staged files over the old ones)
//!    or drops its staged files by one rule that never lets one member switch while
//!    another drops. A member that crashes or times out after staging keeps both files and
//!    refuses to start until `cosigner refresh` run again settles it with the others.
//!
//! Signing pauses for the refresh (every member is stopped), so no signing can meet two
//! generations; if a cosigner of one generation does meet one of another (a member started
//! before settling, say), the epoch id in every signing request makes it refuse
//! ([`crate::threshold::epoch`]). Watermarks are not touched.

pub mod files;
pub(crate) mod linger;
pub mod prepare;
pub mod report;
pub mod run;
pub mod settle;
pub mod steps;

pub use steps::{group_key, part1, part2, shares};

const COMMAND: &str = "cosigner refresh";

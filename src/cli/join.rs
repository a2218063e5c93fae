//! `cosigner join`: on the host being added, with every member running `cosigner refresh
//! --add ID`: the new cosigner gets a share of the validator key (repaired by the members,
//! then refreshed with them), every chain's watermark, and prints the result. Run again on
//! a host whose join was interrupted after staging, it settles that join with the members.

use std::path::PathBuf;

use anyhow::Context;

use cosigner::ceremony::join::run;
use cosigner::ceremony::run::DEFAULT_TIMEOUT;

#[derive(clap::Args)]
pub struct Args {
    /// This host's cosigner.toml, as `cosigner enroll` wrote it.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Seconds to wait for every member: start `cosigner refresh --add` on every member
    /// host within this.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT.as_secs())]
    timeout: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let timeout = super::ceremony::timeout(args.timeout)?;
    let prepared = run::prepare(&args.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(run::run(prepared, timeout))?;
    print!("{report}");
    Ok(())
}

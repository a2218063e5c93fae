//! `cosigner dkg`: run on every host of a directory set made by `split-key --dkg`; the
//! cosigners make a new validator key among themselves (frost's DKG over the cluster
//! transport), check it with a test signature, write each host's share and print the key.

use std::path::PathBuf;

use anyhow::Context;

use cosigner::ceremony::machine::KeySource;
use cosigner::ceremony::run::{self, DEFAULT_TIMEOUT};
use cosigner::ceremony::CeremonyKind;
use cosigner::config::Config;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    config: PathBuf,
    /// Seconds to wait for every cosigner: start the command on every host within this.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT.as_secs())]
    timeout: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    super::start::init_tracing();
    let timeout = super::ceremony_timeout(args.timeout)?;
    let loaded = Config::load(&args.config)?;
    let prepared = run::prepare(&loaded, CeremonyKind::Dkg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(run::run(prepared, KeySource::Dkg, Vec::new(), timeout))?;
    print!("{report}");
    Ok(())
}

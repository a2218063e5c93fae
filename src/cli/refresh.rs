//! `cosigner refresh`: run on every remaining host, cosigners stopped; the cosigners make
//! new shares of the same validator key among themselves (optionally without the cosigners
//! `--remove` names, or with the joining cosigner `--add` names), switch to them together
//! and print the result. Run again on a host
//! whose refresh was interrupted, it settles that refresh with the others instead.

use std::path::PathBuf;

use anyhow::Context;

use cosigner::ceremony::refresh::run;
use cosigner::ceremony::run::DEFAULT_TIMEOUT;

#[derive(clap::Args)]
pub struct Args {
    /// This host's cosigner.toml (a threshold cosigner with one key).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// A cosigner to leave out of the new shares (repeatable): its old share becomes
    /// useless and its certificate is no longer accepted. Give the same on every host.
    #[arg(long, value_name = "ID")]
    remove: Vec<u16>,
    /// The joining cosigner to add (pinned by `cosigner add-peer`): the members repair a
    /// share for it and refresh with it; its host runs `cosigner join` meanwhile. Give the
    /// same on every member host; not together with --remove.
    #[arg(long, value_name = "ID")]
    add: Option<u16>,
    /// The threshold you expect to keep: refused if it differs (a refresh cannot change it).
    #[arg(long, value_name = "T")]
    threshold: Option<u16>,
    /// Seconds to wait for every cosigner: start the command on every host within this.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT.as_secs())]
    timeout: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let timeout = super::ceremony::timeout(args.timeout)?;
    let prepared = run::prepare(&args.config, &args.remove, args.add, args.threshold)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(run::run(prepared, timeout))?;
    print!("{report}");
    Ok(())
}

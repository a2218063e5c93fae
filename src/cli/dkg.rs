//! `cosigner dkg`: run on every host of a directory set made by `split-key --dkg`; the
//! cosigners make a new validator key among themselves (frost's DKG over the cluster
//! transport), check it with a test signature, write each host's share and print the key.

use cosigner::ceremony::machine::KeySource;
use cosigner::ceremony::CeremonyKind;

use super::ceremony::CeremonyArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    ceremony: CeremonyArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    args.ceremony
        .prepare(CeremonyKind::Dkg)?
        .run(KeySource::Dkg, Vec::new())
}

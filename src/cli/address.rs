//! `cosigner address`: the validator public key of a cosigner directory in every form an
//! operator pastes somewhere (hex address, base64, hex, and with a bech32 prefix the
//! `valcons` address and `valconspub` key), one block per key.

use std::path::PathBuf;

use cosigner::config::{Config, Mode};
use cosigner::key_forms::{check_prefix, PublicKeyForms};
use cosigner::validator_key::ValidatorKey;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Also print the bech32 forms with this account prefix (`cosmos`, `osmo`, ...).
    #[arg(long, value_name = "PREFIX")]
    bech32_prefix: Option<String>,
    /// Only this `[[key]]` of a directory with several keys.
    #[arg(long, value_name = "NAME")]
    key: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let prefix = args.bech32_prefix.as_deref();
    if let Some(prefix) = prefix {
        check_prefix(prefix)?;
    }
    let loaded = Config::load(&args.config)?;
    // The public key of each key, named as the config names it.
    let keys: Vec<(Option<String>, [u8; 32])> = match &loaded.config.mode {
        Mode::Single(single) => {
            let key = ValidatorKey::load(&loaded.resolve(&single.key_file))?;
            vec![(None, key.public_key())]
        }
        Mode::Threshold(_) | Mode::Keys(_) => loaded
            .load_key_shares()?
            .into_iter()
            .map(|(key, share)| (key.name.map(str::to_string), share.group_public_key()))
            .collect(),
    };
    let keys: Vec<_> = match &args.key {
        None => keys,
        Some(wanted) => {
            let names: Vec<String> = keys.iter().filter_map(|(n, _)| n.clone()).collect();
            let found: Vec<_> = keys
                .into_iter()
                .filter(|(name, _)| name.as_deref() == Some(wanted.as_str()))
                .collect();
            anyhow::ensure!(
                !found.is_empty(),
                "{}: no [[key]] named `{wanted}`; {}",
                loaded.path.display(),
                match names.is_empty() {
                    true => "this directory has one key and no names: leave out --key".into(),
                    false => format!("its keys are {}", names.join(", ")),
                }
            );
            found
        }
    };
    for (i, (name, public_key)) in keys.iter().enumerate() {
        let forms = PublicKeyForms::new(public_key, prefix)?;
        if i > 0 {
            println!();
        }
        if let Some(name) = name {
            println!("key:                 {name}");
        }
        print!("{forms}");
    }
    Ok(())
}

//! `cosigner init-single`: a ready directory for the single-key signer.

use std::path::{Path, PathBuf};

use cosigner::config::{ChainConfig, Config, NodeConfig, ProtocolVersion, SingleConfig, Timeouts};
use cosigner::staged_dir::StagedDir;
use cosigner::validator_key::{self, ValidatorKey};

#[derive(clap::Args)]
pub struct Args {
    /// CometBFT priv_validator_key.json or tmkms softsign key file.
    key_file: PathBuf,
    /// The directory to create (must not exist).
    #[arg(long)]
    out: PathBuf,
    /// A chain to sign for (repeatable, at least one).
    #[arg(long = "chain-id", required = true)]
    chain_ids: Vec<String>,
    /// A node's priv_validator_laddr, tcp://[NODE_ID@]HOST:PORT (repeatable).
    #[arg(long = "node", default_value = "tcp://127.0.0.1:26659")]
    nodes: Vec<String>,
    /// The privval protocol the nodes speak.
    #[arg(long, default_value = "v0.38")]
    protocol: ProtocolVersion,
}

const KEY_FILE: &str = "priv_validator_key.json";
const IDENTITY_FILE: &str = "identity.key";

pub fn run(args: Args) -> anyhow::Result<()> {
    // Read once: the bytes are what the directory keeps, and they are wiped on drop.
    let (key, key_bytes) = ValidatorKey::load_source(&args.key_file)?;
    let config = Config {
        state_dir: "state".into(),
        identity_key: IDENTITY_FILE.into(),
        chains: args
            .chain_ids
            .iter()
            .map(|id| ChainConfig {
                id: id.clone(),
                allow_fresh_state: true,
            })
            .collect(),
        nodes: args
            .nodes
            .iter()
            .map(|address| NodeConfig {
                address: address.clone(),
                protocol: args.protocol,
                allow_sign_bytes: false,
            })
            .collect(),
        single: Some(SingleConfig {
            key_file: KEY_FILE.into(),
        }),
        threshold: None,
        timeouts: Timeouts::default(),
    };
    config
        .validate()
        .map_err(|(field, problem)| anyhow::anyhow!("{field}: {problem}"))?;
    let identity = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);

    let staged = StagedDir::create(&args.out)?;
    staged.write_file(Path::new(KEY_FILE), &key_bytes)?;
    staged.write_file(
        Path::new(IDENTITY_FILE),
        validator_key::identity_key_file_contents(&identity).as_bytes(),
    )?;
    staged.create_dir(Path::new("state"))?;
    staged.write_file(
        Path::new("cosigner.toml"),
        format!(
            "# Single-key signer for validator {}. The whole key is on this host: a single\n\
             # point of failure. allow_fresh_state = true starts at height 0 when no state file\n\
             # exists: import the validator's priv_validator_state.json first if it has signed.\n\n{}",
            key.address_hex(),
            config.to_toml()
        )
        .as_bytes(),
    )?;
    let out = staged.commit()?;
    println!("wrote {}", out.display());
    println!("validator address: {}", key.address_hex());
    println!(
        "start it with: cosigner start --config {}",
        out.join("cosigner.toml").display()
    );
    println!("WARNING: single-key mode is a single point of failure; it exists for migration and as a baseline.");
    Ok(())
}

//! `cosigner init-single`: a ready directory for the single-key signer.

use std::path::{Path, PathBuf};

use cosigner::config::{ChainConfig, Config, Mode, NodeConfig, SingleConfig, Timeouts};
use cosigner::layout::{CONFIG_FILE, IDENTITY_KEY_FILE, SINGLE_KEY_FILE, STATE_DIR};
use cosigner::privval::{NodeAddress, ProtocolVersion};
use cosigner::sign_state::import::{read_state_args, write_initial_states};
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
    nodes: Vec<NodeAddress>,
    /// The privval protocol the nodes speak.
    #[arg(long, default_value = "v0.38")]
    protocol: ProtocolVersion,
    /// `CHAIN_ID=PATH` of the validator's last CometBFT priv_validator_state.json for that
    /// chain (repeatable): the signer starts from it. A chain without it starts empty.
    #[arg(long = "state", value_name = "CHAIN_ID=PATH")]
    states: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // Read once: the bytes are what the directory keeps, and they are wiped on drop.
    let (key, key_bytes) = ValidatorKey::load_source(&args.key_file)?;
    let config = Config {
        state_dir: STATE_DIR.into(),
        identity_key: IDENTITY_KEY_FILE.into(),
        chains: args
            .chain_ids
            .iter()
            .map(|id| ChainConfig {
                id: id.clone(),
                max_height_jump: None,
                key: None,
            })
            .collect(),
        nodes: args
            .nodes
            .iter()
            .map(|address| NodeConfig {
                address: address.clone(),
                protocol: args.protocol,
                allow_sign_bytes: false,
                key: None,
            })
            .collect(),
        mode: Mode::Single(SingleConfig {
            key_file: SINGLE_KEY_FILE.into(),
        }),
        timeouts: Timeouts::default(),
        metrics: None,
    };
    config
        .validate()
        .map_err(|(field, problem)| anyhow::anyhow!("{field}: {problem}"))?;
    let states = read_state_args(&args.states, &args.chain_ids)?;
    let identity = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);

    let staged = StagedDir::create(&args.out)?;
    staged.write_file(Path::new(SINGLE_KEY_FILE), &key_bytes)?;
    staged.write_file(
        Path::new(IDENTITY_KEY_FILE),
        validator_key::identity_key_file_contents(&identity).as_bytes(),
    )?;
    staged.create_dir(Path::new(STATE_DIR))?;
    write_initial_states(&staged.path().join(STATE_DIR), &args.chain_ids, &states)?;
    staged.write_file(
        Path::new(CONFIG_FILE),
        format!(
            "# Single-key signer for validator {}. The whole key is on this host: a single\n\
             # point of failure. Each chain's sign state is in state/<chain-id>.state, written\n\
             # with this directory; a missing state file stops the start.\n\n{}",
            key.address_hex(),
            config.to_toml()
        )
        .as_bytes(),
    )?;
    let out = staged.commit()?;
    println!("wrote {}", out.display());
    println!("validator address: {}", key.address_hex());
    for chain in &args.chain_ids {
        match states.iter().find(|(c, _)| c == chain) {
            Some((_, state)) => println!(
                "sign state of `{chain}`: {}",
                cosigner::sign_state::import::describe(state)
            ),
            None => println!(
                "sign state of `{chain}`: empty. If this key has signed on it, import its last \
                 state before starting: cosigner state import priv_validator_state.json --config \
                 {} --chain-id {chain}",
                out.join(CONFIG_FILE).display()
            ),
        }
    }
    println!(
        "start it with: cosigner start --config {}",
        out.join(CONFIG_FILE).display()
    );
    println!("WARNING: single-key mode is a single point of failure; it exists for migration and as a baseline.");
    Ok(())
}

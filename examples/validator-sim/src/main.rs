//! Command line of the simulated CometBFT node: parse options, bind, report the port, run,
//! print the report, exit 0 only if nothing failed.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use base64::Engine as _;
use clap::Parser;
use validator_sim::{ChainOrder, Protocol, SimConfig};

#[derive(Parser, Debug)]
#[command(
    name = "validator-sim",
    about = "A simulated CometBFT node for testing remote signers"
)]
struct Args {
    /// Address to listen on for the signer (priv_validator_laddr): `HOST:PORT` (port 0 picks
    /// one) or `unix:///PATH` (a Unix socket, no SecretConnection, as CometBFT has it).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// Write the bound port to this file (atomically) once listening.
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// Privval dialect: v0.34, v0.37, v0.38 or v1.
    #[arg(long, default_value = "v0.38")]
    protocol: Protocol,
    /// Chain ID to drive (repeatable).
    #[arg(long = "chain-id", required_unless_present = "write_validator_key")]
    chain_ids: Vec<String>,
    /// Drive the chains one after the other instead of interleaving heights.
    #[arg(long)]
    sequential: bool,
    /// Heights per chain (unbounded if only --duration is given).
    #[arg(long)]
    heights: Option<u64>,
    #[arg(long, default_value_t = 1)]
    start_height: i64,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// A proposal every K heights (0 = never).
    #[arg(long, default_value_t = 1)]
    proposal_every: u64,
    /// Every K heights round 0 gets nil votes and the height proceeds in round 1 (0 = never).
    #[arg(long, default_value_t = 0)]
    nil_round_every: u64,
    /// A ping after every K heights (0 = only when idle).
    #[arg(long, default_value_t = 0)]
    ping_every: u64,
    /// Milliseconds to idle after each commit (pinging like a node).
    #[arg(long, default_value_t = 0)]
    block_time_ms: u64,
    /// At the end, K conflicting same-HRS requests per chain that must be refused.
    #[arg(long, default_value_t = 0)]
    conflicts: usize,
    /// At the end, resend each chain's last request identically (must be signed).
    #[arg(long)]
    replay: bool,
    /// At the end, resend each chain's last request with a new timestamp (must be signed).
    #[arg(long)]
    timestamp_replay: bool,
    /// Expected validator public key (base64 of 32 bytes).
    #[arg(long)]
    expect_pubkey: Option<String>,
    /// Only accept this signer node ID (hex).
    #[arg(long)]
    expect_signer_id: Option<String>,
    /// Fixed node identity (hex of a 32-byte Ed25519 seed) instead of a random one.
    #[arg(long)]
    node_key_seed: Option<String>,
    /// Write the full report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Mix this into every block ID voted for: simulators with different variants ask for
    /// conflicting signatures at the same heights.
    #[arg(long, default_value = "")]
    block_variant: String,
    /// Append every verified signature here as a JSON line, to find double signs across
    /// several simulators.
    #[arg(long)]
    signatures: Option<PathBuf>,
    /// Print `height H committed CHAIN` after each height.
    #[arg(long)]
    progress: bool,
    /// Write a fresh CometBFT priv_validator_key.json here and exit (for demos and tests).
    #[arg(long, value_name = "PATH", exclusive = true)]
    write_validator_key: Option<PathBuf>,
}

fn hex32(s: &str) -> anyhow::Result<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        bail!("expected 64 hex digits");
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).context("bad hex digit")?;
    }
    Ok(out)
}

fn config(args: &Args) -> anyhow::Result<SimConfig> {
    let mut cfg = SimConfig::new(args.protocol, args.chain_ids.clone());
    cfg.chain_order = if args.sequential {
        ChainOrder::Sequential
    } else {
        ChainOrder::Interleaved
    };
    cfg.heights = args.heights;
    cfg.duration = args.duration.map(Duration::from_secs_f64);
    if cfg.heights.is_none() && cfg.duration.is_none() {
        cfg.heights = Some(10);
    }
    cfg.start_height = args.start_height;
    cfg.proposal_every = args.proposal_every;
    cfg.nil_round_every = args.nil_round_every;
    cfg.ping_every = args.ping_every;
    cfg.block_time = Duration::from_millis(args.block_time_ms);
    cfg.conflicts = args.conflicts;
    cfg.replay = args.replay;
    cfg.timestamp_replay = args.timestamp_replay;
    cfg.progress = args.progress;
    cfg.block_variant = args.block_variant.clone();
    cfg.signatures_out = args.signatures.clone();
    if let Some(pk) = &args.expect_pubkey {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(pk.trim())
            .context("--expect-pubkey is not base64")?;
        cfg.expect_pubkey = Some(
            bytes
                .try_into()
                .map_err(|_| anyhow::anyhow!("--expect-pubkey must be 32 bytes"))?,
        );
    }
    cfg.node.expect_signer_id = args.expect_signer_id.clone();
    if let Some(seed) = &args.node_key_seed {
        cfg.node.node_key_seed = Some(hex32(seed).context("--node-key-seed")?);
    }
    cfg.validate()?;
    Ok(cfg)
}

fn write_port_file(path: &PathBuf, port: u16) -> anyhow::Result<()> {
    // Written then renamed so a polling test never reads a partial number.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{port}\n"))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A fresh key in CometBFT's `priv_validator_key.json` layout, written with the tendermint
/// crate's own types, so our key-file reader is tested against an independent writer.
fn write_validator_key(path: &PathBuf) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut seed = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut seed);
    let private = tendermint::PrivateKey::from(ed25519_consensus::SigningKey::from(seed));
    let public = private.public_key();
    let json = serde_json::json!({
        "address": tendermint::account::Id::from(public),
        "pub_key": public,
        "priv_key": private,
    });
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(serde_json::to_string_pretty(&json)?.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("validator-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<bool> {
    let args = Args::parse();
    if let Some(path) = &args.write_validator_key {
        write_validator_key(path).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote a fresh validator key to {}", path.display());
        return Ok(true);
    }
    let cfg = config(&args)?;
    let listener =
        validator_sim::bind(&args.listen).with_context(|| format!("binding {}", args.listen))?;
    println!(
        "listening on {} (privval {})",
        listener.describe()?,
        cfg.protocol.name()
    );
    std::io::stdout().flush()?;
    if let Some(path) = &args.port_file {
        let validator_sim::Listener::Tcp(tcp) = &listener else {
            bail!("--port-file is for a TCP --listen address");
        };
        write_port_file(path, tcp.local_addr()?.port())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let report = validator_sim::run(listener, &cfg)?;
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    print!("{}", report.render());
    std::io::stdout().flush()?;
    Ok(report.success())
}

//! Command-line parsing and dispatch. Each subcommand lives in its own module.

mod add_key;
mod add_peer;
mod address;
mod ceremony;
mod check_config;
mod dkg;
mod enroll;
mod import_horcrux;
mod init_single;
mod join;
mod load;
mod logging;
mod refresh;
mod start;
mod state;
mod status;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cosigner",
    version,
    about = "Threshold remote signer for CometBFT validators"
)]
pub struct Cli {
    /// How `start`, `dkg` and `import-horcrux` log to stderr: `text`, or `json` (one object
    /// per line) for a log shipper.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    log_format: logging::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run this cosigner: dial the configured nodes and sign.
    Start {
        #[arg(long)]
        config: PathBuf,
    },
    /// Load a cosigner directory as `start` does (config, keys and shares, TLS identity, every
    /// chain's sign state, secret file modes, free ports) without starting; print a summary.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Write a single-key signer directory (the whole key on one host: no fault tolerance).
    InitSingle(init_single::Args),
    /// Add another validator key's share to this cosigner directory, from the directory
    /// split-key wrote for this host when it split that key. Run with the cosigner stopped.
    AddKey(add_key::Args),
    /// Pin the certificate of a cosigner being added to this cluster (a joining entry, not a
    /// member yet), and print this host's `--peer` line for the new host. Run on every
    /// member host; `--cancel ID` removes the entry.
    AddPeer(add_peer::Args),
    /// Print the validator public key in every form: address, base64, hex and, with
    /// --bech32-prefix, the valcons address and valconspub key.
    Address(address::Args),
    /// Ask the cosigner running for this config how it is (quorum, peers, nodes, watermarks,
    /// storage), over its admin socket. Exits non-zero without a quorum or if none runs.
    Status(status::Args),
    /// Show or import the double-sign state.
    #[command(subcommand)]
    State(state::Command),
    /// Make a new validator key with the other cosigners (distributed key generation), in a
    /// directory from `split-key --dkg`. Run it on every host at about the same time.
    Dkg(dkg::Args),
    /// Turn this host's Horcrux shard and sign state into this cosigner's share and
    /// watermark, with the other hosts, in a directory from `split-key --horcrux-pubkey`.
    /// Run it on every Horcrux host (Horcrux stopped) at about the same time.
    ImportHorcrux(import_horcrux::Args),
    /// Make new shares of the same validator key with the other cosigners, so that every
    /// old share (and any copy of one) becomes useless; `--remove ID` leaves a cosigner out.
    /// Run it on every remaining host (cosigners stopped) at about the same time.
    Refresh(refresh::Args),
    /// On a host being added to the cluster: write its cosigner directory (its own
    /// identities, no key share yet) from a copy of a member's cosigner.toml and one --peer
    /// per member; prints the `cosigner add-peer` line every member's operator runs.
    Enroll(enroll::Args),
    /// On a host `cosigner enroll` prepared: join the cluster, with every member running
    /// `cosigner refresh --add ID` at about the same time (members stopped). Run again after
    /// an interruption, it settles the join with the members.
    Join(join::Args),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    if matches!(
        cli.command,
        Command::Start { .. }
            | Command::Dkg(_)
            | Command::ImportHorcrux(_)
            | Command::Refresh(_)
            | Command::Join(_)
    ) {
        logging::init_tracing(cli.log_format);
    }
    match cli.command {
        Command::Start { config } => start::run(&config),
        Command::CheckConfig { config } => check_config::run(&config),
        Command::InitSingle(args) => init_single::run(args),
        Command::AddKey(args) => add_key::run(args),
        Command::AddPeer(args) => add_peer::run(args),
        Command::Address(args) => address::run(args),
        Command::State(cmd) => state::run(cmd),
        Command::Status(args) => status::run(args),
        Command::Dkg(args) => dkg::run(args),
        Command::ImportHorcrux(args) => import_horcrux::run(args),
        Command::Refresh(args) => refresh::run(args),
        Command::Enroll(args) => enroll::run(args),
        Command::Join(args) => join::run(args),
    }
}

//! `cosigner add-peer`: pins the certificate of a cosigner being added to the cluster, as a
//! `[[threshold.joining]]` entry, and prints this host's own `--peer` line for the new
//! host's operator. Run by each existing member's operator; the cosigner may be stopped or
//! running (only the file changes; a running cosigner reads it at its next start). `--cancel
//! ID` removes the entry again.
//!
//! Nothing is half-written: everything is checked first, then `cosigner.toml` is replaced at
//! once (temporary file beside it, fsync, rename, fsync of the directory), keeping its mode.

use std::path::PathBuf;

use anyhow::Context;

use cosigner::cluster::tls::TlsIdentity;
use cosigner::config::{
    add_joining, cancel_joining, edited_text, normalize_fingerprint, Config, PeerConfig,
};
use cosigner::host_port::split_host_port;
use cosigner::staged_dir::replace_file;

/// A config file is a few KiB; anything much larger is not one.
const MAX_CONFIG: u64 = 1 << 20;

#[derive(clap::Args)]
pub struct Args {
    /// This host's cosigner.toml (a threshold cosigner with one key).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The new cosigner's id: one no member has (the same on every host).
    #[arg(long, value_name = "ID", required_unless_present = "cancel")]
    id: Option<u16>,
    /// `HOST:PORT` where the new cosigner listens for its peers.
    #[arg(long, value_name = "HOST:PORT", required_unless_present = "cancel")]
    address: Option<String>,
    /// The SHA-256 of the new cosigner's certificate, as `cosigner enroll` printed it on its
    /// host; check it with that host's operator over a channel you trust.
    #[arg(long, value_name = "HEX", required_unless_present = "cancel")]
    cert_sha256: Option<String>,
    /// This host's address as the new host should dial it, when `listen` is not it (e.g.
    /// `0.0.0.0:7101`); only for the printed `--peer` line.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "cancel")]
    self_address: Option<String>,
    /// Remove the joining entry of this cosigner instead (a join abandoned or mistyped).
    #[arg(long, value_name = "ID", conflicts_with_all = ["id", "address", "cert_sha256"])]
    cancel: Option<u16>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let loaded = Config::load(&args.config)?;
    let path = &loaded.path;
    let len = std::fs::metadata(path)
        .with_context(|| format!("{}: cannot read", path.display()))?
        .len();
    anyhow::ensure!(
        len <= MAX_CONFIG,
        "{}: {len} bytes is not a cosigner.toml",
        path.display()
    );
    let original = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    if let Some(id) = args.cancel {
        let edited = cancel_joining(&loaded.config, id)
            .with_context(|| format!("{}: cannot cancel cosigner {id}", path.display()))?;
        replace_file(path, edited_text(&original, &edited).as_bytes())?;
        println!(
            "{}: cosigner {id} is no longer joining; its certificate is not accepted.",
            path.display()
        );
        return Ok(());
    }
    let (Some(id), Some(address), Some(fingerprint)) = (args.id, args.address, args.cert_sha256)
    else {
        anyhow::bail!("give --id, --address and --cert-sha256, or --cancel ID");
    };
    let refuse = |e: cosigner::config::JoiningError| {
        anyhow::anyhow!("{}: cannot add cosigner {id}: {e}", path.display())
    };
    let cert_sha256 = normalize_fingerprint(&fingerprint).map_err(refuse)?;
    let edited = add_joining(
        &loaded.config,
        PeerConfig {
            id,
            address,
            cert_sha256: cert_sha256.clone(),
        },
    )
    .map_err(refuse)?;
    let Some(th) = loaded.config.threshold() else {
        anyhow::bail!("{}: not a one-key threshold cosigner", path.display());
    };
    let own = TlsIdentity::load(&loaded.tls_paths(th))
        .context("this cosigner's cluster TLS identity")?
        .fingerprint()
        .unwrap_or_default();
    anyhow::ensure!(
        own != cert_sha256,
        "{}: cannot add cosigner {id}: that certificate is this cosigner's own; the new host \
         needs a certificate of its own (run `cosigner enroll` on it)",
        path.display()
    );
    let self_address = match args.self_address {
        Some(a) => {
            split_host_port(&a).map_err(|e| anyhow::anyhow!("--self-address: {e}"))?;
            a
        }
        None if th.listen.ip().is_unspecified() => anyhow::bail!(
            "this cosigner listens on {}, which is no address the new host can dial: give \
             --self-address HOST:PORT (this host's address as its peers reach it)",
            th.listen
        ),
        None => th.listen.to_string(),
    };
    replace_file(path, edited_text(&original, &edited).as_bytes())?;
    println!(
        "{}: cosigner {id} is joining (certificate sha256 {cert_sha256}); it is not a member \
         and nothing is signed with it until `cosigner refresh --add {id}` has run on every \
         member host.",
        path.display()
    );
    println!("Give the new host's operator this line for `cosigner enroll` (this host's id, address and certificate):");
    println!("--peer {}={self_address}={own}", th.id);
    Ok(())
}

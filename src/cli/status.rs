//! `cosigner status`: asks the cosigner running for a config, over its admin socket, how it
//! is: quorum, peers, nodes, watermarks, storage, version. Exit 0 only with a quorum.

use std::fmt::Write as _;
use std::path::PathBuf;

use cosigner::config::Config;
use cosigner::layout::ADMIN_SOCKET;
use cosigner::status::{socket, Status};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    config: PathBuf,
    /// Print the status as JSON (the same document on success and without a quorum).
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let loaded = Config::load(&args.config)?;
    let path = loaded.resolve(&loaded.config.state_dir).join(ADMIN_SOCKET);
    let status = socket::query(&path).map_err(|e| match e {
        socket::AdminError::NotRunning { .. } => anyhow::anyhow!(
            "{e}. Is it started (`cosigner start --config {}`)?",
            cosigner::shell::quote(&args.config)
        ),
        other => other.into(),
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", render(&status));
    }
    if !status.quorum {
        let keys: Vec<String> = status
            .keys
            .iter()
            .filter(|k| !k.quorum)
            .map(|k| match (&k.name, &k.storage_error) {
                (_, Some(why)) => format!("{}: sign state not writable: {why}", key_name(&k.name)),
                (name, None) => format!(
                    "{}: fewer than {} cosigners reachable (or catching up)",
                    key_name(name),
                    k.threshold.unwrap_or(1)
                ),
            })
            .collect();
        anyhow::bail!(
            "no quorum: this cosigner cannot sign now ({})",
            keys.join("; ")
        );
    }
    Ok(())
}

fn key_name(name: &Option<String>) -> String {
    match name {
        Some(name) => format!("key `{name}`"),
        None => "the key".to_string(),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn seconds_ago(s: Option<f64>) -> String {
    s.map_or("never".to_string(), |s| format!("{s:.1} s ago"))
}

/// The status as an operator reads it.
fn render(status: &Status) -> String {
    let mut out = String::new();
    let several = status.keys.len() > 1;
    let _ = writeln!(out, "cosigner {}", status.version);
    let _ = writeln!(out, "quorum: {}", yes_no(status.quorum));
    let _ = writeln!(
        out,
        "storage: {}",
        if status.storage_ok { "ok" } else { "FAILED" }
    );
    for key in &status.keys {
        let name = key
            .name
            .as_deref()
            .map(|n| format!(" {n}"))
            .unwrap_or_default();
        let kind = key
            .threshold
            .map_or("single key".to_string(), |t| format!("threshold {t}"));
        let _ = writeln!(out, "key{name}: {kind}, quorum {}", yes_no(key.quorum));
        if let Some(why) = &key.storage_error {
            let _ = writeln!(out, "  sign state not writable: {why}");
        }
    }
    if !status.peers.is_empty() {
        let _ = writeln!(out, "peers:");
        for p in &status.peers {
            let key = match (several, &p.key) {
                (true, Some(k)) => format!("{k}/"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  {key}{} {}: {}, round trip {}, last share {}, {} commitments",
                p.id,
                p.address,
                if p.connected {
                    "connected"
                } else {
                    "NOT CONNECTED"
                },
                p.rtt_ms.map_or("-".to_string(), |ms| format!("{ms:.2} ms")),
                seconds_ago(p.last_share_seconds_ago),
                p.commitments
            );
        }
    }
    let _ = writeln!(out, "nodes:");
    for n in &status.nodes {
        let state = if n.connected {
            "serving"
        } else {
            "not serving (queued, dialing, or giving way)"
        };
        let _ = writeln!(out, "  {}: {state}", n.address);
    }
    let _ = writeln!(out, "chains:");
    for c in &status.chains {
        let _ = writeln!(
            out,
            "  {}: watermark height {}, round {}, step {}; last signature {}",
            c.chain_id,
            c.height,
            c.round,
            c.step,
            seconds_ago(c.last_signature_seconds_ago)
        );
    }
    out
}

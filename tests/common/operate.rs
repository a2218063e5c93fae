//! What an operator reads from a running cosigner: its Prometheus `/metrics` (served once a
//! `[metrics]` section is added to its config) and `cosigner status --json`, each read with
//! a deadline, parsed into samples or the typed [`Status`].
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cosigner::status::Status;

use super::{bins, free_tcp_port, BoundedOutput};

/// How long a change (a peer gone, the endpoint up, a watermark) may take to show.
pub const SHOWS_WITHIN: Duration = Duration::from_secs(15);

/// Adds a `[metrics]` section at a free loopback port to the config at `config`; the
/// address it will serve at.
pub fn enable_metrics(config: &Path) -> String {
    let listen = format!("127.0.0.1:{}", free_tcp_port());
    let mut text = std::fs::read_to_string(config).unwrap();
    text.push_str(&format!("\n[metrics]\nlisten = \"{listen}\"\n"));
    std::fs::write(config, text).unwrap();
    listen
}

/// `GET /metrics` at `addr`: the body, or why not.
pub fn scrape(addr: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
        .map_err(|e| format!("{addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {response:?}"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("not 200: {head}"));
    }
    Ok(body.to_string())
}

/// Waits (at most [`SHOWS_WITHIN`]) for the endpoint at `addr` to answer.
pub fn scrape_when_up(addr: &str) -> String {
    let deadline = Instant::now() + SHOWS_WITHIN;
    loop {
        match scrape(addr) {
            Ok(body) => return body,
            Err(e) if Instant::now() > deadline => panic!("no metrics at {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// One sample line of the exposition format.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("name and value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|kv| !kv.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').expect("label");
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().unwrap_or(f64::NAN),
            }
        })
        .collect()
}

/// The value of the sample `name` whose labels include `labels`, if there is one.
pub fn find_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text)
        .into_iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// The value of the sample `name` whose labels include `labels`; fails the test if none.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    find_value(text, name, labels)
        .unwrap_or_else(|| panic!("no sample {name} {labels:?} in:\n{text}"))
}

/// `cosigner status --config CONFIG --json`: whether it exited 0, the status printed, and
/// its stderr.
pub fn status(config: &Path) -> (bool, Option<Status>, String) {
    let out = Command::new(&bins().cosigner)
        .args(["status", "--json", "--config"])
        .arg(config)
        .output_bounded()
        .expect("cosigner status runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let parsed = serde_json::from_str(&stdout).ok();
    (
        out.status.success(),
        parsed,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Polls `cosigner status` until `check` holds (at most [`SHOWS_WITHIN`]); the status that
/// satisfied it.
pub fn status_until(config: &Path, what: &str, check: impl Fn(bool, &Status) -> bool) -> Status {
    let deadline = Instant::now() + SHOWS_WITHIN;
    loop {
        let (ok, parsed, stderr) = status(config);
        if let Some(s) = parsed.as_ref().filter(|s| check(ok, s)) {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "status never showed {what} within {SHOWS_WITHIN:?}; last: {parsed:?} {stderr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

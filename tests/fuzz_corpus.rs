//! The committed fuzz corpus (`fuzz/corpus/<target>/`) replayed through the same property
//! checks the fuzz targets run (`cosigner::testkit::fuzz`): every file, seeds and findings
//! alike, must pass; every generated seed must still be committed as generated and amount to
//! what it was made for, so that the seeds keep reaching the code they were made to reach.
//!
//! After a change of a format (a frame version, a state layout), regenerate the seeds with
//! `COSIGNER_WRITE_CORPUS=1 cargo test --test fuzz_corpus`.

#[path = "fuzz_corpus/seeds.rs"]
mod seeds;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use cosigner::privval::messages::RequestKind;
use cosigner::testkit::fuzz::{
    cluster_participant, privval_stream, sign_bytes, state_file, SignBytesOutcome, StateOutcome,
};
use cosigner::threshold::messages::RefusalKind;
use seeds::{Expect, Seed};

const TARGETS: [&str; 4] = [
    "privval_decode",
    "sign_bytes",
    "cluster_participant",
    "state_file",
];

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Every file of a target's corpus, by name.
fn corpus(target: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = corpus_dir(target);
    let files: BTreeMap<String, Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

fn seeds_of(target: &str) -> Vec<Seed> {
    seeds::all()
        .into_iter()
        .filter(|s| s.target == target)
        .collect()
}

#[test]
fn generated_seeds_are_committed_as_generated() {
    let write = std::env::var_os("COSIGNER_WRITE_CORPUS").is_some();
    let all = seeds::all();
    let mut names = HashSet::new();
    for seed in &all {
        assert!(TARGETS.contains(&seed.target), "{}", seed.target);
        assert!(
            names.insert((seed.target, seed.name.clone())),
            "{}",
            seed.name
        );
        let path = corpus_dir(seed.target).join(&seed.name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &seed.bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(
            committed == seed.bytes,
            "{} differs from its generator: regenerate with \
             COSIGNER_WRITE_CORPUS=1 cargo test --test fuzz_corpus",
            path.display()
        );
    }
    let total: usize = all.iter().map(|s| s.bytes.len()).sum();
    assert!(total < 64 * 1024, "the seeds grew to {total} bytes");
}

#[test]
fn privval_corpus_replays() {
    let mut kinds = HashSet::new();
    for bytes in corpus("privval_decode").values() {
        kinds.extend(privval_stream(bytes).requests);
    }
    for seed in seeds_of("privval_decode") {
        let got = privval_stream(&seed.bytes);
        let Expect::Privval {
            requests,
            sign_docs,
            canonical,
            end,
        } = seed.expect
        else {
            unreachable!()
        };
        assert_eq!(
            (got.requests, got.sign_docs, got.canonical, got.end),
            (requests, sign_docs, canonical, end),
            "{}",
            seed.name
        );
    }
    use RequestKind::*;
    for kind in [PubKey, SignVote, SignProposal, Ping, SignBytes] {
        assert!(kinds.contains(&kind), "no {kind} in the corpus");
    }
}

#[test]
fn sign_bytes_corpus_replays() {
    let mut outcomes = HashSet::new();
    for bytes in corpus("sign_bytes").values() {
        outcomes.insert(sign_bytes(bytes));
    }
    for seed in seeds_of("sign_bytes") {
        let Expect::SignBytes(want) = seed.expect else {
            unreachable!()
        };
        assert_eq!(sign_bytes(&seed.bytes), want, "{}", seed.name);
    }
    use SignBytesOutcome::*;
    assert_eq!(
        outcomes,
        HashSet::from([Vote, Proposal, Extension, Rejected])
    );
}

#[test]
fn cluster_corpus_replays_through_a_real_participant() {
    let mut released = 0;
    let mut with_extension = 0;
    let mut refusals = HashSet::new();
    for bytes in corpus("cluster_participant").values() {
        let got = cluster_participant(bytes);
        released += got.released;
        with_extension += got.released_with_extension;
        refusals.extend(got.refusals.iter().map(|k| format!("{k:?}")));
    }
    for seed in seeds_of("cluster_participant") {
        let Expect::Cluster(want) = seed.expect else {
            unreachable!()
        };
        assert_eq!(cluster_participant(&seed.bytes), want, "{}", seed.name);
    }
    assert!(
        released > 10 && with_extension > 0,
        "{released} {with_extension}"
    );
    use RefusalKind::*;
    for kind in [BadRequest, UnknownCommitment, SignBytes, Watermark] {
        assert!(
            refusals.contains(&format!("{kind:?}")),
            "no {kind:?} refusal"
        );
    }
}

#[test]
fn state_file_corpus_replays() {
    let mut outcomes = HashSet::new();
    for bytes in corpus("state_file").values() {
        outcomes.insert(state_file(bytes));
    }
    for seed in seeds_of("state_file") {
        let Expect::State(want) = seed.expect else {
            unreachable!()
        };
        assert_eq!(state_file(&seed.bytes), want, "{}", seed.name);
    }
    assert_eq!(
        outcomes,
        HashSet::from([StateOutcome::Loaded, StateOutcome::Refused])
    );
}

//! The FROST signing path as the cosigner calls it, without any network: a participant
//! issuing commitments, a participant deciding on a sign request (`handle_sign`, with an
//! in-memory watermark and with the real durable one), the coordinator aggregating shares,
//! and one whole t-of-n signing end to end in memory.
//!
//! Each iteration uses fresh commitments (a nonce serves once), produced in untimed setup.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use cosigner::consensus::SignDoc;
use cosigner::privval::messages::{
    self, SignedMsgType, Vote, WireBlockId as BlockId, WirePartSetHeader as PartSetHeader,
};
use cosigner::privval::sign_doc;
use cosigner::sign_state::{ChainSignState, Recorded, SignState, StateFile};
use cosigner::threshold::coordinator::{build_request, CommitmentInventory, SigningSession};
use cosigner::threshold::messages::{peer_of, PeerId, Refusal, RefusalKind, SignRequest};
use cosigner::threshold::participant::{Participant, Watermark};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use frost_ed25519::keys::{generate_with_dealer, IdentifierList, KeyPackage, PublicKeyPackage};
use rand_core::OsRng;
use sha2::{Digest, Sha256};

const CHAIN: &str = "bench-chain";
const COORDINATOR: PeerId = 1;

/// Authorizes everything; what `handle_sign` costs without storage.
struct MemoryWatermark;

impl Watermark for MemoryWatermark {
    fn authorize(&self, doc: &SignDoc) -> Result<Recorded, Refusal> {
        Ok(Recorded::assume_recorded(doc))
    }
}

/// The real watermark (two checksummed slots, `fdatasync` per advance) in a temp dir.
struct DurableWatermark(ChainSignState);

impl Watermark for DurableWatermark {
    fn authorize(&self, doc: &SignDoc) -> Result<Recorded, Refusal> {
        self.0
            .authorize(doc)
            .map(|(_, recorded)| recorded)
            .map_err(|e| Refusal::new(RefusalKind::Storage, e.to_string()))
    }
}

fn group(t: u16, n: u16) -> (Vec<Participant>, PublicKeyPackage) {
    let (shares, pkp) = generate_with_dealer(n, t, IdentifierList::Default, OsRng).unwrap();
    let participants = shares
        .into_iter()
        .map(|(id, share)| {
            let kp = KeyPackage::try_from(share).unwrap();
            Participant::new(peer_of(&id).unwrap(), kp, pkp.clone(), t).unwrap()
        })
        .collect();
    (participants, pkp)
}

/// Canonical sign bytes of a non-nil precommit at `height`, as a node would send.
fn precommit(height: i64) -> Vec<u8> {
    let vote = Vote {
        r#type: SignedMsgType::Precommit as i32,
        height,
        round: 0,
        block_id: Some(BlockId {
            hash: Sha256::digest(height.to_be_bytes()).to_vec(),
            part_set_header: Some(PartSetHeader {
                total: 1,
                hash: Sha256::digest(b"parts").to_vec(),
            }),
        }),
        timestamp: Some(messages::Timestamp {
            seconds: 1_700_000_000 + height,
            nanos: 0,
        }),
        ..Default::default()
    };
    sign_doc::vote_sign_doc(CHAIN, &vote).unwrap().sign_bytes
}

/// The coordinator's request to the first `t` cosigners, with fresh commitments.
fn request(group: &[Participant], t: u16, height: i64) -> (SignRequest, SigningSession) {
    let mut inventory = CommitmentInventory::default();
    let signers: Vec<PeerId> = (1..=t).collect();
    for s in &signers {
        let p = &group[usize::from(*s) - 1];
        let c = p.handle_commitments(COORDINATOR, 1, &mut OsRng).unwrap();
        inventory.add(*s, &c).unwrap();
    }
    build_request(&mut inventory, &signers, precommit(height), None).unwrap()
}

const SIZES: [(u16, u16); 3] = [(2, 3), (3, 5), (5, 7)];

fn bench_commitments(c: &mut Criterion) {
    let (group, _) = group(2, 3);
    c.bench_function("participant/handle_commitments(1)", |b| {
        b.iter(|| {
            let issued = group[1].handle_commitments(COORDINATOR, 1, &mut OsRng);
            // Keep the pool from filling: the nonce is dropped by the next issue's eviction.
            std::hint::black_box(issued)
        })
    });
}

fn bench_handle_sign(c: &mut Criterion) {
    let mut g = c.benchmark_group("participant/handle_sign");
    for (t, n) in SIZES {
        let (group, _) = group(t, n);
        let height = AtomicI64::new(1);
        g.bench_function(
            BenchmarkId::new("memory_watermark", format!("{t}-of-{n}")),
            |b| {
                b.iter_batched(
                    || request(&group, t, height.fetch_add(1, Ordering::Relaxed)).0,
                    |req| {
                        group[1]
                            .handle_sign(COORDINATOR, &req, &MemoryWatermark, &mut OsRng)
                            .unwrap()
                    },
                    BatchSize::SmallInput,
                )
            },
        );
    }
    // The same with the durable watermark: the difference is one fdatasync on this disk.
    let dir = tempfile::tempdir().unwrap();
    StateFile::create(dir.path(), CHAIN, &SignState::fresh()).unwrap();
    let state = ChainSignState::open(dir.path(), CHAIN).unwrap();
    let durable = DurableWatermark(state);
    let (group, _) = group(2, 3);
    let height = AtomicI64::new(1);
    g.bench_function(BenchmarkId::new("durable_watermark", "2-of-3"), |b| {
        b.iter_batched(
            || request(&group, 2, height.fetch_add(1, Ordering::Relaxed)).0,
            |req| {
                group[1]
                    .handle_sign(COORDINATOR, &req, &durable, &mut OsRng)
                    .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Aggregation as the coordinator runs it once the last share is in: the group commitment
/// precomputed while the shares travelled, then a sum and a strict verification; and frost's
/// own aggregation (the fallback that names cheaters) for comparison.
fn bench_aggregate(c: &mut Criterion) {
    let mut g = c.benchmark_group("coordinator/aggregate");
    for (t, n) in SIZES {
        let (group, pkp) = group(t, n);
        let height = AtomicI64::new(1);
        let answered = || {
            let (req, mut session) = request(&group, t, height.fetch_add(1, Ordering::Relaxed));
            for p in 1..=t {
                let resp = group[usize::from(p) - 1]
                    .handle_sign(COORDINATOR, &req, &MemoryWatermark, &mut OsRng)
                    .unwrap();
                session.accept(p, &resp).unwrap();
            }
            session
        };
        g.bench_function(BenchmarkId::new("precompute", format!("{t}-of-{n}")), |b| {
            b.iter_batched(
                answered,
                |session| session.precompute(&pkp).unwrap(),
                BatchSize::SmallInput,
            )
        });
        g.bench_function(
            BenchmarkId::new("after_precompute", format!("{t}-of-{n}")),
            |b| {
                b.iter_batched(
                    || {
                        let session = answered();
                        let pre = session.precompute(&pkp).unwrap();
                        (session, pre)
                    },
                    |(session, pre)| session.finish(&pkp, Some(&pre)).unwrap(),
                    BatchSize::SmallInput,
                )
            },
        );
        g.bench_function(
            BenchmarkId::new("frost_aggregate", format!("{t}-of-{n}")),
            |b| {
                b.iter_batched(
                    answered,
                    |session| session.finish(&pkp, None).unwrap(),
                    BatchSize::SmallInput,
                )
            },
        );
    }
    g.finish();
}

/// One signing as the cluster does it, all in one process: request from pre-issued
/// commitments, `t` shares (each participant also refilling the coordinator), aggregate.
fn bench_whole_signing(c: &mut Criterion) {
    let mut g = c.benchmark_group("signing_in_memory");
    for (t, n) in SIZES {
        let (group, pkp) = group(t, n);
        let signers: Vec<PeerId> = (1..=t).collect();
        let mut inventory = CommitmentInventory::default();
        for s in &signers {
            let c = group[usize::from(*s) - 1]
                .handle_commitments(COORDINATOR, 4, &mut OsRng)
                .unwrap();
            inventory.add(*s, &c).unwrap();
        }
        let mut height = 0i64;
        g.bench_function(format!("{t}-of-{n}"), |b| {
            b.iter(|| {
                height += 1;
                let (req, mut session) =
                    build_request(&mut inventory, &signers, precommit(height), None).unwrap();
                let mut refills = BTreeMap::new();
                for p in &signers {
                    let resp = group[usize::from(*p) - 1]
                        .handle_sign(COORDINATOR, &req, &MemoryWatermark, &mut OsRng)
                        .unwrap();
                    session.accept(*p, &resp).unwrap();
                    refills.insert(*p, resp.commitments);
                }
                for (p, c) in refills {
                    inventory.add(p, &c).unwrap();
                }
                let pre = session.precompute(&pkp).unwrap();
                session.finish(&pkp, Some(&pre)).unwrap()
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = bench_commitments, bench_handle_sign, bench_aggregate, bench_whole_signing
}
criterion_main!(benches);

//! The cluster frame codec (`cluster::wire`) on the messages a signing exchanges: a sign
//! request for a t-of-n signing (with and without a vote extension) and a participant's
//! answer with its refill commitments.

use std::collections::BTreeMap;
use std::time::Duration;

use cosigner::cluster::wire::{decode_body, decode_header, encode, HEADER_LEN};
use cosigner::threshold::epoch::EpochId;
use cosigner::threshold::messages::{
    ClusterRequest, ClusterResponse, Commitment, PeerId, Share, SignPart, SignRequest, SignResponse,
};
use criterion::{criterion_group, criterion_main, Criterion};
use frost_ed25519::keys::{generate_with_dealer, IdentifierList, KeyPackage};
use frost_ed25519::round1;
use rand_core::OsRng;

fn commitments(n: u16) -> Vec<Commitment> {
    let (shares, _) = generate_with_dealer(n.max(2), 2, IdentifierList::Default, OsRng).unwrap();
    shares
        .values()
        .take(usize::from(n))
        .map(|s| {
            let kp = KeyPackage::try_from(s.clone()).unwrap();
            let (_, c) = round1::commit(kp.signing_share(), &mut OsRng);
            Commitment::from_frost(&c).unwrap()
        })
        .collect()
}

fn part(cs: &[Commitment]) -> SignPart {
    SignPart {
        // A v0.38 precommit's sign bytes are about 130 bytes; the size is what matters here.
        sign_bytes: vec![0x5a; 130],
        commitments: cs
            .iter()
            .enumerate()
            .map(|(i, c)| (i as PeerId + 1, *c))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn roundtrip<T: serde::Serialize + serde::de::DeserializeOwned>(msg: &T) -> T {
    let frame = encode(msg).unwrap();
    let mut header = [0u8; HEADER_LEN];
    header.copy_from_slice(&frame[..HEADER_LEN]);
    let len = decode_header(header).unwrap();
    decode_body(&frame[HEADER_LEN..HEADER_LEN + len]).unwrap()
}

fn bench_codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("cluster_wire");
    for t in [2u16, 3, 5] {
        let cs = commitments(t);
        let plain = ClusterRequest::Sign(SignRequest {
            epoch: EpochId([0; 32]),
            vote: part(&cs),
            extension: None,
            upcoming: Default::default(),
        });
        let ext_cs = commitments(t);
        let with_ext = ClusterRequest::Sign(SignRequest {
            epoch: EpochId([0; 32]),
            vote: part(&cs),
            extension: Some(part(&ext_cs)),
            upcoming: Default::default(),
        });
        let frame = encode(&plain).unwrap();
        g.bench_function(format!("encode_sign_request/t={t}"), |b| {
            b.iter(|| encode(std::hint::black_box(&plain)).unwrap())
        });
        g.bench_function(format!("decode_sign_request/t={t}"), |b| {
            b.iter(|| {
                decode_body::<ClusterRequest>(std::hint::black_box(&frame[HEADER_LEN..])).unwrap()
            })
        });
        g.bench_function(
            format!("roundtrip_sign_request_with_extension/t={t}"),
            |b| b.iter(|| roundtrip(std::hint::black_box(&with_ext))),
        );
    }
    let refill = commitments(2);
    let response = ClusterResponse::Signed(SignResponse {
        share: Share([7; 32]),
        extension_share: Some(Share([9; 32])),
        commitments: refill,
    });
    g.bench_function("roundtrip_sign_response_with_extension", |b| {
        b.iter(|| roundtrip(std::hint::black_box(&response)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = bench_codec
}
criterion_main!(benches);

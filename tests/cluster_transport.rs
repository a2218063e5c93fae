//! The cluster transport over real loopback UDP: request/response in all directions,
//! concurrency, deadlines, peer restarts, refusal of every identity that is not a
//! configured cluster member, the hello and heartbeats, restarts told from twins, the
//! per-peer request bound and the handshake admission rules.

#[path = "common/ports.rs"]
mod ports;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cosigner::cluster::identity::{issue_cluster, IssuedCluster};
use cosigner::cluster::tls::{PeerPins, TlsIdentity};
use cosigner::cluster::transport::hello::{Hello, InstanceId};
use cosigner::cluster::wire::{self, WireError, MAX_FRAME_LEN};
use cosigner::cluster::{Cluster, ClusterConfig, ClusterError, PeerAddr, PeerId, TlsPaths};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Ping {
    n: u64,
    payload: Vec<u8>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Pong {
    /// Who answered.
    from: PeerId,
    /// Who the answering side authenticated the requester as.
    requester: PeerId,
    n: u64,
}

const N_HANG: u64 = u64::MAX;

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], ports::free_port()))
}

fn write_tls(dir: &Path, name: &str, cert_pem: &str, key_pem: &str, ca_pem: &str) -> TlsPaths {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let paths = TlsPaths {
        cert: d.join("cert.pem"),
        key: d.join("key.pem"),
        ca: Some(d.join("ca.pem")),
    };
    std::fs::write(&paths.cert, cert_pem).unwrap();
    std::fs::write(&paths.key, key_pem).unwrap();
    // A cosigner refuses a TLS key that others can read.
    let private = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600);
    std::fs::set_permissions(&paths.key, private).unwrap();
    std::fs::write(paths.ca.as_ref().unwrap(), ca_pem).unwrap();
    paths
}

/// Every certificate of `cluster`, pinned.
fn all_pins(cluster: &IssuedCluster) -> PeerPins {
    PeerPins::new(
        cluster
            .identities
            .iter()
            .map(|i| (i.id, i.cert_sha256.clone())),
    )
}

/// Configs for cosigners `1..=n` of `cluster`, each knowing all the others at `addrs`.
fn configs(dir: &Path, cluster: &IssuedCluster, addrs: &[SocketAddr]) -> Vec<ClusterConfig> {
    cluster
        .identities
        .iter()
        .map(|me| ClusterConfig {
            id: me.id,
            listen: addrs[me.id as usize - 1],
            peers: cluster
                .identities
                .iter()
                .filter(|p| p.id != me.id)
                .map(|p| PeerAddr {
                    id: p.id,
                    address: addrs[p.id as usize - 1].to_string(),
                    cert_sha256: p.cert_sha256.clone(),
                })
                .collect(),
            joining: Vec::new(),
            tls: write_tls(
                dir,
                &format!("c{}", me.id),
                &me.cert_pem,
                &me.key_pem,
                &cluster.ca_cert_pem,
            ),
            allowed_sources: Vec::new(),
        })
        .collect()
}

/// Binds a cosigner that answers `Ping`s and counts the requests its handler saw.
async fn start(cfg: ClusterConfig) -> (Arc<Cluster>, Arc<AtomicUsize>) {
    let me = cfg.id;
    let cluster = Arc::new(Cluster::bind(cfg).await.unwrap());
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    cluster.serve(move |requester: PeerId, req: Ping| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            if req.n == N_HANG {
                std::future::pending::<()>().await;
            }
            Pong {
                from: me,
                requester,
                n: req.n,
            }
        }
    });
    (cluster, seen)
}

fn ping(n: u64) -> Ping {
    Ping {
        n,
        payload: vec![7; 32],
    }
}

async fn ask(c: &Cluster, peer: PeerId, n: u64, t: Duration) -> Result<Pong, ClusterError> {
    c.request(peer, &ping(n), t).await
}

/// Polls `f` until it returns true or `limit` passes.
async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

const T: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_cosigners_answer_each_other_in_all_directions() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(3, "test").unwrap();
    let addrs: Vec<_> = (0..3).map(|_| free_addr()).collect();
    let mut nodes = Vec::new();
    for cfg in configs(dir.path(), &issued, &addrs) {
        nodes.push(start(cfg).await);
    }
    let mut n = 0;
    for a in 1..=3u16 {
        for b in (1..=3u16).filter(|b| *b != a) {
            n += 1;
            let pong = ask(&nodes[a as usize - 1].0, b, n, T).await.unwrap();
            assert_eq!(
                pong,
                Pong {
                    from: b,
                    requester: a,
                    n
                }
            );
        }
    }
    for (i, (c, seen)) in nodes.iter().enumerate() {
        assert_eq!(seen.load(Ordering::SeqCst), 2, "cosigner {}", i + 1);
        let mut others: Vec<PeerId> = (1..=3).filter(|p| *p != i as u16 + 1).collect();
        others.sort();
        assert_eq!(c.connected_peers(), others);
        for p in others {
            assert!(c.rtt(p).is_some());
        }
    }
    assert_eq!(nodes[0].0.rtt(9), None);
    assert!(matches!(
        ask(&nodes[0].0, 9, 1, T).await,
        Err(ClusterError::UnknownPeer(9))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_all_complete() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(2, "test").unwrap();
    let addrs: Vec<_> = (0..2).map(|_| free_addr()).collect();
    let cfgs = configs(dir.path(), &issued, &addrs);
    let (a, _) = start(cfgs[0].clone()).await;
    let (b, b_seen) = start(cfgs[1].clone()).await;
    // More than the per-connection stream limit, so some wait for a stream to free up.
    let count = 400u64;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        let (a, b) = (a.clone(), b.clone());
        tasks.spawn(async move {
            if n % 2 == 0 {
                (n, ask(&a, 2, n, Duration::from_secs(20)).await)
            } else {
                (n, ask(&b, 1, n, Duration::from_secs(20)).await)
            }
        });
    }
    let mut done = 0;
    while let Some(r) = tasks.join_next().await {
        let (n, pong) = r.unwrap();
        let pong = pong.unwrap();
        assert_eq!(pong.n, n);
        assert_eq!(pong.from, if n % 2 == 0 { 2 } else { 1 });
        done += 1;
    }
    assert_eq!(done, count);
    assert_eq!(b_seen.load(Ordering::SeqCst), count as usize / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_never_answers_times_out_within_the_deadline() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(2, "test").unwrap();
    let addrs: Vec<_> = (0..2).map(|_| free_addr()).collect();
    let cfgs = configs(dir.path(), &issued, &addrs);
    let (a, _) = start(cfgs[0].clone()).await;
    let b = Arc::new(Cluster::bind(cfgs[1].clone()).await.unwrap());
    // Counts handler futures that were dropped, i.e. abandoned after the requester left.
    let dropped = Arc::new(AtomicUsize::new(0));
    struct OnDrop(Arc<AtomicUsize>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let d = dropped.clone();
    b.serve(move |requester: PeerId, req: Ping| {
        let guard = OnDrop(d.clone());
        async move {
            let _guard = guard;
            if req.n == N_HANG {
                std::future::pending::<()>().await;
            }
            Pong {
                from: 2,
                requester,
                n: req.n,
            }
        }
    });
    // Warm up so the deadline below measures the stream, not the first handshake.
    ask(&a, 2, 1, T).await.unwrap();

    let limit = Duration::from_millis(300);
    let started = Instant::now();
    let r = ask(&a, 2, N_HANG, limit).await;
    let took = started.elapsed();
    assert!(
        matches!(r, Err(ClusterError::Timeout { peer: 2, .. })),
        "{r:?}"
    );
    assert!(took >= limit, "{took:?}");
    assert!(took < limit + Duration::from_millis(700), "{took:?}");
    // The requester's cancellation reaches the server, which drops the handler.
    assert!(
        eventually(T, || dropped.load(Ordering::SeqCst) == 2).await,
        "hanging handler was not abandoned"
    );
    // The connection is still good for the next request.
    assert_eq!(ask(&a, 2, 5, T).await.unwrap().n, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_reachable_again() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(2, "test").unwrap();
    let addrs: Vec<_> = (0..2).map(|_| free_addr()).collect();
    let cfgs = configs(dir.path(), &issued, &addrs);
    let (a, _) = start(cfgs[0].clone()).await;
    let (b, _) = start(cfgs[1].clone()).await;
    assert_eq!(ask(&a, 2, 1, T).await.unwrap().from, 2);

    b.shutdown().await;
    drop(b);
    assert!(
        eventually(T, || a.connected_peers().is_empty()).await,
        "a still thinks b is connected"
    );
    assert!(ask(&a, 2, 2, Duration::from_millis(200)).await.is_err());

    // The old endpoint's socket is released by its driver task shortly after the drop.
    let deadline = Instant::now() + T;
    let b = loop {
        match Cluster::bind(cfgs[1].clone()).await {
            Ok(b) => break Arc::new(b),
            Err(ClusterError::Bind { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("rebind: {e}"),
        }
    };
    let back = Instant::now();
    b.serve(|requester: PeerId, req: Ping| async move {
        Pong {
            from: 2,
            requester,
            n: req.n + 1000,
        }
    });
    let pong = loop {
        match ask(&a, 2, 3, Duration::from_millis(250)).await {
            Ok(p) => break p,
            Err(e) => assert!(back.elapsed() < T, "b never came back: {e}"),
        }
    };
    let took = back.elapsed();
    assert_eq!(pong.n, 1003, "answered by the new instance");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(ask(&b, 1, 4, T).await.unwrap().from, 1);
}

/// Cosigner 1 of `issued` and an intruder at peer 3's place (its address, its config)
/// presenting `cert`/`key` instead of cosigner 3's certificate. Trust is by pin alone, so a
/// certificate cosigner 1 does not pin gets nothing, whoever issued it.
async fn intruder_case(intruder_cert: &str, intruder_key: &str) {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(3, "test").unwrap();
    let addrs: Vec<_> = (0..3).map(|_| free_addr()).collect();
    let cfgs = configs(dir.path(), &issued, &addrs);
    let mut intruder_cfg = cfgs[2].clone();
    intruder_cfg.tls = write_tls(
        dir.path(),
        "intruder",
        intruder_cert,
        intruder_key,
        &issued.ca_cert_pem,
    );
    let (one, one_seen) = start(cfgs[0].clone()).await;
    let (intruder, intruder_seen) = start(intruder_cfg).await;
    for n in 0..3 {
        let r = ask(&intruder, 1, n, Duration::from_millis(500)).await;
        assert!(r.is_err(), "intruder got an answer: {r:?}");
        let r = ask(&one, 3, n, Duration::from_millis(500)).await;
        assert!(r.is_err(), "cosigner 1 accepted the intruder: {r:?}");
    }
    assert_eq!(one_seen.load(Ordering::SeqCst), 0);
    assert_eq!(intruder_seen.load(Ordering::SeqCst), 0);
    assert!(one.connected_peers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_client_gets_nothing() {
    let ck = rcgen::generate_simple_self_signed(vec!["cosigner-3".to_string()]).unwrap();
    intruder_case(&ck.cert.pem(), &ck.key_pair.serialize_pem()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_another_cluster_gets_nothing() {
    let other = issue_cluster(3, "other").unwrap();
    let id = &other.identities[2];
    intruder_case(&id.cert_pem, &id.key_pem).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_certificate_that_is_not_pinned_is_refused() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(3, "test").unwrap();
    let addrs: Vec<_> = (0..3).map(|_| free_addr()).collect();
    let mut cfgs = configs(dir.path(), &issued, &addrs);
    // Cosigner 1 pins some other certificate for peer 3: both directions must fail.
    cfgs[0].peers[1].cert_sha256 = "00".repeat(32);
    let (one, one_seen) = start(cfgs[0].clone()).await;
    let (two, _) = start(cfgs[1].clone()).await;
    let (three, three_seen) = start(cfgs[2].clone()).await;
    // Cosigner 1 still works with 2, so the refusal is specific.
    assert_eq!(ask(&one, 2, 1, T).await.unwrap().from, 2);
    assert_eq!(ask(&two, 1, 1, T).await.unwrap().requester, 2);
    let seen_before = one_seen.load(Ordering::SeqCst);
    for n in 0..3 {
        let r = ask(&three, 1, n, Duration::from_millis(500)).await;
        assert!(r.is_err(), "unpinned cosigner 3 got an answer: {r:?}");
        let r = ask(&one, 3, n, Duration::from_millis(500)).await;
        assert!(r.is_err(), "cosigner 1 accepted an unpinned server: {r:?}");
    }
    assert_eq!(one_seen.load(Ordering::SeqCst), seen_before);
    assert_eq!(three_seen.load(Ordering::SeqCst), 0);
    assert_eq!(one.connected_peers(), vec![2]);
    assert_eq!(three.connected_peers(), vec![2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_at_the_wrong_address_is_refused() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(3, "test").unwrap();
    let addrs: Vec<_> = (0..3).map(|_| free_addr()).collect();
    let mut cfgs = configs(dir.path(), &issued, &addrs);
    // Cosigner 1 has the addresses of 2 and 3 swapped.
    cfgs[0].peers[0].address = addrs[2].to_string();
    cfgs[0].peers[1].address = addrs[1].to_string();
    // 2 and 3 look for 1 where nothing listens, so the only connections are 1's dials.
    let nowhere = free_addr().to_string();
    cfgs[1].peers[0].address = nowhere.clone();
    cfgs[2].peers[0].address = nowhere;
    let (one, _) = start(cfgs[0].clone()).await;
    let (_two, two_seen) = start(cfgs[1].clone()).await;
    let (_three, three_seen) = start(cfgs[2].clone()).await;
    for peer in [2, 3] {
        let r = ask(&one, peer, 1, Duration::from_millis(800)).await;
        assert!(
            r.is_err(),
            "peer {peer} answered at the wrong address: {r:?}"
        );
    }
    assert_eq!(two_seen.load(Ordering::SeqCst), 0);
    assert_eq!(three_seen.load(Ordering::SeqCst), 0);
    assert!(one.connected_peers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_is_refused_before_sending() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(2, "test").unwrap();
    let addrs: Vec<_> = (0..2).map(|_| free_addr()).collect();
    let cfgs = configs(dir.path(), &issued, &addrs);
    let (a, _) = start(cfgs[0].clone()).await;
    let (_b, b_seen) = start(cfgs[1].clone()).await;
    let big = Ping {
        n: 1,
        payload: vec![0; MAX_FRAME_LEN as usize],
    };
    let r: Result<Pong, _> = a.request(2, &big, T).await;
    assert!(
        matches!(
            r,
            Err(ClusterError::Wire {
                peer: 2,
                source: WireError::TooLarge { .. }
            })
        ),
        "{r:?}"
    );
    assert_eq!(b_seen.load(Ordering::SeqCst), 0);
    assert_eq!(ask(&a, 2, 2, T).await.unwrap().n, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_peer_is_reachable_again_soon_after_it_comes_back() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(2, "test").unwrap();
    let addrs: Vec<_> = (0..2).map(|_| free_addr()).collect();
    let cfgs = configs(dir.path(), &issued, &addrs);
    let (a, _) = start(cfgs[0].clone()).await;

    // Cosigner 2 runs on a runtime of its own, so that dropping that runtime kills every
    // task of it (the endpoint driver included) without a CONNECTION_CLOSE: a crash.
    let cfg_b = cfgs[1].clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (crash_tx, crash_rx) = std::sync::mpsc::channel::<()>();
    let host = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (b, _) = rt.block_on(start(cfg_b));
        ready_tx.send(()).unwrap();
        crash_rx.recv().unwrap();
        drop(rt);
        drop(b);
    });
    ready_rx.await.unwrap();
    assert_eq!(ask(&a, 2, 1, T).await.unwrap().from, 2);
    crash_tx.send(()).unwrap();
    tokio::task::spawn_blocking(move || host.join().unwrap())
        .await
        .unwrap();
    // Nothing told cosigner 1: its connection is stale until the idle timeout.
    assert_eq!(a.connected_peers(), vec![2]);

    let deadline = Instant::now() + T;
    let b = loop {
        match Cluster::bind(cfgs[1].clone()).await {
            Ok(b) => break Arc::new(b),
            Err(ClusterError::Bind { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("rebind: {e}"),
        }
    };
    let back = Instant::now();
    b.serve(|requester: PeerId, req: Ping| async move {
        Pong {
            from: 2,
            requester,
            n: req.n + 1000,
        }
    });
    let pong = loop {
        match ask(&a, 2, 3, Duration::from_millis(250)).await {
            Ok(p) => break p,
            Err(e) => assert!(back.elapsed() < T, "b never came back: {e}"),
        }
    };
    let took = back.elapsed();
    assert_eq!(pong.n, 1003, "answered by the new instance");
    // Under the 2 s idle timeout: the restarted peer's own dial replaces the stale
    // connection.
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    assert_eq!(ask(&b, 1, 4, T).await.unwrap().from, 1);
}

// ---- Instances, heartbeats, duplicates, admission and the per-peer request bound ----

/// A raw QUIC endpoint holding a cluster identity: a peer that does exactly what a test
/// says, including what a well-behaved cosigner never does.
struct RawPeer {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
}

impl RawPeer {
    /// A raw peer with the identity at `tls`, trusting the servers `trusted` pins.
    fn new(bind: SocketAddr, tls: &TlsPaths, trusted: &PeerPins) -> RawPeer {
        let identity = TlsIdentity::load(tls).unwrap();
        RawPeer {
            endpoint: quinn::Endpoint::client(bind).unwrap(),
            config: identity.client_config(trusted).unwrap(),
        }
    }

    async fn connect(
        &self,
        to: SocketAddr,
        server: PeerId,
    ) -> Result<quinn::Connection, quinn::ConnectionError> {
        self.endpoint
            .connect_with(self.config.clone(), to, &format!("cosigner-{server}"))
            .unwrap()
            .await
    }
}

async fn read_raw_frame(recv: &mut quinn::RecvStream) -> Result<Vec<u8>, quinn::ReadExactError> {
    let mut header = [0u8; wire::HEADER_LEN];
    recv.read_exact(&mut header).await?;
    let mut body = vec![0u8; wire::decode_header(header).unwrap()];
    recv.read_exact(&mut body).await?;
    Ok(body)
}

/// The dialer's half of the hello, done by hand; the instance the other side announced.
async fn raw_hello(conn: &quinn::Connection, instance: InstanceId) -> InstanceId {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&wire::encode(&Hello { instance }).unwrap())
        .await
        .unwrap();
    send.finish().unwrap();
    // To the end: a stream left unread keeps holding a stream credit.
    let bytes = recv.read_to_end(1024).await.unwrap();
    let (header, body) = bytes.split_at(wire::HEADER_LEN);
    assert_eq!(
        wire::decode_header(header.try_into().unwrap()).unwrap(),
        body.len()
    );
    wire::decode_body::<Hello>(body).unwrap().instance
}

/// Opens a stream on `conn` and sends one `Ping` request on it.
async fn raw_request(conn: &quinn::Connection, n: u64) -> (quinn::SendStream, quinn::RecvStream) {
    let (mut send, recv) = conn.open_bi().await.unwrap();
    send.write_all(&wire::encode(&ping(n)).unwrap())
        .await
        .unwrap();
    send.finish().unwrap();
    (send, recv)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hello_names_each_process_and_heartbeats_measure_the_link() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(2, "test").unwrap();
    let addrs: Vec<_> = (0..2).map(|_| free_addr()).collect();
    let cfgs = configs(dir.path(), &issued, &addrs);
    let (a, a_seen) = start(cfgs[0].clone()).await;
    let (b, b_seen) = start(cfgs[1].clone()).await;
    assert_ne!(a.instance_id(), b.instance_id());
    assert_eq!(ask(&a, 2, 1, T).await.unwrap().from, 2);
    // Each side knows the other's process, and the hellos never reached a handler.
    assert!(
        eventually(T, || {
            a.peer_status(2).unwrap().instance == Some(b.instance_id())
                && b.peer_status(1).unwrap().instance == Some(a.instance_id())
        })
        .await
    );
    assert_eq!(
        (a_seen.load(Ordering::SeqCst), b_seen.load(Ordering::SeqCst)),
        (0, 1)
    );
    // Heartbeats run without any request.
    let samples = |c: &Cluster, p| c.peer_status(p).unwrap().rtt_samples;
    let before = samples(&a, 2);
    assert!(
        eventually(T, || samples(&a, 2) >= before + 3 && samples(&b, 1) >= 3).await,
        "no heartbeats: {:?}",
        a.peer_status(2)
    );
    let status = a.peer_status(2).unwrap();
    assert!(status.connected && status.connections >= 1);
    assert!(status.duplicate.is_none());
    let heard = status.last_heard.unwrap().elapsed();
    assert!(heard < Duration::from_secs(1), "last heard {heard:?} ago");
    let rtt = status.rtt_smoothed.unwrap();
    assert!(rtt < Duration::from_millis(100), "loopback rtt {rtt:?}");
    assert!(status.rtt_latest.is_some());
    assert!(a.peer_status(9).is_none());
}

/// A connection that authenticates but never says hello is closed, and never used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_hello_is_closed() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(2, "test").unwrap();
    let addrs: Vec<_> = (0..2).map(|_| free_addr()).collect();
    let mut cfgs = configs(dir.path(), &issued, &addrs);
    // Cosigner 2 cannot dial 1 (nothing listens there), so the raw client's connection is
    // the only one.
    cfgs[1].peers[0].address = free_addr().to_string();
    let (b, b_seen) = start(cfgs[1].clone()).await;
    let raw = RawPeer::new(
        "127.0.0.1:0".parse().unwrap(),
        &cfgs[0].tls,
        &all_pins(&issued),
    );
    let conn = raw.connect(addrs[1], 2).await.unwrap();
    let started = Instant::now();
    let reason = tokio::time::timeout(T, conn.closed()).await.unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "closed after {took:?}: {reason}"
    );
    assert!(reason.to_string().contains("no hello"), "{reason}");
    assert_eq!(b.stats().hello_failed, 1);
    assert!(b.connected_peers().is_empty());
    assert_eq!(b_seen.load(Ordering::SeqCst), 0);
}

/// A peer still speaking the protocol before hellos (ALPN cosigner/1) fails the TLS
/// handshake with a clear reason instead of being half served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_the_previous_protocol_is_refused_in_the_handshake() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(2, "test").unwrap();
    let addrs: Vec<_> = (0..2).map(|_| free_addr()).collect();
    let cfgs = configs(dir.path(), &issued, &addrs);
    let (b, _) = start(cfgs[1].clone()).await;
    let identity = TlsIdentity::load(&cfgs[0].tls).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(identity.ca.clone().unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(identity.cert_chain.clone(), identity.key.clone_key())
        .unwrap();
    tls.alpn_protocols = vec![b"cosigner/1".to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let r = endpoint
        .connect_with(
            quinn::ClientConfig::new(Arc::new(quic)),
            addrs[1],
            "cosigner-2",
        )
        .unwrap()
        .await;
    let e = r.expect_err("an old-protocol peer connected");
    assert!(e.to_string().contains("protocol"), "{e}");
    assert!(b.connected_peers().is_empty());
}

const CHILD_ENV: &str = "COSIGNER_TEST_CHILD_SPEC";

/// What a child cosigner runs: a config written as `key value` lines.
fn write_child_spec(path: &Path, cfg: &ClusterConfig, tag: u64) {
    let mut text = format!(
        "id {}\nlisten {}\ncert {}\nkey {}\nca {}\ntag {tag}\n",
        cfg.id,
        cfg.listen,
        cfg.tls.cert.display(),
        cfg.tls.key.display(),
        cfg.tls.ca.as_ref().unwrap().display()
    );
    for p in &cfg.peers {
        text.push_str(&format!("peer {} {} {}\n", p.id, p.address, p.cert_sha256));
    }
    std::fs::write(path, text).unwrap();
}

fn read_child_spec(text: &str) -> (ClusterConfig, u64) {
    let mut cfg = ClusterConfig {
        id: 0,
        listen: free_addr(),
        peers: Vec::new(),
        joining: Vec::new(),
        tls: TlsPaths {
            cert: Default::default(),
            key: Default::default(),
            ca: None,
        },
        allowed_sources: Vec::new(),
    };
    let mut tag = 0;
    for line in text.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        match words[..] {
            ["id", v] => cfg.id = v.parse().unwrap(),
            ["listen", v] => cfg.listen = v.parse().unwrap(),
            ["cert", v] => cfg.tls.cert = v.into(),
            ["key", v] => cfg.tls.key = v.into(),
            ["ca", v] => cfg.tls.ca = Some(v.into()),
            ["tag", v] => tag = v.parse().unwrap(),
            ["peer", id, address, fp] => cfg.peers.push(PeerAddr {
                id: id.parse().unwrap(),
                address: address.into(),
                cert_sha256: fp.into(),
            }),
            _ => panic!("bad child spec line `{line}`"),
        }
    }
    (cfg, tag)
}

/// Not a test on its own: the body of the child process that
/// `a_peer_killed_and_started_again_at_once_is_used_again_and_not_flagged` starts and kills
/// with SIGKILL. It answers `Ping { n }` with `n + tag` and runs until killed.
#[test]
#[ignore = "runs only as a child process of another test"]
fn child_cosigner() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (cfg, tag) = read_child_spec(&std::fs::read_to_string(spec).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let me = cfg.id;
        let cluster = Cluster::bind(cfg).await.unwrap();
        cluster.serve(move |requester: PeerId, req: Ping| async move {
            Pong {
                from: me,
                requester,
                n: req.n + tag,
            }
        });
        println!("CHILD-READY {}", cluster.instance_id());
        std::future::pending::<()>().await;
    });
}

/// A child process running [`child_cosigner`], killed with SIGKILL when dropped.
struct ChildCosigner {
    child: std::process::Child,
    instance: String,
}

impl ChildCosigner {
    fn spawn(spec: &Path) -> ChildCosigner {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["child_cosigner", "--exact", "--ignored", "--nocapture"])
            .env(CHILD_ENV, spec)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(instance) = line.strip_prefix("CHILD-READY ") {
                    let _ = tx.send(instance.to_string());
                }
            }
        });
        let instance = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the child cosigner did not start");
        ChildCosigner { child, instance }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildCosigner {
    fn drop(&mut self) {
        self.kill();
    }
}

/// kill -9 and start again at once, as an operator's restart or a crash loop does: the old
/// process's connection is still open on our side (QUIC notices only at the 2 s idle
/// timeout). The new process is used well before that, and never taken for a twin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_killed_and_started_again_at_once_is_used_again_and_not_flagged() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(2, "test").unwrap();
    let addrs: Vec<_> = (0..2).map(|_| free_addr()).collect();
    let cfgs = configs(dir.path(), &issued, &addrs);
    let (a, _) = start(cfgs[0].clone()).await;
    let spec = dir.path().join("child.spec");
    let mut took = Vec::new();
    let mut old = {
        write_child_spec(&spec, &cfgs[1], 1000);
        ChildCosigner::spawn(&spec)
    };
    assert_eq!(ask(&a, 2, 1, T).await.unwrap().n, 1001);
    for generation in 2..=4u64 {
        assert_eq!(
            a.peer_status(2).unwrap().instance.map(|i| i.to_string()),
            Some(old.instance.clone())
        );
        old.kill();
        write_child_spec(&spec, &cfgs[1], generation * 1000);
        let new = ChildCosigner::spawn(&spec);
        let back = Instant::now();
        let pong = loop {
            assert!(
                a.duplicate(2).is_none(),
                "a restart taken for a twin: {:?}",
                a.duplicate(2)
            );
            match ask(&a, 2, 1, Duration::from_millis(100)).await {
                Ok(p) if p.n == generation * 1000 + 1 => break p,
                _ => assert!(back.elapsed() < T, "the restarted peer was not used again"),
            }
        };
        took.push(back.elapsed());
        assert_eq!(pong.from, 2);
        assert_eq!(
            a.peer_status(2).unwrap().instance.map(|i| i.to_string()),
            Some(new.instance.clone())
        );
        // The dead process's connection was closed, not left to time out.
        assert!(
            eventually(Duration::from_millis(500), || a
                .peer_status(2)
                .unwrap()
                .connections
                <= 2)
            .await
        );
        assert!(a.duplicate(2).is_none());
        old = new;
    }
    eprintln!("restarted peer used again after {took:?} (idle timeout 2 s)");
    for t in &took {
        assert!(*t < Duration::from_secs(1), "{took:?}");
    }
}

/// Binds cosigner 2 twice at two addresses (one directory copied) next to cosigner 1, which
/// knows 2 at the first address: both processes dial 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_live_instances_are_flagged_at_once_and_unflagged_when_one_goes() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(2, "test").unwrap();
    let addrs: Vec<_> = (0..2).map(|_| free_addr()).collect();
    let cfgs = configs(dir.path(), &issued, &addrs);
    let (a, _) = start(cfgs[0].clone()).await;
    let (b1, _) = start(cfgs[1].clone()).await;
    assert_eq!(ask(&a, 2, 1, T).await.unwrap().from, 2);
    let twin_cfg = ClusterConfig {
        listen: free_addr(),
        ..cfgs[1].clone()
    };
    let twin_addr = twin_cfg.listen;

    for round in 0..2 {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (end_tx, end_rx) = std::sync::mpsc::channel::<bool>();
        let cfg = twin_cfg.clone();
        // On a runtime of its own, so that round 1 can end it as a crash would: dropping the
        // runtime stops its endpoint driver, and no CONNECTION_CLOSE is ever sent.
        let host = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let (twin, _) = rt.block_on(start(cfg));
            ready_tx.send(twin.instance_id()).unwrap();
            let graceful = end_rx.recv().unwrap();
            if graceful {
                rt.block_on(twin.shutdown());
            }
            drop(rt);
            drop(twin);
        });
        let twin_instance = ready_rx.await.unwrap();
        let started = Instant::now();
        assert!(
            eventually(T, || a.duplicate(2).is_some()).await,
            "round {round}: the twin was not flagged"
        );
        let flagged = started.elapsed();
        let dup = a.duplicate(2).unwrap();
        let mut seen: Vec<(String, SocketAddr)> = dup
            .instances
            .iter()
            .map(|i| (i.id.to_string(), i.address))
            .collect();
        seen.sort();
        let mut expected = vec![
            (b1.instance_id().to_string(), addrs[1]),
            (twin_instance.to_string(), twin_addr),
        ];
        expected.sort();
        assert_eq!(seen, expected, "round {round}");
        assert_eq!(a.peer_status(2).unwrap().duplicate, Some(dup.clone()));
        let text = dup.to_string();
        assert!(
            text.contains(&addrs[1].to_string()) && text.contains(&twin_addr.to_string()),
            "{text}"
        );
        // Bounded by the hello and one probe of the old instance.
        assert!(
            flagged < Duration::from_secs(1),
            "flagged after {flagged:?}"
        );

        let graceful = round == 0;
        end_tx.send(graceful).unwrap();
        tokio::task::spawn_blocking(move || host.join().unwrap())
            .await
            .unwrap();
        let gone = Instant::now();
        // A closed connection ends it at once; a crashed twin ends it when its connection
        // stops answering (the idle timeout).
        let limit = if graceful {
            Duration::from_millis(500)
        } else {
            cosigner::cluster::tls::IDLE_TIMEOUT + Duration::from_secs(1)
        };
        assert!(
            eventually(limit, || a.duplicate(2).is_none()).await,
            "round {round}: still flagged {:?} after the twin went",
            gone.elapsed()
        );
        eprintln!(
            "round {round}: flagged after {flagged:?}, unflagged {:?} after the twin went ({})",
            gone.elapsed(),
            if graceful { "shut down" } else { "crashed" }
        );
        assert_eq!(
            a.peer_status(2).unwrap().instance,
            Some(b1.instance_id()),
            "the remaining instance is the first"
        );
        assert_eq!(ask(&a, 2, 5, T).await.unwrap().from, 2);
    }
}

/// A misbehaving peer (three connections at full stream credit) gets its requests beyond
/// the per-peer bound reset as busy, not queued; the bound frees as requests end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_the_per_peer_bound_are_reset_as_busy() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(2, "test").unwrap();
    let addrs: Vec<_> = (0..2).map(|_| free_addr()).collect();
    let mut cfgs = configs(dir.path(), &issued, &addrs);
    cfgs[1].peers[0].address = free_addr().to_string();
    let (b, seen) = start(cfgs[1].clone()).await;
    let raw = RawPeer::new(
        "127.0.0.1:0".parse().unwrap(),
        &cfgs[0].tls,
        &all_pins(&issued),
    );
    let me = InstanceId::random();
    let mut conns = Vec::new();
    for _ in 0..3 {
        let conn = raw.connect(addrs[1], 2).await.unwrap();
        assert_eq!(raw_hello(&conn, me).await, b.instance_id());
        conns.push(conn);
    }
    assert!(eventually(T, || b.peer_status(1).unwrap().connections == 3).await);
    // The bound is two connections' stream credit. Each connection here has one less
    // (the hello's stream; quinn announces freed credit in batches of an eighth), so
    // filling the bound takes all three.
    let credit = cosigner::cluster::tls::MAX_STREAMS_PER_CONNECTION as usize - 1;
    let bound = 2 * cosigner::cluster::tls::MAX_STREAMS_PER_CONNECTION as usize;
    let mut hanging = Vec::new();
    for i in 0..bound {
        hanging.push(raw_request(&conns[i / credit], N_HANG).await);
    }
    assert!(
        eventually(T, || seen.load(Ordering::SeqCst) == bound).await,
        "{} of {bound} requests reached the handler",
        seen.load(Ordering::SeqCst)
    );
    let (_send, mut recv) = raw_request(&conns[2], 7).await;
    let r = tokio::time::timeout(T, read_raw_frame(&mut recv))
        .await
        .expect("an excess request was queued instead of refused");
    match r {
        Err(quinn::ReadExactError::ReadError(quinn::ReadError::Reset(code))) => {
            assert_eq!(code.into_inner(), 4, "reset code BUSY")
        }
        other => panic!("expected a busy reset, got {other:?}"),
    }
    assert_eq!(seen.load(Ordering::SeqCst), bound);
    assert_eq!(b.stats().requests_busy, 1);
    // One request given up frees one place.
    let (mut send, mut recv) = hanging.pop().unwrap();
    // Its request is all sent: stopping our receiving half is what tells the server.
    let _ = send.reset(0u32.into());
    recv.stop(0u32.into()).unwrap();
    let deadline = Instant::now() + T;
    loop {
        let (_send, mut recv) = raw_request(&conns[2], 8).await;
        match read_raw_frame(&mut recv).await {
            Ok(body) => {
                let pong: Pong = wire::decode_body(&body).unwrap();
                assert_eq!((pong.from, pong.requester, pong.n), (2, 1, 8));
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "never freed: {e:?}"),
        }
    }
}

/// Initials from an address that is not a configured peer's get no answer at all (not even
/// a Retry); from a peer's address they are address-validated first, then accepted; an
/// operator's `allowed_sources` lets another network in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initials_from_a_non_peer_address_are_ignored() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let issued = issue_cluster(2, "test").unwrap();
    let addrs: Vec<_> = (0..2).map(|_| free_addr()).collect();
    let mut cfgs = configs(dir.path(), &issued, &addrs);
    // Peer 1 lives at 127.0.0.1 (nothing listens there: only the raw client connects).
    cfgs[1].peers[0].address = free_addr().to_string();
    let (b, b_seen) = start(cfgs[1].clone()).await;

    // 127.0.0.2 is loopback too, but not peer 1's address.
    let stranger = RawPeer::new(
        "127.0.0.2:0".parse().unwrap(),
        &cfgs[0].tls,
        &all_pins(&issued),
    );
    let r = tokio::time::timeout(Duration::from_millis(1500), stranger.connect(addrs[1], 2)).await;
    assert!(
        !matches!(r, Ok(Ok(_))),
        "a handshake from a non-peer address completed"
    );
    let s = b.stats();
    assert!(s.ignored_not_peer >= 1, "{s:?}");
    assert_eq!((s.retried, s.accepted), (0, 0), "{s:?}");
    assert!(b.connected_peers().is_empty());

    // The same identity from the peer's IP: a Retry first, then the handshake.
    let peer = RawPeer::new(
        "127.0.0.1:0".parse().unwrap(),
        &cfgs[0].tls,
        &all_pins(&issued),
    );
    let conn = peer.connect(addrs[1], 2).await.unwrap();
    raw_hello(&conn, InstanceId::random()).await;
    let s = b.stats();
    assert_eq!((s.retried, s.accepted), (1, 1), "{s:?}");
    assert!(eventually(T, || b.connected_peers() == vec![1]).await);
    conn.close(0u32.into(), b"done");

    // allowed_sources lets the other address in.
    let mut open_cfg = cfgs[1].clone();
    open_cfg.listen = free_addr();
    open_cfg.allowed_sources = vec!["127.0.0.2/32".parse().unwrap()];
    b.shutdown().await;
    let (open, _) = start(open_cfg.clone()).await;
    let conn = tokio::time::timeout(T, stranger.connect(open_cfg.listen, 2))
        .await
        .unwrap()
        .unwrap();
    raw_hello(&conn, InstanceId::random()).await;
    assert_eq!(open.stats().ignored_not_peer, 0);
    assert_eq!(b_seen.load(Ordering::SeqCst), 0);
}

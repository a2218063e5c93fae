//! SecretConnection interoperability with the independent `tendermint-p2p` 0.41
//! implementation over real loopback TCP, in both roles, plus hostile peers that must get a
//! clean error rather than a panic or a hang.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdTcpListener, TcpStream as StdTcpStream};
use std::time::Duration;

use cosigner::privval::secret_connection::{node_id, SecretConnection, SecretConnectionError};
use ed25519_dalek::SigningKey;
use rand_core::{OsRng, RngCore};
use tendermint_p2p::secret_connection::{
    PublicKey as TheirPublicKey, SecretConnection as TheirSecretConnection, Version,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;

/// Bound on every network wait in these tests.
const LIMIT: Duration = Duration::from_secs(20);

/// Message sizes around the 1024-byte frame boundary, exchanged in both directions.
const SIZES: [usize; 6] = [0, 1, 1023, 1024, 1025, 5000];

const TO_THEM: u8 = 0x5a;
const TO_US: u8 = 0xc3;

fn pattern(len: usize, direction: u8) -> Vec<u8> {
    // Depends on the length too, so a message shifted into its neighbour shows up.
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ direction ^ (len as u8))
        .collect()
}

/// What the tendermint-p2p side saw.
#[derive(Debug)]
struct TheirView {
    remote_pubkey: [u8; 32],
    remote_node_id: String,
}

/// tendermint-p2p's side: handshake, then for each size read our message and answer with
/// its own. Runs on a std thread, with socket timeouts so it cannot hang.
fn their_side(stream: StdTcpStream, seed: [u8; 32]) -> Result<TheirView, String> {
    stream
        .set_read_timeout(Some(LIMIT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(LIMIT))
        .map_err(|e| e.to_string())?;
    let key =
        tendermint::crypto::ed25519::SigningKey::try_from(&seed[..]).map_err(|e| e.to_string())?;
    let mut sc = TheirSecretConnection::new(
        stream,
        key.try_into()
            .map_err(|e: tendermint::Error| e.to_string())?,
        Version::V0_34,
    )
    .map_err(|e| format!("their handshake: {e}"))?;
    let remote = sc.remote_pubkey();
    let view = TheirView {
        remote_pubkey: remote.ed25519().ok_or("not ed25519")?.to_bytes(),
        remote_node_id: remote.peer_id().to_string(),
    };
    for size in SIZES {
        let mut buf = vec![0u8; size];
        sc.read_exact(&mut buf)
            .map_err(|e| format!("their read of {size}: {e}"))?;
        if buf != pattern(size, TO_THEM) {
            return Err(format!("they received a corrupted {size}-byte message"));
        }
        sc.write_all(&pattern(size, TO_US))
            .map_err(|e| format!("their write of {size}: {e}"))?;
        sc.flush().map_err(|e| e.to_string())?;
    }
    Ok(view)
}

/// Our side of the same conversation.
async fn our_side(conn: &mut SecretConnection<TcpStream>) {
    for size in SIZES {
        conn.write_all(&pattern(size, TO_THEM)).await.unwrap();
        let mut buf = vec![0u8; size];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(
            buf,
            pattern(size, TO_US),
            "we received a corrupted {size}-byte message"
        );
    }
}

fn spawn_their_side(
    stream: impl FnOnce() -> std::io::Result<StdTcpStream> + Send + 'static,
    seed: [u8; 32],
) -> oneshot::Receiver<Result<TheirView, String>> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let result = stream()
            .map_err(|e| e.to_string())
            .and_then(|s| their_side(s, seed));
        let _ = tx.send(result);
    });
    rx
}

fn random_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    seed
}

fn check_identities(
    conn: &SecretConnection<TcpStream>,
    ours: &SigningKey,
    their_seed: &[u8; 32],
    their_view: &TheirView,
) {
    let their_pub = SigningKey::from_bytes(their_seed).verifying_key();
    assert_eq!(conn.remote_pubkey(), &their_pub);
    // The node ID as tendermint-p2p computes it, independently of our `node_id`.
    let their_id = TheirPublicKey::from_raw_ed25519(their_pub.as_bytes())
        .unwrap()
        .peer_id()
        .to_string();
    assert_eq!(conn.remote_node_id(), their_id);
    assert_eq!(&their_view.remote_pubkey, ours.verifying_key().as_bytes());
    assert_eq!(their_view.remote_node_id, node_id(&ours.verifying_key()));
}

#[tokio::test]
async fn we_dial_tendermint_p2p_listens() {
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let their_seed = random_seed();
    let theirs = spawn_their_side(move || listener.accept().map(|(s, _)| s), their_seed);

    let ours = SigningKey::generate(&mut OsRng);
    let mut conn = timeout(LIMIT, async {
        let io = TcpStream::connect(addr).await.unwrap();
        SecretConnection::handshake(io, &ours).await.unwrap()
    })
    .await
    .expect("handshake timed out");
    timeout(LIMIT, our_side(&mut conn))
        .await
        .expect("exchange timed out");
    let their_view = timeout(LIMIT, theirs).await.unwrap().unwrap().unwrap();
    check_identities(&conn, &ours, &their_seed, &their_view);
}

#[tokio::test]
async fn tendermint_p2p_dials_we_listen() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let their_seed = random_seed();
    let theirs = spawn_their_side(
        move || StdTcpStream::connect_timeout(&addr, LIMIT),
        their_seed,
    );

    let ours = SigningKey::generate(&mut OsRng);
    let mut conn = timeout(LIMIT, async {
        let (io, _) = listener.accept().await.unwrap();
        SecretConnection::handshake(io, &ours).await.unwrap()
    })
    .await
    .expect("handshake timed out");
    timeout(LIMIT, our_side(&mut conn))
        .await
        .expect("exchange timed out");
    let their_view = timeout(LIMIT, theirs).await.unwrap().unwrap().unwrap();
    check_identities(&conn, &ours, &their_seed, &their_view);
}

/// Runs our handshake as the dialer against a peer that writes `first_bytes` and then keeps
/// the connection open (until the test ends), so only our own validation can end it.
async fn handshake_against(first_bytes: Vec<u8>) -> SecretConnectionError {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let peer = tokio::spawn(async move {
        let (mut io, _) = listener.accept().await.unwrap();
        io.write_all(&first_bytes).await.unwrap();
        // Hold the socket open without reading until our side has its answer.
        let _ = done_rx.await;
        drop(io);
    });
    let key = SigningKey::generate(&mut OsRng);
    let result = timeout(LIMIT, async {
        let io = TcpStream::connect(addr).await.unwrap();
        SecretConnection::handshake(io, &key).await
    })
    .await
    .expect("handshake hung instead of failing");
    let _ = done_tx.send(());
    peer.await.unwrap();
    match result {
        Ok(conn) => panic!("handshake with a hostile peer succeeded: {conn:?}"),
        Err(err) => err,
    }
}

#[tokio::test]
async fn garbage_instead_of_handshake_is_a_clean_error() {
    let err = handshake_against(b"GET / HTTP/1.1\r\nHost: validator\r\n\r\n".to_vec()).await;
    assert!(
        matches!(err, SecretConnectionError::MalformedHandshake(_)),
        "{err}"
    );

    // Right length byte, wrong protobuf field header.
    let mut msg = vec![0x22, 0x12, 0x20];
    msg.extend_from_slice(&[9; 32]);
    let err = handshake_against(msg).await;
    assert!(
        matches!(err, SecretConnectionError::MalformedHandshake(_)),
        "{err}"
    );
}

#[tokio::test]
async fn low_order_ephemeral_keys_are_a_clean_error() {
    let p_minus = |last: u8| {
        let mut k = [0xff; 32];
        k[0] = last;
        k[31] = 0x7f;
        k
    };
    let mut one = [0u8; 32];
    one[0] = 1;
    let order8_a = hex_key("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
    let order8_b = hex_key("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157");
    let points = [
        [0u8; 32],
        one,
        order8_a,
        order8_b,
        p_minus(0xec),
        p_minus(0xed),
        p_minus(0xee),
    ];
    for point in points {
        let mut msg = vec![0x22, 0x0a, 0x20];
        msg.extend_from_slice(&point);
        let err = handshake_against(msg).await;
        assert!(
            matches!(err, SecretConnectionError::LowOrderKey),
            "{}: {err}",
            hex::encode(point)
        );
    }
}

fn hex_key(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

#[tokio::test]
async fn garbage_after_a_valid_ephemeral_key_fails_authentication() {
    let secret = x25519_dalek::EphemeralSecret::random_from_rng(OsRng);
    let public = x25519_dalek::PublicKey::from(&secret);
    let mut msg = vec![0x22, 0x0a, 0x20];
    msg.extend_from_slice(public.as_bytes());
    msg.extend_from_slice(&[0xab; 1044]);
    let err = handshake_against(msg).await;
    assert!(matches!(err, SecretConnectionError::TagMismatch), "{err}");
}

#[tokio::test]
async fn peer_hanging_up_mid_handshake_is_a_clean_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let peer = tokio::spawn(async move {
        let (mut io, _) = listener.accept().await.unwrap();
        io.write_all(&[0x22, 0x0a, 0x20, 1, 2, 3]).await.unwrap();
        // Read our ephemeral message so closing is an orderly FIN, not a reset.
        let mut ours = [0u8; 35];
        io.read_exact(&mut ours).await.unwrap();
    });
    let key = SigningKey::generate(&mut OsRng);
    let result = timeout(LIMIT, async {
        let io = TcpStream::connect(addr).await.unwrap();
        SecretConnection::handshake(io, &key).await
    })
    .await
    .expect("handshake hung instead of failing");
    peer.await.unwrap();
    let err = result.unwrap_err();
    assert!(matches!(err, SecretConnectionError::Closed), "{err}");
}

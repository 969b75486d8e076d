//! Protocol v2's rekeying over real sockets: large transfers each way under a
//! 1 MiB rekey limit (a rekey per MiB in each direction), pipelined, every byte
//! checked: 1 GiB in the preferred suite, 128 MiB in each, each session set up by
//! the real v2 handshake (`initiate_v2`, `respond_any`) with the policy in message 2.

use std::time::Instant;

use noise_echo::identity::Identity;
use noise_echo::wire::{
    self, LocalIdentity, Offer, RecordType, RekeyPolicy, ResponderSettings, ServerParams, Suite,
};
use tokio::net::{TcpListener, TcpStream};

/// The request body size: the server's default request limit.
const RECORD: usize = 1 << 20;

/// The byte pattern of request `index`: a fixed mebibyte with the index in its
/// first 8 bytes, so a reordered, repeated or mis-decrypted record shows (and
/// making it costs one copy, not a loop per byte in the debug build).
fn pattern(base: &[u8], index: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(base);
    out[..8].copy_from_slice(&(index as u64).to_be_bytes());
}

fn base() -> Vec<u8> {
    (0..RECORD)
        .map(|at| (at.wrapping_mul(31) >> 3) as u8)
        .collect()
}

/// Sends `records` requests of 1 MiB from a client to a server that echoes each
/// back unchanged, over loopback TCP, both under `policy`; returns the rekeys of
/// the client's and the server's sending halves.
async fn transfer(suite: Suite, policy: RekeyPolicy, records: usize) -> (u64, u64) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server_identity = LocalIdentity::new(&Identity::generate("server"));
    let client_identity = LocalIdentity::new(&Identity::generate("client"));

    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let settings =
            ResponderSettings::new(vec![suite], false, ServerParams::new(RECORD as u32, policy));
        let established = wire::respond_any(&mut socket, &server_identity, &settings)
            .await
            .unwrap();
        let (reader, writer) = socket.into_split();
        let (mut rx, mut tx) = established.into_halves(reader, writer);
        let mut body = Vec::with_capacity(RECORD);
        while rx.next_record().await.unwrap().is_some() {
            rx.read_body(&mut body, RECORD as u32).await.unwrap();
            tx.write_record(RecordType::Response, &body).await.unwrap();
            if !rx.has_buffered_input() {
                tx.flush().await.unwrap();
            }
        }
        tx.shutdown().await.unwrap();
        tx.rekeys()
    });

    let mut socket = TcpStream::connect(address).await.unwrap();
    let established = wire::initiate_v2(&mut socket, &client_identity, &Offer::new(suite))
        .await
        .unwrap()
        .approve(&mut socket)
        .await
        .unwrap();
    assert_eq!(established.rekey_policy(), Some(&policy));
    let (reader, writer) = socket.into_split();
    let (mut rx, mut tx) = established.into_halves(reader, writer);
    let writer = tokio::spawn(async move {
        let base = base();
        let mut body = Vec::with_capacity(RECORD);
        for index in 0..records {
            pattern(&base, index, &mut body);
            tx.write_record(RecordType::Request, &body).await.unwrap();
        }
        tx.shutdown().await.unwrap();
        tx.rekeys()
    });
    let base = base();
    let mut expected = Vec::with_capacity(RECORD);
    for index in 0..records {
        pattern(&base, index, &mut expected);
        match rx.read_reply(RECORD as u32).await.unwrap() {
            Some(wire::Reply::Response(body)) => {
                assert!(body == expected, "reply {index} differs")
            }
            other => panic!("reply {index}: {other:?}"),
        }
    }
    assert_eq!(rx.read_reply(RECORD as u32).await.unwrap(), None);
    (writer.await.unwrap(), server.await.unwrap())
}

fn one_mebibyte_limit() -> RekeyPolicy {
    RekeyPolicy {
        max_bytes: 1 << 20,
        ..RekeyPolicy::DEFAULT
    }
}

/// 1 GiB each way with a rekey every MiB, in the preferred suite (AES-GCM on
/// the CPUs here; about 5 s in the debug build).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_each_way_rekeys_every_mebibyte() {
    let started = Instant::now();
    let (up, down) = transfer(Suite::preferred(), one_mebibyte_limit(), 1024).await;
    // A REKEY can only follow a whole record: each record (5 bytes over the
    // limit) reaches the limit inside it, and the sender rekeys at its end.
    assert_eq!((up, down), (1024, 1024));
    eprintln!(
        "{}: 1 GiB each way, {up} and {down} rekeys, in {:.2} s",
        Suite::preferred(),
        started.elapsed().as_secs_f64()
    );
}

/// 128 MiB each way, a rekey every MiB, in each suite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_suite_rekeys_every_mebibyte_of_a_long_transfer() {
    for suite in Suite::ALL {
        let started = Instant::now();
        let (up, down) = transfer(suite, one_mebibyte_limit(), 128).await;
        assert_eq!((up, down), (128, 128), "{suite}");
        eprintln!(
            "{suite}: 128 MiB each way in {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
}

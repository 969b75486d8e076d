//! The X25519 implementations interoperate: a peer on curve25519-dalek and one on
//! AWS-LC (the `aws-lc` feature) complete every handshake version and suite with
//! each other, produce byte-identical messages from the same fixed ephemerals, and
//! treat a low-order ephemeral key alike (accepted, as Noise allows and
//! docs/PROTOCOL.md says). Built without the feature, only curve25519-dalek runs,
//! and the same tests check it against itself.

use noise_echo::identity::Identity;
use noise_echo::wire::{
    self, Established, ExpectMessage1, Initiator, LocalIdentity, Offer, RekeyPolicy, Responder,
    ServerParams, Suite, X25519,
};

const CLIENT_EPHEMERAL: [u8; 32] = [0x11; 32];
const SERVER_EPHEMERAL: [u8; 32] = [0x22; 32];

fn identities() -> (Identity, Identity) {
    (
        Identity::from_seed(&[1; 32], "client"),
        Identity::from_seed(&[2; 32], "server"),
    )
}

/// Every (client, server) pairing of the implementations built.
fn pairings() -> Vec<(X25519, X25519)> {
    X25519::ALL
        .iter()
        .flat_map(|&client| X25519::ALL.iter().map(move |&server| (client, server)))
        .collect()
}

fn server_params() -> ServerParams {
    ServerParams::new(1 << 20, RekeyPolicy::DEFAULT)
}

/// The three messages and both ends of one handshake; `fixed` fixes both ephemerals.
struct Run {
    messages: [Vec<u8>; 3],
    client: Established,
    server: Established,
}

fn handshake(
    client: &LocalIdentity,
    server: &LocalIdentity,
    v2_suite: Option<Suite>,
    fixed: bool,
) -> wire::Result<Run> {
    let (initiator, message1) = match (v2_suite, fixed) {
        (None, false) => Initiator::start(client)?,
        (None, true) => {
            Initiator::start_with_fixed_ephemeral_for_testing_only(client, &CLIENT_EPHEMERAL)?
        }
        (Some(suite), false) => Initiator::start_v2(client, &Offer::new(suite))?,
        (Some(suite), true) => Initiator::start_v2_with_fixed_ephemeral_for_testing_only(
            client,
            &Offer::new(suite),
            &CLIENT_EPHEMERAL,
        )?,
    };
    let (responder, message2) = responder(server, v2_suite, fixed)?.read(&message1)?;
    let pending = initiator.read(&message2)?;
    assert_eq!(pending.server_key(), server.public_key());
    let (message3, client_side) = pending.approve()?;
    let server_side = responder.read(&message3)?;
    Ok(Run {
        messages: [message1.to_vec(), message2, message3],
        client: client_side,
        server: server_side,
    })
}

fn responder(
    server: &LocalIdentity,
    v2_suite: Option<Suite>,
    fixed: bool,
) -> wire::Result<ExpectMessage1> {
    match (v2_suite, fixed) {
        (None, false) => Responder::new(server),
        (None, true) => Responder::with_fixed_ephemeral_for_testing_only(server, &SERVER_EPHEMERAL),
        (Some(suite), false) => Responder::new_v2(server, &Offer::new(suite), server_params()),
        (Some(suite), true) => Responder::new_v2_with_fixed_ephemeral_for_testing_only(
            server,
            &Offer::new(suite),
            server_params(),
            &SERVER_EPHEMERAL,
        ),
    }
}

/// v1, and v2 with each suite.
fn versions() -> Vec<Option<Suite>> {
    std::iter::once(None)
        .chain(Suite::ALL.iter().copied().map(Some))
        .collect()
}

#[test]
fn every_pairing_of_implementations_completes_every_handshake() {
    let (client_identity, server_identity) = identities();
    for (client_x25519, server_x25519) in pairings() {
        let client = LocalIdentity::with_x25519(&client_identity, client_x25519);
        let server = LocalIdentity::with_x25519(&server_identity, server_x25519);
        for version in versions() {
            let what = format!("client {client_x25519:?}, server {server_x25519:?}, {version:?}");
            let run = handshake(&client, &server, version, false).expect(&what);
            assert_eq!(
                run.client.handshake_hash(),
                run.server.handshake_hash(),
                "{what}"
            );
            assert_eq!(run.server.peer(), client.public_key(), "{what}");
            assert_eq!(run.client.peer(), server.public_key(), "{what}");
        }
    }
}

#[test]
fn fixed_ephemerals_give_the_same_bytes_on_every_implementation() {
    let (client_identity, server_identity) = identities();
    for version in versions() {
        let runs: Vec<_> = pairings()
            .into_iter()
            .map(|(client_x25519, server_x25519)| {
                let client = LocalIdentity::with_x25519(&client_identity, client_x25519);
                let server = LocalIdentity::with_x25519(&server_identity, server_x25519);
                handshake(&client, &server, version, true).unwrap()
            })
            .collect();
        for run in &runs[1..] {
            assert_eq!(run.messages, runs[0].messages, "{version:?}");
            assert_eq!(
                run.client.handshake_hash(),
                runs[0].client.handshake_hash(),
                "{version:?}"
            );
        }
    }
}

#[test]
fn a_low_order_client_ephemeral_is_answered_alike_by_every_implementation() {
    // Noise lets an implementation accept a low-order ephemeral (the all-zero DH
    // result only discards the sender's own contribution); we accept it with
    // curve25519-dalek, and AWS-LC, which refuses all-zero results, must not change
    // that. u = 0 and u = 1 are low-order points.
    let (_, server_identity) = identities();
    let mut one = [0u8; 32];
    one[0] = 1;
    for low_order in [[0u8; 32], one] {
        let replies: Vec<_> = X25519::ALL
            .iter()
            .map(|&implementation| {
                let server = LocalIdentity::with_x25519(&server_identity, implementation);
                let (_, message2) = responder(&server, None, true)
                    .unwrap()
                    .read(&low_order)
                    .unwrap_or_else(|error| panic!("{implementation:?}: {error}"));
                message2
            })
            .collect();
        assert!(replies.iter().all(|reply| *reply == replies[0]));
    }
}

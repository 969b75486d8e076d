//! What the library does not show, recovered from its bytes: snow, driven directly
//! with the vectors' keys and fed the library's handshake messages, opens messages
//! 2 and 3 (their payloads) and gives the split's keys; ring opens the transport
//! messages with them and follows each REKEY.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};

use noise_echo::wire::Suite;

use crate::{payload, Parties};
fn algorithm(suite: Suite) -> &'static ring::aead::Algorithm {
    match suite {
        Suite::ChaChaPolyBlake2s => &CHACHA20_POLY1305,
        Suite::AesGcmSha256 => &AES_256_GCM,
        _ => unreachable!("a suite without a cipher here: {suite}"),
    }
}

/// Noise's nonce for `suite`: 4 zero bytes, then the counter, little-endian for
/// ChaChaPoly and big-endian for AESGCM.
fn nonce(suite: Suite, counter: u64) -> Nonce {
    let mut bytes = [0; 12];
    match suite {
        Suite::AesGcmSha256 => bytes[4..].copy_from_slice(&counter.to_be_bytes()),
        _ => bytes[4..].copy_from_slice(&counter.to_le_bytes()),
    }
    Nonce::assume_unique_for_key(bytes)
}

fn ring_key(suite: Suite, key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(algorithm(suite), key).unwrap())
}

pub(super) fn open(suite: Suite, key: &[u8; 32], counter: u64, message: &[u8]) -> Vec<u8> {
    let mut in_out = message.to_vec();
    let len = ring_key(suite, key)
        .open_in_place(nonce(suite, counter), Aad::empty(), &mut in_out)
        .expect("the transport message opens with its key and nonce")
        .len();
    in_out.truncate(len);
    in_out
}

/// Noise `Rekey()`: the first 32 bytes of the encryption of 32 zero bytes at
/// nonce 2^64 - 1 with empty associated data.
pub(super) fn rekey(suite: Suite, key: &[u8; 32]) -> [u8; 32] {
    let mut next = [0u8; 32];
    let _tag = ring_key(suite, key)
        .seal_in_place_separate_tag(nonce(suite, u64::MAX), Aad::empty(), &mut next)
        .unwrap();
    next
}

/// snow, driven directly as both Noise parties with the vectors' keys, fed the
/// library's handshake messages: it must produce the same messages, and it reveals
/// what the library encrypted.
pub(super) struct SnowReplay {
    /// Message 2's plaintext payload, as the client opens it.
    pub(super) msg2_payload: Vec<u8>,
    /// Message 3's plaintext payload, as the server opens it.
    pub(super) msg3_payload: Vec<u8>,
    /// Noise's handshake hash after message 3.
    pub(super) handshake_hash: [u8; 32],
    /// The split's first key: client to server.
    pub(super) client_key: [u8; 32],
    /// The split's second key: server to client.
    pub(super) server_key: [u8; 32],
}

impl SnowReplay {
    /// `messages`: msg1, msg2 and msg3 as framed on the wire.
    pub(super) fn run(
        parties: &Parties,
        suite: Suite,
        prologue: &[u8],
        messages: [&[u8]; 3],
    ) -> Self {
        let [msg1, msg2, msg3] = messages.map(payload);
        fn builder<'a>(
            suite: Suite,
            prologue: &'a [u8],
            private: &'a [u8; 32],
            ephemeral: &'a [u8; 32],
        ) -> snow::Builder<'a> {
            snow::Builder::new(suite.noise_name().parse().unwrap())
                .prologue(prologue)
                .unwrap()
                .local_private_key(private)
                .unwrap()
                .fixed_ephemeral_key_for_testing_only(ephemeral)
        }
        let client_noise = parties.client.noise_keypair();
        let server_noise = parties.server.noise_keypair();
        let mut initiator = builder(
            suite,
            prologue,
            client_noise.private(),
            &parties.client_ephemeral,
        )
        .build_initiator()
        .unwrap();
        let mut responder = builder(
            suite,
            prologue,
            server_noise.private(),
            &parties.server_ephemeral,
        )
        .build_responder()
        .unwrap();
        let mut out = vec![0u8; 65535];
        let mut read = vec![0u8; 65535];
        let len = initiator.write_message(&[], &mut out).unwrap();
        assert_eq!(&out[..len], msg1);
        assert_eq!(responder.read_message(msg1, &mut read).unwrap(), 0);
        let len = initiator.read_message(msg2, &mut read).unwrap();
        let msg2_payload = read[..len].to_vec();
        let len = responder.write_message(&msg2_payload, &mut out).unwrap();
        assert_eq!(&out[..len], msg2);
        // The client's payload is what the server opens from the library's msg3;
        // snow's initiator, given it, writes that same msg3.
        let len = responder.read_message(msg3, &mut read).unwrap();
        let msg3_payload = read[..len].to_vec();
        let len = initiator.write_message(&msg3_payload, &mut out).unwrap();
        assert_eq!(&out[..len], msg3);
        assert_eq!(
            initiator.get_handshake_hash(),
            responder.get_handshake_hash()
        );
        let handshake_hash = initiator.get_handshake_hash().try_into().unwrap();
        let (client_key, server_key) = initiator.dangerously_get_raw_split();
        assert_eq!(
            (client_key, server_key),
            responder.dangerously_get_raw_split()
        );
        Self {
            msg2_payload,
            msg3_payload,
            handshake_hash,
            client_key,
            server_key,
        }
    }
}

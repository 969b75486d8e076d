//! The OpenSSH private key parser and the public key line parser fed arbitrary text:
//! they must never panic, and a key that parses must round-trip.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use noise_echo::identity::PublicKey;
use noise_echo::openssh::keyfile;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(identity) = keyfile::parse_identity(&text, Path::new("fuzz")) {
        let encoded = keyfile::encode_identity(&identity).expect("a parsed key encodes");
        let again = keyfile::parse_identity(&encoded, Path::new("fuzz")).expect("re-parses");
        assert_eq!(again.public_key(), identity.public_key());
    }
    if let Ok((key, comment)) = PublicKey::parse_openssh_line(&text) {
        let line = key.to_openssh_line(&comment);
        let (again, _) = PublicKey::parse_openssh_line(&line).expect("a printed key parses");
        assert_eq!(again, key);
    }
});

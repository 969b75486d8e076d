//! The KRL parser (OpenSSH key revocation lists, `ssh-keygen -k`) and the
//! revoked-keys file loader fed arbitrary bytes: they must never panic, what a
//! parsed KRL keeps must grow at most linearly with its input, and a parsed KRL
//! answers every revocation query.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use noise_echo::identity::Identity;
use noise_echo::openssh::certificate::{CertType, Certificate};
use noise_echo::openssh::krl::{Krl, KRL_MAGIC};
use noise_echo::openssh::revoked::RevokedKeys;

fuzz_target!(|data: &[u8]| {
    // Most inputs should reach the sections: give them the magic when they lack it.
    let mut bytes = data.to_vec();
    if !bytes.starts_with(KRL_MAGIC) {
        bytes.splice(0..0, KRL_MAGIC.iter().copied());
    }
    let key = Identity::from_seed(&[7; 32], "").public_key();
    let ca = Identity::from_seed(&[9; 32], "").public_key();
    let certificate = |serial: u64, key_id: &str| Certificate {
        key,
        serial,
        cert_type: CertType::User,
        key_id: key_id.to_owned(),
        principals: vec!["alice".to_owned()],
        valid_after: 0,
        valid_before: u64::MAX,
        critical_options: Vec::new(),
        extensions: Vec::new(),
        signature_key: ca,
    };
    if let Ok(krl) = Krl::parse(&bytes) {
        // Every kept entry took at least 8 bytes of input (a serial; keys, key IDs
        // and hashes take more), so what is kept is bounded by the input.
        let summary = krl.summary();
        let kept = summary.serial_ranges
            + summary.serial_bitmaps
            + summary.key_ids
            + summary.explicit_keys
            + summary.sha1_fingerprints
            + summary.sha256_fingerprints;
        assert!(
            kept <= bytes.len() / 4,
            "{summary:?} from {} bytes",
            bytes.len()
        );
        let _ = krl.is_revoked_key(&key);
        for serial in [0, 1, 2, 100, u64::MAX] {
            let _ = krl.certificate_revocation(&certificate(serial, ""));
        }
        let _ = krl.certificate_revocation(&certificate(5, "alice"));
    }
    // The loader as the server uses it: KRL or text list, whichever the bytes are.
    for input in [data, &bytes[..]] {
        if let Ok(revoked) = RevokedKeys::parse(input, Path::new("fuzz")) {
            let _ = revoked.is_revoked_key(&key);
            let _ = revoked.is_revoked_certificate(&certificate(1, "alice"));
        }
    }
});

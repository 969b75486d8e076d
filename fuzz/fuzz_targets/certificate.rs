//! OpenSSH certificate blobs fed arbitrary bytes, as a peer sends them in a v2
//! handshake's openssh_certificate field: `Certificate::from_blob`, the handshake's
//! `certificate_for`, and then every policy check (authorized_keys'
//! `authorize_client`, the TrustedUserCAKeys check, known_hosts' `verify_host`) and
//! the `ssh-keygen -L` listing on whatever decodes. Nothing may panic; a decoded
//! certificate's signature verified, so it came from `signature_key`.
//!
//! Mutating the seeds (the ssh-keygen fixtures, written by `seeds`) reaches past the
//! signature only through the length fields and the bytes before it; that covers
//! the decoder's bounds, which is what a hostile peer controls.
#![no_main]

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use noise_echo::openssh::authorized_keys::AuthorizedKeys;
use noise_echo::openssh::certificate::Certificate;
use noise_echo::openssh::known_hosts::KnownHosts;
use noise_echo::openssh::trusted_user_ca::{AuthorizedPrincipals, TrustedUserCas};
use noise_echo::wire;

fuzz_target!(|data: &[u8]| {
    let Ok(certificate) = Certificate::from_blob(data) else {
        return;
    };
    // The key it certifies passes the handshake's check; any other key does not.
    assert!(wire::certificate_for(data, &certificate.key).is_ok());
    let _ = certificate.to_keygen_listing();
    let ca = certificate.signature_key.to_openssh_line("ca");
    let now = UNIX_EPOCH + Duration::from_secs(1_767_225_600);
    let addr: IpAddr = "127.0.0.5".parse().unwrap();
    let authorized = AuthorizedKeys::parse(
        format!("cert-authority,principals=\"alice,localhost\" {ca}").as_bytes(),
        Path::new("fuzz"),
    );
    let _ = authorized.authorize_client(&certificate.key, Some(&certificate), addr, now);
    let cas = TrustedUserCas::parse(ca.as_bytes(), Path::new("fuzz"));
    let principals = AuthorizedPrincipals::parse(b"alice\nlocalhost\n", Path::new("fuzz"));
    let _ = cas.check(&certificate, &certificate.key, &principals, addr, now);
    let known = KnownHosts::parse(
        format!("@cert-authority * {ca}").as_bytes(),
        Path::new("fuzz"),
    );
    let _ = known.verify_host("localhost", 22, &certificate.key, Some(&certificate), now);
});

//! The known_hosts parser fed arbitrary bytes: it must never panic, lookups must
//! not panic, and an entry appended to any file is found again.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use noise_echo::identity::Identity;
use noise_echo::openssh::known_hosts::{self, HostVerdict, KnownHosts};

fuzz_target!(|data: &[u8]| {
    let known = KnownHosts::parse(data, Path::new("fuzz"));
    let key = Identity::from_seed(&[7; 32], "").public_key();
    for (host, port) in [
        ("localhost", 1234),
        ("127.0.0.1", 22),
        ("::1", 9),
        ("example.org", 1234),
    ] {
        let _ = known.check(host, port, &key);
    }
    // Appending an entry to whatever is there makes that host trusted, unless the
    // file already pins another key or revokes this one for it.
    let field = known_hosts::host_field("fuzz.example", 4321);
    let appended = known_hosts::append_entry(data, &field, &key);
    let after = KnownHosts::parse(&appended, Path::new("fuzz"));
    let before = known.check("fuzz.example", 4321, &key);
    let status = after.check("fuzz.example", 4321, &key);
    if matches!(
        before,
        HostVerdict::Unknown { .. } | HostVerdict::Trusted(_)
    ) {
        assert!(matches!(status, HostVerdict::Trusted(_)), "{status:?}");
    }
});

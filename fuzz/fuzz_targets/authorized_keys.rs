//! The authorized_keys parser fed arbitrary bytes: it must never panic, every
//! trusted line must print back to a line that parses to the same entry,
//! authorizing against it must not panic, and a key only on untrusted lines is
//! refused with a denial naming its line.
//!
//! Findings (all in the oracle, not the parser): a comment, a `from=` pattern, then a
//! comment starting with a bare CR printed back with a space there, as `append_line`
//! intends (no line can be smuggled into the file). The oracle now compares fields
//! after that substitution, checks the pattern admits the same addresses, and that
//! a second round trip is exact.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use noise_echo::openssh::authorized_keys::{self, AuthorizedKeys};

fuzz_target!(|data: &[u8]| {
    let keys = AuthorizedKeys::parse(data, Path::new("fuzz"));
    // A key named only on untrusted lines is never admitted, and the refusal names
    // a line without the client's text naming the file.
    for untrusted in &keys.untrusted {
        if keys.entries.iter().any(|entry| entry.key == untrusted.key) {
            continue;
        }
        let denial = keys
            .authorize(
                &untrusted.key,
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                SystemTime::now(),
            )
            .expect_err("an untrusted line admitted a key");
        assert!(denial.line().is_some());
        // A path with a blank, which no fingerprint or address text holds.
        assert!(denial
            .log_text(Path::new("the file"))
            .starts_with("the file:"));
        assert!(!denial.to_string().contains("the file"));
    }
    for entry in &keys.entries {
        let printed = authorized_keys::append_line(b"", &entry.to_line());
        let reparsed = AuthorizedKeys::parse(&printed, Path::new("fuzz"));
        assert_eq!(
            reparsed.entries.len(),
            1,
            "{:?} printed as {:?}",
            entry,
            entry.to_line()
        );
        let again = &reparsed.entries[0];
        // append_line turns CR and LF into spaces, so that no text can smuggle a line
        // of its own into the file; everything else prints as it was.
        let sanitize = |text: &str| -> String {
            text.chars()
                .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
                .collect()
        };
        assert_eq!(again.key, entry.key);
        assert_eq!(again.expiry, entry.expiry);
        assert_eq!(
            again.from.as_ref().map(|from| from.as_str().to_owned()),
            entry.from.as_ref().map(|from| sanitize(from.as_str()))
        );
        // A pattern holding CR or space matches no address text either way, so the
        // restriction is the same.
        for addr in ["127.0.0.1", "10.1.2.3", "::1", "192.0.2.7"] {
            let addr: IpAddr = addr.parse().unwrap();
            assert_eq!(
                again.from.as_ref().map(|from| from.matches(addr)),
                entry.from.as_ref().map(|from| from.matches(addr))
            );
        }
        // A comment's CR next to the key becomes a separator the parser skips.
        assert_eq!(
            again.comment,
            sanitize(&entry.comment).trim_start_matches([' ', '\t'])
        );
        assert_eq!(again.options, sanitize(&entry.options));
        // After one round trip, printing is exact.
        let twice = AuthorizedKeys::parse(
            &authorized_keys::append_line(b"", &again.to_line()),
            Path::new("fuzz"),
        );
        assert_eq!(twice.entries[0].to_line(), again.to_line());
        for addr in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            let _ = keys.authorize(&entry.key, addr, SystemTime::now());
        }
        // Removing a key removes every line holding it, and nothing else trusted.
        let (kept, _) = authorized_keys::remove_key(data, &entry.key.fingerprint());
        let rest = AuthorizedKeys::parse(&kept, Path::new("fuzz"));
        assert!(!rest.contains(&entry.key));
    }
});

//! authorized_keys against the outside world: files shared with sshd and the
//! fixtures made by the real ssh-keygen, and option names in any case.

use super::*;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("keys")
            .join(name),
    )
    .unwrap()
}

#[test]
fn other_key_types_are_described_as_ssh_keygen_lf_does() {
    // keys/forge_user.keys.lf is `ssh-keygen -lf keys/forge_user.keys`.
    let keys = AuthorizedKeys::parse(&fixture("forge_user.keys"), Path::new("USER.keys"));
    let expected = String::from_utf8(fixture("forge_user.keys.lf")).unwrap();
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(keys.entries.len(), 2);
    assert_eq!(
        keys.other_key_types
            .iter()
            .map(|other| other.line)
            .collect::<Vec<_>>(),
        [1, 3]
    );
    for other in &keys.other_key_types {
        let shown = format!(
            "{} {} no comment ({})",
            other.bits.unwrap(),
            other.fingerprint.as_deref().unwrap(),
            other.label
        );
        assert_eq!(shown, expected[other.line - 1]);
    }
    let warnings: Vec<String> = keys.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "USER.keys:1: ssh-rsa key skipped: noise-echo only uses ssh-ed25519 keys",
            "USER.keys:3: ecdsa-sha2-nistp256 key skipped: noise-echo only uses ssh-ed25519 keys"
        ]
    );
    // Odd blobs give no size or fingerprint rather than a panic.
    let keys = parse("ssh-rsa !!! x\nssh-rsa AAAA\nssh-ed25519-cert-v01@openssh.com AAAA c\n");
    let described: Vec<_> = keys
        .other_key_types
        .iter()
        .map(|other| {
            (
                other.bits,
                other.fingerprint.is_some(),
                other.label.as_str(),
            )
        })
        .collect();
    assert_eq!(
        described,
        [
            (None, false, "RSA"),
            (None, true, "RSA"),
            (Some(256), true, "ED25519-CERT")
        ]
    );
}

#[test]
fn an_authorized_keys_shared_with_sshd_loads_what_noise_echo_can_honour() {
    let keys = AuthorizedKeys::parse(&fixture("authorized_keys_sshd"), Path::new("ak"));
    let trusted: Vec<usize> = keys.entries.iter().map(|entry| entry.line).collect();
    assert_eq!(trusted, [2, 3, 7, 8]);
    let untrusted: Vec<(usize, String)> = keys
        .untrusted
        .iter()
        .map(|entry| (entry.line, entry.reason.to_string()))
        .collect();
    assert_eq!(
        untrusted,
        [
            (4, "the option command= (forces a command)".to_owned()),
            (
                5,
                "the option pty (gives back the pty that restrict takes away)".to_owned()
            )
        ]
    );
    assert_eq!(keys.other_key_types[0].line, 6);
    assert_eq!(keys.entries[3].comment, "caf\u{fffd}@latin1");
    assert_eq!(keys.warnings.len(), 3);
}

#[test]
fn comment_at_finds_trusted_and_untrusted_lines() {
    let keys = parse(&format!(
        "{}\ncommand=\"x\" {}\nssh-rsa AAAA r\n",
        line(1, "one"),
        line(2, "two")
    ));
    assert_eq!(keys.comment_at(1), Some("one"));
    assert_eq!(keys.comment_at(2), Some("two"));
    assert_eq!(keys.comment_at(3), None);
}

/// `name` with the case of each ASCII letter flipped where `flips` says so.
fn recase(name: &str, flips: &[bool]) -> String {
    name.chars()
        .zip(flips.iter().cycle())
        .map(|(c, &flip)| if flip { c.to_ascii_uppercase() } else { c })
        .collect()
}

proptest! {
    #[test]
    fn option_names_mean_the_same_in_any_case(
        flips in proptest::collection::vec(any::<bool>(), 1..24),
        harmless in prop::sample::select(vec![
            "restrict", "no-pty", "no-port-forwarding", "no-agent-forwarding",
            "no-x11-forwarding", "no-user-rc", "no-touch-required", "no-verify-required",
        ]),
        refused in prop::sample::select(vec![
            "pty", "port-forwarding", "agent-forwarding", "x11-forwarding", "user-rc",
            "cert-authority", "touch-required", "verify-required", "command=\"x\"",
            "environment=\"A=b\"", "permitopen=\"h:1\"", "permitlisten=\"1\"",
            "tunnel=\"1\"", "principals=\"p\"",
        ]),
    ) {
        let harmless = recase(harmless, &flips);
        let keys = parse(&format!("{harmless} {}\n", line(1, "")));
        prop_assert_eq!(keys.entries.len(), 1, "{}", harmless);
        // Only the name's case is flipped, not the value's.
        let (name, value) = refused.split_once('=').map_or((refused, None), |(n, v)| (n, Some(v)));
        let refused = match value {
            Some(value) => format!("{}={value}", recase(name, &flips)),
            None => recase(name, &flips),
        };
        let keys = parse(&format!("{harmless},{refused} {}\n", line(1, "")));
        prop_assert!(keys.entries.is_empty(), "{}", refused);
        prop_assert!(
            matches!(keys.untrusted[0].reason, UntrustedReason::Unsupported(_)),
            "{}: {:?}", refused, keys.untrusted
        );
    }
}

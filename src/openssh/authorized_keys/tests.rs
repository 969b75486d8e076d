//! Tests of authorized_keys file parsing, its options and the editing helpers (the
//! expiry timespec is tested in expiry.rs), kept apart so mod.rs reads as the parser.

use super::*;
use crate::identity::Identity;
use proptest::prelude::*;

fn key(seed: u8) -> PublicKey {
    Identity::from_seed(&[seed; 32], "").public_key()
}

fn line(seed: u8, comment: &str) -> String {
    key(seed).to_openssh_line(comment)
}

fn parse(text: &str) -> AuthorizedKeys {
    AuthorizedKeys::parse(text.as_bytes(), Path::new("/etc/ak"))
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn at(date: &str) -> SystemTime {
    Expiry::parse(date).unwrap().to_system_time()
}

const RSA_LINE: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC7 rsa@host";

#[test]
fn blank_comment_and_plain_lines() {
    let text = format!(
        "# header\n\n   \n\t# indented comment\n{}\n  {}  \r\n",
        line(1, "alice@laptop"),
        line(2, "")
    );
    let keys = parse(&text);
    assert!(keys.warnings.is_empty(), "{:?}", keys.warnings);
    assert_eq!(keys.entries.len(), 2);
    assert_eq!(keys.entries[0].key, key(1));
    assert_eq!(keys.entries[0].comment, "alice@laptop");
    assert_eq!(keys.entries[0].line, 5);
    assert_eq!(keys.entries[1].comment, "");
    assert_eq!(keys.entries[1].line, 6);
    assert!(keys.contains(&key(1)) && !keys.contains(&key(3)));
}

#[test]
fn malformed_lines_are_reported_with_path_and_line_and_neighbours_load() {
    let truncated = &line(2, "")[..40];
    let text = format!(
        "{}\nssh-ed25519\n{truncated}\nnot a key line\nssh-ed25519 !!!! c\n{}\n",
        line(1, "first"),
        line(3, "last")
    );
    let keys = parse(&text);
    assert_eq!(
        keys.entries.iter().map(|e| e.line).collect::<Vec<_>>(),
        [1, 6]
    );
    let lines: Vec<usize> = keys.warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, [2, 3, 4, 5]);
    for warning in &keys.warnings {
        let shown = warning.to_string();
        assert!(
            shown.starts_with(&format!("/etc/ak:{}: malformed", warning.line)),
            "{shown}"
        );
    }
}

#[test]
fn other_key_types_are_skipped_with_a_warning() {
    let text = format!(
        "{RSA_LINE}\necdsa-sha2-nistp256 AAAAE2VjZHNh x\nsk-ssh-ed25519@openssh.com AAAA x\n\
         ssh-ed25519-cert-v01@openssh.com AAAA x\nno-pty ssh-dss AAAA x\n{}\n",
        line(1, "ok")
    );
    let keys = parse(&text);
    assert_eq!(keys.entries.len(), 1);
    assert_eq!(keys.warnings.len(), 5);
    assert!(keys.warnings[0].message.contains("ssh-rsa key skipped"));
    assert!(keys.warnings[4].message.contains("ssh-dss"));
}

#[test]
fn options_that_take_away_only_sshd_features_are_accepted_in_any_case() {
    for options in [
        "restrict",
        "no-pty",
        "no-port-forwarding",
        "no-agent-forwarding",
        "no-X11-forwarding",
        "no-x11-forwarding",
        "no-user-rc",
        "no-touch-required",
        "no-verify-required",
        "RESTRICT",
        "No-Pty",
        "NO-X11-FORWARDING",
        "restrict,from=\"10.0.0.0/8\",no-pty",
        "no-agent-forwarding,no-port-forwarding,no-pty,no-user-rc,no-X11-forwarding",
    ] {
        let keys = parse(&format!("{options} {}\n", line(1, "c")));
        assert!(keys.warnings.is_empty(), "{options}: {:?}", keys.warnings);
        assert!(keys.untrusted.is_empty(), "{options}");
        assert_eq!(keys.entries.len(), 1, "{options}");
        assert_eq!(keys.entries[0].options, options);
        assert!(keys
            .authorize(&key(1), ip("10.1.1.1"), SystemTime::now())
            .is_ok());
    }
}

#[test]
fn options_that_grant_or_change_something_make_the_line_untrusted() {
    for (options, shown) in [
        ("command=\"/bin/true\"", "command="),
        ("Command=\"x\"", "Command="),
        ("environment=\"A=b\"", "environment="),
        ("permitopen=\"host:80\"", "permitopen="),
        ("PermitOpen=\"host:80\"", "PermitOpen="),
        ("permitlisten=\"8080\"", "permitlisten="),
        ("tunnel=\"0\"", "tunnel="),
        ("principals=\"alice\"", "principals="),
        ("cert-authority", "cert-authority"),
        ("Cert-Authority", "Cert-Authority"),
        ("restrict,pty", "pty"),
        ("restrict,PTY", "PTY"),
        ("pty", "pty"),
        ("port-forwarding", "port-forwarding"),
        ("agent-forwarding", "agent-forwarding"),
        ("X11-forwarding", "X11-forwarding"),
        ("user-rc", "user-rc"),
        ("touch-required", "touch-required"),
        ("verify-required", "verify-required"),
        ("from=\"10.0.0.0/8\",no-pty,command=\"x\"", "command="),
    ] {
        let keys = parse(&format!("{options} {}\n", line(1, "")));
        assert!(keys.entries.is_empty(), "{options}");
        assert_eq!(keys.warnings.len(), 1);
        let message = &keys.warnings[0].message;
        assert!(message.contains("not trusted"), "{message}");
        assert!(message.contains(&format!("option {shown} (")), "{message}");
        assert_eq!(keys.untrusted.len(), 1, "{options}");
        let untrusted = &keys.untrusted[0];
        assert_eq!((untrusted.key, untrusted.line), (key(1), 1));
        let UntrustedReason::Unsupported(unsupported) = &untrusted.reason else {
            panic!("{options}: {:?}", untrusted.reason);
        };
        assert_eq!(unsupported[0].to_string(), shown);
        assert_eq!(untrusted.options, options);
    }
    // Several refused options are all named, in order.
    let keys = parse(&format!("command=\"x\",pty {}\n", line(1, "")));
    assert_eq!(
        keys.untrusted[0].reason.to_string(),
        "the option command= (forces a command), pty (gives back the pty that restrict takes away)"
    );
}

#[test]
fn options_sshd_does_not_know_or_misspells_make_the_line_malformed() {
    for (options, why) in [
        ("no-restrict", "unknown option \"no-restrict\""),
        ("no-cert-authority", "unknown option \"no-cert-authority\""),
        ("no-from", "unknown option"),
        ("nopty", "unknown option"),
        ("restrict=\"yes\"", "takes no value"),
        ("no-pty=\"x\"", "takes no value"),
        ("command", "needs a value"),
        ("permitopen=host:80", "must be in double quotes"),
    ] {
        let keys = parse(&format!("{options} {}\n", line(1, "")));
        assert!(keys.entries.is_empty(), "{options}");
        // The key is known, so that a refusal can name the line.
        assert!(
            matches!(&keys.untrusted[0].reason, UntrustedReason::Malformed(reason) if reason.contains(why)),
            "{options}: {:?}",
            keys.untrusted
        );
        let message = &keys.warnings[0].message;
        assert!(message.contains("malformed"), "{options}: {message}");
        assert!(message.contains(why), "{options}: {message}");
    }
}

#[test]
fn denials_name_the_line_and_option_in_the_log_and_nothing_of_the_file_to_the_client() {
    let text = format!(
        "# keys\ncommand=\"/bin/date\" {}\nexpiry-time=\"20200101Z\" {}\nfrom=\"10.0.0.0/8\" {}\nno-restrict {}\n",
        line(1, "cmd"),
        line(2, "old"),
        line(3, "office"),
        line(5, "typo")
    );
    let keys = parse(&text);
    let now = at("20260101Z");
    let addr = ip("192.0.2.1");
    let path = Path::new("/etc/ak");
    let cases = [
        (
            key(1),
            Some(2),
            "/etc/ak:2: key {fp} is not trusted because of the option command= (forces a command)",
            "key {fp} is not authorized on this server",
        ),
        (
            key(2),
            Some(3),
            "/etc/ak:3: key {fp} expired on 2020-01-01 00:00:00 UTC (expiry-time=)",
            "key {fp} expired on 2020-01-01 00:00:00 UTC",
        ),
        (
            key(3),
            Some(4),
            "/etc/ak:4: key {fp} is not allowed from 192.0.2.1 (from=\"10.0.0.0/8\")",
            "key {fp} is not allowed from 192.0.2.1",
        ),
        (
            key(5),
            Some(5),
            "/etc/ak:5: key {fp} is not trusted: malformed options: unknown option \"no-restrict\" (sshd refuses the line too)",
            "key {fp} is not authorized on this server",
        ),
        (
            key(4),
            None,
            "key {fp} is not in /etc/ak",
            "key {fp} is not in authorized_keys",
        ),
    ];
    for (client, line, logged, told) in cases {
        let fingerprint = client.fingerprint().to_string();
        let denial = keys.authorize(&client, addr, now).unwrap_err();
        assert_eq!(denial.line(), line);
        assert_eq!(denial.log_text(path), logged.replace("{fp}", &fingerprint));
        let told_text = denial.to_string();
        assert_eq!(told_text, told.replace("{fp}", &fingerprint));
        assert!(!told_text.contains("/etc/ak") && !told_text.contains("command"));
    }
}

#[test]
fn an_untrusted_line_does_not_hide_a_trusted_one_and_the_first_refusal_is_reported() {
    let text = format!(
        "command=\"x\" {}\n{} plain\nfrom=\"10.0.0.0/8\" {}\ncert-authority {}\n",
        line(1, ""),
        line(1, ""),
        line(2, ""),
        line(2, "")
    );
    let keys = parse(&text);
    let now = SystemTime::now();
    assert_eq!(
        keys.authorize(&key(1), ip("192.0.2.1"), now).unwrap().line,
        2
    );
    // Line 3 (from=) comes before line 4 (untrusted): its refusal is reported.
    let denial = keys.authorize(&key(2), ip("192.0.2.1"), now).unwrap_err();
    assert!(
        matches!(denial, Denial::NotFromHere { line: 3, .. }),
        "{denial:?}"
    );
    let keys = parse(&format!(
        "cert-authority {}\nfrom=\"10.0.0.0/8\" {}\n",
        line(2, ""),
        line(2, "")
    ));
    let denial = keys.authorize(&key(2), ip("192.0.2.1"), now).unwrap_err();
    assert!(
        matches!(denial, Denial::Untrusted { line: 1, .. }),
        "{denial:?}"
    );
}

#[test]
fn option_names_are_case_insensitive_and_quoted_values_may_hold_commas_and_spaces() {
    let text = format!(
        "FROM=\"10.0.0.0/8,192.168.1.*\",Expiry-Time=\"20991231Z\" {} c\n",
        line(1, "")
    );
    let keys = parse(&text);
    assert!(keys.warnings.is_empty(), "{:?}", keys.warnings);
    let entry = &keys.entries[0];
    assert_eq!(
        entry.from.as_ref().unwrap().as_str(),
        "10.0.0.0/8,192.168.1.*"
    );
    assert_eq!(entry.expiry.unwrap().to_string(), "2099-12-31 00:00:00 UTC");
    assert_eq!(entry.comment, "c");
    assert_eq!(
        entry.options,
        "FROM=\"10.0.0.0/8,192.168.1.*\",Expiry-Time=\"20991231Z\""
    );
    assert_eq!(entry.to_line(), text.trim_end());
    // Spaces and escaped quotes inside quotes stay inside the option (sshd keeps
    // the text; this pattern then matches nothing, but the line parses).
    let keys = parse(&format!("from=\"a b,\\\"c\\\"\" {}\n", line(2, "x y")));
    assert!(keys.warnings.is_empty(), "{:?}", keys.warnings);
    assert_eq!(keys.entries[0].from.as_ref().unwrap().as_str(), "a b,\"c\"");
    assert_eq!(keys.entries[0].comment, "x y");
}

#[test]
fn bad_option_syntax_is_malformed() {
    for options in [
        "from=\"10.0.0.1",
        "from=10.0.0.1",
        "from",
        "from=\"10.0.0.1\",",
        "from=\"10.0.0.1\"x",
        ",from=\"10.0.0.1\"",
        "from=\"10.0.0.1\",from=\"10.0.0.2\"",
        "from=\"10.1.2.3/8\"",
        "from=\"\"",
        "expiry-time=\"2026\"",
        "expiry-time=\"20260230\"",
        "expiry-time=\"202601011260\"",
        "expiry-time=20260101",
    ] {
        let keys = parse(&format!("{options} {}\n{}\n", line(1, ""), line(2, "")));
        assert_eq!(keys.entries.len(), 1, "{options}");
        assert_eq!(keys.entries[0].key, key(2));
        assert_eq!(keys.warnings.len(), 1, "{options}");
        assert_eq!(keys.warnings[0].line, 1);
        assert!(
            keys.warnings[0].message.contains("malformed"),
            "{options}: {:?}",
            keys.warnings
        );
    }
}

#[test]
fn from_restricts_client_addresses() {
    let keys = parse(&format!(
        "from=\"10.0.0.0/8,!10.66.0.0/16,192.168.?.1,2001:db8::/32\" {}\n",
        line(1, "")
    ));
    let now = SystemTime::now();
    for allowed in ["10.1.2.3", "192.168.7.1", "2001:db8::42", "::ffff:10.0.0.1"] {
        assert!(
            keys.authorize(&key(1), ip(allowed), now).is_ok(),
            "{allowed}"
        );
    }
    for refused in [
        "10.66.1.1",
        "192.168.17.1",
        "11.0.0.1",
        "2001:db9::1",
        "::1",
    ] {
        let denial = keys.authorize(&key(1), ip(refused), now).unwrap_err();
        assert_eq!(
            denial.to_string(),
            format!("key {} is not allowed from {refused}", key(1).fingerprint())
        );
    }
    let denial = keys.authorize(&key(2), ip("10.0.0.1"), now).unwrap_err();
    assert_eq!(
        denial.to_string(),
        format!("key {} is not in authorized_keys", key(2).fingerprint())
    );
}

#[test]
fn expiry_refuses_after_the_instant_and_reads_utc() {
    let keys = parse(&format!(
        "expiry-time=\"202601020000\" {}\nexpiry-time=\"20260102000000Z\",expiry-time=\"20270101UTC\" {}\n",
        line(1, ""),
        line(2, "")
    ));
    assert!(keys.warnings.is_empty(), "{:?}", keys.warnings);
    let addr = ip("127.0.0.1");
    assert!(keys.authorize(&key(1), addr, at("20260101235959Z")).is_ok());
    // Still good during the expiry second, as in sshd.
    assert!(keys.authorize(&key(1), addr, at("20260102000000Z")).is_ok());
    let denial = keys
        .authorize(&key(1), addr, at("20260102000001Z"))
        .unwrap_err();
    assert_eq!(
        denial.to_string(),
        format!(
            "key {} expired on 2026-01-02 00:00:00 UTC",
            key(1).fingerprint()
        )
    );
    // Several expiry-time options: the earliest counts.
    assert!(keys.authorize(&key(2), addr, at("20260103Z")).is_err());
    assert!(keys
        .authorize(&key(1), addr, SystemTime::UNIX_EPOCH)
        .is_ok());
}

#[test]
fn first_line_whose_options_allow_the_connection_wins() {
    let text = format!(
        "from=\"10.0.0.0/8\" {} office\nexpiry-time=\"20200101Z\" {} old\n{} anywhere\n",
        line(1, ""),
        line(1, ""),
        line(1, "")
    );
    let keys = parse(&text);
    let now = at("20260101Z");
    assert_eq!(
        keys.authorize(&key(1), ip("10.1.1.1"), now).unwrap().line,
        1
    );
    // Refused by line 1's from= and line 2's expiry, admitted by line 3.
    let entry = keys.authorize(&key(1), ip("8.8.8.8"), now).unwrap();
    assert_eq!((entry.line, entry.comment.as_str()), (3, "anywhere"));
    // Without line 3, the first refusal is what the client hears.
    let keys = parse(text.lines().take(2).collect::<Vec<_>>().join("\n").as_str());
    let denial = keys.authorize(&key(1), ip("8.8.8.8"), now).unwrap_err();
    assert!(matches!(denial, Denial::NotFromHere { .. }), "{denial}");
}

#[test]
fn comments_that_are_not_utf8_are_accepted_and_other_bad_bytes_are_malformed() {
    let mut bytes = format!("{}\n", line(1, "a")).into_bytes();
    bytes.extend_from_slice(b"ssh-ed25519 \xff\xfe bad\n# caf\xe9 comment\n");
    bytes.extend_from_slice(format!("{}\n", line(2, "b")).as_bytes());
    // Latin-1 "café" and a stray byte: not UTF-8, only in the comment.
    bytes.extend_from_slice(format!("{} caf", line(3, "")).as_bytes());
    bytes.extend_from_slice(b"\xe9@host \xff\r\n");
    bytes.extend_from_slice(b"from=\"10.0.0.\xff\" ");
    bytes.extend_from_slice(format!("{}\n", line(4, "")).as_bytes());
    let keys = AuthorizedKeys::parse(&bytes, Path::new("ak"));
    let lines: Vec<usize> = keys.entries.iter().map(|entry| entry.line).collect();
    assert_eq!(lines, [1, 4, 5]);
    assert_eq!(keys.entries[2].key, key(3));
    assert_eq!(keys.entries[2].comment, "caf\u{fffd}@host \u{fffd}");
    let lines: Vec<usize> = keys.warnings.iter().map(|warning| warning.line).collect();
    assert_eq!(lines, [2, 6], "{:?}", keys.warnings);
    assert!(keys.warnings[0]
        .message
        .starts_with("malformed line skipped"));
    assert_eq!(
        keys.warnings[1].to_string(),
        "ak:6: malformed options, line skipped: not valid UTF-8"
    );
    // And such a line can be removed.
    let (kept, removed) = remove_key(&bytes, &key(3).fingerprint());
    assert_eq!(removed.iter().map(|r| r.line).collect::<Vec<_>>(), [5]);
    assert!(!AuthorizedKeys::parse(&kept, Path::new("ak")).contains(&key(3)));
}

#[test]
fn load_reports_a_missing_file_as_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authorized_keys");
    let error = AuthorizedKeys::load(&path).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::NotFound);
    std::fs::write(&path, format!("{}\n", line(1, "x"))).unwrap();
    let keys = AuthorizedKeys::load(&path).unwrap();
    assert_eq!(keys.entries.len(), 1);
    assert_eq!(keys.path, path);
}

#[test]
fn remove_key_takes_every_line_of_the_key_and_keeps_all_other_bytes() {
    let target = key(1);
    let mut original = Vec::new();
    original.extend_from_slice(b"# keys\r\n");
    original.extend_from_slice(format!("{}\n", line(1, "one")).as_bytes());
    original.extend_from_slice(format!("{RSA_LINE}\n").as_bytes());
    original.extend_from_slice(b"garbage \xff line\n");
    original.extend_from_slice(format!("command=\"x\" {}\r\n", line(1, "two")).as_bytes());
    original.extend_from_slice(format!("# {}\n", line(1, "commented out")).as_bytes());
    original.extend_from_slice(format!("  {}  \n", line(2, "other")).as_bytes());
    original.extend_from_slice(format!("from=\"x {}", line(1, "three")).as_bytes());
    let (kept, removed) = remove_key(&original, &target.fingerprint());
    assert_eq!(
        removed.iter().map(|r| r.line).collect::<Vec<_>>(),
        [2, 5, 8]
    );
    assert_eq!(removed[1].text, format!("command=\"x\" {}", line(1, "two")));
    let mut expected = Vec::new();
    expected.extend_from_slice(b"# keys\r\n");
    expected.extend_from_slice(format!("{RSA_LINE}\n").as_bytes());
    expected.extend_from_slice(b"garbage \xff line\n");
    expected.extend_from_slice(format!("# {}\n", line(1, "commented out")).as_bytes());
    expected.extend_from_slice(format!("  {}  \n", line(2, "other")).as_bytes());
    assert_eq!(kept, expected);
    let (same, none) = remove_key(&kept, &target.fingerprint());
    assert_eq!((same, none.len()), (kept, 0));
}

#[test]
fn append_adds_a_missing_newline_and_neutralises_line_breaks() {
    let new = line(3, "new");
    assert_eq!(append_line(b"", &new), format!("{new}\n").into_bytes());
    assert_eq!(
        append_line(b"# x", &new),
        format!("# x\n{new}\n").into_bytes()
    );
    assert_eq!(
        append_line(b"# x\n", &new),
        format!("# x\n{new}\n").into_bytes()
    );
    let sneaky = append_key(b"", &key(3), &format!("c\n{}", line(4, "")));
    let keys = AuthorizedKeys::parse(&sneaky, Path::new("ak"));
    assert_eq!(keys.entries.len(), 1);
    assert!(!keys.contains(&key(4)));
    let appended = append_key(b"\xff\xfe keep me", &key(3), " c ");
    assert!(appended.starts_with(b"\xff\xfe keep me\n"));
    let keys = AuthorizedKeys::parse(&appended, Path::new("ak"));
    assert_eq!(
        (keys.entries[0].line, keys.entries[0].comment.as_str()),
        (2, "c")
    );
}

fn options_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("from=\"10.0.0.0/8,!10.1.0.0/16\"".to_owned()),
        Just("expiry-time=\"20991231235959Z\"".to_owned()),
        Just("from=\"*.example.com, x\",EXPIRY-TIME=\"209901011200\"".to_owned()),
    ]
}

proptest! {
    #[test]
    fn parser_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let keys = AuthorizedKeys::parse(&bytes, Path::new("f"));
        let lines = bytes.split(|&b| b == b'\n').count();
        for warning in &keys.warnings {
            prop_assert!(warning.line >= 1 && warning.line <= lines);
        }
    }

    #[test]
    fn parser_never_panics_on_key_like_lines(
        parts in proptest::collection::vec(prop_oneof![
            Just("ssh-ed25519".to_owned()),
            Just("ssh-rsa".to_owned()),
            Just(STANDARD_BLOB.to_owned()),
            Just("from=\"".to_owned()),
            Just("\"".to_owned()),
            Just("\\\"".to_owned()),
            Just(",".to_owned()),
            Just("=".to_owned()),
            Just(" ".to_owned()),
            Just("\t".to_owned()),
            Just("expiry-time=\"2026".to_owned()),
            "\\PC{0,6}",
        ], 0..12),
        remove in any::<bool>(),
    ) {
        let text = parts.concat();
        let keys = AuthorizedKeys::parse(text.as_bytes(), Path::new("f"));
        prop_assert!(keys.entries.len() + keys.warnings.len() <= 1);
        if remove {
            let (kept, removed) = remove_key(text.as_bytes(), &key(9).fingerprint());
            // One line: either kept byte for byte or removed whole.
            if removed.is_empty() {
                prop_assert_eq!(kept, text.as_bytes());
            } else {
                prop_assert!(kept.is_empty());
            }
        }
        let _ = keys.authorize(&key(9), ip("10.0.0.1"), SystemTime::now());
    }

    #[test]
    fn rendered_entries_parse_back(
        specs in proptest::collection::vec(
            (any::<[u8; 32]>(), "[A-Za-z0-9@._-]([A-Za-z0-9@._ -]{0,20}[A-Za-z0-9@._-])?|", options_strategy()),
            0..8,
        ),
    ) {
        let mut file = Vec::new();
        for (seed, comment, options) in &specs {
            let key_line = Identity::from_seed(seed, "").public_key().to_openssh_line(comment);
            let text = if options.is_empty() { key_line } else { format!("{options} {key_line}") };
            file = append_line(&file, &text);
        }
        let keys = AuthorizedKeys::parse(&file, Path::new("f"));
        prop_assert!(keys.warnings.is_empty(), "{:?}", keys.warnings);
        prop_assert_eq!(keys.entries.len(), specs.len());
        for ((index, entry), (seed, comment, options)) in keys.entries.iter().enumerate().zip(&specs) {
            prop_assert_eq!(entry.key, Identity::from_seed(seed, "").public_key());
            prop_assert_eq!(&entry.comment, comment);
            prop_assert_eq!(&entry.options, options);
            prop_assert_eq!(entry.line, index + 1);
            let rendered = append_line(b"", &entry.to_line());
            let reparsed = AuthorizedKeys::parse(&rendered, Path::new("f"));
            prop_assert_eq!(reparsed.entries[0].to_line(), entry.to_line());
        }
        // Removing one key leaves exactly the other entries.
        if let Some((seed, _, _)) = specs.first() {
            let gone = Identity::from_seed(seed, "").public_key();
            let (kept, _) = remove_key(&file, &gone.fingerprint());
            let rest = AuthorizedKeys::parse(&kept, Path::new("f"));
            let expected: Vec<PublicKey> = keys.entries.iter().map(|e| e.key).filter(|k| *k != gone).collect();
            prop_assert_eq!(rest.entries.iter().map(|e| e.key).collect::<Vec<_>>(), expected);
        }
    }
}

/// A valid ssh-ed25519 blob for the fuzz vocabulary.
const STANDARD_BLOB: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIE7+/RD7emPsQtVteJIEtL5HVfNDYJwexH8enuFSlIih";

mod sshd_fixtures;

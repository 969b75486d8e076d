//! Golden tests of the command line's texts, as rage does with `trycmd`: every
//! `--help` (cli/tests/cmd/help.md) and the main refusals with their exit status
//! (cli/tests/cmd/refusals.md, run in cli/tests/cmd/refusals.in/).
//!
//! Refusals that need a live server (an unknown, changed or revoked host key, a
//! denied client, a refused request) are one transcript,
//! cli/tests/cmd/live_refusals.txt, compared with snapbox.
//!
//! A changed text fails here with a diff. When the change is meant, regenerate with
//! `TRYCMD=overwrite SNAPSHOTS=overwrite cargo test -p noise-echo-cli --test cli_texts`
//! and read the diff.

mod common;

#[test]
fn cli_texts() {
    let home = tempfile::tempdir().unwrap();
    // An identity at the default path, so refusals after it (a closed port) show.
    let out = common::noise_echo(home.path())
        .arg("keygen")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let home_text = home.path().display().to_string();
    trycmd::TestCases::new()
        .register_bin("noise-echo", std::path::Path::new(common::BIN))
        .env("HOME", home_text.clone())
        .env("XDG_CONFIG_HOME", format!("{home_text}/.config"))
        .insert_var("[HOME]", home_text)
        .unwrap()
        .case("tests/cmd/*.md");
}

/// Runs each refusal against one server and compares the transcript (command, exit
/// status, stdout, stderr) with the golden file; ports, fingerprints and the
/// temporary directory are replaced by names.
#[test]
fn live_refusals() {
    use common::served::Served;
    let served = Served::start(&["--max-request", "8"]);
    let host_fingerprint = served.fingerprint.clone();
    let client_fingerprint = served.client_fingerprint.clone();
    let out = served
        .command()
        .args(["keygen", "-C", "stranger@test", "-f", "stranger"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out.stderr));
    let stranger_fingerprint = common::text(&out.stdout)
        .split_whitespace()
        .find(|word| word.starts_with("SHA256:"))
        .unwrap()
        .to_owned();
    let host_line = format!(
        "[127.0.0.1]:{} {}",
        served.port,
        std::fs::read_to_string(served.path("host_key.pub"))
            .unwrap()
            .trim()
    );
    let other_key_line = format!(
        "[127.0.0.1]:{} {}",
        served.port,
        std::fs::read_to_string(common::fixture("client_ed25519.pub"))
            .unwrap()
            .trim()
    );
    let wrong_pin = "SHA256:WZyIbFacJRQsF1FTuV+9PAQnQYGwI19yyCo3VXdEsUQ";

    let addr = served.addr();
    let hello = vec!["hello"];
    let cases = [
        Case {
            title: "an unknown host without a terminal",
            known_hosts: None,
            options: vec!["-i", "client"],
            requests: hello.clone(),
        },
        Case {
            title: "an unknown host with the wrong expected fingerprint",
            known_hosts: None,
            options: vec!["-i", "client", "--expect-fingerprint", wrong_pin],
            requests: hello.clone(),
        },
        Case {
            title: "a changed host key",
            known_hosts: Some(format!("{other_key_line}\n")),
            options: vec!["-i", "client", "--accept-new-host"],
            requests: hello.clone(),
        },
        Case {
            title: "a revoked host key",
            known_hosts: Some(format!("@revoked {host_line}\n")),
            options: vec!["-i", "client", "--accept-new-host"],
            requests: hello.clone(),
        },
        Case {
            title: "a client key the server does not accept",
            known_hosts: Some(format!("{host_line}\n")),
            options: vec!["-i", "stranger"],
            requests: hello.clone(),
        },
        Case {
            title: "a request over the server's limit (--max-request 8)",
            known_hosts: Some(format!("{host_line}\n")),
            options: vec!["-i", "client"],
            requests: vec!["ok", "much too long", "after"],
        },
    ];
    let mut transcript = String::new();
    for Case {
        title,
        known_hosts,
        options,
        requests,
    } in cases
    {
        let known_hosts_path = served.path("known_hosts");
        match &known_hosts {
            Some(text) => std::fs::write(&known_hosts_path, text).unwrap(),
            None => {
                let _ = std::fs::remove_file(&known_hosts_path);
            }
        }
        let mut args = vec!["connect", "--known-hosts", "known_hosts"];
        args.extend(&options);
        args.push(&addr);
        args.extend(&requests);
        let out = served.command().args(&args).output().unwrap();
        transcript.push_str(&format!(
            "# {title}\n$ noise-echo {}\n? {}\n{}{}\n",
            args.iter()
                .map(|arg| match arg.contains(' ') {
                    true => format!("'{arg}'"),
                    false => (*arg).to_owned(),
                })
                .collect::<Vec<_>>()
                .join(" "),
            out.status.code().unwrap_or(-1),
            common::text(&out.stdout),
            common::text(&out.stderr)
        ));
    }
    let home = served.home().display().to_string();
    let redacted = transcript
        .replace(&host_fingerprint, "[HOST_FINGERPRINT]")
        .replace(&client_fingerprint, "[CLIENT_FINGERPRINT]")
        .replace(&stranger_fingerprint, "[STRANGER_FINGERPRINT]")
        .replace(&home, "[HOME]")
        .replace(&served.port.to_string(), "[PORT]");
    snapbox::assert_data_eq!(redacted, snapbox::file!["cmd/live_refusals.txt"].raw());
}

/// One refusal of [`live_refusals`].
struct Case<'a> {
    /// What it shows, as the transcript's heading.
    title: &'a str,
    /// known_hosts before it; `None`: no file.
    known_hosts: Option<String>,
    /// `connect`'s options.
    options: Vec<&'a str>,
    /// The requests, after the address.
    requests: Vec<&'a str>,
}

/// Every command's `--help`, nested ones included, ends with examples and its exit
/// statuses: a new command without them fails here, not only in a golden diff.
#[test]
fn every_help_has_examples_and_exit_statuses() {
    let home = tempfile::tempdir().unwrap();
    let help = |path: &[&str]| {
        let out = common::noise_echo(home.path())
            .args(path)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{path:?}");
        common::text(&out.stdout)
    };
    /// The names listed under "Commands:" in a help text.
    fn commands(help: &str) -> Vec<String> {
        help.lines()
            .skip_while(|line| *line != "Commands:")
            .skip(1)
            .take_while(|line| !line.is_empty())
            .filter_map(|line| line.split_whitespace().next())
            .filter(|name| *name != "help")
            .map(str::to_owned)
            .collect()
    }
    let top = help(&[]);
    let names = commands(&top);
    assert!(names.len() >= 10, "{top}");
    let mut checked = vec![("noise-echo".to_owned(), top)];
    for name in &names {
        let text = help(&[name]);
        for nested in commands(&text) {
            checked.push((format!("{name} {nested}"), help(&[name, &nested])));
        }
        checked.push((name.clone(), text));
    }
    for (name, text) in &checked {
        assert!(
            text.contains("\nExamples:\n"),
            "no examples in {name} --help"
        );
        assert!(
            text.contains("\nExit statuses:\n  0  ") || text.contains("\nExit status:\n  0  "),
            "no exit statuses in {name} --help"
        );
    }
    assert!(names.contains(&"attack".to_owned()), "attack is listed");
    assert!(checked.iter().any(|(name, _)| name == "attack load"));
}

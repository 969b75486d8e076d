//! Diagnostics through the binary: `-v`/`-vv` on `connect` and `serve`, `serve
//! --check`, `serve --log-format json`, and the generated completions and man pages.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::served::Served;
use common::{noise_echo, text};

const SUCCESS: i32 = 0;
const FAILURE: i32 = 1;
const USAGE: i32 = 2;

fn code(output: &std::process::Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// The base64 body of an OpenSSH private key file, which no log may contain.
fn private_key_body(path: &std::path::Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn connect_v_names_the_address_the_key_file_and_the_known_hosts_line_and_serve_v_the_authorized_line(
) {
    let served = Served::start(&["-v"]);
    let connect = |extra: &[&str]| {
        served
            .command()
            .args(["connect", "-i", "client", "--known-hosts", "known_hosts"])
            .args(extra)
            .arg(served.addr())
            .arg("hello")
            .output()
            .unwrap()
    };
    let first = connect(&["--accept-new-host", "-v"]);
    assert_eq!(code(&first), SUCCESS, "{}", text(&first.stderr));
    let log = text(&first.stderr);
    for expected in [
        format!("connecting to {}", served.addr()),
        "identity file client (SHA256:".to_owned(),
        "known_hosts file known_hosts".to_owned(),
        "no key for [127.0.0.1]:".to_owned(),
        "session ended".to_owned(),
    ] {
        assert!(log.contains(&expected), "{expected:?} not in {log}");
    }
    let second = connect(&["-v"]);
    assert_eq!(code(&second), SUCCESS, "{}", text(&second.stderr));
    let log = text(&second.stderr);
    assert!(log.contains("host key found in known_hosts:1"), "{log}");
    assert!(!log.contains("TRACE"), "-v is debug only: {log}");
    // -vv adds each handshake message.
    let third = connect(&["-vv"]);
    let log = text(&third.stderr);
    assert!(
        log.contains("sent the v2 offer") && log.contains("and handshake message 1"),
        "{log}"
    );
    assert!(log.contains("received handshake message 2"), "{log}");
    // Without -v: silent.
    let quiet = connect(&[]);
    assert_eq!(text(&quiet.stderr), "");

    let (status, server_log) = served.stop();
    assert_eq!(status, Some(0), "{server_log}");
    assert!(
        server_log.contains("handshake completed: client key SHA256:"),
        "{server_log}"
    );
    let allowed = format!("key allowed by {}:1", served_path_display(&server_log));
    assert!(server_log.contains(&allowed), "{allowed:?} in {server_log}");
}

/// The authorized_keys path as the server logs it (the test does not know the
/// temporary directory's canonical form in advance).
fn served_path_display(log: &str) -> String {
    log.split("key allowed by ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .filter(|path| path.ends_with("authorized_keys"))
        .unwrap_or("<no 'key allowed by' line>")
        .to_owned()
}

#[test]
fn no_secret_reaches_a_verbose_log() {
    let served = Served::start(&["-vv"]);
    let out = served
        .command()
        .args([
            "connect",
            "-vv",
            "-i",
            "client",
            "--known-hosts",
            "known_hosts",
            "--accept-new-host",
        ])
        .arg(served.addr())
        .arg("hello")
        .output()
        .unwrap();
    assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
    let client_secret = private_key_body(&served.path("client"));
    let host_secret = private_key_body(&served.path("host_key"));
    let (_, server_log) = served.stop();
    for log in [text(&out.stderr), server_log] {
        for line in client_secret.iter().chain(&host_secret) {
            assert!(!log.contains(line.as_str()), "a private key line in {log}");
        }
    }
}

#[test]
fn json_log_lines_parse_and_carry_the_connection_fields() {
    let served = Served::start(&["--log-format", "json"]);
    let out = served
        .command()
        .args([
            "connect",
            "-i",
            "client",
            "--known-hosts",
            "known_hosts",
            "--accept-new-host",
        ])
        .arg(served.addr())
        .args(["one", "two"])
        .output()
        .unwrap();
    assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
    let (status, log) = served.stop();
    assert_eq!(status, Some(0), "{log}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line:?}")))
        .collect();
    assert!(lines.len() >= 3, "{log}");
    for line in &lines {
        assert!(line["timestamp"].is_string(), "{line}");
        assert!(line["level"].is_string(), "{line}");
        assert!(line["message"].is_string(), "{line}");
    }
    let closed = lines
        .iter()
        .find(|line| line["message"] == "closed")
        .unwrap_or_else(|| panic!("no 'closed' line in {log}"));
    assert!(
        closed["peer"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{closed}"
    );
    assert!(
        closed["client"].as_str().unwrap().starts_with("SHA256:"),
        "{closed}"
    );
    assert_eq!(closed["comment"], "client@test", "{closed}");
    assert_eq!(closed["requests"], 2, "{closed}");
    assert_eq!(closed["bytes_in"], 6, "{closed}");
}

#[test]
fn a_json_log_ends_with_a_json_error_when_serve_cannot_start() {
    let home = tempfile::tempdir().unwrap();
    let out = noise_echo(home.path())
        .current_dir(home.path())
        .args(["keygen", "-f", "host_key"])
        .output()
        .unwrap();
    assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
    let out = noise_echo(home.path())
        .current_dir(home.path())
        .args([
            "serve",
            "--log-format",
            "json",
            "--host-key",
            "host_key",
            "--max-connections",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(code(&out), FAILURE);
    let stderr = text(&out.stderr);
    let last: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap())
        .unwrap_or_else(|error| panic!("{error}: {stderr}"));
    assert_eq!(last["level"], "ERROR", "{last}");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("--max-connections must be at least 1"),
        "{last}"
    );
}

/// A home with a host key, an authorized client and a listener the check is given
/// as its address: a real start would fail to bind it.
struct CheckSetup {
    home: tempfile::TempDir,
    taken: std::net::TcpListener,
}

impl CheckSetup {
    fn new() -> Self {
        let home = tempfile::tempdir().unwrap();
        for args in [
            vec!["keygen", "-f", "host_key"],
            vec!["keygen", "-f", "client"],
        ] {
            let out = noise_echo(home.path())
                .current_dir(home.path())
                .args(args)
                .output()
                .unwrap();
            assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
        }
        let out = noise_echo(home.path())
            .current_dir(home.path())
            .args([
                "authorize",
                "--authorized-keys",
                "authorized_keys",
                "client.pub",
            ])
            .output()
            .unwrap();
        assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Self { home, taken }
    }

    fn check(&self, extra: &[&str]) -> std::process::Output {
        let mut command = noise_echo(self.home.path());
        command
            .current_dir(self.home.path())
            .args(["serve", "--check"]);
        if !extra.contains(&"--listen") {
            command
                .arg("--listen")
                .arg(self.taken.local_addr().unwrap().to_string());
        }
        if !extra.contains(&"--host-key") {
            command.args(["--host-key", "host_key"]);
        }
        if !extra.contains(&"--authorized-keys") {
            command.args(["--authorized-keys", "authorized_keys"]);
        }
        command.args(extra).output().unwrap()
    }
}

#[test]
fn check_passes_a_good_configuration_without_listening() {
    let setup = CheckSetup::new();
    // An RSA line, as in a file shared with sshd, is a note, not a problem.
    let rsa = fs::read_to_string(common::fixture("rsa_3072.pub")).unwrap();
    let path = setup.home.path().join("authorized_keys");
    let mut keys = fs::read_to_string(&path).unwrap();
    keys.push_str(&rsa);
    fs::write(&path, keys).unwrap();
    let out = setup.check(&[]);
    assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("host key host_key: SHA256:"), "{stdout}");
    assert!(
        stdout.contains("authorized_keys authorized_keys: 1 trusted key"),
        "{stdout}"
    );
    assert!(
        stdout.contains("note: authorized_keys:2: ssh-rsa key skipped"),
        "{stdout}"
    );
    assert!(stdout.contains("settings: valid"), "{stdout}");
    assert_eq!(text(&out.stderr), "");
}

/// The fixtures' host key in the setup's home as `certified_key`, created 0600,
/// with its host certificate beside it where `serve` looks by default.
fn certified_host_key(setup: &CheckSetup) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let home = setup.home.path();
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(home.join("certified_key"))
        .unwrap()
        .write_all(&fs::read(common::fixture("host_ed25519_key")).unwrap())
        .unwrap();
    fs::copy(
        common::fixture("certs/host-cert.pub"),
        home.join("certified_key-cert.pub"),
    )
    .unwrap();
}

#[test]
fn check_reads_the_certificate_files_as_serve_would() {
    let setup = CheckSetup::new();
    certified_host_key(&setup);
    let home = setup.home.path();
    fs::write(home.join("principals"), "alice\n").unwrap();
    let user_ca = common::fixture("certs/user_ca.pub");
    let krl = common::fixture("certs/krl/serial.krl");
    let good = setup.check(&[
        "--host-key",
        "certified_key",
        "--trusted-user-ca-keys",
        user_ca.to_str().unwrap(),
        "--authorized-principals",
        "principals",
        "--revoked-keys",
        krl.to_str().unwrap(),
    ]);
    assert_eq!(code(&good), SUCCESS, "{}", text(&good.stderr));
    let stdout = text(&good.stdout);
    for expected in [
        "host certificate certified_key-cert.pub: key ID \"host-localhost\", serial 100, principals localhost,127.0.0.1, valid until forever",
        "trusted user CA keys ",
        ": 1 CA key\n",
        "authorized principals principals: 1 principal\n",
        "serial.krl: an OpenSSH KRL",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    // Without a certificate beside the key, the check says so.
    let plain = setup.check(&[]);
    assert_eq!(code(&plain), SUCCESS, "{}", text(&plain.stderr));
    assert!(
        text(&plain.stdout).contains("host certificate: none (clients trust the host key itself)"),
        "{}",
        text(&plain.stdout)
    );

    // Each file that would stop serve, or refuse everyone, is a problem.
    fs::write(home.join("no_principals"), "# nobody yet\n").unwrap();
    let expired = common::fixture("certs/host_expired-cert.pub");
    let bad = setup.check(&[
        "--host-key",
        "certified_key",
        "--host-certificate",
        expired.to_str().unwrap(),
        "--trusted-user-ca-keys",
        "missing_ca.pub",
        "--authorized-principals",
        "no_principals",
        "--revoked-keys",
        "missing_revoked",
    ]);
    assert_eq!(code(&bad), FAILURE, "{}", text(&bad.stdout));
    let stderr = text(&bad.stderr);
    for expected in [
        "problem: cannot use the host certificate ",
        "host_expired-cert.pub: certificate expired on 2021-01-01T00:00:00 (make one with: ssh-keygen -s CA -h -I ID -n NAMES certified_key.pub)\n",
        "problem: cannot read the trusted user CA keys missing_ca.pub: ",
        "problem: authorized principals no_principals: no principal, so no certificate is admitted by a trusted CA\n",
        "problem: cannot read the revoked keys file missing_revoked: No such file or directory (os error 2): every client would be refused\n",
        "error: the check found 4 problems\n",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in:\n{stderr}");
    }
}

#[test]
fn check_lists_every_problem_and_exits_1() {
    let setup = CheckSetup::new();
    let path = setup.home.path().join("authorized_keys");
    let mut keys = fs::read_to_string(&path).unwrap();
    keys.push_str("ssh-ed25519 not-base64 broken\ncommand=\"ls\" ");
    keys.push_str(&fs::read_to_string(setup.home.path().join("client.pub")).unwrap());
    fs::write(&path, keys).unwrap();
    let out = setup.check(&["--max-connections", "0"]);
    assert_eq!(code(&out), FAILURE, "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("problem: authorized_keys:2: malformed line"),
        "{stderr}"
    );
    assert!(
        stderr.contains("problem: authorized_keys:3: key SHA256:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("problem: invalid server settings: --max-connections must be at least 1"),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: the check found 3 problems"),
        "{stderr}"
    );
}

#[test]
fn check_refuses_a_bad_address_a_missing_or_open_host_key_and_creates_nothing() {
    let setup = CheckSetup::new();
    let out = setup.check(&["--listen", "nowhere", "--host-key", "missing_key"]);
    assert_eq!(code(&out), FAILURE);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("problem: --listen nowhere: "), "{stderr}");
    assert!(
        stderr.contains("problem: no host key at missing_key (create one with: noise-echo keygen -f missing_key -N ''"),
        "{stderr}"
    );
    // With --create-host-key, a missing key is what serve will make: not a problem.
    let out = setup.check(&["--host-key", "missing_key", "--create-host-key"]);
    assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
    assert!(
        text(&out.stdout)
            .contains("host key missing_key: does not exist yet; serve creates it on first start"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        !setup.home.path().join("missing_key").exists(),
        "the check created a key"
    );

    // Every --listen is checked, :PORT as serve reads it.
    let out = setup.check(&["--listen", ":4000", "--listen", "127.0.0.1:4001"]);
    assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("listen :4000: 0.0.0.0:4000 and [::]:4000"),
        "{stdout}"
    );
    assert!(
        stdout.contains("listen 127.0.0.1:4001: 127.0.0.1:4001"),
        "{stdout}"
    );
    let out = setup.check(&["--listen", "127.0.0.1:4001", "--listen", ":99999"]);
    assert_eq!(code(&out), FAILURE);
    assert!(
        text(&out.stderr).contains("problem: --listen :99999: the port must be a number"),
        "{}",
        text(&out.stderr)
    );

    let host_key = setup.home.path().join("host_key");
    fs::set_permissions(&host_key, fs::Permissions::from_mode(0o640)).unwrap();
    let out = setup.check(&[]);
    assert_eq!(code(&out), FAILURE);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("problem: host key: "), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    fs::set_permissions(&host_key, fs::Permissions::from_mode(0o600)).unwrap();

    let encrypted = setup.home.path().join("encrypted_key");
    fs::copy(common::fixture("passphrase_ed25519"), &encrypted).unwrap();
    fs::set_permissions(&encrypted, fs::Permissions::from_mode(0o600)).unwrap();
    let out = setup.check(&["--host-key", "encrypted_key"]);
    assert_eq!(code(&out), FAILURE);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("a host key must not have one, as for sshd"),
        "{stderr}"
    );

    // StrictModes, as serve applies it, and its opt-out.
    let keys = setup.home.path().join("authorized_keys");
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o666)).unwrap();
    let out = setup.check(&[]);
    assert_eq!(code(&out), FAILURE);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("problem: authorized_keys: "), "{stderr}");
    assert!(stderr.contains("fix: chmod go-w"), "{stderr}");
    let out = setup.check(&["--strict-modes", "no"]);
    assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
    fs::set_permissions(&keys, fs::Permissions::from_mode(0o600)).unwrap();
    // A FIFO is refused without being opened (the check would block on it).
    let fifo = setup.home.path().join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let out = setup.check(&["--authorized-keys", "fifo"]);
    assert_eq!(code(&out), FAILURE);
    assert!(text(&out.stderr).contains("FIFO"), "{}", text(&out.stderr));

    let out = setup.check(&["--authorized-keys", "no_such_file"]);
    assert_eq!(code(&out), FAILURE);
    assert!(
        text(&out.stderr).contains("authorized_keys no_such_file does not exist"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn completions_come_from_the_command_definitions() {
    let home = tempfile::tempdir().unwrap();
    let script = |shell: &str| {
        let out = noise_echo(home.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let bash = script("bash");
    assert!(bash.contains("complete -F _noise__echo"), "{bash}");
    for word in [
        "keygen",
        "fingerprint",
        "authorize",
        "serve",
        "connect",
        "completions",
        "man",
        "--known-hosts",
        "--log-format",
    ] {
        assert!(bash.contains(word), "{word} not in the bash script");
    }
    assert!(script("zsh").starts_with("#compdef noise-echo"));
    let fish = script("fish");
    assert!(fish.contains("complete -c noise-echo"), "{fish}");
    assert!(fish.contains("connect"), "{fish}");
    let out = noise_echo(home.path())
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(code(&out), USAGE);
    assert!(
        text(&out.stderr).contains("possible values: bash, zsh, fish"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn man_pages_are_roff_for_the_command_and_each_subcommand() {
    let home = tempfile::tempdir().unwrap();
    let page = |args: &[&str]| {
        noise_echo(home.path())
            .arg("man")
            .args(args)
            .output()
            .unwrap()
    };
    let top = page(&[]);
    assert_eq!(code(&top), SUCCESS);
    let top = text(&top.stdout);
    // clap_mangen's two-line preamble (an apostrophe fix), then the title.
    let title = top
        .lines()
        .find(|line| !line.starts_with(".ie") && !line.starts_with(".el"))
        .unwrap();
    assert!(title.starts_with(".TH noise-echo 1"), "{title}");
    assert!(top.contains(".SH SUBCOMMANDS"), "{top}");
    assert!(
        top.contains("Exit statuses"),
        "the long help's closing text: {top}"
    );
    let connect = text(&page(&["connect"]).stdout);
    assert!(connect.contains(".TH noise-echo-connect 1"), "{connect}");
    assert!(connect.contains("known\\-hosts"), "{connect}");
    let missing = page(&["nope"]);
    assert_eq!(code(&missing), FAILURE);
    assert!(
        text(&missing.stderr).starts_with("error: no command 'nope' (one of: keygen,"),
        "{}",
        text(&missing.stderr)
    );
}

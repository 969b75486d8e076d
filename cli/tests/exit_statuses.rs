//! Every row of the README's exit-status table, produced through the binary on
//! every path that can produce it: one-shot MESSAGE arguments and stdin mode, a
//! refused request of each size, a reader closing our output early, and the
//! failures of `keygen`, `fingerprint` and `authorize`.
//!
//! | status | row |
//! |---|---|
//! | 0 | success, also when a reader of our output closes it early |
//! | 1 | any other error (bad key file, unreadable file, a refused request) |
//! | 2 | the command line could not be parsed |
//! | 3 | the connection failed or broke (including the server closing the session) |
//! | 4 | the server's host key is not trusted |
//! | 5 | permission denied: our key is refused, or revoked |
//! | 6 | the peer broke the protocol |

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::served::{finish, Served};
use common::{noise_echo, text};

const SUCCESS: i32 = 0;
const FAILURE: i32 = 1;
const USAGE: i32 = 2;
const CONNECTION_FAILED: i32 = 3;
const HOST_KEY_NOT_TRUSTED: i32 = 4;
const PERMISSION_DENIED: i32 = 5;
const PROTOCOL_ERROR: i32 = 6;

/// Runs `command` with `stdin` as its standard input (written from a thread, so a
/// large input cannot deadlock against the output).
fn run_with_stdin(command: &mut Command, stdin: Vec<u8>) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // The server may close before it has read everything (a refusal): a failed
    // write is expected then.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = finish(child, "the command");
    writer.join().unwrap();
    out
}

fn run(command: &mut Command) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    finish(child, "the command")
}

/// Checks `out` exited with `expected`, showing its stderr if not.
#[track_caller]
fn assert_status(out: &Output, expected: i32) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(expected), "stderr: {stderr}");
    stderr
}

/// A standard output whose reader is already gone: the first write fails with
/// EPIPE, as with `| head -0`, deterministically.
fn closed_stdout() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Stdio::from(writer)
}

fn keygen(home: &Path, name: &str) -> std::path::PathBuf {
    let path = home.join(name);
    let out = run(noise_echo(home).args(["keygen", "-f"]).arg(&path));
    assert_status(&out, SUCCESS);
    path
}

// --- 0 ---------------------------------------------------------------------

#[test]
fn success_is_0_on_every_path() {
    let served = Served::start(&[]);
    let out = run(&mut served.connect(&["hello", "", "straße"]));
    assert_status(&out, SUCCESS);
    assert_eq!(text(&out.stdout), "HELLO\n\nSTRASSE\n");
    let out = run_with_stdin(&mut served.connect(&[]), b"a\n\nb".to_vec());
    assert_status(&out, SUCCESS);
    assert_eq!(text(&out.stdout), "A\n\nB\n");
    // No input at all: nothing to send, nothing to print.
    let out = run_with_stdin(&mut served.connect(&[]), Vec::new());
    assert_status(&out, SUCCESS);
    assert_eq!(text(&out.stdout), "");

    let home = served.home();
    let key = keygen(home, "second");
    let out = run(noise_echo(home).arg("fingerprint").arg(&key));
    assert_status(&out, SUCCESS);
    let out = run(noise_echo(home)
        .args(["authorize", "--authorized-keys"])
        .arg(home.join("other_keys"))
        .arg(key.with_extension("pub")));
    assert_status(&out, SUCCESS);
    let out = run(noise_echo(home)
        .args(["authorize", "--list", "--authorized-keys"])
        .arg(home.join("other_keys")));
    assert_status(&out, SUCCESS);
    for help in [
        vec!["--help"],
        vec!["--version"],
        vec!["connect", "--help"],
        vec!["serve", "--help"],
        vec!["keygen", "--help"],
        vec!["authorize", "--help"],
        vec!["fingerprint", "--help"],
    ] {
        let out = run(noise_echo(home).args(&help));
        assert_status(&out, SUCCESS);
        assert!(!out.stdout.is_empty(), "{help:?}");
    }
    // The output rule and the statuses are documented where a user looks.
    let help = text(&run(noise_echo(home).args(["connect", "--help"])).stdout);
    for documented in [
        "A refused request prints nothing there",
        "Connection to HOST closed by remote host",
        "5  permission denied",
    ] {
        assert!(help.contains(documented), "{help}");
    }
}

/// A server whose limit is over the default works with the shipped client: each
/// reply's limit follows its request (it was a constant 3 MiB, and an 8 MiB
/// request failed with "RESPONSE body of ... bytes is over the limit", status 6).
#[test]
fn eight_mebibyte_requests_work_with_a_server_that_takes_them() {
    const LEN: usize = 8 << 20;
    let served = Served::start(&["--max-request", "8MiB"]);
    let mut ascii = vec![b'a'; LEN];
    ascii.push(b'\n');
    // The longest uppercase there is: each 2-byte U+0390 becomes 6 bytes.
    let mut greek = "\u{390}".repeat(LEN / 2).into_bytes();
    greek.push(b'\n');
    let out = run_with_stdin(&mut served.connect(&[]), [ascii, greek].concat());
    assert_status(&out, SUCCESS);
    let stdout = out.stdout;
    assert_eq!(stdout.len(), LEN + 1 + 3 * LEN + 1);
    assert!(stdout[..LEN].iter().all(|&byte| byte == b'A'));
    assert_eq!(
        &stdout[LEN + 1..LEN + 7],
        "\u{399}\u{308}\u{301}".as_bytes()
    );
    // One byte more: a protocol 1 client sends it and the server refuses it; a
    // protocol 2 client knows the server's limit and does not send it.
    let mut over = vec![b'a'; LEN + 1];
    over.push(b'\n');
    let out = run_with_stdin(&mut served.connect(&["--protocol", "1"]), over.clone());
    let stderr = assert_status(&out, FAILURE);
    assert!(
        stderr.contains("request too large: 8388609 bytes"),
        "{stderr}"
    );
    let out = run_with_stdin(&mut served.connect(&[]), over);
    let stderr = assert_status(&out, FAILURE);
    assert!(
        stderr.contains("request 1 not sent: request of 8388609 bytes exceeds the server's limit of 8388608 bytes"),
        "{stderr}"
    );
}

#[test]
fn a_reader_closing_our_output_early_is_0() {
    let served = Served::start(&[]);
    let home = served.home();
    // `| head -1` on a long pipelined run: the reader goes away after one line
    // while replies are still coming.
    let mut child = served
        .connect(&[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for index in 0..200_000 {
            if writeln!(stdin, "line {index}").is_err() {
                break;
            }
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "LINE 0\n");
    drop(stdout);
    let out = finish(child, "connect | head -1");
    writer.join().unwrap();
    assert_status(&out, SUCCESS);

    // A reader gone before the first line, on every command that prints.
    let key = keygen(home, "printed");
    let commands: Vec<Command> = vec![
        served.connect(&["one", "two"]),
        {
            let mut command = noise_echo(home);
            command.arg("fingerprint").arg(&key);
            command
        },
        {
            let mut command = noise_echo(home);
            command
                .args(["authorize", "--list", "--authorized-keys"])
                .arg(home.join("authorized_keys"));
            command
        },
        {
            let mut command = noise_echo(home);
            command.args(["keygen", "-f"]).arg(home.join("fresh"));
            command
        },
        {
            let mut command = noise_echo(home);
            command.arg("--help");
            command
        },
        {
            let mut command = noise_echo(home);
            command.args(["bench", "--scenario", "cipher-cpu", "--requests", "2", "-q"]);
            command
        },
    ];
    for mut command in commands {
        let out = run(command.stdout(closed_stdout()));
        assert_status(&out, SUCCESS);
        assert_eq!(text(&out.stderr), "", "{command:?}");
    }
    // Stdin mode too.
    let out = run_with_stdin(
        served.connect(&[]).stdout(closed_stdout()),
        b"a\nb\n".to_vec(),
    );
    assert_status(&out, SUCCESS);
}

/// `bench` without `-q` or `--json` (a progress line on stderr) counts every
/// exchange and exits 0: it reported `0 ok` and failed, and `idle` without
/// `--server-pid` printed NaN.
#[test]
fn bench_in_its_default_mode_is_0_and_counts_every_exchange() {
    let served = Served::start(&[]);
    let bench = |extra: &[&str]| {
        let mut command = noise_echo(served.home());
        command
            .args(["bench", &served.addr(), "-i"])
            .arg(served.home().join("client"))
            .arg("--known-hosts")
            .arg(served.known_hosts())
            .args(["--expect-fingerprint", &served.fingerprint])
            .args(extra);
        command
    };
    let out = run(&mut bench(&["--scenario", "pipeline", "--requests", "20"]));
    assert_status(&out, SUCCESS);
    let table = text(&out.stdout);
    let row = table.lines().nth(1).unwrap();
    let ok: Vec<&str> = row.split_whitespace().collect();
    // The transport names the suite the server and this CPU settled on.
    assert!(ok[1].starts_with("noise-"), "{table}");
    assert_eq!(ok[2..5], ["1024", "20", "0"], "{table}");
    let out = run(&mut bench(&[
        "--scenario",
        "idle",
        "--sessions",
        "3",
        "--hold",
        "0",
    ]));
    assert_status(&out, SUCCESS);
    let table = text(&out.stdout);
    assert!(!table.contains("NaN"), "{table}");
    assert!(table.contains("sessions/s opened"), "{table}");
}

// --- 1 ---------------------------------------------------------------------

/// A refused request is 1 whatever its size, in both modes; stdout has only the
/// replies (a refusal prints nothing there), stderr names the refused request.
#[test]
fn a_refused_request_is_1_whatever_its_size() {
    let served = Served::start(&["--max-request", "16"]);
    // Protocol 1's client does not know the limit, so the server refuses; protocol
    // 2's knows it from the handshake and does not send the request at all.
    let refusal = |protocol: &str, index: usize, len: usize| {
        match protocol {
        "1" => format!("error: request {index} refused: request too large: {len} bytes"),
        _ => format!(
            "error: request {index} not sent: request of {len} bytes exceeds the server's limit of 16 bytes"
        ),
    }
    };
    for protocol in ["1", "2"] {
        let connect = |extra: &[&str]| {
            let mut command = served.connect(&["--protocol", protocol]);
            command.args(extra);
            command
        };
        // One-shot arguments: 17 bytes, one over the limit, after one that fits.
        let out = run(&mut connect(&["sixteen bytes ok", "seventeen bytes!!"]));
        let stderr = assert_status(&out, FAILURE);
        assert_eq!(text(&out.stdout), "SIXTEEN BYTES OK\n");
        assert!(stderr.contains(&refusal(protocol, 2, 17)), "{stderr}");
        // Stdin, over the limit by one byte, by a mebibyte, by 5 MB (which exited 0:
        // the server's close broke our write, and that passed for a closed stdout)
        // and by 8 MiB.
        for len in [17, (1 << 20) + 1, 5_000_000, 8 << 20] {
            let mut input = vec![b'a'; len];
            input.push(b'\n');
            let out = run_with_stdin(&mut connect(&[]), input);
            let stderr = assert_status(&out, FAILURE);
            assert_eq!(text(&out.stdout), "", "{len}");
            assert!(
                stderr.contains(&refusal(protocol, 1, len)),
                "protocol {protocol}, {len}: {stderr}"
            );
        }
        // One-shot, as large as one argument may be (the kernel caps it at 128 KiB).
        let big = "a".repeat(100_000);
        let out = run(&mut connect(&["fits", &big]));
        let stderr = assert_status(&out, FAILURE);
        assert_eq!(text(&out.stdout), "FITS\n");
        assert!(stderr.contains(&refusal(protocol, 2, 100_000)), "{stderr}");
    }
}

/// A refusal that keeps the session (not UTF-8) prints nothing on stdout, so the
/// reply to an empty request stays an empty line and nothing else is one.
#[test]
fn a_refused_request_prints_nothing_on_stdout_and_the_session_goes_on() {
    let served = Served::start(&[]);
    let out = run_with_stdin(
        &mut served.connect(&[]),
        b"ok\n\nbad \xff\nafter\n".to_vec(),
    );
    let stderr = assert_status(&out, FAILURE);
    assert_eq!(text(&out.stdout), "OK\n\nAFTER\n");
    assert!(
        stderr.contains(
            "error: request 3 refused: request is not valid UTF-8 (invalid byte at offset 4)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: the server refused 1 of 4 requests"),
        "{stderr}"
    );
}

/// Input that cannot be read is 1, and said, not taken for a closed session.
#[test]
fn an_unreadable_stdin_is_1() {
    let served = Served::start(&[]);
    let directory = std::fs::File::open(served.home()).unwrap();
    let out = run(served.connect(&[]).stdin(directory));
    let stderr = assert_status(&out, FAILURE);
    assert!(
        stderr.contains("error: cannot read standard input"),
        "{stderr}"
    );
}

#[test]
fn bad_files_are_1_for_every_command() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let garbage = home.join("garbage");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let key = keygen(home, "id");
    let open_key = keygen(home, "too_open");
    std::fs::set_permissions(
        &open_key,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let path = |path: &Path| path.to_str().unwrap().to_owned();
    let authorized_keys = path(&home.join("authorized_keys"));
    // (arguments, what the error must name)
    let cases: Vec<(Vec<String>, String)> = vec![
        (vec!["fingerprint".into(), path(&garbage)], path(&garbage)),
        (
            vec!["fingerprint".into(), "/nonexistent/key".into()],
            "/nonexistent/key".into(),
        ),
        // keygen refuses to overwrite.
        (vec!["keygen".into(), "-f".into(), path(&key)], path(&key)),
        (
            vec![
                "authorize".into(),
                "--authorized-keys".into(),
                authorized_keys.clone(),
                path(&garbage),
            ],
            path(&garbage),
        ),
        (
            vec![
                "connect".into(),
                "127.0.0.1:9".into(),
                "-i".into(),
                "/nonexistent/id".into(),
                "hi".into(),
            ],
            "/nonexistent/id".into(),
        ),
        (
            vec![
                "connect".into(),
                "127.0.0.1:9".into(),
                "-i".into(),
                path(&open_key),
                "hi".into(),
            ],
            "chmod 600".into(),
        ),
        (
            vec![
                "serve".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--host-key".into(),
                path(&garbage),
                "--authorized-keys".into(),
                authorized_keys,
            ],
            path(&garbage),
        ),
    ];
    for (args, named) in cases {
        let out = run(noise_echo(home).args(&args));
        let stderr = assert_status(&out, FAILURE);
        assert!(stderr.contains("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(&named), "{args:?}: {stderr}");
    }
}

// --- 2 ---------------------------------------------------------------------

#[test]
fn a_command_line_that_does_not_parse_is_2() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        vec!["no-such-command"],
        vec!["connect", "--no-such-flag"],
        vec!["connect", "host:99999", "hi"],
        vec!["serve", "--max-request", "0"],
        vec!["serve", "--max-request", "5GiB"],
        vec!["serve", "--max-request", "8 MB"],
        vec!["serve", "--idle-timeout", "soon"],
        vec!["keygen", "--no-such-flag"],
        vec!["authorize", "--no-such-flag"],
        vec!["fingerprint"],
        vec!["bench", "--scenario", "no-such-scenario"],
    ] {
        let out = run(noise_echo(home.path()).args(&args));
        let stderr = assert_status(&out, USAGE);
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert_eq!(text(&out.stdout), "", "{args:?}");
    }
}

// --- 3 ---------------------------------------------------------------------

#[test]
fn a_connection_that_fails_or_breaks_is_3() {
    let home = tempfile::tempdir().unwrap();
    let key = keygen(home.path(), "id");
    // Nobody listens on a port we bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let out = run(noise_echo(home.path())
        .args(["connect", &addr, "-i"])
        .arg(&key)
        .arg("hi"));
    let stderr = assert_status(&out, CONNECTION_FAILED);
    assert!(stderr.contains("cannot connect to 127.0.0.1"), "{stderr}");
    // bench too, with the cause said once.
    let out = run(noise_echo(home.path())
        .args(["bench", &addr, "--scenario", "latency", "-i"])
        .arg(&key));
    let stderr = assert_status(&out, CONNECTION_FAILED);
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
    // Stdin mode fails the same way, before reading any input.
    let out = run_with_stdin(
        noise_echo(home.path())
            .args(["connect", &addr, "-i"])
            .arg(&key),
        b"hi\n".to_vec(),
    );
    assert_status(&out, CONNECTION_FAILED);

    // A server that closes the session on its own (idle timeout) while we wait
    // for input: see interactive_session.rs for revocation and shutdown.
    let served = Served::start(&["--idle-timeout", "1"]);
    let mut child = served
        .connect(&[])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let out = finish(child, "connect on an idle session");
    drop(stdin);
    let stderr = assert_status(&out, CONNECTION_FAILED);
    assert!(
        stderr.contains("Connection to 127.0.0.1 closed by remote host"),
        "{stderr}"
    );
}

// --- 4 ---------------------------------------------------------------------

#[test]
fn an_untrusted_host_key_is_4() {
    let served = Served::start(&[]);
    let home = served.home();
    let client = home.join("client");
    let plain_connect = |extra: &[&str]| {
        let mut command = noise_echo(home);
        command
            .args(["connect", &served.addr(), "-i"])
            .arg(&client)
            .arg("--known-hosts")
            .arg(home.join("fresh_known_hosts"))
            .args(extra);
        command
    };
    // Unknown, and no terminal to ask: one-shot and stdin mode.
    let out = run(&mut plain_connect(&["hi"]));
    assert_status(&out, HOST_KEY_NOT_TRUSTED);
    let out = run_with_stdin(&mut plain_connect(&[]), b"hi\n".to_vec());
    assert_status(&out, HOST_KEY_NOT_TRUSTED);
    // Not the expected fingerprint.
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let out = run(&mut plain_connect(&["--expect-fingerprint", wrong, "hi"]));
    assert_status(&out, HOST_KEY_NOT_TRUSTED);
    // Known under another key (changed).
    let other = common::served::Served::start(&[]);
    let out = run(&mut served.connect(&["hi"]));
    assert_status(&out, SUCCESS);
    let known_hosts = std::fs::read_to_string(served.known_hosts()).unwrap();
    let changed = known_hosts.replace(
        &format!("[127.0.0.1]:{}", served.port),
        &format!("[127.0.0.1]:{}", other.port),
    );
    std::fs::write(other.home().join("changed_known_hosts"), changed).unwrap();
    let out = run(noise_echo(home)
        .args(["connect", &other.addr(), "-i"])
        .arg(&client)
        .arg("--known-hosts")
        .arg(other.home().join("changed_known_hosts"))
        .arg("hi"));
    let stderr = assert_status(&out, HOST_KEY_NOT_TRUSTED);
    assert!(stderr.contains("CHANGED"), "{stderr}");
}

// --- 5 ---------------------------------------------------------------------

#[test]
fn a_refused_key_is_5() {
    let served = Served::start(&[]);
    let stranger = keygen(served.home(), "stranger");
    for stdin_mode in [false, true] {
        let mut command = noise_echo(served.home());
        command
            .args(["connect", &served.addr(), "-i"])
            .arg(&stranger)
            .arg("--known-hosts")
            .arg(served.known_hosts())
            .args(["--expect-fingerprint", &served.fingerprint]);
        let out = if stdin_mode {
            run_with_stdin(&mut command, b"let me in\n".to_vec())
        } else {
            run(command.arg("let me in"))
        };
        let stderr = assert_status(&out, PERMISSION_DENIED);
        assert!(stderr.contains("permission denied"), "{stderr}");
        assert_eq!(text(&out.stdout), "");
    }
    // Revoked while connected: interactive_session.rs.
}

// --- 6 ---------------------------------------------------------------------

/// A "server" that answers message 1 with a message 2 of the right size whose
/// encrypted part is garbage: the handshake fails to decrypt.
fn garbage_server() -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        // One connection per client run below.
        for _ in 0..2 {
            let (mut socket, _) = listener.accept().unwrap();
            let mut message1 = [0u8; 2 + noise_echo::wire::MSG1_LEN];
            if socket.read_exact(&mut message1).is_err() {
                continue;
            }
            let len = noise_echo::wire::MSG2_LEN as u16;
            let mut message2 = len.to_be_bytes().to_vec();
            message2.extend(std::iter::repeat_n(0x42, noise_echo::wire::MSG2_LEN));
            let _ = socket.write_all(&message2);
            let _ = socket.read(&mut [0u8; 64]);
        }
    });
    (port, server)
}

#[test]
fn a_peer_that_breaks_the_protocol_is_6() {
    let home = tempfile::tempdir().unwrap();
    let key = keygen(home.path(), "id");
    let (port, server) = garbage_server();
    let addr = format!("127.0.0.1:{port}");
    let out = run(noise_echo(home.path())
        .args(["connect", &addr, "--accept-new-host", "-i"])
        .arg(&key)
        .arg("hi"));
    let stderr = assert_status(&out, PROTOCOL_ERROR);
    assert!(stderr.contains("protocol"), "{stderr}");
    let out = run_with_stdin(
        noise_echo(home.path())
            .args(["connect", &addr, "--accept-new-host", "-i"])
            .arg(&key),
        b"hi\n".to_vec(),
    );
    assert_status(&out, PROTOCOL_ERROR);
    server.join().unwrap();
}

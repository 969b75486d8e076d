//! systemd: `serve` sends READY=1 once listening, RELOADING=1 then READY=1 around a
//! SIGHUP, STOPPING=1 on SIGTERM, over `$NOTIFY_SOCKET` (a path or an abstract name),
//! as a test-made unix datagram socket receives them; and the units in contrib/ carry
//! their hardening directives, with command lines that the binary accepts
//! (`systemd-analyze verify` itself needs systemd, so it is not run here: see
//! docs/DEPLOYMENT.md).

mod common;

use std::io::BufRead;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::served::{finish, HANG_GUARD};
use common::{noise_echo, text};

/// `serve` on 127.0.0.1:0 in `home` with `NOTIFY_SOCKET=notify_socket`, its log piped.
fn spawn_serve(home: &Path, notify_socket: &str) -> Child {
    noise_echo(home)
        .env("NOTIFY_SOCKET", notify_socket)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--create-host-key",
            "--host-key",
        ])
        .arg(home.join("host_key"))
        .arg("--authorized-keys")
        .arg(home.join("authorized_keys"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The next notification, waited for within the hang guard.
fn receive(socket: &UnixDatagram) -> String {
    let mut buffer = [0u8; 4096];
    let len = socket
        .recv(&mut buffer)
        .expect("no notification within the hang guard");
    text(&buffer[..len])
}

/// Sends `signal` (`-HUP`, `-TERM`) to `child`.
fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(signal)
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Reads `child`'s log to its `listening on` line; the address.
fn listening_addr(
    child: &mut Child,
) -> (
    std::net::SocketAddr,
    std::io::BufReader<std::process::ChildStderr>,
) {
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    for _ in 0..50 {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        log.push_str(&line);
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
            return (addr, stderr);
        }
    }
    let _ = child.kill();
    panic!("the server did not start: {log}");
}

#[test]
fn serve_notifies_ready_once_listening_reloading_on_sighup_and_stopping_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let mut child = spawn_serve(dir.path(), path.to_str().unwrap());

    assert_eq!(receive(&socket), "READY=1\nSTATUS=serving");
    let (addr, mut stderr) = listening_addr(&mut child);
    // Ready means listening: a connection is taken at once.
    std::net::TcpStream::connect(addr).expect("ready but not listening");

    signal(&child, "-HUP");
    let reloading = receive(&socket);
    let micros = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("{reloading:?}"));
    assert!(micros.parse::<u64>().unwrap() > 0, "{reloading:?}");
    assert_eq!(receive(&socket), "READY=1");

    signal(&child, "-TERM");
    assert_eq!(receive(&socket), "STOPPING=1");
    // Its log ends when it exits (kept open: the log is written to the end).
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let out = finish(child, "serve after SIGTERM");
    assert_eq!(out.status.code(), Some(0), "{rest}");
}

#[test]
fn an_abstract_notify_socket_is_used_too() {
    use std::os::linux::net::SocketAddrExt;
    let dir = tempfile::tempdir().unwrap();
    // Unique per run: abstract names live in the network namespace, not the disk.
    let name = format!("noise-echo-test-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&addr).unwrap();
    socket.set_read_timeout(Some(HANG_GUARD)).unwrap();
    let mut child = spawn_serve(dir.path(), &format!("@{name}"));
    assert_eq!(receive(&socket), "READY=1\nSTATUS=serving");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_notify_socket_that_names_nothing_usable_is_reported_and_serve_serves() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_serve(dir.path(), "vsock:2:1234");
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut log = String::new();
    for _ in 0..50 {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 || line.contains("listening on ") {
            break;
        }
        log.push_str(&line);
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        log.contains("NOTIFY_SOCKET=vsock:2:1234: not a socket path nor an abstract socket name (@name); systemd will not hear that the server is ready"),
        "{log}"
    );
}

/// A file of contrib/.
fn contrib(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The values of `key=` in `unit`, in order (comments skipped).
fn directives<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_service_unit_is_notify_hardened_and_reloads_with_sighup() {
    let unit = contrib("noise-echo.service");
    for (key, value) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictNamespaces", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
    ] {
        assert_eq!(
            directives(&unit, key),
            [value],
            "{key}= in noise-echo.service"
        );
    }
    assert_eq!(
        directives(&unit, "SystemCallFilter"),
        ["@system-service", "~@privileged"]
    );
    // AF_UNIX: the readiness notification goes over a unix socket.
    assert_eq!(
        directives(&unit, "RestrictAddressFamilies"),
        ["AF_INET AF_INET6 AF_UNIX"]
    );
    // Checked first, as `sshd -t`: a broken allow-list fails the reload, not the server.
    let reload = directives(&unit, "ExecReload");
    assert_eq!(reload.len(), 2);
    assert!(reload[0].contains(" serve --check "), "{reload:?}");
    assert_eq!(reload[1], "/bin/kill -HUP $MAINPID");
}

/// The unit's command line with its paths replaced by this test's.
fn command_line(line: &str, host_key: &Path, authorized_keys: &Path) -> Vec<String> {
    line.split_whitespace()
        .skip(1)
        .map(|word| match word {
            "%d/host_key" => host_key.display().to_string(),
            "/etc/noise-echo/authorized_keys" => authorized_keys.display().to_string(),
            word => word.to_owned(),
        })
        .collect()
}

#[test]
fn the_service_units_command_lines_are_accepted_by_serve_check() {
    let unit = contrib("noise-echo.service");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let host_key: PathBuf = home.join("host_ed25519_key");
    let out = noise_echo(home)
        .args(["keygen", "-N", "", "-C", "host", "-f"])
        .arg(&host_key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let authorized_keys = home.join("authorized_keys");
    let out = noise_echo(home)
        .args(["authorize", "--authorized-keys"])
        .arg(&authorized_keys)
        .arg(home.join("host_ed25519_key.pub"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let start = directives(&unit, "ExecStart");
    let pre = directives(&unit, "ExecStartPre");
    let reload = directives(&unit, "ExecReload");
    assert_eq!(start.len(), 1);
    for line in [start[0], pre[0], reload[0]] {
        assert!(
            line.starts_with("/usr/local/bin/noise-echo serve "),
            "{line}"
        );
        let mut args = command_line(line, &host_key, &authorized_keys);
        if !args.iter().any(|arg| arg == "--check") {
            args.push("--check".to_owned());
        }
        let out = noise_echo(home).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{line}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}

#[test]
fn the_socket_unit_listens_on_both_families_and_says_what_it_needs() {
    let unit = contrib("noise-echo.socket");
    assert_eq!(
        directives(&unit, "ListenStream"),
        ["0.0.0.0:1234", "[::]:1234"]
    );
    assert_eq!(directives(&unit, "BindIPv6Only"), ["ipv6-only"]);
    assert_eq!(directives(&unit, "Service"), ["noise-echo.service"]);
    assert!(unit.contains("NEEDS serve's socket activation (LISTEN_FDS"));
}

//! The client configuration file (ssh_config's syntax) through the binary:
//! `connect NAME` with the default file or `-F FILE`, `-p`, flags over the file,
//! and refusals that name the file and line.

mod common;

use std::fs;
use std::process::Output;

use common::served::Served;
use common::text;

const SUCCESS: i32 = 0;
const FAILURE: i32 = 1;
const USAGE: i32 = 2;
const HOST_KEY_NOT_TRUSTED: i32 = 4;

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// Writes the default config file, `~/.config/noise-echo/config`.
fn write_default_config(served: &Served, text: &str) {
    let dir = served.path(".config/noise-echo");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("config"), text).unwrap();
}

/// `noise-echo connect ARGS...` in the server's home.
fn connect(served: &Served, args: &[&str]) -> Output {
    served.command().arg("connect").args(args).output().unwrap()
}

#[test]
fn connect_name_takes_host_port_identity_and_known_hosts_from_the_default_file() {
    let served = Served::start(&[]);
    write_default_config(
        &served,
        &format!(
            "# as ~/.ssh/config\n\
             Host prod prod.*\n\
             \x20   HostName 127.0.0.1\n\
             \x20   Port {}\n\
             \x20   IdentityFile ~/client\n\
             \x20   UserKnownHostsFile ~/my_known_hosts\n\
             Host *\n\
             \x20   StrictHostKeyChecking accept-new\n\
             \x20   ConnectTimeout 10\n\
             \x20   Port 1\n",
            served.port
        ),
    );
    let out = connect(&served, &["prod", "hello"]);
    assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "HELLO\n");
    // known_hosts names the real address, as ssh does with HostName.
    let known = fs::read_to_string(served.path("my_known_hosts")).unwrap();
    assert!(
        known.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", served.port)),
        "{known}"
    );
    // A name the patterns match the same way; case does not matter.
    let out = connect(&served, &["PROD.eu", "again"]);
    assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "AGAIN\n");
    // -v says which file was read.
    let out = connect(&served, &["-v", "prod", "x"]);
    assert!(
        text(&out.stderr).contains("reading configuration file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn dash_f_reads_another_file_and_dash_p_and_flags_win_over_it() {
    let served = Served::start(&[]);
    fs::write(
        served.path("alt_config"),
        "Host box\n\
         \x20 HostName 127.0.0.1\n\
         \x20 Port 1\n\
         \x20 IdentityFile ~/no_such_key\n\
         \x20 UserKnownHostsFile ~/kh\n\
         \x20 StrictHostKeyChecking accept-new\n",
    )
    .unwrap();
    let port = served.port.to_string();
    // -p wins over Port, -i over IdentityFile.
    let out = connect(
        &served,
        &["-F", "alt_config", "-p", &port, "-i", "client", "box", "hi"],
    );
    assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "HI\n");
    // Without -i, the file's IdentityFile is used, and its absence is the error.
    let out = connect(&served, &["-F", "alt_config", "-p", &port, "box", "hi"]);
    assert_eq!(code(&out), FAILURE);
    assert!(
        text(&out.stderr).contains("no_such_key"),
        "{}",
        text(&out.stderr)
    );
    // A port in ADDR wins too; giving it twice, differently, is a usage error.
    let addr = format!("box:{port}");
    let out = connect(&served, &["-F", "alt_config", "-i", "client", &addr, "hi"]);
    assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
    let out = connect(
        &served,
        &["-F", "alt_config", "-i", "client", "-p", "9", &addr, "hi"],
    );
    assert_eq!(code(&out), USAGE);
    assert!(
        text(&out.stderr).contains("the port is given twice"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_wrong_pin_in_the_file_refuses_the_server() {
    let served = Served::start(&[]);
    write_default_config(
        &served,
        &format!(
            "Host pinned\n\
             \x20 HostName 127.0.0.1\n\
             \x20 Port {}\n\
             \x20 IdentityFile ~/client\n\
             \x20 UserKnownHostsFile ~/kh\n\
             \x20 FingerprintPin SHA256:WZyIbFacJRQsF1FTuV+9PAQnQYGwI19yyCo3VXdEsUQ\n\
             \x20 StrictHostKeyChecking accept-new\n",
            served.port
        ),
    );
    let out = connect(&served, &["pinned", "hi"]);
    assert_eq!(code(&out), HOST_KEY_NOT_TRUSTED, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
    assert!(!served.path("kh").exists(), "a refused key was remembered");
}

#[test]
fn strict_host_key_checking_yes_refuses_an_unknown_host_without_asking() {
    let served = Served::start(&[]);
    write_default_config(
        &served,
        &format!(
            "Host strict\n  HostName 127.0.0.1\n  Port {}\n  IdentityFile ~/client\n  \
             UserKnownHostsFile ~/kh\n  StrictHostKeyChecking yes\n",
            served.port
        ),
    );
    let out = connect(&served, &["strict", "hi"]);
    assert_eq!(code(&out), HOST_KEY_NOT_TRUSTED, "{}", text(&out.stderr));
    // The flag wins over the file.
    let out = connect(&served, &["--accept-new-host", "strict", "hi"]);
    assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
}

#[test]
fn a_bad_line_is_refused_with_file_line_and_fix_and_dash_f_none_skips_the_file() {
    let served = Served::start(&[]);
    write_default_config(&served, "Host prod\n  HostName 127.0.0.1\n  User ann\n");
    let out = connect(&served, &["prod", "hi"]);
    assert_eq!(code(&out), FAILURE);
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: ")
            && stderr.contains(".config/noise-echo/config:3: unknown keyword 'User'"),
        "{stderr}"
    );
    assert!(stderr.contains("IgnoreUnknown User"), "{stderr}");
    // IgnoreUnknown, as ssh.
    write_default_config(
        &served,
        &format!(
            "IgnoreUnknown User\nHost prod\n  HostName 127.0.0.1\n  Port {}\n  User ann\n",
            served.port
        ),
    );
    let out = connect(
        &served,
        &[
            "-i",
            "client",
            "--known-hosts",
            "kh",
            "--accept-new-host",
            "prod",
            "hi",
        ],
    );
    assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
    // -F none: no file at all, so 'prod' is a host name again (which does not resolve).
    write_default_config(&served, "this line is wrong\n");
    let out = connect(
        &served,
        &[
            "-F",
            "none",
            "-i",
            "client",
            "--known-hosts",
            "kh",
            "--accept-new-host",
            &served.addr(),
            "hi",
        ],
    );
    assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
    // A missing -F file is an error; a missing default file is not.
    let out = connect(&served, &["-F", "missing", "prod", "hi"]);
    assert_eq!(code(&out), FAILURE);
    assert!(
        text(&out.stderr).contains("cannot read missing"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_bad_value_names_the_line() {
    let served = Served::start(&[]);
    fs::write(served.path("cfg"), "Host *\n  Port 99999\n").unwrap();
    let out = connect(&served, &["-F", "cfg", "anything", "hi"]);
    assert_eq!(code(&out), FAILURE);
    assert_eq!(
        text(&out.stderr),
        "error: cfg:2: Port '99999' is not a port number (1 to 65535)\n"
    );
    fs::write(served.path("cfg"), "Host x\n  HostName a:1\n").unwrap();
    let out = connect(&served, &["-F", "cfg", "x", "hi"]);
    assert_eq!(code(&out), FAILURE);
    assert!(
        text(&out.stderr).contains("HostName 'a:1' for 'x' has a port in it; use Port"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_default_file_must_be_the_users_own_and_dash_f_dev_null_is_empty() {
    use std::os::unix::fs::PermissionsExt;
    let served = Served::start(&[]);
    write_default_config(&served, "Host prod\n  HostName 127.0.0.1\n");
    let file = served.path(".config/noise-echo/config");
    for mode in [0o664, 0o646] {
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
        let out = connect(&served, &["prod", "hi"]);
        assert_eq!(code(&out), FAILURE);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!("bad permissions 0{mode:o}")),
            "{stderr}"
        );
        assert!(stderr.contains("(fix: chmod go-w "), "{stderr}");
    }
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    // Another user's file (only root can make one here).
    if std::os::unix::fs::chown(&file, Some(65534), None).is_ok() {
        let out = connect(&served, &["prod", "hi"]);
        assert_eq!(code(&out), FAILURE);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("bad owner: it belongs to uid 65534"),
            "{stderr}"
        );
    }
    // ssh's idiom for "no configuration": -F /dev/null reads as an empty file.
    let out = connect(
        &served,
        &[
            "-F",
            "/dev/null",
            "-i",
            "client",
            "--known-hosts",
            "kh",
            "--accept-new-host",
            &served.addr(),
            "hi",
        ],
    );
    assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "HI\n");
}

#[test]
fn dash_g_prints_the_settings_after_the_file_and_the_flags_without_connecting() {
    let home = tempfile::tempdir().unwrap();
    fs::write(
        home.path().join("cfg"),
        "Host prod\n  HostName 10.0.0.5\n  Port 4000\n  IdentityFile ~/keys/robot\n  \
         ConnectTimeout 5\n  FingerprintPin SHA256:WZyIbFacJRQsF1FTuV+9PAQnQYGwI19yyCo3VXdEsUQ\n\
         Host *\n  UserKnownHostsFile ~/kh\n  StrictHostKeyChecking yes\n",
    )
    .unwrap();
    let settings = |args: &[&str]| {
        let out = common::noise_echo(home.path())
            .current_dir(home.path())
            .args(["connect", "-F", "cfg", "-G"])
            .args(args)
            .output()
            .unwrap();
        assert_eq!(code(&out), SUCCESS, "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let home_text = home.path().display();
    assert_eq!(
        settings(&["prod"]),
        format!(
            "hostname 10.0.0.5\nport 4000\nidentityfile {home_text}/keys/robot\n\
             userknownhostsfile {home_text}/kh\nstricthostkeychecking yes\nconnecttimeout 5\n\
             fingerprintpin SHA256:WZyIbFacJRQsF1FTuV+9PAQnQYGwI19yyCo3VXdEsUQ\n"
        )
    );
    assert_eq!(
        settings(&["-p", "9", "-i", "mine", "--accept-new-host", "other"]),
        format!(
            "hostname other\nport 9\nidentityfile mine\nuserknownhostsfile {home_text}/kh\n\
             stricthostkeychecking accept-new\nconnecttimeout 10\n"
        )
    );
    // ConnectTimeout feeds --connect-timeout; the flag wins.
    assert!(settings(&["--connect-timeout", "3", "prod"]).contains("\nconnecttimeout 3\n"));
}

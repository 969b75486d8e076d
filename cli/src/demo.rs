//! `noise-echo demo`: the whole product in one process, step by step. Fresh keys in
//! a temporary directory, a server on an ephemeral loopback port, an authorized
//! client that trusts the server on first use, a few requests, and an unauthorized
//! key being refused. Everything is removed at the end.

use std::io::Write;
use std::sync::Arc;

use anyhow::{bail, Context};

use noise_echo::client::{
    self, ClientConfig, ClientError, HostKeyError, Target, UnknownHost, UnknownHostPolicy,
};
use noise_echo::fsutil;
use noise_echo::identity::Identity;
use noise_echo::openssh::authorized_keys;
use noise_echo::openssh::keyfile::{self, PRIVATE_KEY_MODE};
use noise_echo::server::{self, ServerConfig};
use noise_echo::wire::{LocalIdentity, Reply, NOISE_PROTOCOL};

#[derive(Debug, clap::Args)]
#[command(after_long_help = HELP)]
pub(super) struct Args {}

/// The end of `--help`: examples and exit statuses.
const HELP: &str = "\
Examples:
  noise-echo demo

Everything happens in a temporary directory and on a loopback port; nothing is kept.

Exit statuses:
  0  every step worked
  1  a step failed (the message says which)
  2  the command line could not be parsed";

/// Requests that show what "uppercase" means beyond ASCII.
const MESSAGES: [(&str, &str); 5] = [
    ("hello, world", "ASCII"),
    ("straße", "German: ß becomes SS, so the reply is longer"),
    ("καλημέρα", "Greek"),
    ("안녕하세요", "Korean has no case: unchanged"),
    ("", "an empty request gets an empty reply"),
];

pub(super) fn run(_args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(demo())
}

macro_rules! say {
    ($($arg:tt)*) => {{
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, $($arg)*)?;
    }};
}

async fn demo() -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("noise-echo-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let path = |name: &str| dir.path().join(name);

    say!("noise-echo demo: an encrypted, mutually authenticated echo service");
    say!("");
    say!(
        "1. Keys: three fresh Ed25519 identities in OpenSSH format, in {}",
        dir.path().display()
    );
    let host = Identity::generate("demo-server");
    let client_identity = Identity::generate("alice@demo");
    let intruder = Identity::generate("mallory@demo");
    for (label, identity, file) in [
        ("server host key", &host, "host_ed25519_key"),
        ("client (alice)", &client_identity, "id_ed25519"),
        ("intruder (mallory)", &intruder, "mallory_ed25519"),
    ] {
        keyfile::write_identity(&path(file), identity, false)?;
        say!(
            "   {label:<19} {}  ({file}, mode 0600; {file}.pub)",
            identity.public_key().fingerprint()
        );
    }

    say!("");
    say!("2. The server's operator authorizes alice's public key (noise-echo authorize):");
    let authorized_keys_path = path("authorized_keys");
    let alice_line = client_identity
        .public_key()
        .to_openssh_line(client_identity.comment());
    fsutil::update_locked(&authorized_keys_path, PRIVATE_KEY_MODE, |old| {
        Ok::<_, std::io::Error>((Some(authorized_keys::append_line(old, &alice_line)), ()))
    })?;
    say!("   authorized_keys: {alice_line}");

    say!("");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on 127.0.0.1")?;
    let addr = listener.local_addr()?;
    let config = ServerConfig::new(
        Arc::new(LocalIdentity::new(&host)),
        authorized_keys_path.clone(),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server::run(listener, config, async move {
        let _ = stopped.await;
    }));
    say!("3. The server listens on {addr} (loopback only, an ephemeral port).");

    say!("");
    say!("4. Alice connects. Handshake {NOISE_PROTOCOL}, prologue \"noise-echo/1\":");
    say!("   -> e               alice sends an ephemeral X25519 key");
    say!("   <- e, ee, s, es    the server sends its ephemeral key and, encrypted, its static key");
    say!("                      and its Ed25519 host key, which must map onto that static key");
    let known_hosts = path("known_hosts");
    let target = Target {
        host: addr.ip().to_string(),
        port: addr.port(),
    };
    let config = ClientConfig::known_hosts(LocalIdentity::new(&client_identity), known_hosts.clone())
        .unknown_host(UnknownHostPolicy::Refuse)
        // Stands in for the terminal prompt: a user who checked the fingerprint says yes.
        .prompt(Some(Box::new(|unknown: &UnknownHost| {
            println!(
                "                      alice checks known_hosts BEFORE revealing herself: '{}' is unknown,",
                unknown.host_field
            );
            println!(
                "                      its fingerprint {} matches what the operator",
                unknown.key.fingerprint()
            );
            println!("                      told her, so she trusts it on first use (as SSH asks)");
            Ok(true)
        })));
    let mut connection = client::connect(&target, config).await?;
    say!("   -> s, se           alice sends her static key and Ed25519 identity, encrypted");
    say!("                      the server checks it against authorized_keys: allowed");
    say!(
        "   known_hosts now remembers the server: {}",
        std::fs::read_to_string(&known_hosts)?.trim_end()
    );

    say!("");
    say!("5. Requests over the encrypted session (each reply is the request in uppercase):");
    for (message, note) in MESSAGES {
        let reply = connection.request(message.as_bytes()).await?;
        let Reply::Response(body) = reply else {
            bail!("the server refused {message:?}: {reply:?}");
        };
        let upper = String::from_utf8_lossy(&body);
        if upper != message.to_uppercase() {
            bail!("wrong reply to {message:?}: {upper:?}");
        }
        say!("   {message:?} -> {upper:?}   ({note})");
    }
    drop(connection);

    say!("");
    say!("6. Mallory's key is not in authorized_keys:");
    let config = ClientConfig::known_hosts(LocalIdentity::new(&intruder), known_hosts.clone());
    let mut intruder_connection = client::connect(&target, config).await?;
    match intruder_connection.request(b"let me in").await {
        Err(error) => match client::permission_denied_reason(&error) {
            Some(reason) => say!("   refused by the server: \"{reason}\""),
            None => bail!("mallory failed for the wrong reason: {error}"),
        },
        Ok(reply) => bail!("mallory got an answer: {reply:?}"),
    }

    say!("");
    say!("7. A server with a different key at the same address is refused by alice:");
    let _ = stop.send(());
    server_task.await.context("the server task failed")??;
    let impostor = Identity::generate("impostor");
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .context("cannot restart on the same port")?;
    let config = ServerConfig::new(
        Arc::new(LocalIdentity::new(&impostor)),
        authorized_keys_path,
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let impostor_task = tokio::spawn(server::run(listener, config, async move {
        let _ = stopped.await;
    }));
    let config = ClientConfig::known_hosts(LocalIdentity::new(&client_identity), known_hosts)
        .unknown_host(UnknownHostPolicy::AcceptNew);
    match client::connect(&target, config).await {
        Err(ClientError::HostKeyNotTrusted(HostKeyError::Changed { .. })) => {
            say!("   {}", super::render::CHANGED_HEADLINE);
            say!("   (even with --accept-new-host; alice's identity was never sent to it)");
        }
        Err(error) => bail!("unexpected failure: {error}"),
        Ok(_) => bail!("alice trusted an impostor"),
    }
    let _ = stop.send(());
    impostor_task.await.context("the server task failed")??;

    say!("");
    say!("8. Server stopped; removing {}.", dir.path().display());
    dir.close()
        .context("cannot remove the temporary directory")?;
    say!("Done. Next: the walkthrough in README.md runs the same steps across two hosts.");
    Ok(())
}

//! The echo client: connects, runs the initiator side of the handshake, checks the
//! server's key against known_hosts BEFORE revealing its own identity (msg 3), and
//! then sends requests and reads replies.
//!
//! Trust on first use works as in SSH: a known key goes ahead silently, an unknown
//! one is accepted only by the user (a prompt), by the caller's explicit policy
//! (`--accept-new-host`) or by a fingerprint the caller already has
//! (`--expect-fingerprint`), and a changed or revoked key is refused whatever the
//! policy says.

use std::fmt;
use std::io;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::fsutil;
use crate::identity::{Fingerprint, PublicKey};
use crate::openssh::known_hosts::{self, HostStatus, KnownHosts};
use crate::wire::{
    self, LocalIdentity, RecordType, RecvHalf, Refusal, Reply, SendHalf, WireError,
    MIN_RESPONSE_LIMIT,
};

/// The port a server listens on when none is given.
pub const DEFAULT_PORT: u16 = 1234;

/// known_hosts is private to the user, as `~/.ssh/known_hosts`.
const KNOWN_HOSTS_MODE: u32 = 0o600;

/// Where to connect: a host name or address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// As the user wrote it (without brackets): it is also the known_hosts name.
    pub host: String,
    /// The TCP port.
    pub port: u16,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl FromStr for Target {
    type Err = String;

    /// Accepts `host`, `host:port`, `[v6]`, `[v6]:port` and a bare IPv6 address.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("'{text}' is not an address (expected HOST, HOST:PORT or [IPv6]:PORT)");
        let parse_port = |port: &str| port.parse::<u16>().ok().filter(|&port| port != 0);
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            let port = match after {
                "" => DEFAULT_PORT,
                _ => after
                    .strip_prefix(':')
                    .and_then(parse_port)
                    .ok_or_else(bad)?,
            };
            (host, port)
        } else if text.parse::<Ipv6Addr>().is_ok() {
            (text, DEFAULT_PORT)
        } else if let Some((host, port)) = text.rsplit_once(':') {
            (host, parse_port(port).ok_or_else(bad)?)
        } else {
            (text, DEFAULT_PORT)
        };
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == ',') {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

/// What to do with a server whose key known_hosts does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnknownHostPolicy {
    /// Refuse it (the default without a terminal).
    Refuse,
    /// Trust it and remember it (`--accept-new-host`, SSH's `accept-new`).
    AcceptNew,
    /// Trust it and remember it only if its fingerprint is this one.
    ExpectFingerprint(Fingerprint),
}

/// Asks the user about an unknown host key; `true` means trust it. Runs on a
/// blocking thread, so it may read a terminal.
pub type HostKeyPrompt = Box<dyn FnOnce(&UnknownHost) -> io::Result<bool> + Send>;

/// What the user is shown about an unknown server.
#[derive(Debug, Clone)]
pub struct UnknownHost {
    /// The name it will be recorded under, e.g. `[localhost]:1234`.
    pub host_field: String,
    /// The key the server presented.
    pub key: PublicKey,
}

/// Everything that can go wrong when connecting, grouped so callers (the CLI's exit
/// statuses) can tell the cases apart.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// Where we tried.
        target: String,
        /// Why it failed.
        source: io::Error,
    },
    /// The server's key is not trusted: unknown and not accepted, changed, or revoked.
    /// Nothing revealing our identity was sent.
    #[error("{0}")]
    HostKeyNotTrusted(String),
    /// known_hosts could not be read or updated.
    #[error("{}: {source}", path.display())]
    KnownHosts {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The handshake or the session failed.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// How to connect: our identity and the rules for the server's.
pub struct ClientConfig {
    /// Our identity, with its Noise key derived.
    pub identity: LocalIdentity,
    /// The known_hosts file to check and to add to.
    pub known_hosts: PathBuf,
    /// What to do with an unknown server key when there is no prompt, or before it.
    pub unknown_host: UnknownHostPolicy,
    /// Asks the user about an unknown key; `None` when there is no terminal.
    pub prompt: Option<HostKeyPrompt>,
}

/// An established, authenticated session with a server.
pub struct Connection {
    /// The server's verified key.
    pub server_key: PublicKey,
    /// `Some(host field)` when this connection added the server to known_hosts, so
    /// the caller can tell the user, as SSH's "Permanently added" warning does.
    pub newly_known_as: Option<String>,
    /// Receives the server's replies.
    pub receiver: RecvHalf<OwnedReadHalf>,
    /// Sends our requests.
    pub sender: SendHalf<OwnedWriteHalf>,
}

impl Connection {
    /// Sends one request and waits for its reply. For many requests, write them all
    /// with `sender` and read the replies with `receiver` (pipelining) instead.
    ///
    /// # Errors
    /// [`ClientError::Wire`]: the session failed, the server refused us
    /// ([`Refusal::PermissionDenied`]), or it closed without replying (truncated).
    pub async fn request(&mut self, body: &[u8]) -> Result<Reply, ClientError> {
        self.sender.write_record(RecordType::Request, body).await?;
        self.sender.flush().await?;
        match self.receiver.read_reply(MIN_RESPONSE_LIMIT).await? {
            Some(reply) => Ok(reply),
            None => Err(WireError::PeerMisbehaved(wire::Violation::Truncated(
                wire::TruncatedAt::RecordHeader,
            ))
            .into()),
        }
    }
}

/// Connects to `target`, verifies the server against known_hosts and `config`'s
/// policy, and completes the handshake.
///
/// # Errors
/// [`ClientError::Connect`] if the server cannot be reached,
/// [`ClientError::HostKeyNotTrusted`] (with the full explanation to show the user),
/// [`ClientError::KnownHosts`], and [`ClientError::Wire`] for a handshake failure.
pub async fn connect(target: &Target, config: ClientConfig) -> Result<Connection, ClientError> {
    let mut stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|source| ClientError::Connect {
            target: target.to_string(),
            source,
        })?;
    // Requests are small and latency matters: don't let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let ClientConfig {
        identity,
        known_hosts: known_hosts_path,
        unknown_host,
        prompt,
    } = config;
    // -> e
    // <- e, ee, s, es   (the server's payload is checked against its static key)
    let pending = wire::initiate(&mut stream, &identity).await?;
    let server_key = *pending.server_key();
    let known = KnownHosts::load(&known_hosts_path).map_err(|source| ClientError::KnownHosts {
        path: known_hosts_path.clone(),
        source,
    })?;
    let host_field = known_hosts::host_field(&target.host, target.port);
    let remember = match known.check(&target.host, target.port, &server_key) {
        HostStatus::Trusted { .. } => false,
        HostStatus::Revoked { path, line } => {
            let _ = pending.reject("revoked");
            return Err(ClientError::HostKeyNotTrusted(revoked_message(
                &host_field,
                &server_key,
                &path,
                line,
            )));
        }
        HostStatus::Changed {
            path,
            line,
            known_fingerprint,
        } => {
            let _ = pending.reject("changed");
            return Err(ClientError::HostKeyNotTrusted(changed_message(
                &host_field,
                &server_key,
                &known_fingerprint,
                &path,
                line,
            )));
        }
        HostStatus::Unknown => {
            let accepted = decide_unknown(&host_field, &server_key, &unknown_host, prompt).await?;
            if let Err(reason) = accepted {
                let _ = pending.reject("unknown");
                return Err(ClientError::HostKeyNotTrusted(reason));
            }
            true
        }
    };
    // -> s, se   (only now does the server learn who we are)
    let established = pending.approve(&mut stream).await?;
    if remember {
        add_known_host(&known_hosts_path, &host_field, &server_key)?;
    }
    let (reader, writer) = stream.into_split();
    let (receiver, sender) = established.into_halves(reader, writer);
    Ok(Connection {
        server_key,
        newly_known_as: remember.then_some(host_field),
        receiver,
        sender,
    })
}

/// Applies the policy, then the prompt, to an unknown key. `Ok(Err(reason))` is a
/// refusal to show the user.
async fn decide_unknown(
    host_field: &str,
    key: &PublicKey,
    policy: &UnknownHostPolicy,
    prompt: Option<HostKeyPrompt>,
) -> Result<Result<(), String>, ClientError> {
    let fingerprint = key.fingerprint();
    match policy {
        UnknownHostPolicy::ExpectFingerprint(expected) if *expected == fingerprint => {
            return Ok(Ok(()))
        }
        UnknownHostPolicy::ExpectFingerprint(expected) => {
            return Ok(Err(format!(
                "host key for '{host_field}' is {fingerprint}, not the expected {expected}: refusing to connect"
            )))
        }
        UnknownHostPolicy::AcceptNew => return Ok(Ok(())),
        UnknownHostPolicy::Refuse => {}
    }
    let Some(prompt) = prompt else {
        return Ok(Err(format!(
            "host key for '{host_field}' is not known (ED25519 key fingerprint {fingerprint}).\n\
             Check the fingerprint with the server's operator, then connect again with\n\
             --expect-fingerprint {fingerprint}\n\
             (or --accept-new-host to trust whatever key the server presents, or from a terminal to be asked)"
        )));
    };
    let unknown = UnknownHost {
        host_field: host_field.to_owned(),
        key: *key,
    };
    let answer = tokio::task::spawn_blocking(move || prompt(&unknown))
        .await
        .map_err(|error| {
            ClientError::HostKeyNotTrusted(format!("host key prompt failed: {error}"))
        })?
        .map_err(|error| {
            ClientError::HostKeyNotTrusted(format!("host key prompt failed: {error}"))
        })?;
    Ok(if answer {
        Ok(())
    } else {
        Err(format!("host key for '{host_field}' was not accepted"))
    })
}

/// Appends `host_field key` to known_hosts, under a lock, atomically.
fn add_known_host(path: &Path, host_field: &str, key: &PublicKey) -> Result<(), ClientError> {
    fsutil::update_locked(path, KNOWN_HOSTS_MODE, |old| {
        Ok::<_, io::Error>((Some(known_hosts::append_entry(old, host_field, key)), ()))
    })
    .map_err(|source| ClientError::KnownHosts {
        path: path.to_path_buf(),
        source,
    })
}

/// SSH's warning for a changed host key, naming the file and line to fix.
fn changed_message(
    host_field: &str,
    key: &PublicKey,
    known: &Fingerprint,
    path: &Path,
    line: usize,
) -> String {
    format!(
        "\n\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
Someone could be eavesdropping on you right now (man-in-the-middle attack)!\n\
It is also possible that the host key has just been changed.\n\
The fingerprint for the ED25519 key sent by the remote host '{host_field}' is\n\
{fingerprint}.\n\
The key known for it is {known}.\n\
Please contact your system administrator.\n\
Offending ED25519 key in {path}:{line}\n\
If the change is legitimate, remove that line (ssh-keygen -R '{host_field}' -f {path}) and connect again.\n\
Host key for '{host_field}' has changed: refusing to connect.",
        fingerprint = key.fingerprint(),
        path = path.display(),
    )
}

fn revoked_message(host_field: &str, key: &PublicKey, path: &Path, line: usize) -> String {
    format!(
        "the host key {} presented by '{host_field}' is marked @revoked in {}:{line}: refusing to connect",
        key.fingerprint(),
        path.display()
    )
}

/// Turns a [`Refusal::PermissionDenied`] reason into what the user reads.
pub fn permission_denied_reason(error: &ClientError) -> Option<&str> {
    match error {
        ClientError::Wire(WireError::NotAllowed(Refusal::PermissionDenied(reason))) => Some(reason),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_like_ssh_destinations() {
        let cases = [
            ("localhost", "localhost", DEFAULT_PORT),
            ("example.org:22", "example.org", 22),
            ("127.0.0.1:4000", "127.0.0.1", 4000),
            ("[::1]:4000", "::1", 4000),
            ("[::1]", "::1", DEFAULT_PORT),
            ("::1", "::1", DEFAULT_PORT),
            ("fe80::1", "fe80::1", DEFAULT_PORT),
        ];
        for (text, host, port) in cases {
            let target: Target = text.parse().unwrap();
            assert_eq!((target.host.as_str(), target.port), (host, port), "{text}");
        }
        for bad in [
            "",
            ":80",
            "host:",
            "host:0",
            "host:99999",
            "[::1",
            "[::1]x",
            "a b",
            "a,b",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad}");
        }
        assert_eq!("[::1]:9".parse::<Target>().unwrap().to_string(), "[::1]:9");
    }
}

//! The echo client: connects, runs the initiator side of the handshake, checks the
//! server's key against known_hosts BEFORE revealing its own identity (msg 3), and
//! then sends requests and reads replies.
//!
//! Trust on first use works as in SSH: a known key goes ahead silently, an unknown
//! one is accepted only by the user (a prompt), by the caller's explicit policy
//! (`--accept-new-host`) or by a fingerprint the caller already has
//! (`--expect-fingerprint`), and a changed or revoked key is refused whatever the
//! policy says. An embedder can instead pin the server's fingerprint
//! ([`ClientConfig::pinned`]), and no file is read or written.
//!
//! [`decide`] is the decision itself, without I/O; this module runs the handshake
//! ([`connect`] over TCP, [`connect_stream`] over any stream) around it.

mod trust;

pub use trust::{decide, Decision, HostKeyError, Known, UnknownHostPolicy, UnknownReason};

use std::fmt;
use std::io;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::fsutil;
use crate::identity::{Fingerprint, PublicKey};
use crate::openssh::known_hosts::{self, KnownHosts};
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
#[non_exhaustive]
pub enum ClientError {
    /// The server could not be reached.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// Where we tried.
        target: String,
        /// Why it failed.
        source: io::Error,
    },
    /// The server's key is not trusted: unknown and not accepted, changed, revoked,
    /// or not the expected one. Nothing revealing our identity was sent.
    #[error(transparent)]
    HostKeyNotTrusted(#[from] HostKeyError),
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

/// How the server's key is trusted.
#[non_exhaustive]
pub enum HostTrust {
    /// Only the key with this fingerprint; no file is read or written.
    Pinned(Fingerprint),
    /// known_hosts, as SSH: a known key goes ahead, a changed or revoked one is
    /// refused, an unknown one follows `unknown` and then `prompt`.
    KnownHosts {
        /// The known_hosts file to check and to add to.
        path: PathBuf,
        /// What to do with an unknown server key when there is no prompt, or before it.
        unknown: UnknownHostPolicy,
        /// Asks the user about an unknown key; `None` when there is no terminal.
        prompt: Option<HostKeyPrompt>,
    },
}

impl fmt::Debug for HostTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pinned(fingerprint) => f.debug_tuple("Pinned").field(fingerprint).finish(),
            Self::KnownHosts {
                path,
                unknown,
                prompt,
            } => f
                .debug_struct("KnownHosts")
                .field("path", path)
                .field("unknown", unknown)
                .field("prompt", &prompt.as_ref().map(|_| "<prompt>"))
                .finish(),
        }
    }
}

/// How to connect: our identity and the rules for the server's.
#[derive(Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Our identity, with its Noise key derived.
    pub identity: LocalIdentity,
    /// How the server's key is trusted.
    pub trust: HostTrust,
}

impl ClientConfig {
    /// Trusts only the server key with `fingerprint`, without any file.
    pub fn pinned(identity: LocalIdentity, fingerprint: Fingerprint) -> Self {
        Self {
            identity,
            trust: HostTrust::Pinned(fingerprint),
        }
    }

    /// Checks the server against the known_hosts file at `path`, refusing unknown
    /// keys (change it with [`ClientConfig::unknown_host`] and [`ClientConfig::prompt`]).
    pub fn known_hosts(identity: LocalIdentity, path: PathBuf) -> Self {
        Self {
            identity,
            trust: HostTrust::KnownHosts {
                path,
                unknown: UnknownHostPolicy::Refuse,
                prompt: None,
            },
        }
    }

    /// Sets the policy for unknown keys (known_hosts trust only; a pin ignores it).
    #[must_use]
    pub fn unknown_host(mut self, policy: UnknownHostPolicy) -> Self {
        if let HostTrust::KnownHosts { unknown, .. } = &mut self.trust {
            *unknown = policy;
        }
        self
    }

    /// Sets the prompt for unknown keys (known_hosts trust only; a pin ignores it).
    #[must_use]
    pub fn prompt(mut self, ask: Option<HostKeyPrompt>) -> Self {
        if let HostTrust::KnownHosts { prompt, .. } = &mut self.trust {
            *prompt = ask;
        }
        self
    }
}

/// An established, authenticated session with a server, over the halves `R` and `W`
/// of its stream (TCP's owned halves for [`connect`]). The fields are private: the
/// key is the one this session's halves were verified against.
pub struct Connection<R = OwnedReadHalf, W = OwnedWriteHalf> {
    server_key: PublicKey,
    newly_known_as: Option<String>,
    receiver: RecvHalf<R>,
    sender: SendHalf<W>,
}

impl<R, W> Connection<R, W> {
    /// The server's verified key.
    pub fn server_key(&self) -> &PublicKey {
        &self.server_key
    }

    /// `Some(host field)` when this connection added the server to known_hosts, so
    /// the caller can tell the user, as SSH's "Permanently added" warning does.
    pub fn newly_known_as(&self) -> Option<&str> {
        self.newly_known_as.as_deref()
    }

    /// The half that receives the server's replies.
    pub fn receiver(&self) -> &RecvHalf<R> {
        &self.receiver
    }

    /// The half that sends our requests.
    pub fn sender(&self) -> &SendHalf<W> {
        &self.sender
    }

    /// The receiving half, to read replies to requests sent with
    /// [`Connection::sender_mut`].
    pub fn receiver_mut(&mut self) -> &mut RecvHalf<R> {
        &mut self.receiver
    }

    /// The sending half, to write requests ahead of their replies.
    pub fn sender_mut(&mut self) -> &mut SendHalf<W> {
        &mut self.sender
    }

    /// The receiving and sending halves, for pipelining from two tasks.
    pub fn into_halves(self) -> (RecvHalf<R>, SendHalf<W>) {
        (self.receiver, self.sender)
    }
}

impl<R, W> fmt::Debug for Connection<R, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("server_key", &self.server_key)
            .field("newly_known_as", &self.newly_known_as)
            .finish_non_exhaustive()
    }
}

impl<R, W> Connection<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// Sends one request and waits for its reply. For many requests, write them all
    /// with the sending half and read the replies with the receiving one
    /// ([`Connection::into_halves`]: pipelining) instead.
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

/// Connects to `target` over TCP, then runs [`connect_stream`]'s handshake and
/// trust decision.
///
/// # Errors
/// [`ClientError::Connect`] if the server cannot be reached, and those of
/// [`connect_stream`].
pub async fn connect(target: &Target, config: ClientConfig) -> Result<Connection, ClientError> {
    let mut stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|source| ClientError::Connect {
            target: target.to_string(),
            source,
        })?;
    // Requests are small and latency matters: don't let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let (established, server_key, newly_known_as) = handshake(&mut stream, target, config).await?;
    // TCP's owned halves need no lock between the reader and the writer.
    let (reader, writer) = stream.into_split();
    let (receiver, sender) = established.into_halves(reader, writer);
    Ok(Connection {
        server_key,
        newly_known_as,
        receiver,
        sender,
    })
}

/// Runs the handshake over `io`, an already connected stream to the server known
/// as `server` (its name and port are what known_hosts is checked under), and
/// decides whether to trust its key BEFORE revealing our identity (message 3).
///
/// # Errors
/// [`ClientError::HostKeyNotTrusted`] with the [`HostKeyError`] saying why,
/// [`ClientError::KnownHosts`] if the file cannot be read or updated, and
/// [`ClientError::Wire`] for a handshake failure.
pub async fn connect_stream<S>(
    mut io: S,
    server: &Target,
    config: ClientConfig,
) -> Result<Connection<ReadHalf<S>, WriteHalf<S>>, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (established, server_key, newly_known_as) = handshake(&mut io, server, config).await?;
    let (reader, writer) = tokio::io::split(io);
    let (receiver, sender) = established.into_halves(reader, writer);
    Ok(Connection {
        server_key,
        newly_known_as,
        receiver,
        sender,
    })
}

/// The handshake and the trust decision; returns the session, the server's key
/// and, if it was added to known_hosts, its host field.
async fn handshake<S>(
    stream: &mut S,
    target: &Target,
    config: ClientConfig,
) -> Result<(wire::Established, PublicKey, Option<String>), ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let ClientConfig { identity, trust } = config;
    // -> e
    // <- e, ee, s, es   (the server's payload is checked against its static key)
    let pending = wire::initiate(stream, &identity).await?;
    let server_key = *pending.server_key();
    let host_field = known_hosts::host_field(&target.host, target.port);
    let (decision, prompt, path) = match trust {
        HostTrust::Pinned(fingerprint) => (
            trust::decide(Known::Pinned(&fingerprint), &host_field, &server_key),
            None,
            None,
        ),
        HostTrust::KnownHosts {
            path,
            unknown,
            prompt,
        } => {
            let known = KnownHosts::load(&path).map_err(|source| ClientError::KnownHosts {
                path: path.clone(),
                source,
            })?;
            let status = known.check(&target.host, target.port, &server_key);
            let decision = trust::decide(
                Known::KnownHosts {
                    status,
                    policy: &unknown,
                    can_prompt: prompt.is_some(),
                },
                &host_field,
                &server_key,
            );
            (decision, prompt, Some(path))
        }
    };
    let decision = match (decision, prompt) {
        (Decision::Ask, Some(prompt)) => ask(&host_field, &server_key, prompt).await,
        (decision, _) => decision,
    };
    let remember = match decision {
        Decision::Trusted => false,
        Decision::Remember => true,
        Decision::Ask => unreachable!("asked above: there is a prompt"),
        Decision::Refuse(error) => {
            // The typestate's refusal says the same; ours carries the details.
            let _ = pending.reject(error.to_string());
            return Err(error.into());
        }
    };
    // -> s, se   (only now does the server learn who we are)
    let established = pending.approve(stream).await?;
    let newly_known_as = match (remember, path) {
        (true, Some(path)) => {
            add_known_host(&path, &host_field, &server_key)?;
            Some(host_field)
        }
        _ => None,
    };
    Ok((established, server_key, newly_known_as))
}

/// Asks the user about an unknown key, on a blocking thread.
async fn ask(host_field: &str, key: &PublicKey, prompt: HostKeyPrompt) -> Decision {
    let unknown = UnknownHost {
        host_field: host_field.to_owned(),
        key: *key,
    };
    let failed = |source| {
        Decision::Refuse(HostKeyError::PromptFailed {
            host_field: host_field.to_owned(),
            source,
        })
    };
    match tokio::task::spawn_blocking(move || prompt(&unknown)).await {
        Ok(Ok(true)) => Decision::Remember,
        Ok(Ok(false)) => Decision::Refuse(HostKeyError::Unknown {
            host_field: host_field.to_owned(),
            presented: key.fingerprint(),
            reason: UnknownReason::Declined,
        }),
        Ok(Err(error)) => failed(error),
        Err(error) => failed(io::Error::other(error.to_string())),
    }
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
    use crate::identity::Identity;

    #[test]
    fn config_debug_shows_the_policy_and_hides_the_prompt_and_secrets() {
        let me = Identity::generate("me");
        let config = ClientConfig::known_hosts(LocalIdentity::new(&me), "kh".into())
            .unknown_host(UnknownHostPolicy::AcceptNew)
            .prompt(Some(Box::new(|_: &UnknownHost| Ok(true))));
        let text = format!("{config:?}");
        assert!(text.contains("AcceptNew"), "{text}");
        assert!(text.contains("<prompt>"), "{text}");
        assert!(text.contains("public_key"), "{text}");
        let pinned = format!(
            "{:?}",
            ClientConfig::pinned(LocalIdentity::new(&me), me.public_key().fingerprint())
        );
        assert!(pinned.contains("Pinned"), "{pinned}");
    }

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

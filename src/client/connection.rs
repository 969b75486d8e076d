//! An established session ([`Connection`]): the server's verified key and the two
//! halves of the record stream, and the one-request convenience [`Connection::request`].

use std::fmt;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::client::ClientError;
use crate::identity::PublicKey;
use crate::openssh::certificate::Certificate;
use crate::wire::{
    Established, ProtocolVersion, RecordType, RecvHalf, Reply, SendHalf, ServerParams, Suite,
};

/// An established, authenticated session with a server, over the halves `R` and `W`
/// of its stream (TCP's owned halves for [`connect`](crate::client::connect)). The fields are private: the
/// key is the one this session's halves were verified against.
pub struct Connection<R = OwnedReadHalf, W = OwnedWriteHalf> {
    pub(super) server_key: PublicKey,
    pub(super) server_certificate: Option<Certificate>,
    pub(super) newly_known_as: Option<String>,
    pub(super) version: ProtocolVersion,
    pub(super) suite: Suite,
    pub(super) server_params: Option<ServerParams>,
    pub(super) receiver: RecvHalf<R>,
    pub(super) sender: SendHalf<W>,
}

impl<R, W> Connection<R, W> {
    /// The protocol version the handshake ran.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The cipher suite the session runs (v1: always ChaChaPoly).
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// The parameters the server sent in handshake message 2 (v2; `None` in v1):
    /// its request limit and rekey policy, authenticated by its key.
    pub fn server_params(&self) -> Option<ServerParams> {
        self.server_params
    }

    /// The largest request body the server accepts, when it said (v2).
    /// [`Connection::request`] refuses a longer one before sending it.
    pub fn max_request(&self) -> Option<u32> {
        self.server_params.map(|params| params.max_request)
    }

    /// The server's verified key.
    pub fn server_key(&self) -> &PublicKey {
        &self.server_key
    }

    /// The host certificate the server presented (protocol v2), whose signature
    /// verified and which certifies [`server_key`](Self::server_key). Whether it
    /// made the server trusted depends on known_hosts: a `@cert-authority` line for
    /// its CA (else the key alone was checked, and the certificate was ignored).
    pub fn server_certificate(&self) -> Option<&Certificate> {
        self.server_certificate.as_ref()
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
    /// The session over `reader` and `writer` that `session` established.
    pub(super) fn new(
        session: Established,
        server_key: PublicKey,
        newly_known_as: Option<String>,
        reader: R,
        writer: W,
    ) -> Self {
        let (version, suite, server_params) =
            (session.version(), session.suite(), session.server_params());
        let server_certificate = session.peer_certificate().cloned();
        let (receiver, sender) = session.into_halves(reader, writer);
        Self {
            server_key,
            server_certificate,
            newly_known_as,
            version,
            suite,
            server_params,
            receiver,
            sender,
        }
    }

    /// Sends one request and waits for its reply. For many requests, write them all
    /// with the sending half and read the replies with the receiving one
    /// ([`Connection::into_halves`]: pipelining) instead.
    ///
    /// # Errors
    /// [`ClientError::Closed`] when the server ended the session instead of
    /// replying; [`ClientError::Wire`]: the session failed, or the server refused us
    /// ([`Refusal::PermissionDenied`](crate::wire::Refusal::PermissionDenied)); [`ClientError::RequestTooLarge`], before
    /// anything is sent, for a body over the server's
    /// [`max_request`](Connection::max_request). A server that refuses the request
    /// and closes while it is being written gives its ERROR, not the write's error.
    pub async fn request(&mut self, body: &[u8]) -> Result<Reply, ClientError> {
        if let Some(limit) = self.max_request() {
            if body.len() > limit as usize {
                return Err(ClientError::RequestTooLarge {
                    len: body.len(),
                    limit,
                });
            }
        }
        let sent = async {
            self.sender.write_record(RecordType::Request, body).await?;
            self.sender.flush().await
        };
        if let Err(write_error) = sent.await {
            // A server refusing the request (too large for it) sends ERROR and
            // closes, and our write then fails on its reset: its reason is already
            // in our receive buffer, and says more than "broken pipe".
            return match self.receiver.read_reply_to(body.len()).await {
                Ok(Some(reply @ Reply::Error(_))) => Ok(reply),
                _ => Err(write_error.into()),
            };
        }
        // The reply's limit follows the request: its uppercase is at most three
        // times longer, whatever request limit the server has.
        self.receiver
            .read_reply_to(body.len())
            .await?
            .ok_or(ClientError::Closed)
    }
}

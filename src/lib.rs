//! noise-echo: an echo service with what SSH gives a shell. Every connection is a
//! Noise XX handshake (`Noise_XX_25519_ChaChaPoly_BLAKE2s`) in which both ends prove
//! an Ed25519 identity kept in OpenSSH's file formats; the server answers each request
//! with its uppercase form.
//!
//! The `noise-echo` command (package `noise-echo-cli`) is a thin layer over this
//! library, which other programs can embed:
//!
//! ```
//! use std::sync::Arc;
//! use noise_echo::identity::Identity;
//! use noise_echo::openssh::authorized_keys::{self, AuthorizedKeys};
//! use noise_echo::{client, server, wire};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Two identities; a real program reads them with `openssh::keyfile::read_identity`.
//! let host = Identity::generate("my-service");
//! let alice = Identity::generate("alice@laptop");
//!
//! // A server whose allow-list (here in memory; usually an authorized_keys file)
//! // holds alice's key, on a loopback port, stopped by a channel.
//! let line = authorized_keys::append_key(&[], &alice.public_key(), alice.comment());
//! let allow_list = server::AllowList::Keys(Arc::new(AuthorizedKeys::parse(&line, "(memory)".as_ref())));
//! let config = server::ServerConfig::with_allow_list(Arc::new(wire::LocalIdentity::new(&host)), allow_list);
//! let server = server::Server::new(config)?;
//! let stats = server.stats();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let target = client::Target { host: "127.0.0.1".into(), port: listener.local_addr()?.port() };
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let running = tokio::spawn(server.run(listener, stopped));
//!
//! // A client that knows the server's fingerprint out of band: no known_hosts file.
//! let config = client::ClientConfig::pinned(
//!     wire::LocalIdentity::new(&alice),
//!     host.public_key().fingerprint(),
//! );
//! let mut connection = client::connect(&target, config).await?;
//! let reply = connection.request("hello, straße".as_bytes()).await?;
//! assert_eq!(reply, wire::Reply::Response("HELLO, STRASSE".as_bytes().to_vec()));
//! drop(connection);
//!
//! let _ = stop.send(());
//! running.await??;
//! assert_eq!(stats.snapshot().requests, 1);
//! # Ok(())
//! # }
//! ```
//!
//! `examples/echo_server.rs` and `examples/echo_client.rs` are the same two halves
//! as separate programs, with key and authorized_keys files.
//!
//! Modules, from the bottom up: [`identity`] (keys, fingerprints, the X25519
//! derivation), [`openssh`] (OpenSSH's file formats), [`wire`] (the protocol),
//! [`echo`] (the service's rules), [`server`] and [`client`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod echo;
pub mod fsutil;
pub mod identity;
pub mod openssh;
pub mod server;
pub mod wire;

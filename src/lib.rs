//! noise-echo: an echo service with what SSH gives a shell. Every connection is a
//! Noise XX handshake (`Noise_XX_25519_ChaChaPoly_BLAKE2s`) in which both ends prove
//! an Ed25519 identity kept in OpenSSH's file formats; the server answers each request
//! with its uppercase form.
//!
//! The `noise-echo` command (package `noise-echo-cli`) is a thin layer over this
//! library, which other programs can embed:
//!
//! ```no_run
//! use std::sync::Arc;
//! use noise_echo::{client, identity::Identity, openssh::keyfile, server, wire};
//!
//! # async fn example() -> anyhow::Result<()> {
//! // A server: host key, allow-list, a bound listener, a shutdown signal.
//! let host = Identity::generate("my-service");
//! let config = server::ServerConfig::new(
//!     Arc::new(wire::LocalIdentity::new(&host)),
//!     "authorized_keys".into(),
//! );
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let target = client::Target { host: "127.0.0.1".into(), port: listener.local_addr()?.port() };
//! tokio::spawn(server::run(listener, config, tokio::signal::ctrl_c()));
//!
//! // A client that knows the server's fingerprint out of band.
//! let me = keyfile::read_identity("id_ed25519".as_ref())?;
//! let config = client::ClientConfig::pinned(
//!     wire::LocalIdentity::new(&me),
//!     host.public_key().fingerprint(),
//! );
//! let mut connection = client::connect(&target, config).await?;
//! let reply = connection.request(b"hello").await?;
//! assert_eq!(reply, wire::Reply::Response(b"HELLO".to_vec()));
//! # Ok(())
//! # }
//! ```
//!
//! Modules, from the bottom up: [`identity`] (keys, fingerprints, the X25519
//! derivation), [`openssh`] (OpenSSH's file
//! formats), [`wire`] (the protocol), [`server`] and [`client`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod echo;
pub mod fsutil;
pub mod identity;
pub mod openssh;
pub mod server;
pub mod wire;

//! The peer noise-echo is measured against: TLS 1.3 with client certificates, on
//! rustls 0.23 with the aws-lc-rs provider through tokio-rustls 0.26, carrying the
//! same records (`type | u32 len | body`, docs/PROTOCOL.md section 4) through the
//! same scenarios as `noise-echo bench`, so that `bench/compare.sh` compares the
//! secure channels and nothing else.
//!
//! It is set up as a careful operator would: X25519 key exchange only, Ed25519
//! certificates checked against a throw-away CA on both sides ([`pki`]), no
//! resumption or early data, one cipher suite chosen per run ([`Suite`], in
//! [`config`]), TCP_NODELAY, and the plaintext baseline's echo loop (replies batched
//! while more requests are buffered, its buffers released while idle) on the server
//! ([`server`]); the load generator is the bench module's own, through a
//! [`Tunnel`](noise_echo_tools::bench::Tunnel) ([`client`]).
//!
//! A package of its own: the `noise-echo` binary depends on `noise-echo-tools`, and
//! must neither compile nor link a second TLS stack.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod config;
pub mod pki;
pub mod server;

pub use config::Suite;

//! noise-echo: an echo service with what SSH gives a shell. Every connection is a
//! Noise XX handshake (`Noise_XX_25519_ChaChaPoly_BLAKE2s`) in which both ends prove
//! an Ed25519 identity kept in OpenSSH's file formats; the server answers each request
//! with its uppercase form.
//!
//! The binary `noise-echo` is a thin layer over this library.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod attack;
pub mod authorized_keys;
pub mod cli;
pub mod client;
pub mod fsutil;
pub mod identity;
pub mod keyfile;
pub mod known_hosts;
pub mod paths;
pub mod pattern;
pub mod server;
pub mod wire;

//! Tools to measure and to stress noise-echo, kept apart from the library so that no
//! embedder links them: the `noise-echo bench` scenarios with the plaintext baseline
//! they are measured against ([`mod@bench`]), and the flood and load generators behind
//! the hidden `noise-echo attack` command ([`attack`]). Both refuse targets off this
//! machine: they are for loopback only.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod attack;
pub mod bench;

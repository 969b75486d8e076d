//! Interleaved single-thread microbenchmark of the AEAD implementations the session
//! cipher could use (ring and aws-lc-rs), for both suites, sealing and opening in
//! place as `src/wire/cipher.rs` does: with the key object built per message (what
//! the session keeps: raw keys only) and with a cached one, on a 16-byte and a full
//! (65,519-byte) transport message. Prints medians of interleaved rounds in ns per
//! operation and MB/s, so that both implementations see the same machine load.
//!
//! `cargo run --release -p noise-echo-tools --example aead_compare [ROUNDS]`

use std::hint::black_box;
use std::time::Instant;

const KEY: [u8; 32] = [7; 32];

/// One implementation's seal, given a suite, the size and whether the key is cached.
type Case = (&'static str, Box<dyn FnMut(&mut [u8], u64) -> u64>);

macro_rules! cases {
    ($lib:ident, $name:literal) => {{
        use $lib::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, CHACHA20_POLY1305};
        let algs: [(&'static str, &'static $lib::aead::Algorithm); 2] =
            [("aes", &AES_256_GCM), ("chacha", &CHACHA20_POLY1305)];
        let mut out: Vec<Case> = Vec::new();
        for (suite, alg) in algs {
            let nonce = |n: u64| {
                let mut b = [0u8; 12];
                b[4..].copy_from_slice(&n.to_be_bytes());
                Nonce::assume_unique_for_key(b)
            };
            out.push((
                leak(format!("{} {suite} seal, key per message", $name)),
                Box::new(move |buf: &mut [u8], n| {
                    let key = LessSafeKey::new(UnboundKey::new(alg, &KEY).unwrap());
                    let tag = key
                        .seal_in_place_separate_tag(nonce(n), Aad::empty(), buf)
                        .unwrap();
                    tag.as_ref()[0] as u64
                }),
            ));
            let cached = LessSafeKey::new(UnboundKey::new(alg, &KEY).unwrap());
            out.push((
                leak(format!("{} {suite} seal, cached key", $name)),
                Box::new(move |buf: &mut [u8], n| {
                    let tag = cached
                        .seal_in_place_separate_tag(nonce(n), Aad::empty(), buf)
                        .unwrap();
                    tag.as_ref()[0] as u64
                }),
            ));
            // Open needs a valid message: seal one per size lazily, then open a
            // copy each time (the copy is timed too, for every open case alike).
            let sealer = LessSafeKey::new(UnboundKey::new(alg, &KEY).unwrap());
            let mut sealed: Vec<(usize, Vec<u8>)> = Vec::new();
            out.push((
                leak(format!("{} {suite} open, key per message", $name)),
                Box::new(move |buf: &mut [u8], _| {
                    let len = buf.len();
                    if !sealed.iter().any(|(l, _)| *l == len) {
                        let mut m = vec![1u8; len - 16];
                        let tag = sealer
                            .seal_in_place_separate_tag(nonce(5), Aad::empty(), &mut m)
                            .unwrap();
                        m.extend_from_slice(tag.as_ref());
                        sealed.push((len, m));
                    }
                    let m = &sealed.iter().find(|(l, _)| *l == len).unwrap().1;
                    buf.copy_from_slice(m);
                    let key = LessSafeKey::new(UnboundKey::new(alg, &KEY).unwrap());
                    key.open_in_place(nonce(5), Aad::empty(), buf).unwrap()[0] as u64
                }),
            ));
        }
        out
    }};
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    let mut cases = cases!(ring, "ring");
    cases.extend(cases!(aws_lc_rs, "aws-lc-rs"));
    for size in [16 + 16, 65_519] {
        // Seal takes the plaintext; open the ciphertext and tag: same buffer size.
        let iters = if size < 100 { 400_000 } else { 4_000 };
        let mut buf = vec![1u8; size];
        let mut samples = vec![Vec::new(); cases.len()];
        for _ in 0..rounds {
            for (i, (name, run)) in cases.iter_mut().enumerate() {
                let plain = if name.contains("seal") {
                    size - 16
                } else {
                    size
                };
                let start = Instant::now();
                let mut acc = 0u64;
                for n in 0..iters {
                    acc = acc.wrapping_add(run(&mut buf[..plain], n));
                }
                black_box(acc);
                samples[i].push(start.elapsed().as_nanos() as f64 / iters as f64);
            }
        }
        println!(
            "message of {} bytes (plaintext {}), {rounds} interleaved rounds, medians:",
            size,
            size - 16
        );
        for (i, (name, _)) in cases.iter().enumerate() {
            let s = &mut samples[i];
            s.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let med = s[s.len() / 2];
            println!(
                "  {name:40} {med:10.1} ns  {:8.0} MB/s  (min {:.1}, max {:.1})",
                (size - 16) as f64 / med * 1e3,
                s[0],
                s[s.len() - 1]
            );
        }
    }
}

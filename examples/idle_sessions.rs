//! Measures what an idle session costs a server, for either protocol version: opens
//! SESSIONS sessions to a running `noise-echo serve`, each answering one request,
//! then reads the server's VmRSS and prints the growth per session. The `bench`
//! command's idle scenario does the same with its own client; this one runs the
//! library's handshakes directly, so it can offer protocol 2 with either suite.
//!
//! ```text
//! cargo run --release --example idle_sessions -- ADDR SERVER_PID KEY_FILE SESSIONS 1|aesgcm|chachapoly
//! ```
//!
//! The server must trust KEY_FILE's public key and allow that many sessions for it
//! (`--max-sessions-per-key 0`).

use std::time::Duration;

use anyhow::{bail, Context};
use noise_echo::openssh::keyfile;
use noise_echo::wire::{self, LocalIdentity, Offer, RecordType, Suite};
use tokio::net::TcpStream;

/// The server's resident memory, from /proc, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read the status of process {pid}"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let kib = line.split_whitespace().nth(1).context("no VmRSS figure")?;
    Ok(kib.parse()?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, pid, key, sessions, protocol] = &args[..] else {
        bail!("usage: idle_sessions ADDR SERVER_PID KEY_FILE SESSIONS 1|aesgcm|chachapoly");
    };
    let pid: u32 = pid.parse()?;
    let sessions: usize = sessions.parse()?;
    let offer = match protocol.as_str() {
        "1" => None,
        suite => Some(Offer::new(suite.parse::<Suite>()?)),
    };
    let local = LocalIdentity::new(&keyfile::read_identity(key.as_ref())?);
    let before = rss_kib(pid)?;
    let mut open = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        let mut stream = TcpStream::connect(addr).await?;
        // As the real client: message 3 and the request go out without waiting
        // for an ACK (Nagle with delayed ACKs would add 40 ms per session).
        stream.set_nodelay(true)?;
        let pending = match &offer {
            Some(offer) => wire::initiate_v2(&mut stream, &local, offer).await?,
            None => wire::initiate(&mut stream, &local).await?,
        };
        let established = pending.approve(&mut stream).await?;
        let (reader, writer) = stream.into_split();
        let (mut rx, mut tx) = established.into_halves(reader, writer);
        tx.write_record(RecordType::Request, b"idle").await?;
        tx.flush().await?;
        rx.read_reply_to(4).await?.context("the server closed")?;
        open.push((rx, tx));
    }
    // Let the server's tasks settle into their idle state.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_kib(pid)?;
    println!(
        "protocol {protocol}: {sessions} sessions, server RSS {before} -> {after} KiB, {:.3} KiB/session",
        after.saturating_sub(before) as f64 / sessions.max(1) as f64
    );
    Ok(())
}

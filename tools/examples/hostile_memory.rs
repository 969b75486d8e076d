//! The full-scale run of the memory-budget attack (issue 11, row 1): SESSIONS
//! authorized sessions each send REQUESTS requests of 1 MiB of `ΐ` (which grows to
//! 3 MiB when uppercased) and never read a reply. Once every session is held back
//! (its writes stall) or done, it reads the server's VmRSS and VmHWM from
//! /proc/PID/status, then times an honest client's small and 512 KiB requests
//! through the flood (with another key: one key's sessions hold at most half the
//! budget), and prints one report line. `bench/hostile_memory.sh` starts the server
//! and runs it; run it only on loopback, against your own server.
//!
//! Usage: hostile_memory ADDR HOSTILE_KEY HONEST_KEY SERVER_PID SESSIONS [REQUESTS]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use noise_echo::identity::Identity;
use noise_echo::openssh::keyfile;
use noise_echo::wire::{self, LocalIdentity, RecordType, Reply, MIN_RESPONSE_LIMIT};

/// A write that makes no progress this long means the server stopped reading.
const STALLED: Duration = Duration::from_secs(3);
/// The longest the honest client may wait for each answer before the run fails.
const HONEST_WAIT: Duration = Duration::from_secs(300);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 5 {
        bail!("usage: hostile_memory ADDR HOSTILE_KEY HONEST_KEY SERVER_PID SESSIONS [REQUESTS]");
    }
    let addr: SocketAddr = args[0].parse().context("ADDR")?;
    if !addr.ip().is_loopback() {
        bail!("{addr} is not a loopback address: this tool only attacks your own machine");
    }
    let identity = Arc::new(keyfile::read_identity(args[1].as_ref())?);
    let honest_identity = keyfile::read_identity(args[2].as_ref())?;
    let pid: u32 = args[3].parse().context("SERVER_PID")?;
    let sessions: usize = args[4].parse().context("SESSIONS")?;
    let requests: usize = args
        .get(5)
        .map_or(Ok(1), |n| n.parse())
        .context("REQUESTS")?;
    let before = memory(pid)?;
    let before_kernel = kernel_tcp_pages()?;
    let body = Arc::new("ΐ".repeat(512 * 1024));
    let started = Instant::now();
    let mut held = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..sessions {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let (identity, body) = (Arc::clone(&identity), Arc::clone(&body));
        tasks.push(tokio::spawn(async move {
            hostile(stream, &identity, &body, requests).await
        }));
        // Opened in turn, so the server's handshake caps do not refuse them.
        if tasks.len() % 50 == 0 {
            for task in tasks.drain(..) {
                held.push(task.await??);
            }
        }
    }
    for task in tasks {
        held.push(task.await??);
    }
    let settled = started.elapsed();
    let during = memory(pid)?;
    let kernel = kernel_tcp_pages()?;
    let server_side = server_socket_memory(addr.port());
    let small = honest(addr, &honest_identity, "hello".into()).await?;
    let large = honest(addr, &honest_identity, "ΐ".repeat(256 * 1024)).await?;
    let after = memory(pid)?;
    println!(
        "{sessions} sessions x {requests} x 1 MiB of ΐ, never read (settled in {:.1} s): server VmRSS {} -> {} KiB ({:.1} KiB per session), VmHWM {} KiB; kernel TCP memory {} -> {} MiB (the server's sockets: {}); honest 5-byte request {:.3} s, 512 KiB request {:.3} s; VmHWM after {} KiB",
        settled.as_secs_f64(),
        before.0,
        during.0,
        (during.0.saturating_sub(before.0)) as f64 / sessions as f64,
        during.1,
        before_kernel * PAGE / (1 << 20),
        kernel * PAGE / (1 << 20),
        server_side.map_or("not known (no ss)".to_string(), |bytes| format!(
            "{} MiB",
            bytes / (1 << 20)
        )),
        small.as_secs_f64(),
        large.as_secs_f64(),
        after.1,
    );
    drop(held);
    Ok(())
}

/// One session that sends its requests until the server stops reading them, then
/// holds the connection open without reading.
async fn hostile(
    mut stream: tokio::net::TcpStream,
    identity: &Identity,
    body: &str,
    requests: usize,
) -> anyhow::Result<Box<dyn std::any::Any + Send>> {
    let local = LocalIdentity::new(identity);
    let pending = wire::initiate(&mut stream, &local).await?;
    let established = pending.approve(&mut stream).await?;
    let (reader, writer) = stream.into_split();
    let (receiver, mut sender) = established.into_halves(reader, writer);
    for _ in 0..requests {
        let sent = async {
            sender
                .write_record(RecordType::Request, body.as_bytes())
                .await?;
            sender.flush().await
        };
        match tokio::time::timeout(STALLED, sent).await {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => return Err(error.into()),
            Err(_) => break,
        }
    }
    Ok(Box::new((receiver, sender)))
}

/// One honest session and one request; how long the answer took.
async fn honest(addr: SocketAddr, identity: &Identity, body: String) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let local = LocalIdentity::new(identity);
    let pending = wire::initiate(&mut stream, &local).await?;
    let established = pending.approve(&mut stream).await?;
    let (mut receiver, mut sender) = established.into_split(stream);
    sender
        .write_record(RecordType::Request, body.as_bytes())
        .await?;
    sender.flush().await?;
    let reply = tokio::time::timeout(HONEST_WAIT, receiver.read_reply(MIN_RESPONSE_LIMIT))
        .await
        .context("the honest request was not answered")??;
    if reply != Some(Reply::Response(body.to_uppercase().into_bytes())) {
        bail!("wrong answer to the honest request");
    }
    Ok(started.elapsed())
}

/// The size of the pages /proc/net/sockstat counts TCP memory in (x86-64, arm64
/// with 4 KiB pages).
const PAGE: u64 = 4096;

/// The kernel's TCP memory, all sockets of the machine (both ends of the flood), in
/// pages: the `mem` field of the `TCP:` line of /proc/net/sockstat.
fn kernel_tcp_pages() -> anyhow::Result<u64> {
    let sockstat =
        std::fs::read_to_string("/proc/net/sockstat").context("cannot read /proc/net/sockstat")?;
    let line = sockstat
        .lines()
        .find(|line| line.starts_with("TCP:"))
        .context("no TCP line in /proc/net/sockstat")?;
    let mut fields = line.split_whitespace();
    while let Some(field) = fields.next() {
        if field == "mem" {
            return fields
                .next()
                .and_then(|pages| pages.parse().ok())
                .context("no TCP mem figure in /proc/net/sockstat");
        }
    }
    bail!("no TCP mem figure in /proc/net/sockstat")
}

/// The kernel memory of the server's end of its connections (those whose local
/// port is `port`), in bytes, as `ss -tm` reports it: received data not yet read
/// (`r`) and sent data not yet acknowledged (`w`). `None` if `ss` cannot be run.
fn server_socket_memory(port: u16) -> Option<u64> {
    let output = std::process::Command::new("ss")
        .args(["-tmnH", "state", "established"])
        .arg(format!("( sport = :{port} )"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut total = 0;
    for skmem in text.split("skmem:(").skip(1) {
        let fields = skmem.split(')').next().unwrap_or("");
        for field in fields.split(',') {
            for prefix in ["r", "w"] {
                if let Some(bytes) = field
                    .strip_prefix(prefix)
                    .and_then(|rest| rest.parse::<u64>().ok())
                {
                    total += bytes;
                }
            }
        }
    }
    Some(total)
}

/// The server's (VmRSS, VmHWM), KiB.
fn memory(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read the memory of process {pid}"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

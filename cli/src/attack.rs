//! `noise-echo attack`: floods or loads a noise-echo server on this machine and
//! reports what it saw, to check the server's limits (see [`noise_echo_tools::attack`]).
//! Hidden from `--help`: it is a test tool. Only loopback targets are accepted.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use noise_echo::identity::Fingerprint;
use noise_echo::openssh::keyfile;
use noise_echo::wire::LocalIdentity;
use noise_echo_tools::attack::{self, Client, FloodConfig, LoadConfig};

#[derive(Debug, clap::Args)]
#[command(after_long_help = HELP)]
pub(super) struct Args {
    #[command(subcommand)]
    mode: Mode,
}

/// The end of `--help`: examples and exit statuses.
const HELP: &str = "\
A test tool, for this machine only: every target must be a loopback address.

Examples:
  noise-echo attack flood --help
  noise-echo attack load --help

Exit statuses:
  0  the run completed (flood prints its probes' failures; load has none)
  1  the run failed, or a load session failed or got a wrong reply
  2  the command line could not be parsed";

/// The end of `attack flood --help`.
const FLOOD_HELP: &str = "\
Examples:
  noise-echo attack flood --target 127.0.0.1:1234 -i client --from 127.0.0.2
  noise-echo attack flood --sources 64 --duration 30    # spread over 127.1.x.y

Exit statuses:
  0  the flood ran (its output counts the probes that failed)
  1  the flood could not run (a non-loopback target, an unreadable key)
  2  the command line could not be parsed";

/// The end of `attack load --help`.
const LOAD_HELP: &str = "\
Examples:
  noise-echo attack load -i client --sessions 100 --requests 1000
  noise-echo attack load -i client --log-uniform --max-size 1048576

Exit statuses:
  0  every session finished and every reply was right
  1  a session failed or a reply was wrong, or the load could not run
  2  the command line could not be parsed";

#[derive(Debug, clap::Subcommand)]
enum Mode {
    /// Hold silent and trickling connections, spray garbage, and probe with a real client
    Flood(FloodArgs),
    /// Run many pipelined sessions and check every byte of every reply
    Load(LoadArgs),
}

/// Where to connect and as whom.
#[derive(Debug, clap::Args)]
struct Target {
    /// The server (loopback only)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1234")]
    target: SocketAddr,
    /// Private key of an authorized client (for the probe, or the sessions)
    #[arg(long, short = 'i', value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Loopback address the legitimate client connects from, e.g. 127.0.0.2
    #[arg(long, value_name = "ADDR")]
    from: Option<IpAddr>,
    /// The server's key fingerprint to insist on (default: accept any)
    #[arg(long, value_name = "FINGERPRINT")]
    expect_fingerprint: Option<Fingerprint>,
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = FLOOD_HELP)]
struct FloodArgs {
    #[command(flatten)]
    target: Target,
    /// Connections that send nothing
    #[arg(long, default_value_t = 500)]
    silent: usize,
    /// Connections that send one byte a second
    #[arg(long, default_value_t = 500)]
    trickle: usize,
    /// Connections that send a whole message 1 at once, then nothing
    #[arg(long, default_value_t = 0)]
    stalled: usize,
    /// Milliseconds before a slow connection closed by the server is reopened (0: at once)
    #[arg(long, value_name = "MS", default_value_t = 100)]
    reopen_pause_ms: u64,
    /// Garbage connections per second
    #[arg(long, default_value_t = 200)]
    garbage_rate: u32,
    /// Seconds the flood lasts
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Spread the attack over this many loopback addresses (127.1.x.y); 0 uses one
    #[arg(long, default_value_t = 0)]
    sources: usize,
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = LOAD_HELP)]
struct LoadArgs {
    #[command(flatten)]
    target: Target,
    /// Sessions, all open at once
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Requests per session, pipelined
    #[arg(long, default_value_t = 100)]
    requests: usize,
    /// Most requests in flight per session
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Largest request, in bytes
    #[arg(long, default_value_t = 65536)]
    max_size: usize,
    /// Mostly small requests (log-uniform sizes) instead of uniform sizes
    #[arg(long)]
    log_uniform: bool,
    /// Seconds a session may take
    #[arg(long, default_value_t = 600)]
    session_timeout: u64,
}

pub(super) fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match args.mode {
        Mode::Flood(flood) => runtime.block_on(run_flood(flood)),
        Mode::Load(load) => runtime.block_on(run_load(load)),
    }
}

fn client(target: &Target) -> anyhow::Result<Option<Client>> {
    let Some(path) = &target.identity else {
        return Ok(None);
    };
    let identity = keyfile::read_identity(path).context("cannot load the client identity")?;
    Ok(Some(Client {
        identity: Arc::new(LocalIdentity::new(&identity)),
        server_key: target.expect_fingerprint,
        source: target.from,
    }))
}

async fn run_flood(args: FloodArgs) -> anyhow::Result<()> {
    let mut config =
        FloodConfig::full_scale(args.target.target, Duration::from_secs(args.duration));
    config.silent = args.silent;
    config.trickle = args.trickle;
    config.stalled = args.stalled;
    config.reopen_pause = Duration::from_millis(args.reopen_pause_ms);
    config.garbage_per_second = args.garbage_rate;
    config.sources = attack::loopback_sources(args.sources);
    config.probe = client(&args.target)?;
    let stats = attack::flood(config).await.context("flood failed")?;
    println!(
        "slow connections opened {} (closed by the server {}), connect errors {}",
        stats.slow_opened, stats.slow_closed_by_server, stats.connect_errors
    );
    println!(
        "garbage connections {} (closed by the server {}, answered {})",
        stats.garbage_sent, stats.garbage_closed, stats.garbage_answered
    );
    let ms = |d: Option<Duration>| {
        d.map_or("-".to_owned(), |d| {
            format!("{:.1} ms", d.as_secs_f64() * 1e3)
        })
    };
    let rate = stats
        .probe_success_rate()
        .map_or("-".to_owned(), |rate| format!("{:.1}%", rate * 100.0));
    println!(
        "probes ok {} failed {} (success {rate}); latency p50 {} p99 {} max {}",
        stats.probes_ok,
        stats.probes_failed,
        ms(stats.probe_latency(0.5)),
        ms(stats.probe_latency(0.99)),
        ms(stats.probe_latency(1.0))
    );
    for error in &stats.probe_errors {
        println!("probe failure: {error}");
    }
    Ok(())
}

async fn run_load(args: LoadArgs) -> anyhow::Result<()> {
    let client =
        client(&args.target)?.context("load needs --identity: the sessions must be authorized")?;
    let config = LoadConfig {
        target: args.target.target,
        client,
        sessions: args.sessions,
        requests: args.requests,
        window: args.window,
        max_size: args.max_size,
        log_uniform: args.log_uniform,
        seed: 1,
        session_timeout: Duration::from_secs(args.session_timeout),
    };
    let stats = attack::load(config).await.context("load failed")?;
    let secs = stats.elapsed.as_secs_f64();
    println!(
        "sessions ok {} failed {}; replies checked {}, mismatches {}",
        stats.sessions_ok, stats.sessions_failed, stats.replies_checked, stats.mismatches
    );
    println!(
        "sent {:.1} MiB, received {:.1} MiB in {secs:.1} s ({:.1} MiB/s each way, {:.0} requests/s)",
        stats.bytes_sent as f64 / 1048576.0,
        stats.bytes_received as f64 / 1048576.0,
        stats.bytes_sent as f64 / 1048576.0 / secs,
        stats.replies_checked as f64 / secs
    );
    let s = |d: Option<Duration>| d.map_or("-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()));
    println!(
        "session time p50 {} p99 {} max {}",
        s(stats.session_time(0.5)),
        s(stats.session_time(0.99)),
        s(stats.session_time(1.0))
    );
    for error in &stats.errors {
        println!("failure: {error}");
    }
    anyhow::ensure!(
        stats.sessions_failed == 0 && stats.mismatches == 0,
        "{} session(s) failed, {} wrong replies",
        stats.sessions_failed,
        stats.mismatches
    );
    Ok(())
}

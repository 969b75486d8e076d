//! `tls-echo`: the TLS 1.3 mutual-authentication peer of `bench/compare.sh`. `certs`
//! makes the throw-away CA and certificates, `serve` runs the rustls echo server,
//! `bench` runs one `noise-echo bench` scenario against it. Loopback only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use noise_echo::client::Target;
use noise_echo_tls::client::TlsTunnel;
use noise_echo_tls::pki::Pki;
use noise_echo_tls::{config, server, Suite};
use noise_echo_tools::bench::{self, Connector, Options, Scenario, Trust};

/// The TLS 1.3 (rustls, aws-lc-rs) mutual-authentication echo that noise-echo is
/// measured against: the same records and scenarios, loopback only
#[derive(Debug, Parser)]
#[command(name = "tls-echo", version, after_help = HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const HELP: &str = "\
Examples (what bench/compare.sh does):
  tls-echo certs /tmp/pki
  tls-echo serve 127.0.0.1:27402 --certs /tmp/pki --suite aes256gcm --socket-buffer 65536 &
  tls-echo bench 127.0.0.1:27402 --certs /tmp/pki --suite aes256gcm --scenario pipeline

See docs/BENCHMARKS.md for the method and the settings (TLS 1.3, X25519, Ed25519
certificates on both sides, no resumption).

Exit statuses:
  0  done (bench: the run completed and every reply was right)
  1  a refusal, a failure, or a wrong reply
  2  the command line could not be parsed";

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a new CA and Ed25519 server and client certificates in DIR
    #[command(after_help = HELP)]
    Certs {
        /// Directory for ca.pem, server.pem, server.key, client.pem, client.key
        dir: PathBuf,
    },
    /// Serve the TLS echo on a loopback address until interrupted
    #[command(after_help = HELP)]
    Serve {
        /// Loopback address to listen on
        #[arg(value_name = "ADDR")]
        listen: SocketAddr,
        /// Directory made by `tls-echo certs`
        #[arg(long, value_name = "DIR")]
        certs: PathBuf,
        /// The one cipher suite to accept
        #[arg(long, value_enum)]
        suite: Suite,
        /// Kernel buffer of each connection, each way, in bytes (SO_RCVBUF,
        /// SO_SNDBUF), as `noise-echo serve --socket-buffer` and with its default,
        /// so that both servers get the same TCP window; 0 leaves it to the kernel's
        /// tuning
        #[arg(long, value_name = "BYTES", default_value_t = noise_echo::server::DEFAULT_SOCKET_BUFFER)]
        socket_buffer: usize,
    },
    /// Run one `noise-echo bench` scenario against a TLS echo server
    #[command(after_help = HELP)]
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Server address on loopback: IP:PORT
    #[arg(value_name = "ADDR")]
    addr: SocketAddr,
    /// Directory made by `tls-echo certs`
    #[arg(long, value_name = "DIR")]
    certs: PathBuf,
    /// The one cipher suite to offer
    #[arg(long, value_enum)]
    suite: Suite,
    /// What to measure (the network scenarios of `noise-echo bench`)
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Stop after this many seconds (idle: the time allowed to open the sessions)
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    duration: f64,
    /// Stop after this many requests (handshakes), if before --duration
    #[arg(long, value_name = "N")]
    requests: Option<u64>,
    /// Workers (handshake, idle) or requests in flight (throughput, pipeline)
    /// [default: as noise-echo bench]
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// idle: sessions to open and hold
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    sessions: usize,
    /// idle: seconds to hold the sessions once open
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    hold: f64,
    /// idle: the server's process id, to report its VmRSS per session
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Runtime worker threads [default: one per core; latency always uses one]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Print the result as one JSON object
    #[arg(long)]
    json: bool,
    /// No progress line
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("tls-echo: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Certs { dir } => {
            Pki::generate()?.write_to(&dir)?;
            eprintln!("tls-echo: CA and certificates written to {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve {
            listen,
            certs,
            suite,
            socket_buffer,
        } => {
            if !listen.ip().is_loopback() {
                bail!("{listen} is not a loopback address: this benchmark peer listens on loopback only (127.0.0.1 or [::1])");
            }
            let config = config::server_config(&Pki::read_from(&certs)?, suite)?;
            // The same runtime as `noise-echo serve`, so only the channel differs.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                eprintln!(
                    "tls echo ({}) listening on {}",
                    suite.name(),
                    listener.local_addr()?
                );
                server::serve(listener, config, socket_buffer, async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .context("accepting connections")
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => bench_one(args),
    }
}

fn bench_one(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if matches!(args.scenario, Scenario::HandshakeCpu | Scenario::CipherCpu) {
        bail!(
            "--scenario {} runs in memory, with no peer: use `noise-echo bench`",
            args.scenario.name()
        );
    }
    let seconds = |value: f64, flag: &str| {
        Duration::try_from_secs_f64(value)
            .ok()
            .filter(|duration| !duration.is_zero())
            .with_context(|| format!("{flag} must be a positive number of seconds"))
    };
    let mut options = Options::new(args.scenario);
    options.duration = seconds(args.duration, "--duration")?;
    options.hold = Duration::try_from_secs_f64(args.hold).context("--hold must be >= 0")?;
    options.requests = args.requests;
    options.concurrency = args.concurrency.unwrap_or(options.concurrency).max(1);
    options.sessions = args.sessions;
    options.server_pid = args.server_pid;
    options.progress = !args.quiet && !args.json;
    if !args.addr.ip().is_loopback() {
        bail!("{} is not a loopback address: this benchmark runs against loopback only (127.0.0.1 or [::1])", args.addr);
    }
    let target: Target = args
        .addr
        .to_string()
        .parse()
        .map_err(|error: String| anyhow::anyhow!("the server address: {error}"))?;
    if args.sessions == 0 && args.scenario == Scenario::Idle {
        bail!("--sessions must be at least 1");
    }
    let tunnel = TlsTunnel::new(
        config::client_config(&Pki::read_from(&args.certs)?, args.suite)?,
        args.suite,
    )?;
    // As `noise-echo bench` chooses, so only the channel differs.
    let runtime = match (args.scenario, args.threads) {
        (Scenario::Latency, _) | (_, Some(1)) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        (_, threads) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(threads) = threads {
                builder.worker_threads(threads);
            }
            builder.enable_all().build()
        }
    }
    .context("cannot start the async runtime")?;
    let report = runtime.block_on(async {
        let connector = Connector::establish(&target, Trust::Tunnel(Arc::new(tunnel))).await?;
        bench::run(&options, Arc::new(connector)).await
    })?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    if !report.succeeded() {
        eprintln!(
            "tls-echo: {}: {} ok, {} failed{}",
            report.scenario.name(),
            report.ok,
            report.failed,
            report
                .first_error
                .as_deref()
                .map(|error| format!(" (first: {error})"))
                .unwrap_or_default()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

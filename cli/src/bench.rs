//! `noise-echo bench`: parses the options, picks a runtime, runs one scenario of
//! [`noise_echo_tools::bench`], prints a table (or JSON), and fails when any exchange failed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};

use super::{ExitStatus, StatusError};
use noise_echo::client::{ClientError, Protocol, Target};
use noise_echo_tools::bench::{self, Connector, Options, Report, Scenario, Trust};

#[derive(Debug, clap::Args)]
#[command(after_long_help = HELP)]
pub(super) struct Args {
    /// Server address: HOST, HOST:PORT or [IPv6]:PORT (port 1234 if not given)
    #[arg(value_name = "ADDR", default_value = "localhost:1234")]
    addr: Target,
    /// What to measure
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Stop after this many seconds (idle: the time allowed to open the sessions)
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    duration: f64,
    /// Stop after this many requests (handshakes, pairs), if before --duration
    #[arg(long, value_name = "N")]
    requests: Option<u64>,
    /// Workers (handshake, idle), requests in flight (throughput, pipeline), threads
    /// (handshake-cpu) [default: 16, 32, 4, 1024, one per core]
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
    /// The cipher suite to offer (protocol 2) or, for cipher-cpu, to run: aesgcm or
    /// chachapoly; the report's transport column names it [default: aesgcm on CPUs
    /// with AES instructions, chachapoly otherwise]
    #[arg(long, value_name = "CIPHER", value_parser = super::connect::parse_cipher())]
    cipher: Option<noise_echo::wire::Suite>,
    /// The protocol version to speak: 2, or 1 (its one suite is chachapoly)
    /// [default: 2]
    #[arg(long, value_name = "VERSION", value_parser = super::connect::parse_protocol())]
    protocol: Option<Protocol>,
    /// Speak the same records over bare TCP, without Noise (the plaintext baseline)
    #[arg(long)]
    plain: bool,
    /// Runtime worker threads [default: one per core; latency always uses one]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Print the result as one JSON object
    #[arg(long)]
    json: bool,
    /// No progress line
    #[arg(long, short = 'q')]
    quiet: bool,
    #[command(flatten)]
    trust: super::ClientTrustArgs,
}

/// The end of `--help`: examples and exit statuses.
const HELP: &str = "\
Examples:
  noise-echo bench --scenario handshake 127.0.0.1:1234
  noise-echo bench --scenario throughput --duration 10
  noise-echo bench --scenario throughput --cipher chachapoly   # one suite, then the other
  noise-echo bench --scenario idle --sessions 10000 --server-pid PID

See docs/BENCHMARKS.md for the method. Figures from a busy machine are not comparable.

Exit statuses:
  0  the run completed and every reply was right
  1  a reply was wrong, or the run failed
  2  the command line could not be parsed";

pub(super) fn run(args: Args) -> anyhow::Result<()> {
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
    options.cipher = args.cipher;
    options.protocol = args.protocol.unwrap_or_default();

    let report = if args.scenario == Scenario::HandshakeCpu {
        bench::handshake_cpu(&options)?
    } else if args.scenario == Scenario::CipherCpu {
        bench::cipher_cpu(&options)?
    } else {
        let trust = if args.plain {
            Trust::Plain
        } else {
            trust(&args)?
        };
        let runtime = match (args.scenario, args.threads) {
            // One round trip at a time gains nothing from a second thread, and
            // cross-thread wake-ups would add to every round trip.
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
        runtime.block_on(async {
            // The same statuses and messages as `connect`: an unreachable server is
            // 3, an untrusted one 4, a refused key 5.
            let connector =
                Connector::establish_with(&args.addr, trust, options.protocol, options.cipher)
                    .await
                    .map_err(|error| match error.downcast::<ClientError>() {
                        Ok(error) => super::connect::classify(error),
                        Err(error) => error,
                    })?;
            bench::run(&options, Arc::new(connector)).await
        })?
    };
    print(&report, args.json)?;
    if !report.succeeded() {
        return Err(StatusError {
            status: ExitStatus::Failure,
            message: format!(
                "{}: {} ok, {} failed{}",
                report.scenario.name(),
                report.ok,
                report.failed,
                report
                    .first_error
                    .as_deref()
                    .map(|error| format!(" (first: {error})"))
                    .unwrap_or_default()
            ),
        }
        .into());
    }
    Ok(())
}

/// Prints the report; a closed stdout is an error (success for `main`), not a
/// panic as with `println!`.
fn print(report: &Report, json: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if json {
        writeln!(stdout, "{}", report.to_json())?;
    } else {
        write!(stdout, "{}", report.to_table())?;
    }
    stdout.flush()
}

/// The client's trust settings, as for `connect`.
fn trust(args: &Args) -> anyhow::Result<Trust> {
    let trust = args.trust.load()?;
    if args.sessions == 0 && args.scenario == Scenario::Idle {
        bail!("--sessions must be at least 1");
    }
    Ok(Trust::Noise {
        identity: trust.identity,
        known_hosts: trust.known_hosts,
        unknown_host: trust.unknown_host,
    })
}

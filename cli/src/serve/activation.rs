//! systemd socket activation: the listening sockets a service manager opened and
//! passed to `serve` (a `.socket` unit with `ListenStream=`), as `sd_listen_fds(3)`
//! defines them: `LISTEN_FDS` descriptors from 3 on, meant for this process only if
//! `LISTEN_PID` is its id. One unit can so listen on IPv4 and IPv6, on privileged
//! ports, and keep its sockets across restarts.

use std::env;
use std::net::TcpListener;
use std::os::fd::AsFd;

use anyhow::{bail, Context};
use tracing::{debug, info};

/// The variables of the protocol, removed once read (`sd_listen_fds(1)`), so that
/// nothing this process starts later takes them for itself.
const VARIABLES: [&str; 3] = ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"];

/// The listening TCP sockets passed by the service manager, none when `LISTEN_FDS`
/// is unset or meant for another process. Call before any thread starts: it
/// removes the variables from the environment.
///
/// # Errors
/// `LISTEN_FDS` not a number, or a passed descriptor that is not a listening TCP
/// socket (a `.socket` unit with a datagram or Unix socket, or `Accept=yes`).
pub(super) fn inherited_listeners() -> anyhow::Result<Vec<TcpListener>> {
    let Some(count) = env::var_os("LISTEN_FDS") else {
        return Ok(Vec::new());
    };
    let pid = env::var("LISTEN_PID").unwrap_or_default();
    let ours = pid.parse::<u32>().ok() == Some(std::process::id());
    if !ours {
        debug!("LISTEN_FDS is set for process {pid:?}, not this one: ignored");
        remove_variables();
        return Ok(Vec::new());
    }
    let count: usize = count
        .to_str()
        .and_then(|text| text.parse().ok())
        .with_context(|| {
            format!("LISTEN_FDS={count:?} (from systemd socket activation) is not a number")
        })?;
    // listenfd reads the same variables (and trusts a missing LISTEN_PID, which
    // sd_listen_fds does not: checked above). A stray LISTEN_FDS_FIRST_FD would move
    // its first descriptor from systemd's 3.
    env::remove_var("LISTEN_FDS_FIRST_FD");
    let mut passed = listenfd::ListenFd::from_env();
    remove_variables();
    let mut listeners = Vec::with_capacity(count);
    for index in 0..count {
        let fd = 3 + index;
        let listener = match passed.take_tcp_listener(index) {
            Ok(Some(listener)) => listener,
            Ok(None) => bail!("LISTEN_FDS={count}, but descriptor {fd} was not passed"),
            Err(error) => bail!(
                "descriptor {fd} passed by systemd is not a TCP socket ({error}): use ListenStream= with an address or port, not a path, in the .socket unit"
            ),
        };
        if !rustix::net::sockopt::socket_acceptconn(listener.as_fd()).unwrap_or(false) {
            bail!("descriptor {fd} passed by systemd is a TCP socket that is not listening: set Accept=no (the default) in the .socket unit");
        }
        listener
            .set_nonblocking(true)
            .with_context(|| format!("descriptor {fd} passed by systemd"))?;
        info!(
            "serving socket {fd} passed by systemd ({})",
            listener
                .local_addr()
                .map_or_else(|error| error.to_string(), |addr| addr.to_string())
        );
        listeners.push(listener);
    }
    Ok(listeners)
}

fn remove_variables() {
    for variable in VARIABLES {
        env::remove_var(variable);
    }
}

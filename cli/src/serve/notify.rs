//! systemd's service notification protocol (sd_notify(3)), for `Type=notify` units:
//! `READY=1` once every listener is bound, `RELOADING=1` and `READY=1` around a
//! SIGHUP reload, `STOPPING=1` when shutdown begins. One datagram per state to the
//! socket named by `$NOTIFY_SOCKET`; without it (not started by systemd) nothing is
//! sent. Written over std's `UnixDatagram` instead of a crate: the protocol is one
//! `sendto` of `KEY=VALUE` lines.

use std::os::unix::net::{SocketAddr, UnixDatagram};

use tracing::{debug, warn};

/// Where systemd listens for this service's notifications.
pub(crate) struct Notifier {
    /// An unbound socket to send from.
    socket: UnixDatagram,
    /// `$NOTIFY_SOCKET`: a path, or an abstract name (`@name`).
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier of `$NOTIFY_SOCKET`, or `None` when it is unset; warns (and
    /// returns `None`) when it names nothing this can send to.
    pub(crate) fn from_env() -> Option<Self> {
        let value = std::env::var_os("NOTIFY_SOCKET")?;
        let text = value.to_string_lossy();
        match Self::connect(&value) {
            Ok(notifier) => Some(notifier),
            Err(error) => {
                warn!(
                    "NOTIFY_SOCKET={text}: {error}; systemd will not hear that the server is ready"
                );
                None
            }
        }
    }

    fn connect(value: &std::ffi::OsStr) -> std::io::Result<Self> {
        use std::os::unix::ffi::OsStrExt;
        let bytes = value.as_bytes();
        let addr = match bytes.first() {
            Some(b'/') => SocketAddr::from_pathname(std::path::Path::new(value))?,
            Some(b'@') => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(&bytes[1..])?
            }
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a socket path nor an abstract socket name (@name)",
                ))
            }
        };
        Ok(Self {
            socket: UnixDatagram::unbound()?,
            addr,
        })
    }

    /// Sends `state` (newline-separated `KEY=VALUE` assignments). A failure is
    /// logged, never fatal: the server serves whether or not systemd listens.
    pub(crate) fn send(&self, state: &str) {
        match self.socket.send_to_addr(state.as_bytes(), &self.addr) {
            Ok(_) => debug!("told systemd {}", state.replace('\n', " ")),
            Err(error) => warn!(
                "cannot notify systemd ({}): {error}",
                state.replace('\n', " ")
            ),
        }
    }

    /// `RELOADING=1` with the time it began, which systemd 253 and later want in order
    /// to tell this reload from an earlier one.
    pub(crate) fn reloading(&self) {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let micros = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={micros}"));
    }
}

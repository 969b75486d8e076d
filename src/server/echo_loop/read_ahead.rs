//! Reading ahead while a long reply waits: the frame memory for it, taken with a
//! large request's own memory from what no other session needs, and the write
//! that reads the client's next requests into the receive half's buffer while it
//! waits (see [`RecvHalf::read_ahead`]). Without it a session carries one way at
//! a time: while the server writes a long reply, the client's next request waits
//! behind a full kernel buffer, and while the server reads that request, the
//! client has nothing to read (docs/BENCHMARKS.md, session 14).

use std::future::Future;
use std::task::Poll;

use tokio::io::AsyncRead;

use super::{poll_once, InFlight};
use crate::server::connection::Handler;
use crate::server::resources::KeySession;
use crate::wire::{RecvHalf, WireError};

impl Handler {
    /// Before a request of `len` bytes is answered: if its reply is likely long
    /// enough to wait for the client (a transport message or more), the frame
    /// memory to read ahead with meanwhile (see [`write_reading_ahead`]), grown to
    /// [`READ_AHEAD`] from what no other session needs
    /// ([`MemoryBudget::try_reserve_spare_frame`](crate::server::resources::MemoryBudget::try_reserve_spare_frame)),
    /// if the budget has any to spare. Kept, as any frame memory, until the
    /// session drains its input buffer and waits.
    pub(super) fn spare_frame_for_reply(
        &self,
        len: u32,
        key: &KeySession,
        in_flight: &mut InFlight,
    ) {
        let held = in_flight.allowance();
        if (len as usize) < crate::wire::MAX_PLAINTEXT_LEN || held >= READ_AHEAD {
            return;
        }
        let memory = &self.shared.memory;
        let Some(extra) = memory.try_reserve_spare_frame(key, (READ_AHEAD - held) as u64) else {
            return;
        };
        let allowance = held + usize::try_from(extra.bytes()).unwrap_or(usize::MAX);
        let mut grown = match in_flight.frame.take() {
            Some(mut held) => {
                held.merge(extra);
                held
            }
            None => extra,
        };
        grown.allow(allowance);
        in_flight.frame = Some(grown);
    }
}

/// Runs `write`, a step that writes replies; while it waits for the client to take
/// them, reads the client's next requests into `rx`'s input buffer (see
/// [`RecvHalf::read_ahead`]) until it holds `capacity`, the session's frame
/// memory (an input buffer outside a body; see [`Handler::spare_frame_for_reply`]).
/// If that does not cover what the buffer holds allocated already, `write` runs
/// alone. Without it a session carries one way at a time: while the server writes
/// a long reply, the client's next request waits behind a full kernel buffer, and
/// while the server reads that request, the client has nothing to read.
pub(super) async fn write_reading_ahead<R, F>(
    rx: &mut RecvHalf<R>,
    capacity: usize,
    write: F,
) -> Result<(), WireError>
where
    R: AsyncRead + Unpin,
    F: Future<Output = Result<(), WireError>>,
{
    let mut write = std::pin::pin!(write);
    if let Some(result) = poll_once(write.as_mut()).await {
        return result;
    }
    if capacity < rx.input_capacity() {
        return write.await;
    }
    let mut read = std::pin::pin!(rx.read_ahead(capacity));
    let mut reading = true;
    std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = write.as_mut().poll(cx) {
            return Poll::Ready(result);
        }
        if reading {
            if let Poll::Ready(result) = read.as_mut().poll(cx) {
                reading = false;
                result?;
            }
        }
        Poll::Pending
    })
    .await
}

/// How much input a session may hold, read ahead, while its reply waits (see
/// [`write_reading_ahead`]): a default-limit request, whole. 1 MiB
/// throughput with four requests in flight, over 64 KiB kernel buffers: 1,033
/// MB/s without reading ahead, 1,265 reading ahead into the buffer a body left
/// (about 256 KiB), 1,423 with 1 MiB, 1,473 with 2 MiB (docs/BENCHMARKS.md,
/// session 14).
const READ_AHEAD: usize = 1024 * 1024;

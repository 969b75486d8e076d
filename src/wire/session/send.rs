//! The sending half of a session: records appended to the open transport message,
//! sealed in place when it fills or on flush, written in batches; and, in protocol
//! v2, the REKEY that ends the message reaching the policy's limit.

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::{begin, BULK_IO, IDLE_BUFFER_CAPACITY, MAX_PLAINTEXT_LEN};
use crate::wire::cipher::{next_nonce, CipherKey};
use crate::wire::error::{Bug, Result};
use crate::wire::frame::{frame_len_prefix, FRAME_HEADER_LEN};
use crate::wire::record::{RecordHeader, RecordType, Role, RECORD_HEADER_LEN, REKEY_RECORD};
use crate::wire::rekey::SendRekey;
use crate::wire::session::TAG_LEN;

/// The sending half of a session: encodes records, seals them into transport
/// messages, and writes them in batches.
pub struct SendHalf<W> {
    /// The stream's write half.
    pub(super) writer: W,
    /// This direction's key: the split's, or its last rekey.
    pub(super) key: CipherKey,
    /// Which side this is: the record types it may send.
    pub(super) role: Role,
    /// The nonce of the next transport message to encrypt.
    pub(super) nonce: u64,
    /// Sealed, framed transport messages not yet written, then, if `open` is set,
    /// the message being filled: room for its frame header, then its plaintext
    /// (always shorter than a full transport message), sealed there in place.
    pub(super) output: Vec<u8>,
    /// Where the open message's frame header starts in `output` (a `u32`: the
    /// buffer stays under `BULK_IO` plus a message, and every idle session holds
    /// this field).
    pub(super) open: Option<u32>,
    /// Where in `output` the open message's records may end with nothing to do
    /// but append: short of a full message and of the rekey policy's limits, as
    /// they stood when it opened (they change only when a message is sealed). 0
    /// while no message is open. A pipelined small record is queued after one
    /// comparison with it, instead of the checks of a full message and a rekey
    /// owed before and after each record.
    pub(super) append_until: u32,
    /// Protocol v2: the counts and age of the sending key, for the policy; `None`
    /// in v1, which never rekeys. Boxed, so that it costs an idle session 8 bytes
    /// of the task's size (see [`SendRekey`]).
    pub(super) rekey: Option<Box<SendRekey>>,
    /// An earlier call failed or was cancelled: the half refuses further use.
    pub(super) failed: bool,
}

impl<W> SendHalf<W> {
    /// Plaintext bytes appended but not yet sealed.
    #[inline]
    pub(super) fn pending_len(&self) -> usize {
        self.open.map_or(0, |start| {
            self.output.len() - start as usize - FRAME_HEADER_LEN
        })
    }

    /// The most record bytes one transport message carries: in v2, room is left
    /// for the REKEY record that may have to end it.
    #[inline]
    fn capacity(&self) -> usize {
        match self.rekey {
            Some(_) => MAX_PLAINTEXT_LEN - REKEY_RECORD.len(),
            None => MAX_PLAINTEXT_LEN,
        }
    }
}

impl<W: AsyncWrite + Unpin> SendHalf<W> {
    /// Which side this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Queues one record. Transport messages are sealed as they fill and written
    /// in batches of 256 KiB; the rest waits for [`flush`](Self::flush), so small
    /// records share messages. Call `flush` once the peer should see the record.
    ///
    /// # Errors
    /// [`Bug::WrongDirection`] when this side may not send `record_type`;
    /// [`Bug::RecordLength`] for a body over `u32::MAX` bytes; [`WireError::Io`](crate::wire::WireError::Io).
    pub async fn write_record(&mut self, record_type: RecordType, body: &[u8]) -> Result<()> {
        if record_type.sender() != self.role {
            return Err(Bug::WrongDirection {
                record_type,
                role: self.role,
            }
            .into());
        }
        let len = u32::try_from(body.len()).map_err(|_| Bug::RecordLength(body.len()))?;
        begin(&mut self.failed)?;
        let header = RecordHeader { record_type, len }.to_bytes();
        if !self.append_within_message(&header, body) {
            self.append(&header, body.is_empty()).await?;
            self.append(body, true).await?;
        }
        // A record boundary: if a rekey is owed, pay it here rather than wait for
        // a flush (a stream of large records might never flush at a boundary).
        if self
            .rekey
            .as_ref()
            .is_some_and(|rekey| rekey.due_at_record_end(self.pending_len()))
            && self.open.is_some()
        {
            self.seal()?;
        }
        self.failed = false;
        Ok(())
    }

    /// Queues one record, as [`write_record`](Self::write_record) does, if that
    /// needs no write to the stream: `Ok(true)`. `Ok(false)`, with nothing queued,
    /// when it would (the record does not fit in one transport message, or the
    /// messages queued have reached the size written at once): then call
    /// `write_record`. For a pipelining peer that answers a burst of small records
    /// without a future per record (see [`RecvHalf::buffered_record`](super::RecvHalf::buffered_record)).
    ///
    /// # Errors
    /// [`Bug::WrongDirection`] when this side may not send `record_type`.
    pub fn queue_record(&mut self, record_type: RecordType, body: &[u8]) -> Result<bool> {
        self.queue_record_mapped(record_type, body, |_| true)
    }

    /// [`queue_record`](Self::queue_record) for a body that `map` rewrites in
    /// place, once `body` is copied into the send buffer, keeping its length: the
    /// echo server uppercases an ASCII request straight from the receive buffer
    /// into the send buffer, in one pass that also finds whether it is ASCII. When
    /// `map` returns `false` the record is not queued (`Ok(false)`, as when it
    /// needs a write), and the bytes it wrote are discarded.
    ///
    /// # Errors
    /// As [`queue_record`](Self::queue_record).
    #[inline]
    pub fn queue_record_mapped<F>(
        &mut self,
        record_type: RecordType,
        body: &[u8],
        map: F,
    ) -> Result<bool>
    where
        F: FnOnce(&mut [u8]) -> bool,
    {
        if record_type.sender() != self.role {
            return Err(Bug::WrongDirection {
                record_type,
                role: self.role,
            }
            .into());
        }
        begin(&mut self.failed)?;
        // A panic in `map` leaves the half failed, with a record half written.
        let queued = self.queue_within_batch(record_type, body, map);
        self.failed = queued.is_err();
        queued
    }

    /// The rest of [`queue_record_mapped`](Self::queue_record_mapped), where this
    /// side may send `record_type`.
    #[inline]
    fn queue_within_batch<F>(
        &mut self,
        record_type: RecordType,
        body: &[u8],
        map: F,
    ) -> Result<bool>
    where
        F: FnOnce(&mut [u8]) -> bool,
    {
        let record = RECORD_HEADER_LEN + body.len();
        // Fits in the open message, and its end owes no rekey: see `append_until`.
        // (One path to `map` below: called from two, it is not inlined.)
        let within_room = self.output.len() + record < self.append_until as usize;
        if !within_room {
            let capacity = self.capacity();
            // Strictly short of a whole message, as `append_within_message`: a
            // record that fills one is sealed at its end by `append`.
            if record >= capacity {
                return Ok(false);
            }
            if self.open.is_some() && record >= capacity - self.pending_len() {
                // The open message is too full for it: sealed here, at a record
                // boundary, short (`write_record` would split the record across two
                // messages instead, which needs its body in one piece beforehand).
                // Not past the batch that `append` writes: the buffer stays bounded
                // as it is.
                if self.output.len() >= BULK_IO {
                    return Ok(false);
                }
                self.seal()?;
            }
            self.open_message();
        }
        let header = RecordHeader {
            record_type,
            // Under `capacity`: fits.
            len: body.len() as u32,
        }
        .to_bytes();
        let at = self.output.len();
        self.output.extend_from_slice(&header);
        self.output.extend_from_slice(body);
        if !map(&mut self.output[at + RECORD_HEADER_LEN..]) {
            self.output.truncate(at);
            return Ok(false);
        }
        // A record boundary: a rekey owed is paid here, as in `write_record`.
        if !within_room
            && self
                .rekey
                .as_ref()
                .is_some_and(|rekey| rekey.due_at_record_end(self.pending_len()))
        {
            self.seal()?;
        }
        Ok(true)
    }

    /// Seals what is pending into a transport message, writes everything queued in
    /// one write, flushes the stream, and releases large buffers.
    ///
    /// # Errors
    /// [`WireError::Io`](crate::wire::WireError::Io).
    pub async fn flush(&mut self) -> Result<()> {
        begin(&mut self.failed)?;
        self.seal()?;
        if !self.output.is_empty() {
            self.writer.write_all(&self.output).await?;
            self.output.clear();
        }
        self.writer.flush().await?;
        if self.output.capacity() > IDLE_BUFFER_CAPACITY {
            self.output = Vec::new();
        }
        self.failed = false;
        Ok(())
    }

    /// Flushes, then shuts down the write direction of the stream: the client's clean
    /// end of requests, or the server's close after its last reply.
    ///
    /// # Errors
    /// [`WireError::Io`](crate::wire::WireError::Io).
    pub async fn shutdown(&mut self) -> Result<()> {
        self.flush().await?;
        begin(&mut self.failed)?;
        self.writer.shutdown().await?;
        self.failed = false;
        Ok(())
    }

    /// Frees the cipher's expanded key if its suite keeps one, as
    /// [`RecvHalf::release_expanded_key`](super::RecvHalf::release_expanded_key).
    pub fn release_expanded_key(&mut self) {
        self.key.release_expanded();
    }

    /// Whether the cipher's expanded key is kept now.
    #[cfg(test)]
    pub(crate) fn holds_expanded_key(&self) -> bool {
        self.key.holds_expanded()
    }

    /// How many times this half has replaced its key (protocol v2; always 0 in
    /// v1).
    pub fn rekeys(&self) -> u64 {
        self.rekey.as_ref().map_or(0, |rekey| rekey.rekeys())
    }

    /// Protocol v2: ends the pending plaintext with a REKEY record (or sends one
    /// alone when nothing is pending) and seals it; the sending key is replaced
    /// after it. The message goes out with the next [`flush`](Self::flush). The
    /// policy's rekeys happen without this; it is for a caller that wants one now
    /// (before a key could be exposed, say).
    ///
    /// # Errors
    /// [`Bug::RekeyInV1`] on a protocol v1 session.
    pub fn rekey_now(&mut self) -> Result<()> {
        if self.rekey.is_none() {
            return Err(Bug::RekeyInV1.into());
        }
        begin(&mut self.failed)?;
        self.open_message();
        self.seal_with(true, true)?;
        self.failed = false;
        Ok(())
    }

    /// Starts a message after the queued ones, unless one is open; returns where
    /// its frame header goes.
    #[inline]
    fn open_message(&mut self) -> usize {
        match self.open {
            Some(start) => start as usize,
            None => {
                let start = self.output.len();
                self.output.extend_from_slice(&[0; FRAME_HEADER_LEN]);
                // Full messages are written once BULK_IO bytes are queued, so the
                // buffer never nears 4 GiB.
                let at = |offset: usize| {
                    u32::try_from(offset).unwrap_or_else(|_| {
                        unreachable!("the output buffer holds at most BULK_IO plus a message")
                    })
                };
                self.open = Some(at(start));
                let room = self
                    .rekey
                    .as_ref()
                    .map_or(usize::MAX, |rekey| rekey.record_end_room());
                self.append_until = at(self.output.len() + self.capacity().min(room));
                start
            }
        }
    }

    /// Appends a whole record (`header`, then `body`) to the open message, opening
    /// one, if it leaves the message short of full: then there is nothing to seal
    /// or write, so no await, and one bounds check for both parts. A pipelined
    /// small reply always takes this path (it was 14 % of the server's time per
    /// request through [`append`](Self::append) twice). `false`, with nothing
    /// appended, when the record would fill the message: `append` then splits it.
    fn append_within_message(&mut self, header: &[u8; RECORD_HEADER_LEN], body: &[u8]) -> bool {
        let capacity = self.capacity();
        let start = self.open_message();
        let pending = self.output.len() - start - FRAME_HEADER_LEN;
        // Strictly short of full: a record that fills the message exactly is
        // sealed by `append`, at its boundary, as before.
        if header.len() + body.len() >= capacity.saturating_sub(pending) {
            return false;
        }
        self.output.reserve(header.len() + body.len());
        self.output.extend_from_slice(header);
        self.output.extend_from_slice(body);
        true
    }

    /// Appends bytes to the record stream, sealing and writing full messages;
    /// `ends_record`: whether the last of `bytes` ends a record (so a message
    /// full there ends at a record boundary, where it can rekey).
    async fn append(&mut self, mut bytes: &[u8], ends_record: bool) -> Result<()> {
        while !bytes.is_empty() {
            // Not kept across the write below: every byte of this future counts
            // in the server's connection task.
            let capacity = self.capacity();
            let start = self.open_message();
            let pending = self.output.len() - start - FRAME_HEADER_LEN;
            let take = (capacity - pending).min(bytes.len());
            self.output.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if pending + take == capacity {
                self.seal_with(false, ends_record && bytes.is_empty())?;
                // Full messages are written in batches of BULK_IO bytes; the rest
                // waits to be batched by flush().
                if self.output.len() >= BULK_IO {
                    self.writer.write_all(&self.output).await?;
                    self.output.clear();
                }
            }
        }
        Ok(())
    }

    /// Encrypts the open message, if any, in place: one framed transport message.
    /// In v2 it ends with REKEY when the policy (or [`rekey_now`](Self::rekey_now))
    /// says so, and the key is replaced once it is sealed.
    /// Only called between records (flush, shutdown).
    pub(super) fn seal(&mut self) -> Result<()> {
        self.seal_with(false, true)
    }

    /// [`seal`](Self::seal), for a message whose records end at a record
    /// boundary or not (`at_boundary`: only there can REKEY follow them), ending
    /// it with REKEY whatever the policy says when `forced` (v2 only), even if it
    /// has no records.
    fn seal_with(&mut self, forced: bool, at_boundary: bool) -> Result<()> {
        let Some(start) = self.open.take() else {
            return Ok(());
        };
        self.append_until = 0;
        let start = start as usize;
        let body = start + FRAME_HEADER_LEN;
        let records = self.output.len() - body;
        // Asked at every seal, so that the key's age is read once per message.
        let due = self
            .rekey
            .as_mut()
            .is_some_and(|rekey| rekey.due(records) || forced);
        let rekeys = at_boundary && due;
        if records == 0 && !forced {
            // Only rekey_now seals an empty message: it becomes a REKEY alone. An
            // empty transport message would be refused.
            self.output.truncate(start);
            return Ok(());
        }
        if rekeys {
            // Fits: a v2 message holds at most capacity() record bytes.
            self.output.extend_from_slice(&REKEY_RECORD);
        }
        let len = self.output.len() - body;
        let prefix = frame_len_prefix(len + TAG_LEN)?;
        let nonce = next_nonce(&mut self.nonce)?;
        let tag = self.key.seal_in_place(nonce, &mut self.output[body..])?;
        self.output.extend_from_slice(&tag);
        self.output[start..body].copy_from_slice(&prefix);
        if let Some(state) = &mut self.rekey {
            if rekeys {
                self.key.rekey()?;
                state.rekeyed();
            } else {
                state.count(len);
            }
        }
        Ok(())
    }
}

impl<W> std::fmt::Debug for SendHalf<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendHalf")
            .field("role", &self.role)
            .field("nonce", &self.nonce)
            .field("pending_plaintext", &self.pending_len())
            .field("rekey", &self.rekey)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

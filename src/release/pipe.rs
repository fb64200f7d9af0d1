//! A reader that runs a decompressor on its own thread, so that inflating an archive and
//! writing its files to disk overlap (as `tar -xzf` does with its `gzip` child process).

use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

/// Size of each chunk handed from the decompressor thread to the reader.
const CHUNK: usize = 256 * 1024;
/// Chunks in flight between the two threads.
const DEPTH: usize = 4;

enum Msg {
    Data(Vec<u8>),
    Eof,
    Err(io::Error),
}

/// Reads what a `Read` produces on a background thread, in large chunks.
///
/// A decompressor error is returned from `read` as it happened; a decompressor thread that
/// dies without reporting end of stream is an error too, never a silent early EOF.
pub(crate) struct PipeReader {
    rx: Receiver<Msg>,
    recycle: Sender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    finished: Option<Result<(), (io::ErrorKind, String)>>,
    thread: Option<JoinHandle<()>>,
}

impl PipeReader {
    /// Starts reading `inner` on a new thread.
    pub(crate) fn spawn<R: Read + Send + 'static>(inner: R) -> io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(DEPTH);
        let (recycle, spare) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("dewy-decompress".into())
            .spawn(move || pump(inner, tx, spare))?;
        Ok(PipeReader {
            rx,
            recycle,
            cur: Vec::new(),
            pos: 0,
            finished: None,
            thread: Some(thread),
        })
    }

    fn next_chunk(&mut self) -> io::Result<bool> {
        if let Some(done) = &self.finished {
            return match done {
                Ok(()) => Ok(false),
                Err((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
            };
        }
        let msg = self
            .rx
            .recv()
            .unwrap_or_else(|_| Msg::Err(io::Error::other("decompressor thread stopped unexpectedly")));
        match msg {
            Msg::Data(buf) => {
                let old = std::mem::replace(&mut self.cur, buf);
                if old.capacity() == CHUNK {
                    let _ = self.recycle.send(old);
                }
                self.pos = 0;
                Ok(true)
            }
            Msg::Eof => {
                self.finished = Some(Ok(()));
                Ok(false)
            }
            Msg::Err(e) => {
                self.finished = Some(Err((e.kind(), e.to_string())));
                Err(e)
            }
        }
    }
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos >= self.cur.len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Drop for PipeReader {
    fn drop(&mut self) {
        // Dropping the receiver makes the thread's next send fail, which ends it.
        let (_tx, rx) = mpsc::sync_channel(0);
        drop(std::mem::replace(&mut self.rx, rx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pump<R: Read>(mut inner: R, tx: SyncSender<Msg>, spare: Receiver<Vec<u8>>) {
    loop {
        let mut buf = spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
        buf.resize(CHUNK, 0);
        let mut filled = 0;
        let mut eof = false;
        while filled < CHUNK {
            match inner.read(&mut buf[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if filled > 0 {
                        buf.truncate(filled);
                        if tx.send(Msg::Data(buf)).is_err() {
                            return;
                        }
                    }
                    let _ = tx.send(Msg::Err(e));
                    return;
                }
            }
        }
        buf.truncate(filled);
        if filled > 0 && tx.send(Msg::Data(buf)).is_err() {
            return;
        }
        if eof {
            let _ = tx.send(Msg::Eof);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut short"));
            }
            let n = out.len().min(self.0);
            out[..n].fill(7);
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn passes_data_through() {
        let data: Vec<u8> = (0..(3 * CHUNK + 17)).map(|i| (i % 251) as u8).collect();
        let mut r = PipeReader::spawn(io::Cursor::new(data.clone())).expect("spawn");
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("read");
        assert_eq!(out, data);
    }

    #[test]
    fn reports_errors_after_data() {
        let mut r = PipeReader::spawn(Failing(1000)).expect("spawn");
        let mut out = Vec::new();
        let err = r.read_to_end(&mut out).expect_err("must fail");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(out.len(), 1000);
    }

    #[test]
    fn early_drop_stops_thread() {
        let r = PipeReader::spawn(io::repeat(1)).expect("spawn");
        drop(r);
    }
}

//! A response body read from a file (an error page today; static files and cached objects
//! next). A plain client takes it with sendfile(2), at most `SENDFILE_CHUNK` per call so a
//! large file cannot hold the event loop; a TLS client through one buffer-sized chunk read
//! with pread(2) at a time. Either way an idle client holds no more than that chunk.

use crate::worker::buffer::BUF_SIZE;
use crate::worker::output::Output;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// Most bytes one sendfile(2) call is asked for (nginx's `sendfile_max_chunk` idea).
const SENDFILE_CHUNK: u64 = 256 * 1024;

#[derive(Debug)]
pub struct FileBody {
    file: File,
    /// The next byte of the file not yet sent (or read into `chunk`).
    pos: u64,
    end: u64,
    /// Bytes read for a TLS client, written from `at`.
    chunk: Vec<u8>,
    at: usize,
}

impl FileBody {
    /// The first `len` bytes of `file`.
    pub fn new(file: File, len: u64) -> FileBody {
        FileBody {
            file,
            pos: 0,
            end: len,
            chunk: Vec::new(),
            at: 0,
        }
    }

    /// What the file has for the client now (`plain`: the client's socket can take it with
    /// sendfile).
    pub fn out(&mut self, plain: bool) -> Output<'_> {
        if self.at < self.chunk.len() {
            return Output::Bytes {
                data: &self.chunk[self.at..],
                last: self.pos == self.end,
            };
        }
        let left = self.end - self.pos;
        if left == 0 {
            return Output::Done;
        }
        if plain {
            return Output::File {
                fd: self.file.as_raw_fd(),
                offset: self.pos,
                len: left.min(SENDFILE_CHUNK) as usize,
            };
        }
        self.chunk.resize(left.min(BUF_SIZE as u64) as usize, 0);
        self.at = 0;
        match self.file.read_at(&mut self.chunk, self.pos) {
            Ok(n) if n > 0 => {
                self.chunk.truncate(n);
                self.pos += n as u64;
                Output::Bytes {
                    data: &self.chunk,
                    last: self.pos == self.end,
                }
            }
            // Shorter than it was when the head (with its length) went out.
            Ok(_) => {
                log::error!("a response body file was truncated while being sent");
                Output::Failed
            }
            Err(e) => {
                log::error!("reading a response body file failed: {e}");
                Output::Failed
            }
        }
    }

    /// Bytes are left to send (read into the chunk or still in the file).
    pub fn has_more(&self) -> bool {
        self.at < self.chunk.len() || self.pos < self.end
    }

    /// The client took `n` bytes of what `out` offered.
    pub fn took(&mut self, n: usize) {
        if self.at < self.chunk.len() {
            self.at += n;
            if self.at == self.chunk.len() {
                self.chunk.clear();
                self.at = 0;
            }
        } else {
            self.pos += n as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_of(bytes: &[u8]) -> File {
        let path = std::env::temp_dir().join(format!("proxyd-filebody-{}", std::process::id()));
        let mut f = File::create(&path).unwrap();
        f.write_all(bytes).unwrap();
        let f = File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    #[test]
    fn a_plain_client_is_offered_the_file_in_bounded_sendfile_chunks() {
        let data = vec![7u8; 2 * SENDFILE_CHUNK as usize + 10];
        let mut b = FileBody::new(file_of(&data), data.len() as u64);
        let Output::File { offset, len, .. } = b.out(true) else {
            panic!("a file")
        };
        assert_eq!((offset, len), (0, SENDFILE_CHUNK as usize));
        b.took(100);
        let Output::File { offset, len, .. } = b.out(true) else {
            panic!("a file")
        };
        assert_eq!((offset, len), (100, SENDFILE_CHUNK as usize));
        b.took(len);
        let Output::File { offset, len, .. } = b.out(true) else {
            panic!("a file")
        };
        assert_eq!(
            (offset, len),
            (SENDFILE_CHUNK + 100, SENDFILE_CHUNK as usize - 90)
        );
        b.took(len);
        assert_eq!(b.out(true), Output::Done);
    }

    #[test]
    fn a_tls_client_gets_the_file_read_a_buffer_at_a_time() {
        let data: Vec<u8> = (0..BUF_SIZE * 2 + 3).map(|i| i as u8).collect();
        let mut b = FileBody::new(file_of(&data), data.len() as u64);
        let mut got = Vec::new();
        loop {
            match b.out(false) {
                Output::Bytes { data, last } => {
                    assert!(data.len() <= BUF_SIZE);
                    // Take a part, as a socket might.
                    let n = data.len().min(5000);
                    got.extend_from_slice(&data[..n]);
                    let _ = last;
                    b.took(n);
                }
                Output::Done => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(got, data);
    }

    #[test]
    fn a_file_shorter_than_its_length_fails_rather_than_hangs() {
        let mut b = FileBody::new(file_of(b"short"), 100);
        let Output::Bytes { data, last } = b.out(false) else {
            panic!("bytes")
        };
        assert_eq!((data, last), (&b"short"[..], false));
        b.took(5);
        assert_eq!(b.out(false), Output::Failed);
    }
}

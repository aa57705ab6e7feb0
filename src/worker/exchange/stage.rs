//! The body stage: where transforms of a response body sit, between its source (the
//! upstream's framer, a file, an answer made here) and the session's writer. Payload is
//! pulled from the source a buffer at a time, run through the transforms in order, then
//! framed for the client: chunked for HTTP/1.1 (a transform changes the length, so none is
//! known when the head goes out), as is when the connection's end or the protocol frames
//! it (HTTP/1.0 with a close, HTTP/2 DATA frames). A stage holds at most what one pull
//! produced: an idle exchange waiting on a slow client keeps one transformed buffer.
//!
//! Transforms come with the content features (compression, a cache tee); whoever attaches
//! a stage also writes a head without `Content-Length` (and with the `Content-Encoding` it
//! makes), and asks the source for payload (an upstream body decoded, never spliced).

// Nothing in a release build attaches a stage yet: compression and the cache will (the
// content issue); until then the unit tests below do. `expect` fails the build once they do.
#![cfg_attr(
    not(test),
    expect(
        dead_code,
        reason = "stages are attached by the content features to come"
    )
)]

use super::body::Source;
use crate::worker::output::Output;
use crate::worker::upstream::Driver;
use std::io;

/// One transform of the body's payload.
pub trait Transform {
    /// Appends to `out` what `input` becomes, consuming all of it; `end`: no input follows
    /// (flush what is held and finish).
    fn run(&mut self, input: &[u8], end: bool, out: &mut Vec<u8>) -> io::Result<()>;
}

/// How the stage's output is delimited for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// HTTP/1.1 chunks, ended by the last chunk.
    Chunked,
    /// As it is (the connection's close or the protocol delimits it).
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Payload still comes from the source.
    Open,
    /// The source is done and the transforms finished: what is in `out` is the last.
    Ended,
    /// A transform or the source failed: the client is cut.
    Failed,
}

pub struct Stage {
    transforms: Vec<Box<dyn Transform>>,
    framing: Framing,
    /// Output for the client, written from `at`.
    out: Vec<u8>,
    at: usize,
    /// Between two transforms (kept, so a pull allocates nothing once they have grown).
    scratch: [Vec<u8>; 2],
    state: State,
}

impl Stage {
    pub fn new(transforms: Vec<Box<dyn Transform>>, framing: Framing) -> Stage {
        Stage {
            transforms,
            framing,
            out: Vec::new(),
            at: 0,
            scratch: [Vec::new(), Vec::new()],
            state: State::Open,
        }
    }

    /// What the stage has for the client now, pulling from `source` when what it held is
    /// written.
    pub fn out(&mut self, source: &mut Source, driver: &mut Driver) -> Output<'_> {
        loop {
            if self.at < self.out.len() {
                return Output::Bytes {
                    data: &self.out[self.at..],
                    last: self.state == State::Ended,
                };
            }
            match self.state {
                State::Ended => return Output::Done,
                State::Failed => return Output::Failed,
                State::Open => {}
            }
            self.out.clear();
            self.at = 0;
            // Payload only: a pipe or a file would bypass the transforms.
            let (taken, end) = match source.out(driver, false) {
                Output::Bytes { data, .. } => {
                    let n = data.len();
                    let r = self.run(data, false);
                    if let Err(e) = r {
                        return self.fail(e);
                    }
                    (n, false)
                }
                Output::Done => (0, true),
                Output::Later => return Output::Later,
                Output::Failed => {
                    self.state = State::Failed;
                    return Output::Failed;
                }
                Output::Pipe { .. } | Output::File { .. } => {
                    return self.fail(io::Error::other("a body source offered no payload"));
                }
            };
            source.took(driver, taken);
            if end {
                if let Err(e) = self.run(&[], true) {
                    return self.fail(e);
                }
                if self.framing == Framing::Chunked {
                    self.out.extend_from_slice(b"0\r\n\r\n");
                }
                self.state = State::Ended;
            }
        }
    }

    /// The client took `n` bytes of what `out` offered.
    pub fn took(&mut self, n: usize) {
        self.at += n;
    }

    /// Output waits for the client.
    pub fn holds(&self) -> bool {
        self.at < self.out.len()
    }

    /// Runs `input` through the transforms into `out`, framed.
    fn run(&mut self, input: &[u8], end: bool) -> io::Result<()> {
        let [mut data, mut next] = std::mem::take(&mut self.scratch);
        data.clear();
        data.extend_from_slice(input);
        for t in &mut self.transforms {
            next.clear();
            t.run(&data, end, &mut next)?;
            std::mem::swap(&mut data, &mut next);
        }
        if !data.is_empty() {
            if self.framing == Framing::Chunked {
                use std::io::Write;
                let _ = write!(self.out, "{:x}\r\n", data.len());
                self.out.extend_from_slice(&data);
                self.out.extend_from_slice(b"\r\n");
            } else {
                self.out.extend_from_slice(&data);
            }
        }
        self.scratch = [data, next];
        Ok(())
    }

    fn fail(&mut self, e: io::Error) -> Output<'static> {
        log::error!("a response body transform failed: {e}");
        self.state = State::Failed;
        Output::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Uppercases ASCII, and says "!" at the end (so `end` is seen to be called once).
    struct Shout;

    impl Transform for Shout {
        fn run(&mut self, input: &[u8], end: bool, out: &mut Vec<u8>) -> io::Result<()> {
            out.extend(input.iter().map(u8::to_ascii_uppercase));
            if end {
                out.push(b'!');
            }
            Ok(())
        }
    }

    /// Passes bytes through, keeping a copy (what a cache tee does).
    struct Tee(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

    impl Transform for Tee {
        fn run(&mut self, input: &[u8], _end: bool, out: &mut Vec<u8>) -> io::Result<()> {
            self.0.borrow_mut().extend_from_slice(input);
            out.extend_from_slice(input);
            Ok(())
        }
    }

    struct Broken;

    impl Transform for Broken {
        fn run(&mut self, _: &[u8], _: bool, _: &mut Vec<u8>) -> io::Result<()> {
            Err(io::Error::other("broken"))
        }
    }

    /// Everything the stage offers, taking `step` bytes at a time as a socket might.
    fn drain(stage: &mut Stage, source: &mut Source, step: usize) -> (Vec<u8>, Output<'static>) {
        let mut driver = Driver::default();
        let mut got = Vec::new();
        loop {
            match stage.out(source, &mut driver) {
                Output::Bytes { data, .. } => {
                    let n = data.len().min(step);
                    got.extend_from_slice(&data[..n]);
                    stage.took(n);
                }
                Output::Done => return (got, Output::Done),
                Output::Failed => return (got, Output::Failed),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_transform_sees_the_whole_body_and_its_output_goes_out_chunked() {
        let kept = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut stage = Stage::new(
            vec![Box::new(Tee(kept.clone())), Box::new(Shout)],
            Framing::Chunked,
        );
        let body: Arc<[u8]> = Arc::from(&b"hello, world"[..]);
        let mut source = Source::Bytes { data: body, pos: 0 };
        let (got, end) = drain(&mut stage, &mut source, 3);
        assert_eq!(end, Output::Done);
        assert_eq!(got, b"c\r\nHELLO, WORLD\r\n1\r\n!\r\n0\r\n\r\n");
        assert_eq!(&*kept.borrow(), b"hello, world");
    }

    #[test]
    fn raw_framing_passes_the_output_as_it_is() {
        let mut stage = Stage::new(vec![Box::new(Shout)], Framing::Raw);
        let mut source = Source::Bytes {
            data: Arc::from(&b"abc"[..]),
            pos: 0,
        };
        assert_eq!(drain(&mut stage, &mut source, 100).0, b"ABC!");
    }

    #[test]
    fn an_empty_body_still_ends_its_chunks() {
        let mut stage = Stage::new(vec![Box::new(Shout)], Framing::Chunked);
        let (got, end) = drain(&mut stage, &mut Source::None, 100);
        assert_eq!(
            (got.as_slice(), end),
            (&b"1\r\n!\r\n0\r\n\r\n"[..], Output::Done)
        );
    }

    #[test]
    fn a_failing_transform_cuts_the_client() {
        let mut stage = Stage::new(vec![Box::new(Broken)], Framing::Chunked);
        let mut source = Source::Bytes {
            data: Arc::from(&b"abc"[..]),
            pos: 0,
        };
        let (got, end) = drain(&mut stage, &mut source, 100);
        assert_eq!((got.len(), end), (0, Output::Failed));
    }
}

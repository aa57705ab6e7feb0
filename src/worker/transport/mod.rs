//! Layer 2: a connection's bytes. A socket plus its readiness (and, with TLS, the record
//! layer): read into a buffer, write two slices in one call, shut down, probe. Nothing above
//! this file names `TcpStream`.
//!
//! mio is edge-triggered, so readiness is remembered here: set by an event, cleared when the
//! kernel says there is no more (WouldBlock, or a short read or write, which means the same
//! without the extra call).

mod peer;
mod zero_copy;

pub use peer::PeerIp;

use super::buffer::Buf;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::cell::OnceCell;
use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;

#[derive(Debug, Default, Clone, Copy)]
pub struct Ready {
    pub r: bool,
    pub w: bool,
    /// The peer's FIN (or an error) is queued: keep reading until 0 even after short reads,
    /// since no new edge will announce it.
    pub hup: bool,
}

impl Ready {
    pub fn on_event(&mut self, readable: bool, writable: bool, hup: bool) {
        self.r |= readable;
        self.w |= writable;
        self.hup |= hup;
    }
}

/// What a non-blocking connect has come to.
pub enum Connect {
    Done,
    InProgress,
    Failed(io::Error),
}

/// What one `pull` found.
#[derive(Debug, PartialEq, Eq)]
enum Pull {
    /// Records, now processed.
    Records,
    /// Nothing more for now (`ready.r` cleared).
    Drained,
    /// The peer's end of stream (`ready.r` cleared; rustls knows).
    End,
}

/// Reads one batch of TLS records from the socket into rustls and processes them. A
/// protocol error sends the alert rustls queued saying why, and is InvalidData.
fn pull(conn: &mut rustls::Connection, tcp: &mut TcpStream, ready: &mut Ready) -> io::Result<Pull> {
    loop {
        match conn.read_tls(tcp) {
            Ok(0) => {
                ready.r = false;
                return Ok(Pull::End);
            }
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if would_block(&e) => {
                ready.r = false;
                return Ok(Pull::Drained);
            }
            Err(e) => return Err(e),
        }
    }
    if let Err(e) = conn.process_new_packets() {
        let _ = conn.write_tls(tcp);
        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
    }
    Ok(Pull::Records)
}

/// A TLS connection's first byte is 0x16 (a handshake record); a letter is an HTTP method.
/// Such a client gets a plain 400 saying what went wrong, as nginx answers it, rather than
/// an alert it cannot read. The request is read first, so the close does not reset the
/// connection and destroy the answer.
fn plain_http(tcp: &mut TcpStream) -> bool {
    let mut first = [0u8; 1];
    if !matches!(tcp.peek(&mut first), Ok(1) if first[0].is_ascii_uppercase()) {
        return false;
    }
    let mut scratch = [0u8; 4096];
    for _ in 0..4 {
        match tcp.read(&mut scratch) {
            Ok(n) if n == scratch.len() => {}
            _ => break,
        }
    }
    const BODY: &str = "<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n\
        <center><h1>400 Bad Request</h1></center>\r\n\
        <center>The plain HTTP request was sent to HTTPS port</center>\r\n\
        <hr><center>proxyd</center>\r\n</body>\r\n</html>\r\n";
    let head = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        BODY.len()
    );
    let _ = tcp.write_all(format!("{head}{BODY}").as_bytes());
    let _ = tcp.shutdown(Shutdown::Write);
    true
}

/// See `Transport::unread`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    Nothing,
    Bytes,
    /// FIN or an error.
    Closed,
}

/// The socket kinds a transport can carry.
enum Sock {
    Plain(TcpStream),
    /// TLS, to a client or an upstream: the socket carries records, rustls holds the
    /// session.
    Tls(TcpStream, Box<Tls>),
}

/// A TLS session.
enum Tls {
    /// Until the ClientHello is in: the server it names (SNI) decides the config.
    Hello {
        acceptor: rustls::server::Acceptor,
        site: Arc<crate::tls::Site>,
        /// The first bytes have been looked at (see `plain_http`).
        looked: bool,
        /// Record boundaries of what came so far, for an alert rustls would ignore.
        records: crate::tls::records::RecordScan,
    },
    /// `server`: for a client's connection, the index of the server SNI chose.
    Open {
        conn: rustls::Connection,
        server: usize,
        /// The client certificate's identity, worked out once per connection (on first
        /// use, only when the client sent one).
        identity: OnceCell<Option<crate::tls::ClientIdentity>>,
    },
}

/// What the TLS layer knows of a client connection.
pub struct TlsInfo<'a> {
    /// The server SNI chose.
    pub server: usize,
    /// Who the verified client certificate says the client is, when the server asked for
    /// one and got it.
    pub client: Option<&'a crate::tls::ClientIdentity>,
    /// "TLSv1.3" or "TLSv1.2".
    pub protocol: Option<&'static str>,
    /// The suite, named as the `ciphers` setting names it.
    pub cipher: Option<&'static str>,
    /// The name the client sent (SNI).
    pub sni: Option<&'a str>,
}

/// Ciphertext rustls may hold for the socket before a write is refused (WouldBlock): the
/// memory a slow TLS client can make a connection hold.
const TLS_BUFFER: usize = 32 * 1024;

pub struct Transport {
    sock: Sock,
    pub ready: Ready,
}

pub fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Transport {
    /// An accepted client connection; it announces its own readiness. TCP_NODELAY came
    /// from the listening socket (Linux copies it to accepted sockets).
    pub fn accepted(s: TcpStream) -> Transport {
        Transport {
            sock: Sock::Plain(s),
            ready: Ready::default(),
        }
    }

    /// An accepted client connection on a TLS listen address: the handshake happens as the
    /// session reads.
    pub fn accepted_tls(s: TcpStream, site: &Arc<crate::tls::Site>) -> Transport {
        Transport {
            sock: Sock::Tls(
                s,
                Box::new(Tls::Hello {
                    acceptor: rustls::server::Acceptor::default(),
                    site: site.clone(),
                    looked: false,
                    records: Default::default(),
                }),
            ),
            ready: Ready::default(),
        }
    }

    /// The TLS server and client certificate, once the handshake has begun.
    pub fn tls_info(&self) -> Option<TlsInfo<'_>> {
        match &self.sock {
            Sock::Tls(_, t) => match &**t {
                Tls::Open {
                    conn: rustls::Connection::Server(conn),
                    server,
                    identity,
                } => Some(TlsInfo {
                    server: *server,
                    client: identity
                        .get_or_init(|| {
                            let leaf = conn.peer_certificates()?.first()?;
                            Some(crate::tls::client_identity(leaf))
                        })
                        .as_ref(),
                    protocol: conn.protocol_version().map(|v| match v {
                        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
                        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
                        _ => "unknown",
                    }),
                    cipher: conn
                        .negotiated_cipher_suite()
                        .and_then(|s| s.suite().as_str()),
                    sni: conn.server_name(),
                }),
                Tls::Open { .. } | Tls::Hello { .. } => None,
            },
            Sock::Plain(_) => None,
        }
    }

    /// A TLS handshake is under way (or has not begun).
    pub fn handshaking(&self) -> bool {
        match &self.sock {
            Sock::Tls(_, t) => match &**t {
                Tls::Hello { .. } => true,
                Tls::Open { conn, .. } => conn.is_handshaking(),
            },
            Sock::Plain(_) => false,
        }
    }

    /// Plain TCP (so splice(2) can move its bytes).
    pub fn is_plain(&self) -> bool {
        matches!(self.sock, Sock::Plain(_))
    }

    /// Bytes taken but not yet on the wire (TLS records rustls holds): the connection has
    /// not finished writing until `flush` clears them.
    pub fn pending(&self) -> bool {
        match &self.sock {
            Sock::Tls(_, t) => matches!(&**t, Tls::Open { conn, .. } if conn.wants_write()),
            Sock::Plain(_) => false,
        }
    }

    /// Writes what `pending` says is held, as far as the socket takes it.
    pub fn flush(&mut self) -> io::Result<()> {
        let Sock::Tls(tcp, t) = &mut self.sock else {
            return Ok(());
        };
        let Tls::Open { conn, .. } = &mut **t else {
            return Ok(());
        };
        while conn.wants_write() {
            match conn.write_tls(tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if would_block(&e) {
                        self.ready.w = false;
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// `read_into` for TLS: plaintext rustls holds first, then records from the socket
    /// (each batch processed, and what the handshake answers sent at once).
    fn read_tls_into(&mut self, buf: &mut Buf) -> io::Result<usize> {
        loop {
            let Sock::Tls(tcp, t) = &mut self.sock else {
                unreachable!("a TLS transport")
            };
            let conn = match &mut **t {
                Tls::Open { conn, .. } => conn,
                Tls::Hello { .. } => match self.read_hello() {
                    Ok(()) => continue,
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                },
            };
            match buf.read_from(&mut conn.reader()) {
                Ok(n) => {
                    // More plaintext may wait behind a full buffer: no edge will say so.
                    if n > 0
                        && conn
                            .process_new_packets()
                            .is_ok_and(|s| s.plaintext_bytes_to_read() > 0)
                    {
                        self.ready.r = true;
                    }
                    return Ok(n);
                }
                // The peer closed without close_notify: for HTTP/1.1 framing says whether
                // anything is missing, so this is an end of stream like any other.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
            if !self.ready.r {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            // At the end of stream rustls knows it, and the reader says so next round.
            pull(conn, tcp, &mut self.ready)?;
            match self.flush() {
                Ok(()) => {}
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads until the ClientHello is in, then starts the session with the config of the
    /// server it names. WouldBlock until then; an error if the hello is bad or names no
    /// server this address has (after sending the alert saying why).
    fn read_hello(&mut self) -> io::Result<()> {
        let Sock::Tls(tcp, t) = &mut self.sock else {
            unreachable!("a TLS transport")
        };
        let Tls::Hello {
            acceptor,
            site,
            looked,
            records,
        } = &mut **t
        else {
            return Ok(());
        };
        if !*looked && self.ready.r {
            *looked = true;
            if plain_http(tcp) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "plain HTTP request on a TLS port",
                ));
            }
        }
        loop {
            match acceptor.accept() {
                Ok(None) => {}
                Ok(Some(accepted)) => {
                    let sni = accepted.client_hello().server_name().map(str::to_owned);
                    let Some((server, cfg)) = site.pick(sni.as_deref()) else {
                        return Err(io::Error::other("no TLS server for this name"));
                    };
                    let alert = records.saw_alert();
                    return match accepted.into_connection(cfg) {
                        Ok(mut conn) => {
                            conn.set_buffer_limit(Some(TLS_BUFFER));
                            let mut conn = rustls::Connection::from(conn);
                            // Records that came in the same read as the hello (an alert, a
                            // close_notify, garbage) wait in rustls: no new edge will come
                            // for them, so they are processed now, not when more bytes come.
                            let processed = conn.process_new_packets();
                            **t = Tls::Open {
                                conn,
                                server,
                                identity: OnceCell::new(),
                            };
                            if let Err(e) = processed {
                                let _ = self.flush();
                                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                            }
                            if alert {
                                let _ = self.flush();
                                return Err(io::Error::new(
                                    io::ErrorKind::InvalidData,
                                    "the client sent an alert with its ClientHello",
                                ));
                            }
                            match self.flush() {
                                Err(e) if !would_block(&e) => Err(e),
                                _ => Ok(()),
                            }
                        }
                        Err((e, mut alert)) => {
                            let _ = alert.write_all(tcp);
                            Err(io::Error::new(io::ErrorKind::InvalidData, e))
                        }
                    };
                }
                Err((e, mut alert)) => {
                    let _ = alert.write_all(tcp);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            if !self.ready.r {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            // Read here and hand the bytes to rustls, so their records are seen too.
            let mut got = [0u8; 4096];
            match tcp.read(&mut got) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    records.feed(&got[..n]);
                    let mut rest = &got[..n];
                    while !rest.is_empty() {
                        if acceptor.read_tls(&mut rest)? == 0 {
                            return Err(io::Error::other("ClientHello too large"));
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if would_block(&e) => self.ready.r = false,
                Err(e) => return Err(e),
            }
        }
    }

    /// `write_pair` for TLS: nothing new is taken while records from before wait for the
    /// socket, so the memory held stays bounded (`TLS_BUFFER`).
    fn write_tls_pair(&mut self, a: &[u8], b: &[u8]) -> io::Result<usize> {
        self.flush()?;
        if self.handshaking() && self.ready.r {
            // Plaintext written during the handshake waits in rustls until it is done: move
            // the handshake on with what the peer has sent before taking more, rather than
            // count on a later event to come back for the rest.
            self.advance_handshake()?;
        }
        let Sock::Tls(_, t) = &mut self.sock else {
            unreachable!("a TLS transport")
        };
        let Tls::Open { conn, .. } = &mut **t else {
            // Nothing is written before a request has been read.
            return Err(io::ErrorKind::NotConnected.into());
        };
        // One payload, so a response head and its first body bytes share a record: one
        // decryption for the client instead of two.
        let n = if b.is_empty() {
            conn.writer().write(a)?
        } else {
            conn.writer()
                .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])?
        };
        if n == 0 && a.len() + b.len() > 0 {
            // rustls is full (or still handshaking with its buffer full): wait.
            self.ready.w = false;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match self.flush() {
            Ok(()) => Ok(n),
            Err(e) if would_block(&e) => Ok(n),
            Err(e) => Err(e),
        }
    }

    /// Reads what the peer sent during a handshake into rustls (it holds any plaintext for
    /// the next `read_into`) and sends the answers.
    fn advance_handshake(&mut self) -> io::Result<()> {
        let Sock::Tls(tcp, t) = &mut self.sock else {
            return Ok(());
        };
        let Tls::Open { conn, .. } = &mut **t else {
            return Ok(());
        };
        while conn.is_handshaking() && self.ready.r {
            if pull(conn, tcp, &mut self.ready)? == Pull::End {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        match self.flush() {
            Err(e) if !would_block(&e) => Err(e),
            _ => Ok(()),
        }
    }

    /// Starts a non-blocking connect.
    pub fn connect(addr: SocketAddr) -> io::Result<Transport> {
        let s = TcpStream::connect(addr)?;
        let _ = s.set_nodelay(true);
        Ok(Transport {
            sock: Sock::Plain(s),
            ready: Ready::default(),
        })
    }

    /// Starts a non-blocking connect to an upstream that speaks TLS: the ClientHello waits
    /// in rustls until the socket is writable, and a request written meanwhile waits for
    /// the handshake.
    pub fn connect_tls(
        addr: SocketAddr,
        cfg: &Arc<rustls::ClientConfig>,
        name: rustls_pki_types::ServerName<'static>,
    ) -> io::Result<Transport> {
        let mut conn =
            rustls::ClientConnection::new(cfg.clone(), name).map_err(io::Error::other)?;
        conn.set_buffer_limit(Some(TLS_BUFFER));
        let mut t = Transport::connect(addr)?;
        let Sock::Plain(s) = t.sock else {
            unreachable!("connect makes a plain socket")
        };
        t.sock = Sock::Tls(
            s,
            Box::new(Tls::Open {
                conn: conn.into(),
                server: 0,
                identity: OnceCell::new(),
            }),
        );
        Ok(t)
    }

    fn tcp(&self) -> &TcpStream {
        match &self.sock {
            Sock::Plain(s) | Sock::Tls(s, _) => s,
        }
    }

    fn tcp_mut(&mut self) -> &mut TcpStream {
        match &mut self.sock {
            Sock::Plain(s) | Sock::Tls(s, _) => s,
        }
    }

    /// The local address of the connection (`$server_addr`).
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.tcp().local_addr()
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.tcp().as_raw_fd()
    }

    /// Leaves the poll set (a connection whose socket other processes may still hold).
    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        registry.deregister(self.tcp_mut())
    }

    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            self.tcp_mut(),
            token,
            Interest::READABLE | Interest::WRITABLE,
        )
    }

    /// Where a non-blocking connect stands, once an event came for it.
    pub fn connect_state(&mut self) -> Connect {
        let s = self.tcp();
        match s.take_error() {
            Ok(None) => match s.peer_addr() {
                Ok(_) => Connect::Done,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    self.ready.r = false;
                    self.ready.w = false;
                    Connect::InProgress
                }
                Err(e) => Connect::Failed(e),
            },
            Ok(Some(e)) | Err(e) => Connect::Failed(e),
        }
    }

    /// One read into `buf`. Ok(0) is end of stream (or no room: check `has_room` first).
    pub fn read_into(&mut self, buf: &mut Buf) -> io::Result<usize> {
        self.read_into_at_most(buf, usize::MAX)
    }

    /// `read_into`, taking at most `limit` bytes from a plain socket (a TLS one decrypts
    /// what it has).
    pub fn read_into_at_most(&mut self, buf: &mut Buf, limit: usize) -> io::Result<usize> {
        if !self.is_plain() {
            return self.read_tls_into(buf);
        }
        let room = buf.make_room().min(limit);
        let hup = self.ready.hup;
        match buf.read_at_most(self.tcp_mut(), limit) {
            Ok(n) => {
                if n > 0 && n < room && !hup {
                    self.ready.r = false;
                }
                Ok(n)
            }
            Err(e) => {
                if would_block(&e) {
                    self.ready.r = false;
                }
                Err(e)
            }
        }
    }

    /// Reads and throws away what is there (a closing connection's unread input).
    /// Ok(true) at end of stream.
    pub fn discard(&mut self) -> io::Result<bool> {
        let mut scratch = [0u8; 4096];
        while self.ready.r {
            match self.tcp_mut().read(&mut scratch) {
                Ok(0) => return Ok(true),
                Ok(_) => {}
                Err(e) if would_block(&e) => self.ready.r = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Writes `a` then `b` with one system call where both have bytes. Returns the count.
    /// `last`: these are the connection's last bytes and a close or shutdown follows at once,
    /// so the kernel may hold a short tail back (MSG_MORE) for the FIN to ride along in the
    /// same segment (one segment less per connection, for both ends to process).
    pub fn write_pair(&mut self, a: &[u8], b: &[u8], last: bool) -> io::Result<usize> {
        if !self.is_plain() {
            return self.write_tls_pair(a, b);
        }
        let total = a.len() + b.len();
        loop {
            let res = if last {
                let sock = socket2::SockRef::from(self.tcp());
                let flags = libc::MSG_MORE | libc::MSG_NOSIGNAL;
                match (a.is_empty(), b.is_empty()) {
                    (_, true) => sock.send_with_flags(a, flags),
                    (true, false) => sock.send_with_flags(b, flags),
                    (false, false) => {
                        sock.send_vectored_with_flags(&[IoSlice::new(a), IoSlice::new(b)], flags)
                    }
                }
            } else {
                let s = self.tcp_mut();
                if b.is_empty() {
                    s.write(a)
                } else if a.is_empty() {
                    s.write(b)
                } else {
                    s.write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
                }
            };
            return match res {
                Ok(0) if total > 0 => Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    if n < total {
                        self.ready.w = false;
                    }
                    Ok(n)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if would_block(&e) {
                        self.ready.w = false;
                    }
                    Err(e)
                }
            };
        }
    }

    /// Sends FIN: we will write no more (over TLS, close_notify first).
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        if let Sock::Tls(_, t) = &mut self.sock {
            if let Tls::Open { conn, .. } = &mut **t {
                conn.send_close_notify();
            }
            match self.flush() {
                Ok(()) => {}
                Err(e) if would_block(&e) => {}
                Err(e) => return Err(e),
            }
        }
        self.tcp().shutdown(Shutdown::Write)
    }

    /// What the kernel still holds for us. Asked only when the last read did not prove it
    /// empty (it filled the buffer exactly), so it costs a system call only then.
    pub fn unread(&mut self) -> Unread {
        if !self.is_plain() {
            return self.settle();
        }
        if !self.ready.r {
            return Unread::Nothing;
        }
        let mut probe = [0u8; 1];
        match self.tcp().peek(&mut probe) {
            Err(e) if would_block(&e) => Unread::Nothing,
            Ok(n) if n > 0 => Unread::Bytes,
            _ => Unread::Closed,
        }
    }

    /// TLS's `unread`: records that arrived are processed, since a session ticket or a key
    /// update is no data; plaintext or a close is.
    fn settle(&mut self) -> Unread {
        let Sock::Tls(tcp, t) = &mut self.sock else {
            return Unread::Nothing;
        };
        let Tls::Open { conn, .. } = &mut **t else {
            return Unread::Closed;
        };
        loop {
            match conn.process_new_packets() {
                Ok(s) if s.plaintext_bytes_to_read() > 0 => return Unread::Bytes,
                Ok(s) if s.peer_has_closed() => return Unread::Closed,
                Ok(_) => {}
                Err(_) => return Unread::Closed,
            }
            if !self.ready.r {
                return Unread::Nothing;
            }
            if !matches!(
                pull(conn, tcp, &mut self.ready),
                Ok(Pull::Records | Pull::Drained)
            ) {
                return Unread::Closed;
            }
        }
    }

    /// For a pooled idle connection that got an event: still silent and open?
    pub fn idle_and_open(&mut self) -> bool {
        if !self.is_plain() {
            self.ready.r = true;
            return self.settle() == Unread::Nothing;
        }
        let mut probe = [0u8; 1];
        matches!(self.tcp_mut().read(&mut probe), Err(e) if would_block(&e))
    }
}

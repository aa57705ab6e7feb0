//! OCSP stapling from a file (`ocsp = "cert.ocsp.der"`, as `openssl ocsp -respout` writes
//! it). The master reads and checks each file when it loads a config and keeps the response in
//! memory it shares with the workers (a memfd per file, mapped before they are forked); it
//! looks at the files again every `CHECK_EVERY` and writes a changed one there, so a renewed
//! response is stapled without a reload. It also clears a response when its nextUpdate passes
//! (waking for that moment, see `Staple::refresh`), since clients refuse a stale one and a file
//! nobody renews does not change. Workers staple what the memory holds.
//!
//! The checks are the ones that catch a wrong file: a successful basic response, for this
//! certificate's serial number, not revoked, not past its nextUpdate. The signature is left to
//! the client, which has the issuer.

use memmap2::MmapMut;
use rustls_pki_types::CertificateDer;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU64, Ordering::*};
use std::sync::Mutex;
use std::time::Duration;
use x509_parser::asn1_rs::{Any, Class, FromDer, Tag};
use x509_parser::time::ASN1Time;

/// How often the master looks at the files.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);

/// The largest response kept (real ones are 1-4 KiB; the responder's certificates make them
/// grow).
const MAX: usize = 16 * 1024;

/// One response in shared memory: written by the master under a sequence lock (odd while
/// writing), in atomic words so a reader racing a write reads no torn memory, only a retry.
#[repr(C)]
struct Slot {
    seq: AtomicU64,
    len: AtomicU64,
    words: [AtomicU64; MAX / 8],
}

/// A certificate's staple: its file, and the memory the response is kept in.
pub struct Staple {
    pub path: PathBuf,
    leaf: CertificateDer<'static>,
    _map: MmapMut,
    slot: *const Slot,
    /// The master's view of the file and of what the memory holds.
    seen: Mutex<Seen>,
}

/// What the master knows of a staple.
#[derive(Debug)]
struct Seen {
    /// The file as last read.
    stamp: Option<Stamp>,
    /// The response in memory: none, or one valid until a nextUpdate (Unix seconds; None
    /// when it has none, so it never expires).
    held: Held,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Nothing,
    Until(Option<i64>),
}

// SAFETY: `slot` points into `_map`, which lives as long as the Staple and is never
// remapped; all access to it is through atomics.
unsafe impl Send for Staple {}
unsafe impl Sync for Staple {}

impl std::fmt::Debug for Staple {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Staple({})", self.path.display())
    }
}

/// What identifies a version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    ino: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        ino: m.ino(),
    })
}

impl Staple {
    /// Reads and checks `path` for the certificate `leaf`. Err: the file is unusable;
    /// Ok with a warning: usable, but not stapled now (it has expired).
    pub fn load(
        path: &Path,
        leaf: &CertificateDer<'_>,
    ) -> Result<(Staple, Option<String>), String> {
        let seen = stamp(path);
        let der = read(path)?;
        let fd = nix::sys::memfd::memfd_create(
            c"proxyd-ocsp",
            nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
        )
        .map_err(|e| format!("cannot keep OCSP response: {e}"))?;
        let file = std::fs::File::from(fd);
        file.set_len(std::mem::size_of::<Slot>() as u64)
            .map_err(|e| format!("cannot keep OCSP response: {e}"))?;
        // SAFETY: a fresh memfd nobody else has, of the size set just above.
        let mut map = unsafe { MmapMut::map_mut(&file) }
            .map_err(|e| format!("cannot keep OCSP response: {e}"))?;
        let slot = map.as_mut_ptr() as *const Slot;
        let (held, warning) = match check_file(path, &der, leaf)? {
            Fresh::Yes(until) => (Held::Until(until), None),
            Fresh::Expired(w) => (Held::Nothing, Some(w)),
        };
        let s = Staple {
            path: path.to_path_buf(),
            leaf: leaf.clone().into_owned(),
            _map: map,
            slot,
            seen: Mutex::new(Seen { stamp: seen, held }),
        };
        if held != Held::Nothing {
            s.write(&der);
        }
        Ok((s, warning))
    }

    fn slot(&self) -> &Slot {
        // SAFETY: see `unsafe impl Send`.
        unsafe { &*self.slot }
    }

    /// Changes with every write: a reader whose copy has another one reads again.
    pub fn version(&self) -> u64 {
        self.slot().seq.load(Acquire)
    }

    /// (version, response); an empty response means staple nothing.
    pub fn read(&self) -> (u64, Vec<u8>) {
        let s = self.slot();
        loop {
            let seq = s.seq.load(Acquire);
            if seq & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let len = (s.len.load(Relaxed) as usize).min(MAX);
            let mut out = Vec::with_capacity(len);
            for w in &s.words[..len.div_ceil(8)] {
                out.extend_from_slice(&w.load(Relaxed).to_le_bytes());
            }
            out.truncate(len);
            fence(Acquire);
            if s.seq.load(Relaxed) == seq {
                return (seq, out);
            }
        }
    }

    /// The master's writer.
    fn write(&self, der: &[u8]) {
        let s = self.slot();
        let seq = s.seq.fetch_add(1, Acquire);
        fence(Release);
        for (w, chunk) in s.words.iter().zip(der.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            w.store(u64::from_le_bytes(b), Relaxed);
        }
        s.len.store(der.len() as u64, Relaxed);
        s.seq.store(seq + 2, Release);
    }

    /// The master, every `CHECK_EVERY` and when a nextUpdate passes: a changed file is read,
    /// checked and stapled from now on; one that fails the checks is logged and the last
    /// good response stays, until its own nextUpdate passes: then nothing is stapled (and a
    /// warning says so) until a fresh file comes. `now`: Unix seconds. Returns the nextUpdate
    /// of what is stapled, for the master to wake then.
    pub fn refresh(&self, now: i64) -> Option<i64> {
        let now_stamp = stamp(&self.path);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if now_stamp != seen.stamp {
            seen.stamp = now_stamp;
            let checked = read(&self.path)
                .and_then(|der| Ok((check_file(&self.path, &der, &self.leaf)?, der)));
            match checked {
                Ok((Fresh::Yes(until), der)) => {
                    self.write(&der);
                    seen.held = Held::Until(until);
                    log::info!("OCSP response {} reloaded", self.path.display());
                }
                Ok((Fresh::Expired(w), _)) | Err(w) => {
                    let last = match seen.held {
                        Held::Nothing => "nothing is stapled",
                        Held::Until(_) => "keeping the last OCSP response",
                    };
                    log::error!("{w}: {last}")
                }
            }
        }
        match seen.held {
            Held::Until(Some(t)) if expired(t, now) => {
                self.write(&[]);
                seen.held = Held::Nothing;
                log::warn!(
                    "OCSP response {} expired at {} (nextUpdate): no longer stapled until a fresh one is written",
                    self.path.display(),
                    ASN1Time::from_timestamp(t).map_or_else(|_| t.to_string(), |t| t.to_string())
                );
                None
            }
            Held::Until(until) => until,
            Held::Nothing => None,
        }
    }
}

/// A response is stale once its nextUpdate is in the past (RFC 6960 4.2.2.1).
fn expired(next_update: i64, now: i64) -> bool {
    next_update < now
}

/// `check` now, its messages naming the file.
fn check_file(path: &Path, der: &[u8], leaf: &CertificateDer<'_>) -> Result<Fresh, String> {
    let named = |e: String| format!("{}: {e}", path.display());
    match check(der, leaf, ASN1Time::now().timestamp()).map_err(named)? {
        Fresh::Expired(w) => Ok(Fresh::Expired(named(w))),
        fresh => Ok(fresh),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    let bad = |e: String| format!("cannot read OCSP response {}: {e}", path.display());
    let der = crate::files::read_bounded_bytes(path).map_err(bad)?;
    if der.len() > MAX {
        return Err(bad(format!("larger than {MAX} bytes")));
    }
    Ok(der)
}

/// Whether a response that passed the checks may be stapled now.
#[derive(Debug, PartialEq, Eq)]
pub enum Fresh {
    /// Until its nextUpdate (Unix seconds), or for good without one.
    Yes(Option<i64>),
    /// Past its nextUpdate: clients would refuse it (the message says since when).
    Expired(String),
}

/// One DER element: (class, tag, contents), and what follows it.
fn tlv(input: &[u8]) -> Option<(Class, Tag, &[u8], &[u8])> {
    let (rest, any) = Any::from_der(input).ok()?;
    Some((any.header.class(), any.header.tag(), any.data, rest))
}

fn expect(input: &[u8], class: Class, tag: Tag) -> Option<(&[u8], &[u8])> {
    let (c, t, data, rest) = tlv(input)?;
    (c == class && t == tag).then_some((data, rest))
}

const U: Class = Class::Universal;
const CTX: Class = Class::ContextSpecific;

/// Checks a DER OCSP response (RFC 6960) against the certificate it is for.
pub fn check(der: &[u8], leaf: &CertificateDer<'_>, now: i64) -> Result<Fresh, String> {
    let bad = |why: &str| format!("not a usable OCSP response: {why}");
    let serial = {
        use x509_parser::prelude::FromDer as _;
        let (_, c) = x509_parser::certificate::X509Certificate::from_der(leaf.as_ref())
            .map_err(|_| bad("the certificate does not parse"))?;
        c.raw_serial().to_vec()
    };
    // OCSPResponse: status, then [0] ResponseBytes { type, OCTET STRING }.
    let (resp, _) = expect(der, U, Tag::Sequence).ok_or_else(|| bad("not DER"))?;
    let (status, rest) = expect(resp, U, Tag::Enumerated).ok_or_else(|| bad("no status"))?;
    if status != [0] {
        return Err(bad(&format!("status {status:?}, not successful")));
    }
    let (bytes, _) = expect(rest, CTX, Tag(0)).ok_or_else(|| bad("no response"))?;
    let (bytes, _) = expect(bytes, U, Tag::Sequence).ok_or_else(|| bad("no response"))?;
    let (_, rest) = expect(bytes, U, Tag::Oid).ok_or_else(|| bad("no response type"))?;
    let (basic, _) = expect(rest, U, Tag::OctetString).ok_or_else(|| bad("no response"))?;
    // BasicOCSPResponse { ResponseData {...}, ... }.
    let (basic, _) = expect(basic, U, Tag::Sequence).ok_or_else(|| bad("not a basic response"))?;
    let (data, _) = expect(basic, U, Tag::Sequence).ok_or_else(|| bad("no response data"))?;
    // ResponseData: [0] version?, responderID ([1] or [2]), producedAt, responses.
    let mut rest = data;
    let mut responses = None;
    while let Some((c, t, body, next)) = tlv(rest) {
        if c == U && t == Tag::Sequence {
            responses = Some(body);
            break;
        }
        rest = next;
    }
    let mut list = responses.ok_or_else(|| bad("no responses"))?;
    while let Some((single, next)) = expect(list, U, Tag::Sequence) {
        list = next;
        // SingleResponse: CertID { alg, nameHash, keyHash, serial }, status, thisUpdate,
        // [0] nextUpdate?.
        let Some((id, rest)) = expect(single, U, Tag::Sequence) else {
            continue;
        };
        let Some(id_serial) = (|| {
            let (_, _, _, r) = tlv(id)?;
            let (_, r) = expect(r, U, Tag::OctetString)?;
            let (_, r) = expect(r, U, Tag::OctetString)?;
            Some(expect(r, U, Tag::Integer)?.0)
        })() else {
            continue;
        };
        if id_serial != serial.as_slice() {
            continue;
        }
        let (c, t, _, rest) = tlv(rest).ok_or_else(|| bad("no certificate status"))?;
        match (c, t) {
            (CTX, Tag(0)) => {}
            (CTX, Tag(1)) => return Err("the OCSP response says the certificate is revoked".into()),
            _ => return Err("the OCSP response says the certificate is unknown".into()),
        }
        let (_, _, _, rest) = tlv(rest).ok_or_else(|| bad("no thisUpdate"))?;
        let mut until = None;
        if let Some((next_update, _)) = expect(rest, CTX, Tag(0)) {
            let (_, t) = ASN1Time::from_der(next_update).map_err(|_| bad("a bad nextUpdate"))?;
            if expired(t.timestamp(), now) {
                return Ok(Fresh::Expired(format!(
                    "the OCSP response expired at {t} (nextUpdate): not stapled until a fresh one is written"
                )));
            }
            until = Some(t.timestamp());
        }
        return Ok(Fresh::Yes(until));
    }
    Err("the OCSP response is not for this certificate (no serial number matches)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes from anywhere: an error, never a panic.
    #[test]
    fn garbage_is_an_error() {
        let leaf = CertificateDer::from(vec![0x30, 0x00]);
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // A response's outline, then every prefix of it and random bytes after it.
        let outline = [
            0x30, 0x14, 0x0a, 0x01, 0x00, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x01, 0x01, 0x04, 0x08,
            0x30, 0x06, 0x30, 0x04, 0x30, 0x02, 0x30, 0x00,
        ];
        for n in 0..=outline.len() {
            assert!(check(&outline[..n], &leaf, 0).is_err());
            let mut v = outline[..n].to_vec();
            v.extend((0..64).map(|_| next() as u8));
            assert!(check(&v, &leaf, 0).is_err());
        }
        for _ in 0..2000 {
            let v: Vec<u8> = (0..(next() % 200)).map(|_| next() as u8).collect();
            assert!(check(&v, &leaf, 0).is_err());
        }
    }
}

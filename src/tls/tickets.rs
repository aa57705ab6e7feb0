//! Session tickets every worker can open: the master makes the ticket keys (random, in a
//! memfd mapped `MAP_SHARED` before any worker is forked) and rotates them; each worker's
//! rustls seals tickets with the current key and opens them with the current or the previous
//! one. So a client resumes on whichever worker accepts it, and after a reload (the keys live
//! in the master, not in a generation). A binary upgrade starts with new keys.
//!
//! A ticket is `key name (16) | nonce (12) | ChaCha20-Poly1305(plain)`. The keys are read
//! under a sequence lock (the master writes them, rarely).

use memmap2::MmapMut;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use std::sync::atomic::{fence, AtomicU64, Ordering::*};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How long a key seals tickets; it opens them for one period more.
pub const ROTATION: Duration = Duration::from_secs(6 * 3600);

const NAME: usize = 16;
const KEY: usize = 32;
/// name + key, in 8-byte words.
const WORDS: usize = (NAME + KEY) / 8;

#[repr(C)]
struct Keys {
    seq: AtomicU64,
    /// Current, then previous.
    words: [[AtomicU64; WORDS]; 2],
}

/// The keys' shared mapping (kept for the life of the process).
struct Shared {
    _map: MmapMut,
    keys: *const Keys,
}

// SAFETY: only atomics are reached through the pointer, in a mapping that lives as long as
// the process (the static below is never dropped).
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

static SHARED: OnceLock<Shared> = OnceLock::new();

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    let mut got = 0;
    while got < N {
        // SAFETY: a valid buffer of the length given.
        let n = unsafe { libc::getrandom(b[got..].as_mut_ptr().cast(), N - got, 0) };
        if n > 0 {
            got += n as usize;
        }
    }
    b
}

fn fresh() -> [u64; WORDS] {
    let bytes: [u8; NAME + KEY] = random();
    let mut w = [0u64; WORDS];
    for (i, c) in bytes.chunks(8).enumerate() {
        w[i] = u64::from_le_bytes(c.try_into().expect("8 bytes"));
    }
    w
}

/// Makes the keys (the master, before it forks anything). Later calls do nothing.
pub fn create() -> std::io::Result<()> {
    if SHARED.get().is_some() {
        return Ok(());
    }
    let fd = nix::sys::memfd::memfd_create(
        c"proxyd-tickets",
        nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let file = std::fs::File::from(fd);
    file.set_len(std::mem::size_of::<Keys>() as u64)?;
    // SAFETY: a fresh memfd nobody else has, of the size set just above.
    let mut map = unsafe { MmapMut::map_mut(&file)? };
    let keys = map.as_mut_ptr() as *const Keys;
    let _ = SHARED.set(Shared { _map: map, keys });
    rotate();
    rotate();
    Ok(())
}

fn keys() -> Option<&'static Keys> {
    // SAFETY: see `Shared`.
    SHARED.get().map(|s| unsafe { &*s.keys })
}

/// A new current key; the current one becomes the previous (master only).
pub fn rotate() {
    let Some(k) = keys() else { return };
    let new = fresh();
    let s = k.seq.fetch_add(1, Acquire);
    fence(Release);
    for (i, w) in new.into_iter().enumerate() {
        let cur = k.words[0][i].load(Relaxed);
        k.words[1][i].store(cur, Relaxed);
        k.words[0][i].store(w, Relaxed);
    }
    k.seq.store(s + 2, Release);
}

/// (current, previous), each name then key.
fn read() -> Option<[[u8; NAME + KEY]; 2]> {
    let k = keys()?;
    loop {
        let s = k.seq.load(Acquire);
        if s & 1 == 1 {
            std::hint::spin_loop();
            continue;
        }
        let mut out = [[0u8; NAME + KEY]; 2];
        for (slot, words) in out.iter_mut().zip(&k.words) {
            for (i, w) in words.iter().enumerate() {
                slot[i * 8..i * 8 + 8].copy_from_slice(&w.load(Relaxed).to_le_bytes());
            }
        }
        fence(Acquire);
        if k.seq.load(Relaxed) == s {
            return Some(out);
        }
    }
}

/// rustls's ticketer over the shared keys; None when there are none (`proxyctl -t`).
pub fn ticketer() -> Option<Arc<dyn rustls::server::ProducesTickets>> {
    keys()?;
    Some(Arc::new(Ticketer))
}

#[derive(Debug)]
struct Ticketer;

fn key(k: &[u8; NAME + KEY]) -> Option<LessSafeKey> {
    UnboundKey::new(&CHACHA20_POLY1305, &k[NAME..])
        .ok()
        .map(LessSafeKey::new)
}

impl rustls::server::ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        ROTATION.as_secs() as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let [current, _] = read()?;
        let nonce: [u8; NONCE_LEN] = random();
        let mut out = Vec::with_capacity(NAME + NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(&current[..NAME]);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        key(&current)?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&current[..NAME]),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < NAME + NONCE_LEN + 16 {
            return None;
        }
        let (name, rest) = cipher.split_at(NAME);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let keys = read()?;
        let k = keys.iter().find(|k| &k[..NAME] == name)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = sealed.to_vec();
        let plain = key(k)?
            .open_in_place(nonce, Aad::from(name), &mut body)
            .ok()?;
        let n = plain.len();
        body.truncate(n);
        Some(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::ProducesTickets;

    #[test]
    fn tickets_open_with_the_current_and_previous_key_only() {
        create().unwrap();
        let t = Ticketer;
        let a = t.encrypt(b"session state").unwrap();
        assert_eq!(t.decrypt(&a).as_deref(), Some(&b"session state"[..]));
        rotate();
        assert_eq!(
            t.decrypt(&a).as_deref(),
            Some(&b"session state"[..]),
            "previous key"
        );
        rotate();
        assert_eq!(t.decrypt(&a), None, "two rotations later");
        // Tampering and garbage open to nothing, never a panic.
        let mut b = t.encrypt(b"x").unwrap();
        let last = b.len() - 1;
        b[last] ^= 1;
        assert_eq!(t.decrypt(&b), None);
        for n in [0, 1, 27, 28, 43, 44, 45, 200] {
            assert_eq!(t.decrypt(&vec![0u8; n]), None);
        }
    }
}

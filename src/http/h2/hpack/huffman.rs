//! The Huffman code of HPACK (RFC 7541 5.2 and Appendix B). Encoding appends each
//! octet's code and pads the last octet with ones; decoding walks a table of four-bit
//! steps built once from the code (the states are the code tree's 256 inner nodes), and
//! refuses the EOS symbol and padding that is longer than 7 bits or not all ones.

use std::sync::OnceLock;

/// (code, length in bits) of octets 0 to 255 and of EOS (256): RFC 7541 Appendix B.
const CODES: [(u32, u8); 257] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
    (0x3fffffff, 30),
];

const EOS: usize = 256;

/// How long `data` is once encoded, in octets.
pub fn encoded_len(data: &[u8]) -> usize {
    let bits: usize = data
        .iter()
        .map(|&b| usize::from(CODES[usize::from(b)].1))
        .sum();
    bits.div_ceil(8)
}

/// Appends `data` Huffman-encoded.
pub fn encode(data: &[u8], out: &mut Vec<u8>) {
    let mut acc: u64 = 0;
    let mut bits: u32 = 0;
    for &b in data {
        let (code, len) = CODES[usize::from(b)];
        acc = (acc << len) | u64::from(code);
        bits += u32::from(len);
        while bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
        // Only the bits not yet written are kept (at most 7 + 30 fit in 64).
        acc &= (1u64 << bits) - 1;
    }
    if bits > 0 {
        // Padding: the most significant bits of EOS, all ones.
        out.push(((acc << (8 - bits)) as u8) | (0xff >> bits));
    }
}

/// One four-bit step from a state: where it leads, and the octet it completed, if any.
#[derive(Clone, Copy, Default)]
struct Step {
    next: u8,
    /// `EMITS` when `sym` was completed; `FAILS` when the bits reached EOS.
    flags: u8,
    sym: u8,
}

const EMITS: u8 = 1;
const FAILS: u8 = 2;

struct Machine {
    steps: Vec<[Step; 16]>,
    /// Whether a string may end in this state: at the root, or inside the path of ones
    /// that leads to EOS at most 7 bits deep (valid padding).
    accepts: [bool; 256],
}

/// A node of the code tree while it is built: inner nodes have two children.
#[derive(Clone, Copy)]
enum Node {
    Inner([u16; 2]),
    Leaf(u16),
    Empty,
}

fn machine() -> &'static Machine {
    static M: OnceLock<Machine> = OnceLock::new();
    M.get_or_init(|| {
        // The tree: node 0 is the root; inner nodes get state numbers in creation order.
        let mut nodes = vec![Node::Empty];
        for (sym, &(code, len)) in CODES.iter().enumerate() {
            let mut at = 0usize;
            for i in (0..len).rev() {
                let bit = ((code >> i) & 1) as usize;
                let children = match nodes[at] {
                    Node::Inner(c) => c,
                    _ => {
                        nodes[at] = Node::Inner([u16::MAX; 2]);
                        [u16::MAX; 2]
                    }
                };
                let child = if children[bit] == u16::MAX {
                    nodes.push(Node::Empty);
                    let id = (nodes.len() - 1) as u16;
                    if let Node::Inner(c) = &mut nodes[at] {
                        c[bit] = id;
                    }
                    id
                } else {
                    children[bit]
                };
                at = usize::from(child);
            }
            nodes[at] = Node::Leaf(sym as u16);
        }
        // State numbers of inner nodes, and each one's depth and all-ones path.
        let mut state_of = vec![u8::MAX; nodes.len()];
        let mut inner = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            if matches!(n, Node::Inner(_)) {
                state_of[i] = inner.len() as u8;
                inner.push(i);
            }
        }
        debug_assert_eq!(inner.len(), 256);
        let mut accepts = [false; 256];
        let mut at = 0usize;
        for depth in 0..8 {
            if let Node::Inner(c) = nodes[at] {
                accepts[usize::from(state_of[at])] = true;
                if depth < 7 {
                    at = usize::from(c[1]);
                }
            }
        }
        let mut steps = vec![[Step::default(); 16]; 256];
        for (s, &node) in inner.iter().enumerate() {
            for nibble in 0..16u8 {
                let mut at = node;
                let mut step = Step::default();
                for i in (0..4).rev() {
                    let Node::Inner(c) = nodes[at] else {
                        unreachable!("walks stay on inner nodes")
                    };
                    at = usize::from(c[usize::from((nibble >> i) & 1)]);
                    if let Node::Leaf(sym) = nodes[at] {
                        if usize::from(sym) == EOS {
                            step.flags |= FAILS;
                            break;
                        }
                        step.flags |= EMITS;
                        step.sym = sym as u8;
                        at = 0;
                    }
                }
                step.next = if step.flags & FAILS != 0 {
                    0
                } else {
                    state_of[at]
                };
                steps[s][usize::from(nibble)] = step;
            }
        }
        Machine { steps, accepts }
    })
}

/// A Huffman-coded string that is not valid: it holds EOS or bad padding.
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid;

/// Appends the octets `data` encodes.
pub fn decode(data: &[u8], out: &mut Vec<u8>) -> Result<(), Invalid> {
    let m = machine();
    let mut state = 0usize;
    for &b in data {
        for nibble in [b >> 4, b & 0xf] {
            let step = m.steps[state][usize::from(nibble)];
            if step.flags & FAILS != 0 {
                return Err(Invalid);
            }
            if step.flags & EMITS != 0 {
                out.push(step.sym);
            }
            state = usize::from(step.next);
        }
    }
    if m.accepts[state] {
        Ok(())
    } else {
        Err(Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::hex;
    use super::*;

    #[test]
    fn the_rfc_examples_encode_and_decode() {
        // RFC 7541 C.4 and C.6.
        for (text, coded) in [
            ("www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"),
            ("no-cache", "a8eb 1064 9cbf"),
            ("custom-key", "25a8 49e9 5ba9 7d7f"),
            ("custom-value", "25a8 49e9 5bb8 e8b4 bf"),
            ("302", "6402"),
            ("private", "aec3 771a 4b"),
            (
                "https://www.example.com",
                "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
            ),
        ] {
            let mut out = Vec::new();
            encode(text.as_bytes(), &mut out);
            assert_eq!(out, hex(coded), "{text}");
            assert_eq!(encoded_len(text.as_bytes()), out.len());
            let mut back = Vec::new();
            decode(&out, &mut back).unwrap();
            assert_eq!(back, text.as_bytes());
        }
    }

    #[test]
    fn every_octet_round_trips() {
        let all: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        let mut out = Vec::new();
        encode(&all, &mut out);
        let mut back = Vec::new();
        decode(&out, &mut back).unwrap();
        assert_eq!(back, all);
        for b in 0..=255u8 {
            let mut one = Vec::new();
            encode(&[b], &mut one);
            let mut back = Vec::new();
            decode(&one, &mut back).unwrap();
            assert_eq!(back, [b]);
        }
    }

    #[test]
    fn eos_and_bad_padding_are_refused() {
        // EOS itself (30 ones), padded: refused.
        assert_eq!(
            decode(&[0xff, 0xff, 0xff, 0xff], &mut Vec::new()),
            Err(Invalid)
        );
        // 8 bits of padding: more than 7.
        let mut out = Vec::new();
        encode(b"a", &mut out); // 5 bits + 3 of padding
        out.push(0xff);
        assert_eq!(decode(&out, &mut Vec::new()), Err(Invalid));
        // Padding that is not all ones.
        let mut out = Vec::new();
        encode(b"a", &mut out);
        let last = out.len() - 1;
        out[last] &= 0xfe;
        assert_eq!(decode(&out, &mut Vec::new()), Err(Invalid));
        // The empty string is fine.
        assert_eq!(decode(&[], &mut Vec::new()), Ok(()));
    }
}

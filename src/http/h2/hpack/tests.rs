use super::*;

/// Octets from hex digits, spaces ignored (as RFC 7541's examples are printed).
pub(super) fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn fields(d: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, Error> {
    let mut v = Vec::new();
    d.decode(block, usize::MAX, |n, val| {
        v.push((
            String::from_utf8_lossy(n).into_owned(),
            String::from_utf8_lossy(val).into_owned(),
        ))
    })?;
    Ok(v)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// RFC 7541 C.3 (plain literals) and C.4 (Huffman): three requests on one connection,
/// with the dynamic table's size after each.
/// (plain block, Huffman block, fields, table size after).
type Example = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    usize,
);

const REQUESTS: [Example; 3] = [
    (
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ],
        57,
    ),
    (
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8286 84be 5886 a8eb 1064 9cbf",
        &[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            ("cache-control", "no-cache"),
        ],
        110,
    ),
    (
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        &[
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ],
        164,
    ),
];

#[test]
fn the_rfc_request_examples_decode_with_and_without_huffman() {
    let mut plain = Decoder::default();
    let mut coded = Decoder::default();
    for (p, h, want, size) in REQUESTS {
        assert_eq!(fields(&mut plain, &hex(p)).unwrap(), pairs(want));
        assert_eq!(plain.table_size(), size);
        assert_eq!(fields(&mut coded, &hex(h)).unwrap(), pairs(want));
        assert_eq!(coded.table_size(), size);
    }
}

#[test]
fn the_encoder_writes_the_rfc_huffman_examples_byte_for_byte() {
    let mut e = Encoder::default();
    for (_, h, want, _) in REQUESTS {
        let mut out = Vec::new();
        e.encode(
            want.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())),
            &mut out,
        );
        assert_eq!(out, hex(h));
    }
}

#[test]
fn malformed_blocks_are_errors_never_panics() {
    let cases: [(&str, Error); 9] = [
        ("80", Error::Index),     // index 0
        ("be", Error::Index),     // 62: the dynamic table is empty
        ("ff", Error::Truncated), // an integer cut short
        ("ff ff ff ff ff ff 01", Error::Integer),
        ("ff 80 80 80 80 80 01", Error::Integer),
        ("40 05 61 62", Error::Truncated), // a name shorter than its length
        ("40 01 61 85 61", Error::Truncated), // a value likewise
        ("40 81 ff 01 61", Error::Huffman), // 8 bits of padding in a Huffman name
        ("3f e2 1f", Error::SizeUpdate),   // 4097: above the limit
    ];
    for (bytes, err) in cases {
        let mut d = Decoder::default();
        assert_eq!(
            d.decode(&hex(bytes), usize::MAX, |_, _| {}),
            Err(err),
            "{bytes}"
        );
    }
    // A size update after a field is out of place; at the start (twice) it is fine.
    let mut d = Decoder::default();
    assert_eq!(
        d.decode(&hex("82 20"), usize::MAX, |_, _| {}),
        Err(Error::SizeUpdate)
    );
    let mut d = Decoder::default();
    assert_eq!(
        d.decode(&hex("20 3f e1 1f 82"), usize::MAX, |_, _| {}),
        Ok(Fits::Whole)
    );
}

#[test]
fn a_decompression_bomb_stops_passing_fields_but_keeps_the_table_in_step() {
    // One 4,000-octet value remembered, then referenced 10,000 times: a 10 KB block that
    // decodes to 40 MB.
    let mut block = vec![0x40, 0x05];
    block.extend_from_slice(b"x-big");
    put_int(&mut block, 4000, 7, 0);
    block.extend_from_slice(&[b'y'; 4000]);
    block.extend(std::iter::repeat_n(0xbe, 10_000));
    let mut d = Decoder::default();
    let mut passed = 0usize;
    let fits = d.decode(&block, 65_536, |n, v| passed += field_cost(n, v));
    assert_eq!(fits, Ok(Fits::TooLarge));
    assert!(passed <= 65_536, "{passed}");
    // The next block still decodes against the same table.
    assert_eq!(
        fields(&mut d, &hex("be")).unwrap(),
        vec![("x-big".to_string(), "y".repeat(4000))]
    );
}

#[test]
fn credentials_are_never_indexed_and_per_message_values_are_not_remembered() {
    let mut e = Encoder::default();
    let mut out = Vec::new();
    e.encode(
        [
            (&b"authorization"[..], &b"Bearer secret"[..]),
            (b"cookie", b"a=1"),
            (b":path", b"/a/b?c"),
            (b"content-length", b"12345"),
        ],
        &mut out,
    );
    // Never indexed: 0001xxxx with the static name index (authorization is 23, cookie 32:
    // 4-bit prefix 15 + 8 and 15 + 17).
    assert_eq!(&out[..2], &[0x1f, 0x08]);
    assert_eq!(e.table.len(), 0, "nothing remembered");
    let mut d = Decoder::default();
    assert_eq!(
        fields(&mut d, &out).unwrap(),
        pairs(&[
            ("authorization", "Bearer secret"),
            ("cookie", "a=1"),
            (":path", "/a/b?c"),
            ("content-length", "12345"),
        ])
    );
}

#[test]
fn a_smaller_peer_table_is_announced_at_the_next_block() {
    let mut e = Encoder::default();
    let mut d = Decoder::default();
    let mut out = Vec::new();
    e.encode([(&b"x-a"[..], &b"1"[..])], &mut out);
    fields(&mut d, &out).unwrap();
    // Down to 0 and back up to 100 between blocks: both sizes are announced, the
    // smallest first (RFC 7541 4.2), and the table starts over.
    e.set_peer_limit(0);
    e.set_peer_limit(100);
    let mut out = Vec::new();
    e.encode([(&b"x-a"[..], &b"1"[..])], &mut out);
    assert_eq!(&out[..3], &[0x20, 0x3f, 0x45]);
    assert_eq!(fields(&mut d, &out).unwrap(), pairs(&[("x-a", "1")]));
    assert_eq!(d.table_size(), 36);
}

/// Random header lists through this encoder into another implementation's decoder, and
/// the other way, over one long connection each: both tables must agree all along.
#[test]
fn blocks_agree_with_another_implementation_both_ways() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let names: [&[u8]; 8] = [
        b":path",
        b"accept",
        b"x-custom",
        b"user-agent",
        b"cookie",
        b"content-type",
        b"x-\x7fodd",
        b"authorization",
    ];
    let mut ours_e = Encoder::default();
    let mut theirs_d = loona_hpack::Decoder::new();
    let mut theirs_e = loona_hpack::Encoder::new();
    let mut ours_d = Decoder::default();
    for _ in 0..2000 {
        let n = (next() % 12) as usize;
        let list: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
            .map(|_| {
                let name = names[(next() % names.len() as u64) as usize].to_vec();
                let len = (next() % 40) as usize;
                let value: Vec<u8> = (0..len)
                    .map(|_| match next() % 4 {
                        0 => (next() % 256) as u8,
                        _ => b'a' + (next() % 8) as u8,
                    })
                    .collect();
                (name, value)
            })
            .collect();
        let refs = list.iter().map(|(a, b)| (&a[..], &b[..]));
        let mut out = Vec::new();
        ours_e.encode(refs.clone(), &mut out);
        assert_eq!(theirs_d.decode(&out).unwrap(), list);
        let block = theirs_e.encode(refs);
        let mut got = Vec::new();
        ours_d
            .decode(&block, usize::MAX, |a, b| {
                got.push((a.to_vec(), b.to_vec()))
            })
            .unwrap();
        assert_eq!(got, list);
    }
}

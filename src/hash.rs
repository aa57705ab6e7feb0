//! One stable hash for everything that must hash the same in every process and every build
//! (the std hasher is not promised to be): shared-memory names, the consistent hash ring,
//! sticky keys. FNV-1a with a murmur3 finalizer (FNV's low bits mix poorly on their own).

pub fn stable(bytes: &[u8]) -> u64 {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    let mut x = h;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

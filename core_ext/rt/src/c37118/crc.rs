//! CRC-CCITT as C37.118 uses it for CHK: polynomial 0x1021, initial value 0xFFFF, not
//! reflected, no final XOR (the catalogue name is CRC-16/CCITT-FALSE).

/// Slicing-by-16 lookup tables built at compile time: `TABLES[k][b]` is the CRC
/// contribution of byte `b` followed by `k` zero bytes. A block of up to 16 bytes then
/// costs independent lookups and one dependent step, instead of a chain of one step
/// per byte (CHK is checked on every frame, so this is on the hot path).
const TABLES: [[u16; 256]; 16] = build_tables();

const fn build_tables() -> [[u16; 256]; 16] {
    let mut t = [[0u16; 256]; 16];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 16 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev << 8) ^ t[0][(prev >> 8) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// One block of `N` (2..=16) bytes: the register's two bytes fold into the first two
/// message bytes, and byte `j` contributes `TABLES[N - 1 - j]`. `N` is a constant so the
/// loop unrolls into independent lookups.
#[inline(always)]
fn block<const N: usize>(crc: u16, c: &[u8; N]) -> u16 {
    let mut acc = TABLES[N - 1][usize::from(c[0] ^ (crc >> 8) as u8)]
        ^ TABLES[N - 2][usize::from(c[1] ^ crc as u8)];
    let mut j = 2;
    while j < N {
        acc ^= TABLES[N - 1 - j][usize::from(c[j])];
        j += 1;
    }
    acc
}

#[inline(always)]
fn tail<const N: usize>(crc: u16, rest: &[u8]) -> u16 {
    match <&[u8; N]>::try_from(rest) {
        Ok(a) => block(crc, a),
        Err(_) => crc,
    }
}

/// CRC-CCITT (0xFFFF init, poly 0x1021) of `data`: carry-less-multiply folding where
/// the CPU has it (x86_64 with PCLMULQDQ, aarch64 with PMULL) and the message is long
/// enough, else tables.
pub fn crc_ccitt(data: &[u8]) -> u16 {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    if data.len() >= clmul::MIN_LEN && clmul::available() {
        // SAFETY: `available()` has just confirmed that the CPU has the multiply.
        return unsafe { clmul::crc(data) };
    }
    crc_table(data)
}

/// The CHK a whole frame carries in its last two bytes and the CRC computed over the
/// rest: `(stored, computed)`. `frame` must hold at least two bytes.
pub fn frame_chk(frame: &[u8]) -> (u16, u16) {
    let chk_at = frame.len() - 2;
    let stored = u16::from_be_bytes([frame[chk_at], frame[chk_at + 1]]);
    (stored, crc_ccitt(&frame[..chk_at]))
}

/// CRC-CCITT of `data` by slicing-by-16 tables (any CPU, any length).
pub fn crc_table(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    let mut blocks = data.chunks_exact(16);
    for c in &mut blocks {
        crc = tail::<16>(crc, c);
    }
    let rest = blocks.remainder();
    match rest.len() {
        0 => crc,
        1 => (crc << 8) ^ TABLES[0][usize::from((crc >> 8) as u8 ^ rest[0])],
        2 => tail::<2>(crc, rest),
        3 => tail::<3>(crc, rest),
        4 => tail::<4>(crc, rest),
        5 => tail::<5>(crc, rest),
        6 => tail::<6>(crc, rest),
        7 => tail::<7>(crc, rest),
        8 => tail::<8>(crc, rest),
        9 => tail::<9>(crc, rest),
        10 => tail::<10>(crc, rest),
        11 => tail::<11>(crc, rest),
        12 => tail::<12>(crc, rest),
        13 => tail::<13>(crc, rest),
        14 => tail::<14>(crc, rest),
        _ => tail::<15>(crc, rest),
    }
}

/// CRC-CCITT by carry-less multiplication (x86_64 PCLMULQDQ, aarch64 PMULL: the same
/// algorithm over one 64×64-bit multiply; the batch decoder's `FixedLen` is x86_64's).
///
/// The message is read as a polynomial over GF(2), first byte highest, and CHK is
/// `M(x)·x^16 mod P(x)` once the initial 0xFFFF has been XORed into the first two bytes.
/// Zero bytes in front of a message do not change that, so the message is padded at the
/// front to whole 16-byte blocks; a 128-bit accumulator congruent to the message so far
/// (mod P) then absorbs one block per step, `acc·x^128 + block`, with `acc·x^128`
/// replaced by two 64×16-bit carry-less products with the constants `x^192 mod P` and
/// `x^128 mod P` (so the accumulator never grows past 80 bits). At the end `acc·x^16` is
/// folded to 64 bits and reduced mod P by Barrett's method. Per 16 bytes this is two
/// independent multiplies instead of sixteen table loads, and frames of a batch overlap.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub mod clmul {
    #[cfg(target_arch = "aarch64")]
    use std::arch::aarch64::vmull_p64;
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::{
        __m128i, _mm_and_si128, _mm_clmulepi64_si128, _mm_cvtsi128_si32, _mm_cvtsi64_si128,
        _mm_move_epi64, _mm_set_epi8, _mm_shuffle_epi8, _mm_slli_si128, _mm_srli_epi64,
        _mm_srli_si128, _mm_xor_si128,
    };

    /// P(x) = x^16 + x^12 + x^5 + 1 with its x^16 term.
    const POLY: u64 = 0x1_1021;

    /// Shortest message this path takes (one whole block to load the first bytes from).
    pub const MIN_LEN: usize = 16;

    /// `x^n mod P`.
    const fn xpow_mod(n: u32) -> u64 {
        let mut r: u64 = 1;
        let mut i = 0;
        while i < n {
            r <<= 1;
            if r & 0x1_0000 != 0 {
                r ^= POLY;
            }
            i += 1;
        }
        r
    }

    /// Barrett's constant `floor(x^64 / P)` (degree 48), by long division.
    const fn barrett_mu() -> u64 {
        let mut rem: u128 = 1 << 64;
        let mut q: u64 = 0;
        let mut d: u32 = 64;
        while d >= 16 {
            if rem & (1u128 << d) != 0 {
                rem ^= (POLY as u128) << (d - 16);
                q |= 1 << (d - 16);
            }
            d -= 1;
        }
        q
    }

    const K192: u64 = xpow_mod(192);
    const K128: u64 = xpow_mod(128);
    const K80: u64 = xpow_mod(80);
    const K64: u64 = xpow_mod(64);
    const MU: u64 = barrett_mu();

    /// Whether this CPU has PCLMULQDQ and SSSE3 (the answers are cached by the standard
    /// library; every CPU with the first has the second).
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("pclmulqdq")
            && std::arch::is_x86_feature_detected!("ssse3")
    }

    /// Whether this CPU has PMULL (ARMv8's crypto extension: Cortex-A53 and A72 with it).
    #[cfg(target_arch = "aarch64")]
    #[inline]
    pub fn available() -> bool {
        std::arch::is_aarch64_feature_detected!("pmull")
    }

    /// Carry-less product of two 64-bit polynomials.
    #[cfg(target_arch = "aarch64")]
    #[inline]
    #[target_feature(enable = "neon,aes")]
    fn mul(a: u64, b: u64) -> u128 {
        // Safe inside this function: its target features are the intrinsic's (the
        // callers checked `available()`).
        vmull_p64(a, b)
    }

    /// Carry-less product of two 64-bit polynomials.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "pclmulqdq")]
    fn mul(a: u64, b: u64) -> u128 {
        let p =
            _mm_clmulepi64_si128::<0x00>(_mm_cvtsi64_si128(a as i64), _mm_cvtsi64_si128(b as i64));
        // SAFETY: `__m128i` and `u128` are both 16 bytes of plain data with no invalid
        // bit patterns; on little-endian x86_64 lane 0 becomes the low 64 bits.
        unsafe { std::mem::transmute::<__m128i, u128>(p) }
    }

    /// `acc·x^128 mod P` as a polynomial of under 80 bits.
    #[inline]
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "pclmulqdq"))]
    #[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon,aes"))]
    fn shift128(acc: u128) -> u128 {
        mul((acc >> 64) as u64, K192) ^ mul(acc as u64, K128)
    }

    /// `acc·x^16 mod P`.
    #[inline]
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "pclmulqdq"))]
    #[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon,aes"))]
    fn reduce(acc: u128) -> u16 {
        // acc·x^16 = hi·x^80 + lo·x^16 ≡ hi·(x^80 mod P) + lo·x^16: under 80 bits.
        let t = mul((acc >> 64) as u64, K80) ^ ((acc as u64 as u128) << 16);
        // The 16 bits above x^64 fold down the same way: 64 bits.
        let v = (mul((t >> 64) as u64, K64) as u64) ^ t as u64;
        // Barrett: the quotient v / P is ((v / x^16)·mu) / x^48, the remainder what is
        // left of v after subtracting quotient·P (it fits in the low 16 bits).
        let q = (mul(v >> 16, MU) >> 48) as u64;
        (v ^ mul(q, POLY) as u64) as u16
    }

    /// CRC-CCITT (0xFFFF init) of `data`, at least `MIN_LEN` bytes long.
    ///
    /// # Safety
    /// The CPU must support PCLMULQDQ (see `available`).
    #[inline]
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "pclmulqdq"))]
    #[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon,aes"))]
    pub unsafe fn crc(data: &[u8]) -> u16 {
        crc_from(0xFFFF, data)
    }

    /// CRC-CCITT of many messages of one length `len` that sit inside a larger buffer
    /// (the frames of a batch), with the per-length work done once: instead of shifting
    /// the first partial block into place, `crc_at` loads the 16 bytes that end where
    /// that block ends (the tail of the previous message) and masks off what is not
    /// part of this message; the initial value's position is a constant too.
    #[cfg(target_arch = "x86_64")]
    #[derive(Debug, Clone, Copy)]
    pub struct FixedLen {
        len: usize,
        /// Bytes of the first, partial block (1..=16).
        head: usize,
        mask: u128,
        /// The initial value at its place in the first and (head of one byte) second block.
        init_first: u128,
        init_second: u128,
    }

    #[cfg(target_arch = "x86_64")]
    impl FixedLen {
        /// For messages of `len >= MIN_LEN` bytes.
        pub fn new(len: usize) -> Self {
            assert!(len >= MIN_LEN);
            let head = match len % 16 {
                0 => 16,
                r => r,
            };
            let mask = if head == 16 {
                u128::MAX
            } else {
                (1u128 << (8 * head)) - 1
            };
            let (init_first, init_second) = if head == 1 {
                (0xFF, 0xFF << 120)
            } else {
                (0xFFFFu128 << (8 * head - 16), 0)
            };
            Self {
                len,
                head,
                mask,
                init_first,
                init_second,
            }
        }

        /// CRC-CCITT of `buf[at..at + len]`.
        ///
        /// The same algorithm as `crc`, kept in SSE registers throughout (the fold
        /// constants paired so that one register serves both multiplies of a step): some
        /// thirty instructions for a 44-byte frame, a third of the general path's.
        ///
        /// # Safety
        /// The CPU must support PCLMULQDQ and SSSE3 (see `available`).
        #[inline]
        #[target_feature(enable = "pclmulqdq,ssse3")]
        pub unsafe fn crc_at(&self, buf: &[u8], at: usize) -> u16 {
            let data = &buf[at..at + self.len];
            let Some(start) = (at + self.head).checked_sub(16) else {
                // No 16 bytes before the end of the first block: the general path.
                return crc_from(0xFFFF, data);
            };
            let fold = xmm(u128::from(K128) | u128::from(K192) << 64);
            let mut acc = _mm_xor_si128(
                _mm_and_si128(load_be(&buf[start..start + 16]), xmm(self.mask)),
                xmm(self.init_first),
            );
            let mut blocks = data[self.head..].chunks_exact(16);
            let step = |acc: __m128i, c: &[u8]| {
                let shifted = _mm_xor_si128(
                    _mm_clmulepi64_si128::<0x00>(acc, fold),
                    _mm_clmulepi64_si128::<0x11>(acc, fold),
                );
                _mm_xor_si128(shifted, load_be(c))
            };
            if let Some(c) = blocks.next() {
                acc = _mm_xor_si128(step(acc, c), xmm(self.init_second));
            }
            for c in blocks {
                acc = step(acc, c);
            }
            // As `reduce`: lane 0 of `red` is x^80 mod P and lane 1 x^64 mod P; lane 0 of
            // `bar` is Barrett's mu and lane 1 is P.
            let red = xmm(u128::from(K80) | u128::from(K64) << 64);
            let bar = xmm(u128::from(MU) | u128::from(POLY) << 64);
            let t = _mm_xor_si128(
                _mm_clmulepi64_si128::<0x01>(acc, red),
                _mm_slli_si128::<2>(_mm_move_epi64(acc)),
            );
            // Lane 0 is v; lane 1 keeps t's top, which nothing below reads.
            let v = _mm_xor_si128(_mm_clmulepi64_si128::<0x11>(t, red), t);
            let q = _mm_srli_si128::<6>(_mm_clmulepi64_si128::<0x00>(_mm_srli_epi64::<16>(v), bar));
            let r = _mm_xor_si128(v, _mm_clmulepi64_si128::<0x10>(q, bar));
            _mm_cvtsi128_si32(r) as u16
        }
    }

    /// A `u128` as an SSE register (lane 0 = low 64 bits).
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "pclmulqdq,ssse3")]
    fn xmm(v: u128) -> __m128i {
        // SAFETY: both are 16 bytes of plain data with no invalid bit patterns.
        unsafe { std::mem::transmute::<u128, __m128i>(v) }
    }

    /// 16 bytes read as a big-endian number (first byte highest), as `u128::from_be_bytes`.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "pclmulqdq,ssse3")]
    fn load_be(c: &[u8]) -> __m128i {
        let raw = xmm(u128::from_le_bytes(c.try_into().expect("16-byte block")));
        _mm_shuffle_epi8(
            raw,
            _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        )
    }

    #[inline]
    #[cfg_attr(target_arch = "x86_64", target_feature(enable = "pclmulqdq"))]
    #[cfg_attr(target_arch = "aarch64", target_feature(enable = "neon,aes"))]
    fn crc_from(init: u16, data: &[u8]) -> u16 {
        let block = |c: &[u8]| u128::from_be_bytes(c.try_into().expect("16-byte block"));
        let head = match data.len() % 16 {
            0 => 16,
            // The initial value would straddle the first two blocks: take the one byte
            // through the table and go on from a whole number of blocks.
            1 => {
                let crc = (init << 8) ^ super::TABLES[0][usize::from((init >> 8) as u8 ^ data[0])];
                return crc_from(crc, &data[1..]);
            }
            r => r,
        };
        // The first `head` bytes, with the initial value XORed into the first two, as the
        // low end of a 16-byte block padded with leading zeros.
        let first = block(&data[..16]) ^ (u128::from(init) << 112);
        let mut acc = first >> (8 * (16 - head));
        for c in data[head..].chunks_exact(16) {
            acc = shift128(acc) ^ block(c);
        }
        reduce(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_value() {
        assert_eq!(crc_ccitt(b"123456789"), 0x29B1);
    }

    #[test]
    fn empty_is_initial_value() {
        assert_eq!(crc_ccitt(b""), 0xFFFF);
    }

    #[test]
    fn table_matches_bitwise() {
        fn bitwise(data: &[u8]) -> u16 {
            let mut crc: u16 = 0xFFFF;
            for &b in data {
                crc ^= u16::from(b) << 8;
                for _ in 0..8 {
                    crc = if crc & 0x8000 != 0 {
                        (crc << 1) ^ 0x1021
                    } else {
                        crc << 1
                    };
                }
            }
            crc
        }
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        for n in 0..40 {
            assert_eq!(
                crc_table(&data[n..]),
                bitwise(&data[n..]),
                "length {}",
                1000 - n
            );
        }
    }

    #[test]
    fn table_check_value() {
        assert_eq!(crc_table(b"123456789"), 0x29B1);
        assert_eq!(crc_table(b""), 0xFFFF);
    }

    /// The carry-less path against the tables on random messages of every length up to
    /// a few blocks (all head sizes, including the one-byte head) and random contents.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn clmul_matches_table() {
        if !clmul::available() {
            return;
        }
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut data = vec![0u8; 300];
        for round in 0..200 {
            for b in data.iter_mut() {
                *b = next() as u8;
            }
            if round == 0 {
                data.fill(0xFF);
            } else if round == 1 {
                data.fill(0);
            }
            for len in clmul::MIN_LEN..data.len() {
                // SAFETY: `available()` returned true above.
                let fast = unsafe { clmul::crc(&data[..len]) };
                assert_eq!(fast, crc_table(&data[..len]), "round {round} length {len}");
            }
        }
        // The fixed-length form, for every head size and position in a buffer (messages
        // at the start take the general path).
        #[cfg(target_arch = "x86_64")]
        for len in clmul::MIN_LEN..70 {
            let f = clmul::FixedLen::new(len);
            for at in 0..40 {
                // SAFETY: `available()` returned true above.
                let fast = unsafe { f.crc_at(&data, at) };
                assert_eq!(fast, crc_table(&data[at..at + len]), "len {len} at {at}");
            }
        }
        let mut v = b"123456789".repeat(3);
        assert_eq!(
            unsafe { clmul::crc(&v) }, // SAFETY: as above.
            crc_table(&v)
        );
        // A message followed by its CHK leaves a zero remainder.
        let chk = crc_ccitt(&v);
        v.extend_from_slice(&chk.to_be_bytes());
        assert_eq!(crc_ccitt(&v), 0);
    }
}

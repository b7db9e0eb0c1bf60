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

/// CRC-CCITT (0xFFFF init, poly 0x1021) of `data`.
pub fn crc_ccitt(data: &[u8]) -> u16 {
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
                crc_ccitt(&data[n..]),
                bitwise(&data[n..]),
                "length {}",
                1000 - n
            );
        }
    }
}

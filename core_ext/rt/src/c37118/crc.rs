//! CRC-CCITT as C37.118 uses it for CHK: polynomial 0x1021, initial value 0xFFFF, not
//! reflected, no final XOR (the catalogue name is CRC-16/CCITT-FALSE).

/// Lookup table built at compile time, so the per-frame check is one table step per byte.
const TABLE: [u16; 256] = build_table();

const fn build_table() -> [u16; 256] {
    let mut table = [0u16; 256];
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
        table[i] = crc;
        i += 1;
    }
    table
}

/// CRC-CCITT (0xFFFF init, poly 0x1021) of `data`.
pub fn crc_ccitt(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc = (crc << 8) ^ TABLE[usize::from((crc >> 8) as u8 ^ b)];
    }
    crc
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
        assert_eq!(crc_ccitt(&data), bitwise(&data));
    }
}

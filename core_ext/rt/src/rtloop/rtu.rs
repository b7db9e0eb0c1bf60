//! Modbus RTU framing for the loop's serial links (Modbus over Serial Line, V1.02):
//! an ADU is the device id, the PDU (function code + data) and the CRC-16/Modbus of both,
//! low byte first. A reply carries no length field, so its end is known from the function
//! code: the fixed-length echo replies of the writes, the byte count of the reads, five
//! bytes for an exception. Pure functions on byte slices, unit-tested without a tty; the
//! loop owns the line (`run.rs`). Nothing here allocates.

use super::modbus::{write_request, MAX_REQUEST};

/// Longest PDU (function code + data) of a Modbus serial ADU: 256 - device id - CRC.
pub const MAX_PDU: usize = 253;
/// Longest ADU.
pub const MAX_ADU: usize = 256;
/// Longest write request of the loop's own: function 16 with two registers (13 bytes).
pub const MAX_WRITE_ADU: usize = 13;

/// CRC-16/Modbus (reflected polynomial 0xA001, initial 0xFFFF) of `data`.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// The ADU for `pdu` to `device_id` into `out`; its length. None when the PDU is empty
/// or longer than `MAX_PDU`.
pub fn adu(device_id: u8, pdu: &[u8], out: &mut [u8; MAX_ADU]) -> Option<usize> {
    if pdu.is_empty() || pdu.len() > MAX_PDU {
        return None;
    }
    out[0] = device_id;
    out[1..=pdu.len()].copy_from_slice(pdu);
    let n = 1 + pdu.len();
    let crc = crc16(&out[..n]);
    out[n..n + 2].copy_from_slice(&crc.to_le_bytes());
    Some(n + 2)
}

/// The RTU write request of `words` at `address` (function 6 for one register, 16 for
/// two), the same PDU as the TCP writer's, into `out`; its length.
pub fn write_adu(device_id: u8, address: u16, words: &[u16], out: &mut [u8; MAX_ADU]) -> usize {
    let mut tcp = [0u8; MAX_REQUEST];
    let n = write_request(0, device_id, address, words, &mut tcp);
    // The MBAP's last byte is the unit id: unit id + PDU is the RTU ADU without its CRC.
    adu(device_id, &tcp[7..n], out).unwrap_or(0)
}

/// The functions whose reply length is known, and so that the loop can carry.
pub fn supported(function: u8) -> bool {
    matches!(function, 1..=6 | 15 | 16)
}

/// How long the reply to `function` is, once `buf` (the bytes read so far) tells it:
/// None while too few bytes are there to say. Counts the device id and the CRC.
pub fn reply_len(function: u8, buf: &[u8]) -> Option<usize> {
    if buf.len() < 2 {
        return None;
    }
    let f = buf[1];
    if f == function | 0x80 {
        return Some(5); // device id, function | 0x80, exception code, CRC
    }
    match function {
        // Reads: device id, function, byte count, data, CRC.
        1..=4 => buf.get(2).map(|&n| 5 + usize::from(n)),
        // Writes: the echo of address and value (or quantity).
        5 | 6 | 15 | 16 => Some(8),
        _ => Some(buf.len()), // never asked (see `supported`): whatever came is the reply
    }
}

/// What a complete reply says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtuReply {
    /// A normal reply: its PDU is `buf[1..len - 2]`.
    Ok,
    /// An exception reply (its code); the PDU is still `buf[1..3]`.
    Exception(u8),
    /// Wrong CRC, another device, another function, or a length beyond the ADU: the
    /// line is flushed and the request failed.
    Bad,
}

/// Judge the complete reply `buf` (of `reply_len` bytes) to `function` sent to `device_id`.
pub fn check_reply(device_id: u8, function: u8, buf: &[u8]) -> RtuReply {
    let n = buf.len();
    if !(5..=MAX_ADU).contains(&n) {
        return RtuReply::Bad;
    }
    let crc = u16::from_le_bytes([buf[n - 2], buf[n - 1]]);
    if crc != crc16(&buf[..n - 2]) || buf[0] != device_id {
        return RtuReply::Bad;
    }
    if buf[1] == function | 0x80 && n == 5 {
        RtuReply::Exception(buf[2])
    } else if buf[1] == function {
        RtuReply::Ok
    } else {
        RtuReply::Bad
    }
}

/// Seconds one character takes on the line: start bit, data bits, parity, stop bits.
pub fn char_time_s(baudrate: u32, bytesize: u8, parity: bool, stopbits: u8) -> f64 {
    let bits = 1 + u32::from(bytesize) + u32::from(parity) + u32::from(stopbits);
    f64::from(bits) / f64::from(baudrate.max(1))
}

/// The silence before each request (t3.5): 3.5 character times, and 1.75 ms above
/// 19200 baud, where the spec fixes it so that a UART's interrupt load stays bounded.
pub fn silence_s(baudrate: u32, char_s: f64) -> f64 {
    if baudrate > 19_200 {
        0.001_75
    } else {
        3.5 * char_s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_known_vectors() {
        // The spec's example request: read 10 holding registers of device 1 from 0.
        let req = [0x01, 0x03, 0x00, 0x00, 0x00, 0x0A];
        assert_eq!(crc16(&req).to_le_bytes(), [0xC5, 0xCD]);
        // CRC-16/MODBUS check value of "123456789".
        assert_eq!(crc16(b"123456789"), 0x4B37);
        // A reply of two registers, 0x0000 0x0001, computed with this CRC appended:
        // the CRC of a frame with its own CRC appended is 0 (the property receivers use).
        let mut out = [0u8; MAX_ADU];
        let n = adu(17, &[3, 4, 0, 0, 0, 1], &mut out).unwrap();
        assert_eq!(crc16(&out[..n]), 0);
    }

    #[test]
    fn frames_requests() {
        let mut out = [0u8; MAX_ADU];
        let n = adu(1, &[3, 0, 0, 0, 10], &mut out).unwrap();
        assert_eq!(&out[..n], &[1, 3, 0, 0, 0, 10, 0xC5, 0xCD]);
        assert_eq!(adu(1, &[], &mut out), None);
        assert_eq!(adu(1, &[0; MAX_PDU + 1], &mut out), None);
        assert_eq!(adu(1, &[0; MAX_PDU], &mut out), Some(MAX_ADU));
        // Function 16, two registers: 13 bytes, the PDU the TCP writer builds.
        let n = write_adu(1, 0, &[0xFFFF, 0xFF85], &mut out);
        assert_eq!(n, MAX_WRITE_ADU);
        assert_eq!(&out[..11], &[1, 16, 0, 0, 0, 2, 4, 0xFF, 0xFF, 0xFF, 0x85]);
        assert_eq!(crc16(&out[..n]), 0);
        let n = write_adu(3, 12, &[5], &mut out);
        assert_eq!(&out[..6], &[3, 6, 0, 12, 0, 5]);
        assert_eq!(n, 8);
        assert_eq!(crc16(&out[..n]), 0);
    }

    fn framed(pdu: &[u8]) -> Vec<u8> {
        let mut out = [0u8; MAX_ADU];
        let n = adu(1, pdu, &mut out).unwrap();
        out[..n].to_vec()
    }

    #[test]
    fn reply_lengths_and_checks() {
        let read = framed(&[3, 4, 0, 1, 0, 2]);
        assert_eq!(reply_len(3, &read[..1]), None);
        assert_eq!(reply_len(3, &read[..2]), None); // the byte count is not there yet
        assert_eq!(reply_len(3, &read[..3]), Some(9));
        assert_eq!(read.len(), 9);
        assert_eq!(check_reply(1, 3, &read), RtuReply::Ok);
        let coils = framed(&[1, 1, 0b101]);
        assert_eq!(reply_len(1, &coils), Some(6));
        assert_eq!(check_reply(1, 1, &coils), RtuReply::Ok);
        let echo = framed(&[16, 0, 0, 0, 2]);
        assert_eq!(reply_len(16, &echo[..2]), Some(8));
        assert_eq!(check_reply(1, 16, &echo), RtuReply::Ok);
        assert_eq!(reply_len(5, &framed(&[5, 0, 1, 0xFF, 0])), Some(8));
        let exc = framed(&[0x90, 2]);
        assert_eq!(reply_len(16, &exc[..2]), Some(5));
        assert_eq!(check_reply(1, 16, &exc), RtuReply::Exception(2));
        // Wrong CRC, wrong device, wrong function: bad.
        let mut bad = echo.clone();
        bad[7] ^= 1;
        assert_eq!(check_reply(1, 16, &bad), RtuReply::Bad);
        assert_eq!(check_reply(2, 16, &echo), RtuReply::Bad);
        assert_eq!(check_reply(1, 6, &echo), RtuReply::Bad);
        assert_eq!(check_reply(1, 3, &echo[..4]), RtuReply::Bad);
        assert!(supported(16) && supported(1) && !supported(0x2B) && !supported(0x83));
    }

    #[test]
    fn line_timing() {
        // 19200 8E1: 11 bits a character; t3.5 is about 2 ms. Above 19200: 1.75 ms.
        let c = char_time_s(19_200, 8, true, 1);
        assert!((c - 11.0 / 19_200.0).abs() < 1e-12);
        assert!((silence_s(19_200, c) - 3.5 * 11.0 / 19_200.0).abs() < 1e-12);
        let c = char_time_s(115_200, 8, false, 1);
        assert_eq!(silence_s(115_200, c), 0.001_75);
        // A function-16 write of two registers and its echo: 21 characters, ~12 ms.
        let t = 21.0 * char_time_s(19_200, 8, true, 1);
        assert!((0.011..0.013).contains(&t), "{t}");
    }

    #[test]
    fn any_reply_bytes_without_panic() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut buf = [0u8; 40];
        for _ in 0..50_000 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            if x % 4 == 0 {
                buf[0] = 1; // the right device now and then, so the deeper checks run
            }
            let function = [1u8, 2, 3, 4, 5, 6, 15, 16, 0x2B][(x % 9) as usize];
            for n in 0..=buf.len() {
                if let Some(len) = reply_len(function, &buf[..n]) {
                    assert!(len >= 2 || n < 2);
                    if len <= n {
                        let _ = check_reply(1, function, &buf[..len]);
                    }
                }
            }
            let _ = check_reply(buf[0], buf[1], &buf);
        }
    }
}

//! CP56Time2a: the seven-octet time tag of IEC 60870-5 (milliseconds within the minute,
//! minute, hour, day of month and week, month, two-digit year).

use super::{Iec104Error, Iec104ErrorKind};

/// A CP56Time2a time tag, field by field. The year is two digits: 0..=99 means
/// 2000..=2099 here (the standard leaves the century to the system).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cp56Time {
    /// Milliseconds within the minute, 0..=59999.
    pub ms: u16,
    pub minute: u8,
    pub hour: u8,
    /// Day of month, 1..=31.
    pub day: u8,
    /// Day of week, 1 = Monday .. 7 = Sunday, 0 = not used.
    pub weekday: u8,
    pub month: u8,
    pub year: u8,
    /// IV: the time is invalid.
    pub invalid: bool,
    /// SU: summer time.
    pub summer: bool,
}

pub const CP56_LEN: usize = 7;

const MS_PER_DAY: i64 = 86_400_000;

// Days since 1970-01-01 of a proleptic Gregorian date, and back: the era-based method
// (400-year cycles of 146097 days) that needs no tables.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Cp56Time {
    /// The time tag of a UNIX time in milliseconds, in the zone the caller shifted it to
    /// (UTC when not shifted). `None` outside 2000..=2099.
    pub fn from_unix_ms(ms: i64) -> Option<Self> {
        let days = ms.div_euclid(MS_PER_DAY);
        let in_day = ms.rem_euclid(MS_PER_DAY);
        let (y, m, d) = civil_from_days(days);
        if !(2000..=2099).contains(&y) {
            return None;
        }
        // 1970-01-01 was a Thursday (4 with Monday = 1).
        let weekday = (days + 3).rem_euclid(7) + 1;
        let minute_of_day = in_day / 60_000;
        Some(Self {
            ms: (in_day % 60_000) as u16,
            minute: (minute_of_day % 60) as u8,
            hour: (minute_of_day / 60) as u8,
            day: d as u8,
            weekday: weekday as u8,
            month: m as u8,
            year: (y - 2000) as u8,
            invalid: false,
            summer: false,
        })
    }

    /// UNIX time in milliseconds of this tag (read as 20yy, in the zone it was written in).
    pub fn to_unix_ms(&self) -> i64 {
        let days = days_from_civil(
            2000 + i64::from(self.year),
            i64::from(self.month),
            i64::from(self.day),
        );
        days * MS_PER_DAY
            + (i64::from(self.hour) * 60 + i64::from(self.minute)) * 60_000
            + i64::from(self.ms)
    }

    /// Decode seven octets; `base` is their offset in the APDU, for errors.
    pub fn decode(b: &[u8], base: usize) -> Result<Self, Iec104Error> {
        if b.len() < CP56_LEN {
            return Err(Iec104Error::new(Iec104ErrorKind::Asdu, "CP56Time2a", base));
        }
        let bad = |field, at: usize, v: u8| {
            Err(Iec104Error::new(Iec104ErrorKind::Time, field, base + at).with_found(u64::from(v)))
        };
        let ms = u16::from_le_bytes([b[0], b[1]]);
        if ms > 59_999 {
            return Err(
                Iec104Error::new(Iec104ErrorKind::Time, "CP56Time2a.ms", base)
                    .with_found(u64::from(ms)),
            );
        }
        let t = Self {
            ms,
            minute: b[2] & 0x3F,
            invalid: b[2] & 0x80 != 0,
            hour: b[3] & 0x1F,
            summer: b[3] & 0x80 != 0,
            day: b[4] & 0x1F,
            weekday: b[4] >> 5,
            month: b[5] & 0x0F,
            year: b[6] & 0x7F,
        };
        if t.minute > 59 {
            return bad("CP56Time2a.minute", 2, t.minute);
        }
        if t.hour > 23 {
            return bad("CP56Time2a.hour", 3, t.hour);
        }
        if !(1..=12).contains(&t.month) {
            return bad("CP56Time2a.month", 5, t.month);
        }
        if t.year > 99 {
            return bad("CP56Time2a.year", 6, t.year);
        }
        let dim = days_in_month(2000 + i64::from(t.year), i64::from(t.month));
        if t.day == 0 || i64::from(t.day) > dim {
            return bad("CP56Time2a.day", 4, t.day);
        }
        Ok(t)
    }

    /// Append the seven octets; refuses fields out of range.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), Iec104Error> {
        let ok = self.ms <= 59_999
            && self.minute <= 59
            && self.hour <= 23
            && (1..=31).contains(&self.day)
            && self.weekday <= 7
            && (1..=12).contains(&self.month)
            && self.year <= 99;
        if !ok {
            return Err(Iec104Error::new(Iec104ErrorKind::Encode, "CP56Time2a", 0));
        }
        out.extend_from_slice(&self.ms.to_le_bytes());
        out.push(self.minute | if self.invalid { 0x80 } else { 0 });
        out.push(self.hour | if self.summer { 0x80 } else { 0 });
        out.push(self.day | (self.weekday << 5));
        out.push(self.month);
        out.push(self.year);
        Ok(())
    }
}

//! The ASDU: data unit identifier (type, variable structure qualifier, cause of
//! transmission with originator address, common address) and information objects.

use super::time::{Cp56Time, CP56_LEN};
use super::{quality, Iec104Error, Iec104ErrorKind, MAX_IOA, MAX_LENGTH};

/// Octets of the data unit identifier: type, VSQ, COT (2), common address (2).
pub const ASDU_HEADER_LEN: usize = 6;
/// Octets of an information object address.
pub const IOA_LEN: usize = 3;
/// Largest ASDU an APDU can carry (the length octet minus the control field).
pub const MAX_ASDU_LEN: usize = MAX_LENGTH - 4;

/// The ASDU types this codec decodes information objects of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TypeId {
    /// Single-point information (SIQ).
    MSpNa1 = 1,
    /// Double-point information (DIQ).
    MDpNa1 = 3,
    /// Measured value, short floating point (IEEE 754 + QDS).
    MMeNc1 = 13,
    /// Single-point with CP56Time2a.
    MSpTb1 = 30,
    /// Double-point with CP56Time2a.
    MDpTb1 = 31,
    /// Short float with CP56Time2a.
    MMeTf1 = 36,
    /// Single command (SCO).
    CScNa1 = 45,
    /// Double command (DCO).
    CDcNa1 = 46,
    /// Set-point, short float (QOS).
    CSeNc1 = 50,
    /// Single command with CP56Time2a.
    CScTa1 = 58,
    /// Double command with CP56Time2a.
    CDcTa1 = 59,
    /// Set-point, short float with CP56Time2a.
    CSeTc1 = 63,
    /// End of initialisation (COI).
    MEiNa1 = 70,
    /// Interrogation command (QOI).
    CIcNa1 = 100,
    /// Clock synchronisation command (CP56Time2a).
    CCsNa1 = 103,
}

/// How an information element's value is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Single,
    Double,
    Float,
    Code,
    TimeOnly,
}

impl TypeId {
    pub const ALL: [TypeId; 15] = [
        Self::MSpNa1,
        Self::MDpNa1,
        Self::MMeNc1,
        Self::MSpTb1,
        Self::MDpTb1,
        Self::MMeTf1,
        Self::CScNa1,
        Self::CDcNa1,
        Self::CSeNc1,
        Self::CScTa1,
        Self::CDcTa1,
        Self::CSeTc1,
        Self::MEiNa1,
        Self::CIcNa1,
        Self::CCsNa1,
    ];

    /// The type of a type identification octet, if this codec knows it.
    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| *t as u8 == v)
    }

    /// Whether the element carries a CP56Time2a.
    pub fn has_time(self) -> bool {
        matches!(
            self,
            Self::MSpTb1
                | Self::MDpTb1
                | Self::MMeTf1
                | Self::CScTa1
                | Self::CDcTa1
                | Self::CSeTc1
                | Self::CCsNa1
        )
    }

    /// Whether this is a command with a select/execute bit (SCO, DCO, QOS).
    pub fn is_command(self) -> bool {
        matches!(
            self,
            Self::CScNa1 | Self::CDcNa1 | Self::CSeNc1 | Self::CScTa1 | Self::CDcTa1 | Self::CSeTc1
        )
    }

    fn shape(self) -> Shape {
        match self {
            Self::MSpNa1 | Self::MSpTb1 | Self::CScNa1 | Self::CScTa1 => Shape::Single,
            Self::MDpNa1 | Self::MDpTb1 | Self::CDcNa1 | Self::CDcTa1 => Shape::Double,
            Self::MMeNc1 | Self::MMeTf1 | Self::CSeNc1 | Self::CSeTc1 => Shape::Float,
            Self::MEiNa1 | Self::CIcNa1 => Shape::Code,
            Self::CCsNa1 => Shape::TimeOnly,
        }
    }

    /// Octets of one information element (without its address).
    pub fn element_len(self) -> usize {
        let base = match self.shape() {
            Shape::Single | Shape::Double | Shape::Code => 1,
            Shape::Float => 5,
            Shape::TimeOnly => 0,
        };
        base + if self.has_time() { CP56_LEN } else { 0 }
    }

    /// The largest qualifier this type's elements carry: quality bits for monitored
    /// values, QU (5 bits) for single and double commands, QL (7 bits) for set-points.
    fn qualifier_mask(self) -> u8 {
        match self {
            Self::MSpNa1 | Self::MSpTb1 | Self::MDpNa1 | Self::MDpTb1 => 0xF0,
            Self::MMeNc1 | Self::MMeTf1 => 0xF0 | quality::OV,
            Self::CScNa1 | Self::CScTa1 | Self::CDcNa1 | Self::CDcTa1 => 0x1F,
            Self::CSeNc1 | Self::CSeTc1 => 0x7F,
            Self::MEiNa1 | Self::CIcNa1 | Self::CCsNa1 => 0,
        }
    }
}

/// The value of an information element.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// SPI / SCS.
    Bool(bool),
    /// DPI / DCS: 0 indeterminate, 1 off, 2 on, 3 indeterminate.
    Double(u8),
    /// Short float (measured value or set-point).
    Float(f32),
    /// A one-octet code: QOI (interrogation), COI (end of initialisation).
    Code(u8),
    /// No value besides the time (clock synchronisation).
    None,
}

/// One information object: its address, value, qualifier, S/E bit and time tag.
///
/// `qualifier` is the quality descriptor without the value bits for monitored types
/// (see [`quality`](super::quality)), QU for single and double commands, QL for set-points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InfoObject {
    pub ioa: u32,
    pub value: Value,
    pub qualifier: u8,
    /// S/E: true = select, false = execute (commands only).
    pub select: bool,
    pub time: Option<Cp56Time>,
}

/// A decoded ASDU. `type_id` is the raw octet: a type this codec does not know decodes
/// with no objects (`objects` empty, `count` as declared).
#[derive(Debug, Clone, PartialEq)]
pub struct Asdu {
    pub type_id: u8,
    /// SQ: the objects are one address followed by consecutive elements.
    pub sequence: bool,
    /// Number of objects declared in the VSQ.
    pub count: u8,
    /// Cause of transmission, 6 bits.
    pub cot: u8,
    /// P/N: negative confirmation.
    pub negative: bool,
    /// T: test.
    pub test: bool,
    pub originator: u8,
    pub common_address: u16,
    pub objects: Vec<InfoObject>,
}

fn asdu_err(field: &'static str, at: usize) -> Iec104Error {
    Iec104Error::new(Iec104ErrorKind::Asdu, field, at)
}

fn read_ioa(b: &[u8]) -> u32 {
    u32::from(b[0]) | (u32::from(b[1]) << 8) | (u32::from(b[2]) << 16)
}

fn decode_element(t: TypeId, ioa: u32, b: &[u8], at: usize) -> Result<InfoObject, Iec104Error> {
    let mut obj = InfoObject {
        ioa,
        value: Value::None,
        qualifier: 0,
        select: false,
        time: None,
    };
    let command = t.is_command();
    let mut pos = 0;
    match t.shape() {
        Shape::Single => {
            obj.value = Value::Bool(b[0] & 0x01 != 0);
            pos = 1;
        }
        Shape::Double => {
            obj.value = Value::Double(b[0] & 0x03);
            pos = 1;
        }
        Shape::Float => {
            obj.value = Value::Float(f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            pos = 5;
        }
        Shape::Code => {
            obj.value = Value::Code(b[0]);
            pos = 1;
        }
        Shape::TimeOnly => {}
    }
    if pos > 0 && t.shape() != Shape::Code {
        let q = b[pos - 1];
        if command {
            obj.select = q & 0x80 != 0;
            obj.qualifier = match t.shape() {
                Shape::Float => q & 0x7F,
                _ => (q >> 2) & 0x1F,
            };
        } else {
            obj.qualifier = q & t.qualifier_mask();
        }
    }
    if t.has_time() {
        obj.time = Some(Cp56Time::decode(&b[pos..], at + pos)?);
    }
    Ok(obj)
}

/// Decode an ASDU that fills `b` exactly. Offsets in errors count from `b[0]`.
pub fn decode_asdu(b: &[u8]) -> Result<Asdu, Iec104Error> {
    if b.len() < ASDU_HEADER_LEN {
        return Err(asdu_err("data unit identifier", 0).with_found(b.len() as u64));
    }
    let vsq = b[1];
    let mut asdu = Asdu {
        type_id: b[0],
        sequence: vsq & 0x80 != 0,
        count: vsq & 0x7F,
        cot: b[2] & 0x3F,
        negative: b[2] & 0x40 != 0,
        test: b[2] & 0x80 != 0,
        originator: b[3],
        common_address: u16::from_le_bytes([b[4], b[5]]),
        objects: Vec::new(),
    };
    let Some(t) = TypeId::from_u8(asdu.type_id) else {
        return Ok(asdu);
    };
    let n = usize::from(asdu.count);
    if n == 0 {
        return Err(asdu_err("VSQ", 1).with_found(0));
    }
    let el = t.element_len();
    let body = &b[ASDU_HEADER_LEN..];
    let need = if asdu.sequence {
        IOA_LEN + n * el
    } else {
        n * (IOA_LEN + el)
    };
    if body.len() != need {
        return Err(asdu_err("VSQ", 1).with_found(body.len() as u64));
    }
    asdu.objects.reserve_exact(n);
    if asdu.sequence {
        let first = read_ioa(body);
        for i in 0..n {
            let ioa = first + i as u32;
            if ioa > MAX_IOA {
                return Err(asdu_err("IOA", ASDU_HEADER_LEN).with_found(u64::from(ioa)));
            }
            let at = ASDU_HEADER_LEN + IOA_LEN + i * el;
            asdu.objects
                .push(decode_element(t, ioa, &b[at..at + el], at)?);
        }
    } else {
        for i in 0..n {
            let at = ASDU_HEADER_LEN + i * (IOA_LEN + el);
            let ioa = read_ioa(&b[at..]);
            let at = at + IOA_LEN;
            asdu.objects
                .push(decode_element(t, ioa, &b[at..at + el], at)?);
        }
    }
    Ok(asdu)
}

/// The most objects of type `t` one ASDU can carry (without SQ).
pub fn max_objects(t: TypeId) -> usize {
    ((MAX_ASDU_LEN - ASDU_HEADER_LEN) / (IOA_LEN + t.element_len())).min(127)
}

fn encode_err(field: &'static str) -> Iec104Error {
    Iec104Error::new(Iec104ErrorKind::Encode, field, 0)
}

fn encode_element(t: TypeId, o: &InfoObject, out: &mut Vec<u8>) -> Result<(), Iec104Error> {
    if o.qualifier & !t.qualifier_mask() != 0 {
        return Err(encode_err("qualifier").with_found(u64::from(o.qualifier)));
    }
    if o.select && !t.is_command() {
        return Err(encode_err("select"));
    }
    let se = if o.select { 0x80 } else { 0 };
    let command_q = |v: u8| -> u8 {
        if t.is_command() {
            v | (o.qualifier << 2) | se
        } else {
            v | o.qualifier
        }
    };
    match (t.shape(), o.value) {
        (Shape::Single, Value::Bool(v)) => out.push(command_q(u8::from(v))),
        (Shape::Double, Value::Double(v)) if v <= 3 => out.push(command_q(v)),
        (Shape::Float, Value::Float(v)) => {
            out.extend_from_slice(&v.to_le_bytes());
            out.push(if t.is_command() {
                o.qualifier | se
            } else {
                o.qualifier
            });
        }
        (Shape::Code, Value::Code(v)) => out.push(v),
        (Shape::TimeOnly, Value::None) => {}
        _ => return Err(encode_err("value")),
    }
    match (t.has_time(), o.time) {
        (true, Some(time)) => time.encode(out),
        (false, None) => Ok(()),
        _ => Err(encode_err("time")),
    }
}

/// Append an ASDU. SQ is honoured: with `sequence` the objects must have consecutive
/// addresses. Refuses an ASDU longer than an APDU can carry.
pub fn encode_asdu(a: &Asdu, out: &mut Vec<u8>) -> Result<(), Iec104Error> {
    let t = TypeId::from_u8(a.type_id)
        .ok_or_else(|| encode_err("type").with_found(u64::from(a.type_id)))?;
    let n = a.objects.len();
    if n == 0 || n > 127 {
        return Err(encode_err("VSQ").with_found(n as u64));
    }
    if a.cot > 0x3F {
        return Err(encode_err("COT").with_found(u64::from(a.cot)));
    }
    let start = out.len();
    out.push(a.type_id);
    out.push(n as u8 | if a.sequence { 0x80 } else { 0 });
    out.push(a.cot | if a.negative { 0x40 } else { 0 } | if a.test { 0x80 } else { 0 });
    out.push(a.originator);
    out.extend_from_slice(&a.common_address.to_le_bytes());
    let mut result = Ok(());
    for (i, o) in a.objects.iter().enumerate() {
        if o.ioa > MAX_IOA {
            result = Err(encode_err("IOA").with_found(u64::from(o.ioa)));
            break;
        }
        if a.sequence && i > 0 && o.ioa != a.objects[0].ioa + i as u32 {
            result = Err(encode_err("SQ").with_found(u64::from(o.ioa)));
            break;
        }
        if !a.sequence || i == 0 {
            out.extend_from_slice(&o.ioa.to_le_bytes()[..IOA_LEN]);
        }
        if let Err(e) = encode_element(t, o, out) {
            result = Err(e);
            break;
        }
    }
    if result.is_ok() && out.len() - start > MAX_ASDU_LEN {
        result = Err(encode_err("length").with_found((out.len() - start) as u64));
    }
    if result.is_err() {
        out.truncate(start);
    }
    result
}

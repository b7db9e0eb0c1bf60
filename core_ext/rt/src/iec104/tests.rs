use super::*;

fn decode_one(b: &[u8]) -> Apdu {
    let (n, apdu) = decode_apdu(b).expect("decodes").expect("whole");
    assert_eq!(n, b.len());
    apdu
}

fn float_obj(ioa: u32, v: f32, q: u8, time: Option<Cp56Time>) -> InfoObject {
    InfoObject {
        ioa,
        value: Value::Float(v),
        qualifier: q,
        select: false,
        time,
    }
}

fn asdu(type_id: TypeId, cot: u8, objects: Vec<InfoObject>) -> Asdu {
    Asdu {
        type_id: type_id as u8,
        sequence: false,
        count: objects.len() as u8,
        cot,
        negative: false,
        test: false,
        originator: 0,
        common_address: 1,
        objects,
    }
}

#[test]
fn u_frames_are_byte_exact() {
    let cases: [(UFunction, u8); 6] = [
        (UFunction::StartDtAct, 0x07),
        (UFunction::StartDtCon, 0x0B),
        (UFunction::StopDtAct, 0x13),
        (UFunction::StopDtCon, 0x23),
        (UFunction::TestFrAct, 0x43),
        (UFunction::TestFrCon, 0x83),
    ];
    for (f, octet) in cases {
        let mut out = Vec::new();
        encode_u(f, &mut out);
        assert_eq!(out, [0x68, 0x04, octet, 0, 0, 0]);
        assert_eq!(decode_one(&out).apci, Apci::U(f));
    }
}

#[test]
fn s_frame_carries_receive_sequence_number() {
    let mut out = Vec::new();
    encode_s(5, &mut out).unwrap();
    assert_eq!(out, [0x68, 0x04, 0x01, 0x00, 0x0A, 0x00]);
    assert_eq!(decode_one(&out).apci, Apci::S { recv: 5 });
    // The largest number, 32767, fills all 15 bits.
    out.clear();
    encode_s(32767, &mut out).unwrap();
    assert_eq!(out[4..], [0xFE, 0xFF]);
    assert!(encode_s(32768, &mut out).is_err());
}

#[test]
fn general_interrogation_command_decodes() {
    // I(0,0), C_IC_NA_1, one object, COT 6 (act), OA 0, CA 1, IOA 0, QOI 20.
    let b = [
        0x68, 0x0E, 0x00, 0x00, 0x00, 0x00, 0x64, 0x01, 0x06, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x14,
    ];
    let a = decode_one(&b);
    assert_eq!(a.apci, Apci::I { send: 0, recv: 0 });
    let asdu = a.asdu.unwrap();
    assert_eq!(asdu.type_id, 100);
    assert_eq!((asdu.cot, asdu.common_address), (6, 1));
    assert_eq!(asdu.objects[0].ioa, 0);
    assert_eq!(asdu.objects[0].value, Value::Code(20));
}

#[test]
fn short_float_is_byte_exact() {
    let a = Apdu {
        apci: Apci::I { send: 1, recv: 1 },
        asdu: Some(asdu(
            TypeId::MMeNc1,
            20,
            vec![float_obj(1000, 1.5, 0, None)],
        )),
    };
    let mut out = Vec::new();
    encode_apdu(&a, &mut out).unwrap();
    let want = [
        0x68, 0x12, 0x02, 0x00, 0x02, 0x00, 0x0D, 0x01, 0x14, 0x00, 0x01, 0x00, 0xE8, 0x03, 0x00,
        0x00, 0x00, 0xC0, 0x3F, 0x00,
    ];
    assert_eq!(out, want);
    assert_eq!(decode_one(&out), a);
}

#[test]
fn cp56time2a_is_byte_exact_and_converts() {
    // 2024-02-29 13:45:30.250 UTC, a Thursday.
    let t = Cp56Time::from_unix_ms(1_709_214_330_250).unwrap();
    let mut out = Vec::new();
    t.encode(&mut out).unwrap();
    assert_eq!(out, [0x2A, 0x76, 0x2D, 0x0D, 0x9D, 0x02, 0x18]);
    assert_eq!(t.to_unix_ms(), 1_709_214_330_250);
    assert_eq!(Cp56Time::decode(&out, 0).unwrap(), t);
    assert!(
        Cp56Time::from_unix_ms(0).is_none(),
        "1970 has no two-digit year here"
    );
    // 30 February does not exist.
    let mut bad = out.clone();
    bad[4] = 30;
    let e = Cp56Time::decode(&bad, 10).unwrap_err();
    assert_eq!(
        (e.kind, e.field, e.offset),
        (Iec104ErrorKind::Time, "CP56Time2a.day", 14)
    );
}

#[test]
fn time_conversion_round_trips_over_the_century() {
    let mut ms: i64 = 946_684_800_000; // 2000-01-01
    while ms < 4_102_444_800_000 {
        let t = Cp56Time::from_unix_ms(ms).unwrap();
        assert_eq!(t.to_unix_ms(), ms);
        ms += 86_400_000 * 13 + 3_600_000 * 7 + 61_001;
    }
}

#[test]
fn set_point_select_and_quality_bits() {
    let time = Cp56Time::from_unix_ms(1_709_214_330_250);
    let mut o = float_obj(5, -12.25, 3, time);
    o.select = true;
    let a = asdu(TypeId::CSeTc1, 6, vec![o]);
    let mut out = Vec::new();
    encode_asdu(&a, &mut out).unwrap();
    // QOS: QL 3 with S/E set.
    assert_eq!(out[6 + 3 + 4], 0x83);
    assert_eq!(decode_asdu(&out).unwrap(), a);
    // Monitored value with IV: QDS 0x80.
    let m = asdu(
        TypeId::MMeTf1,
        3,
        vec![float_obj(7, 2.0, quality::IV, time)],
    );
    out.clear();
    encode_asdu(&m, &mut out).unwrap();
    assert_eq!(out[6 + 3 + 4], 0x80);
    assert_eq!(decode_asdu(&out).unwrap(), m);
}

#[test]
fn single_and_double_commands() {
    let sco = InfoObject {
        ioa: 300,
        value: Value::Bool(true),
        qualifier: 1,
        select: true,
        time: None,
    };
    let mut out = Vec::new();
    encode_asdu(&asdu(TypeId::CScNa1, 6, vec![sco]), &mut out).unwrap();
    assert_eq!(out[9], 0x80 | (1 << 2) | 1);
    let dco = InfoObject {
        value: Value::Double(2),
        qualifier: 0,
        select: false,
        ..sco
    };
    out.clear();
    encode_asdu(&asdu(TypeId::CDcNa1, 6, vec![dco]), &mut out).unwrap();
    assert_eq!(out[9], 0x02);
    assert_eq!(decode_asdu(&out).unwrap().objects[0], dco);
    // A double value of 4 does not fit two bits.
    let bad = InfoObject {
        value: Value::Double(4),
        ..dco
    };
    out.clear();
    assert!(encode_asdu(&asdu(TypeId::CDcNa1, 6, vec![bad]), &mut out).is_err());
    assert!(out.is_empty(), "a refused ASDU leaves nothing behind");
}

#[test]
fn sequence_of_elements_decodes_consecutive_addresses() {
    let objs: Vec<InfoObject> = (0..4)
        .map(|i| float_obj(100 + i, i as f32, 0, None))
        .collect();
    let mut a = asdu(TypeId::MMeNc1, 20, objs);
    a.sequence = true;
    let mut out = Vec::new();
    encode_asdu(&a, &mut out).unwrap();
    assert_eq!(out.len(), 6 + 3 + 4 * 5);
    assert_eq!(decode_asdu(&out).unwrap(), a);
}

#[test]
fn unknown_type_decodes_its_header_only() {
    let b = [
        0x68, 0x0E, 0, 0, 0, 0, 0x2F, 0x01, 0x06, 0x00, 0x01, 0x00, 9, 0, 0, 0,
    ];
    let a = decode_one(&b).asdu.unwrap();
    assert_eq!((a.type_id, a.count, a.cot), (47, 1, 6));
    assert!(a.objects.is_empty());
}

#[test]
fn malformed_frames_name_field_and_offset() {
    let cases: [(&[u8], Iec104ErrorKind, &str, usize); 8] = [
        (&[0x67, 4, 7, 0, 0, 0], Iec104ErrorKind::Apdu, "start", 0),
        (&[0x68, 3, 7, 0, 0], Iec104ErrorKind::Apdu, "length", 1),
        (&[0x68, 254], Iec104ErrorKind::Apdu, "length", 1),
        (
            &[0x68, 4, 0x0F, 0, 0, 0],
            Iec104ErrorKind::Apdu,
            "control",
            2,
        ),
        (
            &[0x68, 4, 0x07, 0, 1, 0],
            Iec104ErrorKind::Apdu,
            "control",
            4,
        ),
        (
            &[0x68, 5, 0x07, 0, 0, 0, 0],
            Iec104ErrorKind::Apdu,
            "length",
            1,
        ),
        (
            &[0x68, 6, 0, 0, 0, 0, 100, 1],
            Iec104ErrorKind::Asdu,
            "data unit identifier",
            1,
        ),
        (
            &[0x68, 0x0E, 0, 0, 0, 0, 100, 2, 6, 0, 1, 0, 0, 0, 0, 20],
            Iec104ErrorKind::Asdu,
            "VSQ",
            7,
        ),
    ];
    for (b, kind, field, offset) in cases {
        let e = decode_apdu(b).unwrap_err();
        assert_eq!(
            (e.kind, e.field, e.offset),
            (kind, field, offset),
            "{b:02x?}"
        );
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn partial_frames_ask_for_more() {
    let b = [0x68, 0x0E, 0, 0, 0, 0, 100, 1, 6, 0, 1, 0, 0, 0, 0, 20];
    for n in 0..b.len() {
        assert_eq!(decode_apdu(&b[..n]).unwrap(), None, "{n} bytes");
    }
}

#[test]
fn oversized_asdu_is_refused() {
    let objs: Vec<InfoObject> = (0..40).map(|i| float_obj(i, 0.0, 0, None)).collect();
    let mut out = Vec::new();
    let e = encode_asdu(&asdu(TypeId::MMeNc1, 20, objs), &mut out).unwrap_err();
    assert_eq!(e.field, "length");
    let fit: Vec<InfoObject> = (0..max_objects(TypeId::MMeNc1) as u32)
        .map(|i| float_obj(i, 0.0, 0, None))
        .collect();
    encode_asdu(&asdu(TypeId::MMeNc1, 20, fit), &mut out).unwrap();
    assert!(out.len() <= MAX_ASDU_LEN);
}

/// xorshift64*: deterministic random bytes, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn random_bytes_never_panic_and_errors_point_inside() {
    let mut rng = Rng(0x1EC1_0404);
    let mut buf = Vec::new();
    for i in 0..200_000u32 {
        buf.clear();
        let len = (rng.next() % 64) as usize;
        buf.extend((0..len).map(|_| rng.next() as u8));
        // Most inputs should get past the start and length checks to reach the ASDU.
        if i % 4 != 0 && len >= 2 {
            buf[0] = START;
            buf[1] = (len - 2).min(255) as u8;
            if i % 3 == 0 && len > 6 {
                buf[2] &= 0xFE;
                buf[4] &= 0xFE;
                buf[6] = TypeId::ALL[(rng.next() % 15) as usize] as u8;
            }
        }
        match decode_apdu(&buf) {
            Ok(Some((n, apdu))) => {
                assert!(n <= buf.len());
                let mut out = Vec::new();
                // Encoding what was decoded reproduces it (or refuses an unknown type).
                // (Compared through Debug: a decoded NaN is not equal to itself.)
                if encode_apdu(&apdu, &mut out).is_ok() {
                    assert_eq!(format!("{:?}", decode_one(&out)), format!("{apdu:?}"));
                }
            }
            Ok(None) => {}
            Err(e) => assert!(e.offset < buf.len().max(1), "{e:?} for {buf:02x?}"),
        }
    }
}

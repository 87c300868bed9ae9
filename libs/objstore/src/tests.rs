//! Codec and key file tests.

use std::io::Write;
use std::sync::Arc;

use crate::codec::{self, CodecError, Compression, Decoder, Encoder, SEGMENT};
use crate::keyring::{Key, KeyError, Keyring};

fn payload(n: usize) -> Vec<u8> {
    // Compressible but not constant: binlog-like repetition with a counter.
    (0..n)
        .map(|i| ((i / 7) % 251) as u8 ^ (i % 3) as u8)
        .collect()
}

fn ring(ids: &[(&str, u8)]) -> Arc<Keyring> {
    Arc::new(Keyring::from_keys(
        ids.iter()
            .map(|(id, b)| Key::new(Some(id.to_string()), [*b; 32]))
            .collect(),
    ))
}

#[test]
fn every_codec_round_trips_at_every_size_and_in_any_pieces() {
    let keys = ring(&[("k1", 1)]);
    for size in [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT + 17] {
        let data = payload(size);
        for (comp, enc) in [
            (Compression::None, false),
            (Compression::Zstd, false),
            (Compression::None, true),
            (Compression::Zstd, true),
        ] {
            let desc = codec::descriptor(comp, enc);
            let key = enc.then(|| keys.current()).flatten();
            let whole = codec::encode(&data, comp, key).unwrap();
            assert_eq!(
                codec::decode(&whole, desc, keys.clone()).unwrap(),
                data,
                "{desc} {size}"
            );
            // Pieces of odd sizes on both sides give the same plaintext.
            let mut e = Encoder::new(comp, key).unwrap();
            let mut stored = Vec::new();
            for piece in data.chunks(10_007) {
                e.write(piece, &mut stored).unwrap();
            }
            e.finish(&mut stored).unwrap();
            let mut d = Decoder::new(desc, keys.clone()).unwrap();
            let mut plain = Vec::new();
            for piece in stored.chunks(4_099) {
                d.write(piece, &mut plain).unwrap();
            }
            d.finish(&mut plain).unwrap();
            assert_eq!(plain, data, "{desc} {size} in pieces");
            if desc == "none" {
                assert_eq!(whole, data, "none is the payload itself");
            }
        }
    }
}

#[test]
fn compression_shrinks_and_encryption_hides_the_plaintext() {
    let mut data = payload(200_000);
    data.extend_from_slice(b"a secret string on the primary");
    let keys = ring(&[("k1", 1)]);
    let z = codec::encode(&data, Compression::Zstd, None).unwrap();
    assert!(z.len() * 4 < data.len(), "{} of {}", z.len(), data.len());
    let e = codec::encode(&data, Compression::None, keys.current()).unwrap();
    assert!(!e
        .windows(30)
        .any(|w| w == b"a secret string on the primary"));
    assert!(e.starts_with(codec::ENC_MAGIC));
    // Two encryptions of the same payload differ (a salt, so a key, per object).
    let e2 = codec::encode(&data, Compression::None, keys.current()).unwrap();
    assert_ne!(e, e2);
    // The key id is readable from the header without the key.
    assert_eq!(codec::key_id_of(&e).as_deref(), Some("k1"));
    assert_eq!(codec::key_id_of(&z), None);
    assert_eq!(codec::key_id_of(&e[..10]), None, "a header cut short");
}

#[test]
fn wrong_missing_or_rotated_keys_and_damage_are_named_errors() {
    let data = payload(3 * SEGMENT);
    let old = ring(&[("old", 1)]);
    let sealed = codec::encode(&data, Compression::Zstd, old.current()).unwrap();
    // Rotated: the new key seals, the old one still opens old objects.
    let rotated = ring(&[("new", 2), ("old", 1)]);
    assert_eq!(rotated.current().unwrap().id(), "new");
    assert_eq!(
        codec::decode(&sealed, "zstd+aes-256-gcm", rotated.clone()).unwrap(),
        data
    );
    // Missing key id.
    let other = ring(&[("new", 2)]);
    match codec::decode(&sealed, "zstd+aes-256-gcm", other) {
        Err(CodecError::MissingKey { key_id, .. }) => assert_eq!(key_id, "old"),
        r => panic!("{:?}", r.map(|v| v.len())),
    }
    // No key file at all.
    let r = codec::decode(&sealed, "zstd+aes-256-gcm", Arc::new(Keyring::none()));
    assert!(matches!(r, Err(CodecError::MissingKey { .. })));
    // Same id, other bytes: the tag check fails, nothing is returned.
    let impostor = ring(&[("old", 9)]);
    match codec::decode(&sealed, "zstd+aes-256-gcm", impostor) {
        Err(e @ CodecError::Decrypt { .. }) => assert!(e.to_string().contains("\"old\"")),
        r => panic!("{:?}", r.map(|v| v.len())),
    }
    // One flipped byte in any segment, or a cut-off object, fails.
    for at in [60, sealed.len() / 2, sealed.len() - 1] {
        let mut bad = sealed.clone();
        bad[at] ^= 0x40;
        assert!(
            codec::decode(&bad, "zstd+aes-256-gcm", old.clone()).is_err(),
            "flip at {at}"
        );
    }
    for keep in [5, 40, sealed.len() - 16, SEGMENT + 60] {
        let cut = &sealed[..keep.min(sealed.len() - 1)];
        assert!(
            codec::decode(cut, "zstd+aes-256-gcm", old.clone()).is_err(),
            "cut at {keep}"
        );
    }
    assert!(matches!(
        codec::decode(&sealed, "gzip", old),
        Err(CodecError::UnknownCodec(_))
    ));
}

#[test]
fn key_files_parse_rotate_and_refuse_bad_modes_and_lines() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive.key");
    let k1 = "11".repeat(32);
    let k2 = "22".repeat(32);
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "# archive keys\n\n2026-12 {k2}\n{k1}").unwrap();
    drop(f);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = Keyring::load(&path).unwrap();
    assert_eq!(r.current().unwrap().id(), "2026-12");
    let derived = Key::new(None, [0x11; 32]);
    assert_eq!(derived.id().len(), 16);
    assert!(
        r.get(derived.id()).is_some(),
        "the id of a key alone is derived from it"
    );
    assert!(
        !format!("{r:?}").contains(&k1[..16]),
        "no key bytes in Debug"
    );

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(Keyring::load(&path), Err(KeyError::Mode { .. })));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    for bad in [
        "abcd",
        "id with spaces 00",
        &format!("bad/id {k1}"),
        "# only a comment",
    ] {
        std::fs::write(&path, bad).unwrap();
        let e = Keyring::load(&path).unwrap_err();
        assert!(!e.to_string().contains(&k1), "{e}");
        assert!(
            matches!(e, KeyError::Syntax { .. } | KeyError::Empty { .. }),
            "{bad}: {e}"
        );
    }
}

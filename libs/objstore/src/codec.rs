//! How an object's bytes are encoded at rest: compressed (zstd), then encrypted
//! (AES-256-GCM in the STREAM construction), or either, or neither. One format for
//! binlog objects and base-backup objects alike.
//!
//! # Layout
//!
//! The codec of an object is recorded beside it (catalog row, manifest, object metadata)
//! as a descriptor: `none`, `zstd`, `aes-256-gcm` or `zstd+aes-256-gcm`.
//!
//! - `none`: the payload itself (a binlog object is then the primary's file).
//! - `zstd`: one zstd stream of the payload (`zstd -d` decodes it).
//! - `...aes-256-gcm`: a header, then segments:
//!
//! ```text
//! "BSRVENC1"            8 bytes, magic
//! alg                   u8, 1 = AES-256-GCM
//! key id length         u8, 1..=64
//! key id                ASCII [A-Za-z0-9._-]: which key of the key file sealed it
//! salt                  32 random bytes
//! segment*              each 64 KiB of plaintext (the zstd stream when compressed)
//!                       sealed into 64 KiB + 16 bytes of tag; the last segment
//!                       (0..=64 KiB) sealed with STREAM's last-segment flag
//! ```
//!
//! Every object is sealed with its own key: HKDF-SHA256 of the key file's key with the
//! salt (info `binlog-server object v1`), so the STREAM nonces (7 zero bytes, a 32-bit
//! big-endian segment counter, the last flag: `aead::stream::StreamBE32`) never repeat
//! under one key however many objects there are. The header is the associated data of
//! every segment. A wrong key, a damaged byte or a cut-off object fails the tag check:
//! [`CodecError::Decrypt`] names the key id, never garbage. Source: Hoang, Reyhanitabar,
//! Rogaway, Vizár, "Online Authenticated-Encryption and its Nonce-Reuse
//! Misuse-Resistance" (2015), as in age and Tink's streaming AEAD.
//!
//! Nothing here is durable by itself: callers upload the encoded bytes and write the
//! record that points at them afterwards.

use std::io::Write;

use aes_gcm::aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::aead::{generic_array::GenericArray, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use sha2::Sha256;

use crate::keyring::{Key, Keyring};

/// Magic of an encrypted object.
pub const ENC_MAGIC: &[u8; 8] = b"BSRVENC1";
/// Algorithm byte for AES-256-GCM.
const ALG_AES_256_GCM: u8 = 1;
/// Plaintext bytes per sealed segment.
pub const SEGMENT: usize = 64 * 1024;
/// AES-GCM tag length, bytes.
const TAG: usize = 16;
/// Salt length, bytes.
const SALT: usize = 32;
/// HKDF info of the per-object key.
const HKDF_INFO: &[u8] = b"binlog-server object v1";
/// The zstd level of new objects (zstd's default).
const ZSTD_LEVEL: i32 = 3;

/// The key id in the header of an encrypted object's first bytes `stored`; `None` for
/// an object that is not encrypted (no `BSRVENC1` magic) or a header cut short.
pub fn key_id_of(stored: &[u8]) -> Option<String> {
    if stored.get(..8)? != ENC_MAGIC {
        return None;
    }
    let id_len = usize::from(*stored.get(9)?);
    let id = stored.get(10..10 + id_len)?;
    Some(String::from_utf8_lossy(id).into_owned())
}

/// Errors of encoding or decoding an object.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The descriptor names no known codec.
    #[error("unknown object codec {0:?} (known: none, zstd, aes-256-gcm, zstd+aes-256-gcm)")]
    UnknownCodec(String),
    /// The object is encrypted with a key the key file does not hold (or no key file is
    /// configured). Stop: configure the key file that holds this key id.
    #[error("object is encrypted with key {key_id:?}, which {where_}")]
    MissingKey {
        /// Key id from the object's header.
        key_id: String,
        /// "the key file does not hold" / "is not configured".
        where_: &'static str,
    },
    /// The tag check failed: a wrong key (same id, other bytes), a damaged or cut-off
    /// object. Stop: the object cannot be trusted; read another copy.
    #[error("object does not decrypt with key {key_id:?}: wrong key, or the object is damaged or cut off")]
    Decrypt {
        /// Key id used.
        key_id: String,
    },
    /// The encrypted header is malformed (not this format, or cut off).
    #[error("object is not an encrypted binlog-server object: {0}")]
    BadHeader(String),
    /// zstd failed (damaged compressed stream).
    #[error("zstd: {0}")]
    Zstd(#[source] std::io::Error),
}

/// Compression of new objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Stored as is.
    None,
    /// zstd at level 3.
    Zstd,
}

/// A codec descriptor parsed: (compressed, encrypted).
fn parse_descriptor(desc: &str) -> Result<(bool, bool), CodecError> {
    match desc {
        "none" => Ok((false, false)),
        "zstd" => Ok((true, false)),
        "aes-256-gcm" => Ok((false, true)),
        "zstd+aes-256-gcm" => Ok((true, true)),
        _ => Err(CodecError::UnknownCodec(desc.to_string())),
    }
}

/// The descriptor of new objects with `compression`, encrypted when `encrypted`.
pub fn descriptor(compression: Compression, encrypted: bool) -> &'static str {
    match (compression, encrypted) {
        (Compression::None, false) => "none",
        (Compression::Zstd, false) => "zstd",
        (Compression::None, true) => "aes-256-gcm",
        (Compression::Zstd, true) => "zstd+aes-256-gcm",
    }
}

/// The per-object AES-256-GCM key: HKDF-SHA256(key, salt).
fn object_cipher(key: &Key, salt: &[u8]) -> Aes256Gcm {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(salt), key.secret());
    let mut okm = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
    let _ = hk.expand(HKDF_INFO, &mut okm);
    Aes256Gcm::new(GenericArray::from_slice(&okm))
}

/// The zstd decompression stage, writing into a Vec drained after each call.
type Unzstd = zstd::stream::write::Decoder<'static, Vec<u8>>;

/// Encodes one object, push-style: [`Encoder::write`] the payload in pieces of any size,
/// then [`Encoder::finish`]; each call appends encoded bytes to `out`. Memory: one
/// segment plus zstd's window.
pub struct Encoder {
    zstd: Option<zstd::stream::write::Encoder<'static, Vec<u8>>>,
    seal: Option<Sealer>,
    /// Payload bytes taken.
    pub plain_bytes: u64,
}

/// The encryption stage of an [`Encoder`].
struct Sealer {
    enc: EncryptorBE32<Aes256Gcm>,
    aad: Vec<u8>,
    buf: Vec<u8>,
    header_sent: bool,
}

impl Sealer {
    fn push(&mut self, data: &[u8], out: &mut Vec<u8>) {
        if !self.header_sent {
            out.extend_from_slice(&self.aad);
            self.header_sent = true;
        }
        self.buf.extend_from_slice(data);
        // Seal full segments while more follows (the last one is sealed by finish).
        while self.buf.len() > SEGMENT {
            let rest = self.buf.split_off(SEGMENT);
            let seg = std::mem::replace(&mut self.buf, rest);
            // Encrypting cannot fail for a 64 KiB segment (only past 2^32 segments).
            if let Ok(c) = self.enc.encrypt_next(Payload {
                msg: &seg,
                aad: &self.aad,
            }) {
                out.extend_from_slice(&c);
            }
        }
    }

    fn finish(mut self, out: &mut Vec<u8>) {
        if !self.header_sent {
            out.extend_from_slice(&self.aad);
        }
        let last = std::mem::take(&mut self.buf);
        if let Ok(c) = self.enc.encrypt_last(Payload {
            msg: &last,
            aad: &self.aad,
        }) {
            out.extend_from_slice(&c);
        }
    }
}

impl Encoder {
    /// An encoder compressing with `compression` and, when `key` is given, encrypting
    /// with it (a fresh random salt per object).
    ///
    /// # Errors
    ///
    /// [`CodecError::Zstd`] when zstd cannot start; the system's random source failing
    /// is reported the same way (`std::io::Error` of kind Other).
    pub fn new(compression: Compression, key: Option<&Key>) -> Result<Encoder, CodecError> {
        let zstd = match compression {
            Compression::None => None,
            Compression::Zstd => Some(
                zstd::stream::write::Encoder::new(Vec::new(), ZSTD_LEVEL)
                    .map_err(CodecError::Zstd)?,
            ),
        };
        let seal = match key {
            None => None,
            Some(k) => {
                let mut salt = [0u8; SALT];
                getrandom::fill(&mut salt).map_err(|e| {
                    CodecError::Zstd(std::io::Error::other(format!("random salt: {e}")))
                })?;
                let mut aad = Vec::with_capacity(8 + 2 + k.id().len() + SALT);
                aad.extend_from_slice(ENC_MAGIC);
                aad.push(ALG_AES_256_GCM);
                aad.push(k.id().len() as u8);
                aad.extend_from_slice(k.id().as_bytes());
                aad.extend_from_slice(&salt);
                let nonce = [0u8; 7];
                Some(Sealer {
                    enc: EncryptorBE32::from_aead(
                        object_cipher(k, &salt),
                        GenericArray::from_slice(&nonce),
                    ),
                    aad,
                    buf: Vec::with_capacity(2 * SEGMENT),
                    header_sent: false,
                })
            }
        };
        Ok(Encoder {
            zstd,
            seal,
            plain_bytes: 0,
        })
    }

    /// Takes `data` (the next payload bytes); appends what is ready to `out`.
    ///
    /// # Errors
    ///
    /// [`CodecError::Zstd`].
    pub fn write(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        self.plain_bytes += data.len() as u64;
        match &mut self.zstd {
            Some(z) => {
                z.write_all(data).map_err(CodecError::Zstd)?;
                let c = std::mem::take(z.get_mut());
                self.sealed(&c, out);
            }
            None => self.sealed(data, out),
        }
        Ok(())
    }

    fn sealed(&mut self, data: &[u8], out: &mut Vec<u8>) {
        match &mut self.seal {
            Some(s) => s.push(data, out),
            None => out.extend_from_slice(data),
        }
    }

    /// Ends the object: the rest of the zstd stream, the last sealed segment.
    ///
    /// # Errors
    ///
    /// [`CodecError::Zstd`].
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        if let Some(z) = self.zstd.take() {
            let c = z.finish().map_err(CodecError::Zstd)?;
            self.sealed(&c, out);
        }
        if let Some(s) = self.seal.take() {
            s.finish(out);
        }
        Ok(())
    }
}

/// `payload` encoded whole (small objects: chunks, manifests).
///
/// # Errors
///
/// As [`Encoder`].
pub fn encode(
    payload: &[u8],
    compression: Compression,
    key: Option<&Key>,
) -> Result<Vec<u8>, CodecError> {
    let mut e = Encoder::new(compression, key)?;
    let mut out = Vec::with_capacity(payload.len() / 2 + 128);
    e.write(payload, &mut out)?;
    e.finish(&mut out)?;
    Ok(out)
}

/// Decodes one object of a given descriptor, push-style, like [`Encoder`]: feed the
/// stored bytes with [`Decoder::write`], then [`Decoder::finish`]; plaintext is appended
/// to `out`. Nothing is trustworthy until `finish` returned Ok (a cut-off object is only
/// detected there).
pub struct Decoder {
    open: Option<Opener>,
    zstd: Option<Unzstd>,
}

/// The decryption stage of a [`Decoder`].
struct Opener {
    keyring: std::sync::Arc<Keyring>,
    /// Header bytes until it is complete, then segments.
    buf: Vec<u8>,
    state: Option<(DecryptorBE32<Aes256Gcm>, Vec<u8>, String)>,
}

impl Opener {
    /// Parses the header once `buf` holds it.
    fn header(&mut self) -> Result<bool, CodecError> {
        if self.state.is_some() {
            return Ok(true);
        }
        if self.buf.len() < 10 {
            return Ok(false);
        }
        if &self.buf[..8] != ENC_MAGIC {
            return Err(CodecError::BadHeader("no BSRVENC1 magic".into()));
        }
        if self.buf[8] != ALG_AES_256_GCM {
            return Err(CodecError::BadHeader(format!(
                "unknown algorithm {}",
                self.buf[8]
            )));
        }
        let id_len = usize::from(self.buf[9]);
        let hlen = 10 + id_len + SALT;
        if self.buf.len() < hlen {
            return Ok(false);
        }
        let id = String::from_utf8_lossy(&self.buf[10..10 + id_len]).into_owned();
        let key = match self.keyring.get(&id) {
            Some(k) => k,
            None => {
                return Err(CodecError::MissingKey {
                    key_id: id,
                    where_: if self.keyring.is_empty() {
                        "is not configured (no encryption_key_file)"
                    } else {
                        "the key file does not hold"
                    },
                })
            }
        };
        let aad = self.buf[..hlen].to_vec();
        let salt = &self.buf[10 + id_len..hlen];
        let nonce = [0u8; 7];
        let dec =
            DecryptorBE32::from_aead(object_cipher(&key, salt), GenericArray::from_slice(&nonce));
        self.buf.drain(..hlen);
        self.state = Some((dec, aad, id));
        Ok(true)
    }

    fn push(&mut self, data: &[u8], plain: &mut Vec<u8>) -> Result<(), CodecError> {
        self.buf.extend_from_slice(data);
        if !self.header()? {
            return Ok(());
        }
        let Some((dec, aad, id)) = self.state.as_mut() else {
            return Ok(());
        };
        while self.buf.len() > SEGMENT + TAG {
            let rest = self.buf.split_off(SEGMENT + TAG);
            let seg = std::mem::replace(&mut self.buf, rest);
            let p = dec
                .decrypt_next(Payload {
                    msg: &seg,
                    aad: aad.as_slice(),
                })
                .map_err(|_| CodecError::Decrypt { key_id: id.clone() })?;
            plain.extend_from_slice(&p);
        }
        Ok(())
    }

    fn finish(mut self, plain: &mut Vec<u8>) -> Result<(), CodecError> {
        if !self.header()? {
            return Err(CodecError::BadHeader("cut off inside the header".into()));
        }
        let Some((dec, aad, id)) = self.state.take() else {
            return Err(CodecError::BadHeader("cut off inside the header".into()));
        };
        let p = dec
            .decrypt_last(Payload {
                msg: &self.buf,
                aad: &aad,
            })
            .map_err(|_| CodecError::Decrypt { key_id: id })?;
        plain.extend_from_slice(&p);
        Ok(())
    }
}

impl Decoder {
    /// A decoder for objects of descriptor `desc`, finding keys in `keyring`.
    ///
    /// # Errors
    ///
    /// [`CodecError::UnknownCodec`], [`CodecError::Zstd`].
    pub fn new(desc: &str, keyring: std::sync::Arc<Keyring>) -> Result<Decoder, CodecError> {
        let (compressed, encrypted) = parse_descriptor(desc)?;
        let zstd = if compressed {
            Some(zstd::stream::write::Decoder::new(Vec::new()).map_err(CodecError::Zstd)?)
        } else {
            None
        };
        Ok(Decoder {
            open: encrypted.then(|| Opener {
                keyring,
                buf: Vec::new(),
                state: None,
            }),
            zstd,
        })
    }

    /// Takes the next stored bytes; appends the plaintext that is ready to `out`.
    ///
    /// # Errors
    ///
    /// [`CodecError`] for a missing or wrong key, a damaged object, bad zstd data.
    pub fn write(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        match &mut self.open {
            Some(o) => {
                let mut p = Vec::new();
                o.push(data, &mut p)?;
                self.unzstd(&p, out)
            }
            None => self.unzstd(data, out),
        }
    }

    fn unzstd(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), CodecError> {
        match &mut self.zstd {
            Some(d) => {
                d.write_all(data).map_err(CodecError::Zstd)?;
                out.append(d.get_mut());
            }
            None => out.extend_from_slice(data),
        }
        Ok(())
    }

    /// Ends the object: checks the last segment's tag (a cut-off encrypted object fails
    /// here). A cut-off zstd stream only gives a short plaintext: callers check the
    /// recorded size and SHA-256 of the plaintext, which catches it.
    ///
    /// # Errors
    ///
    /// As [`Decoder::write`].
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        if let Some(o) = self.open.take() {
            let mut p = Vec::new();
            o.finish(&mut p)?;
            self.unzstd(&p, out)?;
        }
        if let Some(mut d) = self.zstd.take() {
            d.flush().map_err(CodecError::Zstd)?;
            out.append(d.get_mut());
        }
        Ok(())
    }
}

/// `stored` decoded whole (small objects).
///
/// # Errors
///
/// As [`Decoder`].
pub fn decode(
    stored: &[u8],
    desc: &str,
    keyring: std::sync::Arc<Keyring>,
) -> Result<Vec<u8>, CodecError> {
    let mut d = Decoder::new(desc, keyring)?;
    let mut out = Vec::with_capacity(stored.len() * 2);
    d.write(stored, &mut out)?;
    d.finish(&mut out)?;
    Ok(out)
}

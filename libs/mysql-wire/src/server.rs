//! The packets a server writes, and the client packets a server parses: what the fake
//! primary needs to look like a MySQL/MariaDB primary to a replica or a binlog client.
//!
//! Sources: MySQL Internals "Connection Phase Packets" (HandshakeV10,
//! HandshakeResponse41, AuthSwitchRequest), "Generic Response Packets" (OK, ERR, EOF)
//! and "Text Resultset"; MariaDB KB "Connection" and "Result Set Packets". Every builder
//! returns a payload (no 4-byte header) except [`result_set`], which frames a whole
//! result set into `out` because its packets share one sequence.

use crate::packet::{caps, frame, put_lenenc_int, PacketError, Reader};

/// Capabilities the fake primary announces: protocol 4.1, secure connection,
/// plugin auth, multi-results, transactions, long password/flag, CONNECT_WITH_DB and
/// FOUND_ROWS. No TLS, no compression.
pub const SERVER_CAPABILITIES: u32 = caps::LONG_PASSWORD
    | caps::LONG_FLAG
    | caps::PROTOCOL_41
    | caps::TRANSACTIONS
    | caps::SECURE_CONNECTION
    | caps::MULTI_RESULTS
    | caps::PLUGIN_AUTH
    | 0x0000_0008 // CONNECT_WITH_DB
    | 0x0000_0002; // FOUND_ROWS

/// The authentication plugin the fake primary asks for.
pub const NATIVE_PASSWORD: &str = "mysql_native_password";

/// Character set id sent in the greeting and in column definitions (utf8_general_ci).
const CHARSET_UTF8_GENERAL_CI: u8 = 33;

/// HandshakeV10 payload: protocol 10, `version` (NUL-terminated), connection id, the
/// 20-byte `nonce` in its two parts, `capabilities`, charset 33, status
/// SERVER_STATUS_AUTOCOMMIT, and [`NATIVE_PASSWORD`] as the auth plugin.
pub fn handshake_v10(version: &str, conn_id: u32, nonce: &[u8; 20], capabilities: u32) -> Vec<u8> {
    let mut hs = vec![10u8];
    hs.extend_from_slice(version.as_bytes());
    hs.push(0);
    hs.extend_from_slice(&conn_id.to_le_bytes());
    hs.extend_from_slice(&nonce[..8]);
    hs.push(0);
    hs.extend_from_slice(&(capabilities as u16).to_le_bytes());
    hs.push(CHARSET_UTF8_GENERAL_CI);
    hs.extend_from_slice(&2u16.to_le_bytes());
    hs.extend_from_slice(&((capabilities >> 16) as u16).to_le_bytes());
    hs.push(21);
    hs.extend_from_slice(&[0u8; 10]);
    hs.extend_from_slice(&nonce[8..]);
    hs.push(0);
    hs.extend_from_slice(NATIVE_PASSWORD.as_bytes());
    hs.push(0);
    hs
}

/// AuthSwitchRequest payload: 0xFE, the plugin name, the nonce, NUL.
pub fn auth_switch_request(plugin: &str, nonce: &[u8; 20]) -> Vec<u8> {
    let mut sw = vec![0xFE];
    sw.extend_from_slice(plugin.as_bytes());
    sw.push(0);
    sw.extend_from_slice(nonce);
    sw.push(0);
    sw
}

/// What a server needs of a HandshakeResponse41.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse {
    /// User name (lossily decoded).
    pub user: String,
    /// The auth response (the scrambled password for mysql_native_password).
    pub auth: Vec<u8>,
    /// The client's auth plugin, when it sent one.
    pub plugin: Option<String>,
}

impl HandshakeResponse {
    /// Parses a HandshakeResponse41 payload.
    ///
    /// # Errors
    ///
    /// [`PacketError`] for a client without protocol 4.1 or a truncated packet: the
    /// server ends the connection.
    pub fn parse(p: &[u8]) -> Result<HandshakeResponse, PacketError> {
        let mut r = Reader::new(p, "handshake response");
        let cflags = r.u32()?;
        if cflags & caps::PROTOCOL_41 == 0 {
            return Err(PacketError::Malformed {
                what: "handshake response",
                detail: "client does not speak protocol 4.1".into(),
            });
        }
        r.u32()?; // max packet
        r.u8()?; // charset
        r.take(23)?;
        let user = String::from_utf8_lossy(r.nul_str()?).into_owned();
        let auth = if cflags & caps::PLUGIN_AUTH_LENENC_DATA != 0 {
            r.lenenc_bytes()?.unwrap_or_default().to_vec()
        } else if cflags & caps::SECURE_CONNECTION != 0 {
            let n = r.u8()?;
            r.take(usize::from(n))?.to_vec()
        } else {
            r.nul_str()?.to_vec()
        };
        if cflags & 0x8 != 0 && r.remaining() > 0 {
            r.nul_str()?; // database
        }
        let plugin = if cflags & caps::PLUGIN_AUTH != 0 && r.remaining() > 0 {
            Some(String::from_utf8_lossy(r.nul_str()?).into_owned())
        } else {
            None
        };
        Ok(HandshakeResponse { user, auth, plugin })
    }
}

/// True when `auth` is `password` scrambled with `nonce` by mysql_native_password
/// (SHA1(password) XOR SHA1(nonce + SHA1(SHA1(password)))).
pub fn native_password_matches(nonce: &[u8; 20], password: &str, auth: &[u8]) -> bool {
    let expected = mysql_common::scramble::scramble_native(nonce, password.as_bytes())
        .map(|s| s.to_vec())
        .unwrap_or_default();
    expected == auth
}

/// OK payload: no rows affected, no insert id, SERVER_STATUS_AUTOCOMMIT, no warnings.
pub fn ok_packet() -> [u8; 7] {
    [0x00, 0, 0, 0x02, 0, 0, 0]
}

/// ERR payload with SQL state HY000.
pub fn err_packet(code: u16, msg: &str) -> Vec<u8> {
    let mut p = vec![0xFF];
    p.extend_from_slice(&code.to_le_bytes());
    p.extend_from_slice(b"#HY000");
    p.extend_from_slice(msg.as_bytes());
    p
}

/// EOF payload (no warnings, SERVER_STATUS_AUTOCOMMIT).
pub fn eof_packet() -> [u8; 5] {
    [0xFE, 0, 0, 0x02, 0]
}

/// A length-encoded string.
pub fn put_lenenc_str(out: &mut Vec<u8>, s: &[u8]) {
    put_lenenc_int(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Frames a text result set into `out` with sequence ids from `seq`: the column count,
/// one VAR_STRING utf8 column definition per name, EOF, the rows (`None` is SQL NULL),
/// EOF.
pub fn result_set(out: &mut Vec<u8>, seq: &mut u8, cols: &[&str], rows: &[Vec<Option<String>>]) {
    let mut p = Vec::new();
    put_lenenc_int(&mut p, cols.len() as u64);
    frame(out, seq, &p);
    for c in cols {
        let mut p = Vec::new();
        for s in ["def", "", "", ""] {
            put_lenenc_str(&mut p, s.as_bytes());
        }
        put_lenenc_str(&mut p, c.as_bytes());
        put_lenenc_str(&mut p, c.as_bytes());
        p.push(0x0c);
        p.extend_from_slice(&u16::from(CHARSET_UTF8_GENERAL_CI).to_le_bytes());
        p.extend_from_slice(&1024u32.to_le_bytes());
        p.push(0xFD); // VAR_STRING
        p.extend_from_slice(&0u16.to_le_bytes());
        p.push(0);
        p.extend_from_slice(&[0, 0]);
        frame(out, seq, &p);
    }
    frame(out, seq, &eof_packet());
    for row in rows {
        let mut p = Vec::new();
        for v in row {
            match v {
                Some(s) => put_lenenc_str(&mut p, s.as_bytes()),
                None => p.push(0xFB),
            }
        }
        frame(out, seq, &p);
    }
    frame(out, seq, &eof_packet());
}

/// A 20-byte auth nonce of printable, non-NUL bytes (some clients treat NUL as the end)
/// made from 20 random bytes `raw` (the caller's random source: the service's
/// `node::random`).
pub fn scramble(raw: [u8; 20]) -> [u8; 20] {
    raw.map(|b| 0x21 + (b % 0x5e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_response_parses_and_short_ones_fail() {
        let mut p = Vec::new();
        p.extend_from_slice(
            &(caps::PROTOCOL_41 | caps::SECURE_CONNECTION | caps::PLUGIN_AUTH).to_le_bytes(),
        );
        p.extend_from_slice(&0u32.to_le_bytes());
        p.push(33);
        p.extend_from_slice(&[0; 23]);
        p.extend_from_slice(b"repl\0");
        p.push(20);
        p.extend_from_slice(&[9; 20]);
        p.extend_from_slice(b"mysql_native_password\0");
        let HandshakeResponse {
            user: u,
            auth: t,
            plugin: pl,
        } = HandshakeResponse::parse(&p).unwrap();
        assert_eq!(
            (u.as_str(), t.len(), pl.as_deref()),
            ("repl", 20, Some("mysql_native_password"))
        );
        for n in 0..40 {
            assert!(HandshakeResponse::parse(&p[..n]).is_err());
        }
    }

    #[test]
    fn native_password_round_trip() {
        let nonce = [7u8; 20];
        let good = mysql_common::scramble::scramble_native(&nonce, b"pw").unwrap();
        assert!(native_password_matches(&nonce, "pw", &good));
        assert!(!native_password_matches(&nonce, "other", &good));
        assert!(!native_password_matches(&nonce, "pw", &[]));
    }
}

//! MySQL client/server protocol framing and the few packet shapes the fake replica needs.
//!
//! Layout (MySQL Internals: "MySQL Packets"; MariaDB KB: "0 - Packet"): every packet is a
//! 3-byte little-endian payload length, a 1-byte sequence id, then the payload. A payload
//! of exactly 0xFFFFFF bytes continues in the next packet; the logical payload is the
//! concatenation. This module is pure: it parses and builds byte slices and never panics
//! on input (every length is checked against the bytes present).

use thiserror::Error;

/// Largest single physical packet payload (16 MiB - 1 bytes).
pub const MAX_PHYSICAL_PAYLOAD: usize = 0xFF_FFFF;

/// Appends `payload` to `out` as one logical packet: physical packets of at most
/// [`MAX_PHYSICAL_PAYLOAD`] bytes, each with a 3-byte little-endian length and the
/// sequence id `seq` (incremented per physical packet). A payload that is a multiple of
/// 16 MiB (or empty) ends with an empty packet, as the protocol requires
/// (MySQL Internals: "Sending More Than 16Mb").
pub fn frame(out: &mut Vec<u8>, seq: &mut u8, payload: &[u8]) {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_PHYSICAL_PAYLOAD);
        let l = n as u32;
        out.extend_from_slice(&l.to_le_bytes()[..3]);
        out.push(*seq);
        *seq = seq.wrapping_add(1);
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        if n < MAX_PHYSICAL_PAYLOAD {
            break;
        }
    }
}

/// Largest logical payload we accept (bytes): a binlog event is at most 1 GiB
/// (`max_allowed_packet` caps it on the server), plus the 1-byte OK marker and some slack.
pub const MAX_LOGICAL_PAYLOAD: usize = (1 << 30) + 64 * 1024;

/// Protocol decoding error: the peer sent something we cannot accept.
#[derive(Debug, Error)]
pub enum PacketError {
    /// A packet was shorter than its fixed fields.
    #[error("malformed {what} packet: {detail}")]
    Malformed {
        /// Which packet (e.g. "handshake", "OK", "column definition").
        what: &'static str,
        /// What was wrong.
        detail: String,
    },
}

fn malformed(what: &'static str, detail: impl Into<String>) -> PacketError {
    PacketError::Malformed {
        what,
        detail: detail.into(),
    }
}

/// A bounds-checked little-endian reader over a payload.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Starts reading `buf`; `what` names the packet in error messages.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Takes `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], PacketError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                malformed(
                    self.what,
                    format!(
                        "needs {n} bytes at offset {}, has {}",
                        self.pos,
                        self.remaining()
                    ),
                )
            })?;
        let s = self.buf.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(s)
    }

    /// Takes everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = self.buf.get(self.pos..).unwrap_or_default();
        self.pos = self.buf.len();
        s
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, PacketError> {
        Ok(self.take(1)?.first().copied().unwrap_or(0))
    }

    /// Reads a little-endian u16.
    pub fn u16(&mut self) -> Result<u16, PacketError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// Reads a little-endian u24.
    pub fn u24(&mut self) -> Result<u32, PacketError> {
        let b = self.take(3)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], 0]))
    }

    /// Reads a little-endian u32.
    pub fn u32(&mut self) -> Result<u32, PacketError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a little-endian u64.
    pub fn u64(&mut self) -> Result<u64, PacketError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// Reads a NUL-terminated string (the NUL is consumed, not returned).
    pub fn nul_str(&mut self) -> Result<&'a [u8], PacketError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let n = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| malformed(self.what, "string without NUL terminator"))?;
        let s = self.take(n)?;
        self.take(1)?;
        Ok(s)
    }

    /// Reads a length-encoded integer; `Ok(None)` for the NULL marker 0xFB.
    pub fn lenenc_int(&mut self) -> Result<Option<u64>, PacketError> {
        match self.u8()? {
            n @ 0..=0xFA => Ok(Some(u64::from(n))),
            0xFB => Ok(None),
            0xFC => Ok(Some(u64::from(self.u16()?))),
            0xFD => Ok(Some(u64::from(self.u24()?))),
            0xFE => Ok(Some(self.u64()?)),
            0xFF => Err(malformed(self.what, "0xFF is not a length-encoded integer")),
        }
    }

    /// Reads a length-encoded string; `Ok(None)` for SQL NULL.
    pub fn lenenc_bytes(&mut self) -> Result<Option<&'a [u8]>, PacketError> {
        match self.lenenc_int()? {
            None => Ok(None),
            Some(n) => {
                let n = usize::try_from(n)
                    .map_err(|_| malformed(self.what, "length does not fit in memory"))?;
                Ok(Some(self.take(n)?))
            }
        }
    }
}

/// Appends a length-encoded integer.
pub fn put_lenenc_int(out: &mut Vec<u8>, n: u64) {
    if n < 0xFB {
        out.push(n as u8);
    } else if n <= 0xFFFF {
        out.push(0xFC);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else if n <= 0xFF_FFFF {
        out.push(0xFD);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
    } else {
        out.push(0xFE);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

/// Capability flags (MySQL Internals: "Capability Flags").
pub mod caps {
    /// CLIENT_LONG_PASSWORD.
    pub const LONG_PASSWORD: u32 = 0x0000_0001;
    /// CLIENT_LONG_FLAG.
    pub const LONG_FLAG: u32 = 0x0000_0004;
    /// CLIENT_PROTOCOL_41.
    pub const PROTOCOL_41: u32 = 0x0000_0200;
    /// CLIENT_SSL.
    pub const SSL: u32 = 0x0000_0800;
    /// CLIENT_TRANSACTIONS.
    pub const TRANSACTIONS: u32 = 0x0000_2000;
    /// CLIENT_SECURE_CONNECTION (4.1 auth).
    pub const SECURE_CONNECTION: u32 = 0x0000_8000;
    /// CLIENT_MULTI_RESULTS.
    pub const MULTI_RESULTS: u32 = 0x0002_0000;
    /// CLIENT_PLUGIN_AUTH.
    pub const PLUGIN_AUTH: u32 = 0x0008_0000;
    /// CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA.
    pub const PLUGIN_AUTH_LENENC_DATA: u32 = 0x0020_0000;
}

/// The server's initial handshake (protocol version 10).
#[derive(Debug, Clone)]
pub struct Handshake {
    /// Server version as sent, with MariaDB's "5.5.5-" replication prefix removed.
    pub server_version: String,
    /// Connection (thread) id.
    pub connection_id: u32,
    /// Server capability flags (lower and upper 16 bits).
    pub capabilities: u32,
    /// The 20-byte auth nonce (scramble), both parts joined.
    pub nonce: Vec<u8>,
    /// Default authentication plugin, e.g. "mysql_native_password".
    pub auth_plugin: String,
}

impl Handshake {
    /// Parses HandshakeV10 (MySQL Internals: "Protocol::HandshakeV10").
    pub fn parse(payload: &[u8]) -> Result<Handshake, PacketError> {
        let mut r = Reader::new(payload, "handshake");
        let proto = r.u8()?;
        if proto != 10 {
            return Err(malformed(
                "handshake",
                format!("protocol version {proto}, expected 10"),
            ));
        }
        let version = String::from_utf8_lossy(r.nul_str()?).into_owned();
        let server_version = version
            .strip_prefix("5.5.5-")
            .map(str::to_owned)
            .unwrap_or(version);
        let connection_id = r.u32()?;
        let mut nonce = r.take(8)?.to_vec();
        r.take(1)?; // filler
        let caps_low = u32::from(r.u16()?);
        let mut capabilities = caps_low;
        let mut auth_plugin = String::from("mysql_native_password");
        if r.remaining() > 0 {
            let _charset = r.u8()?;
            let _status = r.u16()?;
            capabilities |= u32::from(r.u16()?) << 16;
            let auth_data_len = r.u8()?;
            r.take(10)?; // reserved (MariaDB: 6 filler + 4 extended capabilities)
            if capabilities & caps::SECURE_CONNECTION != 0 {
                let n = std::cmp::max(13, usize::from(auth_data_len).saturating_sub(8));
                let part2 = r.take(n.min(r.remaining()))?;
                // The last byte of part 2 is a NUL terminator, not nonce.
                let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
                nonce.extend_from_slice(part2);
            }
            if capabilities & caps::PLUGIN_AUTH != 0 && r.remaining() > 0 {
                let rest = r.rest();
                let name = rest.split(|&b| b == 0).next().unwrap_or_default();
                auth_plugin = String::from_utf8_lossy(name).into_owned();
            }
        }
        Ok(Handshake {
            server_version,
            connection_id,
            capabilities,
            nonce,
            auth_plugin,
        })
    }
}

/// An ERR packet (0xFF) from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// Error number, e.g. 1236 (ER_MASTER_FATAL_ERROR_READING_BINLOG), 1045 (access denied).
    pub code: u16,
    /// SQLSTATE when sent.
    pub state: Option<String>,
    /// Human-readable message.
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.state {
            Some(s) => write!(f, "ERROR {} ({}): {}", self.code, s, self.message),
            None => write!(f, "ERROR {}: {}", self.code, self.message),
        }
    }
}

impl ServerError {
    /// Parses an ERR packet payload (starting with 0xFF).
    pub fn parse(payload: &[u8]) -> Result<ServerError, PacketError> {
        let mut r = Reader::new(payload, "ERR");
        let marker = r.u8()?;
        if marker != 0xFF {
            return Err(malformed("ERR", format!("marker 0x{marker:02x}")));
        }
        let code = r.u16()?;
        let mut state = None;
        let rest = r.rest();
        let message = if rest.first() == Some(&b'#') && rest.len() >= 6 {
            state = Some(String::from_utf8_lossy(rest.get(1..6).unwrap_or_default()).into_owned());
            rest.get(6..).unwrap_or_default()
        } else {
            rest
        };
        Ok(ServerError {
            code,
            state,
            message: String::from_utf8_lossy(message).into_owned(),
        })
    }
}

/// True when `payload` is an EOF packet (0xFE with fewer than 9 bytes).
pub fn is_eof(payload: &[u8]) -> bool {
    payload.first() == Some(&0xFE) && payload.len() < 9
}

/// Builds a COM_REGISTER_SLAVE (0x15) payload (MySQL Internals: "COM_REGISTER_SLAVE").
/// Host, user and password announce the replica in SHOW SLAVE HOSTS; each is cut at
/// 255 bytes.
pub fn com_register_slave(server_id: u32, host: &str, user: &str, port: u16) -> Vec<u8> {
    let mut p = vec![0x15];
    p.extend_from_slice(&server_id.to_le_bytes());
    for s in [host.as_bytes(), user.as_bytes(), b"".as_slice()] {
        let s = &s[..s.len().min(255)];
        p.push(s.len() as u8);
        p.extend_from_slice(s);
    }
    p.extend_from_slice(&port.to_le_bytes());
    p.extend_from_slice(&0u32.to_le_bytes()); // replication rank
    p.extend_from_slice(&0u32.to_le_bytes()); // master id
    p
}

/// COM_BINLOG_DUMP flag: MariaDB BINLOG_SEND_ANNOTATE_ROWS_EVENT (MySQL calls this bit
/// BINLOG_THROUGH_POSITION). Without it a MariaDB primary leaves ANNOTATE_ROWS out and the
/// stream has holes (DESIGN.md, "Measured on this kind of machine", item 2).
pub const BINLOG_SEND_ANNOTATE_ROWS_EVENT: u16 = 0x02;

/// Builds a COM_BINLOG_DUMP (0x12) payload: pos u32, flags u16, server_id u32, file name.
/// Positions above 4 GiB cannot be expressed by this command (the server would refuse
/// such a file to a position-based replica too).
pub fn com_binlog_dump(pos: u32, flags: u16, server_id: u32, file: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(11 + file.len());
    p.push(0x12);
    p.extend_from_slice(&pos.to_le_bytes());
    p.extend_from_slice(&flags.to_le_bytes());
    p.extend_from_slice(&server_id.to_le_bytes());
    p.extend_from_slice(file.as_bytes());
    p
}

/// One interval `[start, end)` of transaction numbers for one server UUID in a MySQL GTID
/// set, as COM_BINLOG_DUMP_GTID encodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GtidInterval {
    /// Server UUID (16 bytes).
    pub uuid: [u8; 16],
    /// First transaction number, inclusive.
    pub start: u64,
    /// One past the last transaction number.
    pub end: u64,
}

/// Builds a COM_BINLOG_DUMP_GTID (0x1E) payload (mysql-server `sql/rpl_replica.cc`
/// `request_dump`): flags u16, server_id u32, name_len u32, name, pos u64, data_len u32,
/// then the encoded GTID set (n_sids u64; per sid: `uuid[16]`, n_intervals u64, then
/// (start i64, end i64) pairs). Intervals of one UUID must be adjacent in `set`.
pub fn com_binlog_dump_gtid(
    flags: u16,
    server_id: u32,
    file: &str,
    pos: u64,
    set: &[GtidInterval],
) -> Vec<u8> {
    let mut data = Vec::new();
    type Group<'a> = (&'a [u8; 16], Vec<(u64, u64)>);
    let mut groups: Vec<Group> = Vec::new();
    for iv in set {
        match groups.last_mut() {
            Some((u, v)) if *u == &iv.uuid => v.push((iv.start, iv.end)),
            _ => groups.push((&iv.uuid, vec![(iv.start, iv.end)])),
        }
    }
    data.extend_from_slice(&(groups.len() as u64).to_le_bytes());
    for (uuid, ivs) in &groups {
        data.extend_from_slice(&uuid[..]);
        data.extend_from_slice(&(ivs.len() as u64).to_le_bytes());
        for (s, e) in ivs {
            data.extend_from_slice(&s.to_le_bytes());
            data.extend_from_slice(&e.to_le_bytes());
        }
    }
    let mut p = vec![0x1E];
    p.extend_from_slice(&flags.to_le_bytes());
    p.extend_from_slice(&server_id.to_le_bytes());
    p.extend_from_slice(&(file.len() as u32).to_le_bytes());
    p.extend_from_slice(file.as_bytes());
    p.extend_from_slice(&pos.to_le_bytes());
    p.extend_from_slice(&(data.len() as u32).to_le_bytes());
    p.extend_from_slice(&data);
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_splits_at_16_mib_and_ends_full_packets_with_an_empty_one() {
        let mut out = Vec::new();
        let mut seq = 3;
        frame(&mut out, &mut seq, b"");
        assert_eq!(out, [0, 0, 0, 3]);
        assert_eq!(seq, 4);
        let big = vec![7u8; MAX_PHYSICAL_PAYLOAD];
        let mut out = Vec::new();
        let mut seq = 0;
        frame(&mut out, &mut seq, &big);
        assert_eq!(out.len(), 4 + MAX_PHYSICAL_PAYLOAD + 4);
        assert_eq!(&out[..4], &[0xFF, 0xFF, 0xFF, 0]);
        assert_eq!(&out[out.len() - 4..], &[0, 0, 0, 1]);
        assert_eq!(seq, 2);
    }

    #[test]
    fn lenenc_round_trip() {
        for n in [
            0u64,
            250,
            251,
            0xFFFF,
            0x10000,
            0xFF_FFFF,
            0x100_0000,
            u64::MAX,
        ] {
            let mut v = Vec::new();
            put_lenenc_int(&mut v, n);
            let mut r = Reader::new(&v, "t");
            assert_eq!(r.lenenc_int().unwrap(), Some(n));
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn reader_never_panics_on_short_input() {
        let mut r = Reader::new(&[0xFE, 1, 2], "t");
        assert!(r.lenenc_int().is_err());
        let mut r = Reader::new(&[5, b'a'], "t");
        assert!(r.lenenc_bytes().is_err());
        let mut r = Reader::new(b"abc", "t");
        assert!(r.nul_str().is_err());
        for n in 0..40 {
            let payload = vec![10u8; n];
            let _ = Handshake::parse(&payload);
            let _ = ServerError::parse(&payload);
        }
    }

    #[test]
    fn parses_mariadb_handshake() {
        // A real MariaDB 10.11 greeting, shortened to its fields.
        let mut p = vec![10];
        p.extend_from_slice(b"5.5.5-10.11.19-MariaDB-0+deb12u1\0");
        p.extend_from_slice(&7u32.to_le_bytes());
        p.extend_from_slice(b"abcdefgh\0");
        p.extend_from_slice(&0xF7FEu16.to_le_bytes());
        p.push(45);
        p.extend_from_slice(&2u16.to_le_bytes());
        p.extend_from_slice(&0x81BFu16.to_le_bytes());
        p.push(21);
        p.extend_from_slice(&[0; 10]);
        p.extend_from_slice(b"ijklmnopqrst\0");
        p.extend_from_slice(b"mysql_native_password\0");
        let h = Handshake::parse(&p).unwrap();
        assert_eq!(h.server_version, "10.11.19-MariaDB-0+deb12u1");
        assert_eq!(h.connection_id, 7);
        assert_eq!(h.nonce, b"abcdefghijklmnopqrst");
        assert_eq!(h.auth_plugin, "mysql_native_password");
    }

    #[test]
    fn parses_err_packet() {
        let mut p = vec![0xFF];
        p.extend_from_slice(&1236u16.to_le_bytes());
        p.extend_from_slice(b"#HY000Could not find first log file name in binary log index file");
        let e = ServerError::parse(&p).unwrap();
        assert_eq!(e.code, 1236);
        assert_eq!(e.state.as_deref(), Some("HY000"));
        assert!(e.message.starts_with("Could not find"));
    }

    #[test]
    fn dump_gtid_layout() {
        let uuid = [0x11u8; 16];
        let p = com_binlog_dump_gtid(
            4,
            42,
            "",
            4,
            &[
                GtidInterval {
                    uuid,
                    start: 1,
                    end: 10,
                },
                GtidInterval {
                    uuid,
                    start: 12,
                    end: 20,
                },
            ],
        );
        assert_eq!(p[0], 0x1E);
        // flags + server_id + name_len(0) + pos + data_len
        let data_len = u32::from_le_bytes(p[19..23].try_into().unwrap()) as usize;
        assert_eq!(data_len, 8 + 16 + 8 + 2 * 16);
        assert_eq!(p.len(), 23 + data_len);
    }
}

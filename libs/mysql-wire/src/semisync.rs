//! Semi-synchronous replication, the replica's side of the wire (MariaDB KB
//! "Semisynchronous Replication"; mysql-server `plugin/semisync/semisync.h`,
//! `semisync_replica.cc`, MariaDB `sql/semisync_slave.cc`).
//!
//! # Protocol
//!
//! - Before COM_BINLOG_DUMP the replica sets a user variable that asks for it:
//!   `@rpl_semi_sync_slave = 1` (MariaDB, and MySQL's old plugin names) or
//!   `@rpl_semi_sync_replica = 1` (MySQL 8.0.26+ with the `rpl_semi_sync_source`
//!   plugin) ([`enable_statement`]). A primary without semi-sync enabled ignores it and
//!   sends the stream as usual.
//! - Each binlog stream packet then carries two bytes between the 0x00 OK marker and the
//!   event: the magic byte 0xEF and a flag byte, bit 0x01 set when the primary waits for
//!   an acknowledgement of this event ([`split_event`]).
//! - The acknowledgement is a packet of its own, written on the dump connection with a
//!   fresh sequence number (0): 0xEF, the binlog position *after* the event, 8 bytes
//!   little-endian, and the binlog file name, unterminated ([`ack`]). One ack covers
//!   every earlier transaction of the stream: the primary releases every commit at or
//!   before that position.
//! - When no ack comes within `rpl_semi_sync_master_timeout` the primary falls back to
//!   asynchronous replication (its status `Rpl_semi_sync_master_status` goes OFF and
//!   `Rpl_semi_sync_master_no_tx` counts the commits released without an ack) and back
//!   when a replica catches up.
//!
//! Nothing here is durable: the caller sends an ack only after the event's bytes are
//! fdatasynced, which is the whole point of a semi-sync archive.

use bytes::{Buf, Bytes};

use crate::packet::PacketError;

/// The semi-sync header's first byte, and the ack packet's (`kPacketMagicNum`).
pub const MAGIC: u8 = 0xEF;

/// The header's flag bit: the primary waits for an ack of this event
/// (`kPacketFlagSync`).
pub const NEED_ACK: u8 = 0x01;

/// Which user variable asks a primary for semi-sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `@rpl_semi_sync_slave`: MariaDB, and MySQL before 8.0.26's new names.
    Slave,
    /// `@rpl_semi_sync_replica`: MySQL 8.0.26+ with `rpl_semi_sync_source`.
    Replica,
}

/// The statement a replica runs before COM_BINLOG_DUMP to ask for semi-sync.
pub fn enable_statement(v: Variant) -> &'static str {
    match v {
        Variant::Slave => "SET @rpl_semi_sync_slave = 1",
        Variant::Replica => "SET @rpl_semi_sync_replica = 1",
    }
}

/// A binlog stream packet (the 0x00 marker already stripped, as
/// `Conn::read_binlog_packet` returns it) split into whether the primary waits for an
/// ack and the event itself.
///
/// # Errors
///
/// [`PacketError::Malformed`] when the packet does not start with the semi-sync header
/// (the primary is not streaming semi-sync: the caller treats the stream as broken).
pub fn split_event(mut packet: Bytes) -> Result<(bool, Bytes), PacketError> {
    match (packet.first(), packet.get(1)) {
        (Some(&MAGIC), Some(&flag)) => {
            packet.advance(2);
            Ok((flag & NEED_ACK != 0, packet))
        }
        (first, _) => Err(PacketError::Malformed {
            what: "semi-sync event",
            detail: format!(
                "no semi-sync header (0xEF): the packet starts with {:?}",
                first.map(|b| format!("0x{b:02x}"))
            ),
        }),
    }
}

/// The acknowledgement of every transaction up to `pos` (the binlog position after the
/// acknowledged event, bytes) of `file`: write it with a fresh sequence number
/// (`Conn::send_command`).
pub fn ack(file: &str, pos: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(9 + file.len());
    p.push(MAGIC);
    p.extend_from_slice(&pos.to_le_bytes());
    p.extend_from_slice(file.as_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_split_off_and_its_flag_read() {
        let (want, ev) = split_event(Bytes::from_static(&[0xEF, 0x01, 9, 8, 7])).unwrap();
        assert!(want);
        assert_eq!(&ev[..], &[9, 8, 7]);
        let (want, ev) = split_event(Bytes::from_static(&[0xEF, 0x00, 1])).unwrap();
        assert!(!want);
        assert_eq!(&ev[..], &[1]);
        assert!(split_event(Bytes::from_static(&[0x00, 0x01, 1])).is_err());
        assert!(split_event(Bytes::from_static(&[0xEF])).is_err());
        assert!(split_event(Bytes::new()).is_err());
    }

    #[test]
    fn an_ack_is_magic_position_and_name() {
        let p = ack("mysql-bin.000002", 0x0102_0304);
        assert_eq!(p[0], 0xEF);
        assert_eq!(&p[1..9], &0x0102_0304u64.to_le_bytes());
        assert_eq!(&p[9..], b"mysql-bin.000002");
    }
}

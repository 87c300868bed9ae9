//! The takeover's plan, from rows and local files as a previous owner leaves them.

use super::*;
use binlog::binlog_seq;

fn row(name: &str, size: u64, state: FileState) -> BinlogFileRow {
    BinlogFileRow {
        source: "db1".into(),
        name: name.into(),
        seq: binlog_seq(name).map_or(0, |s| s as i64),
        size,
        state,
        info: String::new(),
        first_event_time: None,
        last_event_time: None,
        first_gtid: None,
        last_gtid: None,
        sha256: None,
        created_at: 0,
        reported_at: None,
        checked_at: None,
        state_changed_at: 0,
    }
}

fn obj(file: &str, kind: ArchiveKind, start: u64, end: u64) -> ArchiveObjectRow {
    ArchiveObjectRow {
        source: "db1".into(),
        file: file.into(),
        kind,
        start_offset: start,
        end_offset: end,
        object_key: format!("db1/binlogs/{file}.{start}-{end}"),
        sha256: String::new(),
        stored_bytes: end - start,
        stored_sha256: String::new(),
        codec: "zstd".into(),
        key_id: None,
        epoch: 1,
        created_at: 0,
        deleted_at: None,
    }
}

fn whole(file: &str, size: u64) -> ArchiveObjectRow {
    obj(file, ArchiveKind::File, 0, size)
}

fn chunk(file: &str, start: u64, end: u64) -> ArchiveObjectRow {
    obj(file, ArchiveKind::Chunk, start, end)
}

fn local(files: &[(&str, u64)]) -> BTreeMap<String, u64> {
    files.iter().map(|(n, s)| (n.to_string(), *s)).collect()
}

fn names(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

const F1: &str = "mysql-bin.000001";
const F2: &str = "mysql-bin.000002";
const F3: &str = "mysql-bin.000003";
const F4: &str = "mysql-bin.000004";

#[test]
fn a_node_whose_disk_is_current_keeps_everything_and_changes_nothing() {
    let rows = [
        row(F1, 1000, FileState::Succ),
        row(F2, 100, FileState::Active),
    ];
    let objs = [whole(F1, 1000), chunk(F2, 0, 80)];
    let p = plan(&rows, &objs, &local(&[(F1, 1000), (F2, 200)]));
    assert_eq!(names(&p.keep), [F1, F2]);
    assert!(p.set_aside.is_empty() && p.drop.is_empty() && p.left.is_empty());
    assert_eq!(p.active, None);
    assert_eq!(p.copy_newest, None);
    assert!(p.from_chunks.is_empty());
}

#[test]
fn a_node_that_never_held_the_source_copies_the_newest_whole_file_and_decodes_the_active_chunks() {
    let rows = [
        row(F3, 500, FileState::Active),
        row(F1, 1000, FileState::Succ),
        row(F2, 900, FileState::Succ),
    ];
    let objs = [
        whole(F1, 1000),
        whole(F2, 900),
        chunk(F3, 0, 200),
        chunk(F3, 200, 300),
        chunk(F3, 400, 450),
    ];
    let p = plan(&rows, &objs, &local(&[]));
    assert!(p.keep.is_empty());
    assert_eq!(p.copy_newest.as_deref(), Some(F2));
    assert_eq!(p.whole, [(F1.to_string(), 1000), (F2.to_string(), 900)]);
    let Some(Active {
        file,
        local: None,
        chunks,
    }) = &p.active
    else {
        panic!("active from chunks: {:?}", p.active);
    };
    assert_eq!(file, F3);
    assert_eq!(
        chunks.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(),
        [(0, 200), (200, 300)],
        "only the contiguous prefix"
    );
    assert!(p.drop.is_empty() && p.set_aside.is_empty());
}

#[test]
fn a_closed_file_only_in_chunks_is_decoded_whole_and_a_file_after_the_active_one_is_dropped() {
    let rows = [
        row(F1, 1000, FileState::Succ),
        row(F2, 1000, FileState::Reported),
        row(F3, 700, FileState::Active),
        row(F4, 30, FileState::Active),
    ];
    let objs = [
        whole(F1, 1000),
        chunk(F2, 0, 600),
        chunk(F2, 600, 1000),
        chunk(F3, 300, 700),
    ];
    let p = plan(&rows, &objs, &local(&[(F4, 30)]));
    assert_eq!(p.from_chunks.len(), 1);
    assert_eq!(p.from_chunks[0].0, F2);
    assert_eq!(p.copy_newest, None, "the decoded file is the local newest");
    // F3 has no chunk at 0 and no local copy: it starts again at position 4.
    assert_eq!(
        p.active,
        Some(Active {
            file: F3.into(),
            local: None,
            chunks: vec![]
        })
    );
    assert_eq!(names(&p.drop), [F4]);
    assert_eq!(names(&p.set_aside), [F4], "a local file past the new end");
}

#[test]
fn short_local_copies_are_set_aside_and_a_longer_local_active_file_beats_the_chunks() {
    let rows = [
        row(F1, 1000, FileState::Succ),
        row(F2, 1000, FileState::Succ),
        row(F3, 100, FileState::Active),
    ];
    let objs = [whole(F1, 1000), whole(F2, 1000), chunk(F3, 0, 80)];
    let p = plan(&rows, &objs, &local(&[(F1, 1000), (F2, 400), (F3, 90)]));
    assert_eq!(names(&p.keep), [F1]);
    assert_eq!(names(&p.set_aside), [F2]);
    assert_eq!(p.copy_newest.as_deref(), Some(F2));
    let a = p.active.expect("active");
    assert_eq!((a.file.as_str(), a.local), (F3, Some(90)));
    assert_eq!(a.chunks.len(), 1);
}

#[test]
fn a_closed_file_neither_whole_nor_in_chunks_is_left_to_the_checker_and_capture_goes_on_after_the_newest(
) {
    let rows = [
        row(F1, 1000, FileState::Reported),
        row(F2, 1000, FileState::Succ),
        row(F3, 50, FileState::Active),
    ];
    let objs = [chunk(F1, 0, 500), whole(F2, 1000), chunk(F3, 0, 50)];
    let p = plan(&rows, &objs, &local(&[]));
    assert_eq!(names(&p.left), [F1]);
    assert_eq!(
        p.durable
            .iter()
            .map(|(f, _, _)| f.as_str())
            .collect::<Vec<_>>(),
        [F2]
    );
    assert!(matches!(&p.active, Some(Active { file, .. }) if file == F3));
}

#[test]
fn a_fail_file_never_anchors_the_resume_point_and_is_left_to_the_checker() {
    // The newest row held by nobody is FAIL: capture continues in it, not after it.
    let rows = [
        row(F1, 1000, FileState::Succ),
        row(F2, 900, FileState::Fail),
    ];
    let objs = [whole(F1, 1000), chunk(F2, 0, 300)];
    let p = plan(&rows, &objs, &local(&[]));
    assert_eq!(p.copy_newest.as_deref(), Some(F1));
    let a = p.active.expect("active");
    assert_eq!(a.file, F2);
    // A FAIL file before the newest durable one stays FAIL and is not indexed here.
    let rows = [
        row(F1, 1000, FileState::Fail),
        row(F2, 900, FileState::Succ),
        row(F3, 10, FileState::Active),
    ];
    let objs = [whole(F2, 900)];
    let p = plan(&rows, &objs, &local(&[]));
    assert_eq!(names(&p.left), [F1]);
    assert_eq!(p.durable.len(), 1);
    assert_eq!(p.active.map(|a| a.file), Some(F3.to_string()));
}

/// Timeline 2's files (`tl2/`) follow timeline 1's in the plan: the switch's file of
/// the old timeline (the old primary's last, cut by the failover) stays, the new
/// timeline's file is the active one, and a file after it that nothing backs goes.
#[test]
fn a_new_timelines_files_follow_the_old_ones_in_the_plan() {
    const T2A: &str = "tl2/mysql-bin.000001";
    const T2B: &str = "tl2/mysql-bin.000002";
    let rows = [
        row(T2B, 300, FileState::Active),
        row(F2, 900, FileState::Succ),
        row(T2A, 800, FileState::Succ),
        row(F1, 1000, FileState::Succ),
    ];
    let objs = [
        whole(F1, 1000),
        whole(F2, 900),
        chunk(T2A, 0, 800),
        chunk(T2B, 0, 100),
    ];
    let p = plan(&rows, &objs, &local(&[(F1, 1000), (F2, 900)]));
    assert_eq!(names(&p.keep), [F1, F2]);
    assert_eq!(
        p.from_chunks
            .iter()
            .map(|c| c.0.as_str())
            .collect::<Vec<_>>(),
        [T2A]
    );
    assert_eq!(p.active.as_ref().map(|a| a.file.as_str()), Some(T2B));
    assert!(p.drop.is_empty() && p.set_aside.is_empty() && p.left.is_empty());
}

/// The local files of a source directory include its timelines' (by stored name), and
/// one set aside keeps its timeline's directory under `superseded-e<epoch>/`, with the
/// control file that names it.
#[test]
fn local_files_and_set_aside_know_timeline_directories() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    std::fs::create_dir_all(dir.join("tl2")).unwrap();
    std::fs::write(dir.join(F1), vec![0u8; 10]).unwrap();
    std::fs::write(dir.join("tl2").join(F2), vec![0u8; 20]).unwrap();
    std::fs::write(dir.join("tl2").join("notes.txt"), b"x").unwrap();
    super::super::local::record_active(dir, "tl2/mysql-bin.000002", 20).unwrap();
    let got = local_files(dir).unwrap();
    assert_eq!(
        got.into_iter().collect::<Vec<_>>(),
        [
            (F1.to_string(), 10),
            ("tl2/mysql-bin.000002".to_string(), 20)
        ]
    );
    set_aside(dir, 3, &["tl2/mysql-bin.000002".to_string()]).unwrap();
    let aside = dir.join("superseded-e3");
    assert!(aside.join("tl2").join(F2).is_file());
    assert!(!dir.join("tl2").join(F2).exists());
    assert!(aside.join(CONTROL_FILE).is_file());
    assert!(!dir.join(CONTROL_FILE).exists());
    assert_eq!(local_files(dir).unwrap().len(), 1);
    assert!(local_files(&dir.join("absent")).unwrap().is_empty());
}

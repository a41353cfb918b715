//! Damage that no crash can cause must stop the node with an error naming the file and offset; damage a
//! crash can cause (a torn tail) is cut off. Nothing on disk may make recovery panic.

mod common;

use std::time::{Duration, Instant};

use common::*;
use storage::{Error, SimDisk, Storage};

const SEG1: &str = "wal-0000000000000001.log";
const SEG2: &str = "wal-0000000000000002.log";
const SEG3: &str = "wal-0000000000000003.log";
/// The first record of a segment starts right after the 64-byte header.
const FIRST_RECORD: u64 = 64;

/// A bootstrapped disk with `batches` batches of 5 entries each, in one large segment unless `roll`.
fn populated(seed: u64, batches: u64, roll: bool) -> SimDisk {
    let disk = SimDisk::new(seed);
    let mut storage = bootstrap(disk.clone(), 1 << 20);
    for b in 0..batches {
        if roll {
            storage.roll_segment();
        }
        storage.write(Some(hard_state(1, Some(1), b * 5)), &entries(b * 5 + 1..=b * 5 + 5, 1)).unwrap();
    }
    disk
}

fn open_err(disk: &SimDisk) -> Error {
    match Storage::open(disk.clone(), options(1 << 20)) {
        Ok((_, state)) => panic!("expected an error, recovered {state:?}"),
        Err(error) => error,
    }
}

#[test]
fn flipped_byte_in_a_synced_record_followed_by_valid_records_is_corruption() {
    let disk = populated(1, 5, false);
    assert!(disk.flip_bit(SEG1, FIRST_RECORD + 30, 3));
    let error = open_err(&disk);
    match &error {
        Error::Corrupt { file, offset, expected } => {
            assert_eq!((file.as_str(), *offset), (SEG1, FIRST_RECORD), "{error}");
            assert!(expected.contains("declares"), "{error}");
        }
        other => panic!("expected Corrupt, got {other}"),
    }
    let message = error.to_string();
    assert!(message.contains(SEG1) && message.contains("offset 64"), "{message}");
}

#[test]
fn flipped_byte_in_a_closed_segment_is_corruption() {
    let disk = populated(2, 3, true);
    assert!(disk.flip_bit(SEG2, FIRST_RECORD + 40, 0));
    assert!(matches!(open_err(&disk), Error::Corrupt { ref file, offset: FIRST_RECORD, .. } if file == SEG2));
}

#[test]
fn flipped_byte_in_the_last_synced_record_is_cut_as_a_torn_write() {
    // The one case that cannot be told apart (see the crate docs): no later record declares it synced.
    let disk = populated(3, 4, false);
    let len = disk.file_contents(SEG1).unwrap().len() as u64;
    assert!(disk.flip_bit(SEG1, len - 3, 1));
    let (mut storage, state) = reopen(disk.clone(), 1 << 20);
    assert_eq!(state.entries, entries(1..=15, 1), "the last batch (16..=20) is cut, the rest kept");
    storage.write(None, &entries(16..=17, 2)).unwrap();
    drop(storage);
    let (_, state) = reopen(disk, 1 << 20);
    assert_eq!(state.entries.len(), 17);
}

#[test]
fn garbage_after_the_last_record_is_a_torn_tail_and_cut() {
    let disk = populated(4, 3, false);
    let mut contents = disk.file_contents(SEG1).unwrap();
    let clean_len = contents.len();
    contents.extend_from_slice(&[0x5a; 3000]);
    disk.put_file(SEG1, &contents);
    let (_, state) = reopen(disk.clone(), 1 << 20);
    assert_eq!(state.entries, entries(1..=15, 1));
    assert_eq!(disk.file_contents(SEG1).unwrap().len(), clean_len, "the torn tail is cut off the file");
}

#[test]
fn deleted_middle_segment_is_an_error_naming_it() {
    let disk = populated(5, 4, true);
    assert!(disk.delete_file(SEG2));
    match open_err(&disk) {
        Error::Corrupt { file, .. } => assert_eq!(file, SEG2),
        other => panic!("expected Corrupt naming {SEG2}, got {other}"),
    }
}

#[test]
fn deleted_first_segment_is_an_error() {
    let disk = populated(6, 4, true);
    assert!(disk.delete_file(SEG1));
    assert!(disk.delete_file(SEG2));
    let error = open_err(&disk);
    assert!(matches!(error, Error::Corrupt { ref file, .. } if file == SEG3), "{error}");
    assert!(error.to_string().contains("missing"), "{error}");
}

#[test]
fn closed_segment_cut_mid_record_is_an_error() {
    // With rolls before every batch, SEG2 holds one data record and then the seal naming SEG3.
    let disk = populated(7, 4, true);
    let contents = disk.file_contents(SEG2).unwrap();
    disk.put_file(SEG2, &contents[..FIRST_RECORD as usize + 30]);
    let error = open_err(&disk);
    assert!(
        matches!(error, Error::Corrupt { ref file, offset: FIRST_RECORD, .. } if file == SEG2),
        "{error}"
    );
    assert!(error.to_string().contains("records are missing"), "{error}");
}

#[test]
fn torn_seal_of_a_closed_segment_is_a_crash_not_corruption() {
    // A crash while writing the seal (after the next segment was durable) leaves a torn closed segment.
    let disk = populated(14, 4, true);
    let contents = disk.file_contents(SEG2).unwrap();
    disk.put_file(SEG2, &contents[..contents.len() - 10]);
    let (_, state) = reopen(disk.clone(), 1 << 20);
    assert_eq!(state.entries, entries(1..=20, 1));
}

#[test]
fn deleted_newest_segment_is_detected_by_the_seal_before_it() {
    let disk = populated(15, 4, true);
    let newest = "wal-0000000000000005.log";
    assert!(disk.delete_file(newest));
    let error = open_err(&disk);
    assert!(matches!(error, Error::Corrupt { ref file, .. } if file == newest), "{error}");
    assert!(error.to_string().contains("sealed"), "{error}");
}

#[test]
fn bytes_after_a_seal_are_corruption() {
    let disk = populated(16, 2, true);
    let mut contents = disk.file_contents(SEG2).unwrap();
    let copy = contents[FIRST_RECORD as usize..].to_vec();
    contents.extend_from_slice(&copy);
    disk.put_file(SEG2, &contents);
    let error = open_err(&disk);
    assert!(error.to_string().contains("after its seal"), "{error}");
}

#[test]
fn closed_segment_cut_at_a_record_boundary_is_an_error() {
    let disk = populated(8, 4, false);
    let mut storage = reopen(disk.clone(), 1 << 20).0;
    storage.roll_segment();
    storage.write(None, &entries(21..=22, 1)).unwrap();
    drop(storage);
    // Cut the last two whole records out of the (now closed) first segment.
    let contents = disk.file_contents(SEG1).unwrap();
    let mut boundary = FIRST_RECORD as usize;
    for _ in 0..2 {
        boundary += 8 + u32::from_le_bytes(contents[boundary..boundary + 4].try_into().unwrap()) as usize;
    }
    disk.put_file(SEG1, &contents[..boundary]);
    let error = open_err(&disk);
    assert!(matches!(error, Error::Corrupt { ref file, offset: 24, .. } if file == SEG2), "{error}");
    assert!(error.to_string().contains("records are missing"), "{error}");
}

#[test]
fn foreign_file_in_the_directory_is_refused() {
    let disk = populated(9, 1, false);
    disk.put_file("notes.txt", b"hello");
    assert!(matches!(open_err(&disk), Error::ForeignFile { ref file, .. } if file == "notes.txt"));
}

#[test]
fn segment_name_with_foreign_content_is_refused() {
    let disk = populated(10, 2, true);
    disk.put_file(
        "wal-0000000000000004.log",
        b"#!/bin/sh\necho this is not a segment\n".repeat(10).as_slice(),
    );
    assert!(matches!(open_err(&disk), Error::ForeignFile { .. }));
}

#[test]
fn unknown_version_is_refused() {
    let disk = populated(11, 2, false);
    let mut contents = disk.file_contents(SEG1).unwrap();
    contents[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32c::crc32c(&contents[..56]);
    contents[56..60].copy_from_slice(&crc.to_le_bytes());
    disk.put_file(SEG1, &contents);
    match open_err(&disk) {
        Error::UnknownVersion { file, found: 2, supported: 1 } => assert_eq!(file, SEG1),
        other => panic!("expected UnknownVersion, got {other}"),
    }
}

#[test]
fn lost_identity_with_log_data_is_refused() {
    let disk = populated(12, 2, false);
    assert!(disk.delete_file(storage::IDENTITY_FILE));
    assert!(matches!(open_err(&disk), Error::Corrupt { ref file, .. } if file == storage::IDENTITY_FILE));
}

#[test]
fn damaged_newest_snapshot_falls_back_to_an_older_one_when_the_log_covers_it() {
    use std::io::Write;
    let disk = populated(13, 4, false);
    let (mut storage, _) = reopen(disk.clone(), 1 << 20);
    let meta =
        raft::SnapshotMeta { index: 10, term: 1, configuration: raft::Configuration::with_voters([1]) };
    let mut writer = storage.begin_snapshot(meta).unwrap();
    writer.write_all(&[1u8; 9000]).unwrap();
    storage.publish_snapshot(writer.finish().unwrap()).unwrap();
    drop(storage);
    let name = "snap-000000000000000a-0000000000000001.snap";
    assert!(disk.flip_bit(name, 5000, 2));
    let (_, state) = reopen(disk.clone(), 1 << 20);
    assert_eq!(state.snapshot.index, 0, "the older (bootstrap) snapshot is used");
    assert_eq!(state.entries, entries(1..=20, 1));
}

#[test]
fn random_damage_never_panics() {
    // Flip, cut and scribble at random places in random files: recovery returns Ok or a clear error.
    let started = Instant::now();
    let mut errors = 0;
    for seed in 0..300u64 {
        assert!(started.elapsed() < Duration::from_secs(60), "time bound");
        let disk = populated(seed, 6, seed % 2 == 0);
        let names = disk.file_names();
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..1 + next() % 4 {
            let name = &names[(next() % names.len() as u64) as usize];
            let mut contents = disk.file_contents(name).unwrap();
            if contents.is_empty() {
                continue;
            }
            let at = (next() % contents.len() as u64) as usize;
            match next() % 3 {
                0 => contents[at] ^= 1 << (next() % 8),
                1 => contents.truncate(at),
                _ => contents[at..].iter_mut().take(16).for_each(|b| *b = next() as u8),
            }
            disk.put_file(name, &contents);
        }
        match Storage::open(disk.clone(), options(1 << 20)) {
            Ok(_) => {}
            Err(error) => {
                errors += 1;
                assert!(!error.to_string().is_empty());
            }
        }
    }
    assert!(errors > 0);
}

/// Rewrites the first record of `SEG1` with `edit` applied to its body, and a matching checksum: damage
/// that the checksum cannot see, which only the format's own rules can catch.
fn rewrite_first_record(disk: &SimDisk, edit: impl FnOnce(&mut [u8])) {
    let mut contents = disk.file_contents(SEG1).unwrap();
    let start = FIRST_RECORD as usize;
    let len = u32::from_le_bytes(contents[start..start + 4].try_into().unwrap()) as usize;
    let body = start + 8..start + 8 + len;
    edit(&mut contents[body.clone()]);
    let crc = crc32c::crc32c(&contents[body]);
    contents[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    disk.put_file(SEG1, &contents);
}

/// Body layout: type (1), self offset (8), synced offset (8), item count (4), then items; the first item of
/// a batch without truncation is an entry: tag (1), index (8), ...
const FIRST_ITEM: usize = 21;

#[test]
fn index_gap_in_a_checksummed_record_is_corruption() {
    let disk = populated(20, 3, false);
    rewrite_first_record(&disk, |body| {
        body[FIRST_ITEM + 1..FIRST_ITEM + 9].copy_from_slice(&5u64.to_le_bytes())
    });
    let error = open_err(&disk);
    let item_offset = FIRST_RECORD + 8 + FIRST_ITEM as u64;
    assert!(
        matches!(error, Error::Corrupt { ref file, offset, .. } if file == SEG1 && offset == item_offset),
        "{error}"
    );
    assert!(error.to_string().contains("entry index 1, found 5"), "{error}");
}

#[test]
fn index_overlap_across_records_is_corruption() {
    let disk = populated(21, 3, false);
    // The second record's first entry claims index 3, overlapping the first record's 1..=5.
    let mut contents = disk.file_contents(SEG1).unwrap();
    let first_len = u32::from_le_bytes(contents[64..68].try_into().unwrap()) as usize;
    let second = 64 + 8 + first_len;
    let second_len = u32::from_le_bytes(contents[second..second + 4].try_into().unwrap()) as usize;
    let body = second + 8..second + 8 + second_len;
    contents[body.start + FIRST_ITEM + 1..body.start + FIRST_ITEM + 9].copy_from_slice(&3u64.to_le_bytes());
    let crc = crc32c::crc32c(&contents[body]);
    contents[second + 4..second + 8].copy_from_slice(&crc.to_le_bytes());
    disk.put_file(SEG1, &contents);
    let error = open_err(&disk);
    assert!(error.to_string().contains("entry index 6, found 3"), "{error}");
}

#[test]
fn unknown_item_type_in_a_checksummed_record_is_corruption() {
    let disk = populated(22, 2, false);
    rewrite_first_record(&disk, |body| body[FIRST_ITEM] = 99);
    let error = open_err(&disk);
    assert!(error.to_string().contains("found 99"), "{error}");
}

#[test]
fn record_copied_to_the_wrong_offset_is_corruption() {
    let disk = populated(23, 2, false);
    rewrite_first_record(&disk, |body| body[1..9].copy_from_slice(&4096u64.to_le_bytes()));
    let error = open_err(&disk);
    assert!(error.to_string().contains("written at 4096"), "{error}");
}

/// Found by the `wal_recovery` fuzz target: a checksummed truncation item that restarts the log after
/// index u64::MAX, followed by an entry, made replay overflow computing the next index.
#[test]
fn an_entry_after_a_truncation_to_the_largest_index_is_corruption_not_an_overflow() {
    let disk = populated(24, 1, false);
    {
        // Overwriting entry 3 writes a second record: a truncation item (after 2), then entry 3.
        let (mut storage, _) = reopen(disk.clone(), 1 << 20);
        storage.write(None, &entries(3..=3, 2)).unwrap();
    }
    let mut contents = disk.file_contents(SEG1).unwrap();
    let first_len = u32::from_le_bytes(contents[64..68].try_into().unwrap()) as usize;
    let second = 64 + 8 + first_len;
    let second_len = u32::from_le_bytes(contents[second..second + 4].try_into().unwrap()) as usize;
    let body = second + 8..second + 8 + second_len;
    assert_eq!(contents[body.start + FIRST_ITEM], 1, "the record starts with a truncation item");
    let after = body.start + FIRST_ITEM + 1;
    contents[after..after + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let crc = crc32c::crc32c(&contents[body]);
    contents[second + 4..second + 8].copy_from_slice(&crc.to_le_bytes());
    disk.put_file(SEG1, &contents);
    let error = open_err(&disk);
    assert!(
        error
            .to_string()
            .contains("no entry after index 18446744073709551615 (the largest index), found entry 3"),
        "{error}"
    );
}

/// Found by the `wal_recovery` fuzz target: the newest segment ending in a seal that names segment 0
/// made recovery underflow while naming the sealed segment.
#[test]
fn a_seal_naming_another_segment_than_the_next_is_corruption_even_in_the_newest_segment() {
    let disk = populated(25, 2, true);
    // Segment 1 holds only its header and the seal naming segment 2; make segment 1 the newest.
    assert!(disk.delete_file(SEG3) && disk.delete_file(SEG2));
    for named in [0u64, 7] {
        rewrite_first_record(&disk, |body| {
            assert_eq!(body[FIRST_ITEM], 4, "a seal item");
            body[FIRST_ITEM + 1..FIRST_ITEM + 9].copy_from_slice(&named.to_le_bytes());
        });
        let error = open_err(&disk);
        assert!(
            matches!(error, Error::Corrupt { ref file, offset, .. } if file == SEG1 && offset == FIRST_RECORD),
            "{error}"
        );
        let expected = format!("a seal naming {SEG2}, found one naming segment {named}");
        assert!(error.to_string().contains(&expected), "{error}");
    }
}

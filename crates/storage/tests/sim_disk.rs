//! The simulated disk's own contract: deterministic from its seed, durable after sync, hostile before.

use storage::{Disk, SimDisk, SIM_PAGE_BYTES};

/// Writes 8 pages of distinct bytes to `f` without syncing, crashes, and returns what survived.
fn crash_unsynced_pages(seed: u64) -> Option<Vec<u8>> {
    let disk = SimDisk::new(seed);
    let mut file = disk.create("f").unwrap();
    disk.sync_dir().unwrap();
    let data: Vec<u8> = (0..8 * SIM_PAGE_BYTES).map(|i| (i / SIM_PAGE_BYTES) as u8 + 1).collect();
    file.write_at(0, &data).unwrap();
    disk.crash();
    disk.file_contents("f")
}

#[test]
fn same_seed_same_crash_outcome() {
    for seed in 0..20 {
        assert_eq!(crash_unsynced_pages(seed), crash_unsynced_pages(seed));
    }
}

#[test]
fn unsynced_pages_are_kept_lost_or_torn_independently() {
    let (mut kept, mut lost, mut torn) = (0, 0, 0);
    for seed in 0..50 {
        let contents = crash_unsynced_pages(seed).expect("the synced create survives");
        for page in contents.chunks(SIM_PAGE_BYTES) {
            let expected = page[0];
            let written = page.iter().take_while(|&&b| b == expected && b != 0).count();
            match written {
                0 => lost += 1,
                n if n == page.len() => kept += 1,
                _ => torn += 1,
            }
        }
    }
    assert!(kept > 0 && lost > 0 && torn > 0, "kept {kept} lost {lost} torn {torn}");
}

#[test]
fn synced_data_always_survives() {
    for seed in 0..50 {
        let disk = SimDisk::new(seed);
        let mut file = disk.create("f").unwrap();
        file.write_at(0, &[7u8; 10_000]).unwrap();
        file.sync_data().unwrap();
        disk.sync_dir().unwrap();
        file.write_at(10_000, &[8u8; 5000]).unwrap(); // unsynced
        disk.crash();
        let contents = disk.file_contents("f").unwrap();
        assert!(contents.len() >= 10_000 && contents[..10_000].iter().all(|&b| b == 7), "seed {seed}");
    }
}

#[test]
fn unsynced_directory_operations_may_be_undone_synced_ones_stay() {
    let (mut survived, mut undone) = (0, 0);
    for seed in 0..50 {
        let disk = SimDisk::new(seed);
        let mut keep = disk.create("kept").unwrap();
        keep.sync_data().unwrap();
        disk.sync_dir().unwrap();
        disk.create("maybe").unwrap();
        disk.rename("kept", "renamed").unwrap();
        disk.crash();
        let names = disk.file_names();
        assert!(names.contains(&"kept".to_string()) || names.contains(&"renamed".to_string()), "{names:?}");
        assert!(
            !(names.contains(&"kept".to_string()) && names.contains(&"renamed".to_string())),
            "rename is atomic"
        );
        if names.contains(&"maybe".to_string()) {
            survived += 1;
        } else {
            undone += 1;
        }
    }
    assert!(survived > 0 && undone > 0);
}

#[test]
fn handles_from_before_a_crash_are_dead() {
    let disk = SimDisk::new(1);
    let mut file = disk.create("f").unwrap();
    disk.crash();
    assert!(file.write_at(0, b"zombie").is_err());
}

#[test]
fn crash_after_ops_counts_and_cuts_power() {
    let disk = SimDisk::new(2);
    let mut file = disk.create("f").unwrap();
    assert_eq!(disk.op_count(), 1);
    disk.crash_after_ops(Some(2));
    file.write_at(0, b"a").unwrap();
    assert!(file.sync_data().is_err(), "the third operation meets the power cut");
    assert!(disk.create("g").is_err());
    disk.crash();
    disk.create("g").expect("power is back after the crash");
}

#[test]
fn capacity_and_fsync_faults() {
    let disk = SimDisk::new(3);
    disk.set_capacity_bytes(Some(100));
    let mut file = disk.create("f").unwrap();
    let error = file.write_at(0, &[1u8; 150]).unwrap_err();
    assert_eq!(error.raw_os_error(), Some(28), "ENOSPC");
    assert_eq!(disk.file_contents("f").unwrap().len(), 100, "what fits is written, as a real disk does");
    disk.fail_next_sync();
    assert!(file.sync_data().is_err());
    assert!(file.sync_data().is_ok(), "only the next sync fails");
    assert!(disk.flip_bit("f", 5, 0));
    assert_eq!(disk.file_contents("f").unwrap()[5], 0);
}

#[test]
fn crash_model_bounds_hostility() {
    use storage::CrashModel;
    let run = |model: CrashModel| {
        let disk = SimDisk::new(9);
        disk.set_crash_model(model);
        let mut file = disk.create("f").unwrap();
        file.sync_data().unwrap();
        disk.sync_dir().unwrap();
        file.write_at(0, &[5u8; 4 * SIM_PAGE_BYTES]).unwrap();
        disk.crash();
        disk.file_contents("f").unwrap()
    };
    let calm = run(CrashModel { keep_page_percent: 100, torn_page_percent: 0 });
    assert!(calm.is_empty() || calm.iter().all(|&b| b == 5), "all pages kept whole (length may lag)");
    let brutal = run(CrashModel { keep_page_percent: 0, torn_page_percent: 0 });
    assert!(brutal.iter().all(|&b| b == 0), "no unsynced page survives");
}

#[test]
fn random_bit_flips_are_seeded() {
    let flip = |seed| {
        let disk = SimDisk::new(seed);
        let mut file = disk.create("wal-1").unwrap();
        file.write_at(0, &[0u8; 1000]).unwrap();
        disk.create("other").unwrap();
        disk.flip_random_bit(|name| name.starts_with("wal-"))
    };
    assert_eq!(flip(4), flip(4));
    assert_eq!(flip(4).unwrap().0, "wal-1");
}

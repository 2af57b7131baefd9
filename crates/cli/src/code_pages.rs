//! Letting go of the code a long-lived process ran only to start: the daemon once it listens,
//! `run` once its run has started. Their start-up (argument parsing, the team file, the store's
//! creation, the daemon's launch) faults in code pages they never run again, and a process keeps
//! every page it mapped until it exits. `MADV_DONTNEED` on the executable's own code mapping
//! takes them out of this process's page tables; the pages stay in the page cache, and the code
//! the process goes on running is mapped again by the next fault on it (a minor fault, from the
//! same cache). Code is never written, so nothing is lost: a private file mapping's untouched
//! pages read back as the file's.

use std::path::Path;

/// The `[start, end)` ranges of `exe`'s executable mappings in a `/proc/PID/maps` text.
fn code_ranges(maps: &str, exe: &Path) -> Vec<(usize, usize)> {
    let Some(exe) = exe.to_str() else {
        return Vec::new();
    };
    maps.lines()
        .filter_map(|line| {
            // "START-END PERMS OFFSET DEV INODE PATH"; the path may hold spaces.
            let mut fields = line.splitn(6, ' ');
            let range = fields.next()?;
            let perms = fields.next()?;
            let path = fields.nth(3)?.trim_start();
            if !perms.starts_with("r-x") || path != exe {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (end > start).then_some((start, end))
        })
        .collect()
}

/// Takes this process's own code pages out of its page tables (see the module docs). Quietly
/// does nothing where `/proc` cannot tell where the code is.
pub(crate) fn release() {
    let (Ok(exe), Ok(maps)) = (
        std::fs::read_link("/proc/self/exe"),
        std::fs::read_to_string("/proc/self/maps"),
    ) else {
        return;
    };
    for (start, end) in code_ranges(&maps, &exe) {
        #[allow(unsafe_code)]
        // SAFETY: the range is this executable's read-only, never written code mapping, as the
        // kernel listed it; MADV_DONTNEED on a private file mapping only drops page-table
        // entries, and the next access maps the same file pages again.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_executables_code_mappings_are_taken() {
        let maps = "\
55d0a0000000-55d0a0100000 r--p 00000000 fd:01 42 /opt/agent team/agent-team
55d0a0100000-55d0a0500000 r-xp 00100000 fd:01 42 /opt/agent team/agent-team
55d0a0500000-55d0a0600000 rw-p 00500000 fd:01 42 /opt/agent team/agent-team
7f0000000000-7f0000100000 r-xp 00000000 fd:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
7fff00000000-7fff00021000 rw-p 00000000 00:00 0                          [stack]
";
        assert_eq!(
            code_ranges(maps, Path::new("/opt/agent team/agent-team")),
            vec![(0x55d0a0100000, 0x55d0a0500000)]
        );
        assert!(code_ranges(maps, Path::new("/other")).is_empty());
    }

    /// KiB of this process's own code resident in its page tables.
    fn code_resident_kb() -> u64 {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut ours = false;
        let mut kb = 0;
        for line in smaps.lines() {
            if line.contains('-') && line.split(' ').nth(1).is_some_and(|p| p.len() == 4) {
                ours = line.starts_with(|c: char| c.is_ascii_hexdigit())
                    && line.split(' ').nth(1).is_some_and(|p| p.starts_with("r-x"))
                    && line.ends_with(exe.to_str().unwrap());
            } else if ours && let Some(v) = line.strip_prefix("Rss:") {
                kb += v.trim().trim_end_matches(" kB").parse::<u64>().unwrap();
            }
        }
        kb
    }

    #[test]
    fn released_code_leaves_the_page_tables_and_runs_on() {
        let before = code_resident_kb();
        release();
        let after = code_resident_kb();
        // What runs again (here: reading smaps) is mapped again, around each fault; without the
        // release nothing would leave, and the count could only grow.
        assert!(
            after < before,
            "code resident: {before} KiB before, {after} KiB after"
        );
        let v: Vec<u64> = (1..=10).collect();
        assert_eq!(v.iter().sum::<u64>(), 55);
        release();
        assert_eq!(format!("{}", v.len()), "10");
    }
}

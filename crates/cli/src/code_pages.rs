//! Letting go of the program pages a long-lived process ran or read only to start: the daemon
//! once it listens, `run` once its run has started. Their start-up (argument parsing, the team
//! file, the store's creation, the daemon's launch, the loader's own relocation tables) faults in
//! pages of the executable they never touch again, and a process keeps every page it mapped until
//! it exits. `MADV_DONTNEED` on the executable's segments that nobody writes (its code, and its
//! read-only data outside RELRO) takes them out of this process's page tables; the pages stay in
//! the page cache, and what the process goes on using is mapped again by its next fault (a minor
//! fault, from the same cache). Such a private file mapping's untouched pages read back as the
//! file's, so nothing is lost. RELRO (`.data.rel.ro`, the GOT) is read-only too once relocated,
//! but its pages are the loader's private copies: dropped, they would read back unrelocated, so
//! it is never part of a range, nor is anything when the program has text relocations.

/// The write bit of an ELF program header's `p_flags`.
const PF_W: u32 = 2;
/// `d_tag`s of the dynamic section that say the loader wrote into read-only segments.
const DT_NULL: i64 = 0;
const DT_TEXTREL: i64 = 22;
const DT_FLAGS: i64 = 30;
const DF_TEXTREL: u64 = 4;

/// One loadable segment of the running program, where the loader put it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    start: usize,
    end: usize,
    flags: u32,
}

/// What the program headers say about the running program.
#[derive(Debug, Default, PartialEq, Eq)]
struct Layout {
    loads: Vec<Segment>,
    relro: Option<(usize, usize)>,
    text_relocations: bool,
}

/// The ranges that can be dropped: segments the program never writes, minus any overlap with
/// RELRO, each rounded inward to whole pages (a page shared with another segment is kept).
fn clean_ranges(layout: &Layout, page: usize) -> Vec<(usize, usize)> {
    if layout.text_relocations || page == 0 {
        return Vec::new();
    }
    layout
        .loads
        .iter()
        .filter(|s| s.flags & PF_W == 0)
        .flat_map(|s| {
            // The part of the segment before RELRO and the part after it.
            match layout.relro {
                Some((rs, re)) if rs < s.end && re > s.start => {
                    vec![(s.start, rs.min(s.end)), (re.max(s.start), s.end)]
                }
                _ => vec![(s.start, s.end)],
            }
        })
        .filter_map(|(start, end)| {
            let start = start.div_ceil(page) * page;
            let end = end / page * page;
            (end > start).then_some((start, end))
        })
        .collect()
}

/// Reads the main program's program headers and dynamic section (the loader's first entry).
fn program_layout() -> Option<Layout> {
    #[allow(unsafe_code)]
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: libc::size_t,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader hands a valid `dl_phdr_info` whose `dlpi_phdr` points at
        // `dlpi_phnum` program headers of an object it mapped, and `data` is the `Option<Layout>`
        // `program_layout` passed; the dynamic section it points into is mapped and ends at
        // DT_NULL.
        unsafe {
            let (Some(info), Some(out)) = (info.as_ref(), data.cast::<Option<Layout>>().as_mut())
            else {
                return 1;
            };
            if info.dlpi_phdr.is_null() {
                return 1;
            }
            let bias = info.dlpi_addr as usize;
            let phdrs = std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum));
            let mut layout = Layout::default();
            for ph in phdrs {
                let start = bias.wrapping_add(ph.p_vaddr as usize);
                let end = start.wrapping_add(ph.p_memsz as usize);
                match ph.p_type {
                    libc::PT_LOAD => layout.loads.push(Segment {
                        start,
                        end,
                        flags: ph.p_flags,
                    }),
                    libc::PT_GNU_RELRO => layout.relro = Some((start, end)),
                    libc::PT_DYNAMIC => {
                        let mut entry = start as *const [u64; 2];
                        loop {
                            let [tag, value] = *entry;
                            let tag = tag as i64;
                            if tag == DT_NULL {
                                break;
                            }
                            if tag == DT_TEXTREL || (tag == DT_FLAGS && value & DF_TEXTREL != 0) {
                                layout.text_relocations = true;
                            }
                            entry = entry.add(1);
                        }
                    }
                    _ => {}
                }
            }
            *out = Some(layout);
        }
        // The main program comes first: nothing else is needed.
        1
    }
    let mut layout: Option<Layout> = None;
    #[allow(unsafe_code)]
    // SAFETY: `first` only reads what the loader gives it and writes `layout`, which outlives
    // the call.
    unsafe {
        libc::dl_iterate_phdr(Some(first), (&raw mut layout).cast());
    }
    layout
}

/// Takes this process's clean program pages out of its page tables (see the module docs).
/// Quietly does nothing where the program headers cannot be read.
pub(crate) fn release() {
    let Some(layout) = program_layout() else {
        return;
    };
    #[allow(unsafe_code)]
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(0);
    for (start, end) in clean_ranges(&layout, page) {
        #[allow(unsafe_code)]
        // SAFETY: the range lies inside one of the program's loaded segments that nobody writes
        // (no write permission, outside RELRO, no text relocations), in whole pages of it;
        // MADV_DONTNEED on such a private file mapping only drops page-table entries, and the
        // next access maps the same file pages again.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: u32 = 4;
    const PF_X: u32 = 1;

    fn seg(start: usize, end: usize, flags: u32) -> Segment {
        Segment { start, end, flags }
    }

    #[test]
    fn only_segments_nobody_writes_are_taken_in_whole_pages() {
        // lld's layout: read-only data, code, RELRO inside the first writable segment, data.
        let layout = Layout {
            loads: vec![
                seg(0x1000_0000, 0x105e_137c, R),
                seg(0x105e_2380, 0x11b9_30f0, R | PF_X),
                seg(0x11b9_40f0, 0x11c5_0000, R | PF_W),
                seg(0x11c5_0330, 0x11c5_68c8, R | PF_W),
            ],
            relro: Some((0x11b9_40f0, 0x11c5_0000)),
            text_relocations: false,
        };
        assert_eq!(
            clean_ranges(&layout, 0x1000),
            vec![(0x1000_0000, 0x105e_1000), (0x105e_3000, 0x11b9_3000)]
        );
        // Text relocations: the loader wrote into "read-only" segments, so nothing is taken.
        let written = Layout {
            text_relocations: true,
            ..layout
        };
        assert!(clean_ranges(&written, 0x1000).is_empty());
    }

    #[test]
    fn relro_is_cut_out_of_a_read_only_segment_that_holds_it() {
        let layout = Layout {
            loads: vec![seg(0x0, 0x10_0000, R)],
            relro: Some((0x4_0800, 0x6_0100)),
            text_relocations: false,
        };
        assert_eq!(
            clean_ranges(&layout, 0x1000),
            vec![(0x0, 0x4_0000), (0x6_1000, 0x10_0000)]
        );
    }

    #[test]
    fn the_running_programs_layout_is_read() {
        let layout = program_layout().expect("the loader lists the test program");
        assert!(!layout.text_relocations);
        let code = layout
            .loads
            .iter()
            .find(|s| s.flags & PF_X != 0)
            .expect("a code segment");
        let here = the_running_programs_layout_is_read as fn() as usize;
        assert!(code.start <= here && here < code.end, "{layout:?}");
        let (rs, re) = layout.relro.expect("RELRO");
        for (start, end) in clean_ranges(&layout, 4096) {
            assert!(
                end <= rs || start >= re,
                "{start:#x}-{end:#x} overlaps RELRO"
            );
        }
    }

    /// KiB of this process's own executable resident in its page tables: (code, read-only
    /// mappings).
    fn resident_kb() -> (u64, u64) {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let (mut perms, mut code, mut data) = (String::new(), 0, 0);
        for line in smaps.lines() {
            if line.contains('-') && line.split(' ').nth(1).is_some_and(|p| p.len() == 4) {
                perms = if line.ends_with(exe.to_str().unwrap()) {
                    line.split(' ').nth(1).unwrap_or_default().to_string()
                } else {
                    String::new()
                };
            } else if let Some(v) = line.strip_prefix("Rss:") {
                let kb = v.trim().trim_end_matches(" kB").parse::<u64>().unwrap();
                match perms.as_str() {
                    "r-xp" => code += kb,
                    "r--p" => data += kb,
                    _ => {}
                }
            }
        }
        (code, data)
    }

    #[test]
    fn released_pages_leave_the_page_tables_and_the_program_runs_on() {
        static TABLE: [u64; 4096] = {
            let mut t = [0; 4096];
            let mut i = 0;
            while i < t.len() {
                t[i] = i as u64 * 3;
                i += 1;
            }
            t
        };
        let sum: u64 = TABLE.iter().sum();
        let (code, data) = resident_kb();
        release();
        let (code_after, data_after) = resident_kb();
        // What runs or is read again (here: reading smaps) is mapped again, around each fault;
        // without the release nothing would leave, and the counts could only grow.
        assert!(
            code_after < code,
            "code resident: {code} KiB, then {code_after}"
        );
        assert!(
            data_after < data,
            "read-only data resident: {data} KiB, then {data_after}"
        );
        // Relocated data (vtables, string slices in statics) and constants read back intact.
        assert_eq!(TABLE.iter().sum::<u64>(), sum);
        let v: Vec<String> = (1..=10).map(|i| format!("{i}")).collect();
        assert_eq!(v.join(","), "1,2,3,4,5,6,7,8,9,10");
        release();
        let e: Box<dyn std::error::Error> = "still relocated".into();
        assert_eq!(e.to_string(), "still relocated");
    }
}

//! Hash-free symbol names (the link order's lists) and their resolution against a build's
//! symbols. No dependency beyond std: the bench includes this file too (`#[path]`), to say how
//! many listed names the binaries it measures have.

use std::collections::{HashMap, HashSet};

/// A symbol's hash-free name: what stays of it from one toolchain or dependency version to the
/// next. A legacy-mangled name loses its hash (`…17h0123456789abcdefE` → `…`); a v0-mangled one
/// its crates' disambiguators (`Cs<base62>_` → `C`) and, since those shift them, its
/// back-references' offsets (`B<base62>_` → `B_`); any loses a ThinLTO suffix (`.llvm.<digits>`).
/// Other names (C functions) stay as they are.
pub fn key(symbol: &str) -> String {
    let symbol = match symbol.split_once(".llvm.") {
        Some((name, n)) if n.bytes().all(|c| c.is_ascii_digit()) => name,
        _ => symbol,
    };
    let n = symbol.len();
    if symbol.starts_with("_ZN")
        && n > 20
        && symbol.ends_with('E')
        && symbol.get(n - 20..n - 17) == Some("17h")
        && symbol
            .get(n - 17..n - 1)
            .is_some_and(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
    {
        return symbol[..n - 20].to_string();
    }
    if !symbol.starts_with("_R") {
        return symbol.to_string();
    }
    // `C` or `B`, then base62 digits and `_`: a disambiguator (after `Cs`) or a back-reference.
    let b = symbol.as_bytes();
    let mut out = String::with_capacity(symbol.len());
    let mut i = 0;
    while i < b.len() {
        let (c, rest) = (b[i], &b[i + 1..]);
        let digits = |from: usize| {
            rest[from..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .count()
        };
        if c == b'C' && rest.first() == Some(&b's') {
            let d = digits(1);
            if rest.get(1 + d) == Some(&b'_') {
                out.push('C');
                i += 1 + 1 + d + 1;
                continue;
            }
        }
        if c == b'B' {
            let d = digits(0);
            if rest.get(d) == Some(&b'_') {
                out.push_str("B_");
                i += 1 + d + 1;
                continue;
            }
        }
        out.push(char::from(c));
        i += 1;
    }
    out
}

/// The hash-free list of order files' symbols: each name's [`key`], in the files' order, once.
pub fn hash_free<'a>(files: impl IntoIterator<Item = &'a str>) -> String {
    let mut seen = HashSet::new();
    let mut out = String::new();
    for line in files
        .into_iter()
        .flat_map(str::lines)
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let k = key(line);
        if seen.insert(k.clone()) {
            out.push_str(&k);
            out.push('\n');
        }
    }
    out
}

/// The order file for a binary with `symbols`: each listed name's symbols (all of them when a
/// generic function has several instances), in the list's order, each once; with how many of the
/// list's names the binary has.
pub fn resolve<'a>(list: &str, symbols: impl IntoIterator<Item = &'a str>) -> (String, usize) {
    let mut by_key: HashMap<String, Vec<&str>> = HashMap::new();
    for s in symbols {
        by_key.entry(key(s)).or_default().push(s);
    }
    let (mut out, mut found, mut seen) = (String::new(), 0, HashSet::new());
    for name in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some(real) = by_key.get(name) else {
            continue;
        };
        found += 1;
        for s in real {
            if seen.insert(*s) {
                out.push_str(s);
                out.push('\n');
            }
        }
    }
    (out, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_name_loses_its_hash_and_thinlto_suffix_only() {
        assert_eq!(
            key("_ZN4core3fmt5write17h0123456789abcdefE"),
            "_ZN4core3fmt5write"
        );
        assert_eq!(
            key("_ZN4core3fmt5write17h0123456789abcdefE.llvm.1234"),
            "_ZN4core3fmt5write"
        );
        assert_eq!(key("sqlite3_step"), "sqlite3_step");
        assert_eq!(
            key("_ZN4core3fmt5write17hnothexnothexnoE"),
            "_ZN4core3fmt5write17hnothexnothexnoE"
        );
    }

    #[test]
    fn a_v0_name_is_the_same_under_another_toolchain_s_disambiguators() {
        let old = "_RNvXsZ_NtCslNYArtu3iFV_5alloc6stringNtB5_6StringNtNtCsgEmfK2I1SDS_4core3fmt5Write10write_char";
        let new = "_RNvXsZ_NtCs9x_5alloc6stringNtB5_6StringNtNtCsAbCdEfGhIjK12_4core3fmt5Write10write_char";
        assert_eq!(key(old), key(new));
        assert_ne!(
            key(old),
            key("_RNvXsZ_NtCs9x_5alloc6stringNtB5_6StringNtNtCsAb_4core3fmt5Write9write_str")
        );
    }

    #[test]
    fn the_list_is_resolved_to_the_build_s_symbols_in_its_order() {
        let list = hash_free([
            "_ZN1a1f17h0000000000000001E\n_ZN1a1g17h0000000000000002E\n",
            "_ZN1a1f17h0000000000000003E\nmain\n_ZN1a4gone17h0000000000000004E\n",
        ]);
        assert_eq!(list, "_ZN1a1f\n_ZN1a1g\nmain\n_ZN1a4gone\n");
        let built = [
            "main",
            "_ZN1a1g17hffffffffffffffffE",
            "_ZN1a1f17heeeeeeeeeeeeeeeeE",
            "_ZN1a1f17hddddddddddddddddE.llvm.7",
            "_ZN1a5other17hccccccccccccccccE",
        ];
        let (order, found) = resolve(&list, built);
        assert_eq!(found, 3);
        assert_eq!(
            order,
            "_ZN1a1f17heeeeeeeeeeeeeeeeE\n_ZN1a1f17hddddddddddddddddE.llvm.7\n\
             _ZN1a1g17hffffffffffffffffE\nmain\n"
        );
    }
}

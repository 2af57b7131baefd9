//! Reading a shell line the way permissions need to: the commands in it, what makes it
//! unfit for any allowance by pattern, and the files it visibly writes.
//!
//! None of this is a shell parser that a hostile line cannot fool; each reading errs on the
//! side that asks more: cutting inside quotes too only makes an allowance harder to reach and a
//! denial easier, and a write target the reader cannot pin down counts as a protected one.

use std::fmt;

/// Quotes `s` for `sh` as one word: as it is when it is made only of characters the shell
/// takes literally, else in single quotes with embedded single quotes escaped.
pub fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The commands inside a shell command line, as permission patterns see them. The line is cut
/// at the shell's separators and substitutions (`;` `&` `|` newline `(` `)` `` ` ``, so `&&`,
/// `||`, `$(…)` and `<(…)` too; the `&` of a redirection such as `2>&1` or `&>` is not a cut),
/// and each piece is trimmed with runs of whitespace made one space; empty pieces are dropped.
pub fn command_parts(cmd: &str) -> Vec<String> {
    let cs: Vec<char> = cmd.replace("$(", "(").chars().collect();
    let mut parts = Vec::new();
    let mut cur = String::new();
    for (i, &c) in cs.iter().enumerate() {
        let cut = match c {
            ';' | '|' | '\n' | '\r' | '(' | ')' | '`' => true,
            '&' => {
                let prev = i.checked_sub(1).and_then(|j| cs.get(j));
                !matches!(prev, Some('>') | Some('<')) && cs.get(i + 1) != Some(&'>')
            }
            _ => false,
        };
        if cut {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
        .iter()
        .map(|p| squeeze(p))
        .filter(|p| !p.is_empty())
        .collect()
}

/// `s` trimmed, with every run of whitespace made one space.
pub fn squeeze(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Why a shell line can never be allowed by a pattern (it may still be denied by one, or
/// allowed by the rule for the whole tool).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hazard {
    /// Output redirected to a file (`>`, `>>`, `>|`, `&>`, `2>`, `<>`), other than
    /// `/dev/null` or another descriptor (`2>&1`).
    Redirection(String),
    /// A command substitution: `$(…)` or backticks.
    Substitution,
    /// A process substitution: `<(…)` or `>(…)`.
    ProcessSubstitution,
    /// Whitespace outside ASCII (U+00A0 and the like) or an invisible format character: it
    /// looks like a space, or like nothing, and is neither to the shell.
    OddSpace(char),
    /// A control character other than tab and newline.
    Control(char),
}

impl fmt::Display for Hazard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hazard::Redirection(t) => write!(f, "output redirection to {t:?}"),
            Hazard::Substitution => write!(f, "a command substitution ($(…) or backticks)"),
            Hazard::ProcessSubstitution => write!(f, "a process substitution (<(…) or >(…))"),
            Hazard::OddSpace(c) => {
                write!(f, "the character U+{:04X} (not a plain space)", *c as u32)
            }
            Hazard::Control(c) => write!(f, "the control character U+{:04X}", *c as u32),
        }
    }
}

/// Characters that show as a space or as nothing: non-ASCII whitespace, zero-width characters,
/// bidirectional controls and the soft hyphen.
fn odd_space(c: char) -> bool {
    (c.is_whitespace() && !c.is_ascii())
        || matches!(c, '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// The first reason, if any, why `line` can never be allowed by a pattern. Quotes are
/// respected for redirections (`grep ">" f` redirects nothing) but not for substitutions inside
/// double quotes, which the shell runs; odd characters count anywhere.
pub fn hazard(line: &str) -> Option<Hazard> {
    let cs: Vec<char> = line.chars().collect();
    if let Some(&c) = cs.iter().find(|c| odd_space(**c)) {
        return Some(Hazard::OddSpace(c));
    }
    if let Some(&c) = cs
        .iter()
        .find(|c| c.is_control() && **c != '\t' && **c != '\n')
    {
        return Some(Hazard::Control(c));
    }
    let mut i = 0;
    let (mut single, mut double) = (false, false);
    while i < cs.len() {
        let c = cs[i];
        let next = cs.get(i + 1).copied();
        if single {
            single = c != '\'';
            i += 1;
            continue;
        }
        match c {
            '\\' => i += 1,
            '\'' if !double => single = true,
            '"' => double = !double,
            '`' => return Some(Hazard::Substitution),
            '$' if next == Some('(') => return Some(Hazard::Substitution),
            '<' | '>' if !double && next == Some('(') => return Some(Hazard::ProcessSubstitution),
            '<' if !double && next == Some('>') => {
                return Some(Hazard::Redirection(target_at(&cs, i + 2)));
            }
            '>' if !double => {
                let mut j = i + 1;
                if matches!(cs.get(j), Some('>') | Some('|')) {
                    j += 1;
                }
                let dup = cs.get(j) == Some(&'&');
                if dup {
                    j += 1;
                }
                let t = target_at(&cs, j);
                let harmless = t == "/dev/null"
                    || (dup
                        && (t == "-" || (!t.is_empty() && t.chars().all(|c| c.is_ascii_digit()))));
                if !harmless {
                    return Some(Hazard::Redirection(t));
                }
                i = j;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The word that starts at `cs[i]` after blanks, with simple quotes removed.
fn target_at(cs: &[char], mut i: usize) -> String {
    while matches!(cs.get(i), Some(' ') | Some('\t')) {
        i += 1;
    }
    let mut out = String::new();
    let mut quote = None;
    while let Some(&c) = cs.get(i) {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | '(' | ')') => break,
            (_, c) => out.push(c),
        }
        i += 1;
    }
    out
}

/// How much of a word the shell leaves as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordKind {
    /// Exactly its text.
    Literal,
    /// A file-name pattern (`*`, `?`, `[` outside quotes): it names existing files matching it;
    /// a part that does not start with `.` never matches a dot file.
    Glob,
    /// Unknown until run: a variable, a substitution, braces, or a directory changed by a `cd`
    /// that could not be followed. (A leading `~` is kept as written: the home directory.)
    Unknown,
}

/// A word of a shell line after quote removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    /// Its text as the shell would use it, when [`WordKind::Literal`].
    pub text: String,
    /// Whether the text is final.
    pub kind: WordKind,
}

impl Word {
    fn new() -> Self {
        Word {
            text: String::new(),
            kind: WordKind::Literal,
        }
    }

    fn taint(&mut self, kind: WordKind) {
        if self.kind != WordKind::Unknown {
            self.kind = kind;
        }
    }

    /// This word (a path) seen from directory `base` (a path of the same line; `None`: where
    /// the line starts).
    fn under(&self, base: &Option<Word>) -> Word {
        match base {
            Some(b) if !self.text.starts_with('/') && !self.text.starts_with('~') => Word {
                text: format!("{}/{}", b.text, self.text),
                kind: if b.kind == WordKind::Unknown {
                    WordKind::Unknown
                } else {
                    self.kind
                },
            },
            _ => self.clone(),
        }
    }
}

#[derive(Debug)]
enum Tok {
    Word(Word),
    Sep,
    /// A redirection operator: whether it writes, whether it was `>&`/`<&`.
    Redir {
        out: bool,
        dup: bool,
    },
}

/// Ends the word being read, if any, as a token of its own.
fn flush(cur: &mut Option<Word>, toks: &mut Vec<Tok>) {
    if let Some(w) = cur.take() {
        toks.push(Tok::Word(w));
    }
}

/// Ends the word before a redirection: a leading descriptor number (`2>`) is not a word.
fn drop_fd(cur: &mut Option<Word>, toks: &mut Vec<Tok>) {
    match cur {
        Some(w)
            if w.kind == WordKind::Literal
                && !w.text.is_empty()
                && w.text.chars().all(|c| c.is_ascii_digit()) =>
        {
            *cur = None
        }
        _ => flush(cur, toks),
    }
}

/// Reads a `>`-redirection starting at `cs[i]` (`>`, `>>`, `>|`, `>&`); returns where it ends.
fn redirect_out(cs: &[char], mut i: usize) -> (usize, Tok) {
    i += 1;
    if matches!(cs.get(i), Some('>') | Some('|')) {
        i += 1;
    }
    let dup = cs.get(i) == Some(&'&');
    if dup {
        i += 1;
    }
    (i, Tok::Redir { out: true, dup })
}

/// Reads a `<`-redirection starting at `cs[i]` (`<`, `<<`, `<>`, `<&`); returns where it ends.
fn redirect_in(cs: &[char], mut i: usize) -> (usize, Tok) {
    i += 1;
    let mut out = false;
    while cs.get(i) == Some(&'<') {
        i += 1;
    }
    if cs.get(i) == Some(&'>') {
        out = true;
        i += 1;
    }
    let dup = cs.get(i) == Some(&'&');
    if dup {
        i += 1;
    }
    (i, Tok::Redir { out, dup })
}

/// Reads a `'…'` string starting at the quote `cs[i]` into `w`; returns where it ends.
fn single_quoted(cs: &[char], mut i: usize, w: &mut Word) -> usize {
    i += 1;
    while let Some(&q) = cs.get(i) {
        i += 1;
        if q == '\'' {
            break;
        }
        w.text.push(q);
    }
    i
}

/// Reads a `"…"` string starting at the quote `cs[i]` into `w` (a `$` or `` ` `` inside makes
/// it unknown); returns where it ends.
fn double_quoted(cs: &[char], mut i: usize, w: &mut Word) -> usize {
    i += 1;
    while let Some(&q) = cs.get(i) {
        i += 1;
        match q {
            '"' => break,
            '\\' => {
                if let Some(&e) = cs.get(i) {
                    if !matches!(e, '"' | '\\' | '$' | '`' | '\n') {
                        w.text.push('\\');
                    }
                    w.text.push(e);
                    i += 1;
                }
            }
            '$' | '`' => {
                w.taint(WordKind::Unknown);
                w.text.push(q);
            }
            _ => w.text.push(q),
        }
    }
    i
}

/// Splits a shell line into words, command separators and redirections.
fn lex(line: &str) -> Vec<Tok> {
    let cs: Vec<char> = line.chars().collect();
    let mut toks = Vec::new();
    let mut cur: Option<Word> = None;
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        let next = cs.get(i + 1).copied();
        match c {
            ' ' | '\t' => {
                flush(&mut cur, &mut toks);
                i += 1;
            }
            '\n' | '\r' | ';' | '(' | ')' | '`' | '{' | '}'
                if c != '{' && c != '}' || cur.is_none() =>
            {
                // `{`/`}` group commands only as words of their own; `a{b,c}` is a brace word.
                if c == '`'
                    && let Some(w) = cur.as_mut()
                {
                    w.taint(WordKind::Unknown);
                }
                flush(&mut cur, &mut toks);
                toks.push(Tok::Sep);
                i += 1;
            }
            '|' => {
                flush(&mut cur, &mut toks);
                toks.push(Tok::Sep);
                i += if matches!(next, Some('|') | Some('&')) {
                    2
                } else {
                    1
                };
            }
            '&' if next == Some('>') => {
                flush(&mut cur, &mut toks);
                i += if cs.get(i + 2) == Some(&'>') { 3 } else { 2 };
                toks.push(Tok::Redir {
                    out: true,
                    dup: false,
                });
            }
            '&' => {
                flush(&mut cur, &mut toks);
                toks.push(Tok::Sep);
                i += if next == Some('&') { 2 } else { 1 };
            }
            '>' | '<' if next == Some('(') => {
                flush(&mut cur, &mut toks);
                toks.push(Tok::Sep);
                i += 2;
            }
            '>' | '<' => {
                drop_fd(&mut cur, &mut toks);
                let (end, tok) = if c == '>' {
                    redirect_out(&cs, i)
                } else {
                    redirect_in(&cs, i)
                };
                toks.push(tok);
                i = end;
            }
            '\'' => i = single_quoted(&cs, i, cur.get_or_insert_with(Word::new)),
            '"' => i = double_quoted(&cs, i, cur.get_or_insert_with(Word::new)),
            '\\' => {
                let w = cur.get_or_insert_with(Word::new);
                if let Some(e) = next {
                    w.text.push(e);
                }
                i += 2;
            }
            '$' => {
                let w = cur.get_or_insert_with(Word::new);
                w.taint(WordKind::Unknown);
                if next == Some('(') {
                    // The substitution's own commands are read as commands of the line.
                    flush(&mut cur, &mut toks);
                    toks.push(Tok::Sep);
                    i += 2;
                } else {
                    w.text.push('$');
                    i += 1;
                }
            }
            _ => {
                let w = cur.get_or_insert_with(Word::new);
                match c {
                    '*' | '?' | '[' => w.taint(WordKind::Glob),
                    '{' => w.taint(WordKind::Unknown),
                    _ => {}
                }
                w.text.push(c);
                i += 1;
            }
        }
    }
    flush(&mut cur, &mut toks);
    toks
}

/// One simple command: its words and the files its redirections write.
struct Simple {
    words: Vec<Word>,
    writes: Vec<Word>,
}

fn simple_commands(line: &str) -> Vec<Simple> {
    let mut out = Vec::new();
    let mut cur = Simple {
        words: vec![],
        writes: vec![],
    };
    let mut toks = lex(line).into_iter().peekable();
    while let Some(t) = toks.next() {
        match t {
            Tok::Word(w) => cur.words.push(w),
            Tok::Sep => {
                out.push(std::mem::replace(
                    &mut cur,
                    Simple {
                        words: vec![],
                        writes: vec![],
                    },
                ));
            }
            Tok::Redir { out: writes, dup } => {
                let target = match toks.peek() {
                    Some(Tok::Word(_)) => match toks.next() {
                        Some(Tok::Word(w)) => Some(w),
                        _ => None,
                    },
                    _ => None,
                };
                if !writes {
                    continue;
                }
                match target {
                    Some(w)
                        if dup
                            && w.kind == WordKind::Literal
                            && (w.text == "-"
                                || (!w.text.is_empty()
                                    && w.text.chars().all(|c| c.is_ascii_digit()))) => {}
                    Some(w) => cur.writes.push(w),
                    None => cur.writes.push(Word {
                        text: "?".into(),
                        kind: WordKind::Unknown,
                    }),
                }
            }
        }
    }
    out.push(cur);
    out.retain(|s| !s.words.is_empty() || !s.writes.is_empty());
    out
}

/// Commands that run the rest of their words as a command.
const WRAPPERS: &[&str] = &[
    "sudo", "doas", "env", "command", "builtin", "exec", "nohup", "time", "nice", "ionice",
    "stdbuf", "if", "elif", "while", "until", "then", "do", "else", "!",
];

fn is_assignment(w: &Word) -> bool {
    match w.text.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// The words after the options (`-x`, `--long`, and after `--` everything).
fn operands(words: &[Word]) -> Vec<Word> {
    let mut out = Vec::new();
    let mut opts = true;
    for w in words {
        if opts && w.text == "--" {
            opts = false;
        } else if opts && w.text.starts_with('-') && w.text.len() > 1 {
        } else {
            out.push(w.clone());
        }
    }
    out
}

/// The value of option `short` (`-t X`, `-tX`) or `long` (`--target X`, `--target=X`).
fn option_value(words: &[Word], short: &str, long: &str) -> Option<Word> {
    let mut it = words.iter();
    while let Some(w) = it.next() {
        if w.text == short || w.text == long {
            return it.next().cloned();
        }
        if let Some(v) = w.text.strip_prefix(&format!("{long}=")) {
            return Some(Word {
                text: v.to_string(),
                kind: w.kind,
            });
        }
        if short.len() == 2
            && let Some(v) = w.text.strip_prefix(short)
            && !v.is_empty()
            && !w.text.starts_with("--")
        {
            return Some(Word {
                text: v.to_string(),
                kind: w.kind,
            });
        }
    }
    None
}

fn lit(text: &str) -> Word {
    Word {
        text: text.to_string(),
        kind: WordKind::Literal,
    }
}

/// What `git ARGS` writes that decides what git runs: its configuration.
fn git_writes(args: &[Word]) -> Vec<Word> {
    let mut dir: Option<Word> = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i].text;
        if a == "-C" {
            dir = args.get(i + 1).cloned();
            i += 2;
        } else if a == "-c" || a == "--git-dir" || a == "--work-tree" || a == "--namespace" {
            i += 2;
        } else if a.starts_with('-') {
            i += 1;
        } else {
            break;
        }
    }
    let Some(sub) = args.get(i) else {
        return vec![];
    };
    let rest = &args[i + 1..];
    if sub.text != "config" {
        return vec![];
    }
    let has = |o: &str| rest.iter().any(|w| w.text == o);
    let reads = [
        "--get",
        "--get-all",
        "--get-regexp",
        "--get-urlmatch",
        "-l",
        "--list",
        "get",
        "list",
    ];
    if rest.iter().any(|w| reads.contains(&w.text.as_str())) {
        return vec![];
    }
    if has("--global") || has("--system") {
        return vec![lit("~/.gitconfig")];
    }
    if let Some(f) = option_value(rest, "-f", "--file") {
        return vec![f.under(&dir)];
    }
    vec![lit(".git/config").under(&dir)]
}

/// What one simple command writes besides its redirections, by what the command is.
fn command_writes(words: &[Word]) -> Vec<Word> {
    let mut i = 0;
    while let Some(w) = words.get(i) {
        let name = w.text.rsplit('/').next().unwrap_or_default();
        if is_assignment(w) || WRAPPERS.contains(&name) || (i > 0 && w.text.starts_with('-')) {
            i += 1;
        } else if name == "timeout" {
            // `timeout [options] DURATION COMMAND`; `-s SIGNAL` and `-k DURATION` take a value.
            i += 1;
            while let Some(o) = words.get(i).filter(|w| w.text.starts_with('-')) {
                i += if o.text == "-s" || o.text == "-k" {
                    2
                } else {
                    1
                };
            }
            i += 1;
        } else {
            break;
        }
    }
    let Some(cmd) = words.get(i) else {
        return vec![];
    };
    let args = &words[i + 1..];
    let name = cmd.text.rsplit('/').next().unwrap_or_default();
    if cmd.kind != WordKind::Literal {
        return vec![];
    }
    let ops = operands(args);
    match name {
        "tee" | "touch" | "truncate" | "rm" | "rmdir" | "mkdir" | "unlink" | "shred" | "ln"
        | "chmod" | "chown" | "chgrp" | "setfacl" => ops,
        "cp" | "mv" | "install" | "rsync" | "scp" => {
            match option_value(args, "-t", "--target-directory") {
                Some(t) => vec![t],
                None if ops.len() >= 2 => ops.last().cloned().into_iter().collect(),
                None => vec![],
            }
        }
        "dd" => args
            .iter()
            .filter_map(|w| {
                w.text.strip_prefix("of=").map(|t| Word {
                    text: t.into(),
                    kind: w.kind,
                })
            })
            .collect(),
        "sed" | "perl" | "gsed"
            if args
                .iter()
                .any(|w| w.text.starts_with("-i") || w.text.starts_with("--in-place")) =>
        {
            ops
        }
        "git" => git_writes(args),
        _ => vec![],
    }
}

/// The files a shell line visibly writes, each as the line names it, seen from where the line
/// starts (`cd DIR` is followed; a `cd` that cannot be followed makes what comes after it
/// [`WordKind::Unknown`]). Found: redirections (`>`, `>>`, `>|`, `&>`, `2>`, `<>`, not to another
/// descriptor), the files of `tee`, `touch`, `truncate`, `rm`, `rmdir`, `mkdir`, `unlink`,
/// `shred`, `ln` (both ends), `chmod`, `chown`, `chgrp`, `setfacl`, `sed -i`, `perl -i`, the
/// destination of `cp`, `mv`, `install`, `rsync`, `scp`, `dd of=`, and the configuration file
/// that `git config` writes (`~/.gitconfig` with `--global` or `--system`), through `sudo`,
/// `env`, `nice`, `timeout` and the like. What another program writes is not found: this is a
/// net for the obvious, not a sandbox.
pub fn write_targets(line: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut base: Option<Word> = None;
    for s in simple_commands(line) {
        out.extend(s.writes.iter().map(|w| w.under(&base)));
        out.extend(command_writes(&s.words).iter().map(|w| w.under(&base)));
        let first = s
            .words
            .iter()
            .position(|w| !is_assignment(w))
            .and_then(|i| s.words.get(i..));
        if let Some([cd, rest @ ..]) = first
            && (cd.text == "cd" || cd.text == "pushd")
        {
            let ops = operands(rest);
            base = match ops.first() {
                Some(d) if d.kind == WordKind::Literal && d.text != "-" => {
                    if d.text.starts_with('/') {
                        Some(d.clone())
                    } else {
                        Some(d.under(&base))
                    }
                }
                _ => Some(Word {
                    text: "?".into(),
                    kind: WordKind::Unknown,
                }),
            };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(line: &str) -> Vec<(String, WordKind)> {
        write_targets(line)
            .into_iter()
            .map(|w| (w.text, w.kind))
            .collect()
    }

    fn lits(names: &[&str]) -> Vec<(String, WordKind)> {
        names
            .iter()
            .map(|n| (n.to_string(), WordKind::Literal))
            .collect()
    }

    #[test]
    fn shell_lines_are_cut_into_commands() {
        assert_eq!(
            command_parts("cargo test && rm -rf ~; echo $(id) | tee x\n  ls   -l "),
            vec!["cargo test", "rm -rf ~", "echo", "id", "tee x", "ls -l"]
        );
        assert_eq!(command_parts("a `b` c"), vec!["a", "b", "c"]);
        assert!(command_parts(" ; && ").is_empty());
        assert_eq!(
            command_parts("make 2>&1 & make &> log &&ls"),
            vec!["make 2>&1", "make &> log", "ls"]
        );
    }

    #[test]
    fn hazards() {
        for (line, h) in [
            ("echo x > f", Hazard::Redirection("f".into())),
            ("echo x >> f", Hazard::Redirection("f".into())),
            ("echo x >| f", Hazard::Redirection("f".into())),
            ("make &> log", Hazard::Redirection("log".into())),
            ("make 2> err", Hazard::Redirection("err".into())),
            ("make >& log", Hazard::Redirection("log".into())),
            ("cat <> f", Hazard::Redirection("f".into())),
            (
                "echo x >'.git/config'",
                Hazard::Redirection(".git/config".into()),
            ),
            ("echo $(id)", Hazard::Substitution),
            ("echo \"$(id)\"", Hazard::Substitution),
            ("echo `id`", Hazard::Substitution),
            ("diff <(ls a) b", Hazard::ProcessSubstitution),
            ("git\u{a0}status", Hazard::OddSpace('\u{a0}')),
            ("git status\u{200b}", Hazard::OddSpace('\u{200b}')),
            ("git status\u{2003}-s", Hazard::OddSpace('\u{2003}')),
            ("ls\r", Hazard::Control('\r')),
            ("ls\u{1b}[2K", Hazard::Control('\u{1b}')),
            ("ls\u{7f}", Hazard::Control('\u{7f}')),
        ] {
            assert_eq!(hazard(line), Some(h), "{line:?}");
        }
        for fine in [
            "cargo test 2>&1",
            "cargo test >&2",
            "cargo test 2>&-",
            "cargo test > /dev/null 2>&1",
            "cargo test &>/dev/null",
            "grep '>' src/main.rs",
            "grep \">\" src/main.rs",
            "echo '$(id)' '`x`'",
            "wc -l < input.txt",
            "cargo test && ls\n\tmake",
            "echo ünïcödé",
        ] {
            assert_eq!(hazard(fine), None, "{fine:?}");
        }
    }

    #[test]
    fn redirection_targets_are_found() {
        assert_eq!(targets("echo x > a"), lits(&["a"]));
        assert_eq!(targets("echo x>>a 2>b"), lits(&["a", "b"]));
        assert_eq!(targets("make &> log; cat <> f"), lits(&["log", "f"]));
        assert_eq!(targets("make >& log"), lits(&["log"]));
        assert_eq!(targets("make 2>&1 >/dev/null"), lits(&["/dev/null"]));
        assert_eq!(targets("echo '>' x; wc -l < f"), lits(&[]));
        assert_eq!(
            targets("echo x > \".git/con\"'fig'"),
            lits(&[".git/config"])
        );
        assert_eq!(targets("echo x > .git\\/config"), lits(&[".git/config"]));
        assert_eq!(targets("echo x >"), vec![("?".into(), WordKind::Unknown)]);
        assert_eq!(
            targets("echo x > $F"),
            vec![("$F".into(), WordKind::Unknown)]
        );
        assert_eq!(targets("echo x > ~/.bashrc"), lits(&["~/.bashrc"]));
        assert_eq!(
            targets("cd sub && echo x > ~/.bashrc"),
            lits(&["~/.bashrc"])
        );
        assert_eq!(
            targets("echo x > *.txt"),
            vec![("*.txt".into(), WordKind::Glob)]
        );
        // Inside a substitution, too.
        assert_eq!(
            targets("echo $(echo x > .git/config)"),
            lits(&[".git/config"])
        );
    }

    #[test]
    fn obvious_writes_are_found() {
        assert_eq!(targets("tee -a a b < x"), lits(&["a", "b"]));
        assert_eq!(
            targets("ls | tee .git/hooks/pre-commit"),
            lits(&[".git/hooks/pre-commit"])
        );
        assert_eq!(targets("cp -r a b dest"), lits(&["dest"]));
        assert_eq!(targets("cp -t dest a b"), lits(&["dest"]));
        assert_eq!(targets("mv --target-directory=d a"), lits(&["d"]));
        assert_eq!(targets("sudo -E mv a .git/config"), lits(&[".git/config"]));
        assert_eq!(targets("X=1 env Y=2 cp a b"), lits(&["b"]));
        assert_eq!(targets("timeout -s 9 5 cp a b"), lits(&["b"]));
        assert_eq!(targets("/bin/cp a b"), lits(&["b"]));
        assert_eq!(targets("ln -s .git/config c"), lits(&[".git/config", "c"]));
        assert_eq!(
            targets("chmod +x .git/hooks/x"),
            lits(&["+x", ".git/hooks/x"])
        );
        assert_eq!(targets("sed -i s/a/b/ f"), lits(&["s/a/b/", "f"]));
        assert_eq!(targets("sed s/a/b/ f"), lits(&[]));
        assert_eq!(targets("dd if=a of=b"), lits(&["b"]));
        assert_eq!(targets("cp a"), lits(&[]));
        assert_eq!(targets("cat a b"), lits(&[]));
        assert_eq!(targets("git status -s"), lits(&[]));
    }

    #[test]
    fn git_config_writes_git_config() {
        assert_eq!(
            targets("git config core.fsmonitor 'sh evil.sh'"),
            lits(&[".git/config"])
        );
        assert_eq!(
            targets("git -C sub config alias.x '!sh'"),
            lits(&["sub/.git/config"])
        );
        assert_eq!(
            targets("git config --global alias.st status"),
            lits(&["~/.gitconfig"])
        );
        assert_eq!(targets("git config -f x.cfg a.b c"), lits(&["x.cfg"]));
        assert_eq!(targets("git config --get core.fsmonitor"), lits(&[]));
        assert_eq!(targets("git config --list"), lits(&[]));
    }

    #[test]
    fn cd_is_followed() {
        assert_eq!(targets("cd sub && echo x > f"), lits(&["sub/f"]));
        assert_eq!(
            targets("cd sub; cd ../.git; cp a config"),
            lits(&["sub/../.git/config"])
        );
        assert_eq!(targets("cd /tmp && echo > f"), lits(&["/tmp/f"]));
        assert_eq!(targets("cd sub && echo x > /abs"), lits(&["/abs"]));
        assert_eq!(
            targets("cd $D && echo > f"),
            vec![("?/f".into(), WordKind::Unknown)]
        );
        assert_eq!(
            targets("cd && echo > f"),
            vec![("?/f".into(), WordKind::Unknown)]
        );
    }
}

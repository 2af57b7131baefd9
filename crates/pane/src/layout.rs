//! The team window's geometry: where the leader, the teammates and the board go in a window of
//! a given size, written as a tmux layout string (`select-layout` takes it as it is). Pure
//! arithmetic, so every terminal size can be checked without a terminal.
//!
//! The leader takes the left part (the largest pane); the teammates share the right part in as
//! few columns as keep each pane at least [`MIN_ROWS`] tall; the board sits under them, at least
//! [`BOARD_MIN_COLS`] wide. When the window has no room for a readable board beside every
//! teammate, the plan says so and the board goes to a window of its own.

use std::fmt::Write as _;

/// The fewest rows (the border's title line included) an agent's cell gets before its
/// column is split in two.
pub const MIN_ROWS: usize = 5;
/// The fewest columns an agent's cell gets when the right part is split into columns.
pub const MIN_COLS: usize = 20;
/// The fewest columns the board is drawn in beside the team; below that it gets a window.
pub const BOARD_MIN_COLS: usize = 40;
/// The fewest rows the board gets beside the team.
const BOARD_MIN_ROWS: usize = 8;
/// The most rows the board takes from the teammates.
const BOARD_MAX_ROWS: usize = 24;

/// What a window's panes are, by tmux pane number (`%N` without the `%`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panes {
    /// The leader's pane (or the window's first pane when no pane is marked as the leader's).
    pub leader: u32,
    /// Every other agent's pane, in the window's order.
    pub agents: Vec<u32>,
    /// The board's pane, wherever it is now.
    pub board: Option<u32>,
}

/// Where each pane goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The tmux layout string for the team window (checksum included).
    pub layout: String,
    /// Whether the board is in the team window (false: it has a window of its own).
    pub board_inside: bool,
}

/// A cell of a tmux layout: a pane, or cells side by side (`{}`) or stacked (`[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Cell {
    Pane(u32),
    /// Children left to right, with their widths.
    Row(Vec<(usize, Cell)>),
    /// Children top to bottom, with their heights.
    Column(Vec<(usize, Cell)>),
}

/// Splits `total` cells into `parts` sizes with a one-cell border between each two, the
/// remainder going to the first ones. `None` when a part would be empty.
fn split(total: usize, parts: usize) -> Option<Vec<usize>> {
    if parts == 0 {
        return Some(Vec::new());
    }
    let room = total.checked_sub(parts - 1)?;
    let each = room / parts;
    if each == 0 {
        return None;
    }
    let extra = room % parts;
    Some((0..parts).map(|i| each + usize::from(i < extra)).collect())
}

/// The teammates' grid in `w`×`h`: the fewest columns that keep each cell [`MIN_ROWS`] tall and
/// [`MIN_COLS`] wide, or `None` when no number of columns does.
fn grid(agents: &[u32], w: usize, h: usize, strict: bool) -> Option<Cell> {
    let n = agents.len();
    let columns = (1..=n).find(|&c| {
        let rows = n.div_ceil(c);
        let fits = |sizes: Option<Vec<usize>>, min: usize| {
            sizes.is_some_and(|s| s.iter().all(|&x| x >= if strict { min } else { 1 }))
        };
        fits(split(w, c), MIN_COLS) && fits(split(h, rows), MIN_ROWS)
    })?;
    let widths = split(w, columns)?;
    let per = n.div_ceil(columns);
    let mut cols = Vec::new();
    for (chunk, width) in agents.chunks(per).zip(widths) {
        let heights = split(h, chunk.len())?;
        let cells: Vec<(usize, Cell)> = heights
            .into_iter()
            .zip(chunk)
            .map(|(hh, &p)| (hh, Cell::Pane(p)))
            .collect();
        cols.push((width, Cell::Column(cells)));
    }
    // As many columns as chunks: fewer when the last ones would be empty.
    let widths = split(w, cols.len())?;
    for (c, width) in cols.iter_mut().zip(widths) {
        c.0 = width;
    }
    Some(if cols.len() == 1 {
        cols.remove(0).1
    } else {
        Cell::Row(cols)
    })
}

/// The plan for a `w`×`h` window holding `panes`. `None` when the window is too small for a
/// pane each (tmux's own `tiled` is the fallback then).
pub fn main_vertical(w: usize, h: usize, panes: &Panes) -> Option<Plan> {
    let n = panes.agents.len();
    if n == 0 && panes.board.is_none() {
        return Some(Plan {
            layout: render(w, h, &Cell::Pane(panes.leader)),
            board_inside: false,
        });
    }
    // The leader's share: just over half, less when that leaves the board no room.
    let mut left = w * 55 / 100;
    if w.saturating_sub(left + 1) < BOARD_MIN_COLS && w >= 30 + 1 + BOARD_MIN_COLS {
        left = w - 1 - BOARD_MIN_COLS;
    }
    let right = w.checked_sub(left + 1).filter(|r| *r > 0)?;
    // The board's share of the right part: two fifths, less (down to its least) when the
    // teammates would not fit beside it.
    let preferred = (h * 2 / 5).clamp(BOARD_MIN_ROWS, BOARD_MAX_ROWS);
    let with_board = panes
        .board
        .filter(|_| right >= BOARD_MIN_COLS)
        .and_then(|b| {
            if n == 0 {
                return Some(Cell::Pane(b));
            }
            (BOARD_MIN_ROWS..=preferred).rev().find_map(|board_rows| {
                let rest = h.checked_sub(board_rows + 1)?;
                let team = grid(&panes.agents, right, rest, true)?;
                let mut stack = match team {
                    Cell::Column(cells) => cells,
                    other => vec![(rest, other)],
                };
                stack.push((board_rows, Cell::Pane(b)));
                Some(Cell::Column(stack))
            })
        });
    let board_inside = with_board.is_some();
    let right_cell = match with_board {
        Some(c) => c,
        None if n == 0 => {
            return Some(Plan {
                layout: render(w, h, &Cell::Pane(panes.leader)),
                board_inside: false,
            });
        }
        None => {
            grid(&panes.agents, right, h, true).or_else(|| grid(&panes.agents, right, h, false))?
        }
    };
    let root = Cell::Row(vec![(left, Cell::Pane(panes.leader)), (right, right_cell)]);
    Some(Plan {
        layout: render(w, h, &root),
        board_inside,
    })
}

/// The layout string of `cell` filling `w`×`h`, with tmux's checksum in front.
fn render(w: usize, h: usize, cell: &Cell) -> String {
    let mut body = String::new();
    write_cell(&mut body, cell, w, h, 0, 0);
    format!("{:04x},{body}", checksum(&body))
}

fn write_cell(out: &mut String, cell: &Cell, w: usize, h: usize, x: usize, y: usize) {
    let _ = write!(out, "{w}x{h},{x},{y}");
    match cell {
        Cell::Pane(id) => {
            let _ = write!(out, ",{id}");
        }
        Cell::Row(children) => {
            out.push('{');
            let mut cx = x;
            for (i, (cw, c)) in children.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_cell(out, c, *cw, h, cx, y);
                cx += cw + 1;
            }
            out.push('}');
        }
        Cell::Column(children) => {
            out.push('[');
            let mut cy = y;
            for (i, (ch, c)) in children.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_cell(out, c, w, *ch, x, cy);
                cy += ch + 1;
            }
            out.push(']');
        }
    }
}

/// tmux's layout checksum (layout-custom.c): a 16-bit rotate-and-add over the string.
fn checksum(layout: &str) -> u16 {
    layout.bytes().fold(0u16, |csum, b| {
        let rotated = (csum >> 1) | ((csum & 1) << 15);
        rotated.wrapping_add(u16::from(b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pane's (id, width, height) from a layout string, read back by a small parser of
    /// tmux's grammar (`WxH,X,Y,ID` or `WxH,X,Y{…}` / `WxH,X,Y[…]`).
    fn sizes(layout: &str) -> Vec<(u32, usize, usize)> {
        fn num(s: &[u8], i: &mut usize) -> usize {
            let start = *i;
            while *i < s.len() && s[*i].is_ascii_digit() {
                *i += 1;
            }
            std::str::from_utf8(&s[start..*i]).unwrap().parse().unwrap()
        }
        fn cell(s: &[u8], i: &mut usize, out: &mut Vec<(u32, usize, usize)>) {
            let w = num(s, i);
            assert_eq!(s[*i], b'x');
            *i += 1;
            let h = num(s, i);
            for _ in 0..2 {
                assert_eq!(s[*i], b',');
                *i += 1;
                num(s, i);
            }
            match s.get(*i) {
                Some(b'{') | Some(b'[') => {
                    let close = if s[*i] == b'{' { b'}' } else { b']' };
                    *i += 1;
                    loop {
                        cell(s, i, out);
                        if s[*i] == close {
                            *i += 1;
                            break;
                        }
                        assert_eq!(s[*i], b',');
                        *i += 1;
                    }
                }
                _ => {
                    assert_eq!(s[*i], b',');
                    *i += 1;
                    out.push((num(s, i) as u32, w, h));
                }
            }
        }
        let body = layout.split_once(',').unwrap().1.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        cell(body, &mut i, &mut out);
        assert_eq!(i, body.len(), "the whole layout is read");
        out
    }

    fn team(n: u32, board: bool) -> Panes {
        Panes {
            leader: 0,
            agents: (1..=n).collect(),
            board: board.then_some(100),
        }
    }

    #[test]
    fn checksum_matches_tmux() {
        // Printed by tmux 3.3a (`list-windows -F '#{window_layout}'`) for a 240x64 window split
        // once side by side.
        assert_eq!(
            format!(
                "{:04x}",
                checksum("240x64,0,0{120x64,0,0,0,119x64,121,0,1}")
            ),
            "0d06"
        );
    }

    #[test]
    fn the_demo_team_fits_common_terminals_with_its_board() {
        for (w, h, min_w, min_h) in [(160, 45, 30, 5), (100, 30, 15, 3), (120, 36, 30, 5)] {
            let plan = main_vertical(w, h, &team(3, true)).unwrap();
            assert!(plan.board_inside, "{w}x{h}: {}", plan.layout);
            let s = sizes(&plan.layout);
            assert_eq!(s.len(), 5, "{}", plan.layout);
            let leader = s.iter().find(|p| p.0 == 0).unwrap();
            let board = s.iter().find(|p| p.0 == 100).unwrap();
            assert!(board.1 >= BOARD_MIN_COLS, "{w}x{h}: board {board:?}");
            // Two fifths of the height, where the teammates still fit beside it.
            assert!(board.2 >= h * 2 / 5, "{w}x{h}: board {board:?}");
            for p in &s {
                // A pane's height in tmux is its cell's less the border's title line.
                assert!(p.1 >= min_w && p.2 > min_h, "{w}x{h}: {p:?}");
                assert!(
                    leader.1 * leader.2 >= p.1 * p.2,
                    "the leader is largest: {s:?}"
                );
            }
        }
    }

    #[test]
    fn a_narrow_terminal_sends_the_board_to_its_own_window() {
        let plan = main_vertical(60, 20, &team(3, true)).unwrap();
        assert!(!plan.board_inside);
        let s = sizes(&plan.layout);
        assert_eq!(s.len(), 4);
        assert!(!s.iter().any(|p| p.0 == 100));
    }

    #[test]
    fn many_teammates_take_more_columns_not_thinner_rows() {
        let plan = main_vertical(200, 50, &team(12, true)).unwrap();
        let s = sizes(&plan.layout);
        assert_eq!(s.len(), 14, "{}", plan.layout);
        for p in s.iter().filter(|p| p.0 != 0 && p.0 != 100) {
            assert!(
                p.2 >= MIN_ROWS && p.1 >= MIN_COLS,
                "{p:?} in {}",
                plan.layout
            );
        }
    }

    #[test]
    fn a_leader_alone_fills_the_window() {
        let plan = main_vertical(80, 24, &team(0, false)).unwrap();
        assert_eq!(sizes(&plan.layout), vec![(0, 80, 24)]);
    }

    #[test]
    fn cells_fill_the_window_exactly() {
        for w in [40, 61, 80, 100, 133, 160, 240] {
            for h in [10, 24, 30, 45, 64] {
                for n in 0..9 {
                    let Some(plan) = main_vertical(w, h, &team(n, true)) else {
                        continue;
                    };
                    let s = sizes(&plan.layout);
                    let area: usize = s.iter().map(|p| p.1 * p.2).sum();
                    assert!(area <= w * h, "{w}x{h} n={n}: {}", plan.layout);
                    assert_eq!(s.len(), n as usize + 1 + usize::from(plan.board_inside));
                }
            }
        }
    }

    #[test]
    fn a_window_too_small_for_a_pane_each_has_no_plan() {
        assert!(main_vertical(5, 3, &team(6, false)).is_none());
    }
}

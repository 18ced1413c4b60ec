//! The layout of a Deployment's neighbourhood: the Deployment in the
//! middle, those that call it in a column on the left, those it calls in
//! a column on the right, and an edge from each caller to it and from it
//! to each callee, as Linkerd's dashboard draws it.
//!
//! Each column is centred vertically, so one caller sits level with the
//! Deployment and its edge is straight. An edge's labels (its rates on one
//! line, its mTLS status on the next) sit by the outer node, where every
//! edge runs level with its own node, so labels of neighbouring rows never
//! meet; they go on the side of the edge away from where it bends, so the
//! curve does not cross them.

use crate::labels::Anchor;

/// The width of the drawing, in SVG units.
pub const WIDTH: f64 = 800.0;
/// A node's size.
pub const NODE_W: f64 = 160.0;
pub const NODE_H: f64 = 30.0;
/// Vertical distance between neighbouring nodes of a column.
const ROW: f64 = 64.0;
/// Room above the first row and below the last.
const PAD: f64 = 12.0;
/// Room between the drawing's edge and the side columns.
const MARGIN: f64 = 8.0;
/// Distance of a label from the node it is next to and from its edge.
const GAP: f64 = 6.0;
/// The labels' font size and line pitch.
pub const FONT: f64 = 11.0;
const LINE: f64 = 13.0;

/// A rectangle: its top-left corner and size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    pub fn right(&self) -> f64 {
        self.x + self.w
    }

    pub fn mid_x(&self) -> f64 {
        self.x + self.w / 2.0
    }

    pub fn mid_y(&self) -> f64 {
        self.y + self.h / 2.0
    }
}

/// Where the nodes go.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub height: f64,
    pub centre: Rect,
    pub callers: Vec<Rect>,
    pub callees: Vec<Rect>,
}

/// Nodes for `callers` callers and `callees` callees: tall enough for the
/// longer column, and at least for the Deployment alone.
pub fn layout(callers: usize, callees: usize) -> Layout {
    let rows = callers.max(callees).max(1);
    let height = 2.0 * PAD + rows as f64 * ROW;
    let column = |count: usize, x: f64| -> Vec<Rect> {
        let top = (height - count as f64 * ROW) / 2.0;
        (0..count)
            .map(|i| node(x, top + (i as f64 + 0.5) * ROW))
            .collect()
    };
    Layout {
        height,
        centre: node((WIDTH - NODE_W) / 2.0, height / 2.0),
        callers: column(callers, MARGIN),
        callees: column(callees, WIDTH - MARGIN - NODE_W),
    }
}

/// A node whose left side is at `x` and whose middle is at height `mid_y`.
fn node(x: f64, mid_y: f64) -> Rect {
    Rect {
        x,
        y: mid_y - NODE_H / 2.0,
        w: NODE_W,
        h: NODE_H,
    }
}

/// Where a line of text goes: its baseline starts, ends or is centred at
/// `(x, y)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TextAt {
    pub x: f64,
    pub y: f64,
    pub anchor: Anchor,
}

/// An edge drawn: its SVG path and where its two lines of labels go.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeShape {
    pub path: String,
    pub rates: TextAt,
    pub security: TextAt,
}

/// The edge from a caller's node to the Deployment's, labelled by the
/// caller.
pub fn caller_edge(caller: &Rect, centre: &Rect) -> EdgeShape {
    let (from, to) = ((caller.right(), caller.mid_y()), (centre.x, centre.mid_y()));
    let at = (caller.right() + GAP, caller.mid_y());
    edge(from, to, at, Anchor::Start, centre.mid_y())
}

/// The edge from the Deployment's node to a callee's, labelled by the
/// callee.
pub fn callee_edge(centre: &Rect, callee: &Rect) -> EdgeShape {
    let (from, to) = ((centre.right(), centre.mid_y()), (callee.x, callee.mid_y()));
    let at = (callee.x - GAP, callee.mid_y());
    edge(from, to, at, Anchor::End, centre.mid_y())
}

/// A curve from `from` to `to` that leaves and arrives level, with its
/// labels at `at` (on the outer node's level) on the side away from
/// `centre_y`, where the curve bends to.
fn edge(
    from: (f64, f64),
    to: (f64, f64),
    at: (f64, f64),
    anchor: Anchor,
    centre_y: f64,
) -> EdgeShape {
    let mid = (from.0 + to.0) / 2.0;
    let path = format!(
        "M{:.1},{:.1} C{mid:.1},{:.1} {mid:.1},{:.1} {:.1},{:.1}",
        from.0, from.1, from.1, to.1, to.0, to.1
    );
    let (x, y) = at;
    // Below the edge when it bends up; above it otherwise (a level edge
    // included). Baselines: the lines read downwards either way.
    let (rates_y, security_y) = if centre_y < y {
        (y + GAP + FONT, y + GAP + FONT + LINE)
    } else {
        (y - GAP - LINE, y - GAP)
    };
    EdgeShape {
        path,
        rates: TextAt {
            x,
            y: rates_y,
            anchor,
        },
        security: TextAt {
            x,
            y: security_y,
            anchor,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::estimated_width;

    fn all_nodes(l: &Layout) -> Vec<Rect> {
        let mut v = vec![l.centre];
        v.extend(&l.callers);
        v.extend(&l.callees);
        v
    }

    fn overlaps(a: &Rect, b: &Rect) -> bool {
        a.x < b.right() && b.x < a.right() && a.y < b.y + b.h && b.y < a.y + a.h
    }

    fn inside(r: &Rect, height: f64) -> bool {
        r.x >= 0.0 && r.right() <= WIDTH && r.y >= 0.0 && r.y + r.h <= height
    }

    #[test]
    fn the_deployment_sits_in_the_middle() {
        let l = layout(3, 1);
        assert_eq!(l.centre.mid_x(), WIDTH / 2.0);
        assert_eq!(l.centre.mid_y(), l.height / 2.0);
    }

    #[test]
    fn callers_are_left_and_callees_right_of_it() {
        let l = layout(2, 3);
        assert_eq!((l.callers.len(), l.callees.len()), (2, 3));
        assert!(l.callers.iter().all(|r| r.right() < l.centre.x));
        assert!(l.callees.iter().all(|r| r.x > l.centre.right()));
    }

    #[test]
    fn one_neighbour_is_level_with_the_deployment() {
        let l = layout(1, 1);
        assert_eq!(l.callers[0].mid_y(), l.centre.mid_y());
        assert_eq!(l.callees[0].mid_y(), l.centre.mid_y());
        assert_eq!(
            caller_edge(&l.callers[0], &l.centre).path,
            "M168.0,44.0 C244.0,44.0 244.0,44.0 320.0,44.0"
        );
    }

    #[test]
    fn columns_are_centred_and_evenly_spaced() {
        let l = layout(4, 2);
        let mids: Vec<f64> = l.callers.iter().map(Rect::mid_y).collect();
        assert!(mids.windows(2).all(|w| w[1] - w[0] == ROW), "{mids:?}");
        let centre = (mids[0] + mids[3]) / 2.0;
        assert_eq!(centre, l.centre.mid_y());
        let right = (l.callees[0].mid_y() + l.callees[1].mid_y()) / 2.0;
        assert_eq!(right, l.centre.mid_y());
    }

    #[test]
    fn nodes_fit_the_drawing_and_never_overlap() {
        for (n, m) in [(0, 0), (1, 0), (0, 1), (1, 1), (3, 1), (1, 7), (12, 12)] {
            let l = layout(n, m);
            let nodes = all_nodes(&l);
            assert!(nodes.iter().all(|r| inside(r, l.height)), "{n}x{m}: {l:?}");
            for (i, a) in nodes.iter().enumerate() {
                for b in &nodes[i + 1..] {
                    assert!(!overlaps(a, b), "{n}x{m}: {a:?} overlaps {b:?}");
                }
            }
        }
    }

    #[test]
    fn the_drawing_grows_with_the_longer_column() {
        assert_eq!(layout(0, 0).height, layout(1, 1).height);
        assert!(layout(5, 2).height > layout(2, 2).height);
        assert_eq!(layout(5, 2).height, layout(2, 5).height);
    }

    #[test]
    fn edges_join_the_nodes_sides() {
        let l = layout(2, 2);
        let e = caller_edge(&l.callers[0], &l.centre);
        let start = format!("M{:.1},{:.1}", l.callers[0].right(), l.callers[0].mid_y());
        let end = format!("{:.1},{:.1}", l.centre.x, l.centre.mid_y());
        assert!(
            e.path.starts_with(&start) && e.path.ends_with(&end),
            "{}",
            e.path
        );
        let e = callee_edge(&l.centre, &l.callees[1]);
        let start = format!("M{:.1},{:.1}", l.centre.right(), l.centre.mid_y());
        let end = format!("{:.1},{:.1}", l.callees[1].x, l.callees[1].mid_y());
        assert!(
            e.path.starts_with(&start) && e.path.ends_with(&end),
            "{}",
            e.path
        );
    }

    #[test]
    fn labels_sit_by_the_outer_node_facing_away_from_the_bend() {
        let l = layout(2, 2);
        let above = caller_edge(&l.callers[0], &l.centre);
        assert_eq!(above.rates.anchor, Anchor::Start);
        assert!(above.rates.x > l.callers[0].right());
        assert!(above.security.y < l.callers[0].mid_y(), "{above:?}");
        assert!(above.rates.y < above.security.y);
        let below = callee_edge(&l.centre, &l.callees[1]);
        assert_eq!(below.rates.anchor, Anchor::End);
        assert!(below.rates.x < l.callees[1].x);
        assert!(below.rates.y - FONT > l.callees[1].mid_y(), "{below:?}");
        assert!(below.rates.y < below.security.y);
    }

    #[test]
    fn labels_of_neighbouring_rows_do_not_meet() {
        let l = layout(6, 0);
        // Each label block spans two lines; blocks of rows next to each
        // other must not share a pixel row.
        let blocks: Vec<(f64, f64)> = l
            .callers
            .iter()
            .map(|c| {
                let e = caller_edge(c, &l.centre);
                (e.rates.y - FONT, e.security.y)
            })
            .collect();
        for w in blocks.windows(2) {
            assert!(w[0].1 < w[1].0, "{blocks:?}");
        }
    }

    #[test]
    fn a_typical_label_fits_between_the_columns() {
        let l = layout(1, 1);
        let room = l.centre.x - l.callers[0].right() - 2.0 * GAP;
        let rates = "1234.5 rps · 99.99%";
        assert!(estimated_width(rates, FONT) <= room, "{room}");
    }
}

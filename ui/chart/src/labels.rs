//! Where an axis tick's label goes so that it stays inside the plot.
//!
//! A label is centred under its tick, except near the plot's ends: there
//! a centred label would hang over the edge and be cut off by the SVG
//! (`03:1` instead of `03:15`), so it is anchored at the tick instead,
//! ending there at the right edge and starting there at the left. A label
//! wider than the whole plot is dropped rather than drawn cut off.
//!
//! Text cannot be measured outside a browser, so widths are estimated
//! from the character count, on the wide side: a label anchored at its
//! tick a few pixels early looks the same as a centred one.

/// How a label's `x` relates to its text (SVG `text-anchor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    /// The value of the SVG `text-anchor` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Middle => "middle",
            Self::End => "end",
        }
    }
}

/// A label placed: drawn at `x` with `anchor`.
#[derive(Clone, Debug, PartialEq)]
pub struct Placed {
    pub x: f64,
    pub anchor: Anchor,
    pub text: String,
}

/// An upper bound on a character's advance, as a fraction of the font
/// size: digits and colons of the dashboard's sans-serif fonts are about
/// 0.55 em wide.
const EM_PER_CHAR: f64 = 0.62;

/// The estimated width of `text` at `font_size` (both in SVG units).
pub fn estimated_width(text: &str, font_size: f64) -> f64 {
    text.chars().count() as f64 * font_size * EM_PER_CHAR
}

/// `text` cut to fit `width` at `font_size`, ending in `…` when cut, so
/// a long name stays inside the box drawn for it.
pub fn fit(text: &str, width: f64, font_size: f64) -> String {
    if estimated_width(text, font_size) <= width {
        return text.to_string();
    }
    let keep = (width / (font_size * EM_PER_CHAR)).floor() as usize;
    let mut cut: String = text.chars().take(keep.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The labels of ticks at pixels `ticks` (with their texts), placed so
/// that each lies within `[lo, hi]`, the plot's horizontal extent.
pub fn place(ticks: &[(f64, String)], lo: f64, hi: f64, font_size: f64) -> Vec<Placed> {
    ticks
        .iter()
        .filter_map(|(x, text)| {
            let anchor = anchor(*x, estimated_width(text, font_size), lo, hi)?;
            Some(Placed {
                x: *x,
                anchor,
                text: text.clone(),
            })
        })
        .collect()
}

/// The anchor that keeps a label `width` wide at `x` within `[lo, hi]`;
/// `None` when no anchor does (the tick is outside, or the label wider
/// than the room on its side).
fn anchor(x: f64, width: f64, lo: f64, hi: f64) -> Option<Anchor> {
    if x < lo || x > hi {
        return None;
    }
    let half = width / 2.0;
    if x - half >= lo && x + half <= hi {
        Some(Anchor::Middle)
    } else if x + half > hi && x - width >= lo {
        Some(Anchor::End)
    } else if x - half < lo && x + width <= hi {
        Some(Anchor::Start)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(x: f64, text: &str) -> Vec<Placed> {
        place(&[(x, text.to_string())], 52.0, 448.0, 12.0)
    }

    /// The horizontal extent of a placed label, by the same estimate.
    fn extent(p: &Placed) -> (f64, f64) {
        let w = estimated_width(&p.text, 12.0);
        match p.anchor {
            Anchor::Start => (p.x, p.x + w),
            Anchor::Middle => (p.x - w / 2.0, p.x + w / 2.0),
            Anchor::End => (p.x - w, p.x),
        }
    }

    #[test]
    fn a_label_away_from_the_edges_is_centred() {
        assert_eq!(one(250.0, "03:14")[0].anchor, Anchor::Middle);
    }

    #[test]
    fn a_label_at_the_right_edge_ends_at_its_tick() {
        // The screenshot's case: the last tick 2 px from the plot's end.
        let p = &one(446.0, "03:15")[0];
        assert_eq!((p.x, p.anchor), (446.0, Anchor::End));
        assert_eq!(p.text, "03:15");
    }

    #[test]
    fn a_label_at_the_left_edge_starts_at_its_tick() {
        assert_eq!(one(53.0, "03:10")[0].anchor, Anchor::Start);
    }

    #[test]
    fn every_placed_label_lies_inside_the_plot() {
        for text in ["03:15", "03:15:30"] {
            for x in (52..=448).map(f64::from) {
                for p in one(x, text) {
                    let (from, to) = extent(&p);
                    assert!(from >= 52.0 && to <= 448.0, "{p:?} spans {from}..{to}");
                }
            }
        }
    }

    #[test]
    fn a_label_that_cannot_fit_is_dropped() {
        let wide = "x".repeat(100);
        assert!(one(250.0, &wide).is_empty());
        assert!(one(40.0, "03:15").is_empty(), "tick left of the plot");
        assert!(one(460.0, "03:15").is_empty(), "tick right of the plot");
    }

    #[test]
    fn labels_keep_their_order_and_texts() {
        let ticks: Vec<(f64, String)> = [(60.0, "a"), (250.0, "b"), (447.0, "c")]
            .map(|(x, t)| (x, t.to_string()))
            .to_vec();
        let placed = place(&ticks, 52.0, 448.0, 12.0);
        let texts: Vec<&str> = placed.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, ["a", "b", "c"]);
    }

    #[test]
    fn a_long_text_is_cut_to_fit() {
        assert_eq!(fit("demo/web", 150.0, 12.0), "demo/web");
        let long = "a-namespace/a-very-long-deployment-name";
        let cut = fit(long, 150.0, 12.0);
        assert!(cut.ends_with('…') && long.starts_with(cut.trim_end_matches('…')));
        assert!(estimated_width(&cut, 12.0) <= 150.0, "{cut}");
        assert_eq!(fit("abc", 0.0, 12.0), "…");
    }

    #[test]
    fn widths_grow_with_text_and_font() {
        assert!(estimated_width("03:15:30", 12.0) > estimated_width("03:15", 12.0));
        assert!(estimated_width("03:15", 14.0) > estimated_width("03:15", 12.0));
        assert_eq!(estimated_width("", 12.0), 0.0);
    }
}

//! A hand-written SVG bar chart of the gmp / best-peer ratios.
//!
//! One horizontal bar per workload on a log2 axis centred on 1.0 (so 0.5×
//! and 2× are equally far from the line): green to the left (gmp ahead),
//! red to the right (gmp behind). Workloads without a ratio get a grey note.

use std::fmt::Write;

/// One bar: workload name, ratio (None = no ratio) and the note shown
/// instead of / next to it.
#[derive(Debug, Clone)]
pub struct Bar {
    pub name: String,
    pub ratio: Option<f64>,
    pub note: String,
}

const WIDTH: f64 = 760.0;
const LABEL_W: f64 = 120.0;
const RIGHT_PAD: f64 = 150.0;
const ROW_H: f64 = 26.0;
const TOP: f64 = 50.0;
/// The axis spans 2^-SPAN ..= 2^SPAN.
const SPAN: f64 = 3.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the chart.
pub fn render(title: &str, bars: &[Bar]) -> String {
    let plot_w = WIDTH - LABEL_W - RIGHT_PAD;
    let height = TOP + ROW_H * bars.len() as f64 + 40.0;
    let x_of = |ratio: f64| {
        let l = ratio.log2().clamp(-SPAN, SPAN);
        LABEL_W + (l + SPAN) / (2.0 * SPAN) * plot_w
    };
    let x1 = x_of(1.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(
        s,
        r##"<rect width="100%" height="100%" fill="white"/><text x="{}" y="20" font-size="14" font-weight="bold">{}</text>"##,
        LABEL_W,
        esc(title)
    );
    let _ = writeln!(
        s,
        r##"<text x="{LABEL_W}" y="38" fill="#555">gmp time / best peer time (log scale; left of 1.0 = gmp ahead)</text>"##
    );
    // Grid lines at powers of two.
    let bottom = TOP + ROW_H * bars.len() as f64;
    for k in -(SPAN as i32)..=(SPAN as i32) {
        let r = 2f64.powi(k);
        let x = x_of(r);
        let (stroke, w) = if k == 0 { ("#000", 1.5) } else { ("#ddd", 1.0) };
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{bottom}" stroke="{stroke}" stroke-width="{w}"/>"##,
            TOP - 4.0
        );
        let label = if k < 0 {
            format!("1/{}", 1 << -k)
        } else {
            format!("{}", 1 << k)
        };
        let _ = writeln!(
            s,
            r##"<text x="{x:.1}" y="{}" text-anchor="middle" fill="#555">{label}×</text>"##,
            bottom + 16.0
        );
    }
    for (i, b) in bars.iter().enumerate() {
        let y = TOP + ROW_H * i as f64;
        let mid = y + ROW_H / 2.0 + 4.0;
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{mid}" text-anchor="end">{}</text>"##,
            LABEL_W - 8.0,
            esc(&b.name)
        );
        match b.ratio {
            Some(r) if r.is_finite() && r > 0.0 => {
                let x = x_of(r);
                let (lo, hi) = if x < x1 { (x, x1) } else { (x1, x) };
                let fill = if r >= 1.0 { "#d9534f" } else { "#5cb85c" };
                let _ = writeln!(
                    s,
                    r##"<rect x="{lo:.1}" y="{}" width="{:.1}" height="{}" fill="{fill}"><title>{}: {r:.2}</title></rect>"##,
                    y + 4.0,
                    (hi - lo).max(1.0),
                    ROW_H - 8.0,
                    esc(&b.name)
                );
                let _ = writeln!(
                    s,
                    r##"<text x="{}" y="{mid}">{r:.2}× {}</text>"##,
                    LABEL_W + plot_w + 8.0,
                    esc(&b.note)
                );
            }
            _ => {
                let _ = writeln!(
                    s,
                    r##"<text x="{:.1}" y="{mid}" fill="#999">{}</text>"##,
                    x1 + 6.0,
                    esc(&b.note)
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_bars_and_placeholders() {
        let svg = render(
            "t <&>",
            &[
                Bar {
                    name: "spawn".into(),
                    ratio: Some(0.5),
                    note: "vs go".into(),
                },
                Bar {
                    name: "ring".into(),
                    ratio: Some(3.0),
                    note: "vs tokio".into(),
                },
                Bar {
                    name: "echo".into(),
                    ratio: None,
                    note: "n/a".into(),
                },
            ],
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("t &lt;&amp;&gt;"));
        assert_eq!(svg.matches("<rect x=").count(), 2);
        assert!(svg.contains("#5cb85c") && svg.contains("#d9534f"));
        assert!(svg.contains(">n/a<"));
    }
}

//! Line charts as SVG and PNG with `plotters`, with an embedded DejaVu Sans
//! font (via `ab_glyph`) so no system fonts or font-kit are needed.

use std::path::Path;
use std::sync::Once;

use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points, sorted by x.
    pub points: Vec<(f64, f64)>,
}

/// A chart to draw.
#[derive(Clone, Debug)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Logarithmic x axis (for client counts, batch sizes).
    pub log_x: bool,
    /// The lines.
    pub series: Vec<Series>,
}

fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is a static asset of the `dejavu` crate; failing to parse
        // it is a build defect, not a runtime condition.
        if register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_err() {
            panic!("the embedded DejaVu Sans font did not parse");
        }
    });
}

const COLORS: [RGBColor; 6] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

fn bounds(chart: &Chart) -> anyhow::Result<(f64, f64, f64, f64)> {
    let pts: Vec<&(f64, f64)> = chart.series.iter().flat_map(|s| s.points.iter()).collect();
    if pts.is_empty() {
        return Err(anyhow!("chart '{}' has no points", chart.title));
    }
    if pts.iter().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
        return Err(anyhow!("chart '{}' has a non-finite point", chart.title));
    }
    let (mut x0, mut x1) = (f64::MAX, f64::MIN);
    let mut y1 = f64::MIN;
    for &&(x, y) in &pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if chart.log_x && x0 <= 0.0 {
        return Err(anyhow!("chart '{}': a log x axis needs positive x", chart.title));
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let y1 = if y1 <= 0.0 { 1.0 } else { y1 * 1.1 };
    Ok((x0, x1, 0.0, y1))
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, chart: &Chart) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let (x0, x1, y0, y1) = bounds(chart)?;
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(&chart.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70);
    macro_rules! body {
        ($ctx:expr) => {{
            let mut ctx = $ctx;
            ctx.configure_mesh()
                .x_desc(chart.x_label.as_str())
                .y_desc(chart.y_label.as_str())
                .label_style(("sans-serif", 14))
                .draw()
                .map_err(|e| anyhow!("{e:?}"))?;
            for (i, s) in chart.series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                ctx.draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
                    .map_err(|e| anyhow!("{e:?}"))?
                    .label(s.label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
                ctx.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| anyhow!("{e:?}"))?;
            }
            ctx.configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(|e| anyhow!("{e:?}"))?;
        }};
    }
    if chart.log_x {
        body!(builder
            .build_cartesian_2d((x0..x1).log_scale(), y0..y1)
            .map_err(|e| anyhow!("{e:?}"))?);
    } else {
        body!(builder
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| anyhow!("{e:?}"))?);
    }
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

/// Writes `chart` to `<base>.svg` and `<base>.png` (800x500).
pub fn write_chart(base: &Path, chart: &Chart) -> anyhow::Result<()> {
    register();
    let svg = base.with_extension("svg");
    let png = base.with_extension("png");
    draw(SVGBackend::new(&svg, (800, 500)).into_drawing_area(), chart)?;
    draw(BitMapBackend::new(&png, (800, 500)).into_drawing_area(), chart)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(points: Vec<(f64, f64)>, log_x: bool) -> Chart {
        Chart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log_x,
            series: vec![Series {
                label: "legend-label".into(),
                points,
            }],
        }
    }

    #[test]
    fn writes_svg_and_png_with_text() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("c");
        write_chart(&base, &chart(vec![(1.0, 2.0), (16.0, 5.0), (128.0, 3.0)], true)).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("c.svg")).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("legend-label"),
            "legend text missing"
        );
        let png = std::fs::read(dir.path().join("c.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn refuses_empty_non_finite_and_nonpositive_log_charts() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("c");
        assert!(write_chart(&base, &chart(vec![], false)).is_err());
        assert!(write_chart(&base, &chart(vec![(1.0, f64::NAN)], false)).is_err());
        assert!(write_chart(&base, &chart(vec![(0.0, 1.0), (2.0, 1.0)], true)).is_err());
    }
}

//! `plots`: SVG charts of the measured benchmark data.
//!
//! Reads the TSV files the benchmark scripts write under `benches/data/`
//! (`benches/instructions.sh`: `instructions-chain.tsv`,
//! `instructions-qsize.tsv`; `benches/blk-vs-qsd.sh`: `blk-vs-qsd.tsv`,
//! `blk-vs-qsd-runs.tsv`) and draws them with `plotters`' SVG backend. No
//! figure is typed in here: every point, bar and ratio comes from those
//! files, so a new measurement followed by `cargo run -p xtask -- plots`
//! redraws the charts BENCHMARKS.md embeds.

use plotters::coord::ranged1d::{IntoSegmentedCoord, SegmentValue};
use plotters::prelude::*;

/// A tab-separated table: its column names and rows; `#` lines and blank
/// lines are skipped.
pub struct Table {
    /// The first non-comment line, split at tabs.
    pub header: Vec<String>,
    /// Every later non-comment line, split at tabs.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Parses `text` (named `name` in errors).
    pub fn parse(name: &str, text: &str) -> Result<Table, String> {
        let mut lines = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| l.split('\t').map(str::to_string).collect::<Vec<_>>());
        let header = lines
            .next()
            .ok_or_else(|| format!("{name}: no header line"))?;
        let rows: Vec<Vec<String>> = lines.collect();
        if let Some(bad) = rows.iter().find(|r| r.len() != header.len()) {
            return Err(format!(
                "{name}: a row has {} fields, the header {}: {:?}",
                bad.len(),
                header.len(),
                bad
            ));
        }
        if rows.is_empty() {
            return Err(format!("{name}: no data rows"));
        }
        Ok(Table { header, rows })
    }

    fn column(&self, name: &str, table: &str) -> Result<usize, String> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("{table}: no column {name}"))
    }

    fn numbers(&self, name: &str, table: &str) -> Result<Vec<f64>, String> {
        let c = self.column(name, table)?;
        self.rows
            .iter()
            .map(|r| {
                r[c].parse::<f64>()
                    .map_err(|e| format!("{table}: column {name}: {:?}: {e}", r[c]))
            })
            .collect()
    }

    fn strings(&self, name: &str, table: &str) -> Result<Vec<String>, String> {
        let c = self.column(name, table)?;
        Ok(self.rows.iter().map(|r| r[c].clone()).collect())
    }
}

/// The engines of the instruction sweeps: TSV column, legend, colour.
const ENGINES: [(&str, &str, RGBColor); 5] = [
    ("split_region", "ours split, Region", RGBColor(31, 119, 180)),
    (
        "split_multi",
        "ours split, MultiRegion",
        RGBColor(127, 180, 220),
    ),
    (
        "packed_region",
        "ours packed, Region",
        RGBColor(214, 39, 40),
    ),
    (
        "packed_multi",
        "ours packed, MultiRegion",
        RGBColor(240, 140, 140),
    ),
    (
        "virtio_queue",
        "rust-vmm virtio-queue",
        RGBColor(40, 40, 40),
    ),
];

const W: u32 = 800;
const H: u32 = 480;

fn plot_err<E: std::fmt::Debug>(e: E) -> String {
    format!("plotting: {e:?}")
}

/// Instructions per request against `key` (powers of two, drawn on a log2
/// axis), one line per engine.
pub fn instruction_sweep(
    name: &str,
    text: &str,
    key: &str,
    caption: &str,
    x_desc: &str,
    legend: SeriesLabelPosition,
) -> Result<String, String> {
    let t = Table::parse(name, text)?;
    let xs = t.numbers(key, name)?;
    if let Some(x) = xs.iter().find(|x| **x < 1.0) {
        return Err(format!("{name}: {key} {x} is below 1"));
    }
    let lx: Vec<f64> = xs.iter().map(|x| x.log2()).collect();
    let mut series = Vec::new();
    for (col, label, colour) in ENGINES {
        series.push((label, colour, t.numbers(col, name)?));
    }
    let x0 = lx.iter().copied().fold(f64::INFINITY, f64::min);
    let x1 = lx.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let ymax = series
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .fold(0.0, f64::max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((x0 - 0.2)..(x1 + 0.2), 0.0..(ymax * 1.1))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc("instructions per request")
            .x_labels(lx.len() + 2)
            .x_label_formatter(&|v| {
                if (v - v.round()).abs() < 1e-9 && *v >= 0.0 {
                    format!("{}", 2f64.powf(v.round()))
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(plot_err)?;
        for (label, colour, ys) in &series {
            let pts: Vec<(f64, f64)> = lx.iter().copied().zip(ys.iter().copied()).collect();
            let c = *colour;
            chart
                .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
                .map_err(plot_err)?
                .label(*label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))
                .map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .position(legend)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// The block throughput chart: per row, ours / qemu-storage-daemon (the
/// ratio of the medians, as a bar) and each round's ratio (ours in round k
/// over theirs in round k, as dots), against the 1.0 target line.
pub fn block_ratio(summary: &str, runs: &str) -> Result<String, String> {
    let sname = "blk-vs-qsd.tsv";
    let rname = "blk-vs-qsd-runs.tsv";
    let s = Table::parse(sname, summary)?;
    let r = Table::parse(rname, runs)?;
    let rows = s.strings("row", sname)?;
    let units = s.strings("unit", sname)?;
    let ours = s.numbers("ours", sname)?;
    let theirs = s.numbers("theirs", sname)?;
    let ratios: Vec<f64> = ours.iter().zip(&theirs).map(|(o, t)| o / t).collect();
    // Per-round ratios from every boot's figure.
    let (side, round, row, value) = (
        r.strings("side", rname)?,
        r.strings("round", rname)?,
        r.strings("row", rname)?,
        r.numbers("value", rname)?,
    );
    let find = |sd: &str, rd: &str, rw: &str| {
        (0..value.len())
            .find(|&i| side[i] == sd && round[i] == rd && row[i] == rw)
            .map(|i| value[i])
    };
    let mut rounds: Vec<&String> = round.iter().collect();
    rounds.sort();
    rounds.dedup();
    let mut dots = Vec::new();
    for (i, rw) in rows.iter().enumerate() {
        for rd in &rounds {
            if let (Some(o), Some(t)) = (find("ours", rd, rw), find("theirs", rd, rw)) {
                dots.push((i, o / t));
            }
        }
    }
    let ymax = ratios
        .iter()
        .copied()
        .chain(dots.iter().map(|d| d.1))
        .fold(1.0, f64::max)
        * 1.2;
    let n = rows.len();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, H)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "vhost-user-blk: ours / qemu-storage-daemon (bars: medians of {} boots each; dots: per round)",
                    rounds.len()
                ),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((0..n.saturating_sub(1)).into_segmented(), 0.0..ymax)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => rows.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_desc("ours / theirs")
            .y_label_formatter(&|v| format!("{v:.1}"))
            .draw()
            .map_err(plot_err)?;
        let bar = RGBColor(31, 119, 180);
        chart
            .draw_series(ratios.iter().enumerate().map(|(i, q)| {
                let mut rect = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), *q),
                    ],
                    bar.mix(0.75).filled(),
                );
                rect.set_margin(0, 0, 22, 22);
                rect
            }))
            .map_err(plot_err)?;
        chart
            .draw_series(
                dots.iter()
                    .map(|(i, q)| Circle::new((SegmentValue::CenterOf(*i), *q), 4, BLACK.filled())),
            )
            .map_err(plot_err)?;
        chart
            .draw_series(LineSeries::new(
                vec![(SegmentValue::Exact(0), 1.0), (SegmentValue::Last, 1.0)],
                RED.stroke_width(1),
            ))
            .map_err(plot_err)?;
        chart
            .draw_series(ratios.iter().enumerate().map(|(i, q)| {
                Text::new(
                    format!("{q:.2}x ({:.0} / {:.0} {})", ours[i], theirs[i], units[i]),
                    (SegmentValue::Exact(i), q + ymax * 0.03),
                    ("sans-serif", 11),
                )
            }))
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(svg)
}

/// Every chart: (path under the repository root, SVG), from the data files
/// `read` returns by path.
pub fn all(
    read: &dyn Fn(&str) -> Result<String, String>,
) -> Result<Vec<(&'static str, String)>, String> {
    Ok(vec![
        (
            "benches/plots/instructions-chain.svg",
            instruction_sweep(
                "instructions-chain.tsv",
                &read("benches/data/instructions-chain.tsv")?,
                "descriptors",
                "Instructions per request against chain length (queue 256)",
                "descriptors per chain",
                SeriesLabelPosition::UpperLeft,
            )?,
        ),
        (
            "benches/plots/instructions-qsize.svg",
            instruction_sweep(
                "instructions-qsize.tsv",
                &read("benches/data/instructions-qsize.tsv")?,
                "queue_size",
                "Instructions per request against queue size (3-descriptor block read, full-ring batches)",
                "queue size",
                SeriesLabelPosition::LowerRight,
            )?,
        ),
        (
            "benches/plots/blk-vs-qsd.svg",
            block_ratio(
                &read("benches/data/blk-vs-qsd.tsv")?,
                &read("benches/data/blk-vs-qsd-runs.tsv")?,
            )?,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAIN: &str = "# comment\ndescriptors\tsplit_region\tsplit_multi\tpacked_region\tpacked_multi\tvirtio_queue\n\
                         1\t10\t11\t12\t13\t14\n4\t40\t41\t42\t43\t44\n";

    #[test]
    fn sweep_draws_every_point_of_the_data() {
        let svg = instruction_sweep(
            "t",
            CHAIN,
            "descriptors",
            "c",
            "x",
            SeriesLabelPosition::UpperLeft,
        )
        .unwrap();
        assert!(svg.starts_with("<svg"));
        // five engines, two points each
        assert_eq!(svg.matches("<circle").count(), 10);
        assert!(svg.contains("rust-vmm virtio-queue"));
    }

    #[test]
    fn ratios_come_from_the_data() {
        let summary =
            "row\tunit\tours\ttheirs\tratio\na\tIOPS\t300\t200\t1.50\nb\tMiB/s\t50\t100\t0.50\n";
        let runs = "side\tround\trow\tvalue\tunit\nours\t1\ta\t300\tIOPS\ntheirs\t1\ta\t200\tIOPS\n\
                    ours\t1\tb\t50\tMiB/s\ntheirs\t1\tb\t100\tMiB/s\n";
        let svg = block_ratio(summary, runs).unwrap();
        assert!(svg.contains("1.50x (300 / 200 IOPS)"));
        assert!(svg.contains("0.50x (50 / 100 MiB/s)"));
        assert_eq!(svg.matches("<circle").count(), 2);
    }

    #[test]
    fn a_short_row_is_an_error() {
        assert!(Table::parse("t", "a\tb\n1\n").is_err());
        assert!(Table::parse("t", "# only a comment\n").is_err());
    }
}

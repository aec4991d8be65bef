//! `exchange-client plot`: the scaling charts from the CSV that scripts/scale writes
//! (`cores,run,requests_per_sec,p50_ms,p99_ms`): throughput against cores with min-max
//! error bars and the line of perfect scaling, and p99 latency against cores, each as
//! PNG and SVG, with a caption naming the build and the machine.
//!
//! Coordinates are integers (requests/s, microseconds), so no binary float is needed.

use clap::Args;
use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::types::RangedCoordi64;
use plotters::coord::Shift;
use plotters::prelude::*;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where ab_glyph finds a font to draw text with (Debian's fonts-dejavu-core).
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];
const SIZE: (u32, u32) = (900, 560);

#[derive(Args, Clone, Debug)]
pub struct PlotArgs {
    /// The CSV written by scripts/scale.
    #[arg(long)]
    pub csv: PathBuf,
    /// Directory for scaling-throughput.{png,svg} and scaling-p99.{png,svg}.
    #[arg(long, default_value = "docs")]
    pub out_dir: PathBuf,
    /// Up to two lines under each chart (separated by a newline): the build and the machine.
    #[arg(long, default_value = "")]
    pub caption: String,
}

/// Per core count: each run's requests/s and p99 in microseconds.
#[derive(Default)]
struct Runs {
    throughput: Vec<i64>,
    p99_us: Vec<i64>,
}

pub fn run(args: &PlotArgs) -> Result<ExitCode, String> {
    let font = FONT_PATHS
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or("no DejaVuSans.ttf found: install fonts-dejavu-core")?;
    // plotters keeps the font for the life of the process.
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| "unusable font file")?;

    let table = read_csv(&args.csv)?;
    if table.is_empty() {
        return Err(format!("{} has no rows", args.csv.display()));
    }
    std::fs::create_dir_all(&args.out_dir).map_err(|e| e.to_string())?;
    for (name, chart) in [
        ("scaling-throughput", Chart::Throughput),
        ("scaling-p99", Chart::P99),
    ] {
        let png = args.out_dir.join(format!("{name}.png"));
        let svg = args.out_dir.join(format!("{name}.svg"));
        draw(
            BitMapBackend::new(&png, SIZE).into_drawing_area(),
            &table,
            chart,
            &args.caption,
        )?;
        draw(
            SVGBackend::new(&svg, SIZE).into_drawing_area(),
            &table,
            chart,
            &args.caption,
        )?;
        println!("wrote {} and {}", png.display(), svg.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn read_csv(path: &Path) -> Result<BTreeMap<i64, Runs>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut table: BTreeMap<i64, Runs> = BTreeMap::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let bad = || {
            format!(
                "{}:{}: expected cores,run,requests_per_sec,p50_ms,p99_ms",
                path.display(),
                n + 1
            )
        };
        if fields.len() < 5 {
            return Err(bad());
        }
        let cores: i64 = fields[0].parse().map_err(|_| bad())?;
        let rps: Decimal = fields[2].parse().map_err(|_| bad())?;
        let p99_ms: Decimal = fields[4].parse().map_err(|_| bad())?;
        let runs = table.entry(cores).or_default();
        runs.throughput.push(rps.round().to_i64().ok_or_else(bad)?);
        runs.p99_us.push(
            (p99_ms * Decimal::from(1000))
                .round()
                .to_i64()
                .ok_or_else(bad)?,
        );
    }
    Ok(table)
}

/// One core count's runs: the count, then the runs' min, mean and max.
type Spread = (i64, i64, i64, i64);

/// Perfect scaling for the throughput chart: the mean at the fewest cores measured,
/// times each count over that fewest. Latency has no such line.
fn ideal_scaling(stats: &[Spread], chart: Chart) -> Vec<(i64, i64)> {
    let (Chart::Throughput, Some(&(fewest, _, base, _)), Some(&(most, ..))) =
        (chart, stats.first(), stats.last())
    else {
        return Vec::new();
    };
    if fewest <= 0 || most == fewest {
        return Vec::new();
    }
    vec![(fewest, base), (most, base * most / fewest)]
}

#[derive(Clone, Copy)]
enum Chart {
    Throughput,
    P99,
}

/// The chart's title, its y axis's label, and per core count the runs' min, mean and
/// max.
fn chart_data(
    table: &BTreeMap<i64, Runs>,
    chart: Chart,
) -> (&'static str, &'static str, Vec<Spread>) {
    let (title, y_label, values): (&str, &str, Vec<(i64, Vec<i64>)>) = match chart {
        Chart::Throughput => (
            "Throughput against cores (min, mean, max of runs)",
            "requests per second",
            table
                .iter()
                .map(|(c, r)| (*c, r.throughput.clone()))
                .collect(),
        ),
        Chart::P99 => (
            "p99 latency against cores (min, mean, max of runs)",
            "p99 latency (ms)",
            table.iter().map(|(c, r)| (*c, r.p99_us.clone())).collect(),
        ),
    };
    let stats: Vec<Spread> = values
        .iter()
        .map(|(cores, v)| {
            let min = v.iter().copied().min().unwrap_or(0);
            let max = v.iter().copied().max().unwrap_or(0);
            let mean = v.iter().sum::<i64>() / (v.len().max(1) as i64);
            (*cores, min, mean, max)
        })
        .collect();
    (title, y_label, stats)
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    table: &BTreeMap<i64, Runs>,
    chart: Chart,
    caption: &str,
) -> Result<(), String> {
    let fail = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(fail)?;
    let (title, y_label, stats) = chart_data(table, chart);
    // The x axis counts tenths of a core, so that it can run half a core past the
    // measured counts on either side and carry a label at each measured count only.
    let cores: Vec<i64> = stats.iter().map(|s| s.0 * 10).collect();
    let x_range =
        (cores.first().copied().unwrap_or(10) - 5)..(cores.last().copied().unwrap_or(10) + 5);
    let ideal = ideal_scaling(&stats, chart);
    let y_top = stats
        .iter()
        .map(|s| s.3)
        .chain(ideal.iter().map(|p| p.1))
        .max()
        .unwrap_or(1);
    let y_max = y_top * 6 / 5 + 1;
    let root = root.titled(title, ("sans-serif", 24)).map_err(fail)?;
    let (upper, lower) = root.split_vertically(SIZE.1 - 110);
    for (n, line) in caption.lines().take(2).enumerate() {
        lower
            .draw(&Text::new(
                line.to_string(),
                (20, 6 + 22 * n as i32),
                ("sans-serif", 15),
            ))
            .map_err(fail)?;
    }
    let mut chart_context = ChartBuilder::on(&upper)
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(x_range.with_key_points(cores), 0i64..y_max)
        .map_err(fail)?;
    let y_format = |y: &i64| match chart {
        Chart::Throughput => y.to_string(),
        Chart::P99 => format!("{}.{}", y / 1000, (y % 1000) / 100),
    };
    chart_context
        .configure_mesh()
        .x_desc("cores k (taskset -c 0-(k-1), the server's handlers pinned one per CPU)")
        .y_desc(y_label)
        .x_label_formatter(&|x: &i64| (x / 10).to_string())
        .y_label_formatter(&y_format)
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(fail)?;
    draw_series(&mut chart_context, &stats, &ideal).map_err(fail)?;
    root.present().map_err(fail)?;
    Ok(())
}

/// The ideal line (if any), the measured means with min-max bars, and their legend.
fn draw_series<'a, DB: DrawingBackend + 'a>(
    chart_context: &mut ChartContext<
        'a,
        DB,
        Cartesian2d<WithKeyPoints<RangedCoordi64>, RangedCoordi64>,
    >,
    stats: &[Spread],
    ideal: &[(i64, i64)],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    if !ideal.is_empty() {
        chart_context
            .draw_series(DashedLineSeries::new(
                ideal.iter().map(|p| (p.0 * 10, p.1)),
                10,
                6,
                BLACK.mix(0.5).stroke_width(1),
            ))?
            .label("ideal: the fewest cores' mean, times cores over fewest")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.5)));
    }
    let color = BLUE;
    chart_context
        .draw_series(LineSeries::new(
            stats.iter().map(|s| (s.0 * 10, s.2)),
            color.stroke_width(2),
        ))?
        .label("measured: mean of runs, bars from min to max")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    chart_context.draw_series(
        stats
            .iter()
            .map(|s| ErrorBar::new_vertical(s.0 * 10, s.1, s.2, s.3, color.filled(), 12)),
    )?;
    chart_context.draw_series(
        stats
            .iter()
            .map(|s| Circle::new((s.0 * 10, s.2), 5, color.filled())),
    )?;
    chart_context
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

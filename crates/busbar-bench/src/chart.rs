//! benchmarks.svg: throughput by message size and latency by message size,
//! one line per library. plotters' SVG backend writes text as `<text>`
//! elements, so no font is needed to draw it.

use crate::measure::{LATENCY_SIZES, SIZES};
use crate::peers::{is_busbar, Peer};
use crate::report::size;
use crate::results::Run;
use crate::Res;
use plotters::prelude::*;
use std::path::Path;

/// log2(size), p50 µs, p99 µs.
type Latency = (f64, f64, f64);

fn color(p: Peer) -> RGBColor {
    match p {
        Peer::Busbar => RGBColor(0x1f, 0x4e, 0xb4),
        Peer::BusbarZc => RGBColor(0x17, 0xa8, 0xc4),
        Peer::BusbarC => RGBColor(0x6b, 0x7f, 0xa8),
        Peer::BusbarChan => RGBColor(0x0b, 0x2a, 0x6e),
        Peer::BusbarChanTyped => RGBColor(0x4b, 0x3a, 0x9e),
        Peer::IpcChannel => RGBColor(0xe0, 0x7b, 0x10),
        Peer::IpcChannelTyped => RGBColor(0xb0, 0x5a, 0x00),
        Peer::Ipmb => RGBColor(0x2c, 0x9c, 0x3f),
        Peer::IoxSpin => RGBColor(0xc8, 0x2a, 0x2a),
        Peer::IoxEvent => RGBColor(0x8e, 0x4c, 0xc0),
    }
}

/// Lowest and highest positive value, widened to whole decades.
fn decades(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| *v > 0.0 && v.is_finite())
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (1.0, 10.0);
    }
    (
        10f64.powf(lo.log10().floor()),
        10f64.powf(hi.log10().ceil().max(lo.log10().floor() + 1.0)),
    )
}

/// Draws the chart into `path`.
pub fn draw(run: &Run, path: &Path) -> Res<()> {
    let root = SVGBackend::new(path, (1280, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "busbar-bench{}: cross-process, same harness and run",
        if run.plan.quick { " --quick" } else { "" }
    );
    let root = root.titled(&title, ("sans-serif", 22))?;
    let (plots, footer) = root.split_vertically(510);
    let (left, right) = plots.split_horizontally(700);
    let missing = missing(run);
    if !missing.is_empty() {
        footer.draw_text(
            &format!(
                "Not drawn (failed, see BENCHMARKS.md): {}",
                missing.join("; ")
            ),
            &("sans-serif", 14).into_text_style(&footer),
            (20, 8),
        )?;
    }

    // Throughput: MB/s by message size, log-log.
    let tput: Vec<(Peer, Vec<(f64, f64)>)> = run
        .peers
        .iter()
        .map(|p| {
            let pts = SIZES
                .iter()
                .zip(&p.throughput)
                .filter_map(|(s, c)| c.ok().map(|r| (log2(*s), r.bytes / 1e6)))
                .collect();
            (p.peer, pts)
        })
        .collect();
    let (lo, hi) = decades(tput.iter().flat_map(|(_, v)| v.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(&left)
        .caption(
            "Throughput, 1 sender → 1 receiver (MB/s)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(3f64..25.0, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("message size")
        .y_desc("MB/s")
        .x_labels(23)
        .disable_x_mesh()
        .x_label_formatter(&|x| label_for(*x, &SIZES))
        .y_label_formatter(&|y| format!("{y}"))
        .draw()?;
    for (peer, pts) in &tput {
        let c = color(*peer);
        let width = if is_busbar(*peer) { 3 } else { 2 };
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(width)))?
            .label(peer.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, c.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;

    // Latency: µs by message size, p50 (line, dots) and p99 (triangles).
    let lat: Vec<(Peer, Vec<Latency>)> = run
        .peers
        .iter()
        .map(|p| {
            let pts = LATENCY_SIZES
                .iter()
                .zip(&p.latency)
                .filter_map(|(s, c)| {
                    c.ok()
                        .map(|l| (log2(*s), l.p50 as f64 / 1e3, l.p99 as f64 / 1e3))
                })
                .collect();
            (p.peer, pts)
        })
        .collect();
    let (lo, hi) = decades(
        lat.iter()
            .flat_map(|(_, v)| v.iter().flat_map(|p| [p.1, p.2])),
    );
    let mut chart = ChartBuilder::on(&right)
        .caption("One-way latency (µs): ● p50, ▲ p99", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(5f64..17.0, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("message size")
        .y_desc("µs")
        .x_labels(13)
        .disable_x_mesh()
        .x_label_formatter(&|x| label_for(*x, &LATENCY_SIZES))
        .y_label_formatter(&|y| format!("{y}"))
        .draw()?;
    for (peer, pts) in &lat {
        let c = color(*peer);
        let width = if is_busbar(*peer) { 3 } else { 2 };
        let p50: Vec<(f64, f64)> = pts.iter().map(|p| (p.0, p.1)).collect();
        chart
            .draw_series(LineSeries::new(p50.clone(), c.stroke_width(width)))?
            .label(peer.name())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
        chart.draw_series(p50.iter().map(|p| Circle::new(*p, 4, c.filled())))?;
        chart.draw_series(
            pts.iter()
                .map(|p| TriangleMarker::new((p.0, p.2), 5, c.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Throughput and latency cells that have no point to draw, by peer.
fn missing(run: &Run) -> Vec<String> {
    run.peers
        .iter()
        .filter_map(|p| {
            let mut gone: Vec<String> = SIZES
                .iter()
                .zip(&p.throughput)
                .filter(|(_, c)| c.ok().is_none())
                .map(|(s, _)| format!("throughput {}", size(*s)))
                .collect();
            gone.extend(
                LATENCY_SIZES
                    .iter()
                    .zip(&p.latency)
                    .filter(|(_, c)| c.ok().is_none())
                    .map(|(s, _)| format!("latency {}", size(*s))),
            );
            (!gone.is_empty()).then(|| format!("{} {}", p.peer.name(), gone.join(", ")))
        })
        .collect()
}

fn log2(n: usize) -> f64 {
    (n as f64).log2()
}

/// A size label where the axis value (log2 of the size) is one of `sizes`.
fn label_for(x: f64, sizes: &[usize]) -> String {
    sizes
        .iter()
        .find(|s| (x - log2(**s)).abs() < 0.01)
        .map_or(String::new(), |s| size(*s))
}

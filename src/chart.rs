//! Geometry of the usage page's stacked bar chart, computed here (pure, tested) and drawn as SVG
//! by the app: no chart library and nothing downloaded at run time.

/// Plot area inside the SVG's view box (left margin for the axis labels, bottom for dates).
pub const WIDTH: f64 = 720.0;
pub const HEIGHT: f64 = 240.0;
pub const LEFT: f64 = 56.0;
pub const BOTTOM: f64 = 28.0;
pub const TOP: f64 = 8.0;

#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub day: usize,
    pub series: usize,
    pub value: u64,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    pub bars: Vec<Bar>,
    /// The axis' top value (a round number ≥ the tallest stack).
    pub max: u64,
    /// `(y, value)` of the horizontal grid lines.
    pub ticks: Vec<(f64, u64)>,
    /// `(x centre, day index)` of the days that get a date label (at most about eight).
    pub labels: Vec<(f64, usize)>,
}

/// The smallest 1, 2 or 5 × 10ⁿ that is ≥ `v` (and ≥ 1).
pub fn nice_max(v: u64) -> u64 {
    let mut step: u64 = 1;
    loop {
        for m in [1u64, 2, 5] {
            let c = step.saturating_mul(m);
            if c >= v {
                return c;
            }
        }
        if step > u64::MAX / 10 {
            return u64::MAX;
        }
        step *= 10;
    }
}

/// Lays out one stacked bar per day; `values[day][series]`. Zero values draw nothing.
pub fn stacked(values: &[Vec<u64>]) -> Chart {
    stacked_to(values, 0)
}

/// [`stacked`], with an axis reaching at least `at_least`.
fn stacked_to(values: &[Vec<u64>], at_least: u64) -> Chart {
    let plot_w = WIDTH - LEFT;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let tallest = values
        .iter()
        .map(|d| d.iter().copied().fold(0u64, u64::saturating_add))
        .max()
        .unwrap_or(0);
    let max = nice_max(tallest.max(at_least));
    let n = values.len().max(1) as f64;
    let slot = plot_w / n;
    let width = (slot * 0.7).max(1.0);
    let scale = plot_h / max as f64;
    let mut bars = Vec::new();
    for (day, series) in values.iter().enumerate() {
        let x = LEFT + slot * day as f64 + (slot - width) / 2.0;
        let mut base = HEIGHT - BOTTOM;
        for (s, &v) in series.iter().enumerate() {
            if v == 0 {
                continue;
            }
            let h = v as f64 * scale;
            base -= h;
            bars.push(Bar {
                day,
                series: s,
                value: v,
                x,
                y: base,
                width,
                height: h,
            });
        }
    }
    let ticks = (0..=4)
        .map(|i| {
            let value = max / 4 * i + if i == 4 { max % 4 } else { 0 };
            let y = HEIGHT - BOTTOM - plot_h * i as f64 / 4.0;
            (y, value)
        })
        .collect();
    let every = values.len().div_ceil(8).max(1);
    let labels = (0..values.len())
        .filter(|d| d.is_multiple_of(every))
        .map(|d| (LEFT + slot * d as f64 + slot / 2.0, d))
        .collect();
    Chart {
        bars,
        max,
        ticks,
        labels,
    }
}

/// A spend budget drawn over the cost bars: the budget as a horizontal line, and what was spent
/// in its window so far as a line through each day (it starts again where a window does).
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetLine {
    /// The budget's height.
    pub y: f64,
    /// `(x, y)` of the spend in the window at the end of each day.
    pub spent: Vec<(f64, f64)>,
}

/// The y of `v` on an axis up to `max`.
fn y_of(v: u64, max: u64) -> f64 {
    let plot_h = HEIGHT - BOTTOM - TOP;
    HEIGHT - BOTTOM - plot_h * (v as f64 / max.max(1) as f64)
}

/// Cost bars per day (`values[day][series]`, micro-credits) with the budget of `budget`
/// micro-credits per `window`; `days` are the bars' dates (`YYYY-MM-DD`, UTC).
pub fn with_budget(
    values: &[Vec<u64>],
    days: &[&str],
    budget: u64,
    window: crate::limits::Window,
) -> (Chart, BudgetLine) {
    let window_of = |day: &str| -> Option<i64> {
        let mut parts = day.splitn(3, '-').map(|p| p.parse::<i64>().ok());
        let (y, m, d) = (parts.next()??, parts.next()??, parts.next()??);
        let t = crate::limits::days_from_civil(y, u32::try_from(m).ok()?, u32::try_from(d).ok()?)
            * 86_400;
        Some(window.bounds(t).0)
    };
    let mut running = Vec::with_capacity(values.len());
    let (mut current, mut sum) = (None, 0u64);
    for (i, v) in values.iter().enumerate() {
        let w = days.get(i).and_then(|d| window_of(d));
        if w != current {
            current = w;
            sum = 0;
        }
        sum = sum.saturating_add(v.iter().copied().fold(0, u64::saturating_add));
        running.push(sum);
    }
    let top = running.iter().copied().max().unwrap_or(0).max(budget);
    let chart = stacked_to(values, top);
    let slot = (WIDTH - LEFT) / values.len().max(1) as f64;
    let spent = running
        .iter()
        .enumerate()
        .map(|(i, v)| (LEFT + slot * i as f64 + slot / 2.0, y_of(*v, chart.max)))
        .collect();
    let line = BudgetLine {
        y: y_of(budget, chart.max),
        spent,
    };
    (chart, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_line_over_cost_bars() {
        use crate::limits::Window;
        let days = ["2026-11-29", "2026-11-30", "2026-12-01", "2026-12-02"];
        let values = [vec![10, 5], vec![20, 0], vec![30, 0], vec![0, 40]];
        // A monthly budget of 100: November's spend runs 15, 35; December's starts again.
        let (c, line) = with_budget(&values, &days, 100, Window::Month);
        assert_eq!(c.max, 100);
        assert!((line.y - TOP).abs() < 1e-9, "the budget is the axis' top");
        let ys: Vec<f64> = line.spent.iter().map(|p| p.1).collect();
        assert_eq!(
            ys,
            [y_of(15, 100), y_of(35, 100), y_of(30, 100), y_of(70, 100)]
        );
        // Spend above the budget lifts the axis so both show.
        let (c, line) = with_budget(&values, &days, 50, Window::Total);
        assert_eq!(c.max, 200);
        assert_eq!(line.spent.last().map(|p| p.1), Some(y_of(105, 200)));
        assert!(line.spent[0].0 < line.spent[1].0);
    }

    #[test]
    fn nice_maxima() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(1), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(200), 200);
        assert_eq!(nice_max(201), 500);
        assert_eq!(nice_max(u64::MAX), u64::MAX);
    }

    #[test]
    fn bars_stack_and_scale() {
        let c = stacked(&[vec![3, 2], vec![0, 0], vec![10, 0]]);
        assert_eq!(c.max, 10);
        // Day 0 has two segments, day 1 none, day 2 one full-height bar.
        assert_eq!(c.bars.len(), 3);
        let plot_h = HEIGHT - BOTTOM - TOP;
        let full = &c.bars[2];
        assert_eq!((full.day, full.series, full.value), (2, 0, 10));
        assert!((full.height - plot_h).abs() < 1e-9);
        assert!((full.y - TOP).abs() < 1e-9);
        let (a, b) = (&c.bars[0], &c.bars[1]);
        assert!((a.height - plot_h * 0.3).abs() < 1e-9);
        assert!((b.height - plot_h * 0.2).abs() < 1e-9);
        // The second segment sits on top of the first.
        assert!((b.y + b.height - a.y).abs() < 1e-9);
        assert!((a.y + a.height - (HEIGHT - BOTTOM)).abs() < 1e-9);
        assert_eq!(c.ticks.first().map(|t| t.1), Some(0));
        assert_eq!(c.ticks.last().map(|t| t.1), Some(10));
    }

    #[test]
    fn long_ranges_label_about_eight_days() {
        let c = stacked(&vec![vec![1]; 31]);
        assert!(
            c.labels.len() <= 8 && c.labels.len() >= 6,
            "{}",
            c.labels.len()
        );
        let empty = stacked(&[]);
        assert!(empty.bars.is_empty());
        assert_eq!(empty.max, 1);
    }
}

//! Calendar windows (UTC day, week from Monday, month, total) and the spend budget that counts
//! in one: what spend control limits and what the usage chart draws.

use serde::{Deserialize, Serialize};

/// The calendar window a spend budget counts in (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Day,
    /// Monday to Sunday.
    Week,
    Month,
    /// Never resets.
    Total,
}

pub(crate) const DAY: i64 = 86_400;

impl Window {
    pub const ALL: [Window; 4] = [Window::Day, Window::Week, Window::Month, Window::Total];

    pub fn as_str(self) -> &'static str {
        match self {
            Window::Day => "day",
            Window::Week => "week",
            Window::Month => "month",
            Window::Total => "total",
        }
    }

    pub fn parse(s: &str) -> Option<Window> {
        Window::ALL.into_iter().find(|w| w.as_str() == s)
    }

    /// The start of the window that holds `now`, and the start of the next one (`None` for
    /// [`Window::Total`]).
    pub fn bounds(self, now: i64) -> (i64, Option<i64>) {
        let day = now.div_euclid(DAY);
        match self {
            Window::Day => (day * DAY, Some((day + 1) * DAY)),
            Window::Week => {
                // 1970-01-01 was a Thursday: days since the Monday before it.
                let monday = day - (day + 3).rem_euclid(7);
                (monday * DAY, Some((monday + 7) * DAY))
            }
            Window::Month => {
                let (y, m, _) = civil_from_days(day);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (
                    days_from_civil(y, m, 1) * DAY,
                    Some(days_from_civil(ny, nm, 1) * DAY),
                )
            }
            Window::Total => (i64::MIN, None),
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (the inverse of [`days_from_civil`]).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A spend budget: micro-credits of list-price cost per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub micro: i64,
    pub window: Window,
    /// The share of the budget (percent) whose spending raises a soft alert, once per window;
    /// 0: no alert.
    #[serde(default = "default_alert_percent")]
    pub alert_percent: u8,
}

pub const DEFAULT_ALERT_PERCENT: u8 = 80;

fn default_alert_percent() -> u8 {
    DEFAULT_ALERT_PERCENT
}

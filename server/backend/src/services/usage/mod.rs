//! Usage metering: one [`UsageRecord`] per request ([`meter`]), written off the request's path
//! by a bounded, batched writer ([`writer`]); the usage report and its CSV export ([`report`]).

pub mod meter;
pub mod report;
pub mod writer;

pub use meter::{Ending, Served, UsageMeter, UsageRecord};
pub use report::{CSV_MAX_ROWS, MAX_RANGE_DAYS, csv, range, report};
pub use writer::{
    BATCH, CAPACITY, FLUSH_INTERVAL, LAST_USED_EVERY, UsageStats, UsageWriter, WriterConfig, count,
};

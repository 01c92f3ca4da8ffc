//! Reports: renderings of `results.json`. Each takes a [`RunResults`] and nothing else, so any report can be
//! rendered again later from the file alone.

pub mod diff;
pub mod html;
pub mod junit;
pub mod summary;

use std::path::Path;

use crate::results::RunResults;

/// Writes `results.json` and every rendering of it into `dir`.
pub fn write_all(results: &RunResults, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    results.write(dir)?;
    junit::write(results, &dir.join(junit::FILE))?;
    summary::write(results, &dir.join(summary::FILE))?;
    html::write(results, &dir.join(html::FILE))?;
    Ok(())
}

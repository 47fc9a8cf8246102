//! Analysis sweeps an example can run on the side in one call.

use std::path::Path;

use slimnet_core::data::Dataset;
use slimnet_core::rewrite::Selector;
use slimnet_core::{train, Graph};
use slimnet_prune::criterion::Magnitude;
use slimnet_prune::sensitivity::{sensitivity, Sensitivity};

use crate::Res;

/// The sparsities a [`prune_sensitivity`] sweep prunes each layer to.
pub const SPARSITIES: [f32; 6] = [0.5, 0.7, 0.8, 0.9, 0.95, 0.98];

/// Prunes each layer of `model` alone by weight magnitude to every sparsity of
/// [`SPARSITIES`] and measures the accuracy on `val`; prints the table and writes the plot to
/// `svg` (creating its directory).
///
/// # Errors
/// A model that rejects `val`, or a file that cannot be written.
pub fn prune_sensitivity(model: &Graph, val: &Dataset, svg: &Path) -> Res<Sensitivity> {
    let s = sensitivity(model, &Selector::All, &Magnitude, &SPARSITIES, &mut |g| {
        train::accuracy(g, val)
    })?;
    println!("{s}");
    if let Some(dir) = svg.parent() {
        std::fs::create_dir_all(dir)?;
    }
    s.save_svg(svg)?;
    println!("wrote {}", svg.display());
    Ok(s)
}

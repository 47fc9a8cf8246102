//! Weight sharing as in Deep Compression: per-layer k-means with linear initialisation into
//! `2^bits` shared values, centroid fine-tuning from gradients summed per cluster, storage as a
//! codebook plus packed indices (and the kept positions of a pruned layer), optionally Huffman
//! coded and decoded at load.
//!
//! ```
//! use slimnet_core::{io, models, rewrite::Selector, tensor, Layer};
//! use slimnet_quant::share::{share_weights, ShareConfig};
//! let mut model = models::lenet300(&mut tensor::rng(0))?;
//! let dense = io::to_bytes(&model)?.len();
//! share_weights(&mut model, &[1, 1, 28, 28], Selector::All, &ShareConfig::new(5)?.with_huffman(true))?;
//! let bytes = io::to_bytes(&model)?;
//! assert!(bytes.len() * 6 < dense); // 5-bit indices instead of 32-bit floats
//! let mut reg = io::Registry::core();
//! slimnet_quant::register(&mut reg);
//! let back = io::from_bytes(&bytes, &reg)?;
//! let x = tensor::uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut tensor::rng(1));
//! assert_eq!(back.forward(&x)?, model.forward(&x)?);
//! # Ok::<(), slimnet_quant::QuantError>(())
//! ```

pub mod huffman;
mod kmeans;
mod layer;

pub use kmeans::kmeans;
pub use layer::SharedWeights;

pub(crate) use layer::load_shared;

use std::collections::BTreeMap;

use slimnet_core::layers::{Conv2d, Linear};
use slimnet_core::rewrite::{Action, Ctx, Report, Rewriter, Selector};
use slimnet_core::{Graph, Layer};

use crate::error::{QuantError, Result};

/// Settings of weight sharing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ShareConfig {
    /// Index bits (`2^bits` shared values per layer), `1..=8`.
    pub bits: u32,
    /// Per-layer bit widths that override `bits`, by layer path.
    pub layer_bits: BTreeMap<String, u32>,
    /// Huffman-code the indices (and gaps) in the model file.
    pub huffman: bool,
}

fn check(bits: u32) -> Result<()> {
    if (1..=8).contains(&bits) {
        Ok(())
    } else {
        Err(QuantError::BitWidth {
            layer: String::new(),
            bits,
            min: 1,
            max: 8,
        })
    }
}

impl ShareConfig {
    /// `bits`-bit sharing for every layer, without Huffman coding.
    ///
    /// # Errors
    /// `bits` outside `1..=8`.
    pub fn new(bits: u32) -> Result<Self> {
        check(bits)?;
        Ok(Self {
            bits,
            layer_bits: BTreeMap::new(),
            huffman: false,
        })
    }

    /// Turns Huffman coding on or off.
    pub fn with_huffman(mut self, h: bool) -> Self {
        self.huffman = h;
        self
    }

    /// Uses `bits` for the layer at `path`.
    ///
    /// # Errors
    /// `bits` outside `1..=8` (named by path).
    pub fn with_layer_bits(mut self, path: &str, bits: u32) -> Result<Self> {
        check(bits).map_err(|e| e.in_layer(path))?;
        self.layer_bits.insert(path.to_string(), bits);
        Ok(self)
    }
}

/// Replaces every selected Conv2d and Linear by a [`SharedWeights`] layer (pruning masks are
/// respected: masked weights stay zero and take no codebook entry). Fine-tune the result with the
/// ordinary trainer to move the shared values.
///
/// # Errors
/// A bit width out of range or non-finite weights (named by path).
pub fn share_weights(
    model: &mut Graph,
    input: &[usize],
    selector: Selector,
    cfg: &ShareConfig,
) -> Result<Report> {
    check(cfg.bits)?;
    let share = |l: &dyn Layer, ctx: &mut Ctx<'_>| -> slimnet_core::Result<Action> {
        let bits = cfg.layer_bits.get(ctx.path()).copied().unwrap_or(cfg.bits);
        Ok(Action::Replace(Box::new(SharedWeights::new(
            l.clone_box(),
            bits,
            cfg.huffman,
        )?)))
    };
    let report = Rewriter::new()
        .select(selector)
        .rule::<Conv2d>("share", |c, ctx| share(c, ctx))
        .rule::<Linear>("share", |l, ctx| share(l, ctx))
        .run(model, input)?;
    Ok(report)
}

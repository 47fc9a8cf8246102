//! Adapters: small trainable layers that bring a student's feature map to the shape of the
//! teacher's, made automatically from the two shapes.

use slimnet_core::layers::{AvgPool2d, BatchNormConfig, Conv2dConfig, LinearConfig, PoolConfig};
use slimnet_core::tensor::SlimRng;
use slimnet_core::Graph;

use crate::error::{DistillError, Result};

/// How an adapter lowers the resolution when the student's map is larger than the teacher's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Resample {
    /// Average pooling with window and stride equal to the factor (then a 1x1 convolution if
    /// the channels differ).
    #[default]
    AvgPool,
    /// One convolution with kernel and stride equal to the factor (it also maps the channels).
    StridedConv,
}

/// Settings of [`make_adapter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdapterConfig {
    /// Whether a batch normalization follows the convolution.
    pub batch_norm: bool,
    /// How the resolution is lowered.
    pub resample: Resample,
}

impl Default for AdapterConfig {
    /// Batch normalization on, average pooling.
    fn default() -> Self {
        Self {
            batch_norm: true,
            resample: Resample::AvgPool,
        }
    }
}

impl AdapterConfig {
    /// Sets whether a batch normalization follows the convolution.
    pub fn with_batch_norm(mut self, yes: bool) -> Self {
        self.batch_norm = yes;
        self
    }

    /// Sets how the resolution is lowered.
    pub fn with_resample(mut self, r: Resample) -> Self {
        self.resample = r;
        self
    }
}

/// Builds a graph mapping tensors of shape `from` to shape `to` (batch axes ignored):
/// - equal shapes: the identity (an empty graph);
/// - `[N, C, H, W]` to `[N, C', H, W]`: a 1x1 convolution (+ BN);
/// - `[N, C, sH, sW]` to `[N, C', H, W]`: pooling by `s` then a 1x1 convolution (+ BN) if the
///   channels differ, or one `s x s` convolution with stride `s` (+ BN);
/// - `[N, F]` to `[N, F']`: a linear layer.
///
/// ```
/// use slimnet_core::{tensor, Layer};
/// use slimnet_distill::adapter::{make_adapter, AdapterConfig};
/// let a = make_adapter(&[1, 8, 28, 28], &[1, 16, 14, 14], &AdapterConfig::default(), &mut tensor::rng(0))?;
/// assert_eq!(a.output_shape(&[4, 8, 28, 28])?, vec![4, 16, 14, 14]);
/// # Ok::<(), slimnet_distill::DistillError>(())
/// ```
///
/// # Errors
/// [`DistillError::Config`] when the target is larger than the source, the factor is not an integer
/// equal in both directions, or the ranks differ or are not 2 or 4.
pub fn make_adapter(
    from: &[usize],
    to: &[usize],
    cfg: &AdapterConfig,
    rng: &mut SlimRng,
) -> Result<Graph> {
    let bad =
        |why: &str| DistillError::Config(format!("no adapter from {from:?} to {to:?}: {why}"));
    let mut g = Graph::new();
    if from.len() != to.len() {
        return Err(bad("ranks differ"));
    }
    if !matches!(from.len(), 2 | 4) {
        return Err(bad("adapters map shapes of rank 2 or 4"));
    }
    if from[1..].contains(&0) || to[1..].contains(&0) {
        return Err(bad("a size is 0"));
    }
    if from[1..] == to[1..] {
        return Ok(g);
    }
    match from.len() {
        2 => {
            g.add_layer(
                "fc",
                LinearConfig::new(from[1], to[1]).init(rng)?,
                g.input(),
            )?;
            Ok(g)
        }
        4 => {
            let (ci, hi, wi) = (from[1], from[2], from[3]);
            let (co, ho, wo) = (to[1], to[2], to[3]);
            if ho == 0 || wo == 0 || hi < ho || wi < wo {
                return Err(bad("adapters only keep or lower the resolution"));
            }
            if hi % ho != 0 || wi % wo != 0 || hi / ho != wi / wo {
                return Err(bad(
                    "the resolution factor must be one integer for both axes",
                ));
            }
            let s = hi / ho;
            let mut last = g.input();
            let conv = |k: usize, stride: usize, rng: &mut SlimRng| {
                Conv2dConfig::new(ci, co, k)
                    .with_stride(stride)
                    .with_bias(!cfg.batch_norm)
                    .init(rng)
            };
            let with_conv = match (s, cfg.resample) {
                (1, _) => {
                    last = g.add_layer("conv", conv(1, 1, rng)?, last)?;
                    true
                }
                (_, Resample::StridedConv) => {
                    last = g.add_layer("conv", conv(s, s, rng)?, last)?;
                    true
                }
                (_, Resample::AvgPool) => {
                    last = g.add_layer("pool", AvgPool2d::new(PoolConfig::new(s))?, last)?;
                    if ci != co {
                        last = g.add_layer("conv", conv(1, 1, rng)?, last)?;
                    }
                    ci != co
                }
            };
            if with_conv && cfg.batch_norm {
                g.add_layer("bn", BatchNormConfig::new(co).init()?, last)?;
            }
            Ok(g)
        }
        _ => Err(bad("only [N, C, H, W] and [N, F] maps are adapted")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slimnet_core::{tensor, Layer};

    #[test]
    fn adapters_reach_the_target_shape() {
        let cases: [(&[usize], &[usize]); 5] = [
            (&[2, 8, 14, 14], &[2, 8, 14, 14]),
            (&[2, 8, 14, 14], &[2, 32, 14, 14]),
            (&[2, 8, 28, 28], &[2, 8, 7, 7]),
            (&[2, 8, 28, 28], &[2, 16, 14, 14]),
            (&[2, 30], &[2, 10]),
        ];
        for resample in [Resample::AvgPool, Resample::StridedConv] {
            let cfg = AdapterConfig::default().with_resample(resample);
            for (a, b) in cases {
                let g = make_adapter(a, b, &cfg, &mut tensor::rng(0)).unwrap();
                let x = tensor::uniform(a, -1.0, 1.0, &mut tensor::rng(1));
                assert_eq!(g.forward(&x).unwrap().shape(), b, "{a:?} -> {b:?}");
            }
        }
    }

    #[test]
    fn impossible_adapters_are_errors() {
        let cfg = AdapterConfig::default();
        let r = &mut tensor::rng(0);
        assert!(make_adapter(&[1, 8, 7, 7], &[1, 8, 14, 14], &cfg, r).is_err());
        assert!(make_adapter(&[1, 8, 28, 28], &[1, 8, 14, 7], &cfg, r).is_err());
        assert!(make_adapter(&[1, 8, 10, 10], &[1, 8, 3, 3], &cfg, r).is_err());
        assert!(make_adapter(&[1, 8, 7, 7], &[1, 10], &cfg, r).is_err());
    }
}

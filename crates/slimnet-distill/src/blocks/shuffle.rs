//! [`ChannelShuffle`]: the channel permutation of ShuffleNet.

use ndarray::IxDyn;
use serde_json::{json, Value};
use slimnet_core::io::{Registry, TensorSource};
use slimnet_core::tensor::expect_nchw;
use slimnet_core::{Error as CoreError, Layer, Result as CoreResult, Tensor};

/// Interleaves the channels of `groups` groups so that the next group convolution sees
/// channels from every group: channel `i * (C / groups) + j` moves to `j * groups + i`.
///
/// ```
/// use slimnet_core::{tensor, Layer};
/// use slimnet_distill::blocks::ChannelShuffle;
/// let x = tensor::from_vec(&[1, 6, 1, 1], vec![0., 1., 2., 3., 4., 5.])?;
/// let y = ChannelShuffle::new(2)?.forward(&x)?;
/// assert_eq!(y.as_slice().unwrap(), &[0., 3., 1., 4., 2., 5.]);
/// # Ok::<(), slimnet_distill::DistillError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ChannelShuffle {
    groups: usize,
    cache: Option<Vec<usize>>,
}

impl ChannelShuffle {
    /// The kind name in model files.
    pub const KIND: &'static str = "ChannelShuffle";

    /// A shuffle over `groups` groups.
    ///
    /// # Errors
    /// `groups == 0`.
    pub fn new(groups: usize) -> crate::Result<Self> {
        if groups == 0 {
            return Err(crate::DistillError::Config(
                "channel shuffle needs at least one group".into(),
            ));
        }
        Ok(Self {
            groups,
            cache: None,
        })
    }

    /// The number of groups.
    pub fn groups(&self) -> usize {
        self.groups
    }

    fn check(&self, shape: &[usize]) -> CoreResult<(usize, usize, usize)> {
        let (n, c, h, w) = expect_nchw(shape, None)?;
        if c % self.groups != 0 {
            return Err(CoreError::shape(
                format!("[N, C, H, W] with C a multiple of {}", self.groups),
                shape,
            ));
        }
        Ok((n, c, h * w))
    }
}

/// Moves channel `i * (c / g) + j` to `j * g + i` for every example.
fn permute(x: &Tensor, n: usize, c: usize, hw: usize, g: usize) -> Tensor {
    let k = c / g;
    let src = slimnet_core::tensor::contiguous(x);
    let mut out = vec![0.0; src.len()];
    for b in 0..n {
        let base = b * c * hw;
        for i in 0..g {
            for j in 0..k {
                let from = base + (i * k + j) * hw;
                let to = base + (j * g + i) * hw;
                out[to..to + hw].copy_from_slice(&src[from..from + hw]);
            }
        }
    }
    Tensor::from_shape_vec(IxDyn(x.shape()), out).expect("same length")
}

impl Layer for ChannelShuffle {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    /// `[N, C, H, W]` -> `[N, C, H, W]`, `C` a multiple of the groups.
    fn forward(&self, x: &Tensor) -> CoreResult<Tensor> {
        let (n, c, hw) = self.check(x.shape())?;
        Ok(permute(x, n, c, hw, self.groups))
    }

    fn forward_train(&mut self, x: &Tensor) -> CoreResult<Tensor> {
        let y = self.forward(x)?;
        self.cache = Some(x.shape().to_vec());
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> CoreResult<Tensor> {
        let shape = self
            .cache
            .take()
            .ok_or_else(|| CoreError::no_cache("ChannelShuffle"))?;
        if grad_out.shape() != shape.as_slice() {
            return Err(CoreError::shape(
                format!("gradient {shape:?}"),
                grad_out.shape(),
            ));
        }
        let (n, c, hw) = self.check(&shape)?;
        // The inverse permutation is the shuffle over C / groups groups.
        Ok(permute(grad_out, n, c, hw, c / self.groups))
    }

    fn output_shape(&self, input: &[usize]) -> CoreResult<Vec<usize>> {
        self.check(input)?;
        Ok(input.to_vec())
    }

    fn config_json(&self) -> Value {
        json!({ "groups": self.groups })
    }
}

fn load_shuffle(cfg: &Value, _: &mut TensorSource<'_>) -> CoreResult<Box<dyn Layer>> {
    let groups = cfg
        .get("groups")
        .and_then(Value::as_u64)
        .ok_or_else(|| CoreError::ModelFile("ChannelShuffle config: missing `groups`".into()))?;
    Ok(Box::new(
        ChannelShuffle::new(groups as usize).map_err(CoreError::from)?,
    ))
}

/// Adds the layer kinds of this crate ([`ChannelShuffle`]) to a model-file registry.
///
/// ```
/// use slimnet_core::io::Registry;
/// let mut r = Registry::core();
/// slimnet_distill::blocks::register(&mut r);
/// assert!(r.contains("ChannelShuffle"));
/// ```
pub fn register(registry: &mut Registry) {
    registry.register(ChannelShuffle::KIND, load_shuffle);
}

#[cfg(test)]
mod tests {
    use super::*;
    use slimnet_core::tensor;

    #[test]
    fn backward_is_the_inverse_permutation() {
        let mut s = ChannelShuffle::new(3).unwrap();
        let x = tensor::uniform(&[2, 12, 3, 2], -1.0, 1.0, &mut tensor::rng(1));
        let y = s.forward_train(&x).unwrap();
        assert!(tensor::max_abs_diff(&y, &x) > 0.0);
        // The shuffle is linear, so <dy, P x> = <P^T dy, x>.
        let dy = tensor::uniform(&[2, 12, 3, 2], -1.0, 1.0, &mut tensor::rng(2));
        let dx = s.backward(&dy).unwrap();
        let lhs: f32 = (&dy * &y).sum();
        let rhs: f32 = (&dx * &x).sum();
        assert!((lhs - rhs).abs() < 1e-4);
        // Shuffling back restores the input.
        let mut back = ChannelShuffle::new(4).unwrap();
        assert_eq!(back.forward_train(&y).unwrap(), x);
        assert!(s.backward(&dy).is_err(), "no cache after backward");
        assert!(s.forward(&tensor::zeros(&[1, 10, 2, 2])).is_err());
    }

    #[test]
    fn round_trips_through_a_model_file() {
        let mut g = slimnet_core::Graph::new();
        g.add_layer("shuffle", ChannelShuffle::new(2).unwrap(), g.input())
            .unwrap();
        let mut r = Registry::core();
        register(&mut r);
        let back =
            slimnet_core::io::from_bytes(&slimnet_core::io::to_bytes(&g).unwrap(), &r).unwrap();
        let x = tensor::uniform(&[1, 4, 2, 2], 0.0, 1.0, &mut tensor::rng(0));
        assert_eq!(back.forward(&x).unwrap(), g.forward(&x).unwrap());
    }
}

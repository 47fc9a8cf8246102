//! Dropout.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layer::Layer;
use crate::tensor::{rng, SlimRng, Tensor};

/// Hyper-parameters of a [`Dropout`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DropoutConfig {
    /// Probability of zeroing an element during training.
    pub p: f32,
    /// Seed of the layer's own random generator.
    pub seed: u64,
}

/// Dropout: in training, zeroes elements with probability `p` and scales the rest by
/// `1 / (1 - p)`; identity in evaluation. Its random generator is seeded, so runs repeat.
#[derive(Debug, Clone)]
pub struct Dropout {
    cfg: DropoutConfig,
    rng: SlimRng,
    cache: Option<Tensor>,
}

impl Dropout {
    /// A dropout layer.
    ///
    /// # Errors
    /// `p` outside `[0, 1)`.
    pub fn new(p: f32, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::config(format!(
                "dropout probability {p} outside [0, 1)"
            )));
        }
        Ok(Self {
            cfg: DropoutConfig { p, seed },
            rng: rng(seed),
            cache: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DropoutConfig {
        &self.cfg
    }
}

impl Layer for Dropout {
    fn kind(&self) -> &'static str {
        "Dropout"
    }

    /// Any shape -> the same shape (identity in evaluation).
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }

    /// Inference is the identity, on codes as on reals.
    fn accepts(&self, _: crate::value::ValueKind) -> bool {
        true
    }

    fn output_kind(&self, input: crate::value::ValueKind) -> crate::value::ValueKind {
        input
    }

    fn forward_value(&self, x: &crate::value::Value) -> Result<crate::value::Value> {
        Ok(x.clone())
    }

    /// The random generator's position.
    fn train_state(&self) -> Vec<u64> {
        let pos = self.rng.get_word_pos();
        vec![pos as u64, (pos >> 64) as u64]
    }

    fn set_train_state(&mut self, state: &[u64]) -> Result<()> {
        let [lo, hi] = state else {
            return Err(Error::Invalid(format!(
                "Dropout state holds 2 values, got {}",
                state.len()
            )));
        };
        self.rng = rng(self.cfg.seed);
        self.rng.set_word_pos(*lo as u128 | ((*hi as u128) << 64));
        Ok(())
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        let keep = 1.0 - self.cfg.p;
        let scale = 1.0 / keep;
        let rng = &mut self.rng;
        let mask = x.mapv(|_| {
            if rng.random::<f32>() < keep {
                scale
            } else {
                0.0
            }
        });
        let y = x * &mask;
        self.cache = Some(mask);
        Ok(y)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let mask = self
            .cache
            .take()
            .ok_or_else(|| Error::no_cache("Dropout"))?;
        if mask.shape() != grad_out.shape() {
            return Err(Error::shape(
                format!("gradient {:?}", mask.shape()),
                grad_out.shape(),
            ));
        }
        Ok(grad_out * &mask)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(input.to_vec())
    }

    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.cfg).expect("serializes")
    }
}

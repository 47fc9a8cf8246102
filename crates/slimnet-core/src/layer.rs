//! The [`Layer`] trait shared by every crate of slimnet.

use std::any::Any;

use crate::error::{Error, Result};
use crate::param::Param;
use crate::tensor::Tensor;

/// Size and compute of a layer for one input shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cost {
    /// Output shape.
    pub output: Vec<usize>,
    /// Number of stored parameters (non-zeros for sparse layers).
    pub params: usize,
    /// Multiply-accumulates of one forward pass over the whole input batch.
    pub macs: usize,
    /// Bytes of stored weights as they would be saved.
    pub bytes: usize,
}

/// A tensor as stored in a model file: its dtype, shape and little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTensor {
    /// Element type.
    pub dtype: safetensors::Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian element bytes.
    pub bytes: Vec<u8>,
}

impl StoredTensor {
    /// An f32 tensor.
    pub fn from_f32(t: &Tensor) -> Self {
        Self {
            dtype: safetensors::Dtype::F32,
            shape: t.shape().to_vec(),
            bytes: t.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

/// Object-safe plumbing every layer gets for free: downcasting and cloning.
pub trait LayerBase {
    /// `self` as `Any`, for downcasting in rewrite rules.
    fn as_any(&self) -> &dyn Any;
    /// `self` as mutable `Any`.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// A boxed clone.
    fn clone_box(&self) -> Box<dyn Layer>;
}

impl<T: Layer + Clone + 'static> LayerBase for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn clone_box(&self) -> Box<dyn Layer> {
        Box::new(self.clone())
    }
}

/// A network layer: inference, training, shapes, cost, parameters and serialization.
///
/// `forward` is inference (evaluation mode, shared `&self`, usable from many threads and as a
/// frozen teacher). `forward_train` runs in training mode and caches what `backward` needs;
/// `backward` takes the gradient of the loss with respect to the output, accumulates parameter
/// gradients into each [`Param`] and returns the gradient with respect to the input.
///
/// Only `kind`, `forward` and `output_shape` are required; stateless layers that cannot train
/// keep the default `backward`, which returns an error.
pub trait Layer: LayerBase + Send + Sync {
    /// The kind name used in model files and summaries (e.g. `"Conv2d"`).
    fn kind(&self) -> &'static str;

    /// Inference forward pass.
    ///
    /// # Errors
    /// When the input shape does not fit the layer.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// Training forward pass; caches what `backward` needs. Defaults to `forward` without a cache.
    ///
    /// # Errors
    /// When the input shape does not fit the layer.
    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        self.forward(x)
    }

    /// Backward pass: accumulates parameter gradients, returns the input gradient.
    ///
    /// # Errors
    /// When called without a preceding `forward_train`, or the layer cannot train.
    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let _ = grad_out;
        Err(Error::Backward {
            layer: String::new(),
            reason: format!("{} layers cannot be trained", self.kind()),
        })
    }

    /// Output shape for an input shape.
    ///
    /// # Errors
    /// When the input shape does not fit the layer.
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>>;

    /// Parameters, MACs and bytes for an input shape. The default counts parameters and buffers
    /// as f32 and reports no MACs.
    ///
    /// # Errors
    /// When the input shape does not fit the layer.
    fn cost(&self, input: &[usize]) -> Result<Cost> {
        let output = self.output_shape(input)?;
        let mut params = 0;
        self.visit_params(&mut |_, p| params += p.len());
        Ok(Cost {
            output,
            params,
            macs: 0,
            bytes: params * 4,
        })
    }

    /// Visits trainable parameters with their local names (`weight`, `bias`, or dotted paths in
    /// containers).
    fn visit_params(&self, f: &mut dyn FnMut(&str, &Param)) {
        let _ = f;
    }

    /// Visits trainable parameters mutably.
    fn visit_params_mut(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        let _ = f;
    }

    /// Visits non-trainable state that is saved with the model (e.g. running statistics).
    fn visit_buffers(&self, f: &mut dyn FnMut(&str, &Tensor)) {
        let _ = f;
    }

    /// Hyper-parameters as JSON, enough for the registry to rebuild the layer with its tensors.
    fn config_json(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// The tensors saved in a model file, with local names. Defaults to the parameters (and a
    /// `<name>.mask` entry for masked ones) plus the buffers, as f32. Compact layers (sparse,
    /// int8) override this to store their real arrays.
    fn stored_tensors(&self, f: &mut dyn FnMut(&str, StoredTensor)) {
        self.visit_params(&mut |name, p| {
            f(name, StoredTensor::from_f32(&p.value));
            if let Some(m) = p.mask() {
                f(&format!("{name}.mask"), StoredTensor::from_f32(m));
            }
        });
        self.visit_buffers(&mut |name, t| f(name, StoredTensor::from_f32(t)));
    }
}

impl dyn Layer + '_ {
    /// Downcasts to a concrete layer type.
    pub fn downcast_ref<T: Layer + 'static>(&self) -> Option<&T> {
        self.as_any().downcast_ref::<T>()
    }

    /// Downcasts mutably to a concrete layer type.
    pub fn downcast_mut<T: Layer + 'static>(&mut self) -> Option<&mut T> {
        self.as_any_mut().downcast_mut::<T>()
    }

    /// Sets every parameter's gradient to zero.
    pub fn zero_grad(&mut self) {
        self.visit_params_mut(&mut |_, p| p.zero_grad());
    }

    /// Total number of parameter elements.
    pub fn num_params(&self) -> usize {
        let mut n = 0;
        self.visit_params(&mut |_, p| n += p.len());
        n
    }
}

impl Clone for Box<dyn Layer> {
    fn clone(&self) -> Self {
        (**self).clone_box()
    }
}

/// Error for `backward` called before `forward_train`.
pub(crate) fn no_cache(kind: &str) -> Error {
    Error::Backward {
        layer: String::new(),
        reason: format!("{kind}: backward called without a preceding forward_train"),
    }
}

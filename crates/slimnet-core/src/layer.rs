//! The [`Layer`] trait shared by every crate of slimnet.

use std::any::Any;

use crate::error::{Error, Result};
use crate::param::Param;
use crate::tensor::Tensor;
use crate::value::{Value, ValueKind};

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
    /// A 0/1 mask as u8 (one byte per weight, a quarter of an f32 copy).
    pub fn mask_u8(t: &Tensor) -> Self {
        Self {
            dtype: safetensors::Dtype::U8,
            shape: t.shape().to_vec(),
            bytes: t.iter().map(|&v| (v != 0.0) as u8).collect(),
        }
    }

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
/// keep the default `backward`, which returns an error. The other methods come in groups with
/// defaults:
/// - typed inference ([`input_kind`](Self::input_kind), [`accepts`](Self::accepts),
///   [`output_kind`](Self::output_kind), [`forward_value`](Self::forward_value)): int8 layers
///   read and write u8 codes on the edges of a graph (see [`crate::value`]);
/// - traversal ([`visit_params`](Self::visit_params), [`visit_buffers`](Self::visit_buffers),
///   [`children`](Self::children)): passes reach parameters and inner layers
///   without knowing the container;
/// - cost and files ([`cost`](Self::cost), [`config_json`](Self::config_json),
///   [`stored_tensors`](Self::stored_tensors));
/// - [`to_core`](Self::to_core): the same function in core layers, for passes that do not know
///   a kind.
///
/// A layer of your own passes through every slimnet pass untouched unless a rule for its type
/// is registered:
///
/// ```
/// use slimnet_core::{tensor, Layer, Result, Sequential, Tensor};
/// use slimnet_core::layers::LinearConfig;
///
/// /// Multiplies its input by a constant.
/// #[derive(Debug, Clone)]
/// struct Scale(f32);
///
/// impl Layer for Scale {
///     fn kind(&self) -> &'static str { "Scale" }
///     /// Any shape -> the same shape.
///     fn forward(&self, x: &Tensor) -> Result<Tensor> { Ok(x * self.0) }
///     fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> { self.forward(x) }
///     fn backward(&mut self, g: &Tensor) -> Result<Tensor> { Ok(g * self.0) }
///     fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> { Ok(input.to_vec()) }
/// }
///
/// let model = Sequential::new()
///     .push("fc", LinearConfig::new(4, 2).init(&mut tensor::rng(0))?)
///     .push("scale", Scale(0.5))
///     .build()?;
/// let y = model.forward(&tensor::zeros(&[3, 4]))?;
/// assert_eq!(y.shape(), &[3, 2]);
/// # Ok::<(), slimnet_core::Error>(())
/// ```
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

    /// The kind of value this layer reads at inference: f32 (the default), or u8 codes with
    /// the quantization an int8 layer was built for.
    fn input_kind(&self) -> ValueKind {
        ValueKind::F32
    }

    /// Whether [`forward_value`](Self::forward_value) takes a value of `kind` as it is. The
    /// default takes only [`input_kind`](Self::input_kind); layers that work on codes as well
    /// as reals (max-pool, flatten, ReLU) take both.
    fn accepts(&self, kind: ValueKind) -> bool {
        kind == self.input_kind()
    }

    /// The kind of value [`forward_value`](Self::forward_value) returns for an input of kind
    /// `input` (the default: f32).
    fn output_kind(&self, input: ValueKind) -> ValueKind {
        let _ = input;
        ValueKind::F32
    }

    /// Inference on a typed value. Callers hand a value the layer
    /// [`accepts`](Self::accepts), converting it to [`input_kind`](Self::input_kind) when it
    /// does not. The default converts to f32 and runs [`forward`](Self::forward).
    ///
    /// # Errors
    /// As [`forward`](Self::forward).
    fn forward_value(&self, x: &Value) -> Result<Value> {
        Ok(Value::F32(self.forward(&x.to_f32())?))
    }

    /// The layers this layer is made of (a graph's layer nodes, a wrapper's inner layer) with
    /// their local names. Passes recurse through it; the default has none.
    fn children(&self) -> Vec<(&str, &dyn Layer)> {
        Vec::new()
    }

    /// The slots holding the layers this layer is made of, so a pass can replace them.
    fn children_mut(&mut self) -> Vec<(&str, &mut Box<dyn Layer>)> {
        Vec::new()
    }

    /// The same function built from slimnet-core layers (a sparse layer gives a masked dense
    /// layer, a layer with a fused activation a small graph), for passes and exporters that do
    /// not know this kind. `None` (the default) when there is no such form.
    ///
    /// # Errors
    /// When building the core form fails.
    fn to_core(&self) -> Option<Result<Box<dyn Layer>>> {
        None
    }

    /// Makes what inference on inputs of shape `input` can prepare once (transformed or packed
    /// weights), so the first call is as fast as the others. The default does nothing.
    ///
    /// # Errors
    /// When the input shape does not fit the layer.
    fn prepare(&self, input: &[usize]) -> Result<()> {
        let _ = input;
        Ok(())
    }

    /// Sets every parameter's gradient to zero.
    fn zero_grad(&mut self) {
        self.visit_params_mut(&mut |_, p| p.zero_grad());
    }

    /// Total number of trainable parameter elements (compact deploy layers, which have none,
    /// report their stored values in [`cost`](Self::cost)).
    fn num_params(&self) -> usize {
        let mut n = 0;
        self.visit_params(&mut |_, p| n += p.len());
        n
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

    /// Training state that is neither a parameter nor a buffer (a random generator's
    /// position), saved in training checkpoints so a resumed run repeats exactly. The default
    /// has none.
    fn train_state(&self) -> Vec<u64> {
        Vec::new()
    }

    /// Restores a state given by [`train_state`](Self::train_state).
    ///
    /// # Errors
    /// A state of the wrong length.
    fn set_train_state(&mut self, state: &[u64]) -> Result<()> {
        if state.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "{} keeps no training state, got {} values",
                self.kind(),
                state.len()
            )))
        }
    }

    /// Visits non-trainable state that is saved with the model (e.g. running statistics).
    fn visit_buffers(&self, f: &mut dyn FnMut(&str, &Tensor)) {
        let _ = f;
    }

    /// Hyper-parameters as JSON, enough for the registry to rebuild the layer with its tensors.
    fn config_json(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// The tensors saved in a model file, with local names. Defaults to the parameters as f32
    /// (and a `<name>.mask` u8 entry for masked ones) plus the buffers as f32. Compact layers (sparse,
    /// int8) override this to store their real arrays.
    fn stored_tensors(&self, f: &mut dyn FnMut(&str, StoredTensor)) {
        self.visit_params(&mut |name, p| {
            f(name, StoredTensor::from_f32(p.value()));
            if let Some(m) = p.mask() {
                f(&format!("{name}.mask"), StoredTensor::mask_u8(m));
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

    /// Whether the layer stores a weight but has no trainable parameters: a compact deploy
    /// layer (sparse, int8, shared weights), which passes that work on float weights (pruning,
    /// decomposition) cannot change.
    pub fn is_compact(&self) -> bool {
        let mut stores = false;
        if self.num_params() == 0 && self.children().is_empty() {
            self.stored_tensors(&mut |name, _| stores |= name.starts_with("weight"));
        }
        stores
    }
}

impl Clone for Box<dyn Layer> {
    fn clone(&self) -> Self {
        (**self).clone_box()
    }
}

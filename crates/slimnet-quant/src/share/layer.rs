//! [`SharedWeights`]: a Conv2d or Linear whose weights are indices into a trainable codebook.

use safetensors::Dtype;
use serde_json::json;
use slimnet_core::io::{parse_config, TensorSource};
use slimnet_core::layers::{Conv2d, Conv2dConfig, Linear, LinearConfig};
use slimnet_core::{Cost, Error, Layer, Param, Result, StoredTensor, Tensor};

use super::huffman;
use super::kmeans;
use crate::error::{to_core, QuantError};
use crate::layers::with_weight;
use crate::pack::{pack_bits, packed_len, unpack_bits};

/// Gap symbol meaning "skip this many positions without placing a weight".
const SKIP: u8 = 255;

/// Weight sharing (Deep Compression): the kept weights of a Conv2d or Linear are `bits`-bit
/// indices into a codebook of `2^bits` shared values found by k-means; pruned (masked) weights
/// stay exactly zero and take no index.
///
/// The codebook is the trainable parameter (`codebook`; the bias stays trainable too): the
/// backward pass sums the weight gradients of each cluster into its centroid, so fine-tuning
/// moves shared values while the assignments stay fixed.
///
/// In a model file: `codebook` (f32 `[2^bits]`), `index` (the indices of the kept weights,
/// packed at `bits` bits, or Huffman-coded with `index_code_lengths`), and for a pruned layer
/// `gaps` (the kept positions as gaps between them, one byte each or Huffman-coded with
/// `gap_code_lengths`; 255 skips 255 positions), plus the f32 `bias`.
///
/// ```
/// use slimnet_core::layers::LinearConfig;
/// use slimnet_core::{tensor, Layer};
/// use slimnet_quant::share::SharedWeights;
/// let fc = LinearConfig::new(32, 8).init(&mut tensor::rng(0))?;
/// let s = SharedWeights::new(Box::new(fc.clone()), 4, false)?;
/// let mut distinct: Vec<f32> = Vec::new();
/// s.inner().visit_params(&mut |n, p| if n == "weight" { distinct = p.value().iter().copied().collect() });
/// distinct.sort_by(f32::total_cmp);
/// distinct.dedup();
/// assert!(distinct.len() <= 16);
/// let x = tensor::uniform(&[2, 32], 0.0, 1.0, &mut tensor::rng(1));
/// assert!(tensor::max_abs_diff(&s.forward(&x)?, &fc.forward(&x)?) < 0.3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SharedWeights {
    inner: Box<dyn Layer>,
    bits: u32,
    huffman: bool,
    codebook: Param,
    /// Cluster of each kept weight, in position order.
    index: Vec<u8>,
    /// Flat positions of the kept weights (`None`: every position).
    positions: Option<Vec<u32>>,
    /// The codebook the inner weight was last built from.
    built: Vec<f32>,
    shape: Vec<usize>,
}

fn weight_param(l: &dyn Layer) -> Option<&Param> {
    if let Some(c) = l.downcast_ref::<Conv2d>() {
        return Some(&c.weight);
    }
    l.downcast_ref::<Linear>().map(|f| &f.weight)
}

fn weight_param_mut(l: &mut dyn Layer) -> Option<&mut Param> {
    if l.as_any().is::<Conv2d>() {
        return l.downcast_mut::<Conv2d>().map(|c| &mut c.weight);
    }
    l.downcast_mut::<Linear>().map(|f| &mut f.weight)
}

impl SharedWeights {
    /// Clusters the kept weights of a Conv2d or Linear into `2^bits` shared values.
    ///
    /// # Errors
    /// Another layer kind, `bits` outside `1..=8`, or non-finite weights.
    pub fn new(layer: Box<dyn Layer>, bits: u32, huffman: bool) -> Result<Self> {
        if !(1..=8).contains(&bits) {
            return Err(to_core(QuantError::BitWidth {
                layer: String::new(),
                bits,
                min: 1,
                max: 8,
            }));
        }
        let w = weight_param(layer.as_ref())
            .ok_or_else(|| Error::config(format!("weight sharing of a {}", layer.kind())))?;
        let shape = w.value().shape().to_vec();
        let flat: Vec<f32> = w.value().iter().copied().collect();
        let positions: Option<Vec<u32>> = w.mask().map(|m| {
            m.iter()
                .enumerate()
                .filter(|(_, &k)| k != 0.0)
                .map(|(i, _)| i as u32)
                .collect()
        });
        let kept: Vec<f32> = match &positions {
            Some(p) => p.iter().map(|&i| flat[i as usize]).collect(),
            None => flat,
        };
        let (c, index) = kmeans(&kept, 1 << bits, 100).map_err(to_core)?;
        let codebook = Param::new(Tensor::from_shape_vec(vec![c.len()], c).expect("k values"));
        let mut s = Self {
            inner: layer,
            bits,
            huffman,
            codebook,
            index,
            positions,
            built: vec![],
            shape,
        };
        s.rebuild()?;
        Ok(s)
    }

    /// The float layer computing with the shared weights.
    pub fn inner(&self) -> &dyn Layer {
        self.inner.as_ref()
    }

    /// The shared values.
    pub fn codebook(&self) -> &[f32] {
        self.codebook.value().as_slice().expect("1-d")
    }

    /// Number of kept (unpruned) weights.
    pub fn kept(&self) -> usize {
        self.index.len()
    }

    fn weight(&self) -> Tensor {
        let c = self.codebook();
        let n: usize = self.shape.iter().product();
        let mut w = vec![0.0f32; n];
        match &self.positions {
            Some(p) => p
                .iter()
                .zip(&self.index)
                .for_each(|(&i, &k)| w[i as usize] = c[k as usize]),
            None => w
                .iter_mut()
                .zip(&self.index)
                .for_each(|(v, &k)| *v = c[k as usize]),
        }
        Tensor::from_shape_vec(self.shape.clone(), w).expect("weight shape")
    }

    fn rebuild(&mut self) -> Result<()> {
        let w = self.weight();
        let mut inner = with_weight(self.inner.as_ref(), w)?;
        if let (Some(p), Some(wp)) = (&self.positions, weight_param_mut(inner.as_mut())) {
            let mut m = vec![0.0f32; wp.len()];
            p.iter().for_each(|&i| m[i as usize] = 1.0);
            wp.set_mask(Tensor::from_shape_vec(self.shape.clone(), m).expect("mask shape"))?;
        }
        self.inner = inner;
        self.built = self.codebook().to_vec();
        Ok(())
    }

    fn fresh(&self) -> bool {
        self.built.as_slice() == self.codebook()
    }

    /// The gap symbols of the kept positions.
    fn gaps(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut next = 0u32;
        for &p in self.positions.as_deref().unwrap_or(&[]) {
            let mut gap = p - next;
            while gap >= SKIP as u32 {
                out.push(SKIP);
                gap -= SKIP as u32;
            }
            out.push(gap as u8);
            next = p + 1;
        }
        out
    }
}

/// Huffman code lengths and stream of `symbols` over an alphabet of `k`.
fn huff(symbols: &[u8], k: usize) -> (Vec<u8>, Vec<u8>) {
    let mut f = vec![0u64; k];
    symbols.iter().for_each(|&s| f[s as usize] += 1);
    let lens = huffman::code_lengths(&f);
    let bits = huffman::encode(symbols, &lens).expect("every symbol has a code");
    (lens, bits)
}

impl Layer for SharedWeights {
    fn kind(&self) -> &'static str {
        "SharedWeights"
    }

    /// As the wrapped layer.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.fresh() {
            return self.inner.forward(x);
        }
        let mut s = self.clone();
        s.rebuild()?;
        s.inner.forward(x)
    }

    fn forward_train(&mut self, x: &Tensor) -> Result<Tensor> {
        if !self.fresh() {
            self.rebuild()?;
        }
        self.inner.forward_train(x)
    }

    fn backward(&mut self, grad_out: &Tensor) -> Result<Tensor> {
        let gx = self.inner.backward(grad_out)?;
        let wp = weight_param_mut(self.inner.as_mut()).expect("a weight");
        let g: Vec<f32> = wp.grad.iter().copied().collect();
        wp.zero_grad();
        let cg = self.codebook.grad.as_slice_mut().expect("1-d");
        match &self.positions {
            Some(p) => p
                .iter()
                .zip(&self.index)
                .for_each(|(&i, &k)| cg[k as usize] += g[i as usize]),
            None => g
                .iter()
                .zip(&self.index)
                .for_each(|(v, &k)| cg[k as usize] += v),
        }
        Ok(gx)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.inner.output_shape(input)
    }

    fn cost(&self, input: &[usize]) -> Result<Cost> {
        let mut c = self.inner.cost(input)?;
        let mut bytes = 0;
        self.stored_tensors(&mut |_, t| bytes += t.bytes.len());
        c.bytes = bytes;
        let mut bias = 0;
        self.inner.visit_params(&mut |n, p| {
            if n == "bias" {
                bias = p.len()
            }
        });
        c.params = self.kept() + self.codebook.len() + bias;
        Ok(c)
    }

    fn visit_params(&self, f: &mut dyn FnMut(&str, &Param)) {
        f("codebook", &self.codebook);
        self.inner.visit_params(&mut |n, p| {
            if n == "bias" {
                f(n, p)
            }
        });
    }

    fn visit_params_mut(&mut self, f: &mut dyn FnMut(&str, &mut Param)) {
        f("codebook", &mut self.codebook);
        self.inner.visit_params_mut(&mut |n, p| {
            if n == "bias" {
                f(n, p)
            }
        });
    }

    fn config_json(&self) -> serde_json::Value {
        json!({
            "inner": self.inner.kind(), "config": self.inner.config_json(), "bits": self.bits,
            "huffman": self.huffman, "kept": self.kept(),
            "gap_symbols": self.positions.as_ref().map(|_| self.gaps().len()),
        })
    }

    fn stored_tensors(&self, f: &mut dyn FnMut(&str, StoredTensor)) {
        let u8t = |b: Vec<u8>| StoredTensor {
            dtype: Dtype::U8,
            shape: vec![b.len()],
            bytes: b,
        };
        f("codebook", StoredTensor::from_f32(self.codebook.value()));
        if self.huffman {
            let (lens, bits) = huff(&self.index, 1 << self.bits);
            f("index", u8t(bits));
            f("index_code_lengths", u8t(lens));
        } else {
            f(
                "index",
                u8t(pack_bits(&self.index, self.bits).expect("indices fit")),
            );
        }
        if self.positions.is_some() {
            let gaps = self.gaps();
            if self.huffman {
                let (lens, bits) = huff(&gaps, 256);
                f("gaps", u8t(bits));
                f("gap_code_lengths", u8t(lens));
            } else {
                f("gaps", u8t(gaps));
            }
        }
        self.inner.visit_params(&mut |n, p| {
            if n == "bias" {
                f("bias", StoredTensor::from_f32(p.value()));
            }
        });
    }
}

pub(crate) fn load_shared(
    cfg: &serde_json::Value,
    t: &mut TensorSource<'_>,
) -> Result<Box<dyn Layer>> {
    let bad = |r: String| Error::ModelFile(format!("SharedWeights: {r}"));
    let get_u = |k: &str| cfg.get(k).and_then(|v| v.as_u64());
    let bits = get_u("bits")
        .filter(|b| (1..=8).contains(b))
        .ok_or_else(|| bad("bits must be 1..=8".into()))? as u32;
    let huffman = cfg
        .get("huffman")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let kept = get_u("kept").ok_or_else(|| bad("missing `kept`".into()))? as usize;
    let inner_cfg = cfg.get("config").unwrap_or(&json!(null));
    let codebook = t.f32("codebook")?;
    if codebook.len() != 1 << bits || codebook.iter().any(|v| !v.is_finite()) {
        return Err(bad(format!(
            "codebook of {} values for {bits} bits",
            codebook.len()
        )));
    }
    let b = t.f32_opt("bias")?;
    // the layer with a zero weight: validates the configuration and gives the weight shape
    let (layer, n): (Box<dyn Layer>, usize) = match cfg.get("inner").and_then(|v| v.as_str()) {
        Some("Conv2d") => {
            let c: Conv2dConfig = parse_config("Conv2d", inner_cfg)?;
            c.validate()?;
            let n =
                slimnet_core::limits::check_shape("SharedWeights weight", &c.weight_shape(), 4)?;
            if kept > n || n > 1 << 28 {
                return Err(bad(format!("{kept} kept weights of {n}")));
            }
            (
                Box::new(Conv2d::from_parts(
                    c.clone(),
                    slimnet_core::tensor::zeros(&c.weight_shape()),
                    b,
                )?),
                n,
            )
        }
        Some("Linear") => {
            let c: LinearConfig = parse_config("Linear", inner_cfg)?;
            c.validate()?;
            let n = c.in_features.saturating_mul(c.out_features);
            if kept > n || n > 1 << 28 {
                return Err(bad(format!("{kept} kept weights of {n}")));
            }
            (
                Box::new(Linear::from_parts(
                    c.clone(),
                    slimnet_core::tensor::zeros(&[c.out_features, c.in_features]),
                    b,
                )?),
                n,
            )
        }
        other => return Err(bad(format!("unknown inner kind {other:?}"))),
    };
    let (_, stream) = t.raw("index", Dtype::U8)?;
    let index = if huffman {
        let (_, lens) = t.raw("index_code_lengths", Dtype::U8)?;
        huffman::decode(&stream, &lens, kept).map_err(to_core)?
    } else {
        if stream.len() != packed_len(kept, bits) {
            return Err(bad(format!(
                "{} index bytes for {kept} indices",
                stream.len()
            )));
        }
        unpack_bits(&stream, bits, kept).map_err(to_core)?
    };
    if index.iter().any(|&k| (k as usize) >= 1 << bits) {
        return Err(bad("an index exceeds the codebook".into()));
    }
    let positions = match get_u("gap_symbols") {
        None if kept == n => None,
        None => {
            return Err(bad(format!(
                "{kept} of {n} weights kept but no gaps stored"
            )))
        }
        Some(ng) => {
            let (_, g) = t.raw("gaps", Dtype::U8)?;
            let gaps = if huffman {
                let (_, lens) = t.raw("gap_code_lengths", Dtype::U8)?;
                huffman::decode(&g, &lens, ng as usize).map_err(to_core)?
            } else {
                g
            };
            let mut pos = Vec::with_capacity(kept);
            let mut next = 0u64;
            for &s in &gaps {
                next += s as u64;
                if s != SKIP {
                    if next >= n as u64 {
                        return Err(bad("a kept position lies outside the weight".into()));
                    }
                    pos.push(next as u32);
                    next += 1;
                }
            }
            if pos.len() != kept {
                return Err(bad(format!(
                    "{} positions for {kept} kept weights",
                    pos.len()
                )));
            }
            Some(pos)
        }
    };
    let shape = weight_param(layer.as_ref())
        .expect("a weight")
        .value()
        .shape()
        .to_vec();
    let mut s = SharedWeights {
        inner: layer,
        bits,
        huffman,
        codebook: Param::new(codebook),
        index,
        positions,
        built: vec![],
        shape,
    };
    s.rebuild()?;
    Ok(Box::new(s))
}

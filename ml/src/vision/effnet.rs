//! EfficientNet-Lite0 (Tan & Le 2019; the "lite" variant: ReLU6, no squeeze-excitation,
//! fixed stem and head) as a candle module, laid out like the `efficientnet_lite_pytorch`
//! state dict. Batch norms are folded into the convolutions at load (inference only). After
//! the stem, maps are channels-last (NHWC): 1×1 convolutions are one matrix product each
//! and the depthwise loop vectorises over channels.
//! Convolutions pad like TensorFlow's "SAME" (asymmetric at stride 2), as the converted
//! weights expect. Depthwise convolutions are a custom CPU op (candle's grouped convolution
//! runs one convolution per channel).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Module, Shape, Tensor};

use crate::Error;

/// Batch-norm epsilon of the lite models (`batch_norm_epsilon` in the reference code).
const BN_EPS: f64 = 1e-3;
/// Width of the pooled features.
pub const FEATURES: usize = 1280;
/// Input resolution of Lite0.
pub const RESOLUTION: usize = 224;

/// (repeats, kernel, stride, expand ratio, input filters, output filters) per stage.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// TensorFlow "SAME" padding of one dimension: (before, after).
fn same_pad(input: usize, kernel: usize, stride: usize) -> (usize, usize) {
    let out = input.div_ceil(stride);
    let total = ((out - 1) * stride + kernel).saturating_sub(input);
    (total / 2, total - total / 2)
}

fn take(w: &mut HashMap<String, Tensor>, name: &str) -> Result<Tensor, Error> {
    w.remove(name)
        .ok_or_else(|| Error::Integrity(format!("the image model has no tensor {name}")))
}

/// A convolution's weight (out channels first) and bias with the batch norm folded in.
fn fold(w: &mut HashMap<String, Tensor>, conv: &str, bn: &str) -> Result<(Tensor, Tensor), Error> {
    let weight = take(w, &format!("{conv}.weight"))?.to_dtype(DType::F32)?;
    let gamma = take(w, &format!("{bn}.weight"))?;
    let beta = take(w, &format!("{bn}.bias"))?;
    let mean = take(w, &format!("{bn}.running_mean"))?;
    let var = take(w, &format!("{bn}.running_var"))?;
    let scale = gamma.div(&(var + BN_EPS)?.sqrt()?)?;
    let bias = beta.sub(&mean.mul(&scale)?)?;
    let mut shape = vec![scale.dim(0)?];
    shape.extend(std::iter::repeat_n(1, weight.rank() - 1));
    let weight = weight.broadcast_mul(&scale.reshape(shape)?)?;
    Ok((weight.contiguous()?, bias.contiguous()?))
}

/// The f32 values of a contiguous CPU tensor (what the custom ops accept).
fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(all) = storage else {
        candle_core::bail!("{op} on f32 only");
    };
    let Some((start, end)) = layout.contiguous_offsets() else {
        candle_core::bail!("{op} needs a contiguous input");
    };
    Ok(&all[start..end])
}

/// Adds a per-channel bias and optionally clamps to [0, 6], in one pass. `channels_last`:
/// the channel is the last dimension (NHWC), else the second (NCHW).
struct BiasAct {
    bias: Vec<f32>,
    relu6: bool,
    channels_last: bool,
}

impl CustomOp1 for BiasAct {
    fn name(&self) -> &'static str {
        "bias-relu6"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(storage, layout, "bias")?;
        let dims = layout.shape().dims();
        let c = self.bias.len();
        let act = |v: f32| if self.relu6 { v.clamp(0.0, 6.0) } else { v };
        let mut out = input.to_vec();
        if self.channels_last {
            if dims.last() != Some(&c) {
                candle_core::bail!("bias of {c} channels for shape {dims:?}");
            }
            for px in out.chunks_exact_mut(c) {
                for (v, b) in px.iter_mut().zip(&self.bias) {
                    *v = act(*v + b);
                }
            }
        } else {
            if dims.len() < 2 || dims[1] != c {
                candle_core::bail!("bias of {c} channels for shape {dims:?}");
            }
            let plane: usize = dims[2..].iter().product();
            for (i, chunk) in out.chunks_exact_mut(plane).enumerate() {
                let b = self.bias[i % c];
                chunk.iter_mut().for_each(|v| *v = act(*v + b));
            }
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// 1×1 convolution + folded batch norm (+ ReLU6) on channels-last maps: `X · Wᵀ`.
struct Pointwise {
    /// [in, out]
    weight_t: Tensor,
    bias: BiasAct,
}

impl Pointwise {
    fn load(
        w: &mut HashMap<String, Tensor>,
        conv: &str,
        bn: &str,
        relu6: bool,
    ) -> Result<Self, Error> {
        let (weight, bias) = fold(w, conv, bn)?;
        let (o, i) = (weight.dim(0)?, weight.dim(1)?);
        Ok(Pointwise {
            weight_t: weight.reshape((o, i))?.t()?.contiguous()?,
            bias: BiasAct {
                bias: bias.to_vec1()?,
                relu6,
                channels_last: true,
            },
        })
    }

    /// `[n, h, w, in]` → `[n, h, w, out]`.
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, h, w, c) = x.dims4()?;
        let y = x.reshape((n * h * w, c))?.matmul(&self.weight_t)?;
        y.apply_op1_no_bwd(&self.bias)?
            .reshape((n, h, w, self.weight_t.dim(1)?))
    }
}

/// Depthwise k×k convolution (one filter per channel) + folded batch norm + ReLU6, "SAME"
/// padding, on channels-last maps: the innermost loop runs over channels (contiguous, so
/// vectorised), output rows run in parallel.
struct Depthwise {
    /// [k·k, channels]: the taps of all channels for each kernel position.
    weight: Vec<f32>,
    bias: Vec<f32>,
    kernel: usize,
    stride: usize,
}

impl Depthwise {
    fn load(
        w: &mut HashMap<String, Tensor>,
        conv: &str,
        bn: &str,
        kernel: usize,
        stride: usize,
    ) -> Result<Self, Error> {
        let (weight, bias) = fold(w, conv, bn)?;
        let c = weight.dim(0)?;
        // [c, 1, k, k] → [k·k, c]
        let weight = weight.reshape((c, kernel * kernel))?.t()?.contiguous()?;
        Ok(Depthwise {
            weight: weight.flatten_all()?.to_vec1()?,
            bias: bias.to_vec1()?,
            kernel,
            stride,
        })
    }
}

impl CustomOp1 for Depthwise {
    fn name(&self) -> &'static str {
        "depthwise-conv-same-nhwc"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(storage, layout, "depthwise convolution")?;
        let (n, h, w, c) = layout.shape().dims4()?;
        let (k, s) = (self.kernel, self.stride);
        if self.bias.len() != c {
            candle_core::bail!("depthwise: {c} channels, weights for {}", self.bias.len());
        }
        let (oh, ow) = (h.div_ceil(s), w.div_ceil(s));
        let (top, _) = same_pad(h, k, s);
        let (left, _) = same_pad(w, k, s);
        let mut out = vec![0f32; n * oh * ow * c];
        use rayon::prelude::*;
        out.par_chunks_mut(ow * c)
            .enumerate()
            .for_each(|(row, out_row)| {
                let (img, oy) = (row / oh, row % oh);
                let src = &input[img * h * w * c..(img + 1) * h * w * c];
                for px in out_row.chunks_exact_mut(c) {
                    px.copy_from_slice(&self.bias);
                }
                for ky in 0..k {
                    let iy = (oy * s + ky) as isize - top as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let in_row = &src[iy as usize * w * c..(iy as usize + 1) * w * c];
                    for kx in 0..k {
                        let taps = &self.weight[(ky * k + kx) * c..(ky * k + kx + 1) * c];
                        for (ox, px) in out_row.chunks_exact_mut(c).enumerate() {
                            let ix = (ox * s + kx) as isize - left as isize;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            let from = &in_row[ix as usize * c..(ix as usize + 1) * c];
                            for ((o, x), t) in px.iter_mut().zip(from).zip(taps) {
                                *o += x * t;
                            }
                        }
                    }
                }
                out_row.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0));
            });
        Ok((CpuStorage::F32(out), Shape::from((n, oh, ow, c))))
    }
}

/// One mobile inverted bottleneck (MBConv) block.
struct Block {
    expand: Option<Pointwise>,
    depthwise: Depthwise,
    project: Pointwise,
    residual: bool,
}

/// Where one forward pass spent its time, by kind of layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Profile {
    pub stem: Duration,
    pub expand: Duration,
    pub depthwise: Duration,
    pub project: Duration,
    pub head: Duration,
}

/// Runs `f`, adding its time to `into`.
fn timed<T>(into: &mut Duration, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    *into += t.elapsed();
    r
}

impl Block {
    fn forward(&self, x: &Tensor, p: &mut Profile) -> candle_core::Result<Tensor> {
        let y = timed(&mut p.expand, || match &self.expand {
            Some(e) => e.forward(x),
            None => Ok(x.clone()),
        })?;
        let y = timed(&mut p.depthwise, || {
            y.contiguous()?.apply_op1_no_bwd(&self.depthwise)
        })?;
        timed(&mut p.project, || {
            let y = self.project.forward(&y)?;
            if self.residual { y + x } else { Ok(y) }
        })
    }
}

/// The network, ready for inference on CPU.
pub struct EfficientNetLite0 {
    /// The folded stem kernel as [27, 32] and its bias, ReLU6.
    stem: (Tensor, BiasAct),
    blocks: Vec<Block>,
    head: Pointwise,
    /// [1000, 1280] and [1000].
    fc: candle_nn::Linear,
}

impl EfficientNetLite0 {
    /// Builds the network from the state dict's tensors (names as in the PyTorch model).
    pub fn from_tensors(mut w: HashMap<String, Tensor>) -> Result<Self, Error> {
        let (stem_w, stem_b) = fold(&mut w, "_conv_stem", "_bn0")?;
        // [32, 3, 3, 3] → [27, 32], rows in (channel, ky, kx) order like the patches.
        let stem = (
            stem_w.reshape((stem_w.dim(0)?, ()))?.t()?.contiguous()?,
            BiasAct {
                bias: stem_b.to_vec1()?,
                relu6: true,
                channels_last: true,
            },
        );
        let mut blocks = Vec::new();
        for (repeats, k, stride, expand, input, output) in STAGES {
            for r in 0..repeats {
                let i = blocks.len();
                let p = format!("_blocks.{i}");
                let (inp, s) = if r == 0 { (input, stride) } else { (output, 1) };
                let expand = (expand != 1)
                    .then(|| {
                        Pointwise::load(
                            &mut w,
                            &format!("{p}._expand_conv"),
                            &format!("{p}._bn0"),
                            true,
                        )
                    })
                    .transpose()?;
                let depthwise = Depthwise::load(
                    &mut w,
                    &format!("{p}._depthwise_conv"),
                    &format!("{p}._bn1"),
                    k,
                    s,
                )?;
                let project = Pointwise::load(
                    &mut w,
                    &format!("{p}._project_conv"),
                    &format!("{p}._bn2"),
                    false,
                )?;
                blocks.push(Block {
                    expand,
                    depthwise,
                    project,
                    residual: s == 1 && inp == output,
                });
            }
        }
        let head = Pointwise::load(&mut w, "_conv_head", "_bn1", true)?;
        let fc =
            candle_nn::Linear::new(take(&mut w, "_fc.weight")?, Some(take(&mut w, "_fc.bias")?));
        Ok(EfficientNetLite0 {
            stem,
            blocks,
            head,
            fc,
        })
    }

    /// The stem's output (after its activation), channel-major `[n, 32, H/2, W/2]`, for
    /// checking the first layer alone.
    pub fn stem(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.stem_nhwc(x)?.permute((0, 3, 1, 2))
    }

    /// The stem as one matrix product: 3×3 stride-2 patches of the channel-major input
    /// (zero outside, "SAME" padding) times the folded kernel, channels-last out.
    fn stem_nhwc(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
        let (top, _) = same_pad(h, 3, 2);
        let (left, _) = same_pad(w, 3, 2);
        let input: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let cols = c * 9;
        let mut patches = vec![0f32; n * oh * ow * cols];
        for img in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    let at = ((img * oh + oy) * ow + ox) * cols;
                    let patch = &mut patches[at..at + cols];
                    for ch in 0..c {
                        for ky in 0..3 {
                            let iy = (oy * 2 + ky) as isize - top as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for kx in 0..3 {
                                let ix = (ox * 2 + kx) as isize - left as isize;
                                if ix < 0 || ix >= w as isize {
                                    continue;
                                }
                                patch[ch * 9 + ky * 3 + kx] =
                                    input[((img * c + ch) * h + iy as usize) * w + ix as usize];
                            }
                        }
                    }
                }
            }
        }
        let patches = Tensor::from_vec(patches, (n * oh * ow, cols), &Device::Cpu)?;
        let y = patches
            .matmul(&self.stem.0)?
            .apply_op1_no_bwd(&self.stem.1)?;
        y.reshape((n, oh, ow, self.stem.0.dim(1)?))
    }

    /// Pooled 1280-wide features of normalised images `[n, 3, H, W]` (before the classifier).
    pub fn features(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.features_profiled(x, &mut Profile::default())
    }

    /// [`features`](Self::features), adding the time of each kind of layer to `p`.
    pub fn features_profiled(&self, x: &Tensor, p: &mut Profile) -> candle_core::Result<Tensor> {
        let mut y = timed(&mut p.stem, || self.stem_nhwc(x))?;
        for b in &self.blocks {
            y = b.forward(&y, p)?;
        }
        timed(&mut p.head, || self.head.forward(&y)?.mean((1, 2)))
    }

    /// ImageNet logits from pooled features.
    pub fn classify(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        self.fc.forward(features)
    }

    pub fn device(&self) -> Device {
        Device::Cpu
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        assert_eq!(same_pad(224, 3, 2), (0, 1));
        assert_eq!(same_pad(56, 5, 2), (1, 2));
        assert_eq!(same_pad(14, 5, 1), (2, 2));
        assert_eq!(same_pad(7, 3, 1), (1, 1));
        assert_eq!(same_pad(7, 1, 1), (0, 0));
    }

    /// The custom depthwise op equals candle's grouped convolution on explicitly padded input,
    /// then ReLU6.
    #[test]
    fn depthwise_equals_grouped_convolution() {
        let dev = Device::Cpu;
        for (k, s, h, w) in [(3, 1, 9, 7), (5, 2, 12, 11), (3, 2, 8, 8), (5, 1, 6, 5)] {
            let c = 4;
            let x = Tensor::randn(0f32, 1., (2, c, h, w), &dev).unwrap();
            let weight = Tensor::randn(0f32, 1., (c, 1, k, k), &dev).unwrap();
            let bias: Vec<f32> = (0..c).map(|i| i as f32 * 0.1).collect();
            let op = Depthwise {
                weight: weight
                    .reshape((c, k * k))
                    .unwrap()
                    .t()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1()
                    .unwrap(),
                bias: bias.clone(),
                kernel: k,
                stride: s,
            };
            let nhwc = x.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap();
            let got = nhwc
                .apply_op1_no_bwd(&op)
                .unwrap()
                .permute((0, 3, 1, 2))
                .unwrap();
            let (t, b) = same_pad(h, k, s);
            let (l, r) = same_pad(w, k, s);
            let padded = x
                .pad_with_zeros(2, t, b)
                .unwrap()
                .pad_with_zeros(3, l, r)
                .unwrap();
            let want = padded
                .conv2d(&weight, 0, s, 1, c)
                .unwrap()
                .broadcast_add(
                    &Tensor::new(bias.as_slice(), &dev)
                        .unwrap()
                        .reshape((1, c, 1, 1))
                        .unwrap(),
                )
                .unwrap()
                .clamp(0f32, 6f32)
                .unwrap();
            assert_eq!(got.dims(), want.dims(), "k{k} s{s} {h}x{w}");
            let diff = (got - want)
                .unwrap()
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-4, "k{k} s{s} {h}x{w}: {diff}");
        }
    }
}

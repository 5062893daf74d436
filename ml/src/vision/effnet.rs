//! EfficientNet-Lite0 (Tan & Le 2019; the "lite" variant: ReLU6, no squeeze-excitation,
//! fixed stem and head) as a candle module, laid out like the `efficientnet_lite_pytorch`
//! state dict. Batch norms are folded into the convolutions at load (inference only).
//! Convolutions pad like TensorFlow's "SAME" (asymmetric at stride 2), as the converted
//! weights expect. 1×1 convolutions run as matrix products; depthwise convolutions as a
//! custom CPU op (candle's grouped convolution runs one convolution per channel).

use std::collections::HashMap;

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

/// 1×1 convolution + folded batch norm, as `W · X` per image.
struct Pointwise {
    /// [out, in]
    weight: Tensor,
    /// [out, 1]
    bias: Tensor,
}

impl Pointwise {
    fn load(w: &mut HashMap<String, Tensor>, conv: &str, bn: &str) -> Result<Self, Error> {
        let (weight, bias) = fold(w, conv, bn)?;
        let (o, i) = (weight.dim(0)?, weight.dim(1)?);
        Ok(Pointwise {
            weight: weight.reshape((o, i))?,
            bias: bias.reshape((o, 1))?,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        let flat = x.reshape((n, c, h * w))?;
        let y = self
            .weight
            .broadcast_matmul(&flat)?
            .broadcast_add(&self.bias)?;
        y.reshape((n, self.weight.dim(0)?, h, w))
    }
}

/// Depthwise k×k convolution (one filter per channel) + folded batch norm, "SAME" padding.
struct Depthwise {
    /// [channels, k, k], contiguous.
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
        "depthwise-conv-same"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(all) = storage else {
            candle_core::bail!("depthwise convolution on f32 only");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("depthwise convolution needs a contiguous input");
        };
        let input = &all[start..end];
        let (n, c, h, w) = layout.shape().dims4()?;
        let (k, s) = (self.kernel, self.stride);
        if self.bias.len() != c {
            candle_core::bail!("depthwise: {c} channels, weights for {}", self.bias.len());
        }
        let (oh, ow) = (h.div_ceil(s), w.div_ceil(s));
        let (top, _) = same_pad(h, k, s);
        let (left, _) = same_pad(w, k, s);
        let mut out = vec![0f32; n * c * oh * ow];
        for (plane, out_plane) in out.chunks_exact_mut(oh * ow).enumerate() {
            let ch = plane % c;
            let src = &input[plane * h * w..(plane + 1) * h * w];
            let filter = &self.weight[ch * k * k..(ch + 1) * k * k];
            out_plane.fill(self.bias[ch]);
            for kx in 0..k {
                if kx >= w + left {
                    continue; // the whole column lies in the padding
                }
                // Output columns whose input column ox·s + kx − left is inside the image.
                let first = left.saturating_sub(kx).div_ceil(s);
                let last = (w + left).saturating_sub(kx + 1) / s; // inclusive
                if first > last.min(ow - 1) {
                    continue;
                }
                let last = last.min(ow - 1);
                for ky in 0..k {
                    let f = filter[ky * k + kx];
                    for oy in 0..oh {
                        let iy = (oy * s + ky) as isize - top as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let row = &src[iy as usize * w..(iy as usize + 1) * w];
                        let dst = &mut out_plane[oy * ow..(oy + 1) * ow];
                        let base = kx as isize - left as isize;
                        if s == 1 {
                            let lo = (first as isize + base) as usize;
                            let len = last + 1 - first;
                            for (d, x) in dst[first..=last].iter_mut().zip(&row[lo..lo + len]) {
                                *d += f * x;
                            }
                        } else {
                            for (ox, d) in dst.iter_mut().enumerate().take(last + 1).skip(first) {
                                *d += f * row[((ox * s) as isize + base) as usize];
                            }
                        }
                    }
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((n, c, oh, ow))))
    }
}

fn relu6(x: &Tensor) -> candle_core::Result<Tensor> {
    x.clamp(0f32, 6f32)
}

/// One mobile inverted bottleneck (MBConv) block.
struct Block {
    expand: Option<Pointwise>,
    depthwise: Depthwise,
    project: Pointwise,
    residual: bool,
}

impl Block {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut y = match &self.expand {
            Some(e) => relu6(&e.forward(x)?)?,
            None => x.clone(),
        };
        y = relu6(&y.contiguous()?.apply_op1_no_bwd(&self.depthwise)?)?;
        y = self.project.forward(&y)?;
        if self.residual {
            y = (y + x)?;
        }
        Ok(y)
    }
}

/// The network, ready for inference on CPU.
pub struct EfficientNetLite0 {
    /// [32, 3, 3, 3] and [32] (folded).
    stem: (Tensor, Tensor),
    blocks: Vec<Block>,
    head: Pointwise,
    /// [1000, 1280] and [1000].
    fc: candle_nn::Linear,
}

impl EfficientNetLite0 {
    /// Builds the network from the state dict's tensors (names as in the PyTorch model).
    pub fn from_tensors(mut w: HashMap<String, Tensor>) -> Result<Self, Error> {
        let stem = fold(&mut w, "_conv_stem", "_bn0")?;
        let mut blocks = Vec::new();
        for (repeats, k, stride, expand, input, output) in STAGES {
            for r in 0..repeats {
                let i = blocks.len();
                let p = format!("_blocks.{i}");
                let (inp, s) = if r == 0 { (input, stride) } else { (output, 1) };
                let expand = (expand != 1)
                    .then(|| {
                        Pointwise::load(&mut w, &format!("{p}._expand_conv"), &format!("{p}._bn0"))
                    })
                    .transpose()?;
                let depthwise = Depthwise::load(
                    &mut w,
                    &format!("{p}._depthwise_conv"),
                    &format!("{p}._bn1"),
                    k,
                    s,
                )?;
                let project =
                    Pointwise::load(&mut w, &format!("{p}._project_conv"), &format!("{p}._bn2"))?;
                blocks.push(Block {
                    expand,
                    depthwise,
                    project,
                    residual: s == 1 && inp == output,
                });
            }
        }
        let head = Pointwise::load(&mut w, "_conv_head", "_bn1")?;
        let fc =
            candle_nn::Linear::new(take(&mut w, "_fc.weight")?, Some(take(&mut w, "_fc.bias")?));
        Ok(EfficientNetLite0 {
            stem,
            blocks,
            head,
            fc,
        })
    }

    /// The stem's output (after its activation), for checking the first layer alone.
    pub fn stem(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let (t, b) = same_pad(h, 3, 2);
        let (l, r) = same_pad(w, 3, 2);
        let x = x.pad_with_zeros(2, t, b)?.pad_with_zeros(3, l, r)?;
        let y = x.conv2d(&self.stem.0, 0, 2, 1, 1)?;
        relu6(&y.broadcast_add(&self.stem.1.reshape((1, (), 1, 1))?)?)
    }

    /// Pooled 1280-wide features of normalised images `[n, 3, H, W]` (before the classifier).
    pub fn features(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut y = self.stem(x)?;
        for b in &self.blocks {
            y = b.forward(&y)?;
        }
        let y = relu6(&self.head.forward(&y)?)?;
        y.mean((2, 3))
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

    /// The custom depthwise op equals candle's grouped convolution on explicitly padded input.
    #[test]
    fn depthwise_equals_grouped_convolution() {
        let dev = Device::Cpu;
        for (k, s, h, w) in [(3, 1, 9, 7), (5, 2, 12, 11), (3, 2, 8, 8), (5, 1, 6, 5)] {
            let c = 4;
            let x = Tensor::randn(0f32, 1., (2, c, h, w), &dev).unwrap();
            let weight = Tensor::randn(0f32, 1., (c, 1, k, k), &dev).unwrap();
            let bias: Vec<f32> = (0..c).map(|i| i as f32 * 0.1).collect();
            let op = Depthwise {
                weight: weight.flatten_all().unwrap().to_vec1().unwrap(),
                bias: bias.clone(),
                kernel: k,
                stride: s,
            };
            let got = x.apply_op1_no_bwd(&op).unwrap();
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

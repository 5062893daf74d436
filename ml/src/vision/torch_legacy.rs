//! Reads PyTorch's legacy (pre-1.6, non-zip) serialization without torch: five pickles in a
//! row (magic number, protocol version, system info, the object, the storage keys), then the
//! raw storages in key order, each as a little-endian element count and the data. The
//! object is a state dict whose tensors are `_rebuild_tensor_v2(storage, offset, size,
//! stride, ...)` views into those storages; views may be strided (weights converted from
//! TensorFlow are permuted), so every tensor is gathered into a contiguous copy.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};

use crate::Error;

/// The first pickle of a legacy file: protocol 2, LONG1 of 10 bytes holding torch's magic
/// number 0x1950a86a20f9469cfc6c (little-endian), STOP. Checked byte for byte: the number does
/// not fit the pickle parser's i64.
const MAGIC_PICKLE: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::Integrity(format!(
        "{}: not a legacy torch file: {what}",
        path.display()
    ))
}

fn pickle<R: BufRead>(r: &mut R, path: &Path) -> Result<Object, Error> {
    let mut stack = Stack::empty();
    stack.read_loop(r).map_err(|e| bad(path, e))?;
    stack.finalize().map_err(|e| bad(path, e))
}

/// Where one tensor lives in its storage.
struct View {
    key: String,
    dtype: DType,
    offset: usize,
    size: Vec<usize>,
    stride: Vec<usize>,
}

fn usizes(o: Object) -> Option<Vec<usize>> {
    match o {
        Object::Tuple(v) => v
            .into_iter()
            .map(|x| x.int_or_long().ok().and_then(|i| usize::try_from(i).ok()))
            .collect(),
        _ => None,
    }
}

fn view(value: Object) -> Option<View> {
    let (callable, args) = value.reduce().ok()?;
    let (module, class) = callable.class().ok()?;
    if module != "torch._utils" || class != "_rebuild_tensor_v2" {
        return None;
    }
    let mut args = args.tuple().ok()?.into_iter();
    let storage = args.next()?.persistent_load().ok()?.tuple().ok()?;
    let offset = usize::try_from(args.next()?.int_or_long().ok()?).ok()?;
    let size = usizes(args.next()?)?;
    let stride = usizes(args.next()?)?;
    let mut storage = storage.into_iter();
    if storage.next()?.unicode().ok()? != "storage" {
        return None;
    }
    let (_, class) = storage.next()?.class().ok()?;
    let dtype = match class.as_str() {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "LongStorage" => DType::I64,
        _ => return None,
    };
    let key = storage.next()?.unicode().ok()?;
    Some(View {
        key,
        dtype,
        offset,
        size,
        stride,
    })
}

/// The element at each index of `size`, in row-major order, read through `stride`.
fn gather<T: Copy>(data: &[T], v: &View) -> Option<Vec<T>> {
    let n: usize = v.size.iter().product();
    let mut out = Vec::with_capacity(n);
    let mut index = vec![0usize; v.size.len()];
    for _ in 0..n {
        let at = v.offset
            + index
                .iter()
                .zip(&v.stride)
                .map(|(i, s)| i * s)
                .sum::<usize>();
        out.push(*data.get(at)?);
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < v.size[d] {
                break;
            }
            index[d] = 0;
        }
    }
    Some(out)
}

/// Every tensor of a legacy `.pth` state dict, by name, as contiguous CPU tensors.
pub fn read(path: &Path) -> Result<Vec<(String, Tensor)>, Error> {
    let file =
        std::fs::File::open(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let mut r = BufReader::new(file);
    let mut magic = [0u8; MAGIC_PICKLE.len()];
    r.read_exact(&mut magic).map_err(|e| bad(path, e))?;
    if magic != MAGIC_PICKLE {
        return Err(bad(path, "no torch magic number at the start"));
    }
    let _protocol = pickle(&mut r, path)?;
    let _sys_info = pickle(&mut r, path)?;
    let object = pickle(&mut r, path)?;
    let keys = match pickle(&mut r, path)? {
        Object::List(keys) => keys
            .into_iter()
            .map(|k| {
                k.unicode()
                    .map_err(|k| bad(path, format!("storage key {k:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?,
        other => return Err(bad(path, format!("storage keys {other:?}"))),
    };
    let entries = match object {
        Object::Dict(entries) => entries,
        // An OrderedDict with attributes (`_metadata`) arrives as BUILD(dict, state).
        Object::Build { callable, .. } => match *callable {
            Object::Dict(entries) => entries,
            other => return Err(bad(path, format!("not a state dict: {other:?}"))),
        },
        other => return Err(bad(path, format!("not a state dict: {other:?}"))),
    };
    let mut views = Vec::new();
    let mut dtype_of: HashMap<String, DType> = HashMap::new();
    for (name, value) in entries {
        let Ok(name) = name.unicode() else { continue };
        if name == "_metadata" {
            continue; // the module versions attached to a state dict, not a tensor
        }
        let Some(v) = view(value) else {
            return Err(bad(path, format!("{name} is not a plain tensor")));
        };
        dtype_of.insert(v.key.clone(), v.dtype);
        views.push((name, v));
    }
    // The storages, in the order of the key list.
    let mut storages: HashMap<String, (DType, Vec<u8>)> = HashMap::new();
    for key in keys {
        let mut count = [0u8; 8];
        r.read_exact(&mut count)
            .map_err(|e| bad(path, format!("storage {key}: {e}")))?;
        let count = u64::from_le_bytes(count) as usize;
        let dtype = *dtype_of
            .get(&key)
            .ok_or_else(|| bad(path, format!("storage {key} is not used by any tensor")))?;
        let mut bytes = vec![0u8; count * dtype.size_in_bytes()];
        r.read_exact(&mut bytes)
            .map_err(|e| bad(path, format!("storage {key} is cut short: {e}")))?;
        storages.insert(key, (dtype, bytes));
    }
    let mut out = Vec::with_capacity(views.len());
    for (name, v) in views {
        let (dtype, bytes) = storages
            .get(&v.key)
            .ok_or_else(|| bad(path, format!("{name}: storage {} missing", v.key)))?;
        let short = || bad(path, format!("{name} reaches past its storage"));
        let t = match dtype {
            DType::F32 => {
                let data: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                Tensor::from_vec(gather(&data, &v).ok_or_else(short)?, v.size, &Device::Cpu)?
            }
            DType::F64 => {
                let data: Vec<f64> = bytes
                    .chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                    .collect();
                Tensor::from_vec(gather(&data, &v).ok_or_else(short)?, v.size, &Device::Cpu)?
            }
            _ => {
                let data: Vec<i64> = bytes
                    .chunks_exact(8)
                    .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                    .collect();
                Tensor::from_vec(gather(&data, &v).ok_or_else(short)?, v.size, &Device::Cpu)?
            }
        };
        out.push((name, t));
    }
    // The pickle's SETITEMS batches come out of candle's parser in reverse; sort by name so
    // the output does not depend on it.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Converts a legacy `.pth` state dict to safetensors; returns the number of tensors.
pub fn convert(pth: &Path, out: &Path) -> Result<usize, Error> {
    let tensors: HashMap<String, Tensor> = read(pth)?.into_iter().collect();
    let n = tensors.len();
    // A private temporary name: two processes converting at once must not share it.
    let tmp = out.with_extension(format!("partial-{}", uuid::Uuid::now_v7()));
    candle_core::safetensors::save(&tensors, &tmp)?;
    std::fs::rename(&tmp, out).map_err(|e| Error::Io(format!("{}: {e}", out.display())))?;
    Ok(n)
}

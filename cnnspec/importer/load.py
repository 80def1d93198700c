"""Reading an ONNX file: bounded in size, external tensor data only from plain files beside it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .state import NotAModel

MAX_MODEL_BYTES = 2**31  # protobuf cannot hold more; larger models keep tensors in data files


def load_model(path: Path):
    """The ModelProto of `path`, with external tensor data read only from plain files
    in the model's folder. Raises NotAModel with a one-line reason."""
    import onnx
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

    try:
        if not path.is_file():
            raise NotAModel("no such file" if not path.exists() else "not a regular file")
        if path.stat().st_size > MAX_MODEL_BYTES:
            raise NotAModel("larger than 2 GB: not an ONNX model (large models keep tensors in a data file)")
        data = path.read_bytes()
    except OSError as exc:
        raise NotAModel(exc.strerror or str(exc)) from None
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError, OverflowError) as exc:
        raise NotAModel(f"not an ONNX model ({type(exc).__name__})") from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.node:
        raise NotAModel("not an ONNX model (no graph)")
    return model


def _external(tensor, folder: Path) -> np.ndarray:
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    if not location or Path(location).name != location or location in (".", ".."):
        raise NotAModel(f"tensor '{tensor.name}' points outside the model's folder ({location!r})")
    data_path = folder / location
    if data_path.is_symlink() or not data_path.is_file():
        raise NotAModel(f"tensor '{tensor.name}': data file {location} is missing or not a regular file")
    dtype = _DTYPES.get(tensor.data_type)
    if dtype is None:
        raise NotAModel(f"tensor '{tensor.name}' has a data type cnnspec does not read")
    count = math.prod(tensor.dims)
    written = info.get("offset", "0")
    if not written.isdigit() or len(written) > 19 or any(d < 0 for d in tensor.dims):
        raise NotAModel(
            f"tensor '{tensor.name}': offset {written[:40]!r} or dims {list(tensor.dims)[:8]} is not a size"
        )
    offset = int(written)
    nbytes = count * np.dtype(dtype).itemsize
    if offset < 0 or offset + nbytes > data_path.stat().st_size:
        raise NotAModel(f"tensor '{tensor.name}' lies beyond the end of {location}")
    array: np.ndarray = np.fromfile(data_path, dtype=dtype, count=count, offset=offset)
    return array.reshape(tuple(tensor.dims))


_DTYPES = {1: np.float32, 10: np.float16, 11: np.float64, 6: np.int32, 7: np.int64, 9: np.bool_}


def tensor_array(tensor, folder: Path) -> np.ndarray:
    from onnx import TensorProto, numpy_helper

    if tensor.data_location == TensorProto.EXTERNAL:
        return _external(tensor, folder)
    try:
        return numpy_helper.to_array(tensor)
    except Exception as exc:  # a malformed tensor: protobuf and numpy raise many kinds
        raise NotAModel(f"tensor '{tensor.name}' cannot be read ({type(exc).__name__})") from None

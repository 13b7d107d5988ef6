"""The CLIP BPE tokenizer, read from a diffusers folder's `tokenizer/vocab.json` + `merges.txt`.

Small and dependency-free (no `regex`, `ftfy`): lower-case, whitespace-collapse, the CLIP
pre-tokenizer pattern with Python `re` classes (letters `[^\\W\\d_]+`, single digits, other runs),
byte-level unicode mapping, words end in `</w>`, greedy lowest-rank merges. Output is padded to
`max_length` with the pad token (SD-2: "!", id 0; OpenAI CLIP: the end token) and begins/ends with
`<|startoftext|>` / `<|endoftext|>`. The placeholder "[V*]" becomes `placeholder_id` (a new token
whose embedding DefectFill trains; the text encoder swaps it in).
"""

from __future__ import annotations

import functools
import json
import os
import re

import numpy as np

PLACEHOLDER = "[V*]"
_PATTERN = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|"
                      r"[^\s\w]+|_+", re.IGNORECASE)


@functools.lru_cache(None)
def bytes_to_unicode() -> dict[int, str]:
  """GPT-2/CLIP's reversible byte -> printable unicode character map."""
  keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1))
          + list(range(ord("\xae"), ord("\xff") + 1)))
  out, extra = {}, 0
  for b in range(256):
    if b in keep:
      out[b] = chr(b)
    else:
      out[b] = chr(256 + extra)
      extra += 1
  return out


class CLIPTokenizer:
  """ids = tokenizer(["a photo of [V*]"]) -> int32 [B, max_length]."""

  def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], max_length: int = 77,
               pad_token: str = "<|endoftext|>", placeholder_id: int | None = None):
    self.vocab = vocab
    self.ranks = {m: i for i, m in enumerate(merges)}
    self.max_length = max_length
    self.bos, self.eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    if pad_token not in vocab:
      raise ValueError(f"tokenizer: pad token {pad_token!r} is not in the vocabulary")
    self.pad = vocab[pad_token]
    self.placeholder_id = len(vocab) if placeholder_id is None else placeholder_id
    self._byte = bytes_to_unicode()
    # Special tokens written in the text (the pad "!" of SD-2 included) stay whole, as the
    # transformers tokenizer treats them.
    specials = sorted({"<|startoftext|>", "<|endoftext|>", pad_token}, key=len, reverse=True)
    self._specials = re.compile("(" + "|".join(re.escape(t) for t in specials) + ")")
    self._cache: dict[str, list[str]] = {}

  @classmethod
  def from_folder(cls, folder: str, **kwargs) -> "CLIPTokenizer":
    """`folder` is a diffusers `tokenizer/` (vocab.json, merges.txt, tokenizer_config.json)."""
    vocab_path, merges_path = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    for p in (vocab_path, merges_path):
      if not os.path.exists(p):
        raise FileNotFoundError(f"{p}: missing (a CLIP tokenizer folder has vocab.json and "
                                f"merges.txt)")
    with open(vocab_path, encoding="utf-8") as f:
      vocab = json.load(f)
    with open(merges_path, encoding="utf-8") as f:
      lines = f.read().split("\n")
    merges = [tuple(l.split()) for l in lines[1:] if l.strip() and len(l.split()) == 2]
    opts = {}
    cfg_path = os.path.join(folder, "tokenizer_config.json")
    if os.path.exists(cfg_path):
      with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
      pad = cfg.get("pad_token")
      pad = pad.get("content") if isinstance(pad, dict) else pad
      if pad:
        opts["pad_token"] = pad
      if cfg.get("model_max_length") and cfg["model_max_length"] < 10 ** 6:
        opts["max_length"] = int(cfg["model_max_length"])
    opts.update(kwargs)
    return cls(vocab, merges, **opts)

  def bpe(self, word: str) -> list[str]:
    if word in self._cache:
      return self._cache[word]
    parts = list(word[:-1]) + [word[-1] + "</w>"]
    while len(parts) > 1:
      pairs = [(self.ranks.get((a, b), float("inf")), i)
               for i, (a, b) in enumerate(zip(parts, parts[1:]))]
      rank, i = min(pairs)
      if rank == float("inf"):
        break
      a, b = parts[i], parts[i + 1]
      merged, j = [], 0
      while j < len(parts):
        if j < len(parts) - 1 and parts[j] == a and parts[j + 1] == b:
          merged.append(a + b)
          j += 2
        else:
          merged.append(parts[j])
          j += 1
      parts = merged
    self._cache[word] = parts
    return parts

  def encode_text(self, text: str) -> list[int]:
    """Token ids of `text` without begin/end tokens; "[V*]" -> `placeholder_id`."""
    out = []
    for k, chunk in enumerate(text.split(PLACEHOLDER)):
      if k:
        out.append(self.placeholder_id)
      chunk = re.sub(r"\s+", " ", chunk).strip().lower()
      for part in self._specials.split(chunk):
        if part in self.vocab and self._specials.fullmatch(part):
          out.append(self.vocab[part])
          continue
        for word in _PATTERN.findall(part):
          mapped = "".join(self._byte[b] for b in word.encode("utf-8"))
          for piece in self.bpe(mapped):
            if piece not in self.vocab:
              raise ValueError(f"tokenizer: piece {piece!r} of {text!r} is not in the vocabulary")
            out.append(self.vocab[piece])
    return out

  def __call__(self, texts) -> np.ndarray:
    if isinstance(texts, str):
      texts = [texts]
    rows = []
    for t in texts:
      ids = [self.bos] + self.encode_text(t)[: self.max_length - 2] + [self.eos]
      rows.append(ids + [self.pad] * (self.max_length - len(ids)))
    return np.asarray(rows, np.int32)

  def index_of_placeholder(self, text: str) -> int:
    """Position of [V*] in the padded ids of `text` (what L_attn reads)."""
    ids = self([text])[0]
    where = np.nonzero(ids == self.placeholder_id)[0]
    if not len(where):
      raise ValueError(f"tokenizer: prompt {text!r} has no {PLACEHOLDER} token")
    return int(where[0])

"""Custom pipeline layouts and where a model's leading dense layers sit on the pipeline.

Megatron-Core's ``pipeline_model_parallel_layout`` names the layers each model chunk holds
(:func:`parse_pipeline_layout`, :func:`layout_stage_split`); Megatron-Bridge's DeepSeek-V3 recipes
pin one per (PP, VP). A model's leading dense-FFN layers (``first_dense_layers``) are its first
layers, so they sit on the first ranks' first chunks (:func:`split_leading_dense` for the
balanced split of :mod:`.pipeline`). Pure Python (no numpy): the options' validator imports it.
"""

from __future__ import annotations

import re
from functools import lru_cache

#: Longest layout, unrolled, that is read (an input bound against ``t*999999999``, not a world constant):
#: a 1000-layer model on 512 chunks needs about 2,000 characters.
MAX_LAYOUT_CHARS = 100_000


def parse_pipeline_layout(layout: str) -> tuple[str, ...]:
    """The model chunks of a Megatron-Core ``pipeline_model_parallel_layout`` string, in order.

    ``E`` embedding, ``t`` transformer (decoder) layer, ``m`` MTP layer, ``L`` loss; ``|``
    separates chunks (virtual stages, chunk ``i`` on pipeline rank ``i mod PP``); ``(...)*n``
    and ``x*n`` repeat; commas are cosmetic. ``"Et*4|(t*4|)*14tmL"`` is 16 chunks.

    Parameters
    ----------
    layout : str
        The layout string.

    Returns
    -------
    tuple of str
        One string of ``E``/``t``/``m``/``L`` per chunk.

    Raises
    ------
    ValueError
        On a character other than ``EtmL|()*``, digits, commas and spaces, a nested repeat, or a
        layout that unrolls to more than :data:`MAX_LAYOUT_CHARS` characters.

    References
    ----------
    Megatron-Core ``PipelineParallelLayerLayout.parse_str_to_list``
    (``megatron/core/transformer/pipeline_parallel_layer_layout.py``).
    """
    s = str(layout).replace(",", "").replace(" ", "")
    if not s or set(s) - set("EtmL|()*0123456789"):
        raise ValueError("a layout uses E, t, m, L, '|', '(...)*n' and 'x*n' only")
    size = len(s)

    def unroll(m):  # the unrolled string's length is checked before it is built
        nonlocal size
        size += len(m.group(1)) * int(m.group(2)[:10]) - len(m.group(0))
        if size > MAX_LAYOUT_CHARS:
            raise ValueError(f"a layout may unroll to at most {MAX_LAYOUT_CHARS} characters")
        return m.group(1) * int(m.group(2))

    s = re.sub(r"\(([^)]+)\)\*(\d+)", unroll, s)
    s = re.sub(r"(.)\*(\d+)", unroll, s)
    if set(s) - set("EtmL|"):
        raise ValueError("nested repeats are not Megatron's layout syntax")
    return tuple(s.split("|"))


def _fill_leading(leading: int, chunks: list[int], pp: int) -> list[int]:
    """Leading layers (``leading``) per pipeline rank when they fill ``chunks`` (decoder layers per
    chunk, chunk ``i`` on rank ``i mod pp``) in layer order."""
    per_rank, left = [0] * pp, leading
    for i, n in enumerate(chunks):
        k = min(n, left)
        per_rank[i % pp] += k
        left -= k
    return per_rank


def _first_mid_last(layers: list[int], dense: list[int]):
    """(first, heaviest middle, last) ranks' layers and leading dense layers; the heaviest middle
    rank has the most layers and, of those, the fewest (cheaper) dense ones."""
    pp = len(layers)
    if pp == 1:
        return (layers[0], 0, 0), (dense[0], 0, 0)
    j = max(range(1, pp - 1), key=lambda r: (layers[r], -dense[r])) if pp > 2 else None
    mid = (layers[j], dense[j]) if j is not None else (0, 0)
    return (layers[0], mid[0], layers[-1]), (dense[0], mid[1], dense[-1])


@lru_cache(maxsize=4096)
def layout_stage_split(layout: str, pp: int, vp: int, n_layers: int, mtp_layers: int = 0,
                       leading_dense: int = 0):
    """Layers and leading dense layers of the (first, heaviest middle, last) rank under a custom layout.

    Megatron-Core builds chunk ``i`` of a ``pipeline_model_parallel_layout`` on pipeline rank
    ``i mod PP``. The model's leading dense layers (``first_dense_layers``, DeepSeek-V3's 3)
    are its first decoder layers in that order. MTP layers must sit with the loss on the last
    rank (Megatron also allows a standalone MTP rank; not modelled).

    Parameters
    ----------
    layout : str
        Megatron-Core layout string (:func:`parse_pipeline_layout`).
    pp, vp : int
        Pipeline ranks and chunks per rank of the layout being evaluated.
    n_layers, mtp_layers : int
        The model's decoder and MTP layers; the layout must hold exactly these.
    leading_dense : int, optional
        Leading dense-FFN layers (default 0).

    Returns
    -------
    tuple or None
        ``((first, mid, last), (dense_first, dense_mid, dense_last))``, or None when the layout
        does not have ``pp x vp`` chunks.

    Raises
    ------
    ValueError
        When the layout does not hold the model (embedding first, loss last, ``n_layers``
        decoder and ``mtp_layers`` MTP layers after every decoder layer, on the last rank).

    References
    ----------
    Megatron-Core ``PipelineParallelLayerLayout`` (``validate_layer_layout``,
    ``get_num_layers_to_build``), ``megatron/core/transformer/pipeline_parallel_layer_layout.py``.
    """
    chunks = parse_pipeline_layout(layout)
    if len(chunks) != pp * vp:
        return None
    flat = "".join(chunks)
    if not flat or flat[0] != "E" or flat[-1] != "L" or flat.count("E") != 1 or flat.count("L") != 1:
        raise ValueError(f"layout {layout!r} must start with the embedding E and end with the loss L, once each")
    if flat.count("t") != n_layers or flat.count("m") != mtp_layers:
        raise ValueError(f"layout {layout!r} holds {flat.count('t')} decoder and {flat.count('m')} MTP layers; "
                         f"the model has {n_layers} and {mtp_layers}")
    if "m" in flat and "t" in flat[flat.index("m"):]:
        raise ValueError(f"layout {layout!r}: decoder layers must come before the MTP layers")
    if any("m" in ch and i % pp != pp - 1 for i, ch in enumerate(chunks)):
        raise ValueError(f"layout {layout!r}: MTP layers on a rank other than the last are not modelled")
    counts = [ch.count("t") for ch in chunks]
    layers = [sum(counts[i::pp]) for i in range(pp)]
    return _first_mid_last(layers, _fill_leading(leading_dense, counts, pp))


@lru_cache(maxsize=65536)
def split_leading_dense(split: tuple[int, int, int], pp: int, vp: int, leading_dense: int) -> tuple[int, int, int]:
    """Leading dense layers on the (first, heaviest middle, last) rank of a :func:`stage_split`.

    Each rank's layers are taken as ``vp`` near-equal chunks; the leading dense layers fill
    the chunks in layer order (chunk 0 of every rank, then chunk 1, ...); the heaviest middle
    rank is the one with the fewest.

    Parameters
    ----------
    split : tuple of int
        ``(first, middle, last)`` layers per rank.
    pp, vp : int
        Pipeline ranks and chunks per rank.
    leading_dense : int
        The model's leading dense-FFN layers (``first_dense_layers``).

    Returns
    -------
    tuple of int
        Dense layers on the first, heaviest middle and last rank.
    """
    first, mid, last = split
    if leading_dense <= 0 or first < 0:
        return (0, 0, 0)
    ranks = [first] + [mid] * max(pp - 2, 0) + ([last] if pp > 1 else [])
    per_chunk = [[n // vp + (i < n % vp) for i in range(vp)] for n in ranks]
    chunks = [per_chunk[r][v] for v in range(vp) for r in range(pp)]
    dense = _fill_leading(leading_dense, chunks, pp)
    return _first_mid_last(ranks, dense)[1]

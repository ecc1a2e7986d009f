"""Activation CPU offloading (Megatron-Core ``cpu_offloading_num_layers``, Transformer Engine's
``get_cpu_offload_context`` with its default scheduling).

The first ``N`` of a model's ``L`` layers copy the tensors they save for backward to host memory
during their forward (device-to-host, on a side stream, starting as soon as a tensor is saved) and
copy them back before their backward (host-to-device). At most ``L - N`` layers' activation sets are
on the GPU at any time; compute waits when that limit or a late reload requires it.

Time, per microbatch and pass (forward: device-to-host, backward: host-to-device). One layer's copy
takes ``t_x = A / B`` (``A`` the layer's saved bytes, ``B`` the host link per direction). The copies
run one after another on the offload stream, from the first layer's forward on; the last layer
cannot start before the last offloaded set has left (the set limit), so the ``N t_x`` of copies hide
under the compute of the ``L - 2`` layers in between. With ``N = L - 1`` only one set fits on the GPU:
each layer waits for the previous one's copy (Transformer Engine warns that nothing overlaps). The
hidden part slows compute like other overlapped traffic (it competes for HBM bandwidth, as the
Transformer Engine documentation notes): :func:`offload_times` returns it for the overlap slowdown.

Memory: the offloaded layers' activations leave the GPU; ``L - N`` sets stay (:func:`kept_layers`).

References
----------
NVIDIA Transformer Engine documentation, "CPU Offloading" (default scheduling: "First num_layers layers
are offloaded", "At most (model_layers - num_layers) sets of activations are on GPU at any time",
"model_layers - 1 leaves only 1 activation set on GPU at a time -- compute and transfers cannot
overlap", "Offloading/reloading consumes HBM bandwidth"); Megatron-Core ``TransformerConfig``
(``cpu_offloading_num_layers < num_layers``; no pipeline parallelism, no activation recompute).
"""

from __future__ import annotations

import numpy as np


def kept_layers(n_layers, offloaded):
    """Layers whose activation sets stay on the GPU: ``L - N`` (``N = 0``: all).

    Parameters
    ----------
    n_layers : float or ndarray
        Layers on the device (the whole model: offloading runs at PP 1).
    offloaded : int or ndarray
        Layers offloaded (``cpu_offload_layers``).

    Returns
    -------
    ndarray
        Layers' activation sets held in HBM at the peak.
    """
    return np.maximum(np.asarray(n_layers, dtype=float) - offloaded, 0.0)


def offload_times(act_bytes, link_gb_s: float, offloaded, n_layers, fwd_s, bwd_s):
    """Exposed and hidden transfer time of one microbatch's offloaded activations.

    Parameters
    ----------
    act_bytes : float or ndarray
        Bytes one layer saves for backward (one microbatch, per device).
    link_gb_s : float
        Host link bandwidth per direction, GB/s (1e9 bytes/s).
    offloaded : int or ndarray
        Layers offloaded, ``N`` (``0 <= N < L``).
    n_layers : int or ndarray
        Layers of the model, ``L``.
    fwd_s, bwd_s : float or ndarray
        One layer's forward and backward time (s), the compute the copies overlap.

    Returns
    -------
    exposed, hidden : ndarray
        Seconds per microbatch (forward + backward): copy time the step waits for, and copy time
        that runs under compute.
    """
    n = np.asarray(offloaded, dtype=float)
    t_x = np.asarray(act_bytes, dtype=float) / (link_gb_s * 1e9)
    # the L - 2 layers between the first offloaded layer and the last layer; none with one set on the GPU
    between = np.where(n <= np.asarray(n_layers) - 2, np.asarray(n_layers, dtype=float) - 2.0, 0.0)
    copies = n * t_x
    exposed = np.maximum(0.0, copies - between * fwd_s) + np.maximum(0.0, copies - between * bwd_s)
    return exposed, 2.0 * copies - exposed

"""The ground floor: hooks, one traced forward, the target layer, head analysis, folding, rewrites.

Nothing here imports another camlens folder. ``hooks`` (Hook, Hooks, capture), ``trace``
(trace_model), ``layers`` (find_target_layer, describe), ``heads`` (analyze_head),
``rewrite`` (fully_convolutional, replace_head, finetune_head), ``fold`` (BatchNorm folded into
convolutions), ``postprocess`` (ReLU, upsample, normalise), ``errors``, ``modes``.
"""

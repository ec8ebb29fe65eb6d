"""Is the map right? Faithfulness and localization metrics, batched torch.

Faithfulness (does the model need what the map points at?):

- :func:`deletion_curve`, :func:`insertion_curve`, :func:`auc`: RISE (Petsiuk et al. 2018).
- :func:`confidence_change`: average drop and increase in confidence (Grad-CAM++,
  Chattopadhay et al. 2018).
- :func:`road`: ROAD, remove and debias with noisy linear imputation (Rong et al. 2022),
  MoRF, LeRF and combined.

Localization (is the map on the object?), against boxes (x0, y0, x1, y1) or masks:

- :func:`pointing_game` (Zhang et al. 2016), :func:`energy_pointing_game` (Score-CAM,
  Wang et al. 2020), :func:`localization_iou` (CAM's weakly-supervised boxes, Zhou et
  al. 2016) with :func:`boxes_from_maps` and :func:`largest_component`.

All at once: :func:`evaluate` explains inputs with every method and returns an
:class:`Evaluation` (``.table()``; :func:`plot_curves` draws the curves).
"""

from .evaluate import Evaluation, MethodScores, evaluate, evaluate_maps, plot_curves
from .faithfulness import ConfidenceChange, Curves, auc, confidence_change, deletion_curve, insertion_curve
from .road import RoadScores, noisy_linear_imputation, road
from .localization import (
    box_iou,
    boxes_from_maps,
    boxes_to_masks,
    energy_pointing_game,
    largest_component,
    localization_iou,
    masks_to_boxes,
    pointing_game,
)

__all__ = [
    "Evaluation", "MethodScores", "evaluate", "evaluate_maps", "plot_curves",
    "ConfidenceChange", "Curves", "auc", "confidence_change", "deletion_curve", "insertion_curve",
    "box_iou", "boxes_from_maps", "boxes_to_masks", "energy_pointing_game", "largest_component",
    "localization_iou", "masks_to_boxes", "pointing_game", "RoadScores", "noisy_linear_imputation", "road",
]

"""What a person looks at: colormaps, overlays, figures, PNG files.

``overlay`` (apply_colormap, overlay, save_image, save_figure, plot_explanation), ``signals``
(plot_signal for 1-D maps, draw_detections for boxes and labels).
"""
